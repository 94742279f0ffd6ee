// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `optim::sgd`: stochastic gradient descent with momentum, dampening, Nesterov momentum
/// and coupled weight decay, with the semantics of `torch.optim.SGD`; one fused pass per step.
#pragma once

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

/// Hyper-parameters of optim::sgd (defaults as torch.optim.SGD).
struct sgd_options {
  double lr = 1e-3;             ///< learning rate, finite and > 0
  double momentum = 0.0;        ///< momentum factor mu, finite and >= 0 (0: no momentum buffer at all)
  double dampening = 0.0;       ///< dampening tau in [0, 1]
  bool nesterov = false;        ///< Nesterov momentum (needs momentum > 0 and dampening = 0)
  double weight_decay = 0.0;    ///< coupled (L2) weight decay lambda, finite and >= 0
  double max_grad_norm = 0.0;   ///< global-norm clipping threshold (0: off), clip_grad_norm_ rule with eps 1e-6
  bool skip_nonfinite = false;  ///< skip the whole update when any gradient element is NaN/inf
};

/// Sized state of optim::sgd: a plain aggregate.
template <real_scalar T>
struct sgd_state {
  /// Updates applied so far, per parameter group.
  std::vector<std::uint64_t> steps;
  /// Momentum buffer b per tensor; empty (no memory at all) when momentum == 0.
  std::vector<std::vector<T>> momentum_buffer;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var neg_lr
    /// `-lr_t`, the signed step size
    /// @var wd
    /// the group's coupled weight decay lambda (0 when the group has `decay = false`)
    /// @var momentum
    /// momentum factor mu
    /// @var damp1
    /// `1 - tau`, the weight of d in the momentum buffer
    /// @var clip
    /// global-norm clipping factor c applied to g
    T neg_lr, wd, momentum, damp1, clip;
    /// @var has_wd
    /// lambda != 0: d <- d + lambda theta
    /// @var has_momentum
    /// mu > 0: the momentum buffer is used
    /// @var first
    /// first update of the group (steps == 0): the buffer is initialised to d
    /// @var nesterov
    /// Nesterov momentum: d <- d + mu b instead of d <- b
    /// @var clipping
    /// whether c != 1 (gradient scaled)
    bool has_wd, has_momentum, first, nesterov, clipping;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters and buffers (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("sgd.steps", steps);
    ar.field("sgd.momentum_buffer", momentum_buffer);
  }
  /// @throws state_error unless the state fits `p` (one counter per group; no buffer, or one
  /// buffer per tensor of the tensor's length).
  void check(const parameters<T>& p) const {
    detail::check_group_steps("sgd", steps, p);
    if (!momentum_buffer.empty()) detail::check_tensor_buffers("sgd", "sgd.momentum_buffer", momentum_buffer, p);
  }
};

namespace detail {
template <class V, class T>
STOCHGRAD_ALWAYS_INLINE void sgd_apply(const typename sgd_state<T>::group_coeffs& c, V& th, V d, V& b) noexcept {
  if (c.clipping) d = d * V(c.clip);
  if (c.has_wd) d = simd::madd(V(c.wd), th, d);
  if (c.has_momentum) {
    b = c.first ? d : simd::madd(V(c.momentum), b, V(c.damp1) * d);
    d = c.nesterov ? simd::madd(V(c.momentum), b, d) : b;
  }
  th = simd::madd(V(c.neg_lr), d, th);
}
}  // namespace detail

