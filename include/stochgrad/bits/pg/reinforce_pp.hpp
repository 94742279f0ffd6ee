// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief REINFORCE++ and REINFORCE++-baseline (Hu 2025, arXiv 2501.03262) exactly as verl
/// implements them (verl/trainer/ppo/core_algos.py `compute_reinforce_plus_plus_outcome_advantage`,
/// `compute_reinforce_plus_plus_baseline_outcome_advantage`; verl/utils/torch_functional.py
/// `masked_whiten`, `masked_var`; ray_trainer.py `apply_kl_penalty`), and the `token_whiten`
/// normalizer that gives the baseline variant's advantages per sequence.
///
/// All arrays are row-major `[B x L]` with mask m (0/1 in practice; empty = all ones):
///
///     token rewards (KL in the reward):  r_nt = score_nt - beta * (kl_nt * m_nt)
///         beta fixed (verl kl_coef 0.001) or from `adaptive_kl_controller`
///         kl by estimator on x = old - ref: k1 = x ; abs = |x| ; k2 = x^2 / 2 ;
///         k3 = clamp(exp(c) - c - 1, -10, 10) with c = clamp(-x, -20, 20)        (verl kl_penalty)
///     returns (discount gamma, reset after each sequence's end):
///         run = 0 ; for t = L-1 .. 0:  run = r_nt + gamma run ;  G_nt = run ;  run = run m_nt
///     global whitening over all valid tokens of the batch (M = sum m):
///         mu  = sum(G m) / (M + 1e-8)
///         var = sum((G - mu)^2 m) / (M + 1e-8) * M / (M - 1)                       (Bessel)
///         A_nt = (G_nt - mu) / sqrt(var + 1e-8) * m_nt
///     baseline variant:  s_n = sum_t r_nt (all L positions) ;  d_n = s_n - mean_group(s)
///         (0 for a singleton group) ;  G_nt = d_n m_nt, then the same whitening.
///
/// Mask handling, as verl: the running return is multiplied by the mask AFTER it is stored, so a
/// masked position stops rewards that lie after it from flowing back to earlier tokens (a hole in
/// the mask cuts the sequence in two for the returns); rewards on masked positions still enter
/// the return stored at that position (excluded from the whitening by the mask). verl raises for
/// M = 0 and M = 1 (`masked_var`); here `invalid_argument`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"
#include "kl.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// Statistics of one global token whitening (verl `masked_whiten`).
struct token_whitening {
  double tokens = 0.0;    ///< M = sum of the mask
  double mean = 0.0;      ///< mu = sum(G m) / (M + 1e-8)
  double variance = 0.0;  ///< var = sum((G - mu)^2 m) / (M + 1e-8) * M / (M - 1)
};

namespace detail {

template <class M>
double mask_value(std::span<const M> mask, std::size_t i) noexcept {
  return mask.empty() ? 1.0 : static_cast<double>(mask[i]);
}

template <real_scalar T, class M>
void check_token_arrays(const char* what, std::span<const T> x, const char* x_name, std::span<const M> mask,
                        std::size_t length, std::size_t out_size) {
  static_assert(std::is_arithmetic_v<M>, "stochgrad: the mask type must be arithmetic");
  require(length >= 1, what, "length", static_cast<double>(length), ">= 1");
  require(x.size() >= 1, what, "token array size (empty batch)", 0.0, ">= 1");
  if (x.size() % length != 0) {
    throw size_mismatch(std::string(what) + ": " + x_name + " has " + std::to_string(x.size()) +
                        " elements, not a multiple of length = " + std::to_string(length));
  }
  if (!mask.empty()) require_same_size(what, "mask", mask.size(), x_name, x.size());
  require_same_size(what, "out", out_size, x_name, x.size());
  check_mask_finite(what, mask, length);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) throw_nonfinite(what, x_name, i / length, i % length, v);
  }
}

