// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::spsa2`: second-order SPSA (Spall 2000, "Adaptive stochastic approximation by the
/// simultaneous perturbation method", IEEE TAC 45(10); 2SPSA) in its diagonal form (state O(d)),
/// with the feedback and optimal weighting of Spall 2009 ("Feedback and weighting mechanisms for
/// improving Jacobian estimates in the adaptive simultaneous perturbation algorithm", IEEE TAC 54(6)).
///
/// Step k with c = c_k (eps times the perturbation schedule), ct = ratio * c, and two independent
/// Rademacher directions Delta = v(seed, draw 0), Delta~ = v(seed, draw 1) (regenerated, never
/// stored; 1/Delta = Delta):
/// ```
///   y1 = f(theta + c Delta),  y2 = f(theta + c Delta + ct Delta~),
///   y3 = f(theta - c Delta + ct Delta~),  y4 = f(theta - c Delta)
///   G_i    = (y1 - y4) / (2 c) Delta_i                                   (SPSA gradient)
///   Hhat_i = (y2 - y1 - y3 + y4) / (2 c ct) Delta_i Delta~_i             (diagonal of Spall's
///            symmetrised 1/2 [dG/(2c) Delta^-T + (.)^T], dG = G1(theta + c Delta) - G1(theta - c Delta))
///   Psi_i  = Delta_i Delta~_i S - Hbar_i,  S = sum_j Hbar_j Delta_j Delta~_j (feedback, Spall 2009:
///            the diagonal of 1/2 [D~^T Hbar D + D^T Hbar D~], D = Delta Delta^-T - I; 0 when off)
///   Hbar   = (1 - w_k) Hbar + w_k (Hhat - Psi),
///            w_k = 1/(k+1) (Spall 2000 average) or c_k^2 ct_k^2 / sum_{i<=k} c_i^2 ct_i^2 (Spall 2009 optimal)
///   theta  = theta - a_k G_i / (|Hbar_i| + delta)                        (optim::sgd's lr a_k)
/// ```
/// `|Hbar_i| + delta` is Spall's positive-definite mapping f_k(Hbar) = (Hbar Hbar)^{1/2} + delta I
/// restricted to a diagonal: a negative entry is used by its magnitude, a zero one gives 1/delta
/// (delta > 0), so the step is defined for every Hbar (the documented fallback for a singular or
/// negative estimate). On a quadratic with Hessian A, E[Hhat_i] = A_ii exactly (the cross terms have
/// zero mean: E[Delta_j Delta_i] = E[Delta~_k Delta~_i] = 0 for j, k != i).
///
/// k counts the Hessian updates (the stepper's step counter). Passes: 4 for the evaluations (each a
/// one- or two-term pass through the perturbation_guard), one reduction pass for S (feedback only),
/// then restore + Hbar + update in one pass. The optimizer must be optim::sgd without clipping or
/// the non-finite skip (the source writes Hbar as it is read; checked before anything changes).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/reduce.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "directions.hpp"
#include "hizoo.hpp"
#include "kernels.hpp"
#include "objective.hpp"
#include "perturbation_guard.hpp"
#include "schedules.hpp"

namespace stochgrad::zo {

/// How 2SPSA averages the per-step Hessian estimates.
enum class spsa2_weighting {
  average,  ///< w_k = 1/(k+1) (Spall 2000)
  optimal,  ///< w_k = c_k^2 ct_k^2 / sum_{i<=k} c_i^2 ct_i^2 (Spall 2009, the 2SPSA case)
};

/// Options of `spsa2`.
struct spsa2_options {
  double eps = 1e-2;        ///< c (times the perturbation schedule), finite and > 0
  double ratio = 1.0;       ///< ct_k / c_k, finite and > 0
  double delta = 1e-4;      ///< delta of the positive-definite mapping |Hbar| + delta, finite and > 0
  bool feedback = true;     ///< subtract Spall 2009's feedback term Psi
  spsa2_weighting weighting = spsa2_weighting::optimal;  ///< averaging weights
  std::uint64_t seed = 0;   ///< master seed; step seeds are `step_seed(seed, call)`
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;  ///< what a non-finite evaluation does

  /// @throws invalid_argument naming the option and its range.
  void validate() const {
    stochgrad::detail::require(eps > 0.0 && std::isfinite(eps), "spsa2", "eps", eps, "> 0 and finite");
    stochgrad::detail::require(ratio > 0.0 && std::isfinite(ratio), "spsa2", "ratio", ratio, "> 0 and finite");
    stochgrad::detail::require(delta > 0.0 && std::isfinite(delta), "spsa2", "delta", delta, "> 0 and finite");
  }
};

/// Sized state of `spsa2`.
template <real_scalar T>
struct spsa2_state {
  std::uint64_t master_seed = 0;          ///< master seed
  std::uint64_t calls = 0;                ///< step calls so far (also skipped ones)
  double weight_sum = 0.0;                ///< sum_{i<=k} c_i^2 ct_i^2 (optimal weighting)
  std::vector<std::vector<T>> hessian;    ///< Hbar, per tensor (starts at 0)
  double outcomes[4] = {0.0, 0.0, 0.0, 0.0};  ///< y1..y4 of the last step (workspace; not saved)
  double coefficient = 0.0;               ///< (y1 - y4)/(2c) of the last step (workspace)

