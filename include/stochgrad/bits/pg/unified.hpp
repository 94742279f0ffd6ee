// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The Unified Policy Gradient Estimator (HPT, arXiv 2509.04419;
/// TsinghuaC3I/Unify-Post-Training `mix_core_alg.py`): four
/// interchangeable parts whose compositions give SFT, REINFORCE, PPO/GRPO, CISPO, GSPO and
/// LUFFY-style off-policy shaping.
///
///     grad_uni = 1_stable * (1 / pi_ref) * A_hat * grad f(pi_theta)
///              = [ mask(ratio, A) ] * ratio * A_hat * f'(pi_theta) * grad log pi_theta,
///     ratio    = pi_theta / pi_ref   (a value: the reference denominator is not differentiated)
///
/// - reference denominator (`pi_ref`): `self_reference` (pi_theta itself, ratio 1: SFT,
///   REINFORCE), `old_policy_reference` (token ratio to the sampling policy: PPO, GRPO, CISPO),
///   `sequence_reference` (GSPO: pi_theta (pi_old(tau)/pi_theta(tau))^(1/|tau|), i.e. the ratio is
///   the geometric mean of the token ratios of the sequence), `unit_reference` (pi_ref = 1: offline
///   demonstrations in SRFT / LUFFY, ratio = pi_theta).
/// - stabilization mask (`1_stable`), applied to the ratio: `no_mask`, `ppo_clip_mask` (0 where
///   PPO's clip is active: A > 0 and ratio > 1 + eps_high, or A < 0 and ratio < 1 - eps_low),
///   `cispo_mask` (the importance weight itself is clipped: clip(ratio, 1 - eps_low, 1 + eps_high)).
/// - advantage estimate `A_hat`: the batch's advantages (any baseline x normalizer; 1 for SFT).
/// - likelihood term `f`: `identity_likelihood` (f(pi) = pi, f' = 1) or `luffy_shaping`
///   (f(pi) = pi / (pi + gamma), f' = gamma / (pi + gamma)^2; LUFFY's "p_div_p_0.1").
///
/// The output is the per-token coefficient of the loss, `dLoss/dlogp_nt = -W_nt * c_nt` with `c`
/// the bracket above times `ratio A f'` and `W` the aggregation weight of `surrogate_options`
/// (the same reduction as the clipped surrogate). For PPO/GRPO this equals
/// `clipped_surrogate::evaluate`'s coefficient with beta = 0 (§3.6); for GSPO the sequence-level
/// one.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

// ----- reference denominators -----------------------------------------------------------------

/// pi_ref = pi_theta: ratio 1 (SFT, REINFORCE: the coefficient multiplies grad log pi directly).
struct self_reference {
  static constexpr const char* name = "self_reference";  ///< part name (estimator_name)
  static constexpr bool per_sequence = false;  ///< ratio formed per token
  /// ratio = 1 for any log-probabilities.
  static double ratio(double /*logp*/, double /*old_logp*/) noexcept { return 1.0; }
};
/// pi_ref = pi_old (the sampling policy): token ratio exp(logp - old_logp) (PPO, GRPO, CISPO).
struct old_policy_reference {
  static constexpr const char* name = "old_policy_reference";  ///< part name (estimator_name)
  static constexpr bool per_sequence = false;  ///< ratio formed per token
  /// ratio = exp(logp - old_logp), from the token's log-probabilities under pi_theta and pi_old.
  static double ratio(double logp, double old_logp) noexcept { return std::exp(logp - old_logp); }
};
/// GSPO: the ratio of every token of a sequence is exp(mean_t m (logp - old_logp)).
struct sequence_reference {
  static constexpr const char* name = "sequence_reference";  ///< part name (estimator_name)
  static constexpr bool per_sequence = true;  ///< one ratio per sequence
};
/// pi_ref = 1 (offline demonstrations): ratio = pi_theta = exp(logp).
struct unit_reference {
  static constexpr const char* name = "unit_reference";  ///< part name (estimator_name)
  static constexpr bool per_sequence = false;  ///< ratio formed per token
  /// ratio = exp(logp) = pi_theta (old_logp ignored).
  static double ratio(double logp, double /*old_logp*/) noexcept { return std::exp(logp); }
};

