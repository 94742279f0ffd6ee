// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Robust low-rank matrix sensing with an l1 loss on Burer–Monteiro factors and gross
/// outliers (Ma & Fattahi, arXiv 2202.08788; design/seeds/optimizers.md section 7), the problem of
/// the sub-gradient method (SubGM) with small initialisation and geometric step sizes.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"

namespace stochgrad::problems {

/// Construction options of `robust_matrix_sensing` (generated measurements).
struct robust_matrix_sensing_options {
  std::size_t d = 10;              ///< matrix size d (X* is d x d), >= 1
  std::size_t rank = 2;            ///< true rank r, in [1, d]
  std::size_t rank_bound = 5;      ///< factor width r' >= r (over-parameterisation)
  std::size_t measurements = 300;  ///< m >= 1
  double condition_number = 2.0;   ///< kappa >= 1: eigenvalues of X* linear from 1 down to 1/kappa
  double outlier_fraction = 0.1;   ///< fraction of measurements hit by an outlier, in [0, 1]
  double outlier_scale = 10.0;     ///< outlier value outlier_scale * N(0, 1), finite and >= 0
  double gauss_sigma = 0.0;        ///< dense Gaussian noise sigma * N(0, 1) on every measurement, >= 0
  double init_scale = 1e-3;        ///< small initialisation alpha: U_0 = alpha B0, finite and > 0
  std::uint64_t seed = 0;          ///< seeds everything (counter RNG streams, see the class)
};

/// Robust matrix sensing (Ma & Fattahi 2022): recover the rank-r PSD `X* = U* U*^T` (d x d) from
/// `y_i = <A_i, X*> + s_i`, i = 1..m, with the factor `U` (d x r', row-major, `U[a r' + b]`):
/// \f[ f(U) = \frac1m \sum_{i=1}^m \left| \langle A_i, U U^\top\rangle - y_i \right|, \qquad
///     D(U) = \frac1m (S + S^\top) U, \quad S = \sum_{i=1}^m \operatorname{sign}(\langle A_i, U U^\top\rangle - y_i)\, A_i \f]
/// with `<A, X> = sum_jk A_jk X_jk` and `sign(0) = 0`; D is a subgradient of f, equal to its
/// gradient wherever no residual is 0 (`value_and_gradient` / `subgradient` write it, so
/// `has_gradient` is set although f is not smooth). SubGM is
/// `optim::sgd<geometric_schedule>({.lr = eta_0}, {.rho = rho})` from `initial_point`:
/// \f$ U_{t+1} = U_t - \eta_0 \rho^t D(U_t),\; U_0 = \alpha B_0 \f$.
///
/// Generated problems use the library's counter RNG with the options' seed (Gaussians are the
/// float variates widened to double): the entries of `A_i` (not symmetrised) are N(0, 1) from
/// stream 0 (element `i d^2 + j d + k`); the outliers hit the `round(fraction m)` measurements with
/// the smallest uniforms of stream 1 and add `outlier_scale z_i`, z from stream 2; B0 has N(0, 1/d)
/// entries from stream 3 (draw = the `initial_point` seed); dense noise `gauss_sigma z_i` comes from
/// stream 4; the eigenvectors of X* are the Q factor of a d x r Gaussian matrix of stream 5, its
/// eigenvalues `lambda_j = 1 - (1 - 1/kappa) j / (r - 1)` (1 and 0.5 for r = 2, kappa = 2).
/// Streams 4 and 5 and the eigenvalue rule are this library's choices (spec section 7.4 names 0-3).
/// Everything is computed in double; O(m d^2 + d^2 r') per evaluation; not thread-safe (the
/// object keeps d x d workspace). The executor argument is accepted and not used.
template <real_scalar T>
class robust_matrix_sensing {
 public:
  using value_type = T;                       ///< parameter type
  static constexpr bool has_gradient = true;  ///< `value_and_gradient` writes the subgradient D(U)

