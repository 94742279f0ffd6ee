// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The score-function estimator with the PPO clipped surrogate (GRPO, DAPO, Dr. GRPO, GSPO,
/// BNPO's loss, verl's dual clip), its loss value, the per-token coefficient dLoss/dlogp and
/// diagnostics (TRL `grpo_trainer.py` `_compute_loss`; verl `core_algos.py` `compute_policy_loss`;
/// checked against both peers' code in tests/golden).
///
/// Per active token t of sequence n (mask m_nt != 0):
///
///     lw    = logp - old_logp                               (token level)
///           = sum_t m (logp - old_logp) / max(sum_t m, 1)   (sequence level, GSPO; one value per row)
///     lw    = clamp(lw, -C, C)                              (C = log_ratio_clamp; verl upstream: 20)
///     rho   = exp(lw) ;  rho_c = clip(rho, 1 - eps_low, 1 + eps_high) ;  rho_u = min(rho, delta) if delta
///     pl    = max(-A rho_u, -A rho_c)                       ( = -min(rho_u A, rho_c A) )
///     pl    = min(pl, -A c)  if A < 0 and dual clip c > 1  (verl dual-clip PPO)
///     kl    = exp(ref - logp) - (ref - logp) - 1            (k3; times rho with kl_bias_correction)
///     l     = pl + beta kl
///     loss  = sum_nt W_nt l_nt ,  W_nt = m_nt * rowweight_n   (aggregation, below)
///
/// The coefficient `c_nt = dloss/dlogp_nt` is what a framework multiplies into its backward pass
/// (`loss_surrogate = sum c_nt logp_nt` has the same gradient). Where two branches of a min/max
/// tie, the derivative is the mean of the branch derivatives (autograd's convention); clamps pass
/// the gradient on their boundary. The active branch follows from the values, so the delta rule is
/// right for any delta (§0.5.3), not only for delta >= 1 + eps_high.
///
/// Aggregations (`loss_aggregation`; B sequences, M = sum m, cnt_n = sum_t m_nt):
/// | name | TRL | verl | row weight (trl convention) |
/// |---|---|---|---|
/// | `seq_mean_token_mean` (= `grpo`) | "grpo" | "seq-mean-token-mean" | 1/(B max(cnt_n,1)) |
/// | `token_mean` | "bnpo" | "token-mean" | 1/max(M,1) |
/// | `dr_grpo` | "dr_grpo" | - | 1/(B L_max) |
/// | `dapo` | "dapo" (default) | - | P/max(N_global,1) |
/// | `seq_mean_token_sum` | - | "seq-mean-token-sum" | 1/B |
/// | `seq_mean_token_sum_norm` | - | "seq-mean-token-sum-norm" | 1/L (B times dr_grpo) |
///
/// Name clash: TRL's `loss_type="bnpo"` is only the token mean over the local batch (here
/// `token_mean`). It has nothing to do with BNPO, Beta Normalization Policy Optimization
/// (bits/outcome/beta.hpp), whose loss is this clipped surrogate with `beta_normalizer` advantages.
///
/// Conventions (`loss_convention`) reproduce each peer's denominators exactly:
/// - `trl`: as in the table; all modes but dapo are divided by `gradient_accumulation_steps`.
/// - `verl` (the BNPO repository's verl fork): token_mean divides by `M + 1e-8`;
///   seq_mean_token_mean has no guard (a fully masked row makes the reference's loss NaN: throws
///   `invalid_argument` here); clip fractions and KL means divide by `M + 1e-8`.
/// - `verl_upstream` (volcengine/verl): token_mean divides by M; seq_mean_token_mean and
///   seq_mean_token_sum average over the non-empty rows (seq_mean_token_mean with `cnt + 1e-8`);
///   seq_mean_token_sum_norm divides by L; use with `log_ratio_clamp = 20`.
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
#include "../kernels/exp.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// Where the importance ratio is formed.
enum class ratio_level {
  token,     ///< per token (PPO, GRPO, DAPO)
  sequence,  ///< per sequence, geometric mean of the token ratios (GSPO)
};

/// How per-token losses are reduced to the loss value (see the file comment).
enum class loss_aggregation {
  seq_mean_token_mean,      ///< mean over sequences of the token mean (TRL "grpo")
  token_mean,               ///< token mean over the local batch (TRL "bnpo", verl "token-mean")
  dr_grpo,                  ///< sum / (B * L_max) (Dr. GRPO)
  dapo,                     ///< sum / (N_global / num_processes) (TRL default)
  seq_mean_token_sum,       ///< mean over sequences of the token sum (verl; BNPO's run.sh)
  seq_mean_token_sum_norm,  ///< sum / L (verl)
  grpo = seq_mean_token_mean,
};

/// Whose denominators and guards to reproduce.
enum class loss_convention { trl, verl, verl_upstream };

