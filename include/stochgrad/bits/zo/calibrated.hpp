// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::calibrated<Inner>`: SPSA without hand-set gains. Before the first step the gains
/// are calibrated from a few evaluations at the starting point (Spall's practical guidelines, the
/// first-step magnitude rule of qiskit's `calibrate`, and a sufficient-decrease check of the first
/// step); during training, optional blocking rejects a step whose loss rises by more than the
/// measured noise allows.
///
/// Calibration at the starting point theta_0 (every evaluation counted in the report):
/// ```
///   noise      y_1..y_n = f(theta_0) (n = noise_samples); y_0 = mean, sigma = sample std (0 if n < 2)
///   c          c (option) or clamp(sigma, c_min, c_max) with c_min = c_floor * max(1, rms(theta_0)),
///              c_max = 0.1 * max(1, rms(theta_0))   (Spall: c about the noise std; small if noise-free)
///   magnitude  for j = 1..m (m = gradient_probes, Delta_j from the counter-based generator):
///              g_j = (f(theta_0 + c Delta_j) - f(theta_0 - c Delta_j)) / (2c),  G = mean_j |g_j|
///   first step a_0 = s / G, s = first_step (default 0.1 * rms(theta_0), or 0.1 when theta_0 = 0):
///              the first update moves each entry by about s (qiskit's rule, Spall's "smallest
///              desired change of the entries in early iterations")
///   curvature  for the `curvature_probes` directions of largest |g_j|, with the candidate
///              theta_c = theta_0 - a_0 g_j u_j (u_j = Delta_j, or 1/Delta_j for an inverse-form direction):
///              while f(theta_c) <= y_0 - a_0 g_j^2 / 2 (sufficient decrease) and fewer than
///              `max_expansions` doublings: a_0 <- 2 a_0 (on the first of them); then
///              while f(theta_c) > y_0 - a_0 g_j^2 / 2 + allowed: a_0 <- backtrack * a_0, unless
///              a_0 g_j^2 / 2 drops below the loss's resolution max(allowed, 1e-7 |y_0|): then the
///              probe is inconclusive and a_0 keeps its value from before the probe
///   gains      A = stability_fraction * planned_steps,  a = a_0 (1 + A)^alpha, so that the SPSA gain
///              a_k = a / (k + 1 + A)^alpha starts at a_0 (alpha from the optimizer's spall_gain)
/// ```
/// On a quadratic with Hessian H and +-1 perturbations, `f(theta - a g Delta) - f(theta) =
/// -a g^2 + a^2 g^2 Delta^T H Delta / 2` with `Delta^T H Delta = tr H` for diagonal H, so the
/// sufficient-decrease test accepts exactly `a_0 <= 1 / tr H`, the step that minimises the expected
/// loss after one SPSA step (`E f(theta') = f - a |grad|^2 + a^2 tr(H) |grad|^2 / 2`), and refuses
/// the steps above `2 / tr H` that make SPSA diverge. (The first-step rule alone cannot know the
/// curvature; this check is the library's addition.)
///
/// Blocking (qiskit's `blocking`): after a step, `f(theta_{k+1})` is evaluated (one extra
/// evaluation, counted); if it exceeds the loss of the current iterate by more than `allowed`
/// (`allowed_increase`, default 2 sigma as qiskit's), the parameters are put back bit-for-bit
/// (from a copy) and the step is reported `rejected`; the optimizer's step counter (and so the gain
/// schedule) advances either way, as qiskit's iteration counter does.
///
/// Memory: one copy of the parameters (the calibration perturbs from it and blocking restores from
/// it). Pass mode: `fused` (a pending next-step perturbation cannot be blocked).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/family.hpp"
#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../rng/noise.hpp"
#include "difference.hpp"
#include "directions.hpp"
#include "objective.hpp"

