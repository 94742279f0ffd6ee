// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Distributions of the distribution-parameter estimators (`stochgrad::dist`): their
/// parameter tensors, their sampler from standard noise and their score / reparameterisation in
/// closed form (design: shared/design/seeds/variational.md section 1.2).
///
/// A distribution is a stateless policy D with
/// - `D::name`, `D::tensors` (number of parameter tensors, in `parameters<T>` order);
/// - `D::validate(what, phi)`: sizes and values of the parameter tensors `phi` (one span per
///   tensor); throws size_mismatch / invalid_argument, changes nothing;
/// - `D::dim(phi)` (entries of one sample) and `D::noise_dim(phi)` (standard-noise entries per
///   sample: N(0,1) for Gaussians, U(0,1) for Bernoulli and categorical);
/// - `D::sample(phi, noise_row, z_row)`: one sample from its standard noise;
/// - where the score exists (`score_function`): `D::add_score(phi, noise_row, c, out)`, which adds
///   `c * dlog q(z)/dphi` at the sample `z` of `noise_row`, and `D::log_density(phi, noise_row)`;
/// - where a reparameterisation exists (`pathwise`): `D::add_pathwise(phi, noise_row, g_row, c, out)`,
///   which adds `c * (dz/dphi)^T g` for the caller's `g = grad_z f(z)`.
/// Every computation runs in double; the parameters and outputs are float or double.
#pragma once

#include <cmath>
#include <cstddef>
#include <numbers>
#include <span>
#include <string>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"

namespace stochgrad::dist {

/// The parameter tensors of a distribution, one read-only span per tensor.
template <real_scalar T>
using param_spans = std::span<const std::span<const T>>;
/// One writable span per parameter tensor (gradients).
template <real_scalar T>
using grad_spans = std::span<const std::span<T>>;

namespace detail {
/// Throws invalid_argument naming `name[i]` unless every entry of `x` is finite.
template <class T>
void require_finite(const char* what, const char* name, std::span<const T> x) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) {
      throw invalid_argument(std::string(what) + ": " + name + "[" + std::to_string(i) +
                             "] = " + stochgrad::detail::num_to_string(v) + ", must be finite");
    }
  }
}
/// Throws size_mismatch unless there are `n` tensors.
inline void require_tensors(const char* what, std::size_t got, std::size_t n) {
  stochgrad::detail::require_same_size(what, "parameter tensors", got, "the distribution's tensors", n);
}
/// `sigmoid(x) = 1 / (1 + exp(-x))`, without overflow for large |x|.
inline double sigmoid(double x) noexcept {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}
inline constexpr double log_2pi = 1.8378770664093454835606594728112;
}  // namespace detail

/// Diagonal Gaussian `N(mu, diag(sigma^2))` with log-std parameter, `sigma = exp(rho)`.
/// Tensors: `mu[d]`, `rho[d]`. Noise per sample: `eps[d] ~ N(0, 1)`.
///   sample           `z = mu + exp(rho) .* eps`
///   score            `dlog q/dmu = eps ./ sigma`, `dlog q/drho = eps.^2 - 1`
///   pathwise         `(dz/dmu)^T g = g`, `(dz/drho)^T g = g .* eps .* sigma`
///   log-density      `log q(z) = sum_i (-eps_i^2/2 - rho_i - log(2 pi)/2)`
/// A scalar Gaussian is the case d = 1. `sigma` must be positive: `rho` finite with
/// `exp(rho) > 0` (no underflow) and `exp(rho)` finite.
struct diag_gaussian {
  static constexpr const char* name = "diag_gaussian";  ///< identifies the distribution
  static constexpr std::size_t tensors = 2;             ///< mu, rho
  using noise_type = gaussian;                          ///< N(0, 1) standard noise