/// Hyper-parameters of the clipped surrogate. Defaults are TRL's (`trl/trainer/grpo_config.py`, 1.10).
struct surrogate_options {
  double eps_low = 0.2;                     ///< lower clip range: rho >= 1 - eps_low; in [0, 1)
  double eps_high = 0.2;                    ///< upper clip range: rho <= 1 + eps_high; >= 0 (DAPO: 0.28)
  // Kept between the clip ranges and the zero-defaulted fields: GCC 12.2 with AVX-512 miscompiles
  // the constant {x, x, 0, 0} (four doubles) into a broadcast of x when it copies such a struct.
  double log_ratio_clamp = std::numeric_limits<double>::infinity();  ///< |lw| cap; > 0 (verl upstream 20)
  double delta = 0.0;                       ///< two-sided GRPO upper bound of the unclipped ratio; 0 = off, else > 0
  double dual_clip = 0.0;                   ///< verl dual-clip c for A < 0; 0 = off, else > 1 (verl 3, BNPO 10)
  double beta = 0.0;                        ///< k3 KL coefficient; >= 0 (needs ref_logp when > 0)
  bool kl_bias_correction = false;          ///< multiply the k3 KL by the importance ratio
  ratio_level level = ratio_level::token;   ///< token or sequence (GSPO) ratio
  loss_aggregation aggregation = loss_aggregation::dapo;  ///< reduction
  loss_convention convention = loss_convention::trl;      ///< denominators
  std::size_t max_completion_length = 0;    ///< L_max of dr_grpo; 0 = the padded length
  std::size_t gradient_accumulation_steps = 1;  ///< divides every mode but dapo; >= 1
  double global_active_tokens = 0.0;        ///< dapo's N_global; 0 = this batch's M
  std::size_t num_processes = 1;            ///< dapo's process count; >= 1

  /// TRL GRPO defaults (loss "dapo", eps 0.2, beta 0).
  static surrogate_options trl() noexcept { return {}; }
  /// The BNPO repository's verl fork (token-mean, dual clip 3).
  static surrogate_options verl() noexcept {
    surrogate_options o;
    o.aggregation = loss_aggregation::token_mean;
    o.convention = loss_convention::verl;
    o.dual_clip = 3.0;
    return o;
  }
  /// Upstream verl (token-mean, dual clip 3, log-ratio clamp 20).
  static surrogate_options verl_upstream() noexcept {
    surrogate_options o = verl();
    o.convention = loss_convention::verl_upstream;
    o.log_ratio_clamp = 20.0;
    return o;
  }
};

/// Diagnostics of one surrogate evaluation. Fractions are over active tokens (token ratios) or
/// over non-empty sequences (sequence ratios); the `verl` conventions divide by `M + 1e-8` as verl
/// logs them.
///
/// The clip fractions are TRL's `clip_ratio/*` metrics, read from `rho_u` = the ratio TRL calls
/// `coef_1` when it logs them: `rho_u = min(rho, delta)` with two-sided clipping (`delta > 0`,
/// TRL `args.delta`), `rho_u = rho` without. Per token (sequence with GSPO):
///
///     low    = rho_u < 1 - eps_low  and A < 0
///     high   = rho_u > 1 + eps_high and A > 0
///     region = low or high
///
/// So with `delta <= 1 + eps_high` no token is high-clipped and with `delta < 1 - eps_low` every
/// token with A < 0 is low-clipped, as TRL reports (the loss and coefficients do not depend on it).
struct surrogate_diagnostics {
  double active_tokens = 0.0;        ///< M = sum of the mask
  std::size_t active_sequences = 0;  ///< sequences with at least one active token
  double clip_low_fraction = 0.0;    ///< rho_u < 1 - eps_low with A < 0 (TRL clip_ratio/low_mean)
  double clip_high_fraction = 0.0;   ///< rho_u > 1 + eps_high with A > 0 (TRL clip_ratio/high_mean)
  double clip_region_fraction = 0.0; ///< either (TRL clip_ratio/region_mean, verl pg_clipfrac)
  double clip_low_min = 0.0;         ///< smallest per-sequence low-clip fraction (TRL clip_ratio/low_min)
  double clip_high_max = 0.0;        ///< largest per-sequence high-clip fraction (TRL clip_ratio/high_max)
  double dual_clip_fraction = 0.0;   ///< dual clip active: A < 0 and max(rho, rho_c) > c (verl pg_clipfrac_lower)
  double mean_kl = 0.0;              ///< masked mean of the KL term (k3, bias-corrected if enabled); 0 without ref_logp
  double approx_kl = 0.0;            ///< masked mean of old_logp - logp (verl ppo_kl)
  double ratio_mean = 0.0;           ///< mean importance ratio over active tokens
  double ratio_min = 0.0;            ///< smallest ratio
  double ratio_max = 0.0;            ///< largest ratio
  std::size_t skipped_groups = 0;    ///< CoPG: groups with fewer than two scorable completions (they contribute 0); 0 for the other losses
};

/// Loss value and diagnostics; the coefficients go to the caller's span.
struct surrogate_result {
  double loss = 0.0;                ///< aggregated loss
  surrogate_diagnostics diagnostics;  ///< clip fractions, KL, ratio statistics
};