namespace stochgrad::zo {

/// Options of `zo::calibrated` (calibration, blocking, and the inner estimator's seed and q).
struct calibration_options {
  std::uint64_t planned_steps = 1000;  ///< planned optimizer steps, >= 1 (A = stability_fraction * planned_steps)
  double stability_fraction = 0.1;     ///< Spall's A as a fraction of the planned steps, in [0, 1]
  double first_step = 0.0;             ///< desired per-entry size of the first update, > 0; 0: 0.1 rms(theta_0) (0.1 if theta_0 = 0)
  std::size_t gradient_probes = 25;    ///< directions averaged for the gradient magnitude G (qiskit: 25), >= 1
  std::size_t noise_samples = 5;       ///< evaluations of f(theta_0) for y_0 and the noise std sigma, >= 1
  std::size_t curvature_probes = 4;    ///< directions whose first step must decrease the loss (0: no check), <= gradient_probes
  std::size_t max_expansions = 6;      ///< doublings of a_0 allowed by the curvature check
  double backtrack = 0.7;              ///< factor on a_0 when a probe's first step fails the check, in (0, 1)
  double c = 0.0;                      ///< perturbation size c > 0; 0: from the noise (see the file comment)
  double c_floor = 1e-3;               ///< c_min / max(1, rms(theta_0)) when c is derived, > 0
  bool blocking = true;                ///< reject steps that raise the loss by more than `allowed`
  double allowed_increase = -1.0;      ///< the allowed rise of a blocked step; < 0: 2 sigma
  std::size_t q = 1;                   ///< SPSA directions averaged per step, >= 1
  std::uint64_t seed = 0;              ///< master seed (steps and calibration probes)
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;  ///< non-finite evaluations during steps

  /// @throws invalid_argument naming the field, value and allowed range.
  void validate(const char* who) const {
    using stochgrad::detail::require;
    require(planned_steps >= 1, who, "planned_steps", static_cast<double>(planned_steps),
            ">= 1 (the stability constant A is a fraction of the planned steps)");
    require(stability_fraction >= 0.0 && stability_fraction <= 1.0, who, "stability_fraction", stability_fraction,
            "in [0, 1]");
    require(first_step >= 0.0 && std::isfinite(first_step), who, "first_step", first_step,
            "finite and >= 0 (0: from theta_0)");
    require(gradient_probes >= 1, who, "gradient_probes", static_cast<double>(gradient_probes), ">= 1");
    require(noise_samples >= 1, who, "noise_samples", static_cast<double>(noise_samples), ">= 1");
    require(curvature_probes <= gradient_probes, who, "curvature_probes", static_cast<double>(curvature_probes),
            "<= gradient_probes");
    require(max_expansions <= 60, who, "max_expansions", static_cast<double>(max_expansions), "<= 60");
    require(backtrack > 0.0 && backtrack < 1.0, who, "backtrack", backtrack, "in (0, 1)");
    require(c >= 0.0 && std::isfinite(c), who, "c", c, "finite and >= 0 (0: from the noise)");
    require(c_floor > 0.0 && std::isfinite(c_floor), who, "c_floor", c_floor, "finite and > 0");
    require(std::isfinite(allowed_increase), who, "allowed_increase", allowed_increase, "finite (< 0: 2 sigma)");
    require(q >= 1, who, "q", static_cast<double>(q), ">= 1");
  }
};

/// What the calibration measured and set (saved with the stepper's state).
struct calibration_report {
  bool done = false;               ///< calibrated (the gains below are in use)
  double a = 0.0;                  ///< SPSA gain numerator: a_k = a / (k + 1 + A)^alpha
  double A = 0.0;                  ///< stability constant
  double c = 0.0;                  ///< perturbation size c (c_k = c / (k + 1)^gamma)
  double first_gain = 0.0;         ///< a_0 = a / (1 + A)^alpha after the curvature check
  double first_step = 0.0;         ///< the per-entry target s of the first update
  double loss = 0.0;               ///< y_0, the mean loss at theta_0
  double noise_std = 0.0;          ///< sigma, the sample std of the loss at theta_0
  double gradient_magnitude = 0.0; ///< G = mean_j |g_j|
  double allowed_increase = 0.0;   ///< the blocking threshold in use
  std::uint64_t expansions = 0;    ///< doublings of a_0 by the curvature check
  std::uint64_t backtracks = 0;    ///< reductions of a_0 by the curvature check
  std::uint64_t inconclusive = 0;  ///< curvature probes whose decrease could not be resolved (a_0 kept)
  std::uint64_t evaluations = 0;   ///< objective calls made by the calibration

