// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::gc_spsa_sgd`: the momentum of DREAM's GC-SPSA (src/trainer.py `zo_update`
/// in AntigoneRandy/DREAM), whose weight adapts to how many directions were averaged, as an optimizer
/// policy that reads any gradient source lazily (one fused pass, the momentum buffer is its only
/// state of parameter size).
///
/// With G the step's estimate averaged over q_e directions and `lr_t` the learning rate after
/// schedule and group overrides:
/// ```
///   first update:  m = G ;                                   N_past = q_e
///   later:         b = N_past / (N_past + q_e) * gamma ;  m = b m + G ;  N_past = 0.1 q_e + 0.9 N_past
///   theta = theta - lr_t (m + wd theta)                    (coupled decay; none where a group says so)
/// ```
/// N_past is updated once per step (the reference updates it once per parameter tensor, which
/// only matters when q changes; a stochgrad decision). q_e is read from the
/// source: `queries()` (zo::direction_source, zo::with_queries), else the number of `terms()`
/// (noise_gradient), else 1 (a dense gradient).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../base/family.hpp"
#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/clip.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/source.hpp"

namespace stochgrad::zo {

/// Number of directions averaged in a gradient source (1 for a plain gradient).
template <class Source>
std::size_t queries_of(const Source& g) noexcept {
  if constexpr (requires { { g.queries() } -> std::convertible_to<std::size_t>; }) {
    return static_cast<std::size_t>(g.queries());
  } else if constexpr (requires { g.terms().size(); }) {
    return g.terms().size();
  } else {
    return 1;
  }
}

/// A gradient source that forwards to `inner` and reports `q` directions (e.g. a dense estimate
/// averaged over q directions elsewhere, fed to gc_spsa_sgd).
template <class Inner>
class with_queries : public stochgrad::detail::source_adaptor<Inner> {
 public:
  /// Wraps `inner` (not owned; must outlive this source), reporting `q` directions.
  with_queries(const Inner& inner, std::size_t q) noexcept : stochgrad::detail::source_adaptor<Inner>(inner), q_(q) {}
  /// Number of directions averaged in the wrapped estimate.
  std::size_t queries() const noexcept { return q_; }

 private:
  std::size_t q_;
};

/// Hyper-parameters of gc_spsa_sgd (DREAM defaults).
struct gc_spsa_options {
  double lr = 1e-6;            ///< learning rate, finite and > 0
  double gamma = 1.2;          ///< momentum scale, finite and >= 0
  double weight_decay = 0.0;   ///< coupled weight decay, finite and >= 0
};

/// Sized state of gc_spsa_sgd.
template <real_scalar T>
struct gc_spsa_state {
  std::uint64_t updates = 0;               ///< updates applied
  double n_past = 0.0;                     ///< N_past
  double last_b = 0.0;                     ///< momentum weight b of the last update (diagnostic)
  std::vector<std::vector<T>> momentum;    ///< m, per tensor
  std::vector<optim::detail::group_rates> rates;  ///< per-group rates of the current update (workspace; not saved)

  /// Saves/loads updates, n_past, last_b and the momentum (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("gc_spsa.updates", updates);
    ar.field("gc_spsa.n_past", n_past);
    ar.field("gc_spsa.last_b", last_b);
    ar.field("gc_spsa.momentum", momentum);
  }
  /// @throws state_error unless there is one buffer per tensor of the tensor's length.
  void check(const parameters<T>& p) const { optim::detail::check_tensor_buffers("gc_spsa", "gc_spsa.momentum", momentum, p); }
};

