// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `score_function<Loss>`: the policy-gradient estimator policy of the stepper (the `grpo`,
/// `bnpo`, `rloo` and `reinforce` presets of bits/pg/presets.hpp are aliases over it).
///
/// One step, for a generation batch of N completions (grouped by a `group_layout`: the G
/// completions of each prompt) padded to L tokens:
///
///  1. rewards -> advantages with the stepper's baseline and normalizer policies,
///     `A = normalizer(baseline(r))` (NaN rewards are unscorable: advantage 0); with K reward
///     functions and weights, combined as `reward_aggregation` says (TRL sum-then-normalize, GDPO
///     normalize-then-sum, BNPO decomposition; bits/outcome/multi_reward.hpp); or the batch's
///     own `advantages`, per sequence or per token (a critic's GAE, MA-RLHF's macro GAE);
///  2. per-token coefficients `c_nt = dLoss/dlogp_nt` of the surrogate loss (`clipped_surrogate`:
///     PPO clip, KL, GRPO/DAPO/Dr. GRPO aggregations, TRL `_compute_loss`; `rloo_loss`: TRL's
///     RLOO loss) at the current log-probabilities;
///  3. the caller's vector-Jacobian callback adds `sum_nt c_nt grad logp_nt` (the loss gradient)
///     to gradient buffers owned by the estimator state (sized like the parameters at `init`,
///     zeroed each step);
///  4. `stepper.apply(dense_gradient)`: the optimizer's fused update.
///
/// PPO iterations (TRL `num_iterations`, mu): with `iterations = mu > 1`, each generation batch
/// serves mu consecutive `step` calls. The first computes and stores the advantages and the old
/// log-probabilities (the supplied `old_logp`, or else the batch's `logp`: the policy that
/// generated it), the next mu - 1 calls reuse them (their `rewards` and layout are not read) with
/// the caller's fresh `logp` under the updated parameters, so the importance ratio and its clip
/// come into play. A supplied `old_logp` always takes precedence over the stored one. Both are
/// part of the saved state while a generation batch is in progress, so a run saved between two
/// iterations resumes bit-identically.
///
/// Constant groups (all valid rewards of a prompt equal, e.g. all wrong) have advantage exactly 0
/// under every group-centred baseline: they contribute nothing but count in
/// `pg_step_report::stats` (`constant_groups`, `zero_groups`). The update is still applied (with a
/// zero policy gradient, Adam's moments keep moving, as in the peer trainers).
///
/// Bad input throws before anything changes: `size_mismatch` for inconsistent lengths,
/// `invalid_argument` for an empty batch (G < 1 is rejected when the layout is built), BNPO rewards
/// outside [min_value, max_value] or a callback that takes one gradient span for a parameter set
/// of several tensors, `nonfinite_error` for an infinite reward or a non-finite log-probability or
/// advantage at an active token. If the callback or the optimizer throws, parameters and state are
/// unchanged (the PPO iteration counter does not advance).
///
/// No heap allocation per step once the batch size has been seen (buffers grow, never shrink).
///
/// References: R. J. Williams, "Simple statistical gradient-following algorithms for
/// connectionist reinforcement learning", Machine Learning 8, 1992 (REINFORCE); J. Schulman et al.,
/// "Proximal Policy Optimization Algorithms", arXiv 1707.06347 (clipped surrogate); Z. Shao et al.,
/// "DeepSeekMath", arXiv 2402.03300 (GRPO); A. Ahmadian et al., "Back to Basics: Revisiting
/// REINFORCE Style Optimization for Learning from Human Feedback in LLMs", arXiv 2402.14740 (RLOO);
/// C. Xiao et al., "BNPO: Beta Normalization Policy Optimization", arXiv 2506.02864.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/scratch.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "rloo_loss.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// One generation batch as the caller hands it to a policy-gradient step: N completions (N =
/// the layout's samples) padded to `length` tokens, row-major `[N x L]` spans. Nothing is copied
/// unless the estimator must keep it across PPO iterations.
/// @tparam T log-probability type = the parameter type
/// @tparam M mask element type (bool, integers, float; a token counts with weight m)
/// @tparam R reward type
template <real_scalar T, class M = T, real_scalar R = T>
struct pg_batch {
  using value_type = T;   ///< log-probability type
  using mask_type = M;    ///< mask element type
  using reward_type = R;  ///< reward type
  /// One reward per completion `[N]`, or `[N x K]` row-major for K reward functions (K =
  /// `reward_weights.size()`); NaN = unscorable (the reward function returned nothing).
  std::span<const R> rewards{};
  /// Weights of K >= 1 reward functions; empty: `rewards` holds one reward per completion.
  std::span<const double> reward_weights{};
  std::size_t length = 0;         ///< L, padded completion length (>= 1)
  std::span<const T> logp{};      ///< log pi_theta(token) under the CURRENT parameters `[N x L]`
  std::span<const T> old_logp{};  ///< log pi_old(token) of the sampling policy `[N x L]`; empty = on-policy / stored
  std::span<const T> ref_logp{};  ///< log pi_ref(token) `[N x L]`; required when the loss has a KL term
  std::span<const M> mask{};      ///< completion mask `[N x L]`; empty = every token counts
  /// Advantages computed by the caller, per sequence `[N]` or per token `[N x L]` (e.g. from a
  /// critic: `macro_gae` of bits/pg/macro_action.hpp, `reinforce_pp_advantages`); empty = from the
  /// rewards with the stepper's baseline and normalizer. When given, the baseline and normalizer
  /// are not used, `reward_weights` must be empty and `rewards` may be empty (else `[N]`, read only
  /// for the report's reward_mean); like the rewards, they are read on the first PPO iteration of
  /// a generation batch only.
  std::span<const T> advantages{};
};

