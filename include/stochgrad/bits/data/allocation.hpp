// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief GVM-RAFT's per-prompt sample allocation (RLHFlow/GVM @ d640a754d8,
/// em/stage_2_calc_sample_size.py and verl/trainer/ppo/ray_trainer.py `align_chunk`), as
/// design/seeds/data.md section 4.3 documents it: budget shares from acceptance rates and gradient
/// norms, the reference's two filters, sum-preserving rounding, and alignment to a multiple.
///
/// \f[ s_i = \begin{cases} 0 & G_i = 0 \text{ or } p_i = 0 \\ G_i \big/ \sqrt{p_i + \alpha / p_i^{\beta-1}} & \text{otherwise}\end{cases},\qquad
///     r_i = s_i / \textstyle\sum_j s_j, \f]
/// then filter 1 (`filter_threshold > 0`): \f$r_i = 0\f$ where \f$p_i > \text{filter\_threshold}\f$;
/// filter 2 (`filter_insufficient > 0`): \f$r_i = 0\f$ where \f$p_i r_i N < \text{filter\_insufficient}\f$
/// (r after filter 1, not renormalised); then \f$r \leftarrow r / \sum_j r_j\f$. Without the
/// regulariser (alpha = 0) \f$n_i \propto G_i/\sqrt{p_i}\f$ minimises \f$\sum_i G_i^2/(n_i p_i)\f$ under
/// \f$\sum_i n_i = N\f$.
///
/// Differences from the reference: the spec maps this to bits/outcome/allocation.hpp; it lives in
/// bits/data/ with the other data-centric estimators. **[stochgrad decision]** when every share is 0
/// (no prompt with G > 0 and p > 0, or all filtered out) the reference divides by zero; here the
/// ratios and sizes are all 0 (nothing to sample, the trainer skips the batch). Ties in the sorts
/// are broken stably (lower index first for equal residuals; larger index first among equal sizes in
/// align_to_multiple, as the reference's reversed argsort gives for small arrays).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../error.hpp"

