// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The difference estimators `two_point` (central differences: MeZO, SPSA, antithetic ES)
/// and `one_sided` (forward differences: RGE, one-point ES) over a direction distribution.
///
/// One step draws q directions `v_j` (seed `step_seed(master, call)`, draw j, stream = tensor) and
/// evaluates the objective at perturbed copies of the parameters, which are perturbed IN PLACE and
/// restored (up to the rounding of the additions) before the update. The outcomes (losses) are
/// shaped by the stepper's baseline and normalizer policies, `a = normalizer(baseline(r))`, over
/// one group holding all outcomes of the step (ARCHITECTURE.md §2), and the estimate is the
/// outcome-weighted sum of directions:
/// ```
///   two_point:  r = [f(x + s_0 v_0), f(x - s_0 v_0), ..., f(x - s_{q-1} v_{q-1})]
///               g = sum_j  (a_{2j} - a_{2j+1}) / (2 eps q) * k_j * d_j
///   one_sided:  r = [f(x), f(x + s_0 v_0), ..., f(x + s_{q-1} v_{q-1})]    (center = true)
///               g = sum_j  (a_{1+j} - a_0) / (eps q) * k_j * d_j
///               r = [f(x + s_j v_j)]_j,  g = sum_j a_j / (eps q) * k_j * d_j (center = false)
/// ```
/// with `s_j = eps` and `k_j = 1`, or for unit-sphere directions `s_j = eps / |v_j|` and
/// `k_j = d / |v_j|` (d = number of perturbed entries); `d_j = v_j`, or `1 / v_j` for the inverse
/// form (segmented uniform). With `no_baseline` and `no_normalizer`, a = r and these are exactly
/// MeZO / n-SPSA (algorithms.md §7.2, §7.3), Spall SPSA (§8.1), BlackVIP's estimator (§8.2) and
/// RGE (§8.4). A constant baseline cancels in the differences; a normalizer rescales them, so
/// antithetic evolution strategies (q pairs, group mean, group std) is `two_point<gaussian>` with
/// `group_mean` and `group_std`.
///
/// Faults: if the objective throws, the parameters are restored before the exception leaves
/// `step`; a non-finite or invalid evaluation restores them and skips the update (report
/// `nonfinite`), or throws `nonfinite_error` (option `on_nonfinite`). Each call consumes one seed
/// (also skipped ones), so a retry sees a fresh direction.
///
/// Memory: O(q) scalars beyond the parameters (plus 1 bit per entry for a magnitude mask); no
/// allocation per step.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "directions.hpp"
#include "kernels.hpp"
#include "mask.hpp"
#include "objective.hpp"
#include "replay_log.hpp"
#include "schedules.hpp"

namespace stochgrad::zo {

namespace detail {

/// Outcome policies that only make sense for rewards (0/1 or bounded scores), never for losses at
/// perturbed points: BNPO's Beta baseline and normalizer (rewards mapped to [0, 1]) and the
/// Reinforce-Ada pool statistics (counts of positive rewards); any policy may also declare
/// `static constexpr bool rewards_only = true`.
template <class P>
inline constexpr bool rewards_only = [] {
  if constexpr (requires { P::rewards_only; }) {
    return static_cast<bool>(P::rewards_only);
  } else {
    return std::is_same_v<P, bnpo_mean> || std::is_same_v<P, beta_normalizer> || std::is_same_v<P, pool_mean> ||
           std::is_same_v<P, pool_std>;
  }
}();

template <class D>
constexpr std::string_view direction_name() {
  if constexpr (std::is_same_v<D, gaussian>) {
    return "gaussian";
  } else if constexpr (std::is_same_v<D, rademacher>) {
    return "rademacher";
  } else if constexpr (std::is_same_v<D, segmented_uniform>) {
    return "segmented_uniform";
  } else if constexpr (std::is_same_v<D, unit_sphere>) {
    return "unit_sphere";
  } else if constexpr (requires { D::name; }) {
    return D::name;
  } else {
    return "custom";
  }
}

/// Sized state of a difference estimator.
template <real_scalar T>
struct difference_state {
  // Saved with the stepper.
  std::uint64_t master_seed = 0;  ///< master seed
  std::uint64_t calls = 0;        ///< step calls so far (the next call uses step_seed(master, calls))
  bool pending = false;           ///< fused_next: the parameters hold + pending_scale * v(pending_seed, draw 0)
  std::uint64_t pending_seed = 0;
  double pending_scale = 0.0;
  mask_state<T> mask;             ///< magnitude mask (saved only when fixed)
  // Scratch (sized at init; not saved).
  std::vector<double> outcomes, base, adv, coefs, norms;
  std::vector<noise_term> terms;
  group_layout layout;

  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("zo_master_seed", master_seed);
    ar.field("zo_calls", calls);
    ar.field("zo_pending", pending);
    ar.field("zo_pending_seed", pending_seed);
    ar.field("zo_pending_scale", pending_scale);
    mask.serialize(ar);
  }

