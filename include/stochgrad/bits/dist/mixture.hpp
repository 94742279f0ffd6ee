// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Gaussian mixtures `q(z) = sum_k w_k N(z; mu_k, diag(sigma_k^2))`, `w = softmax(l)`,
/// `sigma = exp(rho)`, and the five per-choice strategy compositions of spec section 4.2:
/// (a) enumeration x pathwise, (b) score function x pathwise, (c) score function through the
/// mixture density, (d) PMOE's frequency surrogate (biased), (e) Gumbel-softmax (biased).
///
/// Tensors: `l[K]`, `mu[K x d]`, `rho[K x d]` (row k = component k). Explicit noise: every sample
/// has one `eps[K x d] ~ N(0, 1)` (one draw per component, `z_k = mu_k + sigma_k .* eps_k`), and
/// where needed a component uniform `u` (inverse CDF over w, as categorical_logits) or K Gumbel
/// uniforms. Every function returns the gradient of the OBJECTIVE `E[f]` (for (d), of the
/// objective `-L`, the negated PMOE surrogate loss), averaged over the S samples; validation
/// precedes any write. In the formulas `df = grad_z f`.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"
#include "distributions.hpp"
#include "noise.hpp"
#include "strategies.hpp"

namespace stochgrad::dist {

/// Gaussian mixture with K diagonal components in d dimensions (file comment).
struct gaussian_mixture {
  static constexpr const char* name = "gaussian_mixture";  ///< identifies the distribution
  static constexpr std::size_t tensors = 3;                ///< l, mu, rho

