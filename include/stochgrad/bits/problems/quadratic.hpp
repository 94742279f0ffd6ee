// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Ill-conditioned convex quadratic with a configurable condition number, diagonal (any
/// dimension, 1e6 and beyond) or randomly rotated (dense, small dimensions).
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/reduce.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"

namespace stochgrad::problems {

/// Largest dimension for which `quadratic_options::rotate` is accepted (the rotation is a dense
/// d x d matrix: 4096^2 elements are 64 MiB in float).
inline constexpr std::size_t quadratic_max_rotated_dimension = 4096;

/// Construction options of `quadratic`.
struct quadratic_options {
  std::size_t dimension = 1000;   ///< d >= 1
  double condition_number = 1e3;  ///< kappa = lambda_max / lambda_min >= 1
  bool rotate = false;            ///< apply a Haar-random rotation (d <= quadratic_max_rotated_dimension)
  std::uint64_t seed = 0;         ///< seeds the solution x* and the rotation
};

/// Convex quadratic \f$ f(x) = \tfrac12 (x - x^*)^\top A (x - x^*) \f$ with
/// \f$ A = Q \Lambda Q^\top \f$.
///
/// - Eigenvalues are log-spaced from \f$ 1/\kappa \f$ to 1:
///   \f$ \lambda_i = \kappa^{\,i/(d-1) - 1} \f$, i = 0..d-1 (ascending; \f$\lambda_0 = 1\f$ when
///   d = 1), stored (and used) rounded to T. So L = 1 and mu = 1/kappa: gradient descent is
///   stable for learning rates below 2 and converges at rate \f$1 - \mathrm{lr}/\kappa\f$ in the
///   flattest direction.
/// - Q = I (diagonal form, O(d) time and memory, evaluated with the thread-count independent
///   reduction tree of `reduce.hpp`) or, with `rotate`, the Q factor of a seeded Gaussian matrix
///   with the signs of R's diagonal folded in (Haar distributed; Mezzadri 2007), O(d^2).
/// - The solution \f$x^*\f$ has i.i.d. standard normal entries `z(seed, stream 0, draw 0)` of
///   the library's generator; the optimal value is 0; the initial point is x = 0.
///
/// Exact gradient \f$ \nabla f(x) = A (x - x^*) \f$ (computed in T); values are accumulated in
/// double. Results do not depend on the alignment of the caller's buffers. Not thread-safe: the
/// rotated form keeps two length-d work vectors in the object.
template <real_scalar T>
class quadratic {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` is exact

  /// @throws invalid_argument if dimension == 0, condition_number < 1 or not finite, or rotate
  /// with dimension > quadratic_max_rotated_dimension.
  explicit quadratic(const quadratic_options& opts = {}) : opts_(opts) {
    detail::require(opts.dimension >= 1, "quadratic", "dimension", static_cast<double>(opts.dimension), ">= 1");
    detail::require(std::isfinite(opts.condition_number) && opts.condition_number >= 1.0, "quadratic",
                    "condition_number", opts.condition_number, "finite and >= 1");
    detail::require(!opts.rotate || opts.dimension <= quadratic_max_rotated_dimension, "quadratic (rotate)",
                    "dimension", static_cast<double>(opts.dimension), "<= 4096 when rotate is set");
    const std::size_t d = opts.dimension;
    lambda_.resize(d);
    for (std::size_t i = 0; i < d; ++i) {
      const double t = d == 1 ? 1.0 : static_cast<double>(i) / static_cast<double>(d - 1);
      lambda_[i] = static_cast<T>(std::pow(opts.condition_number, t - 1.0));
    }
    solution_.resize(d);
    generate<gaussian>(std::span<T>(solution_), noise_key{opts.seed, 0, 0});
    if (opts.rotate) {
      const auto n = static_cast<Eigen::Index>(d);
      Eigen::MatrixXd m(n, n);
      const noise_key mk{opts.seed, 1, 0};
      for (Eigen::Index j = 0; j < n; ++j) {
        for (Eigen::Index i = 0; i < n; ++i) {
          m(i, j) = noise_value<gaussian, default_generator, double>(mk, static_cast<std::uint64_t>(j * n + i));
        }
      }
      Eigen::HouseholderQR<Eigen::MatrixXd> qr(m);
      Eigen::MatrixXd q = qr.householderQ();
      const Eigen::MatrixXd& r = qr.matrixQR();
      for (Eigen::Index j = 0; j < n; ++j) {
        if (r(j, j) < 0.0) q.col(j) = -q.col(j);
      }
      q_ = q.cast<T>();
      r_.resize(n);
      y_.resize(n);
    }
  }

  /// Number of parameters d.
  std::size_t dimension() const noexcept { return opts_.dimension; }
  /// The condition number kappa requested at construction.
  double condition_number() const noexcept { return opts_.condition_number; }
  /// Whether A is rotated (dense) or diagonal.
  bool rotated() const noexcept { return opts_.rotate; }
  /// Eigenvalues of A, ascending (the diagonal of Lambda).
  std::span<const T> eigenvalues() const noexcept { return lambda_; }
  /// The minimiser x*.
  std::span<const T> solution() const noexcept { return solution_; }
  /// f(x*) = 0.
  double optimal_value() const noexcept { return 0.0; }
  /// The dense rotation Q (empty unless rotated()).
  const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& rotation() const noexcept { return q_; }

  /// Writes the initial point x = 0 (the seed is not used: the problem is deterministic).
  /// @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t /*seed*/ = 0) const {
    detail::require_same_size("quadratic::initial_point", "x", x.size(), "dimension", dimension());
    for (T& v : x) v = T(0);
  }

  /// f(x), accumulated in double. @throws size_mismatch unless x.size() == dimension().
  double value(std::span<const T> x, const executor& ex = {}) const {
    detail::require_same_size("quadratic::value", "x", x.size(), "dimension", dimension());
    if (opts_.rotate) return rotated_eval(x, nullptr);
    return diagonal_eval(x, nullptr, ex);
  }

  /// Writes g = A (x - x*) and returns f(x).
  /// @throws size_mismatch unless x and g have dimension() elements.
  double value_and_gradient(std::span<const T> x, std::span<T> g, const executor& ex = {}) const {
    detail::require_same_size("quadratic::value_and_gradient", "x", x.size(), "dimension", dimension());
    detail::require_same_size("quadratic::value_and_gradient", "g", g.size(), "dimension", dimension());
    if (opts_.rotate) return rotated_eval(x, g.data());
    return diagonal_eval(x, g.data(), ex);
  }

 private:
  // One pass: per leaf, r = x - x*, acc += (lambda r) r, and g = lambda r when g != nullptr.
  double diagonal_eval(std::span<const T> x, T* g, const executor& ex) const {
    using B = xsimd::batch<T>;
    const T* xp = x.data();
    const T* sp = solution_.data();
    const T* lp = lambda_.data();
    auto leaf = [=](std::size_t b, std::size_t e) {
      return detail::leaf_sum<T>(
          b, e,
          [=](const B& acc, std::size_t i) {
            const B r = B::load_unaligned(xp + i) - B::load_unaligned(sp + i);
            const B lr = B::load_unaligned(lp + i) * r;
            if (g != nullptr) lr.store_unaligned(g + i);
            return simd::madd(lr, r, acc);
          },
          [=](T acc, std::size_t i) {
            const T r = xp[i] - sp[i];
            const T lr = lp[i] * r;
            if (g != nullptr) g[i] = lr;
            return simd::madd(lr, r, acc);
          });
    };
    return 0.5 * detail::tree_reduce<double>(ex, x.size(), 0.0, leaf, detail::add_d);
  }

  // y = Q^T (x - x*); f = 1/2 sum lambda_i y_i^2; g = Q (lambda .* y).
  double rotated_eval(std::span<const T> x, T* g) const {
    const auto n = static_cast<Eigen::Index>(dimension());
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      r_(i) = x[k] - solution_[k];
    }
    y_.noalias() = q_.transpose() * r_;
    double f = 0.0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double yi = static_cast<double>(y_(i));
      f += static_cast<double>(lambda_[static_cast<std::size_t>(i)]) * yi * yi;
      y_(i) *= lambda_[static_cast<std::size_t>(i)];
    }
    if (g != nullptr) {
      // Computed in an aligned member and copied, so that the result cannot depend on where the
      // caller's buffer starts, whatever kernel Eigen picks for an unaligned destination.
      r_.noalias() = q_ * y_;
      for (Eigen::Index i = 0; i < n; ++i) g[static_cast<std::size_t>(i)] = r_(i);
    }
    return 0.5 * f;
  }

  quadratic_options opts_;
  std::vector<T> lambda_;
  std::vector<T> solution_;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> q_;
  mutable Eigen::Matrix<T, Eigen::Dynamic, 1> r_;
  mutable Eigen::Matrix<T, Eigen::Dynamic, 1> y_;
};

}  // namespace stochgrad::problems