namespace stochgrad::data {

/// Options of gvm_ratios (defaults: runs/scripts/run_em.sh).
struct gvm_options {
  double alpha = 1e-3;               ///< regulariser alpha, finite and >= 0
  double beta = 2.0;                 ///< regulariser exponent beta, finite
  double filter_threshold = 1.0;     ///< > 0: drop prompts with p > threshold (1.0 keeps all); <= 0: off
  double filter_insufficient = 0.0;  ///< > 0: drop prompts with expected accepted samples p r N below it; <= 0: off
};

/// The budget shares r (formula in the file comment; `calc_sample_ratio`).
/// @param grad_norms G_i >= 0, finite (mean gradient norm of prompt i's accepted samples; 0 if none)
/// @param accept     p_i in [0, 1] (stage-1 acceptance rate)
/// @param budget     N, the total number of stage-2 samples (used by filter 2)
/// @param o          options
/// @returns r, summing to 1 (or all 0, see the file comment).
/// @throws size_mismatch; invalid_argument for a G < 0 or non-finite, a p outside [0, 1], a bad alpha/beta.
inline std::vector<double> gvm_ratios(std::span<const double> grad_norms, std::span<const double> accept,
                                      std::uint64_t budget, const gvm_options& o = {}) {
  stochgrad::detail::require_same_size("gvm_ratios", "grad_norms", grad_norms.size(), "accept", accept.size());
  stochgrad::detail::require(std::isfinite(o.alpha) && o.alpha >= 0.0, "gvm_ratios", "alpha", o.alpha, "finite and >= 0");
  stochgrad::detail::require(std::isfinite(o.beta), "gvm_ratios", "beta", o.beta, "finite");
  for (std::size_t i = 0; i < grad_norms.size(); ++i) {
    stochgrad::detail::require(std::isfinite(grad_norms[i]) && grad_norms[i] >= 0.0, "gvm_ratios", "grad_norms[i]",
                               grad_norms[i], "finite and >= 0");
    stochgrad::detail::require(accept[i] >= 0.0 && accept[i] <= 1.0, "gvm_ratios", "accept[i]", accept[i], "in [0, 1]");
  }
  const std::size_t n = grad_norms.size();
  std::vector<double> r(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double g = grad_norms[i], p = accept[i];
    if (g == 0.0 || p == 0.0) continue;
    r[i] = g / std::sqrt(p + o.alpha / std::pow(p, o.beta - 1.0));
  }
  auto normalise = [&r] {
    double s = 0.0;
    for (double x : r) s += x;
    if (s > 0.0) {
      for (double& x : r) x /= s;
    }
  };
  normalise();
  if (o.filter_threshold > 0.0) {
    for (std::size_t i = 0; i < n; ++i) {
      if (accept[i] > o.filter_threshold) r[i] = 0.0;
    }
  }
  if (o.filter_insufficient > 0.0) {
    const double bn = static_cast<double>(budget);
    for (std::size_t i = 0; i < n; ++i) {
      if (accept[i] * r[i] * bn < o.filter_insufficient) r[i] = 0.0;
    }
  }
  normalise();
  return r;
}

/// Round half to even (numpy `np.round`), independent of the floating-point environment.
/// @param x a finite value
inline double round_half_even(double x) noexcept {
  const double f = std::floor(x), d = x - f;
  if (d > 0.5) return f + 1.0;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/// Integer sizes with a prescribed sum (the reference's `float_to_int_preserve_sum`):
/// \f$x_i = r_i N\f$, \f$n_i = \text{round\_half\_even}(x_i)\f$, \f$e = N - \sum_i n_i\f$; if e > 0,
/// add 1 to the e entries with the largest residual \f$x_i - n_i\f$; if e < 0, subtract 1 from the
/// |e| entries with the smallest residual (stable: lower index first on ties).
/// @param ratios r_i >= 0, finite (normally summing to 1)
/// @param total  N
/// @returns n, summing to N when the ratios sum to 1 (all 0 when every ratio is 0).
/// @throws invalid_argument for a negative or non-finite ratio.
inline std::vector<std::int64_t> largest_remainder_round(std::span<const double> ratios, std::uint64_t total) {
  for (double r : ratios) {
    stochgrad::detail::require(std::isfinite(r) && r >= 0.0, "largest_remainder_round", "ratio", r, "finite and >= 0");
  }
  const std::size_t n = ratios.size();
  std::vector<std::int64_t> out(n, 0);
  if (std::all_of(ratios.begin(), ratios.end(), [](double r) { return r == 0.0; })) return out;
  std::vector<double> res(n);
  std::int64_t sum = 0;
  const double bn = static_cast<double>(total);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = ratios[i] * bn, ni = round_half_even(x);
    out[i] = static_cast<std::int64_t>(ni);
    res[i] = x - ni;
    sum += out[i];
  }
  const std::int64_t e = static_cast<std::int64_t>(total) - sum;
  if (e == 0) return out;
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  if (e > 0) {
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return res[a] > res[b]; });
  } else {
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return res[a] < res[b]; });
  }
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(e > 0 ? e : -e), n);
  for (std::size_t j = 0; j < k; ++j) out[idx[j]] += e > 0 ? 1 : -1;
  return out;
}

/// The per-prompt stage-2 sample sizes: `largest_remainder_round(gvm_ratios(G, p, N, o), N)`.
/// @param grad_norms G_i (see gvm_ratios)
/// @param accept     p_i
/// @param budget     N = min(stage_2_samples, prompts * samples_per_prompt)
/// @param o          options
/// @throws as gvm_ratios.
inline std::vector<std::int64_t> gvm_sample_sizes(std::span<const double> grad_norms, std::span<const double> accept,
                                                  std::uint64_t budget, const gvm_options& o = {}) {
  const std::vector<double> r = gvm_ratios(grad_norms, accept, budget, o);
  return largest_remainder_round(r, budget);
}

/// The trainer's `align_chunk`: while the total is not a multiple of `multiple`, add 1 to the
/// prompts in descending order of size (larger index first among equal sizes), cycling. An
/// all-zero batch is left as it is (the trainer skips it).
/// @param sizes    per-prompt sizes n_i >= 0 (changed in place)
/// @param multiple e.g. the GPUs per node, >= 1
/// @throws invalid_argument for multiple = 0 or a negative size (nothing is changed).
inline void align_to_multiple(std::span<std::int64_t> sizes, std::uint64_t multiple) {
  stochgrad::detail::require(multiple >= 1, "align_to_multiple", "multiple", 0.0, ">= 1");
  std::int64_t total = 0;
  for (std::int64_t s : sizes) {
    stochgrad::detail::require(s >= 0, "align_to_multiple", "size", static_cast<double>(s), ">= 0");
    total += s;
  }
  if (total == 0 || sizes.empty()) return;
  const auto m = static_cast<std::int64_t>(multiple);
  std::vector<std::size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return sizes[a] < sizes[b]; });
  std::reverse(order.begin(), order.end());
  for (std::size_t j = 0; total % m != 0; j = (j + 1) % order.size()) {
    ++sizes[order[j]];
    ++total;
  }
}

}  // namespace stochgrad::data
