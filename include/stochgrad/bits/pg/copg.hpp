// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief CoPG, Contrastive Policy Gradient (Flet-Berliac et al., "Contrastive Policy Gradient:
/// Aligning LLMs on sequence-level scores in a supervised-friendly fashion", arXiv 2406.19185,
/// EMNLP 2024), in the k-sample form of the Cohere Command A report (arXiv 2504.00698, p. 7), as
/// a loss policy of the `score_function` estimator (`copg_loss`); and its two preference-pair
/// relatives IPO (`ipo_pair_loss`) and DPO (`dpo_pair_loss`). Seed spec rl_zo.md §2.
///
/// For one prompt with k >= 2 scorable completions `y_1..y_k` (from ANY behavior policy: no
/// importance ratio, no clipping, no old log-probabilities), rewards `R_i`, sequence
/// log-probabilities `lp_i = sum_t m_it logp_it` under the policy and `lr_i` under the reference:
///
///     regularized reward   R^beta_i = R_i - beta (lp_i - lr_i)
///     group loss           L_g = 1/(k-1) sum_{i<j} (R^beta_i - R^beta_j)^2
///                              = k/(k-1) sum_i (R^beta_i - mean_j R^beta_j)^2
///     gradient             dL_g/dlp_i = -2 beta/(k-1) sum_{j != i} (R^beta_i - R^beta_j)
///                                     = -2 beta k/(k-1) (R^beta_i - mean_j R^beta_j)
///                                     = -2 beta A^RLOO_i(R^beta)        (leave-one-out advantage)
///     per token            c_it = dL/dlogp_it = m_it dL/dlp_i            (one value per sequence)
///     batch loss           L = loss_scale * w * sum_g L_g ,  w = 1/(number of groups) (prompt_mean)
///                                                              or 1 (sum)
///
/// `R^beta` depends on theta through `lp`: differentiating through it is what gives the `-beta`
/// factor, so `lp` is NOT detached inside the square (the reward R is a constant). L = 0 iff
/// `R_i - beta (lp_i - lr_i)` is the same for every completion of a group, i.e.
/// `pi(y) ~ pi_ref(y) exp(R(y)/beta)` on the support of the data: the KL-regularized optimum,
/// whatever policy generated the data. On-policy, the gradient is `-2 beta` times RLOO's gradient
/// of the regularized reward. L is invariant to adding a constant to all rewards of a group, or
/// to all its `lr_i`, so a group-constant baseline (`group_mean`) changes nothing.
///
/// Relations for a preferred/dispreferred pair (w, l), `h = (lp_w - lr_w) - (lp_l - lr_l)`:
///
///     IPO:   L_IPO = (h - 1/(2 tau))^2                dL/dlp_w = 2 (h - 1/(2 tau)) = -dL/dlp_l
///     CoPG with R_w - R_l = 1/2 and beta = tau:      L_CoPG = beta^2 L_IPO (same minimizer)
///     DPO:   L_DPO = -log sigmoid(beta h)            dL/dlp_w = -beta sigmoid(-beta h) = -dL/dlp_l
///
/// **[stochgrad decisions]** (the paper's own constants are not published in code): the Command A
/// form above with `loss_scale` (any positive factor only rescales the learning rate); beta 0.1;
/// pairs formed from all completions of the same prompt (the group layout); no length
/// normalization (`lp` is a sum over tokens); the batch loss averages over the layout's groups
/// (`copg_reduction::prompt_mean`; a group with fewer than two scorable completions contributes 0
/// and is counted in `surrogate_diagnostics::skipped_groups`). A NaN reward marks an unscorable
/// completion: it is dropped from its group (k shrinks) and its coefficients are 0.
///
/// In a stepper: `stepper<score_function<copg_loss>, no_baseline, no_normalizer, Optimizer>`
/// (preset `copg`); the estimator hands the loss the rewards (as the "advantages"; NaN kept for
/// unscorable completions), the group layout, `logp` and `ref_logp` (required). With PPO
/// iterations > 1 the stored rewards are reused and `lp` is simply re-evaluated (CoPG needs no old
/// log-probabilities).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// How CoPG's group losses are combined into the batch loss.
enum class copg_reduction {
  prompt_mean,  ///< mean over the layout's groups (prompts); groups with k < 2 contribute 0
  sum,          ///< sum over groups
};