  /// Saves/loads seed, calls, the weight sum and Hbar (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("spsa2_master_seed", master_seed);
    ar.field("spsa2_calls", calls);
    ar.field("spsa2_weight_sum", weight_sum);
    ar.field("spsa2_hessian", hessian);
  }
};

namespace detail {

/// The perturbations of a 2SPSA step: draw b in {0, 1} with displacement d means
/// theta + d Delta + b ct Delta~ (Delta = draw 0, Delta~ = draw 1 of the seed); one pass per move.
template <real_scalar T, class Dir>
struct spsa2_perturber {
  using value_type = T;
  using draw_type = std::uint32_t;
  const parameters<T>* params;
  const Dir* dir;
  T ct = T(0);
  executor ex{};

  /// theta -> theta + to Delta + b ct Delta~.
  void displace(std::uint64_t seed, draw_type b, T to) const { pass(seed, to, b != 0 ? ct : T(0)); }
  /// Same b, displacement from -> to.
  void redisplace(std::uint64_t seed, draw_type, T from, T to) const { pass(seed, static_cast<T>(to - from), T(0)); }
  /// (a, from) -> (b, to).
  void move(std::uint64_t seed, draw_type a, T from, draw_type b, T to) const {
    const T db = b == a ? T(0) : (b != 0 ? ct : static_cast<T>(-ct));
    pass(seed, static_cast<T>(to - from), db);
  }
  /// (b, from) -> theta.
  void undo(std::uint64_t seed, draw_type b, T from) const noexcept {
    pass(seed, static_cast<T>(-from), b != 0 ? static_cast<T>(-ct) : T(0));
  }

 private:
  void pass(std::uint64_t seed, T s0, T s1) const noexcept {
    pass_term<T> terms[2];
    std::size_t n = 0;
    if (s0 != T(0)) terms[n++] = {seed, 0, s0};
    if (s1 != T(0)) terms[n++] = {seed, 1, s1};
    if (n != 0) perturb_pass<false>(*params, *dir, mask_view{}, terms, n, ex);
  }
};

}  // namespace detail

/// The lazy 2SPSA step of one call, read once by optim::sgd's fused pass. Per element, with the
/// parameters holding theta - c Delta:
/// ```
///   theta += c Delta                                   (restore, bitwise the guard's undo)
///   p      = Delta Delta~
///   Hbar   = keep Hbar + w (ch p - fb (p S - Hbar))    (keep = 1 - w; fb = 1 with feedback)
///   g      = (cg Delta) / (|Hbar| + delta)
/// ```
template <real_scalar T, class Dir>
class spsa2_source {
 public:
  /// Over parameters `p` and Hbar `h` (both must outlive the source).
  spsa2_source(const parameters<T>& p, std::vector<std::vector<T>>& h, const Dir& dir, std::uint64_t seed, T c, T cg,
               T ch, T w, T fb, T s, T delta) noexcept
      : p_(&p), h_(&h), dir_(dir), seed_(seed), c_(c), cg_(cg), ch_(ch), w_(w), fb_(fb), s_(s), delta_(delta) {}

  /// Registers of tensor t at [i, i + chunk).
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    B v[NB], u[NB];
    const std::uint32_t stream = p_->stream(t);
    dir_.template chunk<T>(noise_key{seed_, stream, 0}, i, v);
    dir_.template chunk<T>(noise_key{seed_, stream, 1}, i, u);
    T* h = (*h_)[t].data() + i;
    const B c(c_), cg(cg_), ch(ch_), w(w_), keep(T(1) - w_), fb(fb_), s(s_), delta(delta_);
    for (std::size_t r = 0; r < NB; ++r) {
      theta[r] = simd::madd(c, v[r], theta[r]);
      const B hv = B::load_unaligned(h + r * W);
      const B pr = v[r] * u[r];
      const B est = ch * pr - fb * (pr * s - hv);
      const B hn = simd::madd(keep, hv, w * est);
      hn.store_unaligned(h + r * W);
      out[r] = (cg * v[r]) / (xsimd::abs(hn) + delta);
    }
  }
  /// Element i of tensor t, bitwise equal to `load_chunk`.
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const std::uint32_t stream = p_->stream(t);
    const T v = dir_.template value<T>(noise_key{seed_, stream, 0}, i);
    const T u = dir_.template value<T>(noise_key{seed_, stream, 1}, i);
    th = simd::madd(c_, v, th);
    T& h = (*h_)[t][i];
    const T hv = h, pr = v * u;
    const T est = ch_ * pr - fb_ * (pr * s_ - hv);
    const T hn = simd::madd(static_cast<T>(T(1) - w_), hv, static_cast<T>(w_ * est));
    h = hn;
    return (cg_ * v) / (std::abs(hn) + delta_);
  }
  /// @throws size_mismatch unless Hbar has one buffer per tensor of the tensor's length.
  void check(const parameters<T>& p) const {
    stochgrad::detail::require_same_size("spsa2", "parameter tensors", p.tensors(), "hessian buffers", h_->size());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      stochgrad::detail::require_same_size("spsa2", "parameter tensor", p.tensor(t).size(), "hessian buffer", (*h_)[t].size());
    }
  }

 private:
  const parameters<T>* p_;
  std::vector<std::vector<T>>* h_;
  Dir dir_;
  std::uint64_t seed_;
  T c_, cg_, ch_, w_, fb_, s_, delta_;
};