// ----- stabilization masks ----------------------------------------------------------------------

/// No mask: the ratio passes unchanged.
struct no_mask {
  static constexpr const char* name = "no_mask";  ///< part name (estimator_name)
  /// Returns `ratio` unchanged (the advantage is ignored).
  static double apply(double ratio, double /*adv*/) noexcept { return ratio; }
};
/// PPO clip mask: 0 where the clipped branch of the surrogate is active, else the ratio.
struct ppo_clip_mask {
  static constexpr const char* name = "ppo_clip_mask";  ///< part name (estimator_name)
  double eps_low = 0.2;   ///< in [0, 1)
  double eps_high = 0.2;  ///< >= 0
  /// Returns 0 if (adv > 0 and ratio > 1 + eps_high) or (adv < 0 and ratio < 1 - eps_low), else `ratio`.
  double apply(double ratio, double adv) const noexcept {
    const bool clipped = (adv > 0.0 && ratio > 1.0 + eps_high) || (adv < 0.0 && ratio < 1.0 - eps_low);
    return clipped ? 0.0 : ratio;
  }
};
/// CISPO: the importance weight is clipped (and not differentiated); no token is dropped.
struct cispo_mask {
  static constexpr const char* name = "cispo_mask";  ///< part name (estimator_name)
  double eps_low = 1.0;   ///< lower clip 1 - eps_low (CISPO leaves it open: 1.0 gives 0); in [0, 1]
  double eps_high = 0.2;  ///< upper clip 1 + eps_high; >= 0
  /// Returns clip(ratio, 1 - eps_low, 1 + eps_high) (the advantage is ignored).
  double apply(double ratio, double /*adv*/) const noexcept {
    return std::min(std::max(ratio, 1.0 - eps_low), 1.0 + eps_high);
  }
};

// ----- likelihood terms -------------------------------------------------------------------------

/// f(pi) = pi: f'(pi) = 1.
struct identity_likelihood {
  static constexpr const char* name = "identity_likelihood";  ///< part name (estimator_name)
  /// f'(pi) = 1.
  static double derivative(double /*pi*/) noexcept { return 1.0; }
};
/// LUFFY's policy shaping f(pi) = pi / (pi + gamma): f'(pi) = gamma / (pi + gamma)^2.
struct luffy_shaping {
  static constexpr const char* name = "luffy_shaping";  ///< part name (estimator_name)
  double gamma = 0.1;  ///< > 0
  /// f'(pi) = gamma / (pi + gamma)^2, for the token probability pi = exp(logp).
  double derivative(double pi) const noexcept { return gamma / ((pi + gamma) * (pi + gamma)); }
};

namespace detail {

constexpr std::size_t cstr_length(const char* c) noexcept {
  std::size_t n = 0;
  while (c[n] != '\0') ++n;
  return n;
}

/// "score_function_unified<Mask,Reference,Likelihood>" as a static string (the estimator's name in
/// saved state: a state saved by one composition does not load into another).
template <class Mask, class Reference, class Likelihood>
struct unified_name {
  static constexpr const char* parts[] = {"score_function_unified<", Mask::name, ",", Reference::name, ",",
                                          Likelihood::name, ">"};
  static constexpr std::size_t length = [] {
    std::size_t n = 0;
    for (const char* p : parts) n += cstr_length(p);
    return n;
  }();
  static constexpr std::array<char, length + 1> value = [] {
    std::array<char, length + 1> out{};
    std::size_t k = 0;
    for (const char* p : parts)
      for (std::size_t i = 0; p[i] != '\0'; ++i) out[k++] = p[i];
    return out;
  }();
};

}  // namespace detail

