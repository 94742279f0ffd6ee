// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Baseline and normalizer policies over spans of outcomes, and `advantages()`.
///
/// Every estimator has samples with scalar outcomes `r`, grouped by a
/// `group_layout`; the sample weights are `w = normalizer(baseline(r))`. A baseline policy writes a
/// per-sample baseline value `b_n`; a normalizer policy turns `(r, b)` into advantages `A_n`. The
/// same policies serve policy gradients (GRPO group mean / std, RLOO leave-one-out, BNPO) and
/// zeroth-order populations (evolution strategies' mean / std shaping).
///
/// NaN-awareness (as TRL's `nanmean`/`nanstd` in `grpo_trainer.py`): a NaN outcome ("unscorable": the reward function
/// returned None) is excluded from every mean and standard deviation. `apply` leaves NaN where an
/// advantage is undefined (NaN outcome, or a std over fewer than two valid outcomes in a group of
/// two or more); `advantages()` then maps NaN to 0, as TRL's `nan_to_num` does.
///
/// Constant groups (all valid outcomes equal) get advantage exactly 0 from every group-centred
/// baseline; `advantages()` counts them (`advantage_stats::constant_groups`). Every NaN-aware mean
/// here is `sum / count` except for a set whose valid values are all equal, whose mean is that
/// value exactly (`sum / count` of sixteen copies of 0.1 is not 0.1, which gave advantages of
/// ~1e-13 where TRL gives 0); its sum of squared deviations, hence its std, is then exactly 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "group_layout.hpp"