/// Options of CoPG (see the file comment; stochgrad's decisions, no official code).
struct copg_options {
  double beta = 0.1;                                       ///< KL-regularization strength; finite and > 0
  double loss_scale = 1.0;                                 ///< positive factor in front of the loss; finite and > 0
  copg_reduction reduction = copg_reduction::prompt_mean;  ///< group losses -> batch loss

  /// @throws invalid_argument naming the option, its value and the allowed range
  void validate(const char* what = "copg") const {
    detail::require(beta > 0.0 && std::isfinite(beta), what, "beta", beta, "finite and > 0");
    detail::require(loss_scale > 0.0 && std::isfinite(loss_scale), what, "loss_scale", loss_scale, "finite and > 0");
  }
};

/// What one CoPG evaluation saw, at the sequence level.
struct copg_stats {
  double loss = 0.0;               ///< the batch loss L
  std::size_t groups = 0;          ///< groups of the layout
  std::size_t used_groups = 0;     ///< groups with at least two scorable completions
  std::size_t skipped_groups = 0;  ///< groups with fewer than two (they contribute 0)
  std::size_t dropped = 0;         ///< completions with a NaN reward (left out of their group)
};

namespace detail {

// The sequence-level CoPG kernel on double arrays (r may hold NaN = dropped); writes grad (dL/dlp)
// and, if non-null, the regularized rewards (NaN for dropped completions).
inline copg_stats copg_kernel(const copg_options& o, const double* r, const double* lp, const double* lr,
                              const group_layout& g, double* grad, double* reg) {
  copg_stats st;
  st.groups = g.groups();
  const double w = o.loss_scale / (o.reduction == copg_reduction::prompt_mean ? static_cast<double>(g.groups()) : 1.0);
  for (std::size_t k = 0; k < g.groups(); ++k) {
    std::size_t valid = 0;
    double sum = 0.0;
    g.for_each_member(k, [&](std::size_t n) {
      if (std::isnan(r[n])) return;
      ++valid;
      sum += r[n] - o.beta * (lp[n] - lr[n]);
    });
    const double kd = static_cast<double>(valid);
    const double mean = valid == 0 ? 0.0 : sum / kd;
    double ss = 0.0;
    g.for_each_member(k, [&](std::size_t n) {
      if (std::isnan(r[n])) {
        ++st.dropped;
        grad[n] = 0.0;
        if (reg != nullptr) reg[n] = std::numeric_limits<double>::quiet_NaN();
        return;
      }
      const double rb = r[n] - o.beta * (lp[n] - lr[n]);
      if (reg != nullptr) reg[n] = rb;
      if (valid < 2) {
        grad[n] = 0.0;
        return;
      }
      const double d = rb - mean;
      ss += d * d;
      grad[n] = -2.0 * o.beta * kd / (kd - 1.0) * d * w;
    });
    if (valid < 2) {
      ++st.skipped_groups;
      continue;
    }
    ++st.used_groups;
    st.loss += w * kd / (kd - 1.0) * ss;
  }
  return st;
}

}  // namespace detail

