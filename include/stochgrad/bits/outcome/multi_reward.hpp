// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Several reward functions per sample: weighted sum then normalize (TRL default),
/// normalize then sum (GDPO), and BNPO's advantage decomposition (TRL `reward_weights`;
/// GDPO; BNPO paper §4).
///
/// Rewards come as a row-major `[N x K]` matrix `rewards_per_func` (sample n, reward function k);
/// NaN means the function returned nothing for that sample. A sample whose K entries are all NaN
/// is *unscorable*: its combined reward is NaN and its advantage 0.
///
/// | mode | advantage |
/// |---|---|
/// | `sum_then_normalize` | `r_n = nansum_k w_k r_nk` (NaN if unscorable), then `A = N(B(r))` |
/// | `normalize_then_sum` (GDPO) | `z_nk = N(B(r_.k))_n` per function (NaN kept), `s_n = nansum_k w_k z_nk` (NaN if unscorable), then batch whitening `A = (s - nanmean s) / (nanstd_u s + final_eps)` |
/// | `decompose` (BNPO) | `A = sum_k w_k A^(k) / sum_k w_k`, each `A^(k) = N(B(r_.k))` with its own fit (NaN -> 0) |
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "group_layout.hpp"
#include "policies.hpp"

namespace stochgrad {

/// How several reward functions are combined (see the file comment).
enum class reward_aggregation {
  sum_then_normalize,  ///< TRL default: weighted NaN-aware sum, then baseline and normalizer
  normalize_then_sum,  ///< GDPO: per-function group normalization, weighted sum, batch whitening
  decompose,           ///< BNPO `use_advantage_decomposition`: weighted mean of per-function advantages
};

namespace detail {
inline void check_reward_matrix(const char* what, std::size_t cells, std::size_t n, std::size_t k) {
  require(k >= 1, what, "number of reward functions K", static_cast<double>(k), ">= 1");
  if (cells != n * k) {
    throw size_mismatch(std::string(what) + ": rewards_per_func has " + std::to_string(cells) +
                        " elements but samples x K = " + std::to_string(n) + " x " + std::to_string(k));
  }
}
}  // namespace detail

/// `out[n] = nansum_k w_k r[n*K + k]`, NaN when all K entries of row n are NaN.
/// @throws size_mismatch / invalid_argument on inconsistent sizes or an empty weight list
template <real_scalar T>
void weighted_reward_sum(std::span<const T> rewards_per_func, std::span<const double> weights, std::span<T> out) {
  const std::size_t K = weights.size();
  detail::check_reward_matrix("weighted_reward_sum", rewards_per_func.size(), out.size(), K);
  for (std::size_t n = 0; n < out.size(); ++n) {
    double s = 0.0;
    bool any = false;
    for (std::size_t k = 0; k < K; ++k) {
      const double v = static_cast<double>(rewards_per_func[n * K + k]);
      if (!std::isnan(v)) {
        s += weights[k] * v;
        any = true;
      }
    }
    out[n] = static_cast<T>(any ? s : detail::nan_v);
  }
}

/// Clamps every non-NaN reward to [lo, hi] (TRL RLOO `reward_clip_range`, applied after the
/// weighted sum). @throws invalid_argument unless lo <= hi.
template <real_scalar T>
void clip_rewards(std::span<T> r, double lo, double hi) {
  detail::require(lo <= hi, "clip_rewards", "hi", hi, ">= lo");
  for (T& v : r) {
    if (std::isnan(static_cast<double>(v))) continue;
    v = static_cast<T>(std::min(std::max(static_cast<double>(v), lo), hi));
  }
}

/// Scratch of `combined_advantages` (grown only: calls on batches of at most the same size do not
/// allocate). Owned by `multi_reward`, or by a stepper's estimator state.
struct multi_reward_scratch {
  /// @var r
  /// per-sample rewards being normalized: the combined reward, or one function's column (N)
  /// @var tmp
  /// per-sample baseline and advantages of the current pass (N)
  /// @var acc
  /// per-sample weighted sum over functions of z-scores or advantages (N)
  std::vector<double> r, tmp, acc;
  /// @var any
  /// per sample, 1 if at least one reward function scored it (0 = unscorable) (N)
  /// @var constant
  /// per group, 1 while every function's rewards seen so far are constant in the group (`decompose`)
  std::vector<unsigned char> any, constant;
  /// Grows the buffers to n samples and `groups` groups.
  void reserve(std::size_t n, std::size_t groups) {
    if (r.size() < n) {
      r.resize(n);
      tmp.resize(n);
      acc.resize(n);
      any.resize(n);
    }
    if (constant.size() < groups) constant.resize(groups);
  }
};

namespace detail {
inline void check_reward_weights(std::span<const double> w, reward_aggregation mode) {
  require(!w.empty(), "multi_reward", "weights.size()", 0.0, ">= 1");
  for (double x : w) require(std::isfinite(x), "multi_reward", "weight", x, "finite");
  if (mode == reward_aggregation::decompose) {
    double s = 0.0;
    for (double x : w) s += x;
    require(s != 0.0, "multi_reward (decompose)", "sum of weights", s, "!= 0");
  }
}
}  // namespace detail

/// Advantages of `g.samples()` samples from K reward functions (row-major `[N x K]` matrix
/// `rewards_per_func`, K = `weights.size()`), combined as `mode` says (see the file comment), with
/// the baseline `base` and normalizer `nrm` (taken by reference: e.g. a stepper's own policies).
/// @param base      baseline policy
/// @param nrm       normalizer policy
/// @param weights   one weight w_k per reward function (K >= 1, finite; nonzero sum for `decompose`)
/// @param mode      how the K rewards are combined (`reward_aggregation`)
/// @param final_eps epsilon of the final batch whitening of `normalize_then_sum` (TRL 1e-4)
/// @param rewards_per_func row-major `[N x K]` rewards, NaN = no reward from that function
/// @param g         grouping of the N samples
/// @param adv       output advantages, N = `g.samples()`
/// @param scratch   work buffers (grown as needed, never shrunk)
/// @return statistics of the final advantages (NaN outcomes = unscorable samples)
/// @throws size_mismatch / invalid_argument on inconsistent sizes, an empty or non-finite weight
///         list, a zero weight sum for `decompose`, a negative final_eps; nonfinite_error for an
///         infinite entry and invalid_argument for a baseline / normalizer pair that disagree
///         (`detail::check_advantage_inputs`, as `advantages()`); whatever the policies throw
template <baseline_policy Base, normalizer_policy Norm, real_scalar T>
advantage_stats combined_advantages(const Base& base, const Norm& nrm, std::span<const double> weights, reward_aggregation mode,
                                    double final_eps, std::span<const T> rewards_per_func, const group_layout& g,
                                    std::span<T> adv, multi_reward_scratch& scratch) {
  const std::size_t N = g.samples(), K = weights.size();
  detail::check_reward_weights(weights, mode);
  detail::require_nonnegative_eps("multi_reward", final_eps);
  detail::check_reward_matrix("multi_reward", rewards_per_func.size(), N, K);
  detail::require_same_size("multi_reward", "layout samples", N, "advantages", adv.size());
  detail::check_advantage_inputs("multi_reward", base, nrm, rewards_per_func, K);
  scratch.reserve(N, g.groups());
  std::span<double> r(scratch.r.data(), N), tmp(scratch.tmp.data(), N), acc(scratch.acc.data(), N);
  std::vector<unsigned char>& any = scratch.any;
  switch (mode) {
    case reward_aggregation::sum_then_normalize: {
      for (std::size_t n = 0; n < N; ++n) {
        double s = 0.0;
        bool seen = false;
        for (std::size_t k = 0; k < K; ++k) {
          const double v = static_cast<double>(rewards_per_func[n * K + k]);
          if (!std::isnan(v)) {
            s += weights[k] * v;
            seen = true;
          }
        }
        r[n] = seen ? s : detail::nan_v;
      }
      const advantage_stats st = advantages(base, nrm, std::span<const double>(r), g, tmp);
      for (std::size_t n = 0; n < N; ++n) adv[n] = static_cast<T>(tmp[n]);
      return st;
    }
    case reward_aggregation::normalize_then_sum: {
      for (std::size_t n = 0; n < N; ++n) acc[n] = 0.0;
      for (std::size_t n = 0; n < N; ++n) any[n] = 0;
      // Each function's z-scores keep NaN where undefined so that nansum drops them.
      for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t n = 0; n < N; ++n) r[n] = static_cast<double>(rewards_per_func[n * K + k]);
        base.compute(std::span<const double>(r), g, tmp);
        nrm.apply(std::span<const double>(r), std::span<const double>(tmp), g, tmp);
        for (std::size_t n = 0; n < N; ++n) {
          if (!std::isnan(r[n])) any[n] = 1;
          if (!std::isnan(tmp[n])) acc[n] += weights[k] * tmp[n];
        }
      }
      for (std::size_t n = 0; n < N; ++n) r[n] = any[n] ? acc[n] : detail::nan_v;
      const advantage_stats st = advantages(no_baseline{}, batch_whiten{final_eps}, std::span<const double>(r), g, tmp);
      for (std::size_t n = 0; n < N; ++n) adv[n] = static_cast<T>(tmp[n]);
      return st;
    }
    case reward_aggregation::decompose:
    default: {
      double wsum = 0.0;
      for (double w : weights) wsum += w;
      for (std::size_t n = 0; n < N; ++n) {
        acc[n] = 0.0;
        any[n] = 0;
      }
      std::vector<unsigned char>& constant = scratch.constant;
      for (std::size_t k = 0; k < g.groups(); ++k) constant[k] = 1;
      for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t n = 0; n < N; ++n) {
          r[n] = static_cast<double>(rewards_per_func[n * K + k]);
          if (!std::isnan(r[n])) any[n] = 1;
        }
        advantages(base, nrm, std::span<const double>(r), g, tmp);
        for (std::size_t n = 0; n < N; ++n) acc[n] += weights[k] * tmp[n];
        for (std::size_t q = 0; q < g.groups(); ++q) {
          if (!detail::is_constant_group(std::span<const double>(r), g, q)) constant[q] = 0;
        }
      }
      advantage_stats st;
      st.samples = N;
      st.groups = g.groups();
      for (std::size_t n = 0; n < N; ++n) {
        adv[n] = static_cast<T>(acc[n] / wsum);
        if (!any[n]) ++st.nan_outcomes;
      }
      st.zeroed = st.nan_outcomes;
      for (std::size_t q = 0; q < g.groups(); ++q) {
        bool zero = true;
        g.for_each_member(q, [&](std::size_t n) { zero = zero && adv[n] == T(0); });
        st.zero_groups += zero ? 1 : 0;
        st.constant_groups += constant[q];
      }
      return st;
    }
  }
}