namespace detail {

// Derivative bookkeeping for one token of the clipped surrogate: value of the policy term and its
// derivative with respect to rho.
struct clip_eval {
  double value;
  double d_rho;
  bool low, high, dual;
};

inline clip_eval clipped_policy_term(double rho, double a, double lo, double hi, double delta, double c) noexcept {
  const double rho_c = std::min(std::max(rho, lo), hi);
  const double dc = (rho >= lo && rho <= hi) ? 1.0 : 0.0;
  double rho_u = rho, du = 1.0;
  if (delta > 0.0 && rho > delta) {
    rho_u = delta;
    du = 0.0;
  }
  const double x1 = -a * rho_u, x2 = -a * rho_c;
  clip_eval e;
  if (x1 > x2) {
    e.value = x1;
    e.d_rho = -a * du;
  } else if (x2 > x1) {
    e.value = x2;
    e.d_rho = -a * dc;
  } else {
    e.value = x1;
    e.d_rho = 0.5 * (-a * du - a * dc);
  }
  // TRL's clip metrics read coef_1 after `coef_1 = clamp(coef_1, max=delta)`: rho_u, not rho.
  e.low = rho_u < lo && a < 0.0;
  e.high = rho_u > hi && a > 0.0;
  e.dual = false;
  if (c > 0.0 && a < 0.0) {
    const double x3 = -a * c;
    if (x3 < e.value) {
      e.value = x3;
      e.d_rho = 0.0;
      e.dual = true;
    } else if (x3 == e.value) {
      e.d_rho *= 0.5;
    }
  }
  return e;
}

// Weight of every active token of a row with `cnt` active tokens (before the mask factor).
inline double row_weight(const surrogate_options& o, double cnt, double M, std::size_t B, std::size_t L,
                       std::size_t active_rows) {
  const double Bd = static_cast<double>(B);
  const double acc = static_cast<double>(o.gradient_accumulation_steps);
  const loss_convention cv = o.convention;
  switch (o.aggregation) {
    case loss_aggregation::seq_mean_token_mean:
      if (cv == loss_convention::trl) return 1.0 / (Bd * std::max(cnt, 1.0)) / acc;
      if (cv == loss_convention::verl) {
        if (cnt == 0.0) {
          throw invalid_argument(
              "clipped_surrogate: a fully masked sequence under the verl seq_mean_token_mean convention (the BNPO "
              "repository's verl divides 0 by 0 and its loss is NaN); use loss_convention::trl or verl_upstream");
        }
        return 1.0 / (Bd * cnt) / acc;
      }
      return cnt == 0.0 ? 0.0 : 1.0 / (static_cast<double>(active_rows) * (cnt + 1e-8)) / acc;
    case loss_aggregation::token_mean:
      if (cv == loss_convention::trl) return 1.0 / std::max(M, 1.0) / acc;
      if (cv == loss_convention::verl) return 1.0 / (M + 1e-8) / acc;
      return M == 0.0 ? 0.0 : 1.0 / M / acc;
    case loss_aggregation::dr_grpo: {
      const double lmax = static_cast<double>(o.max_completion_length != 0 ? o.max_completion_length : L);
      return 1.0 / (Bd * lmax) / acc;
    }
    case loss_aggregation::dapo: {
      const double ng = o.global_active_tokens > 0.0 ? o.global_active_tokens : M;
      return static_cast<double>(o.num_processes) / std::max(ng, 1.0);
    }
    case loss_aggregation::seq_mean_token_sum:
      if (cv == loss_convention::verl_upstream) {
        return cnt == 0.0 ? 0.0 : 1.0 / static_cast<double>(active_rows) / acc;
      }
      return 1.0 / Bd / acc;
    case loss_aggregation::seq_mean_token_sum_norm:
    default:
      return 1.0 / static_cast<double>(L) / acc;
  }
}

template <class M>
inline double mask_at(std::span<const M> mask, std::size_t i) noexcept;

// Sum of the mask over [begin, begin + L) (L when the mask is empty). Four partial sums break the
// addition chain; for 0/1 masks every partial sum is an exact integer, so the order is irrelevant.
template <class M>
inline double mask_sum(std::span<const M> mask, std::size_t begin, std::size_t L) noexcept {
  if (mask.empty()) return static_cast<double>(L);
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  std::size_t t = 0;
  const M* p = mask.data() + begin;
  for (; t + 4 <= L; t += 4) {
    s0 += static_cast<double>(p[t]);
    s1 += static_cast<double>(p[t + 1]);
    s2 += static_cast<double>(p[t + 2]);
    s3 += static_cast<double>(p[t + 3]);
  }
  for (; t < L; ++t) s0 += static_cast<double>(p[t]);
  return (s0 + s1) + (s2 + s3);
}

// Sums of one row for the diagnostics and the loss.
struct row_sums {
  double loss = 0.0, low = 0.0, high = 0.0, dual = 0.0, kl = 0.0, akl = 0.0, rho = 0.0;
  double rho_min = std::numeric_limits<double>::infinity(), rho_max = -std::numeric_limits<double>::infinity();
  double seq_drho = 0.0;               // sequence level: sum over the row of W m dl/drho_seq
  bool any_low = false, any_high = false;  // sequence level: some active token in a clip region
};

// One row in SIMD registers of double, token-level ratio or (with `seq`) the row's sequence-level
// ratio `rho_seq`: the same formulas as the scalar loop of `clipped_surrogate::evaluate` (ties and
// clamps included; at sequence level the coefficients written are the direct (KL) part only and
// the caller adds the part through rho_seq from `out.seq_drho`), each chunk of the row gathered into
// aligned double buffers (any T, any mask type, empty old/ref, per-sequence or per-token
// advantages, padded tail with mask 0; direct loads for full chunks of double data). Returns false
// if an active token has a non-finite input: the caller then runs the scalar loop over the row,
// which throws with the index (coefficients already written for the row are then unspecified).
template <real_scalar T, class Mask>
bool token_row_simd(const surrogate_options& o, const token_batch<T, Mask>& b, std::size_t n, double W,
                    bool per_token_adv, std::span<T> coef, row_sums& out, bool seq = false, double rho_seq = 1.0) {
  using V = xsimd::batch<double>;
  constexpr std::size_t Wd = V::size;
  const std::size_t L = b.length, row = n * L;
  const bool has_old = !b.old_logp.empty(), has_ref = !b.ref_logp.empty(), kl_on = has_ref;
  const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high, C = o.log_ratio_clamp;
  const double a_seq = per_token_adv ? 0.0 : static_cast<double>(b.advantages[n]);
  alignas(64) double blp[Wd], bold[Wd], bref[Wd], bm[Wd], ba[Wd], bc[Wd];
  const V vlo(lo), vhi(hi), vC(C), vneg_C(-C), vzero(0.0), vone(1.0), vhalf(0.5), vW(W), vbeta(o.beta);
  const V vinf(std::numeric_limits<double>::infinity()), vninf(-std::numeric_limits<double>::infinity());
  V s_loss(0.0), s_low(0.0), s_high(0.0), s_dual(0.0), s_kl(0.0), s_akl(0.0), s_rho(0.0), v_min = vinf, v_max = vninf;
  V s_seq(0.0), n_low(0.0), n_high(0.0);
  const V vrho_seq(rho_seq);
  constexpr bool direct_loads = std::is_same_v<T, double> && std::is_same_v<Mask, double>;
  for (std::size_t t0 = 0; t0 < L; t0 += Wd) {
    const std::size_t w = std::min(Wd, L - t0);
    V m, lp, old, ref, a;
    if (direct_loads && w == Wd) {
      const std::size_t i = row + t0;
      m = b.mask.empty() ? vone : V::load_unaligned(reinterpret_cast<const double*>(b.mask.data()) + i);
      lp = V::load_unaligned(reinterpret_cast<const double*>(b.logp.data()) + i);
      old = has_old ? V::load_unaligned(reinterpret_cast<const double*>(b.old_logp.data()) + i) : lp;
      ref = has_ref ? V::load_unaligned(reinterpret_cast<const double*>(b.ref_logp.data()) + i) : lp;
      a = per_token_adv ? V::load_unaligned(reinterpret_cast<const double*>(b.advantages.data()) + i) : V(a_seq);
    } else {
      for (std::size_t j = 0; j < Wd; ++j) {
        if (j < w) {
          const std::size_t i = row + t0 + j;
          bm[j] = mask_at(b.mask, i);
          blp[j] = static_cast<double>(b.logp[i]);
          bold[j] = has_old ? static_cast<double>(b.old_logp[i]) : blp[j];
          bref[j] = has_ref ? static_cast<double>(b.ref_logp[i]) : blp[j];
          ba[j] = per_token_adv ? static_cast<double>(b.advantages[i]) : a_seq;
        } else {
          bm[j] = blp[j] = bold[j] = bref[j] = ba[j] = 0.0;
        }
      }
      m = V::load_aligned(bm);
      lp = V::load_aligned(blp);
      old = V::load_aligned(bold);
      ref = V::load_aligned(bref);
      a = V::load_aligned(ba);
    }
    const auto active = m != vzero;
    // Active tokens must be finite (else the caller's scalar loop throws with the index);
    // inactive lanes are neutralized so that padding garbage cannot leak into sums.
    if (!xsimd::all(xsimd::isfinite(lp) && xsimd::isfinite(old) && xsimd::isfinite(ref) && xsimd::isfinite(a) ||
                    !active)) {
      return false;
    }
    lp = xsimd::select(active, lp, vzero);
    old = xsimd::select(active, old, vzero);
    ref = xsimd::select(active, ref, vzero);
    a = xsimd::select(active, a, vzero);
    const V lr = lp - old;
    V lrc, rho, drho;
    if (seq) {
      lrc = lr;  // the approximate-KL diagnostic uses the unclamped token log-ratio
      rho = vrho_seq;
      drho = vzero;
    } else {
      const auto pass = xsimd::abs(lr) <= vC;
      lrc = xsimd::min(xsimd::max(lr, vneg_C), vC);
      rho = simd::exp(lrc);
      drho = xsimd::select(pass, rho, vzero);
    }
    const V rho_c = xsimd::min(xsimd::max(rho, vlo), vhi);
    const V dc = xsimd::select((rho >= vlo) && (rho <= vhi), vone, vzero);
    V rho_u = rho, du = vone;
    if (o.delta > 0.0) {
      const auto over = rho > V(o.delta);
      rho_u = xsimd::select(over, V(o.delta), rho);
      du = xsimd::select(over, vzero, vone);
    }
    const V na = -a;
    const V x1 = na * rho_u, x2 = na * rho_c;
    V val = xsimd::max(x1, x2);
    const V d1 = na * du, d2 = na * dc;
    V dl = xsimd::select(x1 > x2, d1, xsimd::select(x2 > x1, d2, vhalf * (d1 + d2)));
    const auto low = (rho_u < vlo) && (a < vzero);  // rho_u = min(rho, delta): TRL's metrics (see clipped_policy_term)
    const auto high = (rho_u > vhi) && (a > vzero);
    V dual_m = vzero;
    if (o.dual_clip > 0.0) {
      const auto neg = a < vzero;
      const V x3 = na * V(o.dual_clip);
      const auto dual = neg && (x3 < val);
      const auto tie = neg && (x3 == val);
      val = xsimd::select(dual, x3, val);
      dl = xsimd::select(dual, vzero, xsimd::select(tie, vhalf * dl, dl));
      dual_m = xsimd::select(dual, m, vzero);
    }
    V direct = dl * drho;
    V via_seq = dl;
    if (kl_on) {
      const V d = ref - lp;
      const V ed = simd::exp(d);
      const V k3 = (ed - d) - vone;
      const V dk3 = vone - ed;
      V kl = k3;
      if (o.kl_bias_correction) {
        kl = k3 * rho;
        direct = direct + vbeta * (dk3 * rho + k3 * drho);
        via_seq = via_seq + vbeta * k3;
      } else {
        direct = direct + vbeta * dk3;
      }
      val = val + vbeta * kl;
      s_kl = s_kl + m * kl;
    }
    const V wm = vW * m;
    s_loss = s_loss + wm * val;
    if (seq) {
      s_seq = s_seq + wm * via_seq;
      n_low = n_low + xsimd::select(low && active, vone, vzero);
      n_high = n_high + xsimd::select(high && active, vone, vzero);
    }
    s_akl = s_akl - m * lrc;
    s_rho = s_rho + m * rho;
    s_low = s_low + xsimd::select(low, m, vzero);
    s_high = s_high + xsimd::select(high, m, vzero);
    s_dual = s_dual + dual_m;
    v_min = xsimd::min(v_min, xsimd::select(active, rho, vinf));
    v_max = xsimd::max(v_max, xsimd::select(active, rho, vninf));
    if (!coef.empty()) {
      if constexpr (std::is_same_v<T, double>) {
        if (w == Wd) {
          (wm * direct).store_unaligned(coef.data() + row + t0);
          continue;
        }
      }
      (wm * direct).store_aligned(bc);
      for (std::size_t j = 0; j < w; ++j) coef[row + t0 + j] = static_cast<T>(bc[j]);
    }
  }
  out.loss = simd::reduce_add(s_loss);
  out.seq_drho = simd::reduce_add(s_seq);
  out.any_low = simd::reduce_add(n_low) > 0.0;
  out.any_high = simd::reduce_add(n_high) > 0.0;
  out.low = simd::reduce_add(s_low);
  out.high = simd::reduce_add(s_high);
  out.dual = simd::reduce_add(s_dual);
  out.kl = simd::reduce_add(s_kl);
  out.akl = simd::reduce_add(s_akl);
  out.rho = simd::reduce_add(s_rho);
  v_min.store_aligned(bc);
  for (std::size_t j = 0; j < Wd; ++j) out.rho_min = std::min(out.rho_min, bc[j]);
  v_max.store_aligned(bc);
  for (std::size_t j = 0; j < Wd; ++j) out.rho_max = std::max(out.rho_max, bc[j]);
  return true;
}

template <class M>
inline double mask_at(std::span<const M> mask, std::size_t i) noexcept {
  return mask.empty() ? 1.0 : static_cast<double>(mask[i]);
}

}  // namespace detail