  /// Saves/loads every field (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("cal_done", done);
    ar.field("cal_a", a);
    ar.field("cal_A", A);
    ar.field("cal_c", c);
    ar.field("cal_first_gain", first_gain);
    ar.field("cal_first_step", first_step);
    ar.field("cal_loss", loss);
    ar.field("cal_noise_std", noise_std);
    ar.field("cal_gradient_magnitude", gradient_magnitude);
    ar.field("cal_allowed_increase", allowed_increase);
    ar.field("cal_expansions", expansions);
    ar.field("cal_backtracks", backtracks);
    ar.field("cal_inconclusive", inconclusive);
    ar.field("cal_evaluations", evaluations);
  }
};

/// Sized state of `zo::calibrated`: the inner estimator's state, the calibration, the blocking
/// counters and the parameter copy.
template <real_scalar T, class InnerState>
struct calibrated_state {
  InnerState inner;                  ///< the inner difference estimator's state
  calibration_report calibration;    ///< what the calibration set
  double reference_loss = 0.0;       ///< blocking: the loss of the current iterate
  std::uint64_t rejected = 0;        ///< steps rejected by blocking so far
  std::uint64_t extra_evaluations = 0;  ///< blocking evaluations so far (one per applied step)
  std::vector<std::vector<T>> copy;  ///< scratch: theta before the step (sized at init; not saved)

  /// Saves/loads the calibration, the blocking counters and the inner state.
  template <class Ar>
  void serialize(Ar& ar) {
    calibration.serialize(ar);
    ar.field("cal_reference_loss", reference_loss);
    ar.field("cal_rejected", rejected);
    ar.field("cal_extra_evaluations", extra_evaluations);
    inner.serialize(ar);
  }
};

namespace detail {

/// What the inner estimator sees of the stepper: everything but its estimator state, which is the
/// inner part of the calibrated state.
template <class S, class InnerState>
class inner_stepper_view {
 public:
  using value_type = typename S::value_type;  ///< parameter element type
  inner_stepper_view(S& s, InnerState& st) noexcept : s_(&s), st_(&st) {}
  decltype(auto) params() const noexcept { return s_->params(); }
  InnerState& est_state() noexcept { return *st_; }
  const InnerState& est_state() const noexcept { return *st_; }
  decltype(auto) exec() const noexcept { return s_->exec(); }
  std::uint64_t steps() const noexcept { return s_->steps(); }
  decltype(auto) baseline() noexcept { return s_->baseline(); }
  decltype(auto) baseline() const noexcept { return std::as_const(*s_).baseline(); }
  decltype(auto) normalizer() noexcept { return s_->normalizer(); }
  decltype(auto) normalizer() const noexcept { return std::as_const(*s_).normalizer(); }
  template <class G>
  update_report apply(const G& g, double lr_factor = 1.0) {
    return s_->apply(g, lr_factor);
  }

 private:
  S* s_;
  InnerState* st_;
};

/// Mixed into the seed of the calibration probes ("CALI"), so that the probes never reuse a
/// step's direction (steps use `step_seed(master, call)`).
inline constexpr std::uint32_t calibration_domain = 0x43414C49u;

template <class T>
void copy_params(const parameters<T>& p, std::vector<std::vector<T>>& to) {
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const auto x = p.tensor(t);
    std::copy(x.begin(), x.end(), to[t].begin());
  }
}
template <class T>
void restore_params(const parameters<T>& p, const std::vector<std::vector<T>>& from) noexcept {
  for (std::size_t t = 0; t < p.tensors(); ++t) std::copy(from[t].begin(), from[t].end(), p.tensor(t).begin());
}

}  // namespace detail

