// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `optim::adam` and `optim::adamw`: Adam with coupled (L2) or decoupled weight decay, with
/// the semantics of `torch.optim.Adam` / `torch.optim.AdamW`; one fused pass per step.
///
/// Reference: D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
/// I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
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

/// Hyper-parameters of optim::adam (Decoupled = false) and optim::adamw (Decoupled = true); the
/// defaults are torch's (AdamW's weight decay defaults to 1e-2, Adam's to 0).
template <bool Decoupled>
struct basic_adam_options {
  double lr = 1e-3;                                 ///< learning rate, finite and > 0
  double beta1 = 0.9;                               ///< first-moment decay, in [0, 1)
  double beta2 = 0.999;                             ///< second-moment decay, in [0, 1)
  double eps = 1e-8;                                ///< added to sqrt(v_hat), finite and > 0
  double weight_decay = Decoupled ? 1e-2 : 0.0;     ///< lambda, finite and >= 0
  double max_grad_norm = 0.0;                       ///< global-norm clipping threshold (0: off; eps 1e-6)
  bool skip_nonfinite = false;                      ///< skip the whole update on a NaN/inf gradient element
};
/// Options of optim::adam.
using adam_options = basic_adam_options<false>;
/// Options of optim::adamw.
using adamw_options = basic_adam_options<true>;

/// Sized state of optim::adam / optim::adamw: a plain aggregate.
template <real_scalar T>
struct adam_state {
  /// Updates applied so far, per parameter group (the bias-correction step t - 1).
  std::vector<std::uint64_t> steps;
  /// First moment m per tensor.
  std::vector<std::vector<T>> exp_avg;
  /// Second moment v per tensor.
  std::vector<std::vector<T>> exp_avg_sq;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var clip
    /// global-norm clipping factor c applied to g
    /// @var wd
    /// the group's weight decay lambda (0 when the group has `decay = false`)
    /// @var decay
    /// AdamW's decoupled decay factor `1 - lr_t lambda` on theta
    /// @var w1
    /// `1 - beta1`, the lerp weight of m toward g
    /// @var w1c
    /// `-beta1`, the lerp coefficient of the high-weight branch: m <- g - beta1 (g - m)
    /// @var b2
    /// beta2
    /// @var omb2
    /// `1 - beta2`
    /// @var inv_sqrt_bc2
    /// `1 / sqrt(1 - beta2^t)`, the second-moment bias correction
    /// @var eps
    /// epsilon added to sqrt(v) / sqrt(1 - beta2^t)
    /// @var neg_step
    /// `-lr_t / (1 - beta1^t)`, the signed step size with first-moment bias correction
    T clip, wd, decay, w1, w1c, b2, omb2, inv_sqrt_bc2, eps, neg_step;
    /// @var clipping
    /// whether c != 1 (gradient scaled)
    /// @var coupled_wd
    /// Adam with lambda != 0: g <- g + lambda theta
    /// @var decoupled_wd
    /// AdamW with lambda != 0: theta <- theta (1 - lr_t lambda)
    /// @var lerp_low
    /// `1 - beta1 < 0.5`: torch's lerp uses `m + w1 (g - m)`, else `g - beta1 (g - m)`
    bool clipping, coupled_wd, decoupled_wd, lerp_low;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters and moments (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("adam.steps", steps);
    ar.field("adam.exp_avg", exp_avg);
    ar.field("adam.exp_avg_sq", exp_avg_sq);
  }
  /// @throws state_error unless the state fits `p`.
  void check(const parameters<T>& p) const {
    detail::check_group_steps("adam", steps, p);
    detail::check_tensor_buffers("adam", "adam.exp_avg", exp_avg, p);
    detail::check_tensor_buffers("adam", "adam.exp_avg_sq", exp_avg_sq, p);
  }
};

namespace detail {
// torch's lerp: weight < 0.5 ? m + w (g - m) : g - (g - m)(1 - w).
template <class V, class T>
STOCHGRAD_ALWAYS_INLINE void adam_apply(const typename adam_state<T>::group_coeffs& c, V& th, V g, V& m,
                                        V& v) noexcept {
  if (c.clipping) g = g * V(c.clip);
  if (c.coupled_wd) g = simd::madd(V(c.wd), th, g);
  if (c.decoupled_wd) th = th * V(c.decay);
  const V dm = g - m;
  m = c.lerp_low ? simd::madd(V(c.w1), dm, m) : simd::madd(V(c.w1c), dm, g);
  v = simd::madd(V(c.omb2) * g, g, V(c.b2) * v);
  const V den = simd::madd(vsqrt(v), V(c.inv_sqrt_bc2), V(c.eps));
  th = simd::madd(V(c.neg_step), m / den, th);
}
}  // namespace detail