/// The clipped-surrogate estimator. Stateless apart from its options; `evaluate` does not allocate.
class clipped_surrogate {
 public:
  /// @throws invalid_argument for an option outside its range (named in the message)
  explicit clipped_surrogate(surrogate_options o = {}) : o_(o) {
    const char* w = "clipped_surrogate";
    detail::require(o.eps_low >= 0.0 && o.eps_low < 1.0, w, "eps_low", o.eps_low, "in [0, 1)");
    detail::require(o.eps_high >= 0.0 && std::isfinite(o.eps_high), w, "eps_high", o.eps_high, "finite and >= 0");
    detail::require(o.delta == 0.0 || (o.delta > 0.0 && std::isfinite(o.delta)), w, "delta", o.delta,
                    "0 (off) or finite and > 0");
    detail::require(o.dual_clip == 0.0 || (o.dual_clip > 1.0 && std::isfinite(o.dual_clip)), w, "dual_clip",
                    o.dual_clip, "0 (off) or finite and > 1");
    detail::require(o.beta >= 0.0 && std::isfinite(o.beta), w, "beta", o.beta, "finite and >= 0");
    detail::require(o.gradient_accumulation_steps >= 1, w, "gradient_accumulation_steps",
                    static_cast<double>(o.gradient_accumulation_steps), ">= 1");
    detail::require(o.num_processes >= 1, w, "num_processes", static_cast<double>(o.num_processes), ">= 1");
    detail::require(o.global_active_tokens >= 0.0 && std::isfinite(o.global_active_tokens), w,
                    "global_active_tokens", o.global_active_tokens, "finite and >= 0 (0 = local count)");
    detail::require(o.log_ratio_clamp > 0.0, w, "log_ratio_clamp", o.log_ratio_clamp, "> 0 (inf = off)");
  }

