// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Binary logistic regression on a labelled dataset (e.g. breast cancer): L2-regularised
/// mean log-loss, its exact gradient, test loss and accuracy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "dataset.hpp"

namespace stochgrad::problems {

/// Construction options of `logistic_regression`.
struct logistic_regression_options {
  double l2 = 1e-3;  ///< L2 penalty on the weights (not the bias), >= 0
};

/// Binary logistic regression. Parameters x = (w_0 .. w_{p-1}, b): p weights then the bias.
/// With \f$ z_i = w^\top a_i + b \f$ over the n training rows \f$(a_i, y_i \in \{0, 1\})\f$,
/// \f[ f(x) = \frac1n \sum_i \big[\operatorname{softplus}(z_i) - y_i z_i\big]
///            + \frac{\lambda}{2}\lVert w\rVert^2,\qquad
///     \nabla_w f = \frac1n \sum_i (\sigma(z_i) - y_i)\,a_i + \lambda w,\quad
///     \partial_b f = \frac1n \sum_i (\sigma(z_i) - y_i), \f]
/// with softplus(z) = log(1 + e^z) evaluated stably. Everything is accumulated in double over
/// the rows in order (deterministic); the gradient is rounded to T. With lambda > 0 the problem is
/// strongly convex; at x = 0 the loss is exactly log 2. The class predicted for a row is 1 iff
/// z > 0. Runs on the calling thread (the datasets are small).
template <real_scalar T>
class logistic_regression {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` is exact

  /// Takes ownership of the (already standardised) training and test sets.
  /// @throws invalid_argument if the training set is empty, a set has more than two classes or
  ///         l2 is negative or not finite; size_mismatch if the feature counts differ.
  logistic_regression(dataset<T> train, dataset<T> test, const logistic_regression_options& opts = {})
      : train_(std::move(train)), test_(std::move(test)), opts_(opts) {
    detail::require(train_.rows >= 1, "logistic_regression", "train.rows", 0.0, ">= 1");
    detail::require(train_.classes <= 2, "logistic_regression", "train.classes", static_cast<double>(train_.classes),
                    "<= 2 (labels 0/1)");
    detail::require(test_.classes <= 2, "logistic_regression", "test.classes", static_cast<double>(test_.classes),
                    "<= 2 (labels 0/1)");
    detail::require_same_size("logistic_regression", "train features", train_.features, "test features",
                              test_.features);
    detail::require(std::isfinite(opts.l2) && opts.l2 >= 0.0, "logistic_regression", "l2", opts.l2,
                    "finite and >= 0");
  }

  /// Number of parameters: features + 1.
  std::size_t dimension() const noexcept { return train_.features + 1; }
  /// The training set (standardised as given).
  const dataset<T>& train() const noexcept { return train_; }
  /// The test set.
  const dataset<T>& test() const noexcept { return test_; }
  /// The options in use.
  const logistic_regression_options& options() const noexcept { return opts_; }

  /// Writes x = 0 (the seed is not used). @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t /*seed*/ = 0) const {
    detail::require_same_size("logistic_regression::initial_point", "x", x.size(), "dimension", dimension());
    for (T& v : x) v = T(0);
  }

  /// Regularised mean training log-loss. @throws size_mismatch unless x.size() == dimension().
  double value(std::span<const T> x, const executor& /*ex*/ = {}) const {
    check(x, "logistic_regression::value");
    return mean_loss(x, train_, nullptr) + penalty(x);
  }

  /// Writes the exact gradient and returns the regularised training loss.
  /// @throws size_mismatch unless x and g have dimension() elements.
  double value_and_gradient(std::span<const T> x, std::span<T> g, const executor& /*ex*/ = {}) const {
    check(x, "logistic_regression::value_and_gradient");
    detail::require_same_size("logistic_regression::value_and_gradient", "g", g.size(), "dimension", dimension());
    const std::size_t p = train_.features;
    grad_.assign(p + 1, 0.0);
    const double f = mean_loss(x, train_, grad_.data()) + penalty(x);
    for (std::size_t j = 0; j < p; ++j) g[j] = static_cast<T>(grad_[j] + opts_.l2 * static_cast<double>(x[j]));
    g[p] = static_cast<T>(grad_[p]);
    return f;
  }

  /// Mean log-loss (no penalty) on the test set. @throws size_mismatch on a wrong size.
  double test_loss(std::span<const T> x) const {
    check(x, "logistic_regression::test_loss");
    return mean_loss(x, test_, nullptr);
  }
  /// Fraction of training rows classified correctly.
  double train_accuracy(std::span<const T> x) const { return accuracy(x, train_); }
  /// Fraction of test rows classified correctly.
  double test_accuracy(std::span<const T> x) const { return accuracy(x, test_); }

 private:
  void check(std::span<const T> x, const char* what) const {
    detail::require_same_size(what, "x", x.size(), "dimension", dimension());
  }

  double logit(std::span<const T> x, const dataset<T>& d, std::size_t i) const noexcept {
    const std::size_t p = d.features;
    const T* a = d.x.data() + i * p;
    double z = static_cast<double>(x[p]);
    for (std::size_t j = 0; j < p; ++j) z += static_cast<double>(x[j]) * static_cast<double>(a[j]);
    return z;
  }

  // Mean log-loss over d; adds (1/n) sum (sigma - y) (a, 1) to grad when grad != nullptr.
  double mean_loss(std::span<const T> x, const dataset<T>& d, double* grad) const {
    if (d.rows == 0) return std::nan("");
    const std::size_t p = d.features;
    const double inv_n = 1.0 / static_cast<double>(d.rows);
    double loss = 0.0;
    for (std::size_t i = 0; i < d.rows; ++i) {
      const double z = logit(x, d, i);
      const double y = static_cast<double>(d.y[i]);
      const double softplus = std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z)));
      loss += softplus - y * z;
      if (grad != nullptr) {
        const double ez = std::exp(-std::abs(z));
        const double sigma = z >= 0.0 ? 1.0 / (1.0 + ez) : ez / (1.0 + ez);
        const double r = (sigma - y) * inv_n;
        const T* a = d.x.data() + i * p;
        for (std::size_t j = 0; j < p; ++j) grad[j] += r * static_cast<double>(a[j]);
        grad[p] += r;
      }
    }
    return loss * inv_n;
  }

  double penalty(std::span<const T> x) const noexcept {
    double s = 0.0;
    for (std::size_t j = 0; j < train_.features; ++j) s += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    return 0.5 * opts_.l2 * s;
  }

  double accuracy(std::span<const T> x, const dataset<T>& d) const {
    check(x, "logistic_regression::accuracy");
    if (d.rows == 0) return std::nan("");
    std::size_t ok = 0;
    for (std::size_t i = 0; i < d.rows; ++i) {
      const int pred = logit(x, d, i) > 0.0 ? 1 : 0;
      ok += pred == d.y[i] ? 1u : 0u;
    }
    return static_cast<double>(ok) / static_cast<double>(d.rows);
  }

  dataset<T> train_;
  dataset<T> test_;
  logistic_regression_options opts_;
  mutable std::vector<double> grad_;
};

}  // namespace stochgrad::problems