  /// Grows the scratch (allocates only when q exceeds every earlier q).
  void reserve(std::size_t q, std::size_t outcomes_n) {
    auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(outcomes, outcomes_n);
    grow(base, outcomes_n);
    grow(adv, outcomes_n);
    grow(coefs, q);
    grow(norms, q);
    grow(terms, q);
  }
};

enum class run_kind { step, estimate, replay };
struct no_objective {};

/// The engine shared by two_point and one_sided.
template <bool Central, class Dir, class Schedule, class Mask, class Gen>
class difference_estimator {
 public:
  using direction_type = direction_t<Dir, Gen>;  ///< the direction policy object
  using schedule_type = Schedule;                ///< perturbation schedule (eps factor, q)
  using mask_type = Mask;                        ///< no_mask or magnitude_mask
  using options_type = difference_options;       ///< what `stepper(params, opt, {.eps = ...})` builds it from
  /// Sized state (see difference_state).
  template <class T>
  using state = difference_state<T>;
  /// Outcomes are losses at perturbed points; directions are regenerated from seeds.
  static constexpr estimator_family family = estimator_family::zeroth_order;

  /// Default options (eps = 1e-3, q = 1, seed 0, fused passes).
  difference_estimator() : difference_estimator(difference_options{}) {}
  /// @throws invalid_argument for eps <= 0, q = 0, sparsity outside [0, 1), or a bad schedule.
  explicit difference_estimator(difference_options opts, Schedule schedule = {}, Mask mask = {},
                                direction_type dir = {})
      : opts_(opts), sched_(std::move(schedule)), mask_(std::move(mask)), dir_(std::move(dir)) {
    opts_.validate(Central ? "two_point" : "one_sided");
    mask_.validate();
    validate_schedule(sched_);
  }

