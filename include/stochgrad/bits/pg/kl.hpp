// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief KL estimators between the policy and a reference policy, per token, with their
/// derivative, and the KL-in-reward penalties of RLOO and verl (TRL `grpo_trainer.py`/`rloo_trainer.py`;
/// verl `core_algos.py` `kl_penalty`).
///
/// With `x = logp - ref_logp` per sampled token (samples from the policy):
/// | estimator | value | d value / d logp | peer name |
/// |---|---|---|---|
/// | `k1` | x | 1 | verl "kl" |
/// | `abs` | abs(x) | sign(x) (0 at 0) | verl "abs" |
/// | `k2` | x^2 / 2 | x | verl "mse" |
/// | `k3` | exp(-x) + x - 1, clamped to [-clamp, clamp] | 1 - exp(-x) inside the clamp, 0 outside | verl "low_var_kl" (clamp 10); TRL's loss KL (no clamp) |
/// k3 is >= 0, unbiased for KL(pi || pi_ref) over samples of pi, and has low variance.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>

#include "../config.hpp"
#include "../error.hpp"

namespace stochgrad {

/// Per-token KL estimator (see the file comment).
enum class kl_estimator { k1, abs, k2, k3 };

/// Per-token KL estimates and their derivative with respect to logp.
/// @param k       estimator
/// @param logp    log pi_theta of the sampled tokens
/// @param ref     log pi_ref of the same tokens
/// @param value   output (same length), or empty
/// @param grad    output d value / d logp (same length), or empty
/// @param clamp   k3 only: clamp of the value (verl low_var_kl: 10; infinity = TRL's unclamped k3)
/// @throws size_mismatch on different lengths; invalid_argument unless clamp > 0
template <real_scalar T>
void kl_penalty(kl_estimator k, std::span<const T> logp, std::span<const T> ref, std::span<T> value, std::span<T> grad,
                double clamp = 10.0) {
  detail::require_same_size("kl_penalty", "logp", logp.size(), "ref_logp", ref.size());
  if (!value.empty()) detail::require_same_size("kl_penalty", "logp", logp.size(), "value", value.size());
  if (!grad.empty()) detail::require_same_size("kl_penalty", "logp", logp.size(), "grad", grad.size());
  detail::require(clamp > 0.0, "kl_penalty", "clamp", clamp, "> 0 (infinity = off)");
  for (std::size_t i = 0; i < logp.size(); ++i) {
    const double x = static_cast<double>(logp[i]) - static_cast<double>(ref[i]);
    double v, g;
    switch (k) {
      case kl_estimator::k1:
        v = x;
        g = 1.0;
        break;
      case kl_estimator::abs:
        v = std::abs(x);
        g = x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0);
        break;
      case kl_estimator::k2:
        v = 0.5 * x * x;
        g = x;
        break;
      case kl_estimator::k3:
      default: {
        const double e = std::exp(-x);
        v = e + x - 1.0;
        g = 1.0 - e;
        if (v > clamp || v < -clamp) {
          v = std::copysign(clamp, v);
          g = 0.0;
        }
        break;
      }
    }
    if (!value.empty()) value[i] = static_cast<T>(v);
    if (!grad.empty()) grad[i] = static_cast<T>(g);
  }
}

/// RLOO's KL in the reward (TRL, beta != 0): `r_n -= beta * sum_t m_nt (old_logp_nt - ref_logp_nt)`
/// (the k1 estimate summed over the completion; it can be negative). Rows are `[B x L]`.
/// @throws size_mismatch on inconsistent sizes; invalid_argument for a non-finite beta
template <real_scalar T, class M = T>
void kl_penalized_rewards(std::span<T> rewards, std::span<const T> old_logp, std::span<const T> ref_logp,
                          std::span<const M> mask, std::size_t length, double beta) {
  detail::require(std::isfinite(beta), "kl_penalized_rewards", "beta", beta, "finite");
  const std::size_t n = detail::checked_product("kl_penalized_rewards", "rewards", rewards.size(), "length", length);
  detail::require_same_size("kl_penalized_rewards", "old_logp", old_logp.size(), "rewards x length", n);
  detail::require_same_size("kl_penalized_rewards", "ref_logp", ref_logp.size(), "rewards x length", n);
  if (!mask.empty()) detail::require_same_size("kl_penalized_rewards", "mask", mask.size(), "rewards x length", n);
  for (std::size_t s = 0; s < rewards.size(); ++s) {
    double kl = 0.0;
    for (std::size_t t = 0; t < length; ++t) {
      const std::size_t i = s * length + t;
      const double m = mask.empty() ? 1.0 : static_cast<double>(mask[i]);
      kl += (static_cast<double>(old_logp[i]) - static_cast<double>(ref_logp[i])) * m;
    }
    rewards[s] = static_cast<T>(static_cast<double>(rewards[s]) - beta * kl);
  }
}

/// verl's per-token KL-in-reward (`compute_rewards`): `out = scores - kl_ratio * (old - ref)`.
/// @throws size_mismatch on different lengths
template <real_scalar T>
void kl_token_rewards(std::span<const T> scores, std::span<const T> old_logp, std::span<const T> ref_logp,
                      double kl_ratio, std::span<T> out) {
  detail::require_same_size("kl_token_rewards", "scores", scores.size(), "old_logp", old_logp.size());
  detail::require_same_size("kl_token_rewards", "scores", scores.size(), "ref_logp", ref_logp.size());
  detail::require_same_size("kl_token_rewards", "scores", scores.size(), "out", out.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const double kl = static_cast<double>(old_logp[i]) - static_cast<double>(ref_logp[i]);
    out[i] = static_cast<T>(static_cast<double>(scores[i]) - kl * kl_ratio);
  }
}

}  // namespace stochgrad