/// CoPG at the sequence level: the batch loss and `grad[i] = dL/dlp_i` from per-completion
/// rewards and sequence log-probabilities (see the file comment).
/// @param o             beta, loss_scale, reduction
/// @param rewards       `R_i` per completion `[N]`; NaN = unscorable (dropped from its group)
/// @param seq_logp      `lp_i = sum_t m_it logp_it` under the policy `[N]`
/// @param seq_ref_logp  `lr_i` under the reference `[N]`
/// @param g             grouping of the N completions by prompt
/// @param grad          `[N]` output dL/dlp (0 for dropped completions and groups with k < 2)
/// @param regularized   `[N]` output `R^beta_i` (NaN for dropped completions), or empty
/// @return loss and group counts
/// @throws invalid_argument for a bad option; size_mismatch on sizes (including `g.samples()`);
///         nonfinite_error for an infinite reward or a non-finite log-probability of a scorable
///         completion. Nothing is written then.
template <real_scalar T>
copg_stats copg_sequence_loss(const copg_options& o, std::span<const T> rewards, std::span<const T> seq_logp,
                              std::span<const T> seq_ref_logp, const group_layout& g, std::span<T> grad,
                              std::span<T> regularized = {}) {
  const char* what = "copg_sequence_loss";
  o.validate(what);
  const std::size_t N = rewards.size();
  detail::require_same_size(what, "rewards", N, "layout samples", g.samples());
  detail::require_same_size(what, "seq_logp", seq_logp.size(), "rewards", N);
  detail::require_same_size(what, "seq_ref_logp", seq_ref_logp.size(), "rewards", N);
  detail::require_same_size(what, "grad", grad.size(), "rewards", N);
  if (!regularized.empty()) detail::require_same_size(what, "regularized", regularized.size(), "rewards", N);
  std::vector<double> r(N), lp(N), lr(N), gr(N), reg(regularized.empty() ? 0 : N);
  for (std::size_t n = 0; n < N; ++n) {
    r[n] = static_cast<double>(rewards[n]);
    lp[n] = static_cast<double>(seq_logp[n]);
    lr[n] = static_cast<double>(seq_ref_logp[n]);
    if (std::isinf(r[n])) detail::throw_nonfinite(what, "rewards", n, 0, r[n]);
    if (std::isnan(r[n])) continue;
    if (!std::isfinite(lp[n])) detail::throw_nonfinite(what, "seq_logp", n, 0, lp[n]);
    if (!std::isfinite(lr[n])) detail::throw_nonfinite(what, "seq_ref_logp", n, 0, lr[n]);
  }
  const copg_stats st =
      detail::copg_kernel(o, r.data(), lp.data(), lr.data(), g, gr.data(), regularized.empty() ? nullptr : reg.data());
  for (std::size_t n = 0; n < N; ++n) grad[n] = static_cast<T>(gr[n]);
  for (std::size_t n = 0; n < regularized.size(); ++n) regularized[n] = static_cast<T>(reg[n]);
  return st;
}

/// CoPG as a loss policy of `score_function` (a "grouped" loss: the estimator passes the group
/// layout). `evaluate` reads the per-sequence rewards from `token_batch::advantages` (`[B]`, NaN =
/// unscorable), `logp`, `ref_logp` (required) and `mask`; `old_logp` is not read. It writes
/// `coef[n*L + t] = m_nt dL/dlp_n` and returns the loss with diagnostics: `active_tokens`,
/// `active_sequences` (sequences with an active token), `skipped_groups`, `mean_kl` = the mean of
/// `lp_i - lr_i` over the scorable completions of the used groups (a sequence-level KL estimate
/// on on-policy data), ratio statistics 1, clip fractions 0.
///
/// Keeps per-sequence scratch buffers that grow only (so `evaluate` allocates only when B exceeds
/// every earlier B); one object must not be used by two threads at once.
///
/// Direct use on an off-policy batch (two prompts, two completions each, L = 2):
/// @code
/// const std::vector<double> rewards{0.8, 0.1, 1.0, 0.0};
/// const std::vector<double> logp{-6.0, -6.5, -4.0, -5.0, -3.0, -2.0, -1.0, -1.5};
/// const std::vector<double> ref{-6.2, -6.8, -4.1, -4.1, -3.0, -2.5, -1.0, -1.0};
/// const stochgrad::token_batch<double, double> b{4, 2, logp, {}, ref, {}, rewards};
/// std::vector<double> coef(8);
/// const auto res = stochgrad::copg_loss({.beta = 0.1}).evaluate(b, stochgrad::group_layout::contiguous(2, 2),
///                                                              std::span<double>(coef));
/// // coef holds dL/dlogp per token: the same value on every token of a completion, opposite signs in a pair
/// if (!(res.loss > 0.0) || coef[0] != coef[1] || std::abs(coef[0] + coef[2]) > 1e-15) std::abort();
/// @endcode
class copg_loss {
 public:
  /// The options type (`score_function` accepts it in place of the loss object).
  using options_type = copg_options;
  /// Identifies a `score_function<copg_loss>` in saved state.
  static constexpr const char* estimator_name = "score_function_copg";
  /// The estimator keeps NaN for unscorable completions in the "advantages" it hands over
  /// (instead of the usual 0), so that they are dropped from their group.
  static constexpr bool unscorable_as_nan = true;

