// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `optim::adan`: the Adan optimizer (adaptive Nesterov momentum) with the semantics of the
/// reference implementation (sail-sg/Adan `adan.py`, also timm's `Adan`), and
/// optax's variant (`optax.adan`) as the explicitly named option `optax_compat`; one fused pass per step.
///
/// Reference: X. Xie, P. Zhou, H. Li, Z. Lin, S. Yan, "Adan: Adaptive Nesterov Momentum Algorithm
/// for Faster Optimizing Deep Models", IEEE TPAMI 2024 (arXiv 2208.06677).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "parameters.hpp"
#include "schedule.hpp"
#include "source.hpp"

namespace stochgrad::optim {

/// Hyper-parameters of optim::adan (defaults of the reference implementation). Betas use the code
/// convention `m = b1 m + (1 - b1) g` (paper beta = 1 - code beta: Xie et al., arXiv 2208.06677, write `m = (1 - b1) m + b1 g`).
struct adan_options {
  double lr = 1e-3;             ///< learning rate, finite and > 0
  double beta1 = 0.98;          ///< first-moment decay, in [0, 1)
  double beta2 = 0.92;          ///< gradient-difference moment decay, in [0, 1)
  double beta3 = 0.99;          ///< second-moment decay, in [0, 1)
  double eps = 1e-8;            ///< added to sqrt(n_hat) (outside the root); also the clip epsilon; finite and > 0
  double weight_decay = 0.0;    ///< lambda, finite and >= 0 (the reference README suggests 0.02)
  bool no_prox = false;         ///< false: proximal decay theta / (1 + lr lambda); true: theta (1 - lr lambda)
  double max_grad_norm = 0.0;   ///< global-norm clipping (0: off): factor min(max / (norm + eps), 1)
  bool skip_nonfinite = false;  ///< skip the whole update on a NaN/inf gradient element
  /// optax.adan semantics instead of the reference's (optax `scale_by_adan`): the difference is
  /// weighted by (1 - b2) in n and in the update, eps_root inside the square root, and weight
  /// decay `theta - lr (u + lambda theta)` (no_prox is then ignored).
  bool optax_compat = false;
  double eps_root = 1e-8;       ///< only with optax_compat: added to n_hat inside the root, finite and >= 0
};

/// Sized state of optim::adan: a plain aggregate.
template <real_scalar T>
struct adan_state {
  /// Updates applied so far, per parameter group (t - 1 for the bias corrections); 0 also after
  /// restart(), which makes the next update re-initialise g_prev.
  std::vector<std::uint64_t> steps;
  /// First moment m per tensor.
  std::vector<std::vector<T>> exp_avg;
  /// Moment of gradient differences v per tensor.
  std::vector<std::vector<T>> exp_avg_diff;
  /// Second moment n per tensor.
  std::vector<std::vector<T>> exp_avg_sq;
  /// Previous (clipped) gradient per tensor.
  std::vector<std::vector<T>> prev_grad;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var clip
    /// global-norm clipping factor c applied to g
    /// @var b1
    /// beta1
    /// @var omb1
    /// `1 - beta1`
    /// @var b2
    /// beta2
    /// @var omb2
    /// `1 - beta2`
    /// @var b3
    /// beta3
    /// @var omb3
    /// `1 - beta3`
    /// @var eps
    /// epsilon added to the denominator (outside the root)
    T clip, b1, omb1, b2, omb2, b3, omb3, eps;
    /// @var inv_sqrt_bc3
    /// reference form: `1 / sqrt(1 - beta3^t)`, so that d = sqrt(n) inv_sqrt_bc3 + eps
    /// @var step1
    /// reference form: `lr_t / (1 - beta1^t)`, the coefficient of m / d
    /// @var step2
    /// reference form: `lr_t beta2 / (1 - beta2^t)`, the coefficient of v / d
    /// @var shrink
    /// reference form: weight-decay factor, `1 + lr_t lambda` (proximal: theta is divided by it)
    /// or `1 - lr_t lambda` (no_prox: theta is multiplied by it)
    T inv_sqrt_bc3, step1, step2, shrink;  // reference form
    /// @var ibc1
    /// optax form: `1 / (1 - beta1^t)`, m_hat = m ibc1
    /// @var ibc2
    /// optax form: `1 / (1 - beta2^t)`, v_hat = v ibc2
    /// @var ibc3
    /// optax form: `1 / (1 - beta3^t)`, n_hat = n ibc3
    /// @var eps_root
    /// optax form: epsilon added to n_hat inside the square root
    /// @var neg_lr
    /// optax form: `-lr_t`
    /// @var wd
    /// optax form: the group's weight decay lambda in `theta - lr_t (u + lambda theta)`
    T ibc1, ibc2, ibc3, eps_root, neg_lr, wd;  // optax form
    /// @var clipping
    /// whether c != 1 (gradient scaled)
    /// @var first
    /// first update of the group (steps == 0): g_prev is set to g, so the difference is 0
    /// @var prox
    /// proximal weight decay (`!no_prox`)
    /// @var decay
    /// the group's lambda != 0 (reference form applies `shrink`)
    bool clipping, first, prox, decay;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters and moments (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("adan.steps", steps);
    ar.field("adan.exp_avg", exp_avg);
    ar.field("adan.exp_avg_diff", exp_avg_diff);
    ar.field("adan.exp_avg_sq", exp_avg_sq);
    ar.field("adan.prev_grad", prev_grad);
  }
  /// @throws state_error unless the state fits `p`.
  void check(const parameters<T>& p) const {
    detail::check_group_steps("adan", steps, p);
    detail::check_tensor_buffers("adan", "adan.exp_avg", exp_avg, p);
    detail::check_tensor_buffers("adan", "adan.exp_avg_diff", exp_avg_diff, p);
    detail::check_tensor_buffers("adan", "adan.exp_avg_sq", exp_avg_sq, p);
    detail::check_tensor_buffers("adan", "adan.prev_grad", prev_grad, p);
  }
};

namespace detail {

// The reference update (sail-sg/Adan `adan.py`, `_single_tensor_adan`) of one element or register.
template <class V, class T>
STOCHGRAD_ALWAYS_INLINE void adan_apply(const typename adan_state<T>::group_coeffs& c, V& th, V g, V& gp, V& m,
                                        V& v, V& n) noexcept {
  if (c.clipping) g = g * V(c.clip);
  if (c.first) gp = g;
  const V diff = g - gp;
  m = simd::madd(V(c.b1), m, V(c.omb1) * g);
  v = simd::madd(V(c.b2), v, V(c.omb2) * diff);
  const V u = simd::madd(V(c.b2), diff, g);
  n = simd::madd(V(c.omb3) * u, u, V(c.b3) * n);
  const V den = simd::madd(vsqrt(n), V(c.inv_sqrt_bc3), V(c.eps));
  const V upd = simd::madd(V(c.step1), m, V(c.step2) * v) / den;
  if (!c.decay) {
    th = th - upd;
  } else if (c.prox) {
    th = (th - upd) / V(c.shrink);
  } else {
    th = simd::madd(th, V(c.shrink), -upd);
  }
  gp = g;
}

// optax.adan (scale_by_adan + add_decayed_weights + learning rate).
template <class V, class T>
STOCHGRAD_ALWAYS_INLINE void adan_apply_optax(const typename adan_state<T>::group_coeffs& c, V& th, V g, V& gp,
                                              V& m, V& v, V& n) noexcept {
  if (c.clipping) g = g * V(c.clip);
  if (c.first) gp = g;
  const V diff = g - gp;
  m = simd::madd(V(c.omb1), g, V(c.b1) * m);
  v = simd::madd(V(c.omb2), diff, V(c.b2) * v);
  const V sq = simd::madd(V(c.omb2), diff, g);
  n = simd::madd(V(c.omb3) * sq, sq, V(c.b3) * n);
  const V den = vsqrt(simd::madd(n, V(c.ibc3), V(c.eps_root))) + V(c.eps);
  const V u = simd::madd(V(c.omb2), v * V(c.ibc2), m * V(c.ibc1)) / den;
  th = simd::madd(V(c.neg_lr), simd::madd(V(c.wd), th, u), th);
  gp = g;
}

}  // namespace detail

/// Adan as implemented by sail-sg/Adan (`adan.py`) and timm (`timm.optim.Adan`).
/// Per group step t (from 1), learning rate `lr_t`, clipping factor c, per element:
/// \f[ g \leftarrow c\,g,\quad \Delta = g - g_{prev}\ (0 \text{ at } t = 1),\quad
///     m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2)\Delta, \f]
/// \f[ n \leftarrow \beta_3 n + (1-\beta_3)(g + \beta_2\Delta)^2,\quad
///     d = \sqrt{n}/\sqrt{1-\beta_3^t} + \epsilon,\quad
///     \eta = \frac{\mathrm{lr}_t}{1-\beta_1^t}\frac{m}{d} + \frac{\mathrm{lr}_t\beta_2}{1-\beta_2^t}\frac{v}{d}, \f]
/// \f[ \theta \leftarrow (\theta - \eta)/(1 + \mathrm{lr}_t\lambda) \text{ (proximal, default)}, \qquad
///     \theta \leftarrow \theta(1 - \mathrm{lr}_t\lambda) - \eta \text{ (no\_prox)}, \qquad g_{prev} \leftarrow g. \f]
/// The clipping factor is `min(max_grad_norm / (||g|| + eps), 1)` over all tensors of all
/// groups. One pass over memory: reads theta, g, g_prev, m, v, n and writes theta, g_prev, m, v, n
/// (44 bytes/element in float); with a lazy noise source g is regenerated in registers (40 bytes).
/// Numerically the reference's division by sqrt(1 - b3^t) is a multiplication by a precomputed
/// reciprocal here, and the two step terms share one division by d (rounding-level differences).
///
/// With `optax_compat` the update is optax.adan's (optax `scale_by_adan`):
/// \f[ n \leftarrow \beta_3 n + (1-\beta_3)(g + (1-\beta_2)\Delta)^2,\quad
///     u = \frac{\hat m + (1-\beta_2)\hat v}{\sqrt{\hat n + \epsilon_{root}} + \epsilon},\quad
///     \theta \leftarrow \theta - \mathrm{lr}_t (u + \lambda\theta) \f]
/// with hats the bias-corrected moments.
///
/// Every group keeps its own step counter t (all advance together; a skipped update advances
/// none). `restart(state)` is the reference's `restart_opt`. Typical use, directly or as the
/// optimizer policy of a stepper (the `adan` preset):
/// \code
/// stochgrad::parameters<float> p{std::span<float>(weights)};
/// const stochgrad::optim::adan<> opt({.lr = 1e-3, .weight_decay = 0.02, .max_grad_norm = 1.0});
/// auto state = opt.init(p);                       // allocates m, v, n, g_prev once
/// opt.update(p, state, stochgrad::dense_gradient<float>(std::span<const float>(grad)), {});
/// \endcode
/// @tparam Schedule learning-rate schedule (schedule.hpp)
template <schedule_policy Schedule = constant_schedule>
class adan {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"adan<", stochgrad::detail::policy_name<Schedule>(), ">"};
  /// "adan<schedule>": identifies the optimizer in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = adan_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = adan_options;
  /// The learning-rate schedule policy: lr_t = lr * Schedule(k) for step k.
  using schedule_type = Schedule;

  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, a beta outside [0, 1), eps not finite or <= 0, weight_decay < 0, max_grad_norm < 0,
  /// eps_root < 0; and from the schedule's validate().
  /// Default hyper-parameters (see the options struct).
  adan() : adan(adan_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  explicit adan(adan_options o, Schedule s = {}) : o_(o), sched_(s) {
    const char* what = "optim::adan";
    detail::require_positive(what, "lr", o_.lr);
    detail::require_beta(what, "beta1", o_.beta1);
    detail::require_beta(what, "beta2", o_.beta2);
    detail::require_beta(what, "beta3", o_.beta3);
    detail::require_positive(what, "eps", o_.eps);
    detail::require_nonnegative(what, "weight_decay", o_.weight_decay);
    detail::require_nonnegative(what, "max_grad_norm", o_.max_grad_norm, "finite and >= 0 (0: no clipping)");
    detail::require_nonnegative(what, "eps_root", o_.eps_root);
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const adan_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero counters and moments.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.exp_avg = detail::zero_buffers(p);
    s.exp_avg_diff = detail::zero_buffers(p);
    s.exp_avg_sq = detail::zero_buffers(p);
    s.prev_grad = detail::zero_buffers(p);
    s.scratch.resize(p.groups());
    return s;
  }

  /// The reference's `restart_opt`: every group's step counter to 0 and m, v, n to zero; the next
  /// update then starts like a fresh optimizer's first (g_prev re-initialised, difference 0).
  template <real_scalar T>
  static void restart(state<T>& s) noexcept {
    for (auto& k : s.steps) k = 0;
    for (auto* b : {&s.exp_avg, &s.exp_avg_diff, &s.exp_avg_sq}) {
      for (auto& x : *b) std::fill(x.begin(), x.end(), T(0));
    }
  }

  /// One fused update of `p` from the gradient source `g`.
  /// @throws size_mismatch from the source's check; state_error when `s` does not fit `p`.
  /// Nothing is modified when it throws. With skip_nonfinite, a gradient with a NaN/inf element
  /// leaves parameters and state untouched and returns `applied = false`.
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return update_impl(p, s, g, ctx);
    } else {
      return update_report{};  // not reached: the checks above fail to compile first
    }
  }

 private:
  template <class T, class Source>
  update_report update_impl(const parameters<T>& p, state<T>& s, const Source& g, const step_context& ctx) const {
    g.check(p);
    s.check(p);
    const auto pre = detail::gradient_prepass(p, g, ctx.ex, o_.max_grad_norm, o_.eps, o_.skip_nonfinite);
    const double factor = sched_(ctx.step) * ctx.lr_factor;
    update_report rep;
    rep.grad_norm = pre.norm;
    rep.lr = detail::resolve_group(p.group(0), o_.lr, o_.weight_decay, factor).lr;
    if (pre.skip) {
      rep.applied = false;
      return rep;
    }
    rep.clip_factor = pre.clip;
    s.scratch.resize(p.groups());  // no allocation once init sized it
    for (std::size_t k = 0; k < p.groups(); ++k) {
      const auto r = detail::resolve_group(p.group(k), o_.lr, o_.weight_decay, factor);
      const double t = static_cast<double>(s.steps[k] + 1);
      const double bc1 = 1.0 - std::pow(o_.beta1, t);
      const double bc2 = 1.0 - std::pow(o_.beta2, t);
      const double bc3 = 1.0 - std::pow(o_.beta3, t);
      auto& c = s.scratch[k];
      c.clip = static_cast<T>(pre.clip);
      c.b1 = static_cast<T>(o_.beta1);
      c.omb1 = static_cast<T>(1.0 - o_.beta1);
      c.b2 = static_cast<T>(o_.beta2);
      c.omb2 = static_cast<T>(1.0 - o_.beta2);
      c.b3 = static_cast<T>(o_.beta3);
      c.omb3 = static_cast<T>(1.0 - o_.beta3);
      c.eps = static_cast<T>(o_.eps);
      c.inv_sqrt_bc3 = static_cast<T>(1.0 / std::sqrt(bc3));
      c.step1 = static_cast<T>(r.lr / bc1);
      c.step2 = static_cast<T>(r.lr * o_.beta2 / bc2);
      c.prox = !o_.no_prox;
      c.decay = r.wd != 0.0;
      c.shrink = static_cast<T>(o_.no_prox ? 1.0 - r.lr * r.wd : 1.0 + r.lr * r.wd);
      c.ibc1 = static_cast<T>(1.0 / bc1);
      c.ibc2 = static_cast<T>(1.0 / bc2);
      c.ibc3 = static_cast<T>(1.0 / bc3);
      c.eps_root = static_cast<T>(o_.eps_root);
      c.neg_lr = static_cast<T>(-r.lr);
      c.wd = static_cast<T>(r.wd);
      c.clipping = pre.clip != 1.0;
      c.first = s.steps[k] == 0;
    }
    if (o_.optax_compat) {
      run<T, true>(p, s, g, ctx.ex);
    } else {
      run<T, false>(p, s, g, ctx.ex);
    }
    for (auto& k : s.steps) ++k;
    return rep;
  }

  template <class T, bool Optax, class Source>
  static void run(const parameters<T>& p, state<T>& s, const Source& g, const executor& ex) {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    stochgrad::detail::for_each_gradient_chunk(
        p, g, ex,
        [&](std::size_t t, std::size_t i, B* th, B* gr) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          T* gpp = s.prev_grad[t].data() + i;
          T* mp = s.exp_avg[t].data() + i;
          T* vp = s.exp_avg_diff[t].data() + i;
          T* np = s.exp_avg_sq[t].data() + i;
          for (std::size_t r = 0; r < NB; ++r) {
            const std::size_t o = r * W;
            B gp = c.first ? B(T(0)) : B::load_unaligned(gpp + o);
            B m = B::load_unaligned(mp + o), v = B::load_unaligned(vp + o), n = B::load_unaligned(np + o);
            if constexpr (Optax) {
              detail::adan_apply_optax<B, T>(c, th[r], gr[r], gp, m, v, n);
            } else {
              detail::adan_apply<B, T>(c, th[r], gr[r], gp, m, v, n);
            }
            gp.store_unaligned(gpp + o);
            m.store_unaligned(mp + o);
            v.store_unaligned(vp + o);
            n.store_unaligned(np + o);
          }
        },
        [&](std::size_t t, std::size_t i, T& th, T gi) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          if constexpr (Optax) {
            detail::adan_apply_optax<T, T>(c, th, gi, s.prev_grad[t][i], s.exp_avg[t][i], s.exp_avg_diff[t][i],
                                           s.exp_avg_sq[t][i]);
          } else {
            detail::adan_apply<T, T>(c, th, gi, s.prev_grad[t][i], s.exp_avg[t][i], s.exp_avg_diff[t][i],
                                     s.exp_avg_sq[t][i]);
          }
        });
  }

  adan_options o_;
  Schedule sched_;
};

}  // namespace stochgrad::optim