  /// The options.
  const surrogate_options& options() const noexcept { return o_; }

  /// Loss, per-token coefficients `coef[n*L + t] = dloss/dlogp[n*L + t]` (0 on masked tokens) and
  /// diagnostics. Pass an empty `coef` to compute only the loss and diagnostics.
  /// @throws size_mismatch on inconsistent spans; invalid_argument if beta > 0 without ref_logp, or
  ///         for an empty row under the verl seq_mean_token_mean convention (the reference's NaN);
  ///         nonfinite_error for a non-finite log-prob or advantage at an active token
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, std::span<T> coef = {}) const {
    const char* what = "clipped_surrogate";
    detail::check_token_batch(what, b, o_.beta != 0.0);
    const std::size_t B = b.sequences, L = b.length;
    if (!coef.empty()) detail::require_same_size(what, "coef", coef.size(), "sequences x length", B * L);
    const bool per_token_adv = b.advantages.size() != B;  // L == 1: both readings agree
    const bool has_old = !b.old_logp.empty(), has_ref = !b.ref_logp.empty();
    const bool seq = o_.level == ratio_level::sequence;
    const double lo = 1.0 - o_.eps_low, hi = 1.0 + o_.eps_high, C = o_.log_ratio_clamp;

    // Pass 1: token counts.
    double M = 0.0;
    std::size_t active_rows = 0;
    for (std::size_t n = 0; n < B; ++n) {
      const double cnt = detail::mask_sum(b.mask, n * L, L);
      M += cnt;
      if (cnt != 0.0) ++active_rows;
    }
    const double metric_den = o_.convention == loss_convention::trl ? M : M + 1e-8;

    surrogate_result res;
    surrogate_diagnostics& dg = res.diagnostics;
    dg.active_tokens = M;
    dg.active_sequences = active_rows;
    double low_tok = 0.0, high_tok = 0.0, dual_tok = 0.0, kl_sum = 0.0, akl_sum = 0.0, rho_sum = 0.0;
    double rho_min = std::numeric_limits<double>::infinity(), rho_max = -rho_min;
    double low_min = std::numeric_limits<double>::infinity(), high_max = -low_min;
    std::size_t low_seq = 0, high_seq = 0, region_seq = 0;
    double loss = 0.0;

    for (std::size_t n = 0; n < B; ++n) {
      const std::size_t row = n * L;
      const double cnt = detail::mask_sum(b.mask, row, L);
      const double W = detail::row_weight(o_, cnt, M, B, L, active_rows);
      // Sequence-level ratio.
      double lw_seq = 0.0, rho_seq = 1.0, pass_seq = 1.0;
      const double inv_cnt = 1.0 / std::max(cnt, 1.0);
      if (seq) {
        double s = 0.0;
        for (std::size_t t = 0; t < L; ++t) {
          const double m = detail::mask_at(b.mask, row + t);
          if (m == 0.0) continue;
          const double lp = load(b.logp, row + t, "logp", n, t);
          const double old = has_old ? load(b.old_logp, row + t, "old_logp", n, t) : lp;
          s += m * (lp - old);
        }
        lw_seq = s * inv_cnt;
        if (std::abs(lw_seq) > C) {
          lw_seq = std::copysign(C, lw_seq);
          pass_seq = 0.0;
        }
        rho_seq = std::exp(lw_seq);
      }
      double seq_drho = 0.0;  // sum over the row of W m dl/drho_seq
      double row_low = 0.0, row_high = 0.0;
      bool any_low = false, any_high = false;
      detail::row_sums rs;
      const bool fast = detail::token_row_simd(o_, b, n, W, per_token_adv, coef, rs, seq, rho_seq);
      if (fast) {
        loss += rs.loss;
        low_tok += rs.low;
        high_tok += rs.high;
        dual_tok += rs.dual;
        kl_sum += rs.kl;
        akl_sum += rs.akl;
        rho_sum += rs.rho;
        rho_min = std::min(rho_min, rs.rho_min);
        rho_max = std::max(rho_max, rs.rho_max);
        row_low = rs.low;
        row_high = rs.high;
        seq_drho = rs.seq_drho;
        any_low = rs.any_low;
        any_high = rs.any_high;
      }
      for (std::size_t t = 0; t < (fast ? 0 : L); ++t) {
        const std::size_t i = row + t;
        const double m = detail::mask_at(b.mask, i);
        if (m == 0.0) {
          if (!coef.empty()) coef[i] = T(0);
          continue;
        }
        const double lp = load(b.logp, i, "logp", n, t);
        const double old = has_old ? load(b.old_logp, i, "old_logp", n, t) : lp;
        const double a = load(b.advantages, per_token_adv ? i : n, "advantages", n, per_token_adv ? t : 0);
        double lr = lp - old, rho, drho_direct;
        double log_ratio_for_kl = lr;
        if (seq) {
          rho = rho_seq;
          drho_direct = 0.0;
        } else {
          double pass = 1.0;
          if (std::abs(lr) > C) {
            lr = std::copysign(C, lr);
            pass = 0.0;
          }
          log_ratio_for_kl = lr;
          rho = std::exp(lr);
          drho_direct = pass * rho;
        }
        const detail::clip_eval e = detail::clipped_policy_term(rho, a, lo, hi, o_.delta, o_.dual_clip);
        double l = e.value;
        double direct = e.d_rho * drho_direct;   // dl/dlogp through a token ratio
        double via_seq = seq ? e.d_rho : 0.0;    // dl/drho_seq
        double kl = 0.0;
        if (has_ref) {
          const double ref = load(b.ref_logp, i, "ref_logp", n, t);
          const double d = ref - lp;
          const double ed = std::exp(d);
          const double k3 = ed - d - 1.0;
          const double dk3 = 1.0 - ed;
          if (o_.kl_bias_correction) {
            kl = k3 * rho;
            if (o_.beta != 0.0) {
              direct += o_.beta * (dk3 * rho + k3 * drho_direct);
              if (seq) via_seq += o_.beta * k3;
            }
          } else {
            kl = k3;
            if (o_.beta != 0.0) direct += o_.beta * dk3;
          }
          l += o_.beta * kl;
          kl_sum += m * kl;
        }
        const double wm = W * m;
        loss += wm * l;
        if (!coef.empty()) coef[i] = static_cast<T>(wm * direct);
        seq_drho += wm * via_seq;
        // Diagnostics.
        akl_sum += m * (-log_ratio_for_kl);
        rho_sum += m * rho;
        rho_min = std::min(rho_min, rho);
        rho_max = std::max(rho_max, rho);
        if (e.low) {
          low_tok += m;
          row_low += m;
          any_low = true;
        }
        if (e.high) {
          high_tok += m;
          row_high += m;
          any_high = true;
        }
        if (e.dual) dual_tok += m;
      }
      if (seq && !coef.empty() && seq_drho != 0.0) {
        const double g = seq_drho * rho_seq * pass_seq * inv_cnt;
        for (std::size_t t = 0; t < L; ++t) {
          const double m = detail::mask_at(b.mask, row + t);
          if (m != 0.0) coef[row + t] = static_cast<T>(static_cast<double>(coef[row + t]) + g * m);
        }
      }
      if (cnt != 0.0) {
        if (seq) {
          const double fl = any_low ? 1.0 : 0.0, fh = any_high ? 1.0 : 0.0;
          low_seq += any_low ? 1 : 0;
          high_seq += any_high ? 1 : 0;
          region_seq += (any_low || any_high) ? 1 : 0;
          low_min = std::min(low_min, fl);
          high_max = std::max(high_max, fh);
        } else {
          low_min = std::min(low_min, row_low / cnt);
          high_max = std::max(high_max, row_high / cnt);
        }
      }
    }
    res.loss = loss;
    if (M > 0.0 && metric_den > 0.0) {
      if (seq) {
        const double ns = o_.convention == loss_convention::trl ? static_cast<double>(active_rows)
                                                                 : static_cast<double>(active_rows) + 1e-8;
        dg.clip_low_fraction = static_cast<double>(low_seq) / ns;
        dg.clip_high_fraction = static_cast<double>(high_seq) / ns;
        dg.clip_region_fraction = static_cast<double>(region_seq) / ns;
      } else {
        dg.clip_low_fraction = low_tok / metric_den;
        dg.clip_high_fraction = high_tok / metric_den;
        dg.clip_region_fraction = (low_tok + high_tok) / metric_den;
      }
      dg.dual_clip_fraction = dual_tok / metric_den;
      dg.mean_kl = has_ref ? kl_sum / metric_den : 0.0;
      dg.approx_kl = akl_sum / metric_den;
      dg.ratio_mean = rho_sum / M;
      dg.ratio_min = rho_min;
      dg.ratio_max = rho_max;
      dg.clip_low_min = low_min;
      dg.clip_high_max = high_max;
    }
    return res;
  }

 private:
  template <class T>
  static double load(std::span<const T> x, std::size_t i, const char* name, std::size_t n, std::size_t t) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) detail::throw_nonfinite("clipped_surrogate", name, n, t, v);
    return v;
  }

  surrogate_options o_;
};