  /// Checks `l[K]` (K >= 1), `mu` and `rho` of equal size `K d` (d >= 1), all finite, with
  /// `0 < exp(rho) < inf`.
  /// @param what the caller's name
  /// @param phi `{l, mu, rho}`
  template <real_scalar T>
  static void validate(const char* what, param_spans<T> phi) {
    detail::require_tensors(what, phi.size(), tensors);
    const std::size_t K = phi[0].size();
    stochgrad::detail::require(K >= 1, what, "l.size()", 0.0, ">= 1");
    stochgrad::detail::require(!phi[1].empty() && phi[1].size() % K == 0, what, "mu.size()",
                               static_cast<double>(phi[1].size()), "a positive multiple of K");
    stochgrad::detail::require_same_size(what, "rho", phi[2].size(), "mu", phi[1].size());
    detail::require_finite(what, "l", phi[0]);
    const std::array<std::span<const T>, 2> g{phi[1], phi[2]};
    diag_gaussian::validate<T>(what, std::span<const std::span<const T>>(g));
  }
  /// Components K.
  /// @param phi `{l, mu, rho}`
  template <real_scalar T>
  static std::size_t components(param_spans<T> phi) noexcept {
    return phi[0].size();
  }
  /// Dimension d.
  /// @param phi `{l, mu, rho}`
  template <real_scalar T>
  static std::size_t dim(param_spans<T> phi) noexcept {
    return phi[1].size() / phi[0].size();
  }
  /// `w = softmax(l)` into `w` (K).
  /// @param phi `{l, mu, rho}`
  /// @param w output
  template <real_scalar T>
  static void weights(param_spans<T> phi, std::span<double> w) noexcept {
    const std::span<const std::span<const T>> l(phi.data(), 1);
    categorical_logits::probabilities<T>(l, w);
  }
  /// The K component samples `z_k = mu_k + sigma_k .* eps_k` of one noise row.
  /// @param phi `{l, mu, rho}`
  /// @param eps K x d noise
  /// @param z K x d output
  template <real_scalar T>
  static void component_samples(param_spans<T> phi, std::span<const T> eps, std::span<double> z) noexcept {
    for (std::size_t i = 0; i < z.size(); ++i) {
      z[i] = static_cast<double>(phi[1][i]) + std::exp(static_cast<double>(phi[2][i])) * static_cast<double>(eps[i]);
    }
  }
};

namespace detail {

/// Sizes shared by the mixture functions: S from the noise, the outputs' shapes.
template <class T>
std::size_t mixture_samples(const char* what, param_spans<T> phi, std::span<const T> eps, grad_spans<T> out) {
  gaussian_mixture::validate(what, phi);
  const std::size_t S = sample_count(what, eps.size(), phi[1].size());
  check_outputs<T>(what, phi, out);
  return S;
}

/// Adds `c * g` to mu_k and `c * g .* sigma_k .* eps_k` to rho_k (the pathwise rule of one component).
template <class T>
void add_component_pathwise(param_spans<T> phi, std::size_t k, std::size_t d, std::span<const T> eps_row,
                            std::span<const double> g, double c, std::span<double* const> rows) noexcept {
  for (std::size_t i = 0; i < d; ++i) {
    const std::size_t e = k * d + i;
    rows[1][e] += c * g[i];
    rows[2][e] += c * g[i] * std::exp(static_cast<double>(phi[2][e])) * static_cast<double>(eps_row[e]);
  }
}

template <class T>
std::span<double* const> open_rows(workspace& w, param_spans<T> phi) {
  open<T>(w, phi);
  return {w.rows.data(), phi.size()};
}

}  // namespace detail

/// (a) Enumeration of the component x pathwise components (ADEV `categorical_enum` composed with
/// `normal_reparam`; unbiased, K evaluations of f and grad f per sample):
///   `d/dl = w .* (f_k - sum_j w_j f_j)`, `d/dmu_k = w_k df(z_k)`, `d/drho_k = w_k df(z_k) .* sigma_k .* eps_k`
/// @param phi `{l, mu, rho}`
/// @param eps S rows of K x d noise
/// @param f `f(z_k)`, S rows of K
/// @param g `grad f(z_k)`, S rows of K x d
/// @param out the objective gradient
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for non-finite f, g
template <real_scalar T>
void mixture_enum_pathwise_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps,
                                    std::span<const double> f, std::span<const double> g,
                                    std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::mixture_enum_pathwise_gradient";
  const std::size_t S = detail::mixture_samples<T>(what, phi, eps, out);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require_same_size(what, "f", f.size(), "samples x K", S * K);
  stochgrad::detail::require_same_size(what, "g", g.size(), "samples x K x d", S * K * d);
  detail::require_finite_values(what, "f", f);
  detail::require_finite_values(what, "g", g);
  std::vector<double> w(K);
  gaussian_mixture::weights<T>(phi, w);
  workspace ws;
  const auto rows = detail::open_rows<T>(ws, phi);
  for (std::size_t s = 0; s < S; ++s) {
    double value = 0.0;
    for (std::size_t k = 0; k < K; ++k) value += w[k] * f[s * K + k];
    for (std::size_t k = 0; k < K; ++k) {
      rows[0][k] += w[k] * (f[s * K + k] - value);
      detail::add_component_pathwise<T>(phi, k, d, eps.subspan(s * K * d, K * d), g.subspan((s * K + k) * d, d), w[k], rows);
    }
  }
  detail::close<T>(ws, out, 1.0 / static_cast<double>(S));
}

