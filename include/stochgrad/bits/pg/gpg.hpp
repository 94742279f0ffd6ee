// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief GPG, Group Policy Gradient (Chu et al. 2025, arXiv 2504.02546), as verl implements it
/// (core_algos.py `compute_gpg_outcome_advantage`, `compute_policy_loss_gpg`): the `gpg_scale`
/// normalizer and the ratio-free `reinforce_loss`.
///
///     advantage:  alpha = B / max(#{n : s_n != 0}, 1)        (B = batch size)
///                 A_n   = alpha (s_n - mean_group(s)) / f_norm  (singleton group: mean 0; no std)
///     loss:       l_nt  = -logp_nt A_nt                          (no ratio, no clip, no KL)
///                 L     = sum_nt W_nt l_nt                        (W from the aggregation; verl: token-mean)
///                 dL/dlogp_nt = -A_nt W_nt
///
/// GPG is `stepper<score_function<reinforce_loss>, group_mean (verl singletons), gpg_scale, ...>`
/// (preset `verl::gpg`). verl computes `alpha` in float32 (an int64 tensor divided by an int64
/// tensor); `gpg_scale::float32_alpha` reproduces that rounding (at most 2^-24 ~ 6e-8 relative, e.g.
/// 3.4e-8 for 7/3, when `B / count` is not a short binary fraction; rl_zo.md §6.4 says "up to 3e-8"); the default keeps alpha in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// GPG's normalizer: `A_n = alpha (r_n - b_n) / f_norm` with `alpha = N / max(#{n : r_n != 0}, 1)`
/// over the whole batch (N samples; NaN outcomes are not counted as non-zero and give NaN, i.e.
/// advantage 0 after `advantages()`). Use after `group_mean::verl()` (singleton mean 0).
struct gpg_scale {
  static constexpr const char* name = "gpg_scale";  ///< identifies the policy in saved state
  double f_norm = 1.0;         ///< divisor of the advantages; finite and > 0 (verl 1)
  bool float32_alpha = false;  ///< round alpha to float32 as verl does

  /// The batch factor `alpha = N / max(#{n : r_n != 0, not NaN}, 1)` (float32-rounded if asked).
  template <real_scalar T>
  double alpha(std::span<const T> r) const noexcept {
    std::size_t nz = 0;
    for (const T& v : r) nz += (v != T(0) && !std::isnan(static_cast<double>(v))) ? 1 : 0;
    const double a = static_cast<double>(r.size()) / static_cast<double>(std::max<std::size_t>(nz, 1));
    return float32_alpha ? static_cast<double>(static_cast<float>(a)) : a;
  }

  /// Writes `adv_n = alpha (r_n - base_n) / f_norm`.
  /// @throws invalid_argument unless f_norm is finite and > 0; size_mismatch on sizes
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    detail::require(f_norm > 0.0 && std::isfinite(f_norm), "gpg_scale", "f_norm", f_norm, "finite and > 0");
    detail::check_outcome_sizes("gpg_scale", r.size(), adv.size(), g);
    detail::require_same_size("gpg_scale", "outcomes", r.size(), "baseline", base.size());
    const double a = alpha(r);
    for (std::size_t n = 0; n < r.size(); ++n) {
      adv[n] = static_cast<T>(a * (static_cast<double>(r[n]) - static_cast<double>(base[n])) / f_norm);
    }
  }

  /// Validation before anything is written (called by `advantages()` and the stepper).
  /// @throws invalid_argument unless f_norm is finite and > 0
  template <class B>
  void check_baseline(const char* what, const B&) const {
    detail::require(f_norm > 0.0 && std::isfinite(f_norm), what, "gpg_scale f_norm", f_norm, "finite and > 0");
  }
};

/// Options of `reinforce_loss` (the aggregation and its conventions, as in `surrogate_options`).
struct reinforce_loss_options {
  loss_aggregation aggregation = loss_aggregation::token_mean;  ///< reduction (verl default token-mean)
  loss_convention convention = loss_convention::verl_upstream;  ///< denominators (upstream verl)
  std::size_t max_completion_length = 0;        ///< L_max of dr_grpo; 0 = the padded length
  std::size_t gradient_accumulation_steps = 1;  ///< divides every mode but dapo; >= 1
};

