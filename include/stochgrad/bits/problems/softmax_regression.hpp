// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Multinomial logistic (softmax) regression on a labelled dataset (e.g. Fashion-MNIST:
/// 784 pixels, 10 classes): L2-regularised mean cross-entropy, its exact gradient, test loss and
/// accuracy.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "dataset.hpp"

namespace stochgrad::problems {

/// Construction options of `softmax_regression`.
struct softmax_regression_options {
  double l2 = 1e-4;  ///< L2 penalty on the weights (not the biases), >= 0
};

/// Softmax regression. Parameters x = (W, b): the weight matrix W (classes x features,
/// row-major) then the biases b (classes). With \f$ Z = X W^\top + \mathbf 1 b^\top \f$ over the
/// n training rows,
/// \f[ f(x) = \frac1n \sum_i \big[\operatorname{logsumexp}(Z_{i\cdot}) - Z_{i y_i}\big]
///            + \frac{\lambda}{2}\lVert W\rVert_F^2,\qquad
///     \nabla W = \Delta Z^\top X + \lambda W,\quad \nabla b = \mathbf 1^\top \Delta Z,\quad
///     \Delta Z = (\operatorname{softmax}(Z) - Y)/n. \f]
/// Convex (strongly convex in W for lambda > 0); at x = 0 the loss is exactly log(classes).
/// Matrix products run in T with Eigen on the calling thread (deterministic); the log-sum-exp and
/// the loss are accumulated in double. Initial point: x = 0. Predicted class: the first arg-max
/// of Z. Not thread-safe (the object keeps its logits buffer).
template <real_scalar T>
class softmax_regression {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` is exact

  /// Takes ownership of the (already standardised) training and test sets.
  /// @throws invalid_argument if the training set is empty, has fewer than 2 classes, or l2 is
  ///         negative or not finite; size_mismatch if the feature counts differ.
  softmax_regression(dataset<T> train, dataset<T> test, const softmax_regression_options& opts = {})
      : train_(std::move(train)), test_(std::move(test)), opts_(opts) {
    detail::require(train_.rows >= 1, "softmax_regression", "train.rows", 0.0, ">= 1");
    detail::require(train_.classes >= 2, "softmax_regression", "train.classes", static_cast<double>(train_.classes),
                    ">= 2");
    detail::require(std::isfinite(opts.l2) && opts.l2 >= 0.0, "softmax_regression", "l2", opts.l2, "finite and >= 0");
    detail::require_same_size("softmax_regression", "train features", train_.features, "test features", test_.features);
    detail::require(test_.classes <= train_.classes, "softmax_regression", "test.classes",
                    static_cast<double>(test_.classes), "<= train.classes");
    xtrain_ = Eigen::Map<const row_mat>(train_.x.data(), idx(train_.rows), idx(train_.features));
    xtest_ = Eigen::Map<const row_mat>(test_.x.data(), idx(test_.rows), idx(test_.features));
  }

  /// Number of parameters: classes (features + 1).
  std::size_t dimension() const noexcept { return train_.classes * (train_.features + 1); }
  /// Offset of b in the parameter vector (W comes first): classes x features.
  std::size_t bias_offset() const noexcept { return train_.classes * train_.features; }
  /// The training set.
  const dataset<T>& train() const noexcept { return train_; }
  /// The test set.
  const dataset<T>& test() const noexcept { return test_; }
  /// The options in use.
  const softmax_regression_options& options() const noexcept { return opts_; }

  /// Writes x = 0 (the seed is not used). @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t /*seed*/ = 0) const {
    detail::require_same_size("softmax_regression::initial_point", "x", x.size(), "dimension", dimension());
    for (T& v : x) v = T(0);
  }

  /// Regularised mean training cross-entropy. @throws size_mismatch unless x.size() == dimension().
  double value(std::span<const T> x, const executor& /*ex*/ = {}) const {
    check(x, "softmax_regression::value");
    return forward(x, xtrain_, train_, false) + penalty(x);
  }

  /// Writes the exact gradient and returns the regularised training loss.
  /// @throws size_mismatch unless x and g have dimension() elements.
  double value_and_gradient(std::span<const T> x, std::span<T> g, const executor& /*ex*/ = {}) const {
    check(x, "softmax_regression::value_and_gradient");
    detail::require_same_size("softmax_regression::value_and_gradient", "g", g.size(), "dimension", dimension());
    const double f = forward(x, xtrain_, train_, true) + penalty(x);
    gw_.noalias() = z_.transpose() * xtrain_;
    if (opts_.l2 > 0.0) gw_ += static_cast<T>(opts_.l2) * w_;
    Eigen::Map<row_mat>(g.data(), idx(train_.classes), idx(train_.features)) = gw_;
    Eigen::Map<vec>(g.data() + bias_offset(), idx(train_.classes)) = z_.colwise().sum().transpose();
    return f;
  }

  /// Mean cross-entropy (no penalty) on the test set.
  double test_loss(std::span<const T> x) const {
    check(x, "softmax_regression::test_loss");
    return forward(x, xtest_, test_, false);
  }
  /// Fraction of training rows classified correctly.
  double train_accuracy(std::span<const T> x) const { return accuracy(x, xtrain_, train_); }
  /// Fraction of test rows classified correctly.
  double test_accuracy(std::span<const T> x) const { return accuracy(x, xtest_, test_); }

 private:
  using row_mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

  static Eigen::Index idx(std::size_t v) noexcept { return static_cast<Eigen::Index>(v); }

  void check(std::span<const T> x, const char* what) const {
    detail::require_same_size(what, "x", x.size(), "dimension", dimension());
  }

  // Copies the parameters into aligned storage (results independent of the caller's alignment),
  // fills z_ with the logits; with `keep_softmax` replaces them by (softmax(Z) - Y) / n.
  double forward(std::span<const T> x, const row_mat& xm, const dataset<T>& d, bool keep_softmax) const {
    if (d.rows == 0) return std::nan("");
    w_ = Eigen::Map<const row_mat>(x.data(), idx(train_.classes), idx(train_.features));
    b_ = Eigen::Map<const vec>(x.data() + bias_offset(), idx(train_.classes));
    z_.noalias() = xm * w_.transpose();
    z_.rowwise() += b_.transpose();
    const double inv_n = 1.0 / static_cast<double>(d.rows);
    const Eigen::Index c = idx(train_.classes);
    double loss = 0.0;
    for (Eigen::Index i = 0; i < z_.rows(); ++i) {
      double m = static_cast<double>(z_(i, 0));
      for (Eigen::Index k = 1; k < c; ++k) m = std::max(m, static_cast<double>(z_(i, k)));
      double s = 0.0;
      for (Eigen::Index k = 0; k < c; ++k) s += std::exp(static_cast<double>(z_(i, k)) - m);
      const double lse = m + std::log(s);
      const auto y = static_cast<Eigen::Index>(d.y[static_cast<std::size_t>(i)]);
      loss += lse - static_cast<double>(z_(i, y));
      if (keep_softmax) {
        for (Eigen::Index k = 0; k < c; ++k) {
          const double p = std::exp(static_cast<double>(z_(i, k)) - lse);
          z_(i, k) = static_cast<T>((k == y ? p - 1.0 : p) * inv_n);
        }
      }
    }
    return loss * inv_n;
  }

  double penalty(std::span<const T> x) const noexcept {
    if (opts_.l2 == 0.0) return 0.0;
    double s = 0.0;
    for (std::size_t k = 0; k < bias_offset(); ++k) s += static_cast<double>(x[k]) * static_cast<double>(x[k]);
    return 0.5 * opts_.l2 * s;
  }

  double accuracy(std::span<const T> x, const row_mat& xm, const dataset<T>& d) const {
    check(x, "softmax_regression::accuracy");
    if (d.rows == 0) return std::nan("");
    forward(x, xm, d, false);
    std::size_t ok = 0;
    for (Eigen::Index i = 0; i < z_.rows(); ++i) {
      Eigen::Index best = 0;
      for (Eigen::Index k = 1; k < z_.cols(); ++k) {
        if (z_(i, k) > z_(i, best)) best = k;
      }
      ok += best == static_cast<Eigen::Index>(d.y[static_cast<std::size_t>(i)]) ? 1u : 0u;
    }
    return static_cast<double>(ok) / static_cast<double>(d.rows);
  }

  dataset<T> train_;
  dataset<T> test_;
  softmax_regression_options opts_;
  row_mat xtrain_, xtest_;
  mutable row_mat w_, gw_;
  mutable mat z_;
  mutable vec b_;
};

}  // namespace stochgrad::problems
