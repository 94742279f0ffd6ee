// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Variational objectives over a distribution q (spec section 3.3, ADEV semantics): the
/// ELBO `E_q[log p(x, z) - log q(z)]` and the importance-weighted bound (IWAE), with their
/// pathwise and score-function gradients. Every function returns gradients of the objective
/// (maximised); the stepper's estimator negates them once.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/policies.hpp"
#include "distributions.hpp"
#include "strategies.hpp"

namespace stochgrad::dist {

/// Objective tag: the plain expectation `E_q[f(z)]` (the caller's f).
struct expectation {
  static constexpr const char* name = "expectation";  ///< identifies the objective
};
/// Objective tag: the ELBO `E_q[log p(x, z) - log q(z)]`; the caller supplies `log p(x, z_s)`
/// (score function) or `grad_z log p(x, z_s)` (pathwise).
struct elbo {
  static constexpr const char* name = "elbo";  ///< identifies the objective
};
/// Objective tag: the IWAE bound `log (1/S) sum_s exp(log p(x, z_s) - log q(z_s))` over the S
/// samples of a step (K = S); pathwise only, the caller supplies `log p` and `grad_z log p`.
struct iwae {
  static constexpr const char* name = "iwae";  ///< identifies the objective
};

/// Score-function gradient of the ELBO (ADEV REINFORCE on q, section 3.3):
///   `f_s = log p_s - log q(z_s)`,  `A = normalizer(baseline(f))`,
///   `g = (1/S) sum_s (A_s - [direct_term]) dlog q(z_s)/dphi`
/// (`-1` is the direct term `d(-log q_phi(z))/dphi = -dlog q/dphi` at the fixed sample; both
/// forms are unbiased since the score has mean 0).
/// @param phi parameter tensors of D
/// @param noise S rows of D's standard noise
/// @param log_p `log p(x, z_s)`, one per sample
/// @param out the ELBO gradient
/// @param b baseline policy
/// @param n normalizer policy
/// @param direct_term add ADEV's direct term
/// @param ws reusable scratch
/// @return the ELBO estimate `mean_s f_s`
/// @throws as score_function_gradient (nonfinite_error for a non-finite log p)
template <class D, real_scalar T, class B = no_baseline, class N = no_normalizer>
  requires has_score<D, T> && baseline_policy<B> && normalizer_policy<N>
double elbo_score_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> noise, std::span<const double> log_p,
                           std::type_identity_t<grad_spans<T>> out, const B& b = {}, const N& n = {}, bool direct_term = true,
                           workspace* ws = nullptr) {
  const char* what = "dist::elbo_score_gradient";
  D::validate(what, phi);
  const std::size_t nd = D::noise_dim(phi);
  const std::size_t S = detail::sample_count(what, noise.size(), nd);
  stochgrad::detail::require_same_size(what, "log_p", log_p.size(), "samples", S);
  detail::require_finite_values(what, "log_p", log_p);
  std::vector<double> f(S);
  double mean = 0.0;
  for (std::size_t s = 0; s < S; ++s) {
    f[s] = log_p[s] - D::log_density(phi, noise.subspan(s * nd, nd));
    mean += f[s];
  }
  score_function_gradient<D>(phi, noise, std::span<const double>(f), out, b, n, direct_term ? 1.0 : 0.0, ws);
  return mean / static_cast<double>(S);
}

