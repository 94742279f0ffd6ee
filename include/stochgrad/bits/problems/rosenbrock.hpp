// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The Rosenbrock function in its generalised (chained) form, any dimension d >= 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"

namespace stochgrad::problems {

/// Chained Rosenbrock function
/// \f[ f(x) = \sum_{i=0}^{d-2} \left[ 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2 \right], \f]
/// a curved narrow valley with the global minimum f = 0 at x = (1, ..., 1); for d = 2 it is the
/// classic banana function (Rosenbrock 1960, "An automatic method for finding the greatest or
/// least value of a function", The Computer Journal 3(3):175-184). The standard start is
/// x_i = -1.2 for even i and 1 for odd i ((-1.2, 1) in two dimensions, where f = 24.2).
///
/// Exact gradient
/// \f[ \partial_k f = -400\,x_k (x_{k+1} - x_k^2) - 2 (1 - x_k)\ [k < d-1]
///                    + 200 (x_k - x_{k-1}^2)\ [k > 0]. \f]
/// Everything is evaluated in double (the dimension is small) and the gradient rounded to T.
template <real_scalar T>
class rosenbrock {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` is exact

  /// @throws invalid_argument if dimension < 2.
  explicit rosenbrock(std::size_t dimension = 2) : d_(dimension) {
    detail::require(dimension >= 2, "rosenbrock", "dimension", static_cast<double>(dimension), ">= 2");
  }

  /// Number of parameters d.
  std::size_t dimension() const noexcept { return d_; }
  /// f at the minimiser (1, ..., 1).
  double optimal_value() const noexcept { return 0.0; }

  /// Writes the standard start (-1.2, 1, -1.2, 1, ...); the seed is not used.
  /// @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t /*seed*/ = 0) const {
    detail::require_same_size("rosenbrock::initial_point", "x", x.size(), "dimension", d_);
    for (std::size_t i = 0; i < d_; ++i) x[i] = (i % 2 == 0) ? static_cast<T>(-1.2) : T(1);
  }

  /// f(x). @throws size_mismatch unless x.size() == dimension(). Runs on the calling thread.
  double value(std::span<const T> x, const executor& /*ex*/ = {}) const {
    detail::require_same_size("rosenbrock::value", "x", x.size(), "dimension", d_);
    double f = 0.0;
    for (std::size_t i = 0; i + 1 < d_; ++i) {
      const double xi = static_cast<double>(x[i]);
      const double a = static_cast<double>(x[i + 1]) - xi * xi;
      const double b = 1.0 - xi;
      f += 100.0 * a * a + b * b;
    }
    return f;
  }

  /// Writes the exact gradient into g and returns f(x).
  /// @throws size_mismatch unless x and g have dimension() elements.
  double value_and_gradient(std::span<const T> x, std::span<T> g, const executor& /*ex*/ = {}) const {
    detail::require_same_size("rosenbrock::value_and_gradient", "x", x.size(), "dimension", d_);
    detail::require_same_size("rosenbrock::value_and_gradient", "g", g.size(), "dimension", d_);
    double f = 0.0;
    double carry = 0.0;  // 200 (x_k - x_{k-1}^2) from the previous term
    for (std::size_t i = 0; i < d_; ++i) {
      const double xi = static_cast<double>(x[i]);
      double gi = carry;
      if (i + 1 < d_) {
        const double a = static_cast<double>(x[i + 1]) - xi * xi;
        const double b = 1.0 - xi;
        f += 100.0 * a * a + b * b;
        gi += -400.0 * xi * a - 2.0 * b;
        carry = 200.0 * a;
      }
      g[i] = static_cast<T>(gi);
    }
    return f;
  }

 private:
  std::size_t d_;
};

}  // namespace stochgrad::problems