/// Adam / AdamW with the semantics of torch.optim.Adam / torch.optim.AdamW (single-tensor and
/// foreach paths). With the group's step t (from 1), learning rate `lr_t` and clipping factor c:
/// \f[ g \leftarrow c\,g\; (+\lambda\theta \text{ for Adam}), \quad
///     \theta \leftarrow \theta(1 - \mathrm{lr}_t\lambda) \text{ for AdamW}, \f]
/// \f[ m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
///     \theta \leftarrow \theta - \frac{\mathrm{lr}_t}{1-\beta_1^t}\,
///     \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}. \f]
/// (m is updated as torch's `lerp`.) One pass over memory: reads theta, g, m, v and writes
/// theta, m, v (28 bytes/element in float); sqrt and division are vectorised.
/// @tparam Schedule  learning-rate schedule (schedule.hpp)
/// @tparam Decoupled false: Adam with coupled (L2) decay; true: AdamW
template <schedule_policy Schedule, bool Decoupled>
class basic_adam {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{Decoupled ? "adamw<" : "adam<",
                                                           stochgrad::detail::policy_name<Schedule>(), ">"};
  /// "adam<schedule>" or "adamw<schedule>": identifies the optimizer in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = adam_state<T>;
  /// The hyper-parameter aggregate (adam_options or adamw_options).
  using options_type = basic_adam_options<Decoupled>;
  /// The learning-rate schedule policy: lr_t = lr * Schedule(k) for step k.
  using schedule_type = Schedule;

  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, beta1/beta2 outside [0, 1), eps not finite or <= 0, weight_decay < 0,
  /// max_grad_norm < 0; and from the schedule's validate().
  /// Default hyper-parameters (see the options struct).
  basic_adam() : basic_adam(options_type{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  explicit basic_adam(options_type o, Schedule s = {}) : o_(o), sched_(s) {
    const char* what = name;
    detail::require_positive(what, "lr", o_.lr);
    detail::require_beta(what, "beta1", o_.beta1);
    detail::require_beta(what, "beta2", o_.beta2);
    detail::require_positive(what, "eps", o_.eps);
    detail::require_nonnegative(what, "weight_decay", o_.weight_decay);
    detail::require_nonnegative(what, "max_grad_norm", o_.max_grad_norm, "finite and >= 0 (0: no clipping)");
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const options_type& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero counters and moments.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.exp_avg = detail::zero_buffers(p);
    s.exp_avg_sq = detail::zero_buffers(p);
    s.scratch.resize(p.groups());
    return s;
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
    const auto pre = detail::gradient_prepass(p, g, ctx.ex, o_.max_grad_norm, 1e-6, o_.skip_nonfinite);
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
    const double w1 = 1.0 - o_.beta1;
    for (std::size_t k = 0; k < p.groups(); ++k) {
      const auto r = detail::resolve_group(p.group(k), o_.lr, o_.weight_decay, factor);
      const double t = static_cast<double>(s.steps[k] + 1);
      const double bc1 = 1.0 - std::pow(o_.beta1, t);
      const double bc2 = 1.0 - std::pow(o_.beta2, t);
      auto& c = s.scratch[k];
      c.clip = static_cast<T>(pre.clip);
      c.wd = static_cast<T>(r.wd);
      c.decay = static_cast<T>(1.0 - r.lr * r.wd);
      c.w1 = static_cast<T>(w1);
      c.w1c = static_cast<T>(-(1.0 - w1));
      c.b2 = static_cast<T>(o_.beta2);
      c.omb2 = static_cast<T>(1.0 - o_.beta2);
      c.inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
      c.eps = static_cast<T>(o_.eps);
      c.neg_step = static_cast<T>(-(r.lr / bc1));
      c.clipping = pre.clip != 1.0;
      c.coupled_wd = !Decoupled && r.wd != 0.0;
      c.decoupled_wd = Decoupled && r.wd != 0.0;
      c.lerp_low = w1 < 0.5;
    }
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    stochgrad::detail::for_each_gradient_chunk(
        p, g, ctx.ex,
        [&](std::size_t t, std::size_t i, B* th, B* gr) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          T* mp = s.exp_avg[t].data() + i;
          T* vp = s.exp_avg_sq[t].data() + i;
          for (std::size_t r = 0; r < NB; ++r) {
            B m = B::load_unaligned(mp + r * W), v = B::load_unaligned(vp + r * W);
            detail::adam_apply<B, T>(c, th[r], gr[r], m, v);
            m.store_unaligned(mp + r * W);
            v.store_unaligned(vp + r * W);
          }
        },
        [&](std::size_t t, std::size_t i, T& th, T gi) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          detail::adam_apply<T, T>(c, th, gi, s.exp_avg[t][i], s.exp_avg_sq[t][i]);
        });
    for (auto& k : s.steps) ++k;
    return rep;
  }

  options_type o_;
  Schedule sched_;
};

/// Adam with coupled (L2) weight decay, as torch.optim.Adam.
template <schedule_policy Schedule = constant_schedule>
using adam = basic_adam<Schedule, false>;
/// AdamW (decoupled weight decay), as torch.optim.AdamW.
template <schedule_policy Schedule = constant_schedule>
using adamw = basic_adam<Schedule, true>;

}  // namespace stochgrad::optim
