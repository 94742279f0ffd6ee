// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::hizoo`: HiZOO (Zhao et al., ICLR 2025, "Second-Order Fine-Tuning without Pain for
/// LLMs: a Hessian Informed Zeroth-Order Optimizer"), MeZO's two-point Gaussian estimate with
/// perturbations and steps preconditioned by a running diagonal Hessian estimate H (one extra
/// parameter-sized buffer, one extra evaluation f(theta) per step).
///
/// One step with seed s (z = z(s), Gaussian, regenerated; H starts at 1; alpha_k = smooth * S(k)):
/// ```
///   L0 = f(theta),  L+ = f(theta + eps sqrt(H) z),  L- = f(theta - eps sqrt(H) z)
///   Hhat = |L+ + L- - 2 L0| / (2 eps^2) * z^2 / H                 (element-wise)
///   H    = max((1 - alpha_k) H + alpha_k Hhat, min_hessian)
///   g    = (L+ - L-) / (2 eps) * z * sqrt(H)                      (the new H)
///   theta = theta - lr (g + wd theta)                             (optim::sgd, coupled decay)
/// ```
/// This is the update of the reference code (Yanjun-Zhao/HiZOO `large_models/trainer.py`,
/// `zo_Hessian_step_update`), which is what stochgrad follows where the paper's notation differs:
/// the smoothed quantity is the diagonal H itself (initialised to ones), the perturbation and the
/// step use sqrt(H) (not H^-1/2), the curvature difference enters through its absolute value, and
/// the step uses the H already updated by this step. stochgrad's only addition is the floor
/// `min_hessian` (default 1e-12), the documented fallback for a vanishing estimate (e.g. alpha = 1
/// on a locally linear objective), which would otherwise divide by zero at the next step; the
/// reference has no clamp. The reference's extra fourth evaluation after the update (for logging)
/// is not made.
///
/// Expectation: on a quadratic with Hessian A, with D = diag(sqrt(H)), M = D A D, Gaussian z,
/// `E[Hhat_i] = (2 M_ii + tr M) / (2 H_i) = A_ii + tr(M) / (2 H_i)`: the estimate is biased by the
/// trace term (not the true diagonal A_ii); tests/zo/hizoo.cpp checks this closed form.
///
/// Passes per step: L0 (none), +eps (one), -2 eps (one), then restore + H update + SGD update in
/// one fused pass (the gradient source below writes H as the optimizer's pass reads it). The
/// optimizer must be optim::sgd without clipping and without the non-finite skip (they read the
/// source in a pre-pass; checked at each step before anything changes).
///
/// Faults: an objective that throws leaves the parameters restored (perturbation_guard); a
/// non-finite or invalid evaluation restores them, leaves H unchanged and skips the update (or
/// throws nonfinite_error under nonfinite_policy::throw_error).
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
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "directions.hpp"
#include "objective.hpp"
#include "perturbation_guard.hpp"

namespace stochgrad::zo {

/// Options of `hizoo` (reference defaults: eps = zo_eps 1e-3; smooth is the `hessian_smooth_type`
/// constant, e.g. 1e-8 in the reference scripts).
struct hizoo_options {
  double eps = 1e-3;            ///< perturbation size, finite and > 0
  double smooth = 1e-8;         ///< Hessian smoothing alpha (times the schedule), in [0, 1]
  double min_hessian = 1e-12;   ///< floor of H (fallback for a vanishing estimate), finite and > 0
  std::uint64_t seed = 0;       ///< master seed; step seeds are `step_seed(seed, call)`
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;  ///< what a non-finite evaluation does

  /// @throws invalid_argument naming the option and its range.
  void validate() const {
    stochgrad::detail::require(eps > 0.0 && std::isfinite(eps), "hizoo", "eps", eps, "> 0 and finite");
    stochgrad::detail::require(smooth >= 0.0 && smooth <= 1.0, "hizoo", "smooth", smooth, "in [0, 1]");
    stochgrad::detail::require(min_hessian > 0.0 && std::isfinite(min_hessian), "hizoo", "min_hessian", min_hessian,
                               "> 0 and finite");
  }
};

/// Sized state of `hizoo`: the call counter, the master seed and the diagonal H (one buffer per
/// tensor, initialised to ones).
template <real_scalar T>
struct hizoo_state {
  std::uint64_t master_seed = 0;             ///< master seed
  std::uint64_t calls = 0;                   ///< step calls so far (also skipped ones)
  std::vector<std::vector<T>> hessian;       ///< H, per tensor
  double outcomes[3] = {0.0, 0.0, 0.0};      ///< L0, L+, L- of the last step (workspace; not saved)
  double coefficient = 0.0;                  ///< (L+ - L-)/(2 eps) of the last step (workspace)