namespace stochgrad {

/// A baseline policy: `b.compute(r, layout, out)` writes a baseline value for every sample
/// (`out[n]` is subtracted from `r[n]` by the normalizer). Must not allocate once its scratch is
/// sized. Implementations are templates over float and double.
template <class B>
concept baseline_policy = requires(const B& b, std::span<const double> r, const group_layout& g, std::span<double> out) {
  b.compute(r, g, out);
};

/// A normalizer policy: `n.apply(r, base, layout, adv)` writes the advantage of every sample.
/// `base` and `adv` may be the same buffer: an implementation reads `base[n]` only in the pass
/// that writes `adv[n]`, element by element.
template <class N>
concept normalizer_policy = requires(const N& n, std::span<const double> r, std::span<const double> base,
                                     const group_layout& g, std::span<double> adv) {
  n.apply(r, base, g, adv);
};

/// What `advantages()` observed about a batch (diagnostics; nothing here changes the result).
struct advantage_stats {
  std::size_t samples = 0;          ///< number of samples
  std::size_t groups = 0;           ///< number of groups
  std::size_t nan_outcomes = 0;     ///< outcomes that were NaN (excluded; advantage 0)
  std::size_t zeroed = 0;           ///< advantages that came out NaN and were set to 0 (includes nan_outcomes)
  std::size_t constant_groups = 0;  ///< groups whose valid outcomes are all equal (or that have < 2 valid outcomes)
  std::size_t zero_groups = 0;      ///< groups whose advantages are all exactly 0 (no learning signal)
  /// Fraction of groups with all-zero advantages (0 for an empty batch).
  double zero_group_fraction() const noexcept {
    return groups == 0 ? 0.0 : static_cast<double>(zero_groups) / static_cast<double>(groups);
  }
  /// Fraction of constant groups.
  double constant_group_fraction() const noexcept {
    return groups == 0 ? 0.0 : static_cast<double>(constant_groups) / static_cast<double>(groups);
  }
};

namespace detail {

inline constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

/// Sum and count of the non-NaN values added, and whether they are all equal. `mean()` is
/// `sum / count`, or the common value exactly when all are equal (`x + 0.0`, so that an all-zero
/// set gives +0 as the sum does); NaN for no valid value. The sum is accumulated in the order the
/// values are added, so a set with two distinct values gets the same bits as a plain `sum / count`.
struct nan_accumulator {
  double sum = 0.0;
  std::size_t count = 0;
  double first = 0.0;
  bool equal = true;
  void add(double v) noexcept {
    if (std::isnan(v)) return;
    if (count == 0) {
      first = v;
    } else {
      equal = equal && v == first;
    }
    sum += v;
    ++count;
  }
  double mean() const noexcept {
    if (count == 0) return std::numeric_limits<double>::quiet_NaN();
    return equal ? first + 0.0 : sum / static_cast<double>(count);
  }
};

/// Count, sum, mean and sum of squared deviations of the non-NaN values (two passes; the mean is
/// `nan_accumulator::mean`, exact for a constant set, whose m2 is then exactly 0).
struct nan_moments {
  std::size_t count = 0;
  double sum = 0.0;
  double mean = nan_v;
  double m2 = 0.0;
  /// Unbiased variance (NaN when count < 2).
  double var_u() const noexcept { return count < 2 ? nan_v : m2 / static_cast<double>(count - 1); }
  double std_u() const noexcept { return std::sqrt(var_u()); }
};

template <class T>
nan_moments group_moments(std::span<const T> r, const group_layout& g, std::size_t k) {
  nan_moments m;
  nan_accumulator acc;
  g.for_each_member(k, [&](std::size_t n) { acc.add(static_cast<double>(r[n])); });
  m.sum = acc.sum;
  m.count = acc.count;
  if (m.count == 0) return m;
  m.mean = acc.mean();
  g.for_each_member(k, [&](std::size_t n) {
    const double v = static_cast<double>(r[n]);
    // An explicit multiply-add, so that the contiguous SIMD path (grpo_contiguous) gives the same bits.
    if (!std::isnan(v)) m.m2 = simd::madd(v - m.mean, v - m.mean, m.m2);
  });
  return m;
}

/// NaN-aware mean of group k (NaN when the group has no valid outcome; the value itself when the
/// valid outcomes are all equal); one pass.
template <class T>
double group_nanmean(std::span<const T> r, const group_layout& g, std::size_t k) {
  nan_accumulator acc;
  g.for_each_member(k, [&](std::size_t n) { acc.add(static_cast<double>(r[n])); });
  return acc.mean();
}

template <class T>
nan_moments span_moments(std::span<const T> x) {
  nan_moments m;
  nan_accumulator acc;
  for (const T& xv : x) acc.add(static_cast<double>(xv));
  m.sum = acc.sum;
  m.count = acc.count;
  if (m.count == 0) return m;
  m.mean = acc.mean();
  for (const T& xv : x) {
    const double v = static_cast<double>(xv);
    if (!std::isnan(v)) m.m2 += (v - m.mean) * (v - m.mean);
  }
  return m;
}

// Moments of d_n = r_n - base_n over the whole batch (NaN-aware).
template <class T>
nan_moments difference_moments(std::span<const T> r, std::span<const T> base) {
  nan_moments m;
  nan_accumulator acc;
  for (std::size_t n = 0; n < r.size(); ++n) acc.add(static_cast<double>(r[n]) - static_cast<double>(base[n]));
  m.sum = acc.sum;
  m.count = acc.count;
  if (m.count == 0) return m;
  m.mean = acc.mean();
  for (std::size_t n = 0; n < r.size(); ++n) {
    const double v = static_cast<double>(r[n]) - static_cast<double>(base[n]);
    if (!std::isnan(v)) m.m2 += (v - m.mean) * (v - m.mean);
  }
  return m;
}

/// True when the valid (non-NaN) outcomes of group k are all equal (also for < 2 valid outcomes).
template <class T>
bool is_constant_group(std::span<const T> r, const group_layout& g, std::size_t k) {
  bool constant = true, seen = false;
  double first = 0.0;
  g.for_each_member(k, [&](std::size_t n) {
    const double v = static_cast<double>(r[n]);
    if (std::isnan(v)) return;
    if (!seen) {
      first = v;
      seen = true;
    } else if (v != first) {
      constant = false;
    }
  });
  return constant;
}

inline void check_outcome_sizes(const char* what, std::size_t r, std::size_t out, const group_layout& g) {
  require(r >= 1, what, "outcomes.size() (empty batch)", 0.0, ">= 1");
  require_same_size(what, "outcomes", r, "layout samples", g.samples());
  require_same_size(what, "outcomes", r, "output", out);
}

inline void require_nonnegative_eps(const char* what, double eps) {
  require(eps >= 0.0 && std::isfinite(eps), what, "eps", eps, "finite and >= 0");
}

/// Refuses an infinite outcome (NaN marks an unscorable one and passes): `nonfinite_error` naming
/// `reward[n]`, or `reward[n][k]` for a row-major `[N x K]` matrix with K > 1.
[[noreturn]] [[gnu::noinline, gnu::cold]] inline void throw_infinite_outcome(const char* what, std::size_t i,
                                                                             std::size_t K, double v) {
  std::string msg(what);
  msg += ": reward[";
  msg += std::to_string(K > 1 ? i / K : i);
  if (K > 1) {
    msg += "][";
    msg += std::to_string(i % K);
  }
  msg += "] = ";
  msg += num_to_string(v);
  msg += " is infinite (NaN marks an unscorable completion; infinities are rejected)";
  throw nonfinite_error(msg);
}

template <class T>
void check_no_infinite_outcome(const char* what, std::span<const T> r, std::size_t K = 1) {
  for (std::size_t i = 0; i < r.size(); ++i) {
    const double v = static_cast<double>(r[i]);
    if (std::isinf(v)) throw_infinite_outcome(what, i, K, v);
  }
}

/// The validation shared by `advantages()`, `combined_advantages()` and the policy-gradient step
/// (one path, so that the free functions refuse exactly what `step()` refuses): infinite outcomes
/// (`nonfinite_error`), and a baseline / normalizer pair the normalizer declares incompatible
/// (a normalizer with `check_baseline(what, b)`, e.g. `beta_normalizer` with a `bnpo_mean` of
/// other options: `invalid_argument`). Sizes are checked by the callers, which know their layout.
template <class B, class N, class T>
void check_advantage_inputs(const char* what, const B& b, const N& nrm, std::span<const T> r, std::size_t K = 1) {
  if constexpr (requires { nrm.check_baseline(what, b); }) nrm.check_baseline(what, b);
  // The std normalizers' eps, before the baseline is written into the caller's buffer.
  if constexpr (requires { N::name; nrm.eps; }) require_nonnegative_eps(N::name, nrm.eps);
  check_no_infinite_outcome(what, r, K);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------------

/// No baseline: `b_n = 0` (REINFORCE without a baseline; zeroth-order one-point estimates).
struct no_baseline {
  static constexpr const char* name = "no_baseline";  ///< identifies the policy in saved state
  /// Writes zeros. @throws size_mismatch / invalid_argument on bad sizes.
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    detail::check_outcome_sizes("no_baseline", r.size(), out.size(), g);
    for (T& o : out) o = T(0);
  }
};

/// Group mean: `b_n = nanmean of the outcomes of n's group` (GRPO, Dr. GRPO, BNPO's `p_i` in
/// reward units).
///
/// Singleton groups (exactly one sample): TRL semantics by default (`b = r`, so the advantage is
/// 0); with `verl_singletons` the baseline is 0 (verl's `compute_grpo_outcome_advantage` uses mean
/// 0 and std 1 for a group of one, checked by running it). A group with no valid outcome gets NaN.
struct group_mean {
  static constexpr const char* name = "group_mean";  ///< identifies the policy in saved state
  bool verl_singletons = false;  ///< verl: mean 0 for a group of one sample