/// (b) Score function on the component x pathwise inside (unbiased, one evaluation per sample):
/// `k_s` the inverse-CDF index of `u_s` over w, `A = normalizer(baseline(f))` over the S samples,
///   `d/dl = mean_s A_s (e_{k_s} - w)`, `d/dmu_j = mean_s [j = k_s] df(z_{k_s})`,
///   `d/drho_j = mean_s [j = k_s] df(z_{k_s}) .* sigma_j .* eps_j`
/// @param phi `{l, mu, rho}`
/// @param eps S rows of K x d noise
/// @param u S component uniforms
/// @param f `f(z_{k_s})` (S)
/// @param g `grad f(z_{k_s})`, S rows of d
/// @param out the objective gradient
/// @param b baseline policy
/// @param n normalizer policy
/// @throws as mixture_enum_pathwise_gradient; invalid_argument for leave_one_out with S < 2
template <real_scalar T, class B = no_baseline, class N = no_normalizer>
void mixture_score_pathwise_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps,
                                     std::span<const T> u, std::span<const double> f, std::span<const double> g,
                                     std::type_identity_t<grad_spans<T>> out, const B& b = {}, const N& n = {}) {
  const char* what = "dist::mixture_score_pathwise_gradient";
  const std::size_t S = detail::mixture_samples<T>(what, phi, eps, out);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require_same_size(what, "u", u.size(), "samples", S);
  stochgrad::detail::require_same_size(what, "f", f.size(), "samples", S);
  stochgrad::detail::require_same_size(what, "g", g.size(), "samples x d", S * d);
  if constexpr (std::is_same_v<B, leave_one_out>) {
    stochgrad::detail::require(S >= 2, what, "samples (leave_one_out)", static_cast<double>(S), ">= 2");
  }
  detail::require_finite_values(what, "f", f);
  detail::require_finite_values(what, "g", g);
  std::vector<double> w(K), adv(S);
  gaussian_mixture::weights<T>(phi, w);
  advantages(b, n, f, group_layout::contiguous(1, S), std::span<double>(adv));
  workspace ws;
  const auto rows = detail::open_rows<T>(ws, phi);
  for (std::size_t s = 0; s < S; ++s) {
    const std::size_t k = categorical_logits::index(w, static_cast<double>(u[s]));
    for (std::size_t j = 0; j < K; ++j) rows[0][j] -= adv[s] * w[j];
    rows[0][k] += adv[s];
    detail::add_component_pathwise<T>(phi, k, d, eps.subspan(s * K * d, K * d), g.subspan(s * d, d), 1.0, rows);
  }
  detail::close<T>(ws, out, 1.0 / static_cast<double>(S));
}

/// (c) Score function through the mixture density (plain REINFORCE on a GMM, PMOE's PPO
/// variant): `z = z_{k_s}`, `resp_j = w_j N(z; mu_j, sigma_j^2) / q(z)`, `A` as in (b),
///   `d/dl = mean_s A_s (resp - w)`, `d/dmu_j = mean_s A_s resp_j (z - mu_j) ./ sigma_j^2`,
///   `d/drho_j = mean_s A_s resp_j (((z - mu_j) ./ sigma_j)^2 - 1)`
/// @param phi `{l, mu, rho}`
/// @param eps S rows of K x d noise
/// @param u S component uniforms
/// @param f `f(z)` (S)
/// @param out the objective gradient
/// @param b baseline policy
/// @param n normalizer policy
/// @param resp if non-empty (S x K), receives the responsibilities
/// @throws as mixture_score_pathwise_gradient
template <real_scalar T, class B = no_baseline, class N = no_normalizer>
void mixture_density_score_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps,
                                    std::span<const T> u, std::span<const double> f,
                                    std::type_identity_t<grad_spans<T>> out, const B& b = {}, const N& n = {},
                                    std::span<double> resp = {}) {
  const char* what = "dist::mixture_density_score_gradient";
  const std::size_t S = detail::mixture_samples<T>(what, phi, eps, out);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require_same_size(what, "u", u.size(), "samples", S);
  stochgrad::detail::require_same_size(what, "f", f.size(), "samples", S);
  if (!resp.empty()) stochgrad::detail::require_same_size(what, "resp", resp.size(), "samples x K", S * K);
  if constexpr (std::is_same_v<B, leave_one_out>) {
    stochgrad::detail::require(S >= 2, what, "samples (leave_one_out)", static_cast<double>(S), ">= 2");
  }
  detail::require_finite_values(what, "f", f);
  std::vector<double> w(K), adv(S), z(K * d), lr(K);
  gaussian_mixture::weights<T>(phi, w);
  advantages(b, n, f, group_layout::contiguous(1, S), std::span<double>(adv));
  workspace ws;
  const auto rows = detail::open_rows<T>(ws, phi);
  for (std::size_t s = 0; s < S; ++s) {
    gaussian_mixture::component_samples<T>(phi, eps.subspan(s * K * d, K * d), z);
    const std::size_t k = categorical_logits::index(w, static_cast<double>(u[s]));
    const std::span<const double> x(z.data() + k * d, d);
    // log(w_j N(x; mu_j, sigma_j)) up to the common constant, then normalised (log-sum-exp).
    double m = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < K; ++j) {
      double a = std::log(w[j]);
      for (std::size_t i = 0; i < d; ++i) {
        const double r = static_cast<double>(phi[2][j * d + i]);
        const double t = (x[i] - static_cast<double>(phi[1][j * d + i])) / std::exp(r);
        a -= 0.5 * t * t + r;
      }
      lr[j] = a;
      m = std::max(m, a);
    }
    double sum = 0.0;
    for (double& a : lr) sum += (a = std::exp(a - m));
    for (std::size_t j = 0; j < K; ++j) {
      const double rj = lr[j] / sum;
      if (!resp.empty()) resp[s * K + j] = rj;
      rows[0][j] += adv[s] * (rj - w[j]);
      for (std::size_t i = 0; i < d; ++i) {
        const double sg = std::exp(static_cast<double>(phi[2][j * d + i]));
        const double t = (x[i] - static_cast<double>(phi[1][j * d + i])) / sg;
        rows[1][j * d + i] += adv[s] * rj * t / sg;
        rows[2][j * d + i] += adv[s] * rj * (t * t - 1.0);
      }
    }
  }
  detail::close<T>(ws, out, 1.0 / static_cast<double>(S));
}

