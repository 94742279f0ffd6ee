// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief BNPO (Beta Normalization Policy Optimization, arXiv 2506.02864): the per-prompt
/// expected-reward baseline and the Beta-density normalizer (changyi7231/BNPO
/// `recipe/bnpo/src/bnpo_ray_trainer.py`, `compute_bnpo_outcome_advantage`).
///
/// Per training step, with rewards mapped to `s_n = (r_n - min) / (max - min)` in [0, 1]:
///
///     p_i   = mean_j s_ij                        (per prompt; the baseline, `bnpo_mean`)
///     m, v  = mean and unbiased variance of the p_i over the batch's prompts
///     k     = m (1 - m) / v - 1 ;  a = k m ;  b = k (1 - m)        (method of moments, Beta(a, b))
///     alpha = max(1, 1 + a/3) ;  beta = max(1, 1 + b/3)            (variance-optimal, §4.3)
///     w_i   = min(1 / BetaPDF(p_i; alpha, beta), 1e6)
///     A_n   = w_i (s_n - p_i)                                       (`beta_normalizer`)
///
/// Special cases (§4.3): alpha = beta = 1 is REINFORCE with the per-prompt mean baseline;
/// alpha = beta = 3/2 is GRPO (biased std, no epsilon) scaled by pi/8.
///
/// Edge cases (§4.6), default behaviour vs `reference_compatible = true` (which reproduces the BNPO
/// repository, golden data `bnpo_*`):
/// | case | default | reference_compatible |
/// |---|---|---|
/// | saturated group (p = 0 or 1) | density 0 or `0 log 0 = 0` -> weight capped, A = 0 | same (torch >= 2.1 `xlogy`) |
/// | all p_i equal (v <= 1e-12) | alpha = beta = 1 | v = 0 with 0 < m < 1 (e.g. every p_i = 0.5): k = +inf, alpha = beta = +inf, NaN advantages, as the reference returns (`beta_fit::reference_nan`; `advantages()` leaves them NaN, a step refuses them with `nonfinite_error`); every p_i = 0 or 1: throws `invalid_argument` (the reference stops with a Beta argument error) |
/// | a single prompt | m = 0, v = 1 -> alpha = beta = 1 | same |
/// | over-dispersed batch (k < 0) | clamp -> alpha = beta = 1 | same |
/// | group with one sample | advantage 0, excluded from the fit | p_i = 0, included in the fit (A = w(0) s_n) |
/// | reward outside [min, max] | throws `invalid_argument` | throws (the reference asserts) |
/// Groups with fewer than two valid (non-NaN) rewards count as one-sample groups in the default
/// mode; a group with no valid reward gets NaN (advantage 0 after `advantages()`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "group_layout.hpp"
#include "policies.hpp"

namespace stochgrad {

/// `log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b)` (a, b > 0).
inline double log_beta_function(double a, double b) noexcept {
  return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b);
}

/// Log of the Beta(alpha, beta) density at p in [0, 1], computed in log space with the convention
/// `0 * log 0 = 0` (so Beta(1, 1) is exactly 1 everywhere, and the density at an endpoint is 0 when
/// the exponent there is positive: returns -inf).
inline double beta_log_density(double p, double alpha, double beta) noexcept {
  auto xlogy = [](double x, double y) { return x == 0.0 ? 0.0 : x * std::log(y); };
  auto xlog1py = [](double x, double y) { return x == 0.0 ? 0.0 : x * std::log1p(y); };
  return xlogy(alpha - 1.0, p) + xlog1py(beta - 1.0, -p) - log_beta_function(alpha, beta);
}

/// The BNPO Beta fit of one batch (diagnostics; also returned by `beta_normalizer::last_fit`).
struct beta_fit {
  std::size_t prompts = 0;  ///< number of per-prompt means p_i in the fit
  double mean = 0.0;        ///< m (0 when prompts <= 1)
  double variance = 1.0;    ///< v, unbiased (1 when prompts <= 1)
  double a = 0.0;           ///< method-of-moments Beta parameter a = k m
  double b = 0.0;           ///< method-of-moments Beta parameter b = k (1 - m)
  double alpha = 1.0;       ///< max(1, 1 + a/3), or 1 after the variance guard
  double beta = 1.0;        ///< max(1, 1 + b/3), or 1 after the variance guard
  bool variance_guard = false;  ///< true when v <= variance_floor forced alpha = beta = 1
  /// reference_compatible only: v = 0 with 0 < m < 1, where the reference computes
  /// k = m (1 - m) / 0 - 1 = +inf, a = b = alpha = beta = +inf and a NaN Beta density, hence NaN
  /// weights and advantages for every prompt of the fit (kept NaN by `advantages()`).
  bool reference_nan = false;
};