// Mask sum M of verl's masked_var, which raises for M = 0 and M = 1.
template <class M>
double whitening_tokens(const char* what, std::span<const M> mask, std::size_t size) {
  double msum = 0.0;
  for (std::size_t i = 0; i < size; ++i) msum += mask_value(mask, i);
  if (msum == 0.0) throw invalid_argument(std::string(what) + ": the mask is all zero (verl: at least one element has to be 1)");
  if (msum == 1.0) {
    throw invalid_argument(std::string(what) +
                           ": the mask sums to 1, so the Bessel-corrected token variance divides by zero (verl raises too)");
  }
  return msum;
}

// verl masked_whiten of G (read from `g`, written to `out`, which may be `g`), times the mask.
template <real_scalar T, class M>
token_whitening whiten_tokens(std::span<const T> g, std::span<const M> mask, double msum, std::span<T> out) {
  token_whitening w;
  w.tokens = msum;
  double s = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) s += static_cast<double>(g[i]) * mask_value(mask, i);
  w.mean = s / (msum + 1e-8);
  double c2 = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double c = static_cast<double>(g[i]) - w.mean;
    c2 += c * c * mask_value(mask, i);
  }
  w.variance = c2 / (msum + 1e-8) * (msum / (msum - 1.0));
  const double inv = 1.0 / std::sqrt(w.variance + 1e-8);
  for (std::size_t i = 0; i < g.size(); ++i) {
    out[i] = static_cast<T>((static_cast<double>(g[i]) - w.mean) * inv * mask_value(mask, i));
  }
  return w;
}

// verl kl_penalty(old, ref) per token.
inline double verl_kl_value(kl_estimator k, double old, double ref) noexcept {
  const double x = old - ref;
  switch (k) {
    case kl_estimator::k1:
      return x;
    case kl_estimator::abs:
      return std::abs(x);
    case kl_estimator::k2:
      return 0.5 * (x * x);
    case kl_estimator::k3:
    default: {
      const double c = std::clamp(ref - old, -20.0, 20.0);
      return std::clamp(std::exp(c) - c - 1.0, -10.0, 10.0);
    }
  }
}

}  // namespace detail

/// verl's KL in the reward (`apply_kl_penalty`, `use_kl_in_reward = True`):
/// `out_nt = token_scores_nt - beta * (kl(old_nt, ref_nt) * m_nt)` with the estimator `k` on
/// `x = old - ref` (k1 "kl", abs "abs", k2 "mse", k3 "low_var_kl", see the file comment). `out`
/// may be `token_scores`.
/// @param token_scores  `[B x L]` scores (the outcome score on the last valid token, 0 elsewhere)
/// @param old_logp      log-probabilities of the sampling policy `[B x L]`
/// @param ref_logp      log-probabilities of the reference policy `[B x L]`
/// @param mask          `[B x L]` response mask, or empty (all ones)
/// @param length        L
/// @param k             KL estimator
/// @param beta          KL coefficient (verl's fixed controller: 0.001); finite
/// @param out           `[B x L]` token rewards
/// @return verl's `current_kl` for the KL controller: the mean over sequences of
///         `sum_t kl_nt m_nt / (sum_t m_nt + 1e-8)`
/// @throws invalid_argument for length 0 or a non-finite beta; size_mismatch on inconsistent sizes;
///         nonfinite_error for a non-finite score or log-probability. Nothing is written then.
template <real_scalar T, class M = T>
double kl_in_reward(std::span<const T> token_scores, std::span<const T> old_logp, std::span<const T> ref_logp,
                  std::span<const M> mask, std::size_t length, kl_estimator k, double beta, std::span<T> out) {
  const char* what = "kl_in_reward";
  detail::require(std::isfinite(beta), what, "beta", beta, "finite");
  detail::check_token_arrays(what, token_scores, "token_scores", mask, length, out.size());
  detail::check_token_arrays(what, old_logp, "old_logp", mask, length, token_scores.size());
  detail::check_token_arrays(what, ref_logp, "ref_logp", mask, length, token_scores.size());
  const std::size_t B = token_scores.size() / length;
  double current = 0.0;
  for (std::size_t n = 0; n < B; ++n) {
    double row = 0.0, cnt = 0.0;
    for (std::size_t t = 0; t < length; ++t) {
      const std::size_t i = n * length + t;
      const double m = detail::mask_value(mask, i);
      const double kld = detail::verl_kl_value(k, static_cast<double>(old_logp[i]), static_cast<double>(ref_logp[i])) * m;
      out[i] = static_cast<T>(static_cast<double>(token_scores[i]) - beta * kld);
      row += kld;
      cnt += m;
    }
    current += row / (cnt + 1e-8);
  }
  return current / static_cast<double>(B);
}