/// (d) PMOE's frequency surrogate (biased, spec sections 4.2 (d) and 5.2): per sample, `k*` =
/// argmax of the caller's per-component objective values `q_k` (first on ties), the weight loss
/// `L_w = mean_k (e_{k*} - w)_k^2` with `dL_w/dl = w .* (gw - w . gw)`, `gw = (2/K) (w - e_{k*})`,
/// and only component `k*` gets the pathwise gradient of its own sample. Returned, averaged over
/// the S samples, is the gradient of the objective `-L_w + q_{k*}`:
///   `d/dl = -dL_w/dl`, `d/dmu_{k*} = g_{k*}`, `d/drho_{k*} = g_{k*} .* sigma_{k*} .* eps_{k*}` (others 0)
/// with `g_k` the gradient of the objective at `z_k`. (For a loss f minimised, pass `q = -f` and
/// `g = -grad f`; the negated result is the spec's loss gradient.)
/// @param phi `{l, mu, rho}`
/// @param eps S rows of K x d noise
/// @param q S rows of K objective values
/// @param g S rows of K x d objective gradients at z_k
/// @param out the objective gradient
/// @return the mean weight loss `L_w`
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for non-finite q, g
template <real_scalar T>
double mixture_frequency_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps,
                                  std::span<const double> q, std::span<const double> g,
                                  std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::mixture_frequency_gradient";
  const std::size_t S = detail::mixture_samples<T>(what, phi, eps, out);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require_same_size(what, "q", q.size(), "samples x K", S * K);
  stochgrad::detail::require_same_size(what, "g", g.size(), "samples x K x d", S * K * d);
  detail::require_finite_values(what, "q", q);
  detail::require_finite_values(what, "g", g);
  std::vector<double> w(K), gw(K);
  gaussian_mixture::weights<T>(phi, w);
  workspace ws;
  const auto rows = detail::open_rows<T>(ws, phi);
  double lw = 0.0;
  for (std::size_t s = 0; s < S; ++s) {
    std::size_t ks = 0;
    for (std::size_t k = 1; k < K; ++k) ks = q[s * K + k] > q[s * K + ks] ? k : ks;
    double wg = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
      const double e = (k == ks ? 1.0 : 0.0) - w[k];
      lw += e * e / static_cast<double>(K);
      gw[k] = -2.0 / static_cast<double>(K) * e;
      wg += w[k] * gw[k];
    }
    for (std::size_t k = 0; k < K; ++k) rows[0][k] -= w[k] * (gw[k] - wg);
    detail::add_component_pathwise<T>(phi, ks, d, eps.subspan(s * K * d, K * d), g.subspan((s * K + ks) * d, d), 1.0, rows);
  }
  detail::close<T>(ws, out, 1.0 / static_cast<double>(S));
  return lw / static_cast<double>(S);
}