/// Method-of-moments fit of the per-prompt means `p` (as the BNPO reference's
/// `compute_bnpo_outcome_advantage` does it, with its edge cases).
/// @param p                    per-prompt means in [0, 1]
/// @param variance_floor       v <= this gives alpha = beta = 1 (default mode)
/// @param reference_compatible no floor: v == 0 gives the reference's infinite fit
///                             (`reference_nan`) when 0 < m < 1, and throws when m is 0 or 1
/// @throws invalid_argument as described
inline beta_fit fit_bnpo_beta(std::span<const double> p, double variance_floor = 1e-12,
                              bool reference_compatible = false) {
  beta_fit f;
  f.prompts = p.size();
  if (p.size() > 1) {
    double s = 0.0;
    for (double x : p) s += x;
    f.mean = s / static_cast<double>(p.size());
    double m2 = 0.0;
    for (double x : p) m2 += (x - f.mean) * (x - f.mean);
    f.variance = m2 / static_cast<double>(p.size() - 1);
  } else {
    f.mean = 0.0;
    f.variance = 1.0;
  }
  if (reference_compatible) {
    if (!(f.variance > 0.0)) {
      if (f.mean > 0.0 && f.mean < 1.0) {
        // The reference: k = m (1 - m) / 0 - 1 = +inf, a = k m = +inf, b = k (1 - m) = +inf,
        // alpha = max(1, 1 + a/3) = +inf, beta = +inf; its Beta log-density is then NaN.
        f.a = f.b = f.alpha = f.beta = std::numeric_limits<double>::infinity();
        f.reference_nan = true;
        return f;
      }
      throw invalid_argument(
          "beta_normalizer (reference_compatible): every per-prompt mean p_i equals " + detail::num_to_string(f.mean) +
          " (variance 0, k = 0/0); the BNPO reference stops here with a Beta argument error. The default mode "
          "falls back to alpha = beta = 1.");
    }
  } else if (f.variance <= variance_floor) {
    f.variance_guard = true;
    f.alpha = f.beta = 1.0;
    return f;
  }
  const double k = f.mean * (1.0 - f.mean) / f.variance - 1.0;
  f.a = k * f.mean;
  f.b = k * (1.0 - f.mean);
  f.alpha = std::max(1.0, 1.0 + f.a / 3.0);
  f.beta = std::max(1.0, 1.0 + f.b / 3.0);
  return f;
}

/// Second moment of the BNPO estimator (the BNPO paper's variance theorem, arXiv 2506.02864) for prompts with success
/// probability `p ~ Beta(a, b)` and 0/1 rewards, normalized by the Beta(alpha, beta) density:
/// `V = E[(R - p)^2 / f(p)^2] = B(alpha, beta)^2 B(a + 3 - 2 alpha, b + 3 - 2 beta) / B(a, b)`,
/// +inf when `2 alpha >= a + 3` or `2 beta >= b + 3`.
inline double bnpo_second_moment(double alpha, double beta, double a, double b) noexcept {
  const double x = a + 3.0 - 2.0 * alpha, y = b + 3.0 - 2.0 * beta;
  if (!(x > 0.0) || !(y > 0.0)) return std::numeric_limits<double>::infinity();
  return std::exp(2.0 * log_beta_function(alpha, beta) + log_beta_function(x, y) - log_beta_function(a, b));
}

/// The variance-optimal normalizer parameters for prompts with p ~ Beta(a, b): (1 + a/3, 1 + b/3).
inline std::pair<double, double> bnpo_optimal_parameters(double a, double b) noexcept {
  return {1.0 + a / 3.0, 1.0 + b / 3.0};
}