/// The ratio-free policy-gradient loss `l_nt = -logp_nt A_nt` (verl `compute_policy_loss_gpg`;
/// REINFORCE with the chosen aggregation), per-sequence or per-token advantages. Its coefficient
/// `dL/dlogp_nt = -A_nt W_nt` equals the clipped surrogate's at ratio 1, so on-policy GPG and
/// GRPO-style steps agree; off-policy (stored old log-probabilities) no importance weight is
/// applied, as in verl. `old_logp` and `ref_logp` are not read. Diagnostics: token and sequence
/// counts (clip fractions 0, ratio 1). Stateless; `evaluate` does not allocate.
class reinforce_loss {
 public:
  /// The options type (`score_function` accepts it in place of the loss object).
  using options_type = reinforce_loss_options;
  /// Identifies a `score_function<reinforce_loss>` in saved state.
  static constexpr const char* estimator_name = "score_function_reinforce";

  /// verl's defaults (token-mean, upstream conventions).
  reinforce_loss() = default;
  /// @throws invalid_argument if gradient_accumulation_steps is 0
  explicit reinforce_loss(reinforce_loss_options o) : o_(o) {
    detail::require(o.gradient_accumulation_steps >= 1, "reinforce_loss", "gradient_accumulation_steps",
                    static_cast<double>(o.gradient_accumulation_steps), ">= 1");
  }

  /// The options.
  const reinforce_loss_options& options() const noexcept { return o_; }

  /// Loss `sum_nt W_nt (-logp_nt A_nt)` and coefficients `coef[n*L + t] = -A_nt W_nt` (0 on
  /// masked tokens; empty `coef`: loss only).
  /// @throws size_mismatch on inconsistent spans; invalid_argument for an empty row under the verl
  ///         seq_mean_token_mean convention; nonfinite_error for a non-finite logp or advantage at
  ///         an active token. The coefficients are written only after every check passed.
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, std::span<T> coef = {}) const {
    const char* what = "reinforce_loss";
    token_batch<T, Mask> v = b;
    v.old_logp = {};
    v.ref_logp = {};
    detail::check_token_batch(what, v, false);
    const std::size_t B = b.sequences, L = b.length;
    if (!coef.empty()) detail::require_same_size(what, "coef", coef.size(), "sequences x length", B * L);
    const bool per_token = b.advantages.size() != B;
    surrogate_options so;
    so.aggregation = o_.aggregation;
    so.convention = o_.convention;
    so.max_completion_length = o_.max_completion_length;
    so.gradient_accumulation_steps = o_.gradient_accumulation_steps;
    double M = 0.0;
    std::size_t rows = 0;
    for (std::size_t n = 0; n < B; ++n) {
      const double cnt = detail::mask_sum(b.mask, n * L, L);
      M += cnt;
      rows += cnt != 0.0 ? 1 : 0;
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t i = n * L + t;
        if (detail::mask_at(b.mask, i) == 0.0) continue;
        check_finite(b.logp[i], "logp", n, t);
        check_finite(b.advantages[per_token ? i : n], "advantages", n, per_token ? t : 0);
      }
    }
    for (std::size_t n = 0; n < B; ++n) detail::row_weight(so, detail::mask_sum(b.mask, n * L, L), M, B, L, rows);
    surrogate_result res;
    res.diagnostics.active_tokens = M;
    res.diagnostics.active_sequences = rows;
    if (M > 0.0) res.diagnostics.ratio_mean = res.diagnostics.ratio_min = res.diagnostics.ratio_max = 1.0;
    for (std::size_t n = 0; n < B; ++n) {
      const double W = detail::row_weight(so, detail::mask_sum(b.mask, n * L, L), M, B, L, rows);
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t i = n * L + t;
        const double m = detail::mask_at(b.mask, i);
        if (m == 0.0) {
          if (!coef.empty()) coef[i] = T(0);
          continue;
        }
        const double a = static_cast<double>(b.advantages[per_token ? i : n]);
        res.loss += W * m * (-static_cast<double>(b.logp[i]) * a);
        if (!coef.empty()) coef[i] = static_cast<T>(-a * W * m);
      }
    }
    return res;
  }

 private:
  template <class T>
  static void check_finite(T x, const char* name, std::size_t n, std::size_t t) {
    const double v = static_cast<double>(x);
    if (!std::isfinite(v)) detail::throw_nonfinite("reinforce_loss", name, n, t, v);
  }

  reinforce_loss_options o_{};
};

}  // namespace stochgrad