/// GC-SPSA's adaptive-momentum SGD (see the file comment).
/// @tparam Schedule learning-rate schedule (factor s(k) at stepper step k)
template <schedule_policy Schedule = constant_schedule>
class gc_spsa_sgd {
 public:
  /// Identifier in saved state, e.g. "gc_spsa<constant>".
  static constexpr stochgrad::detail::fixed_name name_text{"gc_spsa<", stochgrad::detail::policy_name<Schedule>(), ">"};
  /// "gc_spsa<schedule>": identifies the optimizer in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// A zeroth-order optimizer: its momentum scale depends on the estimator's direction count.
  static constexpr estimator_family only_for_family = estimator_family::zeroth_order;
  using options_type = gc_spsa_options;  ///< what `stepper(params, {.lr = ...})` builds it from
  /// Sized state for parameters of type T.
  template <class T>
  using state = gc_spsa_state<T>;

  /// DREAM's defaults (lr 1e-6, gamma 1.2, no weight decay).
  gc_spsa_sgd() = default;
  /// @throws invalid_argument for lr <= 0, gamma < 0, weight_decay < 0 (or not finite).
  explicit gc_spsa_sgd(gc_spsa_options o, Schedule s = {}) : o_(o), sched_(s) {
    optim::detail::require_positive("zo::gc_spsa_sgd", "lr", o_.lr);
    optim::detail::require_nonnegative("zo::gc_spsa_sgd", "gamma", o_.gamma);
    optim::detail::require_nonnegative("zo::gc_spsa_sgd", "weight_decay", o_.weight_decay);
    optim::detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const gc_spsa_options& options() const noexcept { return o_; }

  /// Fresh state: zero momentum buffers shaped like `p`, zero counters, per-group rate workspace.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.momentum = optim::detail::zero_buffers(p);
    s.rates.resize(p.groups());
    return s;
  }

  /// One fused update from any gradient source.
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    static_assert(std::is_same_v<State, state<T>>,
                  "stochgrad::zo::gc_spsa_sgd::update: the state must be the gc_spsa_state<T> of these parameters");
    static_assert(gradient_source<Source, T>, "stochgrad::zo::gc_spsa_sgd::update: the gradient must be a gradient source");
    g.check(p);
    s.check(p);
    const double q = static_cast<double>(queries_of(g));
    const bool first = s.updates == 0;
    const double b = first ? 0.0 : s.n_past / (s.n_past + q) * o_.gamma;
    const double factor = sched_(ctx.step) * ctx.lr_factor;
    update_report rep;
    rep.lr = optim::detail::resolve_group(p.group(0), o_.lr, o_.weight_decay, factor).lr;
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    const T bt = static_cast<T>(b);
    s.rates.resize(p.groups());  // no allocation once init sized it
    for (std::size_t k = 0; k < p.groups(); ++k) s.rates[k] = optim::detail::resolve_group(p.group(k), o_.lr, o_.weight_decay, factor);
    stochgrad::detail::for_each_gradient_chunk(
        p, g, ctx.ex,
        [&](std::size_t t, std::size_t i, B* th, B* gr) {
          const auto& r = s.rates[p.group_of(t)];
          const B neg_lr(static_cast<T>(-r.lr)), wd(static_cast<T>(r.wd));
          T* mp = s.momentum[t].data() + i;
          for (std::size_t k = 0; k < NB; ++k) {
            const B m = first ? gr[k] : simd::madd(B(bt), B::load_unaligned(mp + k * W), gr[k]);
            m.store_unaligned(mp + k * W);
            const B d = r.wd != 0.0 ? simd::madd(wd, th[k], m) : m;
            th[k] = simd::madd(neg_lr, d, th[k]);
          }
        },
        [&](std::size_t t, std::size_t i, T& th, T gi) {
          const auto& r = s.rates[p.group_of(t)];
          T& m = s.momentum[t][i];
          m = first ? gi : simd::madd(bt, m, gi);
          const T d = r.wd != 0.0 ? simd::madd(static_cast<T>(r.wd), th, m) : m;
          th = simd::madd(static_cast<T>(-r.lr), d, th);
        });
    s.last_b = b;
    s.n_past = first ? q : 0.1 * q + 0.9 * s.n_past;
    ++s.updates;
    return rep;
  }

 private:
  gc_spsa_options o_{};
  Schedule sched_{};
};

}  // namespace stochgrad::zo