/// Options of the score-function estimator (the loss has its own).
struct score_function_options {
  /// PPO iterations per generation batch (TRL `num_iterations`, mu); >= 1.
  std::size_t iterations = 1;
  /// How K > 1 reward functions are combined (bits/outcome/multi_reward.hpp).
  reward_aggregation reward_mode = reward_aggregation::sum_then_normalize;
  /// Epsilon of the final batch whitening of `normalize_then_sum` (TRL 1e-4); >= 0.
  double final_eps = 1e-4;

  /// @throws invalid_argument naming the parameter, value and allowed range
  void validate() const {
    detail::require(iterations >= 1, "score_function", "iterations", static_cast<double>(iterations), ">= 1");
    detail::require(final_eps >= 0.0 && std::isfinite(final_eps), "score_function", "final_eps", final_eps,
                    "finite and >= 0");
  }
};

/// What one policy-gradient step (or `estimate`) did. The spans point into the estimator state
/// and stay valid until the next call on the same stepper.
template <real_scalar T>
struct pg_step_report {
  std::uint64_t step = 0;        ///< the stepper's step number of this update (steps() before it)
  std::uint64_t generation = 0;  ///< index of the generation batch (counts batches started)
  std::size_t iteration = 0;     ///< PPO iteration within it (0: advantages computed by this call)
  double loss = 0.0;             ///< surrogate loss value at the current log-probabilities
  surrogate_diagnostics diagnostics;  ///< clip fractions, KL, ratio statistics
  advantage_stats stats;         ///< of the generation batch's advantages (constant / zero groups, NaN rewards)
  double reward_mean = 0.0;      ///< NaN-aware mean of the (weighted, combined) rewards of the generation batch
  std::span<const T> advantages;    ///< `[N]` advantages used (`[N x L]` when the batch gave per-token ones)
  std::span<const T> coefficients;  ///< `[N x L]` dLoss/dlogp handed to the callback
  std::span<const std::span<const T>> gradient;  ///< the accumulated gradient, one span per tensor
  bool applied = false;          ///< the optimizer applied the update (false for `estimate` or a skip)
  update_report update;          ///< the optimizer's report
};

/// Sized state of `score_function`: the PPO-iteration bookkeeping (saved) and the scratch
/// buffers (not saved), including the gradient buffers handed to the callback.
template <real_scalar T>
struct score_function_state {
  // Saved with the stepper.
  std::uint64_t generations = 0;  ///< generation batches started
  std::uint64_t iteration = 0;    ///< PPO iteration the next step performs (0: a new generation batch)
  std::uint64_t samples = 0;      ///< N of the generation batch in progress
  std::uint64_t length = 0;       ///< L of the generation batch in progress
  bool stored_old = false;        ///< old_logp holds the batch's old log-probabilities
  double reward_mean = 0.0;       ///< of the generation batch in progress
  advantage_stats stats;          ///< of the generation batch in progress
  std::vector<T> advantages;      ///< `[N]` (or `[N x L]`, given per token) of the generation batch in progress
  std::vector<T> old_logp;        ///< `[N x L]` when stored_old
  // Scratch (sized at init or on first use, grown only; not saved).
  std::vector<std::vector<T>> gradient;          ///< one buffer per parameter tensor
  std::vector<std::span<T>> gradient_spans;      ///< views handed to the callback
  std::vector<std::span<const T>> gradient_cspans;  ///< views read by the optimizer
  std::vector<T> coef;            ///< `[N x L]` coefficients
  std::vector<T> estimate_adv;    ///< `[N]` advantages of `estimate`
  std::vector<double> rewards;    ///< `[N x K]` rewards in double
  std::vector<double> adv;        ///< `[N]` advantages in double
  multi_reward_scratch multi;     ///< K > 1 reward functions