  /// Checks two tensors of equal, non-zero length, all finite, with `0 < exp(rho) < inf`.
  /// @param what  the caller's name, for messages
  /// @param phi   `{mu, rho}`
  template <real_scalar T>
  static void validate(const char* what, param_spans<T> phi) {
    detail::require_tensors(what, phi.size(), tensors);
    stochgrad::detail::require(!phi[0].empty(), what, "mu.size()", 0.0, ">= 1");
    stochgrad::detail::require_same_size(what, "mu", phi[0].size(), "rho", phi[1].size());
    detail::require_finite(what, "mu", phi[0]);
    for (std::size_t i = 0; i < phi[1].size(); ++i) {
      const double s = std::exp(static_cast<double>(phi[1][i]));
      if (!(s > 0.0 && std::isfinite(s))) {
        throw invalid_argument(std::string(what) + ": rho[" + std::to_string(i) + "] = " +
                               stochgrad::detail::num_to_string(static_cast<double>(phi[1][i])) +
                               " gives sigma = exp(rho) outside (0, inf)");
      }
    }
  }
  /// Entries of one sample: d.
  /// @param phi `{mu, rho}`
  template <real_scalar T>
  static std::size_t dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// Standard-noise entries per sample: d.
  /// @param phi `{mu, rho}`
  template <real_scalar T>
  static std::size_t noise_dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// `z = mu + exp(rho) .* eps`.
  /// @param phi `{mu, rho}`
  /// @param eps noise row
  /// @param z sample row
  template <real_scalar T>
  static void sample(param_spans<T> phi, std::span<const T> eps, std::span<T> z) noexcept {
    for (std::size_t i = 0; i < z.size(); ++i) {
      z[i] = static_cast<T>(static_cast<double>(phi[0][i]) +
                            std::exp(static_cast<double>(phi[1][i])) * static_cast<double>(eps[i]));
    }
  }
  /// `log q(z) = sum_i (-eps_i^2/2 - rho_i - log(2 pi)/2)` at `z = mu + sigma .* eps`.
  /// @param phi `{mu, rho}`
  /// @param eps noise row
  template <real_scalar T>
  static double log_density(param_spans<T> phi, std::span<const T> eps) noexcept {
    double s = 0.0;
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double e = static_cast<double>(eps[i]);
      s += -0.5 * e * e - static_cast<double>(phi[1][i]) - 0.5 * detail::log_2pi;
    }
    return s;
  }
  /// Adds `c * (eps ./ sigma)` to `out[0]` and `c * (eps.^2 - 1)` to `out[1]`.
  /// @param phi `{mu, rho}`
  /// @param eps noise row
  /// @param c coefficient
  /// @param out accumulators
  template <real_scalar T>
  static void add_score(param_spans<T> phi, std::span<const T> eps, double c, std::span<double* const> out) noexcept {
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double e = static_cast<double>(eps[i]);
      out[0][i] += c * e / std::exp(static_cast<double>(phi[1][i]));
      out[1][i] += c * (e * e - 1.0);
    }
  }
  /// Adds `c * g` to `out[0]` and `c * g .* eps .* sigma` to `out[1]`.
  /// @param phi `{mu, rho}`
  /// @param eps noise row
  /// @param g `grad_z f` at the sample
  /// @param c coefficient
  /// @param out accumulators
  template <real_scalar T>
  static void add_pathwise(param_spans<T> phi, std::span<const T> eps, std::span<const T> g, double c,
                           std::span<double* const> out) noexcept {
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const double gi = static_cast<double>(g[i]);
      out[0][i] += c * gi;
      out[1][i] += c * gi * static_cast<double>(eps[i]) * std::exp(static_cast<double>(phi[1][i]));
    }
  }
};