/// The unified estimator: one choice per part, plus the aggregation of `surrogate_options`
/// (`aggregation`, `convention`, `max_completion_length`, `gradient_accumulation_steps`,
/// `global_active_tokens`, `num_processes`; its clip fields are not used, the mask carries its own).
///
/// It is also a surrogate loss policy, so every composition is a full stepper:
/// `stepper<score_function<cispo_estimator>, group_mean, group_std, optim::adam<>, float>
/// s(params, optim::adam<>{}, score_function<cispo_estimator>(cispo_estimator{.mask = {1.0, 0.28}}))`.
template <class Mask, class Reference, class Likelihood = identity_likelihood>
struct unified_estimator {
  Mask mask{};                 ///< stabilization mask
  Reference reference{};       ///< reference denominator
  Likelihood likelihood{};     ///< likelihood term
  surrogate_options reduce{};  ///< aggregation of the per-token terms

  /// Identifies `score_function<unified_estimator<...>>` in saved state (names the three parts).
  static constexpr const char* estimator_name = detail::unified_name<Mask, Reference, Likelihood>::value.data();

  /// Writes `coef[n*L + t] = dLoss/dlogp` (0 on masked tokens). `b.old_logp` is needed by
  /// `old_policy_reference` and `sequence_reference` (empty = on-policy); `b.ref_logp` is unused.
  /// @return the fraction of active tokens whose mask is 0 (PPO: the clip fraction)
  /// @throws as `clipped_surrogate::evaluate`
  template <real_scalar T, class M>
  double coefficients(const token_batch<T, M>& b, std::span<T> coef) const {
    detail::require_same_size("unified_estimator", "coef", coef.size(), "sequences x length",
                              detail::checked_product("unified_estimator", "sequences", b.sequences, "length", b.length));
    return run(b, coef).zeroed_fraction;
  }

  /// The surrogate-loss interface of `score_function`: coefficients as `coefficients` (none when
  /// `coef` is empty), and
  /// - `loss` = sum_nt coef_nt logp_nt with the coefficients held constant: the pseudo-loss whose
  ///   gradient is the estimator's (for SFT the aggregated NLL, for REINFORCE -sum W A logp); its
  ///   value is not comparable across estimators;
  /// - diagnostics: active tokens and sequences, `clip_region_fraction` = fraction of active
  ///   tokens whose ratio the mask changed (PPO: dropped; CISPO: clipped), ratio mean/min/max,
  ///   `approx_kl` = masked mean of old_logp - logp (0 on-policy); the other fields stay 0.
  /// @throws as `clipped_surrogate::evaluate`
  template <real_scalar T, class M>
  surrogate_result evaluate(const token_batch<T, M>& b, std::span<T> coef = {}) const {
    if (!coef.empty()) {
      detail::require_same_size(
          "unified_estimator", "coef", coef.size(), "sequences x length",
          detail::checked_product("unified_estimator", "sequences", b.sequences, "length", b.length));
    }
    const totals t = run(b, coef);
    surrogate_result r;
    r.loss = t.loss;
    surrogate_diagnostics& d = r.diagnostics;
    d.active_tokens = t.active_tokens;
    d.active_sequences = t.active_rows;
    if (t.active_tokens > 0.0) {
      d.clip_region_fraction = t.changed / t.active_tokens;
      d.ratio_mean = t.ratio_sum / t.active_tokens;
      d.ratio_min = t.ratio_min;
      d.ratio_max = t.ratio_max;
      d.approx_kl = t.akl_sum / t.active_tokens;
    }
    return r;
  }

 private:
  struct totals {
    double active_tokens = 0.0, zeroed_fraction = 0.0, changed = 0.0, loss = 0.0, ratio_sum = 0.0, akl_sum = 0.0;
    double ratio_min = std::numeric_limits<double>::infinity(), ratio_max = -std::numeric_limits<double>::infinity();
    std::size_t active_rows = 0;
  };