  /// TRL semantics (the default).
  static group_mean trl() noexcept { return {}; }
  /// verl / BNPO-repo / Reinforce-Ada semantics (singleton mean 0).
  static group_mean verl() noexcept { return group_mean{true}; }

  /// Writes each sample's group NaN-mean (0 for a singleton with `verl_singletons`; NaN for a group
  /// with no valid outcome). @throws size_mismatch / invalid_argument on bad sizes.
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    detail::check_outcome_sizes("group_mean", r.size(), out.size(), g);
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double b;
      if (verl_singletons && g.size_of(k) == 1) {
        b = 0.0;
      } else {
        b = detail::group_nanmean(r, g, k);
      }
      g.for_each_member(k, [&](std::size_t n) { out[n] = static_cast<T>(b); });
    }
  }
};

/// Leave-one-out (RLOO, TRL `rloo_trainer.py`): `b_n = (sum_{valid j in group} r_j - r_n) / (G_i - 1)`
/// with `G_i` the number of valid outcomes of the group. A group with a single valid outcome gives
/// 0/0 = NaN (advantage 0); NaN outcomes get NaN. Without NaN, `r_n - b_n = G/(G-1) (r_n - mean)`.
/// A group of two or more valid outcomes that are all equal gets `b_n = r_n` exactly (the rounded
/// `(sum - r_n) / (G_i - 1)` need not be), so its advantage is exactly 0.
struct leave_one_out {
  static constexpr const char* name = "leave_one_out";  ///< identifies the policy in saved state
  /// Writes `b_n = (sum of the group's valid r_j - r_n) / (G_i - 1)` (NaN for a NaN outcome or a
  /// single valid outcome). @throws size_mismatch / invalid_argument on bad sizes.
  template <real_scalar T>
  void compute(std::span<const T> r, const group_layout& g, std::span<T> out) const {
    detail::check_outcome_sizes("leave_one_out", r.size(), out.size(), g);
    for (std::size_t k = 0; k < g.groups(); ++k) {
      detail::nan_accumulator acc;
      g.for_each_member(k, [&](std::size_t n) { acc.add(static_cast<double>(r[n])); });
      const double s = acc.sum;
      const bool constant = acc.count >= 2 && acc.equal;
      const double denom = static_cast<double>(acc.count) - 1.0;
      g.for_each_member(k, [&](std::size_t n) {
        const double v = static_cast<double>(r[n]);
        out[n] = static_cast<T>(std::isnan(v) ? detail::nan_v : constant ? v + 0.0 : (s - v) / denom);
      });
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Normalizers
// ---------------------------------------------------------------------------------------------

/// No normalizer: `A_n = r_n - b_n` (Dr. GRPO's advantage with the group mean; RLOO).
struct no_normalizer {
  static constexpr const char* name = "no_normalizer";  ///< identifies the policy in saved state
  /// Writes `adv_n = r_n - base_n` (NaN propagates). @throws size_mismatch / invalid_argument on bad sizes.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::check_outcome_sizes("no_normalizer", r.size(), adv.size(), g);
    detail::require_same_size("no_normalizer", "outcomes", r.size(), "baseline", base.size());
    for (std::size_t n = 0; n < r.size(); ++n) {
      adv[n] = static_cast<T>(static_cast<double>(r[n]) - static_cast<double>(base[n]));
    }
  }
};

/// Group standard deviation: `A_n = (r_n - b_n) / (s_i + eps)` with `s_i` the unbiased (Bessel)
/// NaN-aware standard deviation of the outcomes of n's group; eps is ADDED to the std
/// (TRL `_generate_and_score_completions`). TRL: eps = 1e-4 (the default); verl: 1e-6.
///
/// Groups of exactly one sample: TRL uses s = 0 (so with the group mean the advantage is 0); with
/// `verl_singletons`, s = 1 (verl: `A = r / (1 + eps)` together with `group_mean::verl()`). A group
/// of two or more samples with fewer than two valid outcomes has an undefined std: NaN (advantage
/// 0 after `advantages()`), as TRL's `nanstd` gives.
struct group_std {
  static constexpr const char* name = "group_std";  ///< identifies the policy in saved state
  double eps = 1e-4;             ///< added to the std; >= 0
  bool verl_singletons = false;  ///< verl: std 1 for a group of one sample

  /// TRL semantics: eps 1e-4, singleton std 0.
  static group_std trl() noexcept { return {}; }
  /// verl semantics: eps 1e-6, singleton std 1.
  static group_std verl() noexcept { return group_std{1e-6, true}; }

  /// Writes `adv_n = (r_n - base_n) / (s_i + eps)` per group i (s_i as above).
  /// @throws size_mismatch / invalid_argument on bad sizes or eps < 0 or not finite.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::require_nonnegative_eps("group_std", eps);
    detail::check_outcome_sizes("group_std", r.size(), adv.size(), g);
    detail::require_same_size("group_std", "outcomes", r.size(), "baseline", base.size());
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double s;
      if (g.size_of(k) == 1) {
        s = verl_singletons ? 1.0 : 0.0;
      } else {
        s = detail::group_moments(r, g, k).std_u();
      }
      const double d = s + eps;
      g.for_each_member(k, [&](std::size_t n) {
        adv[n] = static_cast<T>((static_cast<double>(r[n]) - static_cast<double>(base[n])) / d);
      });
    }
  }
};