  /// Saves/loads seed, calls and H (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("hizoo_master_seed", master_seed);
    ar.field("hizoo_calls", calls);
    ar.field("hizoo_hessian", hessian);
  }
};

namespace detail {

/// Perturbs along `sqrt(H) * z(seed, stream = tensor, draw)`: x = madd(d * sqrt(H_i), z_i, x).
/// The perturber of `hizoo`'s perturbation_guard (see perturbation_guard.hpp).
template <real_scalar T, class Dir>
struct hessian_perturber {
  using value_type = T;
  using draw_type = std::uint32_t;
  const parameters<T>* params;
  const std::vector<std::vector<T>>* hessian;
  const Dir* dir;
  executor ex{};

  /// theta -> theta + to sqrt(H) z.
  void displace(std::uint64_t seed, draw_type draw, T to) const { pass(seed, draw, to); }
  /// theta + from sqrt(H) z -> theta + to sqrt(H) z (one pass of to - from).
  void redisplace(std::uint64_t seed, draw_type draw, T from, T to) const { pass(seed, draw, static_cast<T>(to - from)); }
  /// Between draws (hizoo uses one draw): two passes.
  void move(std::uint64_t seed, draw_type a, T from, draw_type b, T to) const {
    pass(seed, a, static_cast<T>(-from));
    pass(seed, b, to);
  }
  /// theta + from sqrt(H) z -> theta (up to rounding).
  void undo(std::uint64_t seed, draw_type draw, T from) const noexcept { pass(seed, draw, static_cast<T>(-from)); }

 private:
  void pass(std::uint64_t seed, draw_type draw, T d) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
    for (std::size_t t = 0; t < params->tensors(); ++t) {
      T* x = params->tensor(t).data();
      const T* h = (*hessian)[t].data();
      const noise_key key{seed, params->stream(t), draw};
      stochgrad::detail::parallel_ranges(ex, params->tensor(t).size(), [&](std::size_t b, std::size_t e) {
        const B db(d);
        std::size_t i = b;
        for (; i + C <= e; i += C) {
          B v[NB];
          dir->template chunk<T>(key, i, v);
          for (std::size_t r = 0; r < NB; ++r) {
            const B a = db * xsimd::sqrt(B::load_unaligned(h + i + r * W));
            simd::madd(a, v[r], B::load_unaligned(x + i + r * W)).store_unaligned(x + i + r * W);
          }
        }
        for (; i < e; ++i) x[i] = simd::madd(static_cast<T>(d * std::sqrt(h[i])), dir->template value<T>(key, i), x[i]);
      });
    }
  }
};

}  // namespace detail

/// The lazy HiZOO gradient of one step, read once by optim::sgd's fused pass. Per element, with
/// the parameters holding theta - eps sqrt(H) z:
/// ```
///   theta += eps sqrt(H) z                      (restore, bitwise the guard's undo)
///   H      = max((1 - alpha) H + c_h z^2 / H, h_min),   c_h = alpha |L+ + L- - 2 L0| / (2 eps^2)
///   g      = (c_g z) sqrt(H),                           c_g = (L+ - L-) / (2 eps)
/// ```
/// It WRITES H as it is read, so it must be read exactly once (no pre-pass).
template <real_scalar T, class Dir>
class hessian_source {
 public:
  /// Over parameters `p` and H `h` (both must outlive the source), seed of the step, the
  /// restore scale `eps`, and the coefficients of the file comment.
  hessian_source(const parameters<T>& p, std::vector<std::vector<T>>& h, const Dir& dir, std::uint64_t seed, T eps,
                 T c_g, T c_h, T keep, T h_min) noexcept
      : p_(&p), h_(&h), dir_(dir), seed_(seed), eps_(eps), cg_(c_g), ch_(c_h), keep_(keep), hmin_(h_min) {}