/// verl's adaptive KL controller (`AdaptiveKLController`, Ziegler et al. 2019):
/// `e = clip(current_kl / target_kl - 1, -0.2, 0.2)`, `value *= 1 + e * n_steps / horizon`.
/// verl's defaults: initial value (kl_coef) 0.001, target 0.1, horizon 10000; `update` is called
/// once per batch with `n_steps` = the batch size and `current_kl` from `kl_in_reward`.
struct adaptive_kl_controller {
  double value = 0.001;      ///< the current coefficient beta; finite and >= 0
  double target_kl = 0.1;    ///< target KL; finite and > 0
  double horizon = 10000.0;  ///< horizon; finite and > 0

  /// One update. @throws invalid_argument for a non-finite current_kl or a bad option; the value is
  /// unchanged then
  void update(double current_kl, std::size_t n_steps) {
    const char* w = "adaptive_kl_controller";
    detail::require(value >= 0.0 && std::isfinite(value), w, "value", value, "finite and >= 0");
    detail::require(target_kl > 0.0 && std::isfinite(target_kl), w, "target_kl", target_kl, "finite and > 0");
    detail::require(horizon > 0.0 && std::isfinite(horizon), w, "horizon", horizon, "finite and > 0");
    detail::require(std::isfinite(current_kl), w, "current_kl", current_kl, "finite");
    const double e = std::clamp(current_kl / target_kl - 1.0, -0.2, 0.2);
    value *= 1.0 + e * static_cast<double>(n_steps) / horizon;
  }
};

/// Token scores from one outcome score per sequence, placed as verl's reward managers place them:
/// `out[n*L + len_n - 1] = scores[n]`, 0 elsewhere, with `len_n = sum_t m_nt` the valid length
/// (the last valid token of a left-aligned mask).
/// @param scores  `[B]` outcome scores (finite)
/// @param mask    `[B x L]` response mask, or empty (every sequence has length L)
/// @param length  L
/// @param out     `[B x L]`
/// @throws invalid_argument for length 0 or a sequence whose valid length is 0 (verl would write
///         to index -1, the last position) or not an integer in [1, L]; size_mismatch on sizes;
///         nonfinite_error for a non-finite score. Nothing is written then.
template <real_scalar T, class M = T>
void outcome_token_scores(std::span<const T> scores, std::span<const M> mask, std::size_t length, std::span<T> out) {
  const char* what = "outcome_token_scores";
  detail::require(length >= 1, what, "length", static_cast<double>(length), ">= 1");
  const std::size_t n_tok = detail::checked_product(what, "scores", scores.size(), "length", length);
  detail::require_same_size(what, "out", out.size(), "scores x length", n_tok);
  if (!mask.empty()) detail::require_same_size(what, "mask", mask.size(), "scores x length", n_tok);
  detail::check_mask_finite(what, mask, length);
  for (std::size_t n = 0; n < scores.size(); ++n) {
    const double s = static_cast<double>(scores[n]);
    if (!std::isfinite(s)) detail::throw_nonfinite(what, "scores", n, 0, s);
    double len = 0.0;
    for (std::size_t t = 0; t < length; ++t) len += detail::mask_value(mask, n * length + t);
    if (!(len >= 1.0 && len <= static_cast<double>(length) && len == std::floor(len))) {
      throw invalid_argument(std::string(what) + ": sequence " + std::to_string(n) + " has valid length " +
                             detail::num_to_string(len) + ", must be an integer in [1, length]");
    }
  }
  for (std::size_t n = 0; n < scores.size(); ++n) {
    double len = 0.0;
    for (std::size_t t = 0; t < length; ++t) len += detail::mask_value(mask, n * length + t);
    const std::size_t last = static_cast<std::size_t>(len) - 1;
    for (std::size_t t = 0; t < length; ++t) out[n * length + t] = t == last ? scores[n] : T(0);
  }
}

