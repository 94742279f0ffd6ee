// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The difference estimators `two_point` (central differences: MeZO, SPSA, antithetic ES)
/// and `one_sided` (forward differences: RGE, one-point ES) over a direction distribution.
///
/// One step draws q directions `v_j` (seed `step_seed(master, call)`, draw j, stream = tensor) and
/// evaluates the objective at perturbed copies of the parameters, which are perturbed IN PLACE and
/// restored (up to the rounding of the additions) before the update. The outcomes (losses) are
/// shaped by the stepper's baseline and normalizer policies, `a = normalizer(baseline(r))`, over
/// one group holding all outcomes of the step (see group_layout.hpp), and the estimate is the
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
/// MeZO / n-SPSA (princeton-nlp/MeZO `large_models/trainer.py` `zo_step`), Spall SPSA (Spall 1998),
/// BlackVIP's estimator (`trainers/blackvip.py`) and RGE (ZO-AE-DS). A constant baseline cancels in the differences; a normalizer rescales them, so
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
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/scratch.hpp"
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
#include "perturbation_guard.hpp"
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
    using stochgrad::detail::grow;
    grow(outcomes, outcomes_n);
    grow(base, outcomes_n);
    grow(adv, outcomes_n);
    grow(coefs, q);
    grow(norms, q);
    grow(terms, q);
  }
};

/// What the plan phase of one difference step fixes before anything is perturbed.
struct difference_plan {
  std::uint64_t call = 0;  ///< the call number (its seed is consumed once the plan is made)
  std::uint64_t k = 0;     ///< optimizer step (schedules)
  std::uint64_t seed = 0;  ///< noise seed of the step
  std::size_t q = 0;       ///< directions
  std::size_t n_out = 0;   ///< evaluations (outcomes)
  double eps = 0.0;        ///< perturbation size after the schedule
  double dim = 0.0;        ///< perturbed entries (unit-sphere scaling)
  bool center = false;     ///< one_sided with f(theta)
  mask_view mask{};        ///< the mask of this step (empty when unmasked)
};