  /// beta 0.1, loss_scale 1, prompt_mean.
  copg_loss() = default;
  /// @throws invalid_argument for a bad option
  explicit copg_loss(copg_options o) : o_(o) { o_.validate("copg_loss"); }

  /// The options.
  const copg_options& options() const noexcept { return o_; }

  /// Loss and per-token coefficients (empty `coef`: loss only); see the class comment.
  /// @throws invalid_argument if `ref_logp` is empty; size_mismatch on inconsistent spans (per-token
  ///         advantages, a layout of another size); nonfinite_error for an infinite reward or a
  ///         non-finite logp / ref_logp at an active token of a scorable completion (a dropped
  ///         one's log-probabilities are not read). The coefficients are written only
  ///         after every check passed.
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, const group_layout& g, std::span<T> coef = {}) const {
    const char* what = "copg_loss";
    if (b.ref_logp.empty()) {
      throw invalid_argument(
          "copg_loss: ref_logp is empty; CoPG regularizes towards the reference policy and needs "
          "its token log-probabilities");
    }
    token_batch<T, Mask> v = b;
    v.old_logp = {};
    detail::check_token_batch(what, v, true);
    const std::size_t B = b.sequences, L = b.length;
    detail::require_same_size(what, "advantages (rewards)", b.advantages.size(), "sequences", B);
    detail::require_same_size(what, "sequences", B, "layout samples", g.samples());
    if (!coef.empty()) detail::require_same_size(what, "coef", coef.size(), "sequences x length", B * L);
    if (r_.size() < B) {
      r_.resize(B);
      lp_.resize(B);
      lr_.resize(B);
      gr_.resize(B);
    }
    surrogate_result res;
    surrogate_diagnostics& dg = res.diagnostics;
    for (std::size_t n = 0; n < B; ++n) {
      const double r = static_cast<double>(b.advantages[n]);
      if (std::isinf(r)) detail::throw_nonfinite(what, "advantages (rewards)", n, 0, r);
      const bool scorable = !std::isnan(r);
      double slp = 0.0, slr = 0.0, cnt = 0.0;
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t i = n * L + t;
        const double m = detail::mask_at(b.mask, i);
        if (m == 0.0) continue;
        cnt += m;
        if (!scorable) continue;  // a dropped completion's log-probabilities are not read
        const double x = static_cast<double>(b.logp[i]), y = static_cast<double>(b.ref_logp[i]);
        if (!std::isfinite(x)) detail::throw_nonfinite(what, "logp", n, t, x);
        if (!std::isfinite(y)) detail::throw_nonfinite(what, "ref_logp", n, t, y);
        slp += m * x;
        slr += m * y;
      }
      r_[n] = r;
      lp_[n] = slp;
      lr_[n] = slr;
      dg.active_tokens += cnt;
      if (cnt != 0.0) ++dg.active_sequences;
    }
    const copg_stats st = detail::copg_kernel(o_, r_.data(), lp_.data(), lr_.data(), g, gr_.data(), nullptr);
    res.loss = st.loss;
    dg.skipped_groups = st.skipped_groups;
    double kl = 0.0;
    std::size_t used = 0;
    for (std::size_t k = 0; k < g.groups(); ++k) {
      std::size_t valid = 0;
      g.for_each_member(k, [&](std::size_t n) { valid += std::isnan(r_[n]) ? 0 : 1; });
      if (valid < 2) continue;
      g.for_each_member(k, [&](std::size_t n) {
        if (std::isnan(r_[n])) return;
        kl += lp_[n] - lr_[n];
        ++used;
      });
    }
    dg.mean_kl = used == 0 ? 0.0 : kl / static_cast<double>(used);
    if (dg.active_tokens > 0.0) dg.ratio_mean = dg.ratio_min = dg.ratio_max = 1.0;
    if (!coef.empty()) {
      for (std::size_t n = 0; n < B; ++n) {
        for (std::size_t t = 0; t < L; ++t) {
          const std::size_t i = n * L + t;
          coef[i] = static_cast<T>(gr_[n] * detail::mask_at(b.mask, i));
        }
      }
    }
    return res;
  }

 private:
  copg_options o_{};
  mutable std::vector<double> r_, lp_, lr_, gr_;
};