/// Full-covariance Gaussian `N(mu, L L^T)` parameterised by its Cholesky factor `L` directly
/// (stored row-major as a full d x d matrix; entries above the diagonal are ignored and get
/// gradient 0; a positive diagonal is not enforced, spec section 1.2). Noise per sample:
/// `eps[d] ~ N(0, 1)`. Pathwise only **[spec decision]**:
///   sample    `z = mu + L eps`
///   pathwise  `(dz/dmu)^T g = g`, `(dz/dL)^T g = tril(g eps^T)`
/// (ADEV differentiates through `cholesky(Sigma)`; parameterising by `L` avoids a factorisation
/// per step, section 3.4.)
struct gaussian_tril {
  static constexpr const char* name = "gaussian_tril";  ///< identifies the distribution
  static constexpr std::size_t tensors = 2;             ///< mu, L
  using noise_type = gaussian;                          ///< N(0, 1) standard noise

  /// Checks `mu[d]` (d >= 1) and `L[d * d]`, all finite.
  /// @param what the caller's name
  /// @param phi `{mu, L}`
  template <real_scalar T>
  static void validate(const char* what, param_spans<T> phi) {
    detail::require_tensors(what, phi.size(), tensors);
    const std::size_t d = phi[0].size();
    stochgrad::detail::require(d >= 1, what, "mu.size()", 0.0, ">= 1");
    stochgrad::detail::require_same_size(what, "L", phi[1].size(), "mu.size()^2",
                                         stochgrad::detail::checked_product(what, "d", d, "d", d));
    detail::require_finite(what, "mu", phi[0]);
    detail::require_finite(what, "L", phi[1]);
  }
  /// Entries of one sample: d.
  /// @param phi `{mu, L}`
  template <real_scalar T>
  static std::size_t dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// Standard-noise entries per sample: d.
  /// @param phi `{mu, L}`
  template <real_scalar T>
  static std::size_t noise_dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// `z = mu + L eps` (lower triangle of L).
  /// @param phi `{mu, L}`
  /// @param eps noise row
  /// @param z sample row
  template <real_scalar T>
  static void sample(param_spans<T> phi, std::span<const T> eps, std::span<T> z) noexcept {
    const std::size_t d = z.size();
    for (std::size_t i = 0; i < d; ++i) {
      double s = static_cast<double>(phi[0][i]);
      for (std::size_t j = 0; j <= i; ++j) s += static_cast<double>(phi[1][i * d + j]) * static_cast<double>(eps[j]);
      z[i] = static_cast<T>(s);
    }
  }
  /// Adds `c * g` to `out[0]` and `c * tril(g eps^T)` to `out[1]`.
  /// @param phi `{mu, L}`
  /// @param eps noise row
  /// @param g `grad_z f`
  /// @param c coefficient
  /// @param out accumulators
  template <real_scalar T>
  static void add_pathwise(param_spans<T> phi, std::span<const T> eps, std::span<const T> g, double c,
                           std::span<double* const> out) noexcept {
    const std::size_t d = phi[0].size();
    for (std::size_t i = 0; i < d; ++i) {
      const double gi = c * static_cast<double>(g[i]);
      out[0][i] += gi;
      for (std::size_t j = 0; j <= i; ++j) out[1][i * d + j] += gi * static_cast<double>(eps[j]);
    }
  }
};

/// n independent Bernoulli variables with logits `eta[n]`, `p = sigmoid(eta)`. Noise per sample:
/// `u[n] ~ U(0, 1)`; the sample is `v_i = [u_i < p_i]` in {0, 1}.
///   score   `dlog q/deta = v - p`
///   log-density `sum_i (v_i log p_i + (1 - v_i) log(1 - p_i))`
/// (with logits the score is bounded at p in {0, 1}, section 3.5).
struct bernoulli_logit {
  static constexpr const char* name = "bernoulli_logit";  ///< identifies the distribution
  static constexpr std::size_t tensors = 1;               ///< eta
  using noise_type = uniform;                             ///< U(0, 1) standard noise