/// REINFORCE++ advantages (verl `compute_reinforce_plus_plus_outcome_advantage`): discounted
/// token returns reset after each sequence, then global token whitening times the mask (file
/// comment). Token-level: pass `adv` as `token_batch::advantages` (`[B x L]`) to
/// `clipped_surrogate` (verl's example scripts: the vanilla clipped loss, KL in the reward).
/// @param token_rewards  `[B x L]` token rewards (e.g. from `kl_in_reward`)
/// @param mask           `[B x L]` response mask, or empty (all ones)
/// @param length         L
/// @param gamma          discount in [0, 1] (verl default 1)
/// @param adv            `[B x L]` advantages (0 on masked tokens); may alias `token_rewards`
/// @param returns        `[B x L]` returns G, or empty
/// @return M, mu and var of the whitening
/// @throws invalid_argument for length 0, gamma outside [0, 1], a mask summing to 0 or 1;
///         size_mismatch on sizes; nonfinite_error for a non-finite reward or mask entry. Nothing is
///         written then.
template <real_scalar T, class M = T>
token_whitening reinforce_pp_advantages(std::span<const T> token_rewards, std::span<const M> mask, std::size_t length,
                                        double gamma, std::span<T> adv, std::span<T> returns = {}) {
  const char* what = "reinforce_pp_advantages";
  detail::require(gamma >= 0.0 && gamma <= 1.0, what, "gamma", gamma, "in [0, 1]");
  detail::check_token_arrays(what, token_rewards, "token_rewards", mask, length, adv.size());
  if (!returns.empty()) detail::require_same_size(what, "returns", returns.size(), "token_rewards", token_rewards.size());
  const double msum = detail::whitening_tokens(what, mask, token_rewards.size());
  // The returns go to `returns` if given, else straight into `adv` (whitened in place below).
  const std::span<T> g = returns.empty() ? adv : returns;
  const std::size_t B = token_rewards.size() / length;
  for (std::size_t n = 0; n < B; ++n) {
    double run = 0.0;
    for (std::size_t t = length; t-- > 0;) {
      const std::size_t i = n * length + t;
      run = static_cast<double>(token_rewards[i]) + gamma * run;
      g[i] = static_cast<T>(run);
      run = run * detail::mask_value(mask, i);
    }
  }
  return detail::whiten_tokens(std::span<const T>(g.data(), g.size()), mask, msum, adv);
}

/// REINFORCE++-baseline advantages, token level, as verl computes them
/// (`compute_reinforce_plus_plus_baseline_outcome_advantage`): `s_n = sum_t r_nt` over all L
/// positions, `d_n = s_n - mean of n's group` (0 for a singleton group), `G_nt = d_n m_nt`, then
/// the global token whitening times the mask (file comment). For 0/1 masks the result is constant
/// over each sequence's valid tokens and equals `advantages(group_mean::verl(), token_whiten{...})`.
/// @param token_rewards  `[B x L]` token rewards
/// @param mask           `[B x L]` response mask, or empty
/// @param length         L
/// @param g              grouping of the B sequences (prompt ids)
/// @param adv            `[B x L]` advantages
/// @return M, mu and var of the whitening
/// @throws invalid_argument for length 0 or a mask summing to 0 or 1; size_mismatch on sizes
///         (including `g.samples() != B`); nonfinite_error for a non-finite reward. Nothing is
///         written then.
template <real_scalar T, class M = T>
token_whitening reinforce_pp_baseline_advantages(std::span<const T> token_rewards, std::span<const M> mask,
                                                 std::size_t length, const group_layout& g, std::span<T> adv) {
  const char* what = "reinforce_pp_baseline_advantages";
  detail::check_token_arrays(what, token_rewards, "token_rewards", mask, length, adv.size());
  const std::size_t B = token_rewards.size() / length;
  detail::require_same_size(what, "sequences", B, "layout samples", g.samples());
  const double msum = detail::whitening_tokens(what, mask, token_rewards.size());
  for (std::size_t k = 0; k < g.groups(); ++k) {
    double mean = 0.0;
    if (g.size_of(k) > 1) {
      g.for_each_member(k, [&](std::size_t n) {
        double s = 0.0;
        for (std::size_t t = 0; t < length; ++t) s += static_cast<double>(token_rewards[n * length + t]);
        mean += s;
      });
      mean /= static_cast<double>(g.size_of(k));
    }
    // Sequence sums are taken before adv is written, row by row, so adv may alias token_rewards.
    g.for_each_member(k, [&](std::size_t n) {
      double s = 0.0;
      for (std::size_t t = 0; t < length; ++t) s += static_cast<double>(token_rewards[n * length + t]);
      const double d = s - mean;
      for (std::size_t t = 0; t < length; ++t) adv[n * length + t] = static_cast<T>(d * detail::mask_value(mask, n * length + t));
    });
  }
  return detail::whiten_tokens(std::span<const T>(adv.data(), adv.size()), mask, msum, adv);
}

