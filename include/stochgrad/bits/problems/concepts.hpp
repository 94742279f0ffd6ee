// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief What a built-in test problem offers: the `objective_problem` and
/// `differentiable_problem` concepts shared by the quadratic, Rosenbrock, logistic-regression and
/// MLP problems (tests, benchmarks, the shoot-out harness and users' own experiments use them).
///
/// Every problem in `stochgrad::problems` has
/// - `value_type` (float or double: the parameter type),
/// - `static constexpr bool has_gradient`: whether `value_and_gradient` returns the exact gradient
///   of `value` (the "true gradient known" flag the harness uses to score gradient estimators),
/// - `dimension()`, `initial_point(x, seed)`, `value(x, ex)` (the loss, in double) and, when
///   `has_gradient`, `value_and_gradient(x, g, ex)` (writes the gradient, returns the loss).
///
/// Problems keep evaluation workspace inside the object: an object serves one evaluation at a
/// time (use one object per thread of evaluations); the `executor` argument lets the large ones
/// spread a single evaluation over a thread pool with thread-count independent results.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../config.hpp"
#include "../parallel/thread_pool.hpp"

namespace stochgrad::problems {

/// A problem that yields a loss for a parameter vector (enough for zeroth-order steppers).
template <class P>
concept objective_problem = real_scalar<typename P::value_type> &&
    requires(const P& p, std::span<typename P::value_type> x, std::span<const typename P::value_type> cx,
             const executor& ex, std::uint64_t seed) {
      { P::has_gradient } -> std::convertible_to<bool>;
      { p.dimension() } -> std::convertible_to<std::size_t>;
      p.initial_point(x, seed);
      { p.value(cx, ex) } -> std::convertible_to<double>;
    };

/// An objective problem that also yields its exact gradient (for first-order steppers and for
/// scoring gradient estimates against the truth).
template <class P>
concept differentiable_problem = objective_problem<P> && P::has_gradient &&
    requires(const P& p, std::span<const typename P::value_type> cx, std::span<typename P::value_type> g,
             const executor& ex) {
      { p.value_and_gradient(cx, g, ex) } -> std::convertible_to<double>;
    };

}  // namespace stochgrad::problems
