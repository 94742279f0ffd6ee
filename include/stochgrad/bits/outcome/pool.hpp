// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Reinforce-Ada's global-statistics baseline and normalizer (RLHFlow/Reinforce-Ada
/// `core_algos.py`, `compute_grpo_outcome_advantage` with `global_stat_est`).
///
/// "Global" means per prompt, over the whole pool of samples generated for that prompt in all
/// rounds of adaptive sampling (before down-sampling to the kept n), not only over the kept
/// samples. The pool is summarized as counts of positives and negatives (reward above / not above
/// the positive threshold), so its statistics are those of a 0/1 sample:
///
///     N_u = pos_u + neg_u
///     N_u <= 1 :  mu_u = 0, sd_u = 1
///     else     :  mu_u = pos_u / N_u,  sd_u = max( sqrt(N_u/(N_u-1) * mu_u (1 - mu_u)), 1e-6 )
///     A = (r - mu_u) / (sd_u + 1e-6)    (or A = r - mu_u without std normalization)
///
/// The counts live in the caller's span (one entry per group of the layout, in the layout's dense
/// group order); the policies only view it. `reinforce_ada` (bits/pg/reinforce_ada.hpp) produces it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "group_layout.hpp"
#include "policies.hpp"

namespace stochgrad {

/// Positive and negative counts of one prompt's full sample pool.
struct pool_counts {
  std::size_t positives = 0;  ///< samples with reward > threshold
  std::size_t negatives = 0;  ///< the others
  /// Pool size N_u.
  std::size_t total() const noexcept { return positives + negatives; }
};

namespace detail {
inline void check_pool(const char* what, std::span<const pool_counts> pool, const group_layout& g) {
  require_same_size(what, "pool counts", pool.size(), "layout groups", g.groups());
}
inline double pool_mean_of(const pool_counts& c) noexcept {
  const std::size_t n = c.total();
  return n <= 1 ? 0.0 : static_cast<double>(c.positives) / static_cast<double>(n);
}
}  // namespace detail

/// Baseline `b_n = mu_u` of n's prompt pool (0 when the pool has at most one sample).
struct pool_mean {
  static constexpr const char* name = "pool_mean";  ///< identifies the policy in saved state
  std::span<const pool_counts> pool;  ///< one entry per group (dense group order of the layout)

  /// Writes `mu_u = positives / N_u` of each sample's prompt pool (0 when N_u <= 1).
  /// @throws size_mismatch / invalid_argument on bad sizes (`pool.size()` must be `g.groups()`).
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    detail::check_outcome_sizes("pool_mean", r.size(), out.size(), g);
    detail::check_pool("pool_mean", pool, g);
    for (std::size_t k = 0; k < g.groups(); ++k) {
      const T mu = static_cast<T>(detail::pool_mean_of(pool[k]));
      g.for_each_member(k, [&](std::size_t n) { out[n] = mu; });
    }
  }
};

/// Normalizer `A_n = (r_n - b_n) / (sd_u + eps)` with the pool std `sd_u` (floored at `floor`;
/// 1 when the pool has at most one sample). With `normalize = false`, `A_n = r_n - b_n` (the
/// Reinforce-Ada training script's setting, `norm_adv_by_std_in_grpo=False`).
struct pool_std {
  static constexpr const char* name = "pool_std";  ///< identifies the policy in saved state
  std::span<const pool_counts> pool;  ///< one entry per group (dense group order of the layout)
  double eps = 1e-6;                  ///< added to the std; >= 0
  double floor = 1e-6;                ///< lower bound of the std; >= 0
  bool normalize = true;              ///< false: no division

  /// Writes `adv_n = (r_n - base_n) / (sd_u + eps)` per prompt pool, or `r_n - base_n` without
  /// `normalize`. @throws size_mismatch / invalid_argument on bad sizes, eps or floor < 0 or not finite.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::require_nonnegative_eps("pool_std", eps);
    detail::require(floor >= 0.0 && std::isfinite(floor), "pool_std", "floor", floor, "finite and >= 0");
    detail::check_outcome_sizes("pool_std", r.size(), adv.size(), g);
    detail::require_same_size("pool_std", "outcomes", r.size(), "baseline", base.size());
    detail::check_pool("pool_std", pool, g);
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double d = 1.0;
      if (normalize) {
        const std::size_t n_u = pool[k].total();
        double sd = 1.0;
        if (n_u > 1) {
          const double mu = detail::pool_mean_of(pool[k]);
          const double nn = static_cast<double>(n_u);
          sd = std::max(std::sqrt(nn / (nn - 1.0) * mu * (1.0 - mu)), floor);
        }
        d = sd + eps;
      }
      g.for_each_member(k, [&](std::size_t n) {
        adv[n] = static_cast<T>((static_cast<double>(r[n]) - static_cast<double>(base[n])) / d);
      });
    }
  }
};

}  // namespace stochgrad