/// Global token whitening of per-sequence values, as a normalizer (REINFORCE++-baseline with
/// `group_mean::verl()`): with `d_n = r_n - b_n` and `c_n = token_counts[n]` (valid tokens of
/// sequence n), `M = sum c_n`,
///
///     mu  = sum_n c_n d_n / (M + 1e-8)
///     var = sum_n c_n (d_n - mu)^2 / (M + 1e-8) * M / (M - 1)
///     A_n = (d_n - mu) / sqrt(var + 1e-8)
///
/// which is verl's token-level whitening for 0/1 masks (every valid token of n carries A_n).
/// NaN d_n (unscorable) are left out of the sums (with their counts) and give NaN (advantage 0
/// after `advantages()`). The counts are per batch: set them before each step,
/// `s.normalizer().token_counts = counts;` (a view; the caller keeps the data alive).
struct token_whiten {
  static constexpr const char* name = "token_whiten";  ///< identifies the policy in saved state
  std::span<const double> token_counts{};  ///< c_n per sample: finite, >= 0; required

  /// Writes `adv_n = (d_n - mu) / sqrt(var + 1e-8)` (see the struct comment).
  /// @throws invalid_argument if `token_counts` is empty, has a negative or non-finite entry, or
  ///         the valid counts sum to 0 or 1; size_mismatch on sizes. Nothing is written then.
  template <real_scalar T>
  void apply(std::span<const T> r, std::span<const T> base, const group_layout& g, std::span<T> adv) const {
    const char* what = "token_whiten";
    detail::check_outcome_sizes(what, r.size(), adv.size(), g);
    detail::require_same_size(what, "outcomes", r.size(), "baseline", base.size());
    if (token_counts.empty()) {
      throw invalid_argument("token_whiten: token_counts is empty; set the valid-token count of every sequence "
                             "(s.normalizer().token_counts = counts) before the step");
    }
    detail::require_same_size(what, "token_counts", token_counts.size(), "outcomes", r.size());
    double msum = 0.0, s = 0.0;
    for (std::size_t n = 0; n < r.size(); ++n) {
      const double c = token_counts[n];
      detail::require(c >= 0.0 && std::isfinite(c), what, "token_counts[n]", c, "finite and >= 0");
      const double d = static_cast<double>(r[n]) - static_cast<double>(base[n]);
      if (std::isnan(d)) continue;
      msum += c;
      s += c * d;
    }
    if (msum == 0.0 || msum == 1.0) {
      throw invalid_argument("token_whiten: the valid token counts sum to " + detail::num_to_string(msum) +
                             "; the Bessel-corrected token variance needs at least 2 tokens");
    }
    const double mu = s / (msum + 1e-8);
    double c2 = 0.0;
    for (std::size_t n = 0; n < r.size(); ++n) {
      const double d = static_cast<double>(r[n]) - static_cast<double>(base[n]);
      if (!std::isnan(d)) c2 += (d - mu) * (d - mu) * token_counts[n];
    }
    const double inv = 1.0 / std::sqrt(c2 / (msum + 1e-8) * (msum / (msum - 1.0)) + 1e-8);
    for (std::size_t n = 0; n < r.size(); ++n) {
      adv[n] = static_cast<T>((static_cast<double>(r[n]) - static_cast<double>(base[n]) - mu) * inv);
    }
  }
};

}  // namespace stochgrad