/// Advantages from K reward functions with weights, for a baseline and a normalizer policy.
/// Holds the policies, the weights and scratch buffers (grown only), so repeated calls on batches
/// of at most the same size do not allocate. (`combined_advantages` is the same computation with
/// policies and scratch owned elsewhere.)
template <baseline_policy Base, normalizer_policy Norm>
class multi_reward {
 public:
  /// @param b, nrm      the policies applied per batch (sum_then_normalize) or per function
  /// @param weights     one weight per reward function (K >= 1)
  /// @param mode        how to combine
  /// @param final_eps   epsilon of the final batch whitening of `normalize_then_sum` (TRL 1e-4)
  /// @throws invalid_argument if weights is empty, a weight is not finite, or final_eps < 0
  multi_reward(Base b, Norm nrm, std::vector<double> weights, reward_aggregation mode = reward_aggregation::sum_then_normalize,
               double final_eps = 1e-4)
      : b_(std::move(b)), n_(std::move(nrm)), w_(std::move(weights)), mode_(mode), final_eps_(final_eps) {
    detail::check_reward_weights(w_, mode_);
    detail::require_nonnegative_eps("multi_reward", final_eps_);
  }

  /// Number of reward functions K.
  std::size_t functions() const noexcept { return w_.size(); }
  /// The weights.
  std::span<const double> weights() const noexcept { return w_; }
  /// The baseline policy.
  const Base& baseline() const noexcept { return b_; }
  /// The normalizer policy.
  const Norm& normalizer() const noexcept { return n_; }

  /// Computes the advantages of `layout.samples()` samples from the row-major `[N x K]` matrix.
  /// @return statistics of the final advantages (NaN outcomes = unscorable samples)
  template <real_scalar T>
  advantage_stats compute(std::span<const T> rewards_per_func, const group_layout& g, std::span<T> adv) {
    return combined_advantages(b_, n_, std::span<const double>(w_), mode_, final_eps_, rewards_per_func, g, adv,
                               scratch_);
  }

 private:
  Base b_;
  Norm n_;
  std::vector<double> w_;
  reward_aggregation mode_;
  double final_eps_;
  multi_reward_scratch scratch_;
};

}  // namespace stochgrad