  /// Registers of tensor t at [i, i + chunk): restores theta, updates H, writes g.
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    B v[NB];
    dir_.template chunk<T>(noise_key{seed_, p_->stream(t), 0}, i, v);
    T* h = (*h_)[t].data() + i;
    const B eps(eps_), cg(cg_), ch(ch_), keep(keep_), hmin(hmin_);
    for (std::size_t r = 0; r < NB; ++r) {
      const B hv = B::load_unaligned(h + r * W);
      theta[r] = simd::madd(eps * xsimd::sqrt(hv), v[r], theta[r]);
      const B hn = xsimd::max(simd::madd(keep, hv, ch * ((v[r] * v[r]) / hv)), hmin);
      hn.store_unaligned(h + r * W);
      out[r] = (cg * v[r]) * xsimd::sqrt(hn);
    }
  }
  /// Element i of tensor t, bitwise equal to `load_chunk`.
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const T v = dir_.template value<T>(noise_key{seed_, p_->stream(t), 0}, i);
    T& h = (*h_)[t][i];
    const T hv = h;
    th = simd::madd(static_cast<T>(eps_ * std::sqrt(hv)), v, th);
    T hn = simd::madd(keep_, hv, static_cast<T>(ch_ * ((v * v) / hv)));
    hn = hn < hmin_ ? hmin_ : hn;
    h = hn;
    return (cg_ * v) * std::sqrt(hn);
  }
  /// @throws size_mismatch unless H has one buffer per tensor of the tensor's length.
  void check(const parameters<T>& p) const {
    stochgrad::detail::require_same_size("hizoo", "parameter tensors", p.tensors(), "hessian buffers", h_->size());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      stochgrad::detail::require_same_size("hizoo", "parameter tensor", p.tensor(t).size(), "hessian buffer",
                                           (*h_)[t].size());
    }
  }

 private:
  const parameters<T>* p_;
  std::vector<std::vector<T>>* h_;
  Dir dir_;
  std::uint64_t seed_;
  T eps_, cg_, ch_, keep_, hmin_;
};

namespace detail {
template <class O>
inline constexpr bool is_sgd = false;
template <class S>
inline constexpr bool is_sgd<optim::sgd<S>> = true;
}  // namespace detail