  /// Saves/loads the bookkeeping; the advantages and old log-probabilities only while a
  /// generation batch is in progress (iteration != 0).
  /// @throws state_error (loading) when the stored arrays do not match the recorded sizes
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("pg.generations", generations);
    ar.field("pg.iteration", iteration);
    ar.field("pg.samples", samples);
    ar.field("pg.length", length);
    ar.field("pg.stored_old", stored_old);
    ar.field("pg.reward_mean", reward_mean);
    std::vector<std::uint64_t> st{stats.samples,        stats.groups,         stats.nan_outcomes,
                                  stats.zeroed,         stats.constant_groups, stats.zero_groups};
    ar.field("pg.advantage_stats", st);
    if constexpr (Ar::loading) {
      if (st.size() != 6) throw state_error("load: field 'pg.advantage_stats' has the wrong length");
      stats.samples = static_cast<std::size_t>(st[0]);
      stats.groups = static_cast<std::size_t>(st[1]);
      stats.nan_outcomes = static_cast<std::size_t>(st[2]);
      stats.zeroed = static_cast<std::size_t>(st[3]);
      stats.constant_groups = static_cast<std::size_t>(st[4]);
      stats.zero_groups = static_cast<std::size_t>(st[5]);
      ar.field("pg.advantages", advantages);
      ar.field("pg.old_logp", old_logp);
      if (iteration != 0) {
        const bool ok = (advantages.size() == samples || advantages.size() == samples * length) &&
                        old_logp.size() == (stored_old ? samples * length : 0);
        if (!ok) throw state_error("load: the stored advantages / old log-probabilities do not match pg.samples x pg.length");
      }
    } else {
      std::vector<T> none;
      ar.field("pg.advantages", iteration != 0 ? advantages : none);
      ar.field("pg.old_logp", iteration != 0 && stored_old ? old_logp : none);
    }
  }
};

namespace detail {

/// Policies that declare `static constexpr estimator_family only_for_family` are meaningful for
/// one estimator family only (e.g. the zeroth-order GC-SPSA momentum, `zo::gc_spsa_sgd`).
template <class P>
consteval bool zeroth_order_only() {
  if constexpr (requires { P::only_for_family; }) {
    return P::only_for_family == estimator_family::zeroth_order;
  } else {
    return false;
  }
}
template <class P>
consteval bool first_order_only() {
  if constexpr (requires { P::only_for_family; }) {
    return P::only_for_family == estimator_family::first_order;
  } else {
    return false;
  }
}

/// A surrogate loss for the score-function estimator: `l.evaluate(token_batch, coef)` writes
/// dLoss/dlogp and returns the loss and diagnostics.
template <class L>
concept surrogate_loss_policy = requires(const L& l, const token_batch<double, double>& bd, std::span<double> cd,
                                         const token_batch<float, float>& bf, std::span<float> cf) {
  { l.evaluate(bd, cd) } -> std::same_as<surrogate_result>;
  { l.evaluate(bf, cf) } -> std::same_as<surrogate_result>;
};

/// A grouped surrogate loss (CoPG, bits/pg/copg.hpp): `l.evaluate(token_batch, group_layout, coef)`
/// also needs the grouping of the completions by prompt; the estimator passes the step's layout.
template <class L>
concept grouped_surrogate_loss_policy =
    requires(const L& l, const token_batch<double, double>& bd, const group_layout& g, std::span<double> cd,
             const token_batch<float, float>& bf, std::span<float> cf) {
      { l.evaluate(bd, g, cd) } -> std::same_as<surrogate_result>;
      { l.evaluate(bf, g, cf) } -> std::same_as<surrogate_result>;
    };

/// Losses that declare `static constexpr bool unscorable_as_nan = true` receive NaN (not 0) as the
/// "advantage" of a completion whose rewards are all NaN, so that they can drop it (CoPG).
template <class L>
consteval bool loss_wants_unscorable_nan() {
  if constexpr (requires { L::unscorable_as_nan; }) {
    return static_cast<bool>(L::unscorable_as_nan);
  } else {
    return false;
  }
}

template <class L>
constexpr const char* score_function_name() {
  if constexpr (requires { { L::estimator_name } -> std::convertible_to<const char*>; }) {
    return L::estimator_name;
  } else {
    return "score_function";
  }
}

template <class B>
inline constexpr bool is_pg_batch = false;
template <class T, class M, class R>
inline constexpr bool is_pg_batch<pg_batch<T, M, R>> = true;

/// The three arguments of a policy-gradient step: (pg_batch, group_layout, callback).
template <class... A>
concept pg_step_arguments = sizeof...(A) == 3 && [] {
  using First = std::remove_cvref_t<std::tuple_element_t<0, std::tuple<A...>>>;
  using Second = std::tuple_element_t<1, std::tuple<A...>>;
  return is_pg_batch<First> && std::is_convertible_v<Second, const group_layout&>;
}();

/// Vector-Jacobian callbacks: one gradient span (single-tensor parameters) or one per tensor.
template <class F, class T>
concept pg_vjp_single = std::invocable<F&, std::span<const T>, std::span<T>>;
template <class F, class T>
concept pg_vjp_tensors = std::invocable<F&, std::span<const T>, std::span<const std::span<T>>>;

template <class P>
inline constexpr bool always_false = false;

/// The options type a loss policy is constructed from.
struct no_loss_options {};
template <class L>
struct loss_options_of {
  using type = no_loss_options;
};
template <>
struct loss_options_of<clipped_surrogate> {
  using type = surrogate_options;
};
template <class L>
  requires requires { typename L::options_type; }
struct loss_options_of<L> {
  using type = typename L::options_type;
};

}  // namespace detail

