// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Gradient strategies for `grad_phi E_{z ~ q_phi}[f(z)]` (spec section 1.2, 2, 3.2):
/// score function (with the library's baseline / normalizer policies), pathwise
/// (reparameterisation), enumeration and measure-valued derivatives, each a function of explicit
/// standard noise; and the Gumbel-softmax relaxation of a categorical.
///
/// Every function here returns the gradient of the OBJECTIVE `E[f]` (the formulas of the spec);
/// the stepper's `dist::estimator` negates it once, at the boundary, into the loss gradient it
/// applies. Validation (sizes, finite parameters, positive scales, finite caller values) happens
/// before anything is written: on any exception the outputs are untouched.
/// Non-finite caller values (f, grad f) throw `nonfinite_error`; there is no silent skip.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../base/scratch.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"
#include "distributions.hpp"

namespace stochgrad::dist {

/// Strategy: score function / REINFORCE, `(1/S) sum_s (A_s - offset) dlog q(z_s)/dphi` with
/// `A = normalizer(baseline(f))` over the S samples (one group). Unbiased with `no_baseline` and
/// `leave_one_out`; `group_mean` gives `(S-1)/S` times the leave-one-out estimate. Valid for every
/// distribution with a score.
struct score_function {
  static constexpr const char* name = "score_function";  ///< identifies the strategy
  static constexpr bool has_outcomes = true;              ///< the baseline slot acts on f
};
/// Strategy: pathwise / reparameterisation, `(1/S) sum_s (dz_s/dphi)^T grad_z f(z_s)`. Unbiased for
/// differentiable f; Gaussians only.
struct pathwise {
  static constexpr const char* name = "pathwise";  ///< identifies the strategy
  static constexpr bool has_outcomes = false;       ///< no outcomes: baselines are refused
};
/// Strategy: exact enumeration over a finite support, `sum_j f(j) grad_phi q(j)` (per choice for a
/// vector of Bernoulli variables, as ADEV's `flip_enum`).
struct enumerate {
  static constexpr const char* name = "enumerate";  ///< identifies the strategy
  static constexpr bool has_outcomes = false;        ///< no outcomes: baselines are refused
  static constexpr std::size_t max_support = 4096;   ///< guard on K (section 3.5)
};
/// Strategy: measure-valued derivative (Bernoulli, ADEV `flip_mvd`; Gaussian mean, Mohamed et
/// al. section 6 with coupled Rayleigh parts).
struct mvd {
  static constexpr const char* name = "mvd";  ///< identifies the strategy
  static constexpr bool has_outcomes = false;  ///< no outcomes: baselines are refused
};

/// A constant, caller-chosen baseline `b_n = value` for every sample (ADEV's `baseline(b)`
/// wrapper, section 3.2): `A_n = f_n - value`. Unbiased with the score function.
struct fixed_baseline {
  static constexpr const char* name = "fixed_baseline";  ///< identifies the policy
  double value = 0.0;                                   ///< the baseline b
  /// Writes `value` for every sample.
  /// @param r outcomes
  /// @param g layout
  /// @param out baselines
  /// @throws size_mismatch / invalid_argument on bad sizes
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    stochgrad::detail::check_outcome_sizes("fixed_baseline", r.size(), out.size(), g);
    for (T& o : out) o = static_cast<T>(value);
  }
};

/// Reusable double accumulators (grown, never shrunk) of the strategy functions.
struct workspace {
  std::vector<double> acc;   ///< accumulators of all tensors, back to back
  std::vector<double> adv;   ///< advantages
  std::vector<double*> rows;  ///< per-tensor pointers into acc
};

namespace detail {

/// Throws nonfinite_error naming `name[i]` for the first non-finite entry.
template <class T>
void require_finite_values(const char* what, const char* name, std::span<const T> x) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) {
      throw nonfinite_error(std::string(what) + ": " + name + "[" + std::to_string(i) +
                            "] = " + stochgrad::detail::num_to_string(v) + " is not finite");
    }
  }
}

/// Checks `out` against the shapes of `phi`.
template <class T>
void check_outputs(const char* what, param_spans<T> phi, grad_spans<T> out) {
  stochgrad::detail::require_same_size(what, "gradient tensors", out.size(), "parameter tensors", phi.size());
  for (std::size_t t = 0; t < phi.size(); ++t) {
    stochgrad::detail::require_same_size(what, "gradient tensor", out[t].size(), "its parameter tensor", phi[t].size());
    stochgrad::detail::require_data(what, "gradient", out[t].data(), out[t].size());
  }
}