namespace detail {
inline void check_bnpo_range(const char* what, double lo, double hi) {
  require(std::isfinite(lo), what, "min_value", lo, "finite");
  require(std::isfinite(hi) && hi > lo, what, "max_value", hi, "finite and > min_value");
}
template <class T>
void check_bnpo_rewards(const char* what, std::span<const T> r, double lo, double hi) {
  for (std::size_t n = 0; n < r.size(); ++n) {
    const double v = static_cast<double>(r[n]);
    if (std::isnan(v)) continue;
    if (!(v >= lo && v <= hi)) {
      throw invalid_argument(std::string(what) + ": reward[" + std::to_string(n) + "] = " + num_to_string(v) +
                             ", must be in [min_value, max_value] = [" + num_to_string(lo) + ", " + num_to_string(hi) +
                             "]");
    }
  }
}
}  // namespace detail

/// Options shared by the BNPO baseline and normalizer.
struct bnpo_options {
  double min_value = 0.0;             ///< reward mapped to 0
  double max_value = 1.0;             ///< reward mapped to 1 (> min_value)
  double weight_cap = 1e6;            ///< w = min(1/f, weight_cap); > 0
  double variance_floor = 1e-12;      ///< v <= this: alpha = beta = 1 (default mode); >= 0
  bool reference_compatible = false;  ///< reproduce the BNPO repository (golden data), see the file comment
};

/// BNPO baseline: the per-prompt mean reward (in reward units, `min + (max - min) p_i`). A group
/// with one sample gets `b = r` (advantage 0) by default, `b = min_value` (p_i = 0) with
/// `reference_compatible`. @throws invalid_argument for a reward outside [min_value, max_value].
struct bnpo_mean {
  static constexpr const char* name = "bnpo_mean";  ///< identifies the policy in saved state
  bnpo_options options;  ///< range and compatibility mode (use the same as the normalizer's)

  /// Writes each sample's group NaN-mean reward (`min_value` for a singleton group with
  /// `reference_compatible`). @throws invalid_argument / size_mismatch on bad sizes, a bad range or
  /// a reward outside [min_value, max_value].
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    detail::check_bnpo_range("bnpo_mean", options.min_value, options.max_value);
    detail::check_outcome_sizes("bnpo_mean", r.size(), out.size(), g);
    detail::check_bnpo_rewards("bnpo_mean", r, options.min_value, options.max_value);
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double b;
      if (options.reference_compatible && g.size_of(k) == 1) {
        b = options.min_value;
      } else {
        b = detail::group_nanmean(r, g, k);
      }
      g.for_each_member(k, [&](std::size_t n) { out[n] = static_cast<T>(b); });
    }
  }
};

/// BNPO normalizer: `A_n = w_i (r_n - b_n) / (max - min)` with the Beta-density weight `w_i` of
/// n's prompt, fitted on the batch (see the file comment). Use with `bnpo_mean` with the same
/// options. Keeps the fit of the last call (`last_fit()`) and per-prompt scratch that grows only.
class beta_normalizer {
 public:
  static constexpr const char* name = "beta_normalizer";  ///< identifies the policy in saved state
  /// Default options (rewards in [0, 1]). Not explicit, so that a stepper can default-construct
  /// its normalizer (`Normalizer norm = {}`).
  beta_normalizer() : beta_normalizer(bnpo_options{}) {}
  /// @throws invalid_argument if `max_value <= min_value`, `weight_cap <= 0` or `variance_floor < 0`.
  explicit beta_normalizer(bnpo_options o) : opt_(o) {
    detail::check_bnpo_range("beta_normalizer", opt_.min_value, opt_.max_value);
    detail::require(opt_.weight_cap > 0.0, "beta_normalizer", "weight_cap", opt_.weight_cap, "> 0");
    detail::require(opt_.variance_floor >= 0.0, "beta_normalizer", "variance_floor", opt_.variance_floor, ">= 0");
  }

  /// The options.
  const bnpo_options& options() const noexcept { return opt_; }