/// Pathwise gradient of the ELBO of a diagonal Gaussian (ADEV `mv_normal_diag_reparam`, total
/// derivative of `-log q(mu + sigma eps)` along the path: 0 for mu, +1 per coordinate of rho):
///   `g_mu = (1/S) sum_s grad log p_s`,  `g_rho = (1/S) sum_s grad log p_s .* eps_s .* sigma + 1`
/// @param phi `{mu, rho}`
/// @param eps S rows of N(0,1) noise
/// @param grad_log_p `grad_z log p(x, z_s)`, S rows of d
/// @param out the ELBO gradient
/// @param ws reusable scratch
/// @throws as pathwise_gradient
template <real_scalar T>
void elbo_pathwise_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps, std::span<const T> grad_log_p,
                            std::type_identity_t<grad_spans<T>> out, workspace* ws = nullptr) {
  const char* what = "dist::elbo_pathwise_gradient";
  diag_gaussian::validate(what, phi);
  const std::size_t d = phi[0].size();
  const std::size_t S = detail::sample_count(what, eps.size(), d);
  stochgrad::detail::require_same_size(what, "grad_log_p", grad_log_p.size(), "samples x dim", S * d);
  detail::require_finite_values(what, "grad_log_p", grad_log_p);
  detail::check_outputs<T>(what, phi, out);
  workspace local;
  workspace& w = ws != nullptr ? *ws : local;
  detail::open<T>(w, phi);
  const std::span<double* const> rows(w.rows.data(), phi.size());
  for (std::size_t s = 0; s < S; ++s) diag_gaussian::add_pathwise(phi, eps.subspan(s * d, d), grad_log_p.subspan(s * d, d), 1.0, rows);
  for (std::size_t i = 0; i < d; ++i) w.acc[d + i] += static_cast<double>(S);  // rho after mu
  detail::close<T>(w, out, 1.0 / static_cast<double>(S));
}

/// Pathwise gradient of the IWAE bound of a diagonal Gaussian (K = S particles, section 3.3):
///   `lw_s = log p_s - log q(z_s)`, `omega = softmax(lw)`, estimate `logsumexp(lw) - log S`,
///   `g_mu = sum_s omega_s grad log p_s`,  `g_rho = sum_s omega_s (grad log p_s .* eps_s .* sigma + 1)`
/// @param phi `{mu, rho}`
/// @param eps S rows of N(0,1) noise
/// @param log_p `log p(x, z_s)` (S)
/// @param grad_log_p `grad_z log p(x, z_s)`, S rows of d
/// @param out the IWAE gradient
/// @param omega if non-empty (size S), receives the normalised importance weights
/// @return the IWAE estimate
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for
///         non-finite log p or gradients
template <real_scalar T>
double iwae_pathwise_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps, std::span<const double> log_p,
                              std::span<const T> grad_log_p, std::type_identity_t<grad_spans<T>> out, std::span<double> omega = {}) {
  const char* what = "dist::iwae_pathwise_gradient";
  diag_gaussian::validate(what, phi);
  const std::size_t d = phi[0].size();
  const std::size_t S = detail::sample_count(what, eps.size(), d);
  stochgrad::detail::require_same_size(what, "log_p", log_p.size(), "samples", S);
  stochgrad::detail::require_same_size(what, "grad_log_p", grad_log_p.size(), "samples x dim", S * d);
  if (!omega.empty()) stochgrad::detail::require_same_size(what, "omega", omega.size(), "samples", S);
  detail::require_finite_values(what, "log_p", log_p);
  detail::require_finite_values(what, "grad_log_p", grad_log_p);
  detail::check_outputs<T>(what, phi, out);
  std::vector<double> lw(S);
  for (std::size_t s = 0; s < S; ++s) lw[s] = log_p[s] - diag_gaussian::log_density(phi, eps.subspan(s * d, d));
  double m = -std::numeric_limits<double>::infinity();
  for (double x : lw) m = std::max(m, x);
  double z = 0.0;
  for (double& x : lw) z += (x = std::exp(x - m));
  workspace w;
  detail::open<T>(w, phi);
  const std::span<double* const> rows(w.rows.data(), phi.size());
  for (std::size_t s = 0; s < S; ++s) {
    const double om = lw[s] / z;
    if (!omega.empty()) omega[s] = om;
    diag_gaussian::add_pathwise(phi, eps.subspan(s * d, d), grad_log_p.subspan(s * d, d), om, rows);
  }
  for (std::size_t i = 0; i < d; ++i) w.acc[d + i] += 1.0;  // rho after mu
  detail::close<T>(w, out, 1.0);
  return m + std::log(z) - std::log(static_cast<double>(S));
}

}  // namespace stochgrad::dist