  /// A generated problem.
  /// @throws invalid_argument naming the option: d, rank, measurements 0; rank > d; rank_bound <
  /// rank; condition_number < 1; outlier_fraction outside [0, 1]; outlier_scale, gauss_sigma < 0;
  /// init_scale <= 0; any of them not finite.
  explicit robust_matrix_sensing(const robust_matrix_sensing_options& o = {}) : o_(o) {
    validate(o);
    const std::size_t d = o.d, m = o.measurements, dd = d * d;
    a_.resize(m * dd);
    for (std::size_t e = 0; e < a_.size(); ++e) a_[e] = gauss(0, e);
    make_solution();
    y_.assign(m, 0.0);
    for (std::size_t i = 0; i < m; ++i) y_[i] = inner(i, x_star_.data()) + o.gauss_sigma * gauss(4, i);
    outlier_.assign(m, 0);
    const auto k = static_cast<std::size_t>(std::llround(o.outlier_fraction * static_cast<double>(m)));
    std::vector<std::size_t> idx(m);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::vector<float> u(m);
    for (std::size_t i = 0; i < m; ++i) u[i] = noise_value<uniform>(noise_key{o.seed, 1, 0}, i);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t p, std::size_t q) { return u[p] < u[q]; });
    for (std::size_t j = 0; j < std::min(k, m); ++j) {
      outlier_[idx[j]] = 1;
      y_[idx[j]] += o.outlier_scale * gauss(2, idx[j]);
    }
    init_workspace();
  }

  /// A problem with given data: `A` (m matrices d x d, row-major, `A[i d^2 + j d + k]`),
  /// measurements `y` (m) and ground truth `X*` (d x d row-major, used by the error measures only).
  /// `initial_point` uses B0 of stream 3 of seed 0 and `init_scale`.
  /// @param d matrix size (>= 1)
  /// @param rank_bound factor width r' (>= 1)
  /// @param A the measurement matrices, m d^2 elements (m >= 1)
  /// @param y the measurements, m elements
  /// @param x_star the ground truth, d^2 elements
  /// @param init_scale alpha of the initial point (finite, > 0)
  /// @throws invalid_argument for d, rank_bound or m = 0, a bad init_scale; size_mismatch when the
  /// sizes disagree.
  robust_matrix_sensing(std::size_t d, std::size_t rank_bound, std::vector<double> A, std::vector<double> y,
                        std::vector<double> x_star, double init_scale = 1e-3)
      : a_(std::move(A)), y_(std::move(y)), x_star_(std::move(x_star)) {
    const char* w = "robust_matrix_sensing";
    detail::require(d >= 1, w, "d", 0.0, ">= 1");
    detail::require(rank_bound >= 1, w, "rank_bound", 0.0, ">= 1");
    detail::require(!y_.empty(), w, "measurements", 0.0, ">= 1");
    detail::require(std::isfinite(init_scale) && init_scale > 0.0, w, "init_scale", init_scale, "finite and > 0");
    const std::size_t dd = detail::checked_product(w, "d", d, "d", d);
    detail::require_same_size(w, "A", a_.size(), "m d^2", detail::checked_product(w, "m", y_.size(), "d^2", dd));
    detail::require_same_size(w, "x_star", x_star_.size(), "d^2", dd);
    o_.d = d;
    o_.rank = std::min(rank_bound, d);
    o_.rank_bound = rank_bound;
    o_.measurements = y_.size();
    o_.outlier_fraction = 0.0;
    o_.init_scale = init_scale;
    outlier_.assign(y_.size(), 0);
    init_workspace();
  }

  /// Number of parameters d r'.
  std::size_t dimension() const noexcept { return o_.d * o_.rank_bound; }
  /// Matrix size d.
  std::size_t rows() const noexcept { return o_.d; }
  /// Factor width r'.
  std::size_t rank_bound() const noexcept { return o_.rank_bound; }
  /// Number of measurements m.
  std::size_t measurements() const noexcept { return y_.size(); }
  /// The measurements y (m).
  std::span<const double> observations() const noexcept { return y_; }
  /// The measurement matrices (m d^2, row-major per matrix).
  std::span<const double> sensing_matrices() const noexcept { return a_; }
  /// 1 where measurement i carries an outlier (m).
  std::span<const std::uint8_t> outliers() const noexcept { return outlier_; }
  /// The ground truth X* (d x d row-major).
  std::span<const double> solution() const noexcept { return x_star_; }
  /// The options (for a problem with given data: d, rank_bound, measurements and init_scale).
  const robust_matrix_sensing_options& options() const noexcept { return o_; }

  /// Writes `U_0 = alpha B0`, B0 with N(0, 1/d) entries from stream 3, draw `seed mod 2^32`.
  /// @param x the factor, dimension() elements
  /// @param seed selects B0 (the draw of stream 3; only its low 32 bits are used)
  /// @throws size_mismatch unless x.size() == dimension().
  void initial_point(std::span<T> x, std::uint64_t seed = 0) const {
    detail::require_same_size("robust_matrix_sensing::initial_point", "x", x.size(), "dimension", dimension());
    const double s = o_.init_scale / std::sqrt(static_cast<double>(o_.d));
    const noise_key k{o_.seed, 3, static_cast<std::uint32_t>(seed)};
    for (std::size_t e = 0; e < x.size(); ++e) x[e] = static_cast<T>(s * noise_value<gaussian, default_generator, double>(k, e));
  }

  /// f(U). @throws size_mismatch unless U.size() == dimension().
  double value(std::span<const T> U, const executor& /*ex*/ = {}) const {
    detail::require_same_size("robust_matrix_sensing::value", "U", U.size(), "dimension", dimension());
    return evaluate(U, false);
  }

  /// Writes the subgradient D(U) to g and returns f(U).
  /// @throws size_mismatch unless U and g have dimension() elements.
  double value_and_gradient(std::span<const T> U, std::span<T> g, const executor& /*ex*/ = {}) const {
    return subgradient(U, g);
  }

  /// Writes the subgradient `D(U) = (S + S^T) U / m` to `out` and returns f(U).
  /// @param U the factor (d r')
  /// @param out the subgradient (d r')
  /// @throws size_mismatch unless U and out have dimension() elements. Nothing is written then.
  double subgradient(std::span<const T> U, std::span<T> out) const {
    detail::require_same_size("robust_matrix_sensing::subgradient", "U", U.size(), "dimension", dimension());
    detail::require_same_size("robust_matrix_sensing::subgradient", "out", out.size(), "dimension", dimension());
    const double f = evaluate(U, true);
    const std::size_t d = o_.d, r = o_.rank_bound;
    const double inv_m = 1.0 / static_cast<double>(y_.size());
    for (std::size_t a = 0; a < d; ++a) {
      for (std::size_t b = 0; b < r; ++b) {
        double s = 0.0;
        for (std::size_t c = 0; c < d; ++c) s += (s_[a * d + c] + s_[c * d + a]) * static_cast<double>(U[c * r + b]);
        out[a * r + b] = static_cast<T>(s * inv_m);
      }
    }
    return f;
  }

  /// `||U U^T - X*||_F`. @throws size_mismatch unless U.size() == dimension().
  double error(std::span<const T> U) const {
    detail::require_same_size("robust_matrix_sensing::error", "U", U.size(), "dimension", dimension());
    gram(U);
    double q = 0.0;
    for (std::size_t e = 0; e < x_.size(); ++e) q += (x_[e] - x_star_[e]) * (x_[e] - x_star_[e]);
    return std::sqrt(q);
  }

  /// `||U U^T - X*||_F / ||X*||_F` (the plain error when X* = 0).
  /// @throws size_mismatch unless U.size() == dimension().
  double relative_error(std::span<const T> U) const {
    double n = 0.0;
    for (double v : x_star_) n += v * v;
    const double e = error(U);
    return n > 0.0 ? e / std::sqrt(n) : e;
  }

 private:
  static void validate(const robust_matrix_sensing_options& o) {
    const char* w = "robust_matrix_sensing";
    detail::require(o.d >= 1, w, "d", 0.0, ">= 1");
    detail::require(o.rank >= 1 && o.rank <= o.d, w, "rank", static_cast<double>(o.rank), "in [1, d]");
    detail::require(o.rank_bound >= o.rank, w, "rank_bound", static_cast<double>(o.rank_bound), ">= rank");
    detail::require(o.measurements >= 1, w, "measurements", 0.0, ">= 1");
    detail::require(std::isfinite(o.condition_number) && o.condition_number >= 1.0, w, "condition_number",
                    o.condition_number, "finite and >= 1");
    detail::require(o.outlier_fraction >= 0.0 && o.outlier_fraction <= 1.0, w, "outlier_fraction", o.outlier_fraction,
                    "in [0, 1]");
    detail::require(std::isfinite(o.outlier_scale) && o.outlier_scale >= 0.0, w, "outlier_scale", o.outlier_scale,
                    "finite and >= 0");
    detail::require(std::isfinite(o.gauss_sigma) && o.gauss_sigma >= 0.0, w, "gauss_sigma", o.gauss_sigma,
                    "finite and >= 0");
    detail::require(std::isfinite(o.init_scale) && o.init_scale > 0.0, w, "init_scale", o.init_scale, "finite and > 0");
    detail::checked_product(w, "measurements", o.measurements, "d^2", detail::checked_product(w, "d", o.d, "d", o.d));
  }

  double gauss(std::uint32_t stream, std::size_t e) const noexcept {
    return noise_value<gaussian, default_generator, double>(noise_key{o_.seed, stream, 0}, e);
  }

  // X* = Q diag(lambda) Q^T with Q the thin Q factor of a d x r Gaussian matrix (stream 5).
  void make_solution() {
    const auto d = static_cast<Eigen::Index>(o_.d), r = static_cast<Eigen::Index>(o_.rank);
    Eigen::MatrixXd g(d, r);
    for (Eigen::Index j = 0; j < r; ++j) {
      for (Eigen::Index i = 0; i < d; ++i) g(i, j) = gauss(5, static_cast<std::size_t>(j * d + i));
    }
    const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ() * Eigen::MatrixXd::Identity(d, r);
    Eigen::VectorXd lam(r);
    for (Eigen::Index j = 0; j < r; ++j) {
      lam(j) = r == 1 ? 1.0 : 1.0 - (1.0 - 1.0 / o_.condition_number) * static_cast<double>(j) / static_cast<double>(r - 1);
    }
    const Eigen::MatrixXd x = q * lam.asDiagonal() * q.transpose();
    x_star_.resize(o_.d * o_.d);
    for (Eigen::Index i = 0; i < d; ++i) {
      for (Eigen::Index j = 0; j < d; ++j) x_star_[static_cast<std::size_t>(i * d + j)] = x(i, j);
    }
  }

  void init_workspace() {
    x_.assign(o_.d * o_.d, 0.0);
    s_.assign(o_.d * o_.d, 0.0);
  }

  // <A_i, X> for a d x d row-major X.
  double inner(std::size_t i, const double* x) const noexcept {
    const std::size_t dd = o_.d * o_.d;
    const double* a = a_.data() + i * dd;
    double s = 0.0;
    for (std::size_t e = 0; e < dd; ++e) s += a[e] * x[e];
    return s;
  }

  // x_ = U U^T.
  void gram(std::span<const T> U) const {
    const std::size_t d = o_.d, r = o_.rank_bound;
    for (std::size_t a = 0; a < d; ++a) {
      for (std::size_t b = 0; b < d; ++b) {
        double s = 0.0;
        for (std::size_t c = 0; c < r; ++c) s += static_cast<double>(U[a * r + c]) * static_cast<double>(U[b * r + c]);
        x_[a * d + b] = s;
      }
    }
  }

  // f(U); with `sign`, also s_ = sum_i sign(residual_i) A_i.
  double evaluate(std::span<const T> U, bool sign) const {
    gram(U);
    const std::size_t dd = o_.d * o_.d;
    if (sign) std::fill(s_.begin(), s_.end(), 0.0);
    double f = 0.0;
    for (std::size_t i = 0; i < y_.size(); ++i) {
      const double res = inner(i, x_.data()) - y_[i];
      f += std::abs(res);
      if (sign && res != 0.0) {
        const double sg = res > 0.0 ? 1.0 : -1.0;
        const double* a = a_.data() + i * dd;
        for (std::size_t e = 0; e < dd; ++e) s_[e] += sg * a[e];
      }
    }
    return f / static_cast<double>(y_.size());
  }

  robust_matrix_sensing_options o_;
  std::vector<double> a_;
  std::vector<double> y_;
  std::vector<double> x_star_;
  std::vector<std::uint8_t> outlier_;
  mutable std::vector<double> x_;
  mutable std::vector<double> s_;
};

}  // namespace stochgrad::problems