/// Diagonal 2SPSA (see the file comment). Use with `no_baseline`, `no_normalizer` and
/// `optim::sgd<spall_gain>` (a_k) — any `optim::sgd` schedule works.
/// @tparam Schedule perturbation schedule of c_k (spall_perturbation: c / (k+1)^0.101)
/// @tparam Dir      direction (Rademacher; a policy object with `inverse = false` for tests)
/// @tparam Gen      counter-based generator policy
template <class Schedule = spall_perturbation, class Dir = rademacher, class Gen = default_generator>
class spsa2 {
 public:
  using direction_type = direction_t<Dir, Gen>;  ///< the direction policy object
  using options_type = spsa2_options;            ///< what `stepper(params, opt, {.eps = ...})` builds it from
  /// Sized state (spsa2_state).
  template <class T>
  using state = spsa2_state<T>;
  /// Losses at perturbed points; directions regenerated from seeds.
  static constexpr estimator_family family = estimator_family::zeroth_order;
  /// Identifies the estimator in saved state, e.g. "spsa2<spall_perturbation,philox_icdf<7>>".
  static constexpr stochgrad::detail::fixed_name name_text{"spsa2<", stochgrad::detail::policy_name<Schedule>(), ",",
                                                          stochgrad::detail::policy_name<Gen>(), ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state

  /// Default options.
  spsa2() : spsa2(spsa2_options{}) {}
  /// @throws invalid_argument for a bad option (spsa2_options::validate) or schedule.
  explicit spsa2(spsa2_options o, Schedule sched = {}, direction_type dir = {})
      : o_(o), sched_(std::move(sched)), dir_(std::move(dir)) {
    static_assert(!direction_type::inverse && !direction_type::normalized,
                  "stochgrad::zo::spsa2: the diagonal form uses 1/Delta = Delta: use rademacher directions");
    o_.validate();
    detail::validate_schedule(sched_);
  }

  /// Fresh state: Hbar = 0 shaped like `p`, calls 0.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.master_seed = o_.seed;
    st.hessian.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.hessian[t].assign(p.tensor(t).size(), T(0));
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp).
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_same_v<B, no_baseline> && std::is_same_v<N, no_normalizer>,
                  "stochgrad::zo::spsa2: the four evaluations of a 2SPSA step are not a group of outcomes; use "
                  "no_baseline and no_normalizer");
    static_assert(detail::is_sgd<O>,
                  "stochgrad::zo::spsa2: the 2SPSA gradient source updates the Hessian estimate as it is read, once: "
                  "use optim::sgd (e.g. optim::sgd<spall_gain> for Spall's a_k)");
    return true;
  }

  /// The options.
  const spsa2_options& options() const noexcept { return o_; }
  /// c_k at step k: `eps * schedule(k)`.
  double eps_at(std::uint64_t k) const noexcept { return o_.eps * static_cast<double>(sched_(k)); }

  /// One 2SPSA step (file comment): 4 evaluations of `f`, then the fused restore + Hbar + update.
  /// @throws invalid_argument before anything changes if the optimizer clips or skips non-finite
  /// gradients, if c_k is not finite and > 0, or the objective does not fit; whatever `f` throws
  /// (parameters restored, Hbar unchanged); nonfinite_error under throw_error.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    const auto& so = s.optimizer().options();
    stochgrad::detail::require(so.max_grad_norm == 0.0, "spsa2", "optimizer max_grad_norm", so.max_grad_norm,
                               "0 (the 2SPSA source is read once: no clipping pre-pass)");
    stochgrad::detail::require(!so.skip_nonfinite, "spsa2", "optimizer skip_nonfinite", 1.0,
                               "false (the 2SPSA source is read once: no pre-pass)");
    const std::uint64_t k = s.steps();
    const double c = eps_at(k), ct = o_.ratio * c;
    stochgrad::detail::require(c > 0.0 && std::isfinite(c) && ct > 0.0 && std::isfinite(ct), "spsa2",
                               "c_k at this step (after the schedule)", c, "> 0 and finite");
    auto& st = s.est_state();
    stochgrad::detail::require_same_size("spsa2", "parameter tensors", s.params().tensors(), "hessian buffers",
                                         st.hessian.size());
    step_report r;
    r.call = st.calls;
    r.step = k;
    r.seed = step_seed(st.master_seed, st.calls);
    r.eps = c;
    r.queries = 1;
    st.calls += 1;
    detail::spsa2_perturber<T, direction_type> pert{&s.params(), &dir_, static_cast<T>(ct), s.exec()};
    detail::perturbation_guard g(pert, r.seed);
    bool ok = true;
    auto record = [&](std::size_t slot) {
      const evaluation e = detail::evaluate<T>(f, s.params());
      ++r.evaluations;
      st.outcomes[slot] = e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
      ok = ok && detail::usable(e);
    };
    const T cT = static_cast<T>(c);
    g.move_to(0, cT);
    record(0);
    g.move_to(1, cT);
    record(1);
    g.move_to(1, static_cast<T>(-cT));
    record(2);
    g.move_to(0, static_cast<T>(-cT));
    record(3);
    const double y1 = st.outcomes[0], y2 = st.outcomes[1], y3 = st.outcomes[2], y4 = st.outcomes[3];
    r.loss_plus = y1;
    r.loss_minus = y4;
    r.losses = std::span<const double>(st.outcomes, 4);
    st.coefficient = (y1 - y4) / (2.0 * c);
    r.projected_gradient = st.coefficient;
    const double ch = (y2 - y1 - y3 + y4) / (2.0 * c * ct);
    if (!ok || !std::isfinite(st.coefficient) || !std::isfinite(ch)) {
      g.restore();
      r.nonfinite = true;
      if (o_.on_nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error("spsa2: non-finite or invalid evaluation at step " + std::to_string(k) +
                              "; the parameters were restored");
      }
      return r;
    }
    r.coefficients = std::span<const double>(&st.coefficient, 1);
    const double cc = c * c * ct * ct;
    const double wsum = st.weight_sum + cc;
    const double w = o_.weighting == spsa2_weighting::average ? 1.0 / (static_cast<double>(k) + 1.0)
                                                              : (wsum > 0.0 ? cc / wsum : 1.0);
    const double fs = o_.feedback ? feedback_sum(s.params(), st.hessian, r.seed, s.exec()) : 0.0;
    const detail::pass_term<T> undo = g.restore_term();
    spsa2_source<T, direction_type> src(s.params(), st.hessian, dir_, r.seed, undo.scale, static_cast<T>(st.coefficient),
                                        static_cast<T>(ch), static_cast<T>(w), static_cast<T>(o_.feedback ? 1.0 : 0.0),
                                        static_cast<T>(fs), static_cast<T>(o_.delta));
    r.update = s.apply(src);  // throws before its pass: the guard restores on unwind
    r.applied = r.update.applied;
    g.dismiss();
    st.weight_sum = wsum;
    return r;
  }

 private:
  /// S = sum_j Hbar_j Delta_j Delta~_j over all tensors (thread-count independent order).
  template <class T>
  double feedback_sum(const parameters<T>& p, const std::vector<std::vector<T>>& h, std::uint64_t seed,
                      const executor& ex) const {
    double total = 0.0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const noise_key k0{seed, p.stream(t), 0}, k1{seed, p.stream(t), 1};
      const T* hp = h[t].data();
      auto leaf = [&](std::size_t b, std::size_t e) {
        using B = xsimd::batch<T>;
        constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
        B vacc(T(0));
        std::size_t i = b;
        for (; i + C <= e; i += C) {  // Delta Delta~ is +-1: the products in T are exact
          B v[NB], u[NB];
          dir_.template chunk<T>(k0, i, v);
          dir_.template chunk<T>(k1, i, u);
          for (std::size_t r = 0; r < NB; ++r) vacc = simd::madd(B::load_unaligned(hp + i + r * W), v[r] * u[r], vacc);
        }
        double acc = static_cast<double>(simd::reduce_add(vacc));
        for (; i < e; ++i) {
          acc += static_cast<double>(hp[i]) *
                 static_cast<double>(dir_.template value<T>(k0, i) * dir_.template value<T>(k1, i));
        }
        return acc;
      };
      total += stochgrad::detail::tree_reduce<double>(ex, p.tensor(t).size(), 0.0, leaf, stochgrad::detail::add_d);
    }
    return total;
  }

  spsa2_options o_;
  Schedule sched_;
  direction_type dir_;
};

}  // namespace stochgrad::zo