  /// Checks one non-empty tensor of finite logits.
  /// @param what the caller's name
  /// @param phi `{eta}`
  template <real_scalar T>
  static void validate(const char* what, param_spans<T> phi) {
    detail::require_tensors(what, phi.size(), tensors);
    stochgrad::detail::require(!phi[0].empty(), what, "eta.size()", 0.0, ">= 1");
    detail::require_finite(what, "eta", phi[0]);
  }
  /// Entries of one sample: n.
  /// @param phi `{eta}`
  template <real_scalar T>
  static std::size_t dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// Standard-noise entries per sample: n.
  /// @param phi `{eta}`
  template <real_scalar T>
  static std::size_t noise_dim(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// `p_i = sigmoid(eta_i)`.
  /// @param phi `{eta}`
  /// @param i index
  template <real_scalar T>
  static double probability(param_spans<T> phi, std::size_t i) noexcept {
    return detail::sigmoid(static_cast<double>(phi[0][i]));
  }
  /// `v_i = [u_i < p_i]`.
  /// @param phi `{eta}`
  /// @param u noise row
  /// @param v sample row (0 or 1)
  template <real_scalar T>
  static void sample(param_spans<T> phi, std::span<const T> u, std::span<T> v) noexcept {
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(u[i]) < probability(phi, i) ? T(1) : T(0);
  }
  /// `sum_i log q(v_i)` at `v = [u < p]`.
  /// @param phi `{eta}`
  /// @param u noise row
  template <real_scalar T>
  static double log_density(param_spans<T> phi, std::span<const T> u) noexcept {
    double s = 0.0;
    for (std::size_t i = 0; i < u.size(); ++i) {
      const double eta = static_cast<double>(phi[0][i]);
      // log sigmoid(eta) = -log1p(exp(-eta)); log(1 - sigmoid(eta)) = -log1p(exp(eta)).
      const bool v = static_cast<double>(u[i]) < probability(phi, i);
      const double x = v ? -eta : eta;
      s -= x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
    }
    return s;
  }
  /// Adds `c * (v - p)` to `out[0]`.
  /// @param phi `{eta}`
  /// @param u noise row
  /// @param c coefficient
  /// @param out accumulators
  template <real_scalar T>
  static void add_score(param_spans<T> phi, std::span<const T> u, double c, std::span<double* const> out) noexcept {
    for (std::size_t i = 0; i < u.size(); ++i) {
      const double p = probability(phi, i);
      out[0][i] += c * ((static_cast<double>(u[i]) < p ? 1.0 : 0.0) - p);
    }
  }
};

/// One categorical variable over K categories with logits `l[K]`, `p = softmax(l)`. Noise per
/// sample: one `u ~ U(0, 1)`; the sample is the inverse CDF, the first index `j` whose cumulative
/// sum `p_0 + ... + p_j` exceeds `u` (the last index if rounding leaves none).
///   score   `dlog q/dl = e_j - softmax(l)`
struct categorical_logits {
  static constexpr const char* name = "categorical_logits";  ///< identifies the distribution
  static constexpr std::size_t tensors = 1;                  ///< l
  using noise_type = uniform;                                ///< U(0, 1) standard noise