/// The relaxed point of the Gumbel-softmax estimator for one noise row: `gumbel_k = -log(-log u_k)`,
/// `y = softmax((log w + gumbel)/tau)`, `z_relaxed = sum_k y_k z_k`.
/// @param phi `{l, mu, rho}`
/// @param eps K x d noise
/// @param gu K Gumbel uniforms
/// @param tau temperature
/// @param z output (d)
/// @param y output (K)
/// @throws invalid_argument for tau not finite and > 0; size_mismatch for bad sizes
template <real_scalar T>
void mixture_gumbel_point(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps, std::span<const T> gu,
                          double tau, std::span<double> z, std::span<double> y) {
  const char* what = "dist::mixture_gumbel_point";
  gaussian_mixture::validate(what, phi);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require(tau > 0.0 && std::isfinite(tau), what, "tau", tau, "finite and > 0");
  stochgrad::detail::require_same_size(what, "eps", eps.size(), "K x d", K * d);
  stochgrad::detail::require_same_size(what, "gumbel uniforms", gu.size(), "K", K);
  stochgrad::detail::require_same_size(what, "z", z.size(), "d", d);
  stochgrad::detail::require_same_size(what, "y", y.size(), "K", K);
  std::vector<double> w(K), zk(K * d);
  gaussian_mixture::weights<T>(phi, w);
  gaussian_mixture::component_samples<T>(phi, eps, zk);
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < K; ++k) {
    y[k] = (std::log(w[k]) - std::log(-std::log(static_cast<double>(gu[k])))) / tau;
    m = std::max(m, y[k]);
  }
  double sum = 0.0;
  for (double& v : y) sum += (v = std::exp(v - m));
  for (double& v : y) v /= sum;
  for (std::size_t i = 0; i < d; ++i) {
    z[i] = 0.0;
    for (std::size_t k = 0; k < K; ++k) z[i] += y[k] * zk[k * d + i];
  }
}

/// (e) Gumbel-softmax relaxation of the component choice (biased; PMOE's reparameterised
/// baseline), with `y`, `z_relaxed` of mixture_gumbel_point and `g = grad f(z_relaxed)`:
///   `d/dl_j = sum_k (g . z_k) y_k (delta_kj - y_j) / tau`, `d/dmu_k = y_k g`, `d/drho_k = y_k g .* sigma_k .* eps_k`
/// averaged over the S samples.
/// @param phi `{l, mu, rho}`
/// @param eps S rows of K x d noise
/// @param gu S rows of K Gumbel uniforms
/// @param tau temperature (> 0)
/// @param g S rows of d gradients at the relaxed points
/// @param out the objective gradient
/// @throws size_mismatch / invalid_argument for bad sizes, parameters or tau; nonfinite_error for non-finite g
template <real_scalar T>
void mixture_gumbel_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps, std::span<const T> gu,
                             double tau, std::span<const double> g, std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::mixture_gumbel_gradient";
  const std::size_t S = detail::mixture_samples<T>(what, phi, eps, out);
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  stochgrad::detail::require(tau > 0.0 && std::isfinite(tau), what, "tau", tau, "finite and > 0");
  stochgrad::detail::require_same_size(what, "gumbel uniforms", gu.size(), "samples x K", S * K);
  stochgrad::detail::require_same_size(what, "g", g.size(), "samples x d", S * d);
  detail::require_finite_values(what, "g", g);
  std::vector<double> y(K), zr(d), zk(K * d), gz(K);
  workspace ws;
  const auto rows = detail::open_rows<T>(ws, phi);
  for (std::size_t s = 0; s < S; ++s) {
    const auto e = eps.subspan(s * K * d, K * d);
    mixture_gumbel_point<T>(phi, e, gu.subspan(s * K, K), tau, zr, y);
    gaussian_mixture::component_samples<T>(phi, e, zk);
    const auto gs = g.subspan(s * d, d);
    double ygz = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
      gz[k] = 0.0;
      for (std::size_t i = 0; i < d; ++i) gz[k] += gs[i] * zk[k * d + i];
      ygz += y[k] * gz[k];
    }
    for (std::size_t j = 0; j < K; ++j) {
      rows[0][j] += y[j] * (gz[j] - ygz) / tau;  // sum_k gz_k y_k (delta_kj - y_j) / tau
      detail::add_component_pathwise<T>(phi, j, d, e, gs, y[j], rows);
    }
  }
  detail::close<T>(ws, out, 1.0 / static_cast<double>(S));
}

