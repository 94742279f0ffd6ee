// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief OPO, On-Policy RL with Optimal reward baseline (Hao et al. 2025, arXiv 2505.23585), as
/// verl implements it (core_algos.py `compute_opo_outcome_advantage`): the length-weighted group
/// mean as a baseline policy.
///
///     per group i:  b_i = sum_j L_j s_j / sum_j L_j     (L_j = valid response length)
///                   b_i = 0 for a group of one sample
///     A_n = s_n - b_i                                   (no std scaling: `no_normalizer`)
///
/// OPO is `stepper<score_function<>, length_weighted_mean, no_normalizer, ...>` (preset
/// `verl::opo`) trained exactly on-policy (one PPO mini-batch per generation batch, no KL, no
/// entropy bonus). This weighting makes `sum_j L_j A_j = 0` in every group of two or more.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"

namespace stochgrad {

/// OPO's length-weighted group mean `b_i = sum_j L_j s_j / sum_j L_j` (0 for a singleton group).
/// NaN outcomes (unscorable) are left out of both sums and get NaN (advantage 0 after
/// `advantages()`); a group whose valid lengths sum to 0 has an undefined baseline: NaN (verl's
/// 0/0), so its advantages are 0. The lengths are per batch: set them before each step,
/// `s.baseline().lengths = valid_lengths;` (a view; the caller keeps the data alive).
struct length_weighted_mean {
  static constexpr const char* name = "length_weighted_mean";  ///< identifies the policy in saved state
  std::span<const double> lengths{};  ///< L_n per sample (valid response length): finite, >= 0; required

  /// Writes every sample's group baseline b_i (see the struct comment).
  /// @throws invalid_argument if `lengths` is empty or has a negative or non-finite entry;
  ///         size_mismatch on sizes. Nothing is written then.
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    const char* what = "length_weighted_mean";
    detail::check_outcome_sizes(what, r.size(), out.size(), g);
    if (lengths.empty()) {
      throw invalid_argument("length_weighted_mean: lengths is empty; set the valid length of every response "
                             "(s.baseline().lengths = lengths) before the step");
    }
    detail::require_same_size(what, "lengths", lengths.size(), "outcomes", r.size());
    for (const double l : lengths) detail::require(l >= 0.0 && std::isfinite(l), what, "lengths[n]", l, "finite and >= 0");
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double b = 0.0;
      if (g.size_of(k) > 1) {
        double ls = 0.0, lsum = 0.0;
        g.for_each_member(k, [&](std::size_t n) {
          const double v = static_cast<double>(r[n]);
          if (std::isnan(v)) return;
          ls += lengths[n] * v;
          lsum += lengths[n];
        });
        b = lsum > 0.0 ? ls / lsum : detail::nan_v;
      }
      g.for_each_member(k, [&](std::size_t n) {
        out[n] = static_cast<T>(std::isnan(static_cast<double>(r[n])) ? detail::nan_v : b);
      });
    }
  }
};

}  // namespace stochgrad