/// Batch standard deviation: `A_n = (r_n - b_n) / (s + eps)` with `s` the unbiased NaN-aware std
/// of all outcomes of the batch (TRL `scale_rewards="batch"`; the baseline stays the group mean).
/// A batch of one sample uses s = 0; fewer than two valid outcomes otherwise gives NaN.
struct batch_std {
  static constexpr const char* name = "batch_std";  ///< identifies the policy in saved state
  double eps = 1e-4;  ///< added to the std; >= 0

  /// Writes `adv_n = (r_n - base_n) / (s + eps)` with s the batch std.
  /// @throws size_mismatch / invalid_argument on bad sizes or eps < 0 or not finite.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::require_nonnegative_eps("batch_std", eps);
    detail::check_outcome_sizes("batch_std", r.size(), adv.size(), g);
    detail::require_same_size("batch_std", "outcomes", r.size(), "baseline", base.size());
    const double s = r.size() == 1 ? 0.0 : detail::span_moments(r).std_u();
    const double d = s + eps;
    for (std::size_t n = 0; n < r.size(); ++n) {
      adv[n] = static_cast<T>((static_cast<double>(r[n]) - static_cast<double>(base[n])) / d);
    }
  }
};

/// Batch whitening of the baseline-subtracted outcomes (TRL RLOO `normalize_advantages`, and the
/// final step of GDPO): `d_n = r_n - b_n`, `A_n = (d_n - nanmean(d)) / (nanstd_u(d) + eps)` over
/// the whole batch.
struct batch_whiten {
  static constexpr const char* name = "batch_whiten";  ///< identifies the policy in saved state
  double eps = 1e-4;  ///< added to the std; >= 0