/// Options of TRL's RLOO loss (`trl/trainer/rloo_trainer.py`, `rloo_config.py`).
struct rloo_options {
  double eps_low = 0.2;   ///< lower clip range; in [0, 1)
  double eps_high = 0.2;  ///< upper clip range; >= 0
};

/// TRL's RLOO loss: a sequence-level ratio `rho_n = exp(sum_t m_nt logp_nt - old_seq_logp_n)`
/// (the SUM of token log-probs, not GSPO's mean), clipped as in PPO, averaged over the B
/// sequences: `loss = mean_n -min(rho_n A_n, rho_c A_n)`. No KL term (RLOO puts the KL in the
/// reward: `kl_penalized_rewards`). The coefficient of token t of sequence n is
/// `m_nt / B * dpl/drho * rho_n`. Diagnostics count sequences.
/// @param o                  clip range: rho_c = clip(rho_n, 1 - eps_low, 1 + eps_high)
/// @param b                  the batch: `logp`, `mask` and per-sequence `advantages` (`[B]`) are read
/// @param old_sequence_logp  per-sequence `sum_t m old_logp` (`[B]`); `b.old_logp` and `b.ref_logp` are ignored
/// @param coef               `[B x L]` output, or empty for the loss only
/// @throws as `clipped_surrogate::evaluate`; advantages must be per sequence
template <real_scalar T, class Mask>
surrogate_result rloo_surrogate(const rloo_options& o, const token_batch<T, Mask>& b, std::span<const T> old_sequence_logp,
                                std::span<T> coef = {}) {
  const char* what = "rloo_surrogate";
  detail::require(o.eps_low >= 0.0 && o.eps_low < 1.0, what, "eps_low", o.eps_low, "in [0, 1)");
  detail::require(o.eps_high >= 0.0 && std::isfinite(o.eps_high), what, "eps_high", o.eps_high, "finite and >= 0");
  token_batch<T, Mask> v = b;
  v.ref_logp = {};
  v.old_logp = {};
  detail::check_token_batch(what, v, false);
  const std::size_t B = b.sequences, L = b.length;
  detail::require_same_size(what, "advantages", b.advantages.size(), "sequences", B);
  detail::require_same_size(what, "old_sequence_logp", old_sequence_logp.size(), "sequences", B);
  if (!coef.empty()) detail::require_same_size(what, "coef", coef.size(), "sequences x length", B * L);
  const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high, Bd = static_cast<double>(B);
  surrogate_result res;
  surrogate_diagnostics& dg = res.diagnostics;
  double loss = 0.0, rho_sum = 0.0, low = 0.0, high = 0.0;
  double rho_min = std::numeric_limits<double>::infinity(), rho_max = -rho_min;
  for (std::size_t n = 0; n < B; ++n) {
    const std::size_t row = n * L;
    double s = 0.0, cnt = 0.0;
    for (std::size_t t = 0; t < L; ++t) {
      const double m = detail::mask_at(b.mask, row + t);
      if (m == 0.0) continue;
      const double lp = static_cast<double>(b.logp[row + t]);
      if (!std::isfinite(lp)) detail::throw_nonfinite(what, "logp", n, t, lp);
      s += m * lp;
      cnt += m;
    }
    const double old = static_cast<double>(old_sequence_logp[n]);
    const double a = static_cast<double>(b.advantages[n]);
    if (!std::isfinite(old)) detail::throw_nonfinite(what, "old_sequence_logp", n, 0, old);
    if (!std::isfinite(a)) detail::throw_nonfinite(what, "advantages", n, 0, a);
    const double rho = std::exp(s - old);
    const detail::clip_eval e = detail::clipped_policy_term(rho, a, lo, hi, 0.0, 0.0);
    loss += e.value / Bd;
    const double g = e.d_rho * rho / Bd;
    if (!coef.empty()) {
      for (std::size_t t = 0; t < L; ++t) coef[row + t] = static_cast<T>(g * detail::mask_at(b.mask, row + t));
    }
    dg.active_tokens += cnt;
    if (cnt != 0.0) ++dg.active_sequences;
    rho_sum += rho;
    rho_min = std::min(rho_min, rho);
    rho_max = std::max(rho_max, rho);
    low += e.low ? 1.0 : 0.0;
    high += e.high ? 1.0 : 0.0;
  }
  res.loss = loss;
  dg.clip_low_fraction = low / Bd;
  dg.clip_high_fraction = high / Bd;
  dg.clip_region_fraction = (low + high) / Bd;
  dg.clip_low_min = dg.clip_low_fraction;
  dg.clip_high_max = dg.clip_high_fraction;
  dg.ratio_mean = rho_sum / Bd;
  dg.ratio_min = rho_min;
  dg.ratio_max = rho_max;
  return res;
}

}  // namespace stochgrad