  /// Fresh state for parameters `p` (scratch sized for q; the mask's bit array).
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.master_seed = opts_.seed;
    st.reserve(opts_.q, outcome_count(opts_.q));
    bool fixed = false;
    if constexpr (Mask::enabled) fixed = !mask_.dynamic;
    st.mask.init(p, Mask::enabled, fixed);
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp).
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(!rewards_only<B>,
                  "stochgrad::zo: a zeroth-order estimator's outcomes are losses at perturbed parameters, not "
                  "bounded rewards: this baseline (BNPO / Reinforce-Ada pool statistics) does not apply; use "
                  "no_baseline or group_mean");
    static_assert(!rewards_only<N>,
                  "stochgrad::zo: a zeroth-order estimator's outcomes are losses at perturbed parameters, not "
                  "bounded rewards: this normalizer (BNPO Beta density / pool statistics) does not apply; use "
                  "no_normalizer or group_std");
    static_assert(direction_type::inverse || !direction_type::inverse, "");  // instantiates the direction checks
    return true;
  }

  /// The options.
  const difference_options& options() const noexcept { return opts_; }
  /// Replaces the options (the master seed of a running stepper lives in its state and is not
  /// changed). @throws invalid_argument as the constructor.
  void set_options(const difference_options& o) {
    o.validate(Central ? "two_point" : "one_sided");
    opts_ = o;
  }
  /// The perturbation schedule.
  const Schedule& schedule() const noexcept { return sched_; }
  /// The mask policy.
  const Mask& mask() const noexcept { return mask_; }
  /// The direction policy.
  const direction_type& direction() const noexcept { return dir_; }

  /// Perturbation size at step k: `eps * schedule(k)`.
  double eps_at(std::uint64_t k) const noexcept { return opts_.eps * static_cast<double>(sched_(k)); }
  /// Number of directions at step k.
  std::size_t queries_at(std::uint64_t k) const noexcept { return detail::queries_at(sched_, k, opts_.q); }

  /// One step: perturb in place, evaluate `f`, restore, update through the stepper's optimizer.
  /// @throws whatever `f` throws (parameters restored first); nonfinite_error under
  /// `nonfinite_policy::throw_error`; invalid_argument if the schedule yields eps <= 0.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    check_objective<std::remove_reference_t<F>, T>();
    return run(s, &f, run_kind::step, nullptr, nullptr, {});
  }

  /// Computes the estimate into `out` (one span per tensor) without updating: the same passes
  /// and evaluations as a step (a seed is consumed; the optimizer step counter is not advanced).
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    check_objective<std::remove_reference_t<F>, T>();
    stochgrad::detail::require_same_size("estimate", "parameter tensors", s.params().tensors(), "outputs", out.size());
    for (std::size_t t = 0; t < out.size(); ++t) {
      stochgrad::detail::require_same_size("estimate", "parameter tensor", s.params().tensor(t).size(), "output",
                                           out[t].size());
    }
    return run(s, &f, run_kind::estimate, nullptr, nullptr, out);
  }

  /// Replays one logged step (no objective call): the same passes, the logged scalars.
  /// `next` is the following entry (its seed and eps, for the fused next perturbation), or null.
  /// @throws state_error if the entry does not belong to the stepper's current call number.
  template <class S>
  step_report replay(S& s, const replay_entry& e, const replay_entry* next) {
    if (e.call != s.est_state().calls) {
      throw state_error("replay: the entry is for call " + std::to_string(e.call) + " but the stepper is at call " +
                        std::to_string(s.est_state().calls) + " (start from the state the log was recorded from)");
    }
    if (e.queries == 0 || (!e.skipped && e.coefficients.size() != e.queries)) {
      throw state_error("replay: malformed entry for call " + std::to_string(e.call));
    }
    no_objective* none = nullptr;
    return run(s, none, run_kind::replay, &e, next, {});
  }

  /// Removes a pending next-step perturbation (pass_mode::fused_next) so that the parameters are
  /// the current iterate; a no-op otherwise. Costs one pass when something is pending.
  template <class S>
  void settle(S& s) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    if (!st.pending) return;
    const pass_term<T> undo{st.pending_seed, 0, static_cast<T>(-st.pending_scale)};
    perturb_pass<false>(s.params(), dir_, mask_view{}, &undo, 1, s.exec());
    st.pending = false;
  }

 private:
  std::size_t outcome_count(std::size_t q) const noexcept {
    return Central ? 2 * q : q + (opts_.center ? 1 : 0);
  }

  template <class S, class F>
  step_report run(S& s, F* f, run_kind kind, const replay_entry* rep, const replay_entry* rep_next,
                  std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    static_assert(direction_policy<direction_type, T>,
                  "stochgrad::zo: the direction is not a direction policy for this parameter type");
    constexpr bool masked = Mask::enabled;
    constexpr bool normalized = direction_type::normalized;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    const char* who = Central ? "two_point" : "one_sided";

    auto& st = s.est_state();
    const parameters<T>& p = s.params();
    const executor ex = s.exec();
    const std::uint64_t k = s.steps();
    const std::uint64_t call = st.calls;
    const bool center = !Central && opts_.center;
    const bool first_fusable = Central || !opts_.center;

    std::size_t q;
    double eps;
    std::uint64_t seed;
    if (rep != nullptr) {
      q = static_cast<std::size_t>(rep->queries);
      eps = rep->eps;
      seed = rep->seed;
    } else {
      q = queries_at(k);
      eps = eps_at(k);
      seed = step_seed(st.master_seed, call);
    }
    stochgrad::detail::require(q >= 1, who, "q at this step", static_cast<double>(q), ">= 1");
    stochgrad::detail::require(eps > 0.0 && std::isfinite(eps), who, "eps at this step (after the schedule)", eps,
                               "> 0 and finite");
    const std::size_t n_out = outcome_count(q);
    st.reserve(q, n_out);

    step_report r;
    r.call = call;
    r.step = k;
    r.seed = seed;
    r.eps = eps;
    r.queries = q;

    // The mask, from the unperturbed parameters.
    if constexpr (masked) {
      if (st.pending) settle(s);
      if (mask_.dynamic || !st.mask.ready) st.mask.compute(p, mask_);
    }
    const mask_view mv = masked ? st.mask.view() : mask_view{};
    auto pass = [&](std::initializer_list<pass_term<T>> terms) {
      perturb_pass<masked>(p, dir_, mv, terms.begin(), terms.size(), ex);
    };
    auto norm_of = [&](std::uint64_t sd, std::uint32_t draw) {
      return std::sqrt(direction_squared_norm<masked>(p, dir_, mv, sd, draw, ex));
    };

    // Perturbation scale of each direction (unit sphere: eps / |v_j|).
    double dim = static_cast<double>(p.size());
    if constexpr (masked) dim = static_cast<double>(st.mask.selected);
    for (std::size_t j = 0; j < q; ++j) st.norms[j] = normalized ? norm_of(seed, static_cast<std::uint32_t>(j)) : 1.0;
    auto scale_of = [&](std::size_t j) { return static_cast<T>(normalized ? eps / st.norms[j] : eps); };

    // A pending perturbation from the previous step is this step's first one when it matches.
    bool have_first = false;
    std::size_t active = 0;  // the parameters hold theta + disp * v(seed, active) when perturbed
    bool perturbed = false;
    T disp = T(0);
    if (st.pending) {
      if (first_fusable && st.pending_seed == seed && st.pending_scale == static_cast<double>(scale_of(0))) {
        have_first = true;
        perturbed = true;
        disp = scale_of(0);
      } else {
        const pass_term<T> undo{st.pending_seed, 0, static_cast<T>(-st.pending_scale)};
        perturb_pass<masked>(p, dir_, mv, &undo, 1, ex);
      }
      st.pending = false;
    }

    // Evaluations.
    double* outc = st.outcomes.data();
    bool usable_all = true;
    auto eval_into = [&](std::size_t slot) {
      if constexpr (!std::is_same_v<F, no_objective>) {
        if (kind != run_kind::replay) {
          const evaluation e = detail::evaluate<T>(*f, p);
          ++r.evaluations;
          outc[slot] = e.valid ? e.loss : nan;
          usable_all = usable_all && usable(e);
          return;
        }
      }
      outc[slot] = nan;
    };
    const bool separate = opts_.mode == pass_mode::reference;
    try {
      if (center) eval_into(0);
      const std::size_t off = center ? 1 : 0;
      for (std::size_t j = 0; j < q; ++j) {
        const T sj = scale_of(j);
        const auto dj = static_cast<std::uint32_t>(j);
        if (j == 0) {
          if (!have_first) pass({{seed, 0, sj}});
        } else if (separate) {
          pass({{seed, dj - 1, static_cast<T>(-disp)}});
          pass({{seed, dj, sj}});
        } else {
          pass({{seed, dj - 1, static_cast<T>(-disp)}, {seed, dj, sj}});
        }
        active = j;
        perturbed = true;
        disp = sj;
        if constexpr (Central) {
          eval_into(2 * j);
          const T m2 = static_cast<T>(-(sj + sj));
          pass({{seed, dj, m2}});
          disp = static_cast<T>(-sj);
          eval_into(2 * j + 1);
        } else {
          eval_into(off + j);
        }
      }
    } catch (...) {
      if (perturbed) pass({{seed, static_cast<std::uint32_t>(active), static_cast<T>(-disp)}});
      st.calls = call + 1;
      throw;
    }
    const auto last = static_cast<std::uint32_t>(q - 1);
    const T restore_scale = static_cast<T>(-disp);
    auto restore_pass = [&] { pass({{seed, last, restore_scale}}); };

    // Report the raw evaluations.
    if constexpr (Central) {
      r.loss_plus = outc[0];
      r.loss_minus = outc[1];
      r.projected_gradient = (outc[0] - outc[1]) / (2.0 * eps);
    } else {
      r.loss_plus = outc[center ? 1 : 0];
      r.loss_minus = center ? outc[0] : nan;
      r.projected_gradient = center ? (outc[1] - outc[0]) / eps : nan;
    }
    r.losses = std::span<const double>(outc, n_out);

    // Shape the outcomes and form the coefficients.
    double* coef = st.coefs.data();
    bool ok;
    if (rep != nullptr) {
      ok = !rep->skipped;
      if (ok) {
        for (std::size_t j = 0; j < q; ++j) coef[j] = rep->coefficients[j];
      }
    } else {
      ok = usable_all;
      if (ok) {
        const std::span<const double> rr(outc, n_out);
        st.layout.assign_contiguous(1, n_out);
        s.baseline().compute(rr, st.layout, std::span<double>(st.base.data(), n_out));
        s.normalizer().apply(rr, std::span<const double>(st.base.data(), n_out), st.layout,
                             std::span<double>(st.adv.data(), n_out));
        const double* a = st.adv.data();
        for (std::size_t j = 0; j < q; ++j) {
          double diff, denom;
          if constexpr (Central) {
            diff = a[2 * j] - a[2 * j + 1];
            denom = 2.0 * eps;
          } else {
            diff = center ? a[1 + j] - a[0] : a[j];
            denom = eps;
          }
          double c = diff / (denom * static_cast<double>(q));
          if constexpr (normalized) c *= dim / st.norms[j];
          coef[j] = c;
          ok = ok && std::isfinite(c);
        }
      }
    }
    r.coefficients = std::span<const double>(coef, q);

    if (!ok) {
      restore_pass();
      st.calls = call + 1;
      r.nonfinite = true;
      r.coefficients = {};
      if (kind != run_kind::replay && opts_.on_nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error(std::string(who) + ": non-finite or invalid evaluation at step " + std::to_string(k) +
                              " (L+ = " + stochgrad::detail::num_to_string(r.loss_plus) +
                              ", L- = " + stochgrad::detail::num_to_string(r.loss_minus) +
                              "); the parameters were restored");
      }
      return r;
    }

    for (std::size_t j = 0; j < q; ++j) st.terms[j] = noise_term{seed, static_cast<std::uint32_t>(j), coef[j]};
    const std::span<const noise_term> terms(st.terms.data(), q);
    using source_t = direction_source<T, direction_type, masked>;

    if (kind == run_kind::estimate) {
      restore_pass();
      st.calls = call + 1;
      const source_t src(p, dir_, terms, mv);
      materialize(p, src, out, ex);
      return r;
    }

    // The next step's first perturbation, fused into this update.
    bool fuse_next = !masked && first_fusable && opts_.mode == pass_mode::fused_next;
    std::uint64_t seed_n = 0;
    T scale_n = T(0);
    if (fuse_next) {
      seed_n = rep_next != nullptr ? rep_next->seed : step_seed(st.master_seed, call + 1);
      const double eps_n = rep_next != nullptr ? rep_next->eps : eps_at(k + 1);
      fuse_next = eps_n > 0.0 && std::isfinite(eps_n);
      if (fuse_next) scale_n = static_cast<T>(normalized ? eps_n / norm_of(seed_n, 0) : eps_n);
    }

    update_report ur;
    try {
      if (separate) {
        restore_pass();
        const source_t src(p, dir_, terms, mv);
        ur = s.apply(src);
      } else {
        source_t src(p, dir_, terms, mv);
        src.set_restore(seed, last, restore_scale);
        if (fuse_next) src.set_next(seed_n, 0, scale_n);
        try {
          ur = s.apply(src);
        } catch (...) {
          restore_pass();  // the optimizer threw before its pass: the parameters are still perturbed
          throw;
        }
        if (!ur.applied) restore_pass();  // the optimizer skipped its pass
      }
    } catch (...) {
      st.calls = call + 1;
      throw;
    }
    if (fuse_next && ur.applied) {
      st.pending = true;
      st.pending_seed = seed_n;
      st.pending_scale = static_cast<double>(scale_n);
    }
    st.calls = call + 1;
    r.applied = ur.applied;
    r.update = ur;
    return r;
  }

  difference_options opts_;
  Schedule sched_;
  Mask mask_;
  direction_type dir_;
};

}  // namespace detail

