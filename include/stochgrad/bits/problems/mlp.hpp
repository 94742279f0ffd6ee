// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief A small multi-layer perceptron classifier (one hidden layer, softmax cross-entropy) on a
/// labelled dataset (e.g. digits: 64-32-10), with hand-written backpropagation.
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
#include "../rng/noise.hpp"
#include "dataset.hpp"

namespace stochgrad::problems {

/// Hidden-layer non-linearity of `mlp_classifier`.
enum class activation {
  tanh,  ///< tanh(a); derivative 1 - tanh(a)^2
  relu   ///< max(a, 0); derivative taken as 0 at a = 0
};

/// Construction options of `mlp_classifier`.
struct mlp_options {
  std::size_t hidden = 32;            ///< hidden units, >= 1
  activation act = activation::tanh;  ///< hidden non-linearity
  double l2 = 0.0;                    ///< L2 penalty on the weight matrices (not biases), >= 0
};

/// Where each tensor lives inside the flat parameter vector of `mlp_classifier` (element
/// offsets; matrices row-major: W1 is hidden x inputs, W2 is classes x hidden). Useful to build
/// parameter groups (e.g. no weight decay on biases).
struct mlp_layout {
  std::size_t inputs = 0;   ///< features of the dataset
  std::size_t hidden = 0;   ///< hidden units
  std::size_t classes = 0;  ///< output units
  std::size_t w1 = 0;       ///< offset of W1 (hidden x inputs)
  std::size_t b1 = 0;       ///< offset of b1 (hidden)
  std::size_t w2 = 0;       ///< offset of W2 (classes x hidden)
  std::size_t b2 = 0;       ///< offset of b2 (classes)
  std::size_t size = 0;     ///< total number of parameters
};

/// One-hidden-layer perceptron classifier with softmax cross-entropy:
/// \f[ H = \phi(X W_1^\top + \mathbf 1 b_1^\top),\quad Z = H W_2^\top + \mathbf 1 b_2^\top,\quad
///     f = \frac1n \sum_i \big[\operatorname{logsumexp}(Z_{i\cdot}) - Z_{i y_i}\big]
///         + \frac{\lambda}{2}\big(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2\big). \f]
/// Exact gradient by backpropagation: \f$ \Delta Z = (\operatorname{softmax}(Z) - Y)/n \f$,
/// \f$ \nabla W_2 = \Delta Z^\top H \f$, \f$ \nabla b_2 = \mathbf 1^\top \Delta Z \f$,
/// \f$ \Delta A = (\Delta Z W_2) \odot \phi'(A) \f$, \f$ \nabla W_1 = \Delta A^\top X \f$,
/// \f$ \nabla b_1 = \mathbf 1^\top \Delta A \f$ (plus \f$\lambda W\f$). Matrix products run in T
/// with Eigen on the calling thread (deterministic); the log-sum-exp and the loss are
/// accumulated in double. Initial point: Glorot/Xavier uniform weights
/// \f$ U(\pm\sqrt{6/(\text{fan}_\text{in} + \text{fan}_\text{out})}) \f$ (Glorot and Bengio 2010)
/// from the library's counter-based generator keyed by the seed, zero biases. At x = 0 the loss
/// is exactly log(classes). Predicted class: the first arg-max of Z. Results do not depend on the
/// alignment of the caller's buffers (parameters are copied into aligned matrices). Not
/// thread-safe (the object keeps activation buffers).
template <real_scalar T>
class mlp_classifier {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` is exact

  /// Takes ownership of the (already standardised) training and test sets.
  /// @throws invalid_argument if the training set is empty, has fewer than 2 classes, hidden is
  ///         0 or l2 is negative or not finite; size_mismatch if the feature counts differ.
  mlp_classifier(dataset<T> train, dataset<T> test, const mlp_options& opts = {})
      : train_(std::move(train)), test_(std::move(test)), opts_(opts) {
    detail::require(train_.rows >= 1, "mlp_classifier", "train.rows", 0.0, ">= 1");
    detail::require(train_.classes >= 2, "mlp_classifier", "train.classes", static_cast<double>(train_.classes),
                    ">= 2");
    detail::require(opts.hidden >= 1, "mlp_classifier", "hidden", static_cast<double>(opts.hidden), ">= 1");
    detail::require(std::isfinite(opts.l2) && opts.l2 >= 0.0, "mlp_classifier", "l2", opts.l2, "finite and >= 0");
    detail::require_same_size("mlp_classifier", "train features", train_.features, "test features", test_.features);
    detail::require(test_.classes <= train_.classes, "mlp_classifier", "test.classes",
                    static_cast<double>(test_.classes), "<= train.classes");
    layout_.inputs = train_.features;
    layout_.hidden = opts.hidden;
    layout_.classes = train_.classes;
    layout_.w1 = 0;
    layout_.b1 = layout_.w1 + opts.hidden * train_.features;
    layout_.w2 = layout_.b1 + opts.hidden;
    layout_.b2 = layout_.w2 + train_.classes * opts.hidden;
    layout_.size = layout_.b2 + train_.classes;
    xtrain_ = Eigen::Map<const row_mat>(train_.x.data(), idx(train_.rows), idx(train_.features));
    xtest_ = Eigen::Map<const row_mat>(test_.x.data(), idx(test_.rows), idx(test_.features));
  }

  /// Number of parameters: hidden (inputs + 1) + classes (hidden + 1).
  std::size_t dimension() const noexcept { return layout_.size; }
  /// Offsets of W1, b1, W2, b2 in the parameter vector.
  const mlp_layout& layout() const noexcept { return layout_; }
  /// The training set.
  const dataset<T>& train() const noexcept { return train_; }
  /// The test set.
  const dataset<T>& test() const noexcept { return test_; }
  /// The options in use.
  const mlp_options& options() const noexcept { return opts_; }

  /// Writes the Glorot-uniform initial point for `seed` (W1 from stream 0, W2 from stream 1 of
  /// key (seed, ., draw 0), uniform variates), zero biases.
  /// @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t seed = 0) const {
    detail::require_same_size("mlp_classifier::initial_point", "x", x.size(), "dimension", dimension());
    const mlp_layout& l = layout_;
    const double a1 = std::sqrt(6.0 / static_cast<double>(l.inputs + l.hidden));
    const double a2 = std::sqrt(6.0 / static_cast<double>(l.hidden + l.classes));
    for (std::size_t k = 0; k < l.hidden * l.inputs; ++k) {
      x[l.w1 + k] = static_cast<T>(a1 * (2.0 * static_cast<double>(noise_at<uniform>(noise_key{seed, 0, 0}, k)) - 1.0));
    }
    for (std::size_t k = 0; k < l.classes * l.hidden; ++k) {
      x[l.w2 + k] = static_cast<T>(a2 * (2.0 * static_cast<double>(noise_at<uniform>(noise_key{seed, 1, 0}, k)) - 1.0));
    }
    for (std::size_t k = 0; k < l.hidden; ++k) x[l.b1 + k] = T(0);
    for (std::size_t k = 0; k < l.classes; ++k) x[l.b2 + k] = T(0);
  }

  /// Regularised mean training cross-entropy. @throws size_mismatch unless x.size() == dimension().
  double value(std::span<const T> x, const executor& /*ex*/ = {}) const {
    check(x, "mlp_classifier::value");
    return forward(x, train_, train_ws_, false) + penalty(x);
  }

  /// Writes the exact gradient (backpropagation) and returns the regularised training loss.
  /// @throws size_mismatch unless x and g have dimension() elements.
  double value_and_gradient(std::span<const T> x, std::span<T> g, const executor& /*ex*/ = {}) const {
    check(x, "mlp_classifier::value_and_gradient");
    detail::require_same_size("mlp_classifier::value_and_gradient", "g", g.size(), "dimension", dimension());
    const double f = forward(x, train_, train_ws_, true) + penalty(x);
    backward(g);
    return f;
  }

  /// Mean cross-entropy (no penalty) on the test set.
  double test_loss(std::span<const T> x) const {
    check(x, "mlp_classifier::test_loss");
    return forward(x, test_, test_ws_, false);
  }
  /// Fraction of training rows classified correctly.
  double train_accuracy(std::span<const T> x) const { return accuracy(x, train_, train_ws_); }
  /// Fraction of test rows classified correctly.
  double test_accuracy(std::span<const T> x) const { return accuracy(x, test_, test_ws_); }

 private:
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using row_mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  struct workspace {
    mat a, h, z, dh;
  };

  void check(std::span<const T> x, const char* what) const {
    detail::require_same_size(what, "x", x.size(), "dimension", dimension());
  }

  static Eigen::Index idx(std::size_t v) noexcept { return static_cast<Eigen::Index>(v); }

  // Copies the parameters into aligned matrices: Eigen's kernels never see the caller's buffer,
  // so results cannot depend on its alignment whatever kernels Eigen picks.
  void load(std::span<const T> x) const {
    w1_ = Eigen::Map<const row_mat>(x.data() + layout_.w1, idx(layout_.hidden), idx(layout_.inputs));
    b1_ = Eigen::Map<const vec>(x.data() + layout_.b1, idx(layout_.hidden));
    w2_ = Eigen::Map<const row_mat>(x.data() + layout_.w2, idx(layout_.classes), idx(layout_.hidden));
    b2_ = Eigen::Map<const vec>(x.data() + layout_.b2, idx(layout_.classes));
  }

  // Fills ws.a, ws.h, ws.z; returns the mean cross-entropy. With `keep_softmax`, ws.z is replaced
  // by (softmax(Z) - Y) / n, the gradient of the mean loss with respect to Z.
  double forward(std::span<const T> x, const dataset<T>& d, workspace& ws, bool keep_softmax) const {
    if (d.rows == 0) return std::nan("");
    load(x);
    const row_mat& xm = &d == &train_ ? xtrain_ : xtest_;
    ws.a.noalias() = xm * w1_.transpose();
    ws.a.rowwise() += b1_.transpose();
    if (opts_.act == activation::tanh) {
      ws.h = ws.a.array().tanh();
    } else {
      ws.h = ws.a.array().max(T(0));
    }
    ws.z.noalias() = ws.h * w2_.transpose();
    ws.z.rowwise() += b2_.transpose();
    const double inv_n = 1.0 / static_cast<double>(d.rows);
    double loss = 0.0;
    const Eigen::Index c = idx(layout_.classes);
    for (Eigen::Index i = 0; i < ws.z.rows(); ++i) {
      double m = static_cast<double>(ws.z(i, 0));
      for (Eigen::Index k = 1; k < c; ++k) m = std::max(m, static_cast<double>(ws.z(i, k)));
      double s = 0.0;
      for (Eigen::Index k = 0; k < c; ++k) s += std::exp(static_cast<double>(ws.z(i, k)) - m);
      const double lse = m + std::log(s);
      const auto y = static_cast<Eigen::Index>(d.y[static_cast<std::size_t>(i)]);
      loss += lse - static_cast<double>(ws.z(i, y));
      if (keep_softmax) {
        for (Eigen::Index k = 0; k < c; ++k) {
          const double p = std::exp(static_cast<double>(ws.z(i, k)) - lse);
          ws.z(i, k) = static_cast<T>(((k == y ? p - 1.0 : p)) * inv_n);
        }
      }
    }
    return loss * inv_n;
  }

  // Uses train_ws_ and the loaded parameters as left by forward(..., keep_softmax = true).
  void backward(std::span<T> g) const {
    workspace& ws = train_ws_;
    gw2_.noalias() = ws.z.transpose() * ws.h;
    gb2_ = ws.z.colwise().sum().transpose();
    ws.dh.noalias() = ws.z * w2_;
    if (opts_.act == activation::tanh) {
      ws.dh.array() *= T(1) - ws.h.array().square();
    } else {
      ws.dh.array() *= (ws.a.array() > T(0)).template cast<T>();
    }
    gw1_.noalias() = ws.dh.transpose() * xtrain_;
    gb1_ = ws.dh.colwise().sum().transpose();
    if (opts_.l2 > 0.0) {
      const T l2 = static_cast<T>(opts_.l2);
      gw1_ += l2 * w1_;
      gw2_ += l2 * w2_;
    }
    Eigen::Map<row_mat>(g.data() + layout_.w1, idx(layout_.hidden), idx(layout_.inputs)) = gw1_;
    Eigen::Map<vec>(g.data() + layout_.b1, idx(layout_.hidden)) = gb1_;
    Eigen::Map<row_mat>(g.data() + layout_.w2, idx(layout_.classes), idx(layout_.hidden)) = gw2_;
    Eigen::Map<vec>(g.data() + layout_.b2, idx(layout_.classes)) = gb2_;
  }

  double penalty(std::span<const T> x) const noexcept {
    if (opts_.l2 == 0.0) return 0.0;
    double s = 0.0;
    for (std::size_t k = 0; k < layout_.hidden * layout_.inputs; ++k) {
      s += static_cast<double>(x[layout_.w1 + k]) * static_cast<double>(x[layout_.w1 + k]);
    }
    for (std::size_t k = 0; k < layout_.classes * layout_.hidden; ++k) {
      s += static_cast<double>(x[layout_.w2 + k]) * static_cast<double>(x[layout_.w2 + k]);
    }
    return 0.5 * opts_.l2 * s;
  }

  double accuracy(std::span<const T> x, const dataset<T>& d, workspace& ws) const {
    check(x, "mlp_classifier::accuracy");
    if (d.rows == 0) return std::nan("");
    forward(x, d, ws, false);
    std::size_t ok = 0;
    for (Eigen::Index i = 0; i < ws.z.rows(); ++i) {
      Eigen::Index best = 0;
      for (Eigen::Index k = 1; k < ws.z.cols(); ++k) {
        if (ws.z(i, k) > ws.z(i, best)) best = k;
      }
      ok += best == static_cast<Eigen::Index>(d.y[static_cast<std::size_t>(i)]) ? 1u : 0u;
    }
    return static_cast<double>(ok) / static_cast<double>(d.rows);
  }

  dataset<T> train_;
  dataset<T> test_;
  mlp_options opts_;
  mlp_layout layout_;
  row_mat xtrain_, xtest_;  // aligned copies of the features
  mutable workspace train_ws_;
  mutable workspace test_ws_;
  mutable row_mat w1_, w2_, gw1_, gw2_;
  mutable vec b1_, b2_, gb1_, gb2_;
};

}  // namespace stochgrad::problems