  /// Refuses a `bnpo_mean` whose range or compatibility mode differs from this normalizer's
  /// (called by `advantages()` and the policy-gradient step through `detail::check_advantage_inputs`).
  /// @throws invalid_argument naming both ranges
  void check_baseline(const char* what, const bnpo_mean& b) const {
    const bnpo_options& x = b.options;
    const bnpo_options& y = opt_;
    if (x.min_value != y.min_value || x.max_value != y.max_value || x.reference_compatible != y.reference_compatible) {
      throw invalid_argument(std::string(what) + ": bnpo_mean and beta_normalizer have different options (reward range [" +
                             detail::num_to_string(x.min_value) + ", " + detail::num_to_string(x.max_value) + "] vs [" +
                             detail::num_to_string(y.min_value) + ", " + detail::num_to_string(y.max_value) +
                             "], or reference_compatible); construct both from the same bnpo_options");
    }
  }
  /// The Beta fit of the last `apply` call.
  const beta_fit& last_fit() const noexcept { return fit_; }
  /// True when the last `apply` produced the reference's NaN advantages on purpose
  /// (`beta_fit::reference_nan`): `advantages()` then leaves NaN in place instead of mapping it to 0.
  bool keeps_nan() const noexcept { return fit_.reference_nan; }

  /// Fits Beta(alpha, beta) to the prompts' mean rewards p_i (prompts with >= 2 valid rewards) and
  /// writes `adv_n = w_i (r_n - base_n) / (max - min)`, `w_i = min(1 / f(p_i), weight_cap)`; prompts
  /// left out of the fit get 0 (NaN for NaN rewards). Updates `last_fit()`.
  /// @throws invalid_argument / size_mismatch on bad sizes or a reward outside [min_value, max_value].
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    const char* what = "beta_normalizer";
    detail::check_outcome_sizes(what, r.size(), adv.size(), g);
    detail::require_same_size(what, "outcomes", r.size(), "baseline", base.size());
    detail::check_bnpo_rewards(what, r, opt_.min_value, opt_.max_value);
    const std::size_t G = g.groups();
    if (p_.size() < G) {
      p_.resize(G);
      w_.resize(G);
      fitp_.resize(G);
      in_.resize(G);
    }
    const double range = opt_.max_value - opt_.min_value;
    // Per-prompt means and which prompts enter the fit.
    std::size_t used = 0;
    for (std::size_t k = 0; k < G; ++k) {
      in_[k] = 0;
      if (opt_.reference_compatible && g.size_of(k) == 1) {
        in_[k] = 1;
        p_[k] = 0.0;
      } else {
        const detail::nan_moments m = detail::group_moments(r, g, k);
        if (m.count >= 2) {
          in_[k] = 1;
          p_[k] = (m.mean - opt_.min_value) / range;
        }
      }
      if (in_[k]) fitp_[used++] = p_[k];
    }
    fit_ = fit_bnpo_beta(std::span<const double>(fitp_.data(), used), opt_.variance_floor, opt_.reference_compatible);
    for (std::size_t k = 0; k < G; ++k) {
      if (!in_[k]) continue;
      if (fit_.reference_nan) {
        w_[k] = detail::nan_v;  // the reference's clip(1 / NaN, 0, 1e6) is NaN
        continue;
      }
      const double f = std::exp(beta_log_density(p_[k], fit_.alpha, fit_.beta));
      w_[k] = f > 0.0 ? std::min(1.0 / f, opt_.weight_cap) : opt_.weight_cap;
    }
    for (std::size_t k = 0; k < G; ++k) {
      if (in_[k]) {
        const double w = w_[k];
        g.for_each_member(k, [&](std::size_t n) {
          adv[n] = static_cast<T>(w * ((static_cast<double>(r[n]) - static_cast<double>(base[n])) / range));
        });
      } else {
        // Fewer than two valid rewards (default mode): no signal. NaN rewards stay NaN.
        g.for_each_member(k, [&](std::size_t n) {
          adv[n] = static_cast<T>(std::isnan(static_cast<double>(r[n])) ? detail::nan_v : 0.0);
        });
      }
    }
  }

 private:
  bnpo_options opt_;
  mutable std::vector<double> p_, w_, fitp_;
  mutable std::vector<unsigned char> in_;
  mutable beta_fit fit_;
};

}  // namespace stochgrad