  /// Writes `adv_n = (d_n - nanmean(d)) / (nanstd_u(d) + eps)`, `d = r - base`.
  /// @throws size_mismatch / invalid_argument on bad sizes or eps < 0 or not finite.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::require_nonnegative_eps("batch_whiten", eps);
    detail::check_outcome_sizes("batch_whiten", r.size(), adv.size(), g);
    detail::require_same_size("batch_whiten", "outcomes", r.size(), "baseline", base.size());
    const detail::nan_moments m = detail::difference_moments(r, base);
    const double mu = m.mean;
    const double d = m.std_u() + eps;
    for (std::size_t n = 0; n < r.size(); ++n) {
      const double v = static_cast<double>(r[n]) - static_cast<double>(base[n]);
      adv[n] = static_cast<T>((v - mu) / d);
    }
  }
};

namespace detail {

/// GRPO advantages (group mean baseline, group std normalizer, NaN-aware, NaN -> 0) and the
/// statistics of `advantages()` on the contiguous layout with G >= 2, with W groups per SIMD
/// register (lane j = group g0 + j; strided element k of each group gathered through a small
/// buffer). Per lane it performs exactly the scalar operations of group_mean, group_std and
/// `advantages()` in the same order, so the result is bitwise identical to the generic path
/// (tested against the same groups given by id).
template <real_scalar T>
advantage_stats grpo_contiguous(std::span<const T> r, std::size_t P, std::size_t G, double eps, std::span<T> adv) {
  using V = xsimd::batch<double>;
  constexpr std::size_t W = V::size;
  advantage_stats st;
  st.samples = r.size();
  st.groups = P;
  const V zero(0.0), one(1.0), inf(std::numeric_limits<double>::infinity()), veps(eps);
  alignas(64) double buf[W], out[W];
  std::size_t nan_count = 0, zeroed = 0, constant = 0, zero_groups = 0;
  std::size_t g0 = 0;
  using I = xsimd::batch<std::int64_t>;
  alignas(64) std::int64_t stride[W];
  for (std::size_t j = 0; j < W; ++j) stride[j] = static_cast<std::int64_t>(j * G);
  const I idx = I::load_aligned(stride);
  auto gather = [&](std::size_t base_group, std::size_t lanes, std::size_t k) {
    if constexpr (std::is_same_v<T, double> && sizeof(std::int64_t) * W == sizeof(V)) {
      if (lanes == W) return V::gather(r.data() + base_group * G + k, idx);
    }
    for (std::size_t j = 0; j < W; ++j) buf[j] = j < lanes ? static_cast<double>(r[(base_group + j) * G + k]) : 0.0;
    return V::load_aligned(buf);
  };
  for (; g0 < P; g0 += W) {
    const std::size_t lanes = std::min(W, P - g0);
    V sum = zero, cnt = zero, mn = inf, mx = -inf, nans = zero;
    for (std::size_t k = 0; k < G; ++k) {
      const V v = gather(g0, lanes, k);
      const auto ok = !xsimd::isnan(v);
      sum = sum + xsimd::select(ok, v, zero);
      cnt = cnt + xsimd::select(ok, one, zero);
      nans = nans + xsimd::select(ok, zero, one);
      mn = xsimd::select(ok, xsimd::min(mn, v), mn);
      mx = xsimd::select(ok, xsimd::max(mx, v), mx);
    }
    // group_mean: sum / count (NaN when no valid outcome), or the common value + 0.0 when every
    // valid outcome is equal (max == min, as nan_accumulator::mean); stored as T, read back as double.
    const V mean = xsimd::select(mx == mn, mn + zero, sum / cnt);
    V base;
    if constexpr (std::is_same_v<T, double>) {
      base = mean;
    } else {
      mean.store_aligned(out);
      for (std::size_t j = 0; j < W; ++j) out[j] = static_cast<double>(static_cast<T>(out[j]));
      base = V::load_aligned(out);
    }
    // group_std: unbiased std of the valid outcomes around the (double) mean; NaN for count < 2.
    V m2 = zero;
    for (std::size_t k = 0; k < G; ++k) {
      const V v = gather(g0, lanes, k);
      const V d = v - mean;
      m2 = xsimd::select(!xsimd::isnan(v), simd::madd(d, d, m2), m2);
    }
    const V var = xsimd::select(cnt >= V(2.0), m2 / (cnt - one), V(nan_v));
    const V den = xsimd::sqrt(var) + veps;
    V all_zero = one, zeroed_v = zero;
    for (std::size_t k = 0; k < G; ++k) {
      const V v = gather(g0, lanes, k);
      V a = (v - base) / den;
      if constexpr (!std::is_same_v<T, double>) {
        a.store_aligned(out);
        for (std::size_t j = 0; j < W; ++j) out[j] = static_cast<double>(static_cast<T>(out[j]));
        a = V::load_aligned(out);
      }
      const auto bad = xsimd::isnan(a);
      zeroed_v = zeroed_v + xsimd::select(bad, one, zero);
      a = xsimd::select(bad, zero, a);
      all_zero = xsimd::select(a == zero, all_zero, zero);
      a.store_aligned(out);
      for (std::size_t j = 0; j < lanes; ++j) adv[(g0 + j) * G + k] = static_cast<T>(out[j]);
    }
    alignas(64) double c_nan[W], c_zeroed[W], c_zero[W], c_mn[W], c_mx[W];
    nans.store_aligned(c_nan);
    zeroed_v.store_aligned(c_zeroed);
    all_zero.store_aligned(c_zero);
    mn.store_aligned(c_mn);
    mx.store_aligned(c_mx);
    for (std::size_t j = 0; j < lanes; ++j) {
      nan_count += static_cast<std::size_t>(c_nan[j]);
      zeroed += static_cast<std::size_t>(c_zeroed[j]);
      zero_groups += c_zero[j] != 0.0 ? 1 : 0;
      constant += c_mx[j] > c_mn[j] ? 0 : 1;
    }
  }
  st.nan_outcomes = nan_count;
  st.zeroed = zeroed;
  st.zero_groups = zero_groups;
  st.constant_groups = constant;
  return st;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// advantages()
// ---------------------------------------------------------------------------------------------

/// Advantages `A = normalizer(baseline(r))`, with NaN results mapped to 0 (unscorable samples and
/// undefined group statistics contribute no gradient), unless the normalizer says its NaN results
/// are deliberate (`nrm.keeps_nan()`: `beta_normalizer` in `reference_compatible` mode when the
/// reference itself returns NaN advantages, bits/outcome/beta.hpp); they are then returned as NaN.
/// @param b    baseline policy
/// @param nrm  normalizer policy
/// @param r    outcomes (rewards, losses), one per sample; NaN = no outcome
/// @param g    grouping of the samples (`g.samples() == r.size()`)
/// @param adv  output, same length as `r`; used as the baseline buffer too (no allocation)
/// @return counts of NaN outcomes, constant groups and all-zero groups
/// @throws size_mismatch if the lengths differ; invalid_argument for an empty batch, invalid
///         policy parameters or a baseline and normalizer that disagree (BNPO options); nonfinite_error
///         for an infinite outcome (`detail::check_advantage_inputs`, the policy-gradient step's
///         own validation); whatever the policies throw (e.g. BNPO rewards out of range). Nothing
///         is written to `adv` before these checks pass; if a policy throws later (BNPO's
///         reference-compatible fit of saturated prompts), `adv` may hold the baseline values.
template <baseline_policy B, normalizer_policy N, real_scalar T>
advantage_stats advantages(const B& b, const N& nrm, std::span<const T> r, const group_layout& g, std::span<T> adv) {
  detail::check_outcome_sizes("advantages", r.size(), adv.size(), g);
  detail::require_data("advantages", "outcomes", r.data(), r.size());
  detail::require_data("advantages", "advantages", adv.data(), adv.size());
  detail::check_advantage_inputs("advantages", b, nrm, r);
  if constexpr (std::is_same_v<B, group_mean> && std::is_same_v<N, group_std>) {
    // GRPO on the contiguous [P x G] layout: one SIMD kernel (lanes = groups), same bits.
    if (g.is_contiguous() && g.group_size() >= 2) {
      detail::require_nonnegative_eps("group_std", nrm.eps);
      return detail::grpo_contiguous(r, g.groups(), g.group_size(), nrm.eps, adv);
    }
  }
  b.compute(r, g, adv);
  nrm.apply(r, std::span<const T>(adv.data(), adv.size()), g, adv);
  // A normalizer may declare its NaN results deliberate (BNPO's reference_compatible mode
  // reproducing the reference's NaN advantages): they are then left NaN, not counted as zeroed.
  bool keep_nan = false;
  if constexpr (requires { nrm.keeps_nan(); }) keep_nan = nrm.keeps_nan();
  advantage_stats st;
  st.samples = r.size();
  st.groups = g.groups();
  // One branch-light pass per group: NaN outcomes, NaN advantages -> 0, all-zero groups, and
  // constant groups (max == min over the valid outcomes, or fewer than two of them).
  for (std::size_t k = 0; k < g.groups(); ++k) {
    bool zero = true;
    double mn = std::numeric_limits<double>::infinity(), mx = -mn;
    g.for_each_member(k, [&](std::size_t n) {
      const double v = static_cast<double>(r[n]);
      const bool nan_r = std::isnan(v);
      st.nan_outcomes += nan_r ? 1 : 0;
      mn = nan_r ? mn : std::min(mn, v);
      mx = nan_r ? mx : std::max(mx, v);
      if (!keep_nan && std::isnan(static_cast<double>(adv[n]))) {
        adv[n] = T(0);
        ++st.zeroed;
      }
      zero = zero && adv[n] == T(0);
    });
    st.zero_groups += zero ? 1 : 0;
    st.constant_groups += mx > mn ? 0 : 1;
  }
  return st;
}

/// Advantages `A = normalizer(baseline(r))` with NaN results mapped to 0: the same as the
/// `std::span<const T>` overload (same parameters, result and exceptions).
/// Overload for non-const outcome spans and containers convertible to spans.
template <baseline_policy B, normalizer_policy N, real_scalar T>
advantage_stats advantages(const B& b, const N& nrm, std::span<T> r, const group_layout& g, std::span<T> adv) {
  return advantages(b, nrm, std::span<const T>(r.data(), r.size()), g, adv);
}

}  // namespace stochgrad