/// SGD with the semantics of torch.optim.SGD. With learning rate `lr_t` (after schedule and group
/// overrides), per element:
/// \f[ d = c\,g + \lambda\theta, \quad
///     b_1 = d,\; b_k = \mu b_{k-1} + (1-\tau) d, \quad
///     d \leftarrow \begin{cases} d + \mu b_k & \text{Nesterov} \\ b_k & \text{otherwise}\end{cases},
///     \quad \theta \leftarrow \theta - \mathrm{lr}_t\, d \f]
/// (the momentum terms only when mu > 0; `c` is the global-norm clipping factor, 1 when off). The
/// momentum buffer is created from d on the first update, as torch does. One pass over memory:
/// reads theta, g and b, writes theta and b (20 bytes/element in float; 12 without momentum).
/// @tparam Schedule learning-rate schedule (schedule.hpp); factor `s(k)` at stepper step k.
template <schedule_policy Schedule = constant_schedule>
class sgd {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"sgd<", stochgrad::detail::policy_name<Schedule>(), ">"};
  /// "sgd<schedule>": identifies the optimizer in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = sgd_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = sgd_options;
  /// The learning-rate schedule policy: lr_t = lr * Schedule(k) for step k.
  using schedule_type = Schedule;

  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, momentum < 0, dampening outside [0, 1], weight_decay < 0, max_grad_norm < 0, nesterov
  /// without momentum or with dampening; and from the schedule's validate().
  /// Default hyper-parameters (see the options struct).
  sgd() : sgd(sgd_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  explicit sgd(sgd_options o, Schedule s = {}) : o_(o), sched_(s) {
    detail::require_positive("optim::sgd", "lr", o_.lr);
    detail::require_nonnegative("optim::sgd", "momentum", o_.momentum);
    stochgrad::detail::require(o_.dampening >= 0.0 && o_.dampening <= 1.0, "optim::sgd", "dampening", o_.dampening,
                               "in [0, 1]");
    detail::require_nonnegative("optim::sgd", "weight_decay", o_.weight_decay);
    detail::require_nonnegative("optim::sgd", "max_grad_norm", o_.max_grad_norm, "finite and >= 0 (0: no clipping)");
    if (o_.nesterov) {
      stochgrad::detail::require(o_.momentum > 0.0, "optim::sgd (nesterov = true)", "momentum", o_.momentum,
                                 "> 0 for Nesterov momentum");
      stochgrad::detail::require(o_.dampening == 0.0, "optim::sgd (nesterov = true)", "dampening", o_.dampening,
                                 "0 for Nesterov momentum");
    }
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const sgd_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero step counters; momentum buffers (zero) only when momentum > 0.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    if (o_.momentum > 0.0) s.momentum_buffer = detail::zero_buffers(p);
    s.scratch.resize(p.groups());
    return s;
  }

  /// Checks a (loaded) state against these options: momentum buffers exist iff momentum > 0.
  /// @throws state_error otherwise.
  template <real_scalar T>
  void check_state(const state<T>& s, const parameters<T>& p) const {
    s.check(p);
    if ((o_.momentum > 0.0) != !s.momentum_buffer.empty()) {
      throw state_error(o_.momentum > 0.0
                            ? "sgd: momentum > 0 but the state has no momentum buffers (state of an sgd without momentum?)"
                            : "sgd: momentum == 0 but the state has momentum buffers (state of an sgd with momentum?)");
    }
  }

  /// One fused update of `p` from the gradient source `g`.
  /// @throws size_mismatch from the source's check; state_error when `s` does not fit `p` or has
  /// no momentum buffers although momentum > 0. Nothing is modified when it throws. With
  /// skip_nonfinite, a gradient with a NaN/inf element leaves parameters and state untouched and
  /// returns `applied = false`.
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
    const bool has_momentum = o_.momentum > 0.0;
    if (has_momentum && s.momentum_buffer.empty()) {
      throw state_error("sgd: momentum > 0 but the state has no momentum buffers (state of an sgd without momentum?)");
    }
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
    for (std::size_t k = 0; k < p.groups(); ++k) {
      const auto r = detail::resolve_group(p.group(k), o_.lr, o_.weight_decay, factor);
      auto& c = s.scratch[k];
      c.neg_lr = static_cast<T>(-r.lr);
      c.wd = static_cast<T>(r.wd);
      c.momentum = static_cast<T>(o_.momentum);
      c.damp1 = static_cast<T>(1.0 - o_.dampening);
      c.clip = static_cast<T>(pre.clip);
      c.has_wd = r.wd != 0.0;
      c.has_momentum = has_momentum;
      c.first = s.steps[k] == 0;
      c.nesterov = o_.nesterov;
      c.clipping = pre.clip != 1.0;
    }
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    stochgrad::detail::for_each_gradient_chunk(
        p, g, ctx.ex,
        [&](std::size_t t, std::size_t i, B* th, B* gr) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          if (c.has_momentum) {
            T* bp = s.momentum_buffer[t].data() + i;
            for (std::size_t r = 0; r < NB; ++r) {
              B b = c.first ? B(T(0)) : B::load_unaligned(bp + r * W);
              detail::sgd_apply<B, T>(c, th[r], gr[r], b);
              b.store_unaligned(bp + r * W);
            }
          } else {
            for (std::size_t r = 0; r < NB; ++r) {
              B b(T(0));
              detail::sgd_apply<B, T>(c, th[r], gr[r], b);
            }
          }
        },
        [&](std::size_t t, std::size_t i, T& th, T gi) {
          const auto c = s.scratch[p.group_of(t)];  // a local copy: stores to T arrays cannot alias it
          if (c.has_momentum) {
            T& b = s.momentum_buffer[t][i];
            T bv = c.first ? T(0) : b;
            detail::sgd_apply<T, T>(c, th, gi, bv);
            b = bv;
          } else {
            T bv = T(0);
            detail::sgd_apply<T, T>(c, th, gi, bv);
          }
        });
    for (auto& k : s.steps) ++k;
    return rep;
  }

  sgd_options o_;
  Schedule sched_;
};

}  // namespace stochgrad::optim