/// The score-function (policy-gradient) estimator policy: advantages from the stepper's baseline
/// and normalizer, per-token coefficients from `Loss`, the gradient from the caller's
/// vector-Jacobian callback, the update from the stepper's optimizer (see the file comment).
///
/// In a trainer (`theta` the policy's parameters; examples/grpo_addition.cpp is a complete program):
/// @code
/// std::vector<float> theta(4, 0.0f);
/// stochgrad::grpo<float> s(theta, {.lr = 1e-2});
/// const std::size_t prompts = 2, G = 4, L = 3;                             // P x G completions of L tokens
/// const auto layout = stochgrad::group_layout::contiguous(prompts, G);    // or group_layout::by_id(ids)
/// // per generation batch: sample P x G completions, score them (rewards), compute their token
/// // log-probs under theta (logp, [N x L]) with a padding mask, then
/// std::vector<float> rewards{1, 0, 0, 1, 0, 0, 0, 1}, logp(prompts * G * L, -1.0f), mask(prompts * G * L, 1.0f);
/// auto report = s.step(stochgrad::pg_batch<float>{.rewards = rewards, .length = L, .logp = logp, .mask = mask},
///                      layout, [&](std::span<const float> coef, std::span<float> grad) {
///                        // the model's backward pass: grad += sum_t coef[t] * d logp[t] / d theta
///                        for (std::size_t t = 0; t < coef.size(); ++t) grad[t % grad.size()] += coef[t];
///                      });
/// std::printf("loss %g, clipped %g\n", double(report.loss), double(report.diagnostics.clip_region_fraction));
/// // also report.stats.zero_groups, report.diagnostics.*, ...
/// @endcode
/// @tparam Loss surrogate loss policy: `clipped_surrogate` (GRPO family, the default),
///         `rloo_loss` (TRL RLOO), `reinforce_loss` (GPG) or `copg_loss` (CoPG); any type with
///         `evaluate(token_batch<T, M>, std::span<T>) -> surrogate_result` for float and double, or
///         a grouped loss with `evaluate(token_batch<T, M>, const group_layout&, std::span<T>)`
template <class Loss = clipped_surrogate>
class score_function {
  static_assert(detail::surrogate_loss_policy<Loss> || detail::grouped_surrogate_loss_policy<Loss>,
                "stochgrad::score_function: the Loss template argument must be a surrogate loss policy "
                "(clipped_surrogate, rloo_loss, reinforce_loss, copg_loss, or a type with evaluate(token_batch<T, M>, "
                "std::span<T> coef) -> surrogate_result, or evaluate(token_batch<T, M>, const group_layout&, "
                "std::span<T> coef) -> surrogate_result, for float and double)");

 public:
  /// Identifies the estimator in saved state ("score_function", "score_function_rloo").
  static constexpr const char* name = detail::score_function_name<Loss>();
  /// Rewards of sampled completions, score-function directions.
  static constexpr estimator_family family = estimator_family::policy_gradient;
  /// The surrogate loss policy.
  using loss_type = Loss;
  /// The options the loss is built from (`surrogate_options`, `rloo_options`).
  using loss_options = typename detail::loss_options_of<Loss>::type;
  /// Sized state (see score_function_state).
  template <class T>
  using state = score_function_state<T>;

  /// The loss's default options (TRL's for the clipped surrogate), one iteration per batch.
  score_function() = default;
  /// @throws invalid_argument from the options' validation
  explicit score_function(Loss loss, score_function_options o = {}) : loss_(std::move(loss)), o_(o) { o_.validate(); }
  /// The loss built from its options, e.g. `score_function<>({.eps_high = 0.28}, {.iterations = 2})`.
  /// @throws invalid_argument from the loss's or the options' validation
  explicit score_function(const loss_options& loss_opts, score_function_options o = {})
    requires(!std::is_same_v<loss_options, detail::no_loss_options>)
      : loss_(loss_opts), o_(o) {
    o_.validate();
  }
  /// Only the estimator options; the loss keeps its defaults.
  explicit score_function(score_function_options o) : o_(o) { o_.validate(); }