/// SPSA with calibrated gains and blocking (see the file comment for the formulas): wraps a
/// difference estimator `Inner` (e.g. `two_point<rademacher, spall_perturbation>`) whose
/// perturbation size c it sets, and sets the optimizer's lr (= a) and spall_gain A. The optimizer
/// must be `optim::sgd<spall_gain>`: the calibration produces Spall's gain sequence
/// `a_k = a / (k + 1 + A)^alpha`.
///
/// The calibration runs on the first step (or when `calibrate(s, f)` is called) and is saved with
/// the stepper's state; the lr/eps passed at construction are replaced by the calibrated values.
/// Replay logs are not supported (blocking's extra evaluation is not a logged scalar).
/// @tparam Inner a two_point or one_sided estimator without a magnitude mask and with
/// non-normalized directions
template <class Inner>
class calibrated {
 public:
  using inner_type = Inner;                 ///< the wrapped difference estimator
  using options_type = calibration_options;  ///< what `stepper(params, opt, {...})` builds it from
  /// Sized state (see calibrated_state).
  template <class T>
  using state = calibrated_state<T, typename Inner::template state<T>>;
  /// Outcomes are losses at perturbed points.
  static constexpr estimator_family family = estimator_family::zeroth_order;
  /// Identifier in saved state, e.g. "calibrated<two_point<rademacher,spall_perturbation,...>>".
  static constexpr stochgrad::detail::fixed_name name_text{"calibrated<", Inner::name, ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state

  /// Default options (1000 planned steps, blocking on).
  calibrated() : calibrated(calibration_options{}) {}
  /// @param o the calibration options; @param sched the inner estimator's perturbation schedule.
  /// @throws invalid_argument for an option outside its range.
  explicit calibrated(calibration_options o, typename Inner::schedule_type sched = {})
      : opts_(o), inner_((o.validate("zo::calibrated"), inner_options(o, o.c > 0.0 ? o.c : 1e-3)), std::move(sched)) {
    static_assert(!Inner::mask_type::enabled, "stochgrad::zo::calibrated: a masked inner estimator is not supported");
    static_assert(!Inner::direction_type::normalized,
                  "stochgrad::zo::calibrated: unit-sphere directions are not supported (use rademacher)");
  }

  /// Fresh state: the inner state, no calibration yet, and the parameter copy.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.inner = inner_.template init<T>(p);
    st.copy.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.copy[t].resize(p.tensor(t).size());
    return st;
  }