/// Central-difference estimator over q directions (MeZO with `gaussian`, Spall SPSA with
/// `rademacher`, BlackVIP's SPSA with `segmented_uniform`, antithetic ES with group_mean +
/// group_std). See the file comment for the formulas.
/// @tparam Dir      direction: gaussian, rademacher, segmented_uniform, unit_sphere, or a policy object
/// @tparam Schedule perturbation schedule (eps factor, optional q(k)): constant_schedule,
///                  spall_perturbation, dream_schedule
/// @tparam Mask     no_mask or magnitude_mask (Sparse MeZO)
/// @tparam Gen      counter-based generator policy
template <class Dir, class Schedule = constant_schedule, class Mask = no_mask, class Gen = default_generator>
struct two_point : detail::difference_estimator<true, Dir, Schedule, Mask, Gen> {
  using detail::difference_estimator<true, Dir, Schedule, Mask, Gen>::difference_estimator;
  /// Identifies the estimator in saved state with every part that shapes its draws, e.g.
  /// "two_point<gaussian,constant,no_mask,philox_icdf<7>>".
  static constexpr stochgrad::detail::fixed_name name_text{
      "two_point<", detail::direction_name<Dir>(), ",", stochgrad::detail::policy_name<Schedule>(), ",",
      stochgrad::detail::policy_name<Mask>(), ",", stochgrad::detail::policy_name<Gen>(), ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state
};

/// Forward-difference estimator over q directions (RGE with `unit_sphere`; one-point estimates
/// and plain ES with `center = false`). See the file comment for the formulas.
template <class Dir, class Schedule = constant_schedule, class Mask = no_mask, class Gen = default_generator>
struct one_sided : detail::difference_estimator<false, Dir, Schedule, Mask, Gen> {
  using detail::difference_estimator<false, Dir, Schedule, Mask, Gen>::difference_estimator;
  /// As two_point's, e.g. "one_sided<unit_sphere,constant,no_mask,philox_icdf<7>>".
  static constexpr stochgrad::detail::fixed_name name_text{
      "one_sided<", detail::direction_name<Dir>(), ",", stochgrad::detail::policy_name<Schedule>(), ",",
      stochgrad::detail::policy_name<Mask>(), ",", stochgrad::detail::policy_name<Gen>(), ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state
};

}  // namespace stochgrad::zo