  template <real_scalar T, class M>
  totals run(const token_batch<T, M>& b, std::span<T> coef) const {
    const char* what = "unified_estimator";
    token_batch<T, M> v = b;
    v.ref_logp = {};
    detail::check_token_batch(what, v, false);
    const std::size_t B = b.sequences, L = b.length;
    const bool per_token_adv = b.advantages.size() != B;
    totals out;
    double M_tokens = 0.0;
    std::size_t active_rows = 0;
    for (std::size_t n = 0; n < B; ++n) {
      const double cnt = detail::mask_sum(b.mask, n * L, L);
      M_tokens += cnt;
      active_rows += cnt != 0.0 ? 1 : 0;
    }
    double zeroed = 0.0;
    for (std::size_t n = 0; n < B; ++n) {
      const std::size_t row = n * L;
      const double cnt = detail::mask_sum(b.mask, row, L);  // the clipped surrogate's count
      const double W = detail::row_weight(reduce, cnt, M_tokens, B, L, active_rows);
      double seq_ratio = 1.0;
      if constexpr (Reference::per_sequence) {
        double s = 0.0;
        for (std::size_t t = 0; t < L; ++t) {
          const double m = detail::mask_at(b.mask, row + t);
          if (m == 0.0) continue;
          const double lp = finite(b.logp, row + t, "logp", n, t);
          const double old = b.old_logp.empty() ? lp : finite(b.old_logp, row + t, "old_logp", n, t);
          s += m * (lp - old);
        }
        seq_ratio = std::exp(s / std::max(cnt, 1.0));
      }
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t i = row + t;
        const double m = detail::mask_at(b.mask, i);
        if (m == 0.0) {
          if (!coef.empty()) coef[i] = T(0);
          continue;
        }
        const double lp = finite(b.logp, i, "logp", n, t);
        const double a = finite(b.advantages, per_token_adv ? i : n, "advantages", n, per_token_adv ? t : 0);
        const double old = b.old_logp.empty() ? lp : finite(b.old_logp, i, "old_logp", n, t);
        double ratio;
        if constexpr (Reference::per_sequence) {
          ratio = seq_ratio;
        } else {
          ratio = reference.ratio(lp, old);
        }
        const double masked = mask.apply(ratio, a);
        if (masked == 0.0) zeroed += m;
        if (masked != ratio) out.changed += m;
        const double c = masked * a * likelihood.derivative(std::exp(lp));
        const double g = -W * m * c;
        if (!coef.empty()) coef[i] = static_cast<T>(g);
        out.loss += g * lp;
        out.ratio_sum += m * ratio;
        out.ratio_min = std::min(out.ratio_min, ratio);
        out.ratio_max = std::max(out.ratio_max, ratio);
        out.akl_sum += m * (old - lp);
      }
    }
    out.active_tokens = M_tokens;
    out.active_rows = active_rows;
    out.zeroed_fraction = M_tokens > 0.0 ? zeroed / M_tokens : 0.0;
    return out;
  }

  template <class T>
  static double finite(std::span<const T> x, std::size_t i, const char* name, std::size_t n, std::size_t t) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) detail::throw_nonfinite("unified_estimator", name, n, t, v);
    return v;
  }
};

/// Supervised fine-tuning: use with advantages all 1 (coefficient -W: the NLL gradient).
using sft_estimator = unified_estimator<no_mask, self_reference>;
/// REINFORCE (Ahmadian et al. 2024): coefficient -W A.
using reinforce_estimator = unified_estimator<no_mask, self_reference>;
/// PPO / GRPO (token ratio, PPO clip mask).
using ppo_estimator = unified_estimator<ppo_clip_mask, old_policy_reference>;
/// CISPO (clipped importance weight, no token dropped).
using cispo_estimator = unified_estimator<cispo_mask, old_policy_reference>;
/// GSPO (sequence ratio, PPO clip mask).
using gspo_estimator = unified_estimator<ppo_clip_mask, sequence_reference>;
/// LUFFY's off-policy part (pi_ref = 1, shaped likelihood).
using luffy_offline_estimator = unified_estimator<no_mask, unit_reference, luffy_shaping>;

}  // namespace stochgrad