  /// Compile-time composition check: the inner estimator's, and an SGD optimizer with Spall's gain.
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_base_of_v<optim::sgd<spall_gain>, O>,
                  "stochgrad::zo::calibrated: the optimizer must be optim::sgd<spall_gain> (the calibration sets "
                  "Spall's gains a and A); for another optimizer use the plain estimator");
    return Inner::template check_composition<B, N, O>();
  }

  /// The options.
  const calibration_options& options() const noexcept { return opts_; }
  /// The inner estimator (its eps is the calibrated c once calibrated).
  const Inner& inner() const noexcept { return inner_; }

  /// Calibrates the gains at the current parameters (again, if already calibrated) and sets them.
  /// Parameters are restored bit-for-bit; no step seed is used.
  /// @throws nonfinite_error if an evaluation at theta_0 is non-finite or invalid (or no step
  /// size passes the curvature check); invalid_argument if the loss does not change over the
  /// probes (G = 0: a constant objective, or c too small); whatever `f` throws. Nothing is changed
  /// when it throws.
  template <class S, class F>
  calibration_report calibrate(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    auto& st = s.est_state();
    calibration_report rep = measure(s, f, st.copy);
    st.calibration = rep;
    st.reference_loss = rep.loss;
    use(s);
    return rep;
  }

  /// One step: calibrates first if needed, then the inner estimator's step, then blocking.
  /// The report's `evaluations` include the calibration's (on the step that ran it) and the
  /// blocking evaluation; `rejected` marks a blocked step (parameters restored, `applied` false).
  /// @throws as calibrate and as the inner step; if `f` throws on the blocking evaluation the
  /// step is undone (parameters restored) and the exception propagates.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    auto& st = s.est_state();
    std::uint64_t cal_evals = 0;
    if (!st.calibration.done) cal_evals = calibrate(s, f).evaluations;
    use(s);
    if (opts_.blocking) detail::copy_params(s.params(), st.copy);
    detail::inner_stepper_view<S, typename Inner::template state<T>> v(s, st.inner);
    step_report r = inner_.step(v, f);
    r.evaluations += static_cast<std::size_t>(cal_evals);
    if (!opts_.blocking || !r.applied) return r;
    evaluation e;
    try {
      e = detail::evaluate<T>(f, s.params());
    } catch (...) {
      detail::restore_params(s.params(), st.copy);
      throw;
    }
    ++r.evaluations;
    ++st.extra_evaluations;
    r.candidate_loss = e.loss;
    if (!detail::usable(e) || e.loss > st.reference_loss + st.calibration.allowed_increase) {
      detail::restore_params(s.params(), st.copy);
      r.applied = false;
      r.rejected = true;
      ++st.rejected;
    } else {
      st.reference_loss = e.loss;
    }
    return r;
  }

  /// The inner estimator's gradient estimate (calibrating first if needed), without an update.
  template <class S, class F, class Out>
  step_report estimate(S& s, F&& f, Out&& out) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    if (!st.calibration.done) calibrate(s, f);
    use(s);
    detail::inner_stepper_view<S, typename Inner::template state<T>> v(s, st.inner);
    return inner_.estimate(v, std::forward<F>(f), std::forward<Out>(out));
  }

  /// No-op: the pass mode is `fused`, so nothing is ever pending.
  template <class S>
  void settle(S&) noexcept {}

 private:
  static difference_options inner_options(const calibration_options& o, double eps) {
    difference_options d;
    d.eps = eps;
    d.q = o.q;
    d.seed = o.seed;
    d.mode = pass_mode::fused;
    d.on_nonfinite = o.on_nonfinite;
    return d;
  }

  // Puts the calibrated gains into the policies (after a load too: policies are not saved).
  template <class S>
  void use(S& s) {
    const auto& cal = s.est_state().calibration;
    if (!cal.done) return;
    if (inner_.options().eps != cal.c) inner_.set_options(inner_options(opts_, cal.c));
    auto& opt = s.optimizer();
    if (opt.options().lr != cal.a || opt.schedule().A != cal.A) {
      optim::sgd_options so = opt.options();
      so.lr = cal.a;
      spall_gain g = opt.schedule();
      g.A = cal.A;
      static_cast<optim::sgd<spall_gain>&>(opt) = optim::sgd<spall_gain>(so, g);
    }
  }

  template <class T, class F>
  static double eval_or_throw(F& f, const parameters<T>& p, const char* where) {
    const evaluation e = detail::evaluate<T>(f, p);
    if (!detail::usable(e)) {
      throw nonfinite_error(std::string("zo::calibrated: the objective is non-finite or invalid ") + where +
                            " (loss " + stochgrad::detail::num_to_string(e.loss) + "): cannot calibrate there");
    }
    return e.loss;
  }

  // Writes theta_0 + scale * u(j) into p, where u is the raw direction (inverse = false) or the
  // gradient direction (1/v for inverse-form directions).
  template <class T>
  void place(const parameters<T>& p, const std::vector<std::vector<T>>& theta0, std::uint64_t seed, std::size_t j,
             double scale, bool gradient_direction) const {
    const auto& dir = inner_.direction();
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const auto x = p.tensor(t);
      const noise_key key{seed, p.stream(t), static_cast<std::uint32_t>(j)};
      for (std::size_t e = 0; e < x.size(); ++e) {
        const double v = static_cast<double>(dir.template value<T>(key, e));
        const double u = (gradient_direction && Inner::direction_type::inverse) ? 1.0 / v : v;
        x[e] = static_cast<T>(static_cast<double>(theta0[t][e]) + scale * u);
      }
    }
  }

  // The calibration proper (file comment); leaves the parameters bit-for-bit as it found them.
  template <class S, class F, class T>
  calibration_report measure(S& s, F& f, std::vector<std::vector<T>>& theta0) const {
    const parameters<T>& p = s.params();
    detail::copy_params(p, theta0);
    struct put_back {
      const parameters<T>& p;
      const std::vector<std::vector<T>>& x0;
      ~put_back() { detail::restore_params(p, x0); }
    } guard{p, theta0};
    calibration_report r;
    double sq = 0.0;
    for (const auto& x : theta0) {
      for (const T v : x) sq += static_cast<double>(v) * static_cast<double>(v);
    }
    const double rms = std::sqrt(sq / static_cast<double>(p.size()));
    // Noise at theta_0.
    double sum = 0.0, sum2 = 0.0;
    const std::size_t n = opts_.noise_samples;
    std::vector<double> y(n);
    for (std::size_t i = 0; i < n; ++i) {
      y[i] = eval_or_throw<T>(f, p, "at the starting point");
      sum += y[i];
    }
    r.evaluations += n;
    r.loss = sum / static_cast<double>(n);
    for (const double v : y) sum2 += (v - r.loss) * (v - r.loss);
    r.noise_std = n >= 2 ? std::sqrt(sum2 / static_cast<double>(n - 1)) : 0.0;
    r.allowed_increase = opts_.allowed_increase >= 0.0 ? opts_.allowed_increase : 2.0 * r.noise_std;
    // Perturbation size.
    const double scale = std::max(1.0, rms);
    r.c = opts_.c > 0.0 ? opts_.c : std::clamp(r.noise_std, opts_.c_floor * scale, std::max(opts_.c_floor, 0.1) * scale);
    // Gradient magnitude over the probes.
    const std::uint64_t seed = step_seed(s.est_state().inner.master_seed ^ 0x9E3779B97F4A7C15ull, 0) ^
                               static_cast<std::uint64_t>(detail::calibration_domain);
    const std::size_t m = opts_.gradient_probes;
    if (m == 0) throw invalid_argument("zo::calibrated: gradient_probes must be >= 1");  // (validated already)
    std::vector<double> g(m);
    double mag = 0.0;
    for (std::size_t j = 0; j < m; ++j) {
      place<T>(p, theta0, seed, j, r.c, false);
      const double yp = eval_or_throw<T>(f, p, "at a calibration probe theta_0 + c Delta");
      place<T>(p, theta0, seed, j, -r.c, false);
      const double ym = eval_or_throw<T>(f, p, "at a calibration probe theta_0 - c Delta");
      r.evaluations += 2;
      g[j] = (yp - ym) / (2.0 * r.c);
      mag += std::abs(g[j]);
    }
    detail::restore_params(p, theta0);
    r.gradient_magnitude = mag / static_cast<double>(m);
    if (!(r.gradient_magnitude > 0.0) || !std::isfinite(r.gradient_magnitude)) {
      throw invalid_argument("zo::calibrated: the loss did not change over " + std::to_string(m) +
                             " probes theta_0 +- c Delta (c = " + stochgrad::detail::num_to_string(r.c) +
                             "): a constant objective, or c too small for it; set calibration_options::c");
    }
    r.first_step = opts_.first_step > 0.0 ? opts_.first_step : (rms > 0.0 ? 0.1 * rms : 0.1);
    double a0 = r.first_step / r.gradient_magnitude;
    // Sufficient decrease of the first step along the first probes.
    const auto decrease_ok = [&](std::size_t j, double a, double allowed) {
      place<T>(p, theta0, seed, j, -a * g[j], true);
      const evaluation e = detail::evaluate<T>(f, p);
      ++r.evaluations;
      return detail::usable(e) && e.loss <= r.loss - 0.5 * a * g[j] * g[j] + allowed;
    };
    // The probes with the largest |g_j| carry the most resolvable decrease; a probe whose
    // predicted decrease a g_j^2 / 2 falls below the loss's resolution is inconclusive and leaves
    // a_0 as it was.
    std::vector<std::size_t> order(m);
    for (std::size_t j = 0; j < m; ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t k) { return std::abs(g[i]) > std::abs(g[k]); });
    const double resolution = std::max(r.allowed_increase, 1e-7 * std::max(std::abs(r.loss), 1e-30));
    for (std::size_t i = 0; i < opts_.curvature_probes; ++i) {
      const std::size_t j = order[i];
      if (i == 0) {
        while (r.expansions < opts_.max_expansions && decrease_ok(j, 2.0 * a0, 0.0)) {
          a0 *= 2.0;
          ++r.expansions;
        }
      }
      const double a_before = a0;
      const std::uint64_t bt_before = r.backtracks;
      while (!decrease_ok(j, a0, r.allowed_increase)) {
        a0 *= opts_.backtrack;
        ++r.backtracks;
        if (0.5 * a0 * g[j] * g[j] < resolution) {
          a0 = a_before;  // inconclusive probe
          r.backtracks = bt_before;
          ++r.inconclusive;
          break;
        }
      }
    }
    if (r.inconclusive == opts_.curvature_probes && opts_.curvature_probes > 0) {
      throw nonfinite_error("zo::calibrated: no first step along the calibration probes decreases the loss "
                            "measurably: check the objective, or set calibration_options::first_step");
    }
    r.first_gain = a0;
    r.A = opts_.stability_fraction * static_cast<double>(opts_.planned_steps);
    r.a = a0 * std::pow(1.0 + r.A, s.optimizer().schedule().alpha);
    r.done = true;
    return r;
  }

  calibration_options opts_;
  Inner inner_;
};

}  // namespace stochgrad::zo