  /// The loss policy.
  const Loss& loss() const noexcept { return loss_; }
  /// The options.
  const score_function_options& options() const noexcept { return o_; }

  /// Fresh state: zeroed gradient buffers shaped like `p`, no generation batch in progress.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.gradient.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.gradient[t].assign(p.tensor(t).size(), T(0));
    st.gradient_spans.resize(p.tensors());
    st.gradient_cspans.resize(p.tensors());
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp): policies that belong to another
  /// estimator family are rejected with a sentence that says why.
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(!detail::zeroth_order_only<O>(),
                  "stochgrad::score_function: this optimizer is a zeroth-order policy (GC-SPSA's momentum weighs "
                  "how many random directions were averaged into a finite-difference estimate); a policy gradient "
                  "is a dense score-function estimate from your vector-Jacobian callback: use optim::adam, "
                  "optim::adamw, optim::sgd or optim::adan");
    static_assert(!detail::zeroth_order_only<B>() && !detail::zeroth_order_only<N>(),
                  "stochgrad::score_function: this baseline or normalizer is meant for zeroth-order estimators "
                  "(losses at perturbed parameters), not for the rewards of sampled completions: use group_mean, "
                  "leave_one_out, bnpo_mean or no_baseline, and group_std, batch_std, beta_normalizer, "
                  "batch_whiten or no_normalizer");
    static_assert(!detail::first_order_only<B>() && !detail::first_order_only<N>() && !detail::first_order_only<O>(),
                  "stochgrad::score_function: this policy is meant for first-order steppers (it needs the exact "
                  "gradient of a loss); the score-function estimator's gradient is a sampled policy-gradient "
                  "estimate: pick a policy that is not restricted to the first_order family");
    return true;
  }

  /// One step on a generation batch (or one more PPO iteration on the batch in progress).
  /// @param s      the stepper (its baseline, normalizer, optimizer and state are used)
  /// @param b      the batch; `b.logp` must be under the current parameters
  /// @param g      grouping of the N completions (contiguous `[P x G]` or by prompt id)
  /// @param vjp    `vjp(std::span<const T> coef, std::span<T> grad)` for single-tensor parameters,
  ///               or `vjp(std::span<const T> coef, std::span<const std::span<T>> grads)`: adds
  ///               `sum_nt coef[n*L + t] * d logp_nt / d theta` to the (zeroed) buffers
  /// @return the report (loss, diagnostics, advantage statistics, the optimizer's report)
  /// @throws see the file comment
  template <class S, class Batch, class F>
    requires detail::is_pg_batch<std::remove_cvref_t<Batch>>
  pg_step_report<typename S::value_type> step(S& s, const Batch& b, const group_layout& g, F&& vjp) {
    check_call_types<S, Batch, F>();
    const call_plan pl = plan(s, b, g, pass::step, detail::pg_vjp_single<F, typename S::value_type>);
    phase_values<typename S::value_type> v = shape_phase(s, b, g, pl);
    pg_step_report<typename S::value_type> rep = evaluate_phase(s, b, g, pl, v, vjp);
    commit_phase(s, pl, v, rep);
    return rep;
  }

  /// Anything else passed to a policy-gradient step is a composition error.
  template <class S, class... A>
    requires(!detail::pg_step_arguments<A...>)
  void step(S&, A&&...) {
    static_assert(detail::always_false<S>,
                  "stochgrad::score_function: a policy-gradient step takes (pg_batch<T>{rewards, length, logp, ...}, "
                  "group_layout, vjp callback); it does not take a gradient or an objective. To apply a gradient "
                  "you computed yourself, call stepper.apply(stochgrad::dense_gradient<T>(g)), or use a first_order "
                  "stepper such as stochgrad::adan");
  }

  /// The policy-gradient estimate at the current parameters, without an update: the same
  /// advantages, coefficients and callback as a fresh generation batch's first step (with
  /// `b.old_logp` if given). Leaves the PPO bookkeeping and the optimizer untouched; the gradient
  /// is in `report.gradient` until the next call. @throws as `step`
  template <class S, class Batch, class F>
    requires detail::is_pg_batch<std::remove_cvref_t<Batch>>
  pg_step_report<typename S::value_type> estimate(S& s, const Batch& b, const group_layout& g, F&& vjp) {
    check_call_types<S, Batch, F>();
    const call_plan pl = plan(s, b, g, pass::estimate, detail::pg_vjp_single<F, typename S::value_type>);
    phase_values<typename S::value_type> v = shape_phase(s, b, g, pl);
    pg_step_report<typename S::value_type> rep = evaluate_phase(s, b, g, pl, v, vjp);
    rep.generation = s.est_state().generations;
    rep.iteration = 0;
    return rep;
  }

 private:
  // A call runs in phases: plan (validation only: nothing is modified before it passes), shape
  // (advantages of a fresh generation batch, or the stored ones of a PPO iteration), evaluate
  // (coefficients from the loss, gradient from the caller's callback, the report) and, for a step,
  // commit (the optimizer's update, then the PPO bookkeeping). `estimate` stops after evaluate.
  enum class pass { step, estimate };

  // Sizes and mode of one call, decided by `plan`.
  struct call_plan {
    std::size_t samples = 0;  // N
    std::size_t length = 0;   // L
    std::size_t tokens = 0;   // N x L
    bool fresh = true;        // a new generation batch (or an estimate): advantages are computed
    bool estimate_only = false;
    bool store_old = false;   // the batch's old log-probabilities are kept for later PPO iterations
  };

  // What the shape phase hands on.
  template <class T>
  struct phase_values {
    std::span<const T> adv;
    advantage_stats stats;
    double reward_mean = 0.0;
  };

  template <class S, class Batch, class F>
  static consteval void check_call_types() {
    using T = typename S::value_type;
    static_assert(std::is_same_v<typename Batch::value_type, T>,
                  "stochgrad::score_function: the batch's log-probability type must be the stepper's parameter type "
                  "(pg_batch<float> for a float stepper, pg_batch<double> for a double one)");
    static_assert(detail::pg_vjp_single<F, T> || detail::pg_vjp_tensors<F, T>,
                  "stochgrad::score_function: the vector-Jacobian callback must be callable as "
                  "vjp(std::span<const T> coef, std::span<T> grad) (single-tensor parameters) or "
                  "vjp(std::span<const T> coef, std::span<const std::span<T>> grads) (one span per tensor), with T "
                  "the parameter type; it adds sum_t coef[t] * grad(logp[t]) to the buffers it is given");
  }

  // Phase 1: every check of the call. Throws before anything is modified.
  template <class S, class Batch>
  call_plan plan(S& s, const Batch& b, const group_layout& g, pass k, bool single_span_callback) const {
    const char* what = "score_function";
    const auto& st = s.est_state();
    const auto& p = s.params();
    call_plan pl;
    pl.samples = g.samples();
    pl.length = b.length;
    pl.estimate_only = k == pass::estimate;
    detail::require(pl.samples >= 1, what, "layout samples (empty batch)", 0.0, ">= 1");
    detail::require(pl.length >= 1, what, "length", static_cast<double>(pl.length), ">= 1");
    pl.tokens = detail::checked_product(what, "samples", pl.samples, "length", pl.length);
    detail::require_same_size(what, "logp", b.logp.size(), "samples x length", pl.tokens);
    if (!b.old_logp.empty()) detail::require_same_size(what, "old_logp", b.old_logp.size(), "samples x length", pl.tokens);
    if (!b.ref_logp.empty()) detail::require_same_size(what, "ref_logp", b.ref_logp.size(), "samples x length", pl.tokens);
    if (!b.mask.empty()) {
      detail::require_same_size(what, "mask", b.mask.size(), "samples x length", pl.tokens);
      detail::check_mask_finite(what, b.mask, pl.length);
    }
    if (!b.advantages.empty()) {
      if (b.advantages.size() != pl.samples && b.advantages.size() != pl.tokens) {
        throw size_mismatch(std::string(what) + ": advantages has " + std::to_string(b.advantages.size()) +
                            " elements; expected samples = " + std::to_string(pl.samples) +
                            " (per sequence) or samples x length = " + std::to_string(pl.tokens) + " (per token)");
      }
      if (!b.reward_weights.empty()) {
        throw invalid_argument(std::string(what) + ": the batch gives both advantages and reward_weights; with "
                               "precomputed advantages the rewards are not combined (leave reward_weights empty)");
      }
      if (!b.rewards.empty()) detail::require_same_size(what, "rewards", b.rewards.size(), "layout samples", pl.samples);
    }
    if (single_span_callback && p.tensors() != 1) {
      throw invalid_argument(std::string(what) + ": the callback takes one gradient span but the parameters have " +
                             std::to_string(p.tensors()) +
                             " tensors; take std::span<const std::span<T>> (one span per tensor) instead");
    }
    if (st.gradient.size() != p.tensors()) {
      throw state_error(std::string(what) + ": the estimator state does not fit the parameters");
    }
    pl.fresh = pl.estimate_only || st.iteration == 0;
    if (!pl.estimate_only) {
      if (st.iteration >= o_.iterations) {
        throw state_error(std::string(what) + ": the state is at PPO iteration " + std::to_string(st.iteration) +
                          " of a generation batch but iterations = " + std::to_string(o_.iterations) +
                          " (state saved with other options?)");
      }
      if (!pl.fresh && (pl.samples != st.samples || pl.length != st.length)) {
        throw size_mismatch(std::string(what) + ": PPO iteration " + std::to_string(st.iteration) +
                            " of a generation batch of " + std::to_string(st.samples) + " completions x " +
                            std::to_string(st.length) + " tokens was given " + std::to_string(pl.samples) + " x " +
                            std::to_string(pl.length) + " (iterations = " + std::to_string(o_.iterations) + ")");
      }
    }
    pl.store_old = !pl.estimate_only && pl.fresh && o_.iterations > 1;
    return pl;
  }

  // Phase 2: the advantages of the call (computed for a fresh batch, else those stored at its start).
  template <class S, class Batch>
  phase_values<typename S::value_type> shape_phase(S& s, const Batch& b, const group_layout& g, const call_plan& pl) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    const std::size_t N = pl.samples;
    stochgrad::detail::grow(st.coef, pl.tokens);
    stochgrad::detail::grow(st.adv, N);
    phase_values<T> v;
    if (pl.fresh) {
      std::vector<T>& out = pl.estimate_only ? st.estimate_adv : st.advantages;
      if (!b.advantages.empty()) {
        out.resize(b.advantages.size());  // within capacity after the first batch of this size
        std::copy(b.advantages.begin(), b.advantages.end(), out.begin());
        v.stats = given_stats(b, g, pl, v.reward_mean);
        v.adv = std::span<const T>(out.data(), out.size());
        return v;
      }
      out.resize(N);  // within capacity after the first batch of this size
      v.stats = shape(s, b.rewards, b.reward_weights, g, std::span<T>(out.data(), N), v.reward_mean);
      v.adv = std::span<const T>(out.data(), N);
    } else {
      v.stats = st.stats;
      v.reward_mean = st.reward_mean;
      v.adv = std::span<const T>(st.advantages.data(), st.advantages.size() == pl.tokens ? pl.tokens : N);
    }
    return v;
  }

  // Statistics of caller-given advantages: samples, groups, and the groups whose advantages are
  // all exactly 0; reward_mean from the rewards if given (NaN-aware), else NaN.
  template <class Batch>
  static advantage_stats given_stats(const Batch& b, const group_layout& g, const call_plan& pl, double& reward_mean) {
    advantage_stats st;
    st.samples = pl.samples;
    st.groups = g.groups();
    const std::size_t per = b.advantages.size() == pl.samples ? 1 : pl.length;
    for (std::size_t k = 0; k < g.groups(); ++k) {
      bool zero = true;
      g.for_each_member(k, [&](std::size_t n) {
        for (std::size_t t = 0; t < per; ++t) zero = zero && b.advantages[n * per + t] == 0;
      });
      st.zero_groups += zero ? 1 : 0;
    }
    double sum = 0.0;
    std::size_t count = 0;
    for (const auto r : b.rewards) {
      const double v = static_cast<double>(r);
      if (std::isnan(v)) continue;
      sum += v;
      ++count;
    }
    reward_mean = count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / static_cast<double>(count);
    return st;
  }

  // Phase 3: old log-probabilities, coefficients dLoss/dlogp, the gradient by the callback.
  template <class S, class Batch, class F>
  pg_step_report<typename S::value_type> evaluate_phase(S& s, const Batch& b, const group_layout& g,
                                                        const call_plan& pl,
                                                        const phase_values<typename S::value_type>& v, F& vjp) {
    using T = typename S::value_type;
    using M = typename Batch::mask_type;
    auto& st = s.est_state();
    const std::size_t NL = pl.tokens;
    std::span<const T> old = b.old_logp;
    if (pl.store_old) {
      st.old_logp.resize(NL);
      const std::span<const T> src = b.old_logp.empty() ? b.logp : b.old_logp;
      std::copy(src.begin(), src.end(), st.old_logp.begin());
    }
    if (old.empty() && !pl.estimate_only && (pl.store_old || (!pl.fresh && st.stored_old))) {
      old = std::span<const T>(st.old_logp.data(), NL);
    }
    const token_batch<T, M> tb{pl.samples, pl.length, b.logp, old, b.ref_logp, b.mask, v.adv};
    const std::span<T> coef(st.coef.data(), NL);
    surrogate_result sr;
    if constexpr (detail::grouped_surrogate_loss_policy<Loss>) {
      sr = loss_.evaluate(tb, g, coef);
    } else {
      sr = loss_.evaluate(tb, coef);
    }
    for (std::size_t t = 0; t < st.gradient.size(); ++t) {
      std::fill(st.gradient[t].begin(), st.gradient[t].end(), T(0));
      st.gradient_spans[t] = std::span<T>(st.gradient[t]);
      st.gradient_cspans[t] = std::span<const T>(st.gradient[t]);
    }
    const std::span<const T> ccoef(coef.data(), NL);
    if constexpr (detail::pg_vjp_single<F, T>) {
      vjp(ccoef, st.gradient_spans[0]);
    } else {
      vjp(ccoef, std::span<const std::span<T>>(st.gradient_spans.data(), st.gradient_spans.size()));
    }
    pg_step_report<T> rep;
    rep.step = s.steps();
    rep.loss = sr.loss;
    rep.diagnostics = sr.diagnostics;
    rep.stats = v.stats;
    rep.reward_mean = v.reward_mean;
    rep.advantages = v.adv;
    rep.coefficients = ccoef;
    rep.gradient = std::span<const std::span<const T>>(st.gradient_cspans.data(), st.gradient_cspans.size());
    return rep;
  }

  // Phase 4 (step only): the optimizer's update, then the bookkeeping, only once it went through.
  template <class S>
  void commit_phase(S& s, const call_plan& pl, const phase_values<typename S::value_type>& v,
                    pg_step_report<typename S::value_type>& rep) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    const std::uint64_t it = st.iteration;
    rep.update = s.apply(dense_gradient<T>(rep.gradient));
    rep.applied = rep.update.applied;
    if (pl.fresh) {
      st.samples = pl.samples;
      st.length = pl.length;
      st.stats = v.stats;
      st.reward_mean = v.reward_mean;
      st.stored_old = pl.store_old;
      ++st.generations;
    }
    rep.generation = st.generations - 1;
    rep.iteration = static_cast<std::size_t>(it);
    st.iteration = it + 1 >= o_.iterations ? 0 : it + 1;
  }

  // Rewards -> advantages with the stepper's policies, written to `out` (T).
  template <class S, class R, class T>
  advantage_stats shape(S& s, std::span<const R> rewards, std::span<const double> weights, const group_layout& g,
                        std::span<T> out, double& reward_mean) {
    const char* what = "score_function";
    auto& st = s.est_state();
    const std::size_t N = g.samples();
    const std::size_t K = weights.empty() ? 1 : weights.size();
    if (weights.empty()) {
      detail::require_same_size(what, "rewards", rewards.size(), "layout samples", N);
    } else if (rewards.size() != N * K) {
      throw size_mismatch(std::string(what) + ": rewards has " + std::to_string(rewards.size()) +
                          " elements but samples x reward functions = " + std::to_string(N) + " x " +
                          std::to_string(K));
    }
    detail::require_data(what, "rewards", rewards.data(), rewards.size());
    // The validation of advantages() / combined_advantages(), before anything is written.
    detail::check_advantage_inputs(what, s.baseline(), s.normalizer(), rewards, weights.empty() ? 1 : K);
    stochgrad::detail::grow(st.rewards, N * K);
    for (std::size_t i = 0; i < N * K; ++i) st.rewards[i] = static_cast<double>(rewards[i]);
    // NaN-aware mean of the combined reward.
    double sum = 0.0;
    std::size_t count = 0;
    for (std::size_t n = 0; n < N; ++n) {
      double r = 0.0;
      bool any = false;
      for (std::size_t k = 0; k < K; ++k) {
        const double v = st.rewards[n * K + k];
        if (!std::isnan(v)) {
          r += (weights.empty() ? 1.0 : weights[k]) * v;
          any = true;
        }
      }
      if (any) {
        sum += r;
        ++count;
      }
    }
    reward_mean = count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / static_cast<double>(count);
    const std::span<double> a(st.adv.data(), N);
    advantage_stats stats;
    if (weights.empty()) {
      stats = advantages(s.baseline(), s.normalizer(), std::span<const double>(st.rewards.data(), N), g, a);
    } else {
      stats = combined_advantages(s.baseline(), s.normalizer(), weights, o_.reward_mode, o_.final_eps,
                                  std::span<const double>(st.rewards.data(), N * K), g, a, st.multi);
    }
    for (std::size_t n = 0; n < N; ++n) out[n] = static_cast<T>(a[n]);
    if constexpr (detail::loss_wants_unscorable_nan<Loss>()) {
      // A completion with no valid reward keeps NaN (the loss drops it) instead of advantage 0.
      for (std::size_t n = 0; n < N; ++n) {
        bool any = false;
        for (std::size_t k = 0; k < K; ++k) any = any || !std::isnan(st.rewards[n * K + k]);
        if (!any) out[n] = std::numeric_limits<T>::quiet_NaN();
      }
    }
    return stats;
  }


  Loss loss_{};
  score_function_options o_{};
};

}  // namespace stochgrad