// ---------------------------------------------------------------------------------------------
// Preference pairs: IPO and DPO (and CoPG on one pair), the relations of rl_zo.md §2.3.
// ---------------------------------------------------------------------------------------------

/// Loss of one preference pair and its derivatives with respect to the two sequence
/// log-probabilities under the policy.
struct pair_loss_value {
  double loss = 0.0;            ///< the pair's loss
  double d_preferred = 0.0;     ///< dL/dlp_w
  double d_dispreferred = 0.0;  ///< dL/dlp_l
};

namespace detail {
inline void check_pair_inputs(const char* what, double lp_w, double lp_l, double lr_w, double lr_l) {
  const double v[4] = {lp_w, lp_l, lr_w, lr_l};
  const char* names[4] = {"lp_w", "lp_l", "lr_w", "lr_l"};
  for (int i = 0; i < 4; ++i) {
    if (!std::isfinite(v[i])) throw_nonfinite(what, names[i], 0, 0, v[i]);
  }
}
// log(1 + exp(x)) without overflow.
inline double dpo_softplus(double x) noexcept {
  return x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}
inline double dpo_sigmoid(double x) noexcept {
  return x >= 0.0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}
}  // namespace detail

/// IPO (Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
/// Preferences", arXiv 2310.12036) on one pair: `L = (h - 1/(2 tau))^2`,
/// `h = (lp_w - lr_w) - (lp_l - lr_l)`, `dL/dlp_w = 2 (h - 1/(2 tau)) = -dL/dlp_l`.
/// @throws invalid_argument unless tau is finite and > 0; nonfinite_error for a non-finite input
inline pair_loss_value ipo_pair(double tau, double lp_w, double lp_l, double lr_w, double lr_l) {
  detail::require(tau > 0.0 && std::isfinite(tau), "ipo_pair", "tau", tau, "finite and > 0");
  detail::check_pair_inputs("ipo_pair", lp_w, lp_l, lr_w, lr_l);
  const double h = (lp_w - lr_w) - (lp_l - lr_l);
  const double u = h - 1.0 / (2.0 * tau);
  return {u * u, 2.0 * u, -2.0 * u};
}

/// DPO (Rafailov et al., arXiv 2305.18290) on one pair: `L = -log sigmoid(beta h)`,
/// `dL/dlp_w = -beta sigmoid(-beta h) = -dL/dlp_l` (computed without overflow).
/// @throws invalid_argument unless beta is finite and > 0; nonfinite_error for a non-finite input
inline pair_loss_value dpo_pair(double beta, double lp_w, double lp_l, double lr_w, double lr_l) {
  detail::require(beta > 0.0 && std::isfinite(beta), "dpo_pair", "beta", beta, "finite and > 0");
  detail::check_pair_inputs("dpo_pair", lp_w, lp_l, lr_w, lr_l);
  const double h = (lp_w - lr_w) - (lp_l - lr_l);
  const double d = -beta * detail::dpo_sigmoid(-beta * h);
  return {detail::dpo_softplus(-beta * h), d, -d};
}