  /// Checks one non-empty tensor of finite logits.
  /// @param what the caller's name
  /// @param phi `{l}`
  template <real_scalar T>
  static void validate(const char* what, param_spans<T> phi) {
    detail::require_tensors(what, phi.size(), tensors);
    stochgrad::detail::require(!phi[0].empty(), what, "l.size()", 0.0, ">= 1");
    detail::require_finite(what, "l", phi[0]);
  }
  /// Entries of one sample: 1 (the index).
  /// @param phi `{l}`
  template <real_scalar T>
  static std::size_t dim([[maybe_unused]] param_spans<T> phi) noexcept {
    return 1;
  }
  /// Standard-noise entries per sample: 1.
  /// @param phi `{l}`
  template <real_scalar T>
  static std::size_t noise_dim([[maybe_unused]] param_spans<T> phi) noexcept {
    return 1;
  }
  /// Writes `softmax(l)` (max-shifted) into `p` (size K).
  /// @param phi `{l}`
  /// @param p output
  template <real_scalar T>
  static void probabilities(param_spans<T> phi, std::span<double> p) noexcept {
    double m = static_cast<double>(phi[0][0]);
    for (const T& x : phi[0]) m = std::max(m, static_cast<double>(x));
    double s = 0.0;
    for (std::size_t k = 0; k < p.size(); ++k) s += (p[k] = std::exp(static_cast<double>(phi[0][k]) - m));
    for (double& x : p) x /= s;
  }
  /// The inverse-CDF index of `u` over `p`.
  /// @param p probabilities
  /// @param u uniform in (0, 1)
  static std::size_t index(std::span<const double> p, double u) noexcept {
    double c = 0.0;
    for (std::size_t k = 0; k < p.size(); ++k) {
      c += p[k];
      if (c > u) return k;
    }
    return p.size() - 1;
  }
  /// Writes the index `j` (as T) of the noise `u[0]`.
  /// @param phi `{l}`
  /// @param u noise row
  /// @param j sample row
  template <real_scalar T>
  static void sample(param_spans<T> phi, std::span<const T> u, std::span<T> j) noexcept {
    double c = 0.0, m = static_cast<double>(phi[0][0]), s = 0.0;
    for (const T& x : phi[0]) m = std::max(m, static_cast<double>(x));
    for (const T& x : phi[0]) s += std::exp(static_cast<double>(x) - m);
    const std::size_t K = phi[0].size();
    std::size_t k = 0;
    for (; k + 1 < K; ++k) {
      c += std::exp(static_cast<double>(phi[0][k]) - m) / s;
      if (c > static_cast<double>(u[0])) break;
    }
    j[0] = static_cast<T>(k);
  }
  /// `log p_j` at the sampled index.
  /// @param phi `{l}`
  /// @param u noise row
  template <real_scalar T>
  static double log_density(param_spans<T> phi, std::span<const T> u) noexcept {
    T j[1];
    sample<T>(phi, u, std::span<T>(j, 1));
    double m = static_cast<double>(phi[0][0]), s = 0.0;
    for (const T& x : phi[0]) m = std::max(m, static_cast<double>(x));
    for (const T& x : phi[0]) s += std::exp(static_cast<double>(x) - m);
    return static_cast<double>(phi[0][static_cast<std::size_t>(j[0])]) - m - std::log(s);
  }
  /// Adds `c * (e_j - softmax(l))` to `out[0]`.
  /// @param phi `{l}`
  /// @param u noise row
  /// @param c coefficient
  /// @param out accumulators
  template <real_scalar T>
  static void add_score(param_spans<T> phi, std::span<const T> u, double c, std::span<double* const> out) noexcept {
    T j[1];
    sample<T>(phi, u, std::span<T>(j, 1));
    double m = static_cast<double>(phi[0][0]), s = 0.0;
    for (const T& x : phi[0]) m = std::max(m, static_cast<double>(x));
    for (const T& x : phi[0]) s += std::exp(static_cast<double>(x) - m);
    for (std::size_t k = 0; k < phi[0].size(); ++k) out[0][k] -= c * std::exp(static_cast<double>(phi[0][k]) - m) / s;
    out[0][static_cast<std::size_t>(j[0])] += c;
  }
};

/// Distributions with a closed-form score (usable with `score_function`).
template <class D, class T = double>
concept has_score = requires(param_spans<T> phi, std::span<const T> n, std::span<double* const> out) {
  D::add_score(phi, n, 1.0, out);
  { D::log_density(phi, n) } -> std::convertible_to<double>;
};
/// Reparameterisable distributions (usable with `pathwise`).
template <class D, class T = double>
concept has_pathwise = requires(param_spans<T> phi, std::span<const T> n, std::span<double* const> out) {
  D::add_pathwise(phi, n, n, 1.0, out);
};

}  // namespace stochgrad::dist