/// HiZOO estimator (see the file comment). Use with `no_baseline`, `no_normalizer` and
/// `optim::sgd` (the reference's MeZO-SGD with coupled weight decay on every parameter).
/// @tparam Smooth schedule of the Hessian smoothing: alpha_k = smooth * Smooth(k)
/// @tparam Dir    direction (Gaussian in the reference)
/// @tparam Gen    counter-based generator policy
template <schedule_policy Smooth = constant_schedule, class Dir = gaussian, class Gen = default_generator>
class hizoo {
 public:
  using direction_type = direction_t<Dir, Gen>;  ///< the direction policy object
  using options_type = hizoo_options;            ///< what `stepper(params, opt, {.eps = ...})` builds it from
  /// Sized state (hizoo_state).
  template <class T>
  using state = hizoo_state<T>;
  /// Losses at perturbed points; directions regenerated from seeds.
  static constexpr estimator_family family = estimator_family::zeroth_order;
  /// Identifies the estimator in saved state, e.g. "hizoo<constant,philox_icdf<7>>".
  static constexpr stochgrad::detail::fixed_name name_text{"hizoo<", stochgrad::detail::policy_name<Smooth>(), ",",
                                                          stochgrad::detail::policy_name<Gen>(), ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state

  /// Default options (eps 1e-3, smooth 1e-8).
  hizoo() : hizoo(hizoo_options{}) {}
  /// @throws invalid_argument for a bad option (hizoo_options::validate) or schedule.
  explicit hizoo(hizoo_options o, Smooth smooth = {}, direction_type dir = {})
      : o_(o), smooth_(std::move(smooth)), dir_(std::move(dir)) {
    o_.validate();
    if constexpr (requires { smooth_.validate(); }) smooth_.validate();
  }

  /// Fresh state: H = 1 shaped like `p`, calls 0.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.master_seed = o_.seed;
    st.hessian.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.hessian[t].assign(p.tensor(t).size(), T(1));
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp).
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_same_v<B, no_baseline> && std::is_same_v<N, no_normalizer>,
                  "stochgrad::zo::hizoo: the three evaluations of a HiZOO step are not a group of outcomes; use "
                  "no_baseline and no_normalizer");
    static_assert(detail::is_sgd<O>,
                  "stochgrad::zo::hizoo: HiZOO's gradient source updates the Hessian estimate as it is read, once: "
                  "use optim::sgd (the reference's MeZO-SGD)");
    return true;
  }

  /// The options.
  const hizoo_options& options() const noexcept { return o_; }
  /// The smoothing schedule.
  const Smooth& smooth_schedule() const noexcept { return smooth_; }
  /// Smoothing alpha at step k: `smooth * Smooth(k)`.
  double smooth_at(std::uint64_t k) const noexcept { return o_.smooth * static_cast<double>(smooth_(k)); }

  /// One HiZOO step (file comment): 3 evaluations of `f`, then the fused restore + H + SGD pass.
  /// @throws invalid_argument before anything changes if the optimizer clips or skips non-finite
  /// gradients, if alpha at this step is outside [0, 1], or the objective does not fit; whatever
  /// `f` throws (parameters restored, H unchanged); nonfinite_error under throw_error.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    const auto& so = s.optimizer().options();
    stochgrad::detail::require(so.max_grad_norm == 0.0, "hizoo", "optimizer max_grad_norm", so.max_grad_norm,
                               "0 (the HiZOO source is read once: no clipping pre-pass)");
    stochgrad::detail::require(!so.skip_nonfinite, "hizoo", "optimizer skip_nonfinite", 1.0,
                               "false (the HiZOO source is read once: no pre-pass)");
    const double alpha = smooth_at(s.steps());
    stochgrad::detail::require(alpha >= 0.0 && alpha <= 1.0, "hizoo", "smooth at this step (after the schedule)", alpha,
                               "in [0, 1]");
    auto& st = s.est_state();
    stochgrad::detail::require_same_size("hizoo", "parameter tensors", s.params().tensors(), "hessian buffers",
                                         st.hessian.size());
    const double eps = o_.eps;
    step_report r;
    r.call = st.calls;
    r.step = s.steps();
    r.seed = step_seed(st.master_seed, st.calls);
    r.eps = eps;
    r.queries = 1;
    st.calls += 1;
    detail::hessian_perturber<T, direction_type> pert{&s.params(), &st.hessian, &dir_, s.exec()};
    detail::perturbation_guard g(pert, r.seed);
    bool ok = true;
    auto record = [&](std::size_t slot) {
      const evaluation e = detail::evaluate<T>(f, s.params());
      ++r.evaluations;
      st.outcomes[slot] = e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
      ok = ok && detail::usable(e);
    };
    record(0);
    g.move_to(0, static_cast<T>(eps));
    record(1);
    g.move_to(0, static_cast<T>(-eps));
    record(2);
    const double l0 = st.outcomes[0], lp = st.outcomes[1], lm = st.outcomes[2];
    r.loss_plus = lp;
    r.loss_minus = lm;
    r.losses = std::span<const double>(st.outcomes, 3);
    st.coefficient = (lp - lm) / (2.0 * eps);
    r.projected_gradient = st.coefficient;
    const double ch = alpha * std::abs(lp + lm - 2.0 * l0) / (2.0 * eps * eps);
    if (!ok || !std::isfinite(st.coefficient) || !std::isfinite(ch)) {
      g.restore();
      r.nonfinite = true;
      if (o_.on_nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error("hizoo: non-finite or invalid evaluation at step " + std::to_string(r.step) +
                              "; the parameters were restored");
      }
      return r;
    }
    r.coefficients = std::span<const double>(&st.coefficient, 1);
    const detail::pass_term<T> undo = g.restore_term();
    hessian_source<T, direction_type> src(s.params(), st.hessian, dir_, r.seed, undo.scale,
                                          static_cast<T>(st.coefficient), static_cast<T>(ch),
                                          static_cast<T>(1.0 - alpha), static_cast<T>(o_.min_hessian));
    r.update = s.apply(src);  // throws before its pass: the guard restores on unwind
    r.applied = r.update.applied;
    g.dismiss();
    return r;
  }

 private:
  hizoo_options o_;
  Smooth smooth_;
  direction_type dir_;
};

}  // namespace stochgrad::zo