/// CoPG on one pair (k = 2, one group, loss_scale 1): `L = u^2`,
/// `u = (R_w - beta (lp_w - lr_w)) - (R_l - beta (lp_l - lr_l))`, `dL/dlp_w = -2 beta u = -dL/dlp_l`.
/// With `R_w - R_l = 1/2` and `beta = tau` it is `beta^2` times `ipo_pair(tau, ...)`.
/// @throws invalid_argument unless beta is finite and > 0; nonfinite_error for a non-finite input
inline pair_loss_value copg_pair(double beta, double r_w, double r_l, double lp_w, double lp_l, double lr_w,
                                 double lr_l) {
  detail::require(beta > 0.0 && std::isfinite(beta), "copg_pair", "beta", beta, "finite and > 0");
  detail::check_pair_inputs("copg_pair", lp_w, lp_l, lr_w, lr_l);
  if (!std::isfinite(r_w)) detail::throw_nonfinite("copg_pair", "r_w", 0, 0, r_w);
  if (!std::isfinite(r_l)) detail::throw_nonfinite("copg_pair", "r_l", 0, 0, r_l);
  const double u = (r_w - beta * (lp_w - lr_w)) - (r_l - beta * (lp_l - lr_l));
  return {u * u, -2.0 * beta * u, 2.0 * beta * u};
}

/// Options of the token-level preference-pair losses.
struct pair_loss_options {
  double strength = 0.1;  ///< tau of IPO, beta of DPO; finite and > 0
};

namespace detail {

// Shared token-level driver of the pair losses: rows 2p (preferred) and 2p + 1 (dispreferred);
// loss = mean over pairs; coefficient = m * dL/dlp / P.
template <class PairFn, real_scalar T, class Mask>
surrogate_result pair_token_loss(const char* what, const token_batch<T, Mask>& b, std::span<T> coef, PairFn&& fn) {
  if (b.ref_logp.empty()) throw invalid_argument(std::string(what) + ": ref_logp is empty (required)");
  require(b.sequences >= 2 && b.sequences % 2 == 0, what, "sequences", static_cast<double>(b.sequences),
          "even and >= 2 (rows 2p and 2p + 1 are the preferred and dispreferred completion of pair p)");
  token_batch<T, Mask> v = b;
  v.old_logp = {};
  v.advantages = b.logp;  // not read (a per-token-sized span passes the size check)
  check_token_batch(what, v, true);
  const std::size_t B = b.sequences, L = b.length, P = B / 2;
  if (!coef.empty()) require_same_size(what, "coef", coef.size(), "sequences x length", B * L);
  for (std::size_t n = 0; n < B; ++n) {  // validation first: nothing is written on bad input
    for (std::size_t t = 0; t < L; ++t) {
      const std::size_t i = n * L + t;
      if (mask_at(b.mask, i) == 0.0) continue;
      const double x = static_cast<double>(b.logp[i]), y = static_cast<double>(b.ref_logp[i]);
      if (!std::isfinite(x)) throw_nonfinite(what, "logp", n, t, x);
      if (!std::isfinite(y)) throw_nonfinite(what, "ref_logp", n, t, y);
    }
  }
  surrogate_result res;
  double seq[2][2] = {};  // [preferred / dispreferred][lp, lr]
  for (std::size_t p = 0; p < P; ++p) {
    for (std::size_t s = 0; s < 2; ++s) {
      const std::size_t n = 2 * p + s;
      double a = 0.0, c = 0.0, cnt = 0.0;
      for (std::size_t t = 0; t < L; ++t) {
        const double m = mask_at(b.mask, n * L + t);
        if (m == 0.0) continue;
        a += m * static_cast<double>(b.logp[n * L + t]);
        c += m * static_cast<double>(b.ref_logp[n * L + t]);
        cnt += m;
      }
      seq[s][0] = a;
      seq[s][1] = c;
      res.diagnostics.active_tokens += cnt;
      if (cnt != 0.0) ++res.diagnostics.active_sequences;
    }
    const pair_loss_value pv = fn(seq[0][0], seq[1][0], seq[0][1], seq[1][1]);
    res.loss += pv.loss / static_cast<double>(P);
    res.diagnostics.mean_kl += ((seq[0][0] - seq[0][1]) + (seq[1][0] - seq[1][1])) / static_cast<double>(B);
    if (!coef.empty()) {
      for (std::size_t s = 0; s < 2; ++s) {
        const double d = (s == 0 ? pv.d_preferred : pv.d_dispreferred) / static_cast<double>(P);
        const std::size_t n = 2 * p + s;
        for (std::size_t t = 0; t < L; ++t) coef[n * L + t] = static_cast<T>(d * mask_at(b.mask, n * L + t));
      }
    }
  }
  if (res.diagnostics.active_tokens > 0.0)
    res.diagnostics.ratio_mean = res.diagnostics.ratio_min = res.diagnostics.ratio_max = 1.0;
  return res;
}

}  // namespace detail

