// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The optimizer policy contract: hyper-parameters in the policy object, sized state in a
/// separate plain aggregate created by `init`, one fused update per step reading a gradient source.
#pragma once

#include <concepts>
#include <cstdint>

#include "../config.hpp"
#include "../parallel/thread_pool.hpp"
#include "parameters.hpp"
#include "source.hpp"

namespace stochgrad {

/// What the stepper hands an optimizer for one update.
struct step_context {
  std::uint64_t step = 0;  ///< the stepper's step number k (0 for the first update)
  double lr_factor = 1.0;  ///< extra factor on the learning rate supplied by the estimator (e.g. 1)
  executor ex{};           ///< where kernels run
};

/// What an update did.
struct update_report {
  bool applied = true;         ///< false when the update was skipped (non-finite gradient, skip policy on)
  double lr = 0.0;             ///< learning rate used for group 0 (after schedule and factors)
  double grad_norm = -1.0;     ///< global gradient norm, when the optimizer computed it (clipping, skip check); -1 otherwise
  double clip_factor = 1.0;    ///< factor applied by global-norm clipping (1: none)
};

/// An optimizer policy O for parameters of type T:
/// - `O::state<T>`: plain aggregate with `template <class Ar> void serialize(Ar&)` and
///   `void check(const parameters<T>&) const` (throws state_error when it does not fit);
/// - `o.init(p)`: fresh state for parameters `p`;
/// - `o.update(p, state, g, ctx)`: one fused update from a gradient source (any source type);
/// - `O::name`: a short identifier stored in saved state.
template <class O, class T>
concept optimizer_policy = real_scalar<T> && requires(const O& o, const parameters<T>& p,
                                                      typename O::template state<T>& s, const step_context& c,
                                                      const dense_gradient<T>& g, const noise_gradient<gaussian, default_generator, T>& z) {
  { o.template init<T>(p) } -> std::same_as<typename O::template state<T>>;
  { o.update(p, s, g, c) } -> std::same_as<update_report>;
  { o.update(p, s, z, c) } -> std::same_as<update_report>;
  s.check(p);
  { O::name } -> std::convertible_to<const char*>;
};

}  // namespace stochgrad