/// The number of samples of a noise block: `noise.size() / per_sample` (>= 1, exact).
inline std::size_t sample_count(const char* what, std::size_t noise, std::size_t per_sample) {
  stochgrad::detail::require(per_sample >= 1 && noise >= per_sample && noise % per_sample == 0, what, "noise.size()",
                             static_cast<double>(noise), "a positive multiple of the noise entries per sample");
  return noise / per_sample;
}

/// Zeroes the accumulators for the tensors of `phi` and points `ws.rows` at them.
template <class T>
void open(workspace& ws, param_spans<T> phi) {
  std::size_t n = 0;
  for (const auto& t : phi) n += t.size();
  stochgrad::detail::grow(ws.acc, n);
  stochgrad::detail::grow(ws.rows, phi.size());
  std::size_t o = 0;
  for (std::size_t t = 0; t < phi.size(); ++t) {
    ws.rows[t] = ws.acc.data() + o;
    for (std::size_t i = 0; i < phi[t].size(); ++i) ws.rows[t][i] = 0.0;
    o += phi[t].size();
  }
}

/// `out[t][i] = scale * acc[t][i]`.
template <class T>
void close(const workspace& ws, grad_spans<T> out, double scale) noexcept {
  for (std::size_t t = 0; t < out.size(); ++t) {
    for (std::size_t i = 0; i < out[t].size(); ++i) out[t][i] = static_cast<T>(scale * ws.rows[t][i]);
  }
}

inline constexpr double inv_sqrt_2pi = 0.39894228040143267793994605993438;

}  // namespace detail

/// Score-function gradient of `E[f]`:
///   `g = (1/S) sum_s (A_s - offset) dlog q(z_s)/dphi`,  `A = normalizer(baseline(f))`
/// with the S samples as one group (`group_layout::contiguous(1, S)`). `offset = 1` is ADEV's
/// direct term of an ELBO (section 3.3); 0 otherwise.
/// @param phi    parameter tensors of D
/// @param noise  S rows of D's standard noise (`D::noise_dim(phi)` entries each)
/// @param f      `f(z_s)`, one per sample
/// @param out    the gradient, one span per tensor (written only on success)
/// @param b      baseline policy (no_baseline, leave_one_out, group_mean, fixed_baseline ...)
/// @param n      normalizer policy
/// @param offset subtracted from every advantage
/// @param ws     reusable scratch
/// @throws size_mismatch / invalid_argument for bad sizes or parameters, invalid_argument for
///         `leave_one_out` with S < 2 (0/0 baseline, section 3.5), nonfinite_error for a non-finite f
template <class D, real_scalar T, class B = no_baseline, class N = no_normalizer>
  requires has_score<D, T> && baseline_policy<B> && normalizer_policy<N>
void score_function_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> noise, std::span<const double> f,
                             std::type_identity_t<grad_spans<T>> out, const B& b = {}, const N& n = {}, double offset = 0.0,
                             workspace* ws = nullptr) {
  const char* what = "dist::score_function_gradient";
  D::validate(what, phi);
  const std::size_t nd = D::noise_dim(phi);
  const std::size_t S = detail::sample_count(what, noise.size(), nd);
  stochgrad::detail::require_same_size(what, "f", f.size(), "samples", S);
  if constexpr (std::is_same_v<B, leave_one_out>) {
    stochgrad::detail::require(S >= 2, what, "samples (leave_one_out)", static_cast<double>(S), ">= 2");
  }
  detail::require_finite_values(what, "f", f);
  detail::check_outputs<T>(what, phi, out);
  workspace local;
  workspace& w = ws != nullptr ? *ws : local;
  stochgrad::detail::grow(w.adv, S);
  const group_layout layout = group_layout::contiguous(1, S);
  advantages(b, n, f, layout, std::span<double>(w.adv.data(), S));
  detail::open<T>(w, phi);
  const std::span<double* const> rows(w.rows.data(), phi.size());
  for (std::size_t s = 0; s < S; ++s) D::add_score(phi, noise.subspan(s * nd, nd), w.adv[s] - offset, rows);
  detail::close<T>(w, out, 1.0 / static_cast<double>(S));
}