/// IPO over a batch of preference pairs: rows `2p` (preferred) and `2p + 1` (dispreferred) of a
/// `[2P x L]` token batch, `lp = sum_t m logp`, loss = mean over pairs of `ipo_pair(tau, ...)`,
/// coefficients `m dL/dlp / P`. `advantages` and `old_logp` are not read; `ref_logp` is required.
/// An offline loss for the caller's training loop (it has no use for rewards).
class ipo_pair_loss {
 public:
  /// The options type.
  using options_type = pair_loss_options;
  /// tau = 0.1.
  ipo_pair_loss() = default;
  /// @throws invalid_argument unless tau (`strength`) is finite and > 0
  explicit ipo_pair_loss(pair_loss_options o) : o_(o) {
    detail::require(o.strength > 0.0 && std::isfinite(o.strength), "ipo_pair_loss", "tau", o.strength,
                    "finite and > 0");
  }
  /// The options.
  const pair_loss_options& options() const noexcept { return o_; }
  /// Loss and coefficients. @throws invalid_argument for an odd or zero row count or empty
  /// ref_logp; size_mismatch on sizes; nonfinite_error for a non-finite log-probability at an
  /// active token (nothing written then)
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, std::span<T> coef = {}) const {
    const double tau = o_.strength;
    return detail::pair_token_loss("ipo_pair_loss", b, coef,
                                   [tau](double a, double c, double d, double e) { return ipo_pair(tau, a, c, d, e); });
  }

 private:
  pair_loss_options o_{};
};

/// DPO over a batch of preference pairs, laid out as for `ipo_pair_loss`; loss = mean over pairs
/// of `dpo_pair(beta, ...)`.
class dpo_pair_loss {
 public:
  /// The options type.
  using options_type = pair_loss_options;
  /// beta = 0.1.
  dpo_pair_loss() = default;
  /// @throws invalid_argument unless beta (`strength`) is finite and > 0
  explicit dpo_pair_loss(pair_loss_options o) : o_(o) {
    detail::require(o.strength > 0.0 && std::isfinite(o.strength), "dpo_pair_loss", "beta", o.strength,
                    "finite and > 0");
  }
  /// The options.
  const pair_loss_options& options() const noexcept { return o_; }
  /// Loss and coefficients. @throws as `ipo_pair_loss::evaluate`
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, std::span<T> coef = {}) const {
    const double beta = o_.strength;
    return detail::pair_token_loss("dpo_pair_loss", b, coef, [beta](double a, double c, double d, double e) {
      return dpo_pair(beta, a, c, d, e);
    });
  }

 private:
  pair_loss_options o_{};
};

}  // namespace stochgrad