/// Strategy tag: a composition per random choice of a Gaussian mixture (spec section 4.2):
/// `W` for the component choice, `C` for the component's sample. Offered:
/// `composed<enumerate, pathwise>` (a) and `composed<score_function, pathwise>` (b). The
/// baseline slot acts on the score-function part of (b).
template <class W, class C>
struct composed {
  /// "composed<W,C>": identifies the strategy.
  static constexpr stochgrad::detail::fixed_name name_text{"composed<", W::name, ",", C::name, ">"};
  static constexpr const char* name = name_text.text;  ///< see name_text
  static constexpr bool has_outcomes = W::has_outcomes || C::has_outcomes;  ///< a score-function part has outcomes
};
/// Strategy tag: PMOE's frequency surrogate (d) (biased; no score-function term, so no baseline).
struct frequency {
  static constexpr const char* name = "frequency";  ///< identifies the strategy
  static constexpr bool has_outcomes = false;        ///< no outcomes: baselines are refused
};
/// Strategy tag: Gumbel-softmax relaxation of the component choice (e) (biased), temperature
/// `estimator_options::temperature`.
struct gumbel_softmax {
  static constexpr const char* name = "gumbel_softmax";  ///< identifies the strategy
  static constexpr bool has_outcomes = false;             ///< no outcomes: baselines are refused
};

/// The strategies `dist::estimator<gaussian_mixture, S>` accepts: the two compositions,
/// `score_function` (through the mixture density, (c)), `frequency` and `gumbel_softmax`.
template <class S>
inline constexpr bool mixture_strategy =
    std::is_same_v<S, composed<enumerate, pathwise>> || std::is_same_v<S, composed<score_function, pathwise>> ||
    std::is_same_v<S, score_function> || std::is_same_v<S, frequency> || std::is_same_v<S, gumbel_softmax>;

/// Entries of the noise of S mixture samples, in blocks: `eps[S x K x d]` (N(0,1), stream 0),
/// `u[S]` (component uniforms, stream 1), `gumbel_u[S x K]` (stream 2).
/// @param K components @param d dimension @param S samples
constexpr std::size_t mixture_noise_size(std::size_t K, std::size_t d, std::size_t S) noexcept {
  return S * (K * d + 1 + K);
}

/// Writes the block noise of `mixture_noise_size(K, d, S)` entries from the Philox streams of the
/// step seed (noise.hpp layout per block).
/// @param seed the step's seed @param K components @param d dimension @param S samples @param out the noise
/// @throws size_mismatch for a wrong size
template <noise_generator Gen = default_generator, real_scalar T>
void fill_mixture_noise(std::uint64_t seed, std::size_t K, std::size_t d, std::size_t S, std::span<T> out) {
  stochgrad::detail::require_same_size("dist::fill_mixture_noise", "out", out.size(), "the mixture noise",
                                       mixture_noise_size(K, d, S));
  fill_noise<gaussian, Gen>(seed, K * d, out.subspan(0, S * K * d), 0u);
  fill_noise<uniform, Gen>(seed, 1, out.subspan(S * K * d, S), 1u);
  fill_noise<uniform, Gen>(seed, K, out.subspan(S * K * d + S, S * K), 2u);
}