/// Pathwise (reparameterisation) gradient of `E[f]`: `g = (1/S) sum_s (dz_s/dphi)^T grad_f_s`.
/// @param phi    parameter tensors of D (diag_gaussian, gaussian_tril)
/// @param noise  S rows of standard normal noise
/// @param grad_f `grad_z f(z_s)`, S rows of `D::dim(phi)` entries
/// @param out    the gradient, one span per tensor
/// @param ws     reusable scratch
/// @throws size_mismatch / invalid_argument for bad sizes or parameters, nonfinite_error for a
///         non-finite gradient entry
template <class D, real_scalar T>
  requires has_pathwise<D, T>
void pathwise_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> noise, std::span<const T> grad_f, std::type_identity_t<grad_spans<T>> out,
                       workspace* ws = nullptr) {
  const char* what = "dist::pathwise_gradient";
  D::validate(what, phi);
  const std::size_t nd = D::noise_dim(phi), dz = D::dim(phi);
  const std::size_t S = detail::sample_count(what, noise.size(), nd);
  stochgrad::detail::require_same_size(what, "grad_f", grad_f.size(), "samples x dim", S * dz);
  detail::require_finite_values(what, "grad_f", grad_f);
  detail::check_outputs<T>(what, phi, out);
  workspace local;
  workspace& w = ws != nullptr ? *ws : local;
  detail::open<T>(w, phi);
  const std::span<double* const> rows(w.rows.data(), phi.size());
  for (std::size_t s = 0; s < S; ++s) D::add_pathwise(phi, noise.subspan(s * nd, nd), grad_f.subspan(s * dz, dz), 1.0, rows);
  detail::close<T>(w, out, 1.0 / static_cast<double>(S));
}

/// Exact gradient of `E[f]` for a categorical over logits, and the value:
///   `value = sum_j p_j f_j`,  `d/dl = p .* (f - value)`   (`p = softmax(l)`; ADEV `categorical_enum`)
/// @param phi `{l}`
/// @param f f at every category (K)
/// @param out the gradient `{d/dl}`
/// @return the exact value `E[f]`
/// @throws size_mismatch / invalid_argument for bad sizes, parameters or K > enumerate::max_support;
///         nonfinite_error for a non-finite f
template <real_scalar T = double>
double enumerate_gradient(categorical_logits, std::type_identity_t<param_spans<T>> phi, std::span<const double> f, std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::enumerate_gradient";
  categorical_logits::validate(what, phi);
  const std::size_t K = phi[0].size();
  stochgrad::detail::require(K <= enumerate::max_support, what, "K", static_cast<double>(K), "<= 4096");
  stochgrad::detail::require_same_size(what, "f", f.size(), "categories", K);
  detail::require_finite_values(what, "f", f);
  detail::check_outputs<T>(what, phi, out);
  std::vector<double> p(K);
  categorical_logits::probabilities(phi, std::span<double>(p));
  double value = 0.0;
  for (std::size_t k = 0; k < K; ++k) value += p[k] * f[k];
  for (std::size_t k = 0; k < K; ++k) out[0][k] = static_cast<T>(p[k] * (f[k] - value));
  return value;
}

/// Per-choice enumeration for n Bernoulli logits (ADEV `flip_enum` on each choice, the others held
/// at sample s): `d/deta_i = (1/S) sum_s (f1_si - f0_si) p_i (1 - p_i)`, where `f1_si` (`f0_si`) is
/// f at sample s with choice i set to 1 (0). Exact for n = 1.
/// @param phi `{eta}`
/// @param f_one S rows of n values f(v_i = 1)
/// @param f_zero likewise f(v_i = 0)
/// @param out the gradient `{d/deta}`
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for non-finite f
template <real_scalar T = double>
void enumerate_gradient(bernoulli_logit, std::type_identity_t<param_spans<T>> phi, std::span<const double> f_one,
                        std::span<const double> f_zero, std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::enumerate_gradient";
  bernoulli_logit::validate(what, phi);
  const std::size_t n = phi[0].size();
  const std::size_t S = detail::sample_count(what, f_one.size(), n);
  stochgrad::detail::require_same_size(what, "f_zero", f_zero.size(), "f_one", f_one.size());
  detail::require_finite_values(what, "f_one", f_one);
  detail::require_finite_values(what, "f_zero", f_zero);
  detail::check_outputs<T>(what, phi, out);
  for (std::size_t i = 0; i < n; ++i) {
    double d = 0.0;
    for (std::size_t s = 0; s < S; ++s) d += f_one[s * n + i] - f_zero[s * n + i];
    const double p = bernoulli_logit::probability(phi, i);
    out[0][i] = static_cast<T>(d / static_cast<double>(S) * p * (1.0 - p));
  }
}