/// The engine shared by two_point and one_sided. A step runs in named phases:
///   plan      q, eps and seed of the call (validated; the seed is consumed), the mask, the norms
///   evaluate  perturb through one perturbation_guard and evaluate (or, replaying, only perturb)
///   shape     outcomes -> baseline -> normalizer -> one coefficient per direction
///   commit    restore and update (fused into the optimizer's pass), or restore and write the
///             estimate, or restore and skip (non-finite)
/// step, estimate and replay are the three entry points composing them.
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
    opts_.validate(who());
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
    o.validate(who());
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

  /// One step: perturb in place, evaluate `f`, restore, update through the stepper's optimizer
  /// (`g` of the file comment, fused into the optimizer's pass).
  /// @throws whatever `f` throws (parameters restored first); nonfinite_error under
  /// `nonfinite_policy::throw_error`; invalid_argument if the schedule yields eps <= 0 or if `f`
  /// takes a span and the parameter set has several tensors (both before anything changes).
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    check_objective<std::remove_reference_t<F>, T>();
    check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    const difference_plan pl = plan(s, nullptr);
    auto pert = perturber(s, pl);
    perturbation_guard g(pert, pl.seed);
    step_report r = open_report(pl, s.steps());
    const bool usable_all = evaluate_all(s, pl, g, r, [&] { return detail::evaluate<T>(f, s.params()); });
    if (!shape(s, pl, usable_all, r)) return skip(pl, g, r, true);
    commit_update(s, pl, g, r, nullptr);
    return r;
  }

  /// Computes the estimate `g` into `out` (one span per tensor) without updating: the same passes
  /// and evaluations as a step (a seed is consumed; the optimizer step counter is not advanced).
  /// @throws as step; invalid_argument if `out` does not match the parameters' shapes.
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    check_objective<std::remove_reference_t<F>, T>();
    check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    check_outputs(s.params(), out);
    const difference_plan pl = plan(s, nullptr);
    auto pert = perturber(s, pl);
    perturbation_guard g(pert, pl.seed);
    step_report r = open_report(pl, s.steps());
    const bool usable_all = evaluate_all(s, pl, g, r, [&] { return detail::evaluate<T>(f, s.params()); });
    if (!shape(s, pl, usable_all, r)) return skip(pl, g, r, true);
    g.restore();
    using source_t = direction_source<T, direction_type, Mask::enabled>;
    materialize(s.params(), source_t(s.params(), dir_, terms_of(s, pl), pl.mask), out, s.exec());
    return r;
  }
  /// @copydoc estimate
  /// Single-tensor parameter sets.
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<typename S::value_type> out) {
    const std::span<typename S::value_type> one[1] = {out};
    return estimate(s, std::forward<F>(f), std::span<const std::span<typename S::value_type>>(one));
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
    const difference_plan pl = plan(s, &e);
    auto pert = perturber(s, pl);
    perturbation_guard g(pert, pl.seed);
    step_report r = open_report(pl, s.steps());
    evaluate_all(s, pl, g, r, [] { return evaluation{std::numeric_limits<double>::quiet_NaN(), false}; }, false);
    if (!replay_coefficients(s, pl, e, r)) return skip(pl, g, r, false);
    commit_update(s, pl, g, r, next);
    return r;
  }

  /// Removes a pending next-step perturbation (pass_mode::fused_next) so that the parameters are
  /// the current iterate; a no-op otherwise. Costs one pass when something is pending.
  template <class S>
  void settle(S& s) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    if (!st.pending) return;
    direction_perturber<false, T, direction_type> pert{&s.params(), &dir_, mask_view{}, s.exec(), false};
    drop_pending(pert, st);
  }

 private:
  static constexpr const char* who() noexcept { return Central ? "two_point" : "one_sided"; }

  std::size_t outcome_count(std::size_t q) const noexcept {
    return Central ? 2 * q : q + (opts_.center ? 1 : 0);
  }

  template <class T>
  static void check_outputs(const parameters<T>& p, std::span<const std::span<T>> out) {
    stochgrad::detail::require_same_size("estimate", "parameter tensors", p.tensors(), "outputs", out.size());
    for (std::size_t t = 0; t < out.size(); ++t) {
      stochgrad::detail::require_same_size("estimate", "parameter tensor", p.tensor(t).size(), "output",
                                           out[t].size());
    }
  }

  /// Removes the pending perturbation the state records (through a guard that adopts it).
  template <class P, class St>
  static void drop_pending(P& pert, St& st) {
    using T = typename P::value_type;
    perturbation_guard g(pert, st.pending_seed);
    g.adopt(0, static_cast<T>(st.pending_scale));
    g.restore();
    st.pending = false;
  }

  /// Phase plan: q, eps and seed of this call (from the schedule, or from a replay entry),
  /// validated; then the seed is consumed; then the mask and the direction norms.
  template <class S>
  difference_plan plan(S& s, const replay_entry* rep) {
    auto& st = s.est_state();
    difference_plan pl;
    pl.call = st.calls;
    pl.k = s.steps();
    pl.q = rep != nullptr ? static_cast<std::size_t>(rep->queries) : queries_at(pl.k);
    pl.eps = rep != nullptr ? rep->eps : eps_at(pl.k);
    pl.seed = rep != nullptr ? rep->seed : step_seed(st.master_seed, pl.call);
    stochgrad::detail::require(pl.q >= 1, who(), "q at this step", static_cast<double>(pl.q), ">= 1");
    stochgrad::detail::require(pl.eps > 0.0 && std::isfinite(pl.eps), who(), "eps at this step (after the schedule)",
                               pl.eps, "> 0 and finite");
    pl.n_out = outcome_count(pl.q);
    pl.center = !Central && opts_.center;
    st.reserve(pl.q, pl.n_out);
    st.calls = pl.call + 1;  // every call past validation uses its seed up, also one that throws
    pl.dim = static_cast<double>(s.params().size());
    if constexpr (Mask::enabled) {
      if (st.pending) settle(s);
      if (mask_.dynamic || !st.mask.ready) st.mask.compute(s.params(), mask_);
      pl.mask = st.mask.view();
      pl.dim = static_cast<double>(st.mask.selected);
    }
    for (std::size_t j = 0; j < pl.q; ++j) {
      st.norms[j] = direction_type::normalized ? norm_of(s, pl, pl.seed, static_cast<std::uint32_t>(j)) : 1.0;
    }
    return pl;
  }

  template <class S>
  auto perturber(S& s, const difference_plan& pl) const {
    using T = typename S::value_type;
    return direction_perturber<Mask::enabled, T, direction_type>{&s.params(), &dir_, pl.mask, s.exec(),
                                                                  opts_.mode == pass_mode::reference};
  }

  template <class S>
  double norm_of(S& s, const difference_plan& pl, std::uint64_t seed, std::uint32_t draw) const {
    return std::sqrt(direction_squared_norm<Mask::enabled>(s.params(), dir_, pl.mask, seed, draw, s.exec()));
  }

  /// Perturbation scale of direction j: eps, or eps / |v_j| for unit-sphere directions.
  template <class T, class St>
  static T scale_of(const difference_plan& pl, const St& st, std::size_t j) {
    return static_cast<T>(direction_type::normalized ? pl.eps / st.norms[j] : pl.eps);
  }

  static step_report open_report(const difference_plan& pl, std::uint64_t k) {
    step_report r;
    r.call = pl.call;
    r.step = k;
    r.seed = pl.seed;
    r.eps = pl.eps;
    r.queries = pl.q;
    return r;
  }

  /// A pending perturbation from the previous step is this step's first one when it matches
  /// (the guard adopts it); otherwise it is removed.
  template <class S, class G>
  void adopt_pending(S& s, const difference_plan& pl, G& g) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    if (!st.pending) return;
    const bool first_fusable = Central || !opts_.center;
    const T s0 = scale_of<T>(pl, st, 0);
    if (first_fusable && st.pending_seed == pl.seed && st.pending_scale == static_cast<double>(s0)) {
      g.adopt(0, s0);
      st.pending = false;
    } else {
      auto pert = perturber(s, pl);
      drop_pending(pert, st);
    }
  }

  /// Phase evaluate: walks the perturbations of the step through the guard
  ///   two_point: +s_j v_j, -s_j v_j for each j;  one_sided: [theta,] +s_j v_j for each j
  /// and records `eval()` at each one (replay: `evaluating = false`, the outcomes are NaN). Returns
  /// whether every evaluation was usable. The parameters stay perturbed (the guard holds it).
  template <class S, class G, class E>
  bool evaluate_all(S& s, const difference_plan& pl, G& g, step_report& r, E&& eval, bool evaluating = true) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    adopt_pending(s, pl, g);
    double* outc = st.outcomes.data();
    bool usable_all = true;
    auto record = [&](std::size_t slot) {
      if (!evaluating) {
        outc[slot] = std::numeric_limits<double>::quiet_NaN();
        return;
      }
      const evaluation e = eval();
      ++r.evaluations;
      outc[slot] = e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
      usable_all = usable_all && usable(e);
    };
    if (pl.center) record(0);
    const std::size_t off = pl.center ? 1 : 0;
    for (std::size_t j = 0; j < pl.q; ++j) {
      const T sj = scale_of<T>(pl, st, j);
      const auto dj = static_cast<std::uint32_t>(j);
      if (j != 0 || !g.held()) g.move_to(dj, sj);
      if constexpr (Central) {
        record(2 * j);
        g.move_to(dj, static_cast<T>(-sj));
        record(2 * j + 1);
      } else {
        record(off + j);
      }
    }
    report_losses(pl, outc, r);
    return usable_all;
  }

  /// The raw evaluations in the report.
  static void report_losses(const difference_plan& pl, const double* outc, step_report& r) {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    if constexpr (Central) {
      r.loss_plus = outc[0];
      r.loss_minus = outc[1];
      r.projected_gradient = (outc[0] - outc[1]) / (2.0 * pl.eps);
    } else {
      r.loss_plus = outc[pl.center ? 1 : 0];
      r.loss_minus = pl.center ? outc[0] : nan;
      r.projected_gradient = pl.center ? (outc[1] - outc[0]) / pl.eps : nan;
    }
    r.losses = std::span<const double>(outc, pl.n_out);
  }

  /// Phase shape: a = normalizer(baseline(r)) over one group, then the coefficient of each
  /// direction (file comment). Returns false if an evaluation or a coefficient is not finite.
  template <class S>
  bool shape(S& s, const difference_plan& pl, bool usable_all, step_report& r) {
    auto& st = s.est_state();
    double* coef = st.coefs.data();
    r.coefficients = std::span<const double>(coef, pl.q);
    if (!usable_all) return false;
    const std::size_t n = pl.n_out;
    const std::span<const double> rr(st.outcomes.data(), n);
    st.layout.assign_contiguous(1, n);
    s.baseline().compute(rr, st.layout, std::span<double>(st.base.data(), n));
    s.normalizer().apply(rr, std::span<const double>(st.base.data(), n), st.layout, std::span<double>(st.adv.data(), n));
    const double* a = st.adv.data();
    bool ok = true;
    for (std::size_t j = 0; j < pl.q; ++j) {
      double diff, denom;
      if constexpr (Central) {
        diff = a[2 * j] - a[2 * j + 1];
        denom = 2.0 * pl.eps;
      } else {
        diff = pl.center ? a[1 + j] - a[0] : a[j];
        denom = pl.eps;
      }
      double c = diff / (denom * static_cast<double>(pl.q));
      if constexpr (direction_type::normalized) c *= pl.dim / st.norms[j];
      coef[j] = c;
      ok = ok && std::isfinite(c);
    }
    return ok;
  }

  /// Phase shape when replaying: the logged coefficients. Returns false for a logged skip.
  template <class S>
  static bool replay_coefficients(S& s, const difference_plan& pl, const replay_entry& e, step_report& r) {
    double* coef = s.est_state().coefs.data();
    r.coefficients = std::span<const double>(coef, pl.q);
    if (e.skipped) return false;
    for (std::size_t j = 0; j < pl.q; ++j) coef[j] = e.coefficients[j];
    return true;
  }

  /// Commit of a skipped step: restore, report, and throw under nonfinite_policy::throw_error.
  template <class G>
  step_report skip(const difference_plan& pl, G& g, step_report& r, bool may_throw) const {
    g.restore();
    r.nonfinite = true;
    r.coefficients = {};
    if (may_throw && opts_.on_nonfinite == nonfinite_policy::throw_error) {
      throw nonfinite_error(std::string(who()) + ": non-finite or invalid evaluation at step " + std::to_string(pl.k) +
                            " (L+ = " + stochgrad::detail::num_to_string(r.loss_plus) +
                            ", L- = " + stochgrad::detail::num_to_string(r.loss_minus) +
                            "); the parameters were restored");
    }
    return r;
  }

  template <class S>
  static std::span<const noise_term> terms_of(S& s, const difference_plan& pl) {
    auto& st = s.est_state();
    for (std::size_t j = 0; j < pl.q; ++j) {
      st.terms[j] = noise_term{pl.seed, static_cast<std::uint32_t>(j), st.coefs[j]};
    }
    return std::span<const noise_term>(st.terms.data(), pl.q);
  }

  /// Phase commit of an update: the optimizer's pass restores, updates and (fused_next) adds the
  /// next step's first perturbation at once; with pass_mode::reference the guard restores first.
  /// `next` (replay) supplies the next seed and eps. On a throw or a skipped update the guard
  /// restores.
  template <class S, class G>
  void commit_update(S& s, const difference_plan& pl, G& g, step_report& r, const replay_entry* next) {
    using T = typename S::value_type;
    using source_t = direction_source<T, direction_type, Mask::enabled>;
    auto& st = s.est_state();
    const std::span<const noise_term> terms = terms_of(s, pl);
    if (opts_.mode == pass_mode::reference) {
      g.restore();
      r.update = s.apply(source_t(s.params(), dir_, terms, pl.mask));
      r.applied = r.update.applied;
      return;
    }
    bool fuse_next = !Mask::enabled && (Central || !opts_.center) && opts_.mode == pass_mode::fused_next;
    std::uint64_t seed_n = 0;
    T scale_n = T(0);
    if (fuse_next) {
      seed_n = next != nullptr ? next->seed : step_seed(st.master_seed, pl.call + 1);
      const double eps_n = next != nullptr ? next->eps : eps_at(pl.k + 1);
      fuse_next = eps_n > 0.0 && std::isfinite(eps_n);
      if (fuse_next) scale_n = static_cast<T>(direction_type::normalized ? eps_n / norm_of(s, pl, seed_n, 0) : eps_n);
    }
    source_t src(s.params(), dir_, terms, pl.mask);
    const pass_term<T> undo = g.restore_term();
    src.set_restore(undo.seed, undo.draw, undo.scale);
    if (fuse_next) src.set_next(seed_n, 0, scale_n);
    r.update = s.apply(src);  // throws before its pass: the guard restores on unwind
    r.applied = r.update.applied;
    if (!r.applied) return g.restore();  // the optimizer skipped its pass
    g.dismiss();
    if (fuse_next) {
      st.pending = true;
      st.pending_seed = seed_n;
      st.pending_scale = static_cast<double>(scale_n);
    }
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