namespace detail {

/// Sample entries per sample that the estimator's `sample` writes for strategy S: all K
/// component samples for (a) and frequency, the drawn component's sample for (b) and (c), the
/// relaxed point for gumbel_softmax.
template <class S>
constexpr std::size_t mixture_sample_dim(std::size_t K, std::size_t d) noexcept {
  return std::is_same_v<S, composed<enumerate, pathwise>> || std::is_same_v<S, frequency> ? K * d : d;
}

/// The samples the caller evaluates f at (mixture_sample_dim per sample), from the block noise.
template <class S, class T>
void mixture_samples_of(param_spans<T> phi, std::span<const T> noise, std::size_t S_, double tau, std::span<T> z) {
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  std::vector<double> w(K), zk(K * d), y(K), zr(d);
  gaussian_mixture::weights<T>(phi, w);
  for (std::size_t s = 0; s < S_; ++s) {
    const auto e = noise.subspan(s * K * d, K * d);
    gaussian_mixture::component_samples<T>(phi, e, zk);
    if constexpr (mixture_sample_dim<S>(2, 1) == 2) {
      for (std::size_t i = 0; i < K * d; ++i) z[s * K * d + i] = static_cast<T>(zk[i]);
    } else if constexpr (std::is_same_v<S, gumbel_softmax>) {
      mixture_gumbel_point<T>(phi, e, noise.subspan(S_ * K * d + S_ + s * K, K), tau, zr, y);
      for (std::size_t i = 0; i < d; ++i) z[s * d + i] = static_cast<T>(zr[i]);
    } else {
      const std::size_t k = categorical_logits::index(w, static_cast<double>(noise[S_ * K * d + s]));
      for (std::size_t i = 0; i < d; ++i) z[s * d + i] = static_cast<T>(zk[k * d + i]);
    }
  }
}

/// The objective gradient of strategy S from the block noise and the caller's values
/// (a: f [S x K], g [S x K x d]; b: f [S], g [S x d]; c: f [S]; frequency: q [S x K], g [S x K x d];
/// gumbel: g [S x d]). Returns the objective estimate where the inputs give it, else NaN.
template <class S, class T, class B, class N>
double mixture_gradient_of(param_spans<T> phi, std::span<const T> noise, std::size_t S_, double tau,
                           std::span<const double> a, std::span<const double> b, grad_spans<T> out, const B& base,
                           const N& norm) {
  const std::size_t K = phi[0].size(), d = phi[1].size() / K;
  const auto eps = noise.subspan(0, S_ * K * d), u = noise.subspan(S_ * K * d, S_);
  const auto gu = noise.subspan(S_ * K * d + S_, S_ * K);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if constexpr (std::is_same_v<S, composed<enumerate, pathwise>>) {
    mixture_enum_pathwise_gradient<T>(phi, eps, a, b, out);
    return nan;
  } else if constexpr (std::is_same_v<S, composed<score_function, pathwise>>) {
    mixture_score_pathwise_gradient<T>(phi, eps, u, a, b, out, base, norm);
  } else if constexpr (std::is_same_v<S, score_function>) {
    mixture_density_score_gradient<T>(phi, eps, u, a, out, base, norm);
  } else if constexpr (std::is_same_v<S, frequency>) {
    return mixture_frequency_gradient<T>(phi, eps, a, b, out);
  } else {
    mixture_gumbel_gradient<T>(phi, eps, gu, tau, a, out);
    return nan;
  }
  double m = 0.0;
  for (double v : a) m += v / static_cast<double>(a.size());
  return m;
}

}  // namespace detail

}  // namespace stochgrad::dist