/// Measure-valued gradient for n Bernoulli logits (ADEV `flip_mvd`): with `v_si = [u_si < p_i]`,
/// f at the draw `f_drawn_si` and at the draw with choice i flipped `f_flip_si`,
///   `d/dp_i = (-1)^{v_si} (f_flip_si - f_drawn_si) = f(v_i = 1) - f(v_i = 0)`,
///   `d/deta_i = (1/S) sum_s p_i (1 - p_i) d/dp_i`.
/// @param phi `{eta}`
/// @param u S rows of n uniforms (the draws)
/// @param f_drawn f at the draws
/// @param f_flip f with choice i flipped (S rows of n)
/// @param out the gradient `{d/deta}`
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for non-finite f
template <real_scalar T>
void mvd_gradient(bernoulli_logit, std::type_identity_t<param_spans<T>> phi, std::span<const T> u, std::span<const double> f_drawn,
                  std::span<const double> f_flip, std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::mvd_gradient";
  bernoulli_logit::validate(what, phi);
  const std::size_t n = phi[0].size();
  const std::size_t S = detail::sample_count(what, u.size(), n);
  stochgrad::detail::require_same_size(what, "f_drawn", f_drawn.size(), "samples x n", S * n);
  stochgrad::detail::require_same_size(what, "f_flip", f_flip.size(), "samples x n", S * n);
  detail::require_finite_values(what, "f_drawn", f_drawn);
  detail::require_finite_values(what, "f_flip", f_flip);
  detail::check_outputs<T>(what, phi, out);
  for (std::size_t i = 0; i < n; ++i) {
    const double p = bernoulli_logit::probability(phi, i);
    double d = 0.0;
    for (std::size_t s = 0; s < S; ++s) {
      const double diff = f_flip[s * n + i] - f_drawn[s * n + i];
      d += static_cast<double>(u[s * n + i]) < p ? -diff : diff;
    }
    out[0][i] = static_cast<T>(d / static_cast<double>(S) * p * (1.0 - p));
  }
}

/// The two coupled points of the Gaussian-mean measure-valued estimator for coordinate i:
/// the sample `z = mu + sigma .* eps` with coordinate i replaced by `mu_i + sigma_i r` (plus) and
/// `mu_i - sigma_i r` (minus).
/// @param phi `{mu, rho}`
/// @param eps one noise row
/// @param r the Rayleigh draw
/// @param i coordinate
/// @param plus output row (d)
/// @param minus output row (d)
template <real_scalar T>
void mvd_mean_points(std::type_identity_t<param_spans<T>> phi, std::span<const T> eps, double r, std::size_t i, std::span<T> plus,
                     std::span<T> minus) noexcept {
  diag_gaussian::sample(phi, eps, plus);
  diag_gaussian::sample(phi, eps, minus);
  const double mu = static_cast<double>(phi[0][i]), sigma = std::exp(static_cast<double>(phi[1][i]));
  plus[i] = static_cast<T>(mu + sigma * r);
  minus[i] = static_cast<T>(mu - sigma * r);
}

/// Measure-valued gradient of `E[f]` with respect to the mean of a diagonal Gaussian (Mohamed et
/// al. 2020 section 6; positive and negative parts coupled through one Rayleigh draw r):
///   `d/dmu_i = (1/S) sum_s (f_plus_si - f_minus_si) / (sigma_i sqrt(2 pi))`
/// with `f_plus_si`, `f_minus_si` f at the points of `mvd_mean_points` (S rows of d). Unbiased;
/// the scale has no measure-valued gradient here (use pathwise or score_function for rho).
/// @param phi `{mu, rho}`
/// @param f_plus f at the plus points
/// @param f_minus f at the minus points
/// @param out_mu the gradient with respect to mu (d)
/// @throws size_mismatch / invalid_argument for bad sizes or parameters; nonfinite_error for non-finite f
template <real_scalar T>
void mvd_mean_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const double> f_plus, std::span<const double> f_minus,
                       std::span<T> out_mu) {
  const char* what = "dist::mvd_mean_gradient";
  diag_gaussian::validate(what, phi);
  const std::size_t d = phi[0].size();
  const std::size_t S = detail::sample_count(what, f_plus.size(), d);
  stochgrad::detail::require_same_size(what, "f_minus", f_minus.size(), "f_plus", f_plus.size());
  stochgrad::detail::require_same_size(what, "out_mu", out_mu.size(), "mu", d);
  detail::require_finite_values(what, "f_plus", f_plus);
  detail::require_finite_values(what, "f_minus", f_minus);
  for (std::size_t i = 0; i < d; ++i) {
    double acc = 0.0;
    for (std::size_t s = 0; s < S; ++s) acc += f_plus[s * d + i] - f_minus[s * d + i];
    const double sigma = std::exp(static_cast<double>(phi[1][i]));
    out_mu[i] = static_cast<T>(acc / static_cast<double>(S) * detail::inv_sqrt_2pi / sigma);
  }
}

/// The Gumbel-softmax relaxation of a categorical over logits (Jang et al. 2017; Maddison et al.
/// 2017), one sample: `gumbel_k = -log(-log u_k)`, `y = softmax((l + gumbel)/tau)` (a point of the
/// simplex that stands for the one-hot sample).
/// @param phi `{l}`
/// @param u K Gumbel uniforms in (0, 1)
/// @param tau temperature (finite, > 0)
/// @param y output (K)
/// @throws invalid_argument for bad logits or tau; size_mismatch for bad sizes
template <real_scalar T>
void gumbel_softmax_point(std::type_identity_t<param_spans<T>> phi, std::span<const T> u, double tau, std::span<double> y) {
  const char* what = "dist::gumbel_softmax_point";
  categorical_logits::validate(what, phi);
  stochgrad::detail::require(tau > 0.0 && std::isfinite(tau), what, "tau", tau, "finite and > 0");
  stochgrad::detail::require_same_size(what, "u", u.size(), "K", phi[0].size());
  stochgrad::detail::require_same_size(what, "y", y.size(), "K", phi[0].size());
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < y.size(); ++k) {
    y[k] = (static_cast<double>(phi[0][k]) - std::log(-std::log(static_cast<double>(u[k])))) / tau;
    m = std::max(m, y[k]);
  }
  double sum = 0.0;
  for (double& v : y) sum += (v = std::exp(v - m));
  for (double& v : y) v /= sum;
}

/// Gumbel-softmax gradient of `E[f(y)]` for a categorical over logits (biased: a relaxation):
/// with `y_s` of gumbel_softmax_point and `g_s = grad_y f(y_s)`,
///   `d/dl_j = (1/S) sum_s sum_k g_sk y_sk (delta_kj - y_sj) / tau = (1/S) sum_s y_sj (g_sj - g_s . y_s) / tau`
/// (the softmax is shift-invariant, so `log softmax(l)` and `l` give the same y).
/// @param phi `{l}`
/// @param u S rows of K Gumbel uniforms
/// @param tau temperature (finite, > 0)
/// @param g S rows of K gradients at the relaxed points
/// @param out the gradient `{d/dl}`
/// @throws size_mismatch / invalid_argument for bad sizes, logits or tau; nonfinite_error for non-finite g
template <real_scalar T>
void gumbel_softmax_gradient(std::type_identity_t<param_spans<T>> phi, std::span<const T> u, double tau,
                             std::span<const double> g, std::type_identity_t<grad_spans<T>> out) {
  const char* what = "dist::gumbel_softmax_gradient";
  categorical_logits::validate(what, phi);
  const std::size_t K = phi[0].size();
  const std::size_t S = detail::sample_count(what, u.size(), K);
  stochgrad::detail::require(tau > 0.0 && std::isfinite(tau), what, "tau", tau, "finite and > 0");
  stochgrad::detail::require_same_size(what, "g", g.size(), "samples x K", S * K);
  detail::require_finite_values(what, "g", g);
  detail::check_outputs<T>(what, phi, out);
  std::vector<double> y(K), acc(K, 0.0);
  for (std::size_t s = 0; s < S; ++s) {
    gumbel_softmax_point<T>(phi, u.subspan(s * K, K), tau, y);
    double gy = 0.0;
    for (std::size_t k = 0; k < K; ++k) gy += g[s * K + k] * y[k];
    for (std::size_t j = 0; j < K; ++j) acc[j] += y[j] * (g[s * K + j] - gy) / tau;
  }
  for (std::size_t j = 0; j < K; ++j) out[0][j] = static_cast<T>(acc[j] / static_cast<double>(S));
}

}  // namespace stochgrad::dist
