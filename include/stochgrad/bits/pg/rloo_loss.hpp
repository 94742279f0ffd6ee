// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `rloo_loss`: TRL's RLOO loss (`trl/trainer/rloo_trainer.py`) as a surrogate policy of the
/// `score_function` estimator (bits/pg/score_function.hpp), next to `clipped_surrogate`.
///
/// Per sequence n of a `[B x L]` batch with mask m:
///
///     old_n = sum_t m_nt old_logp_nt          (the sampling policy's sequence log-probability;
///                                              logp itself when old_logp is empty: ratio 1)
///     rho_n = exp( sum_t m_nt logp_nt - old_n )
///     loss  = mean_n -min(rho_n A_n, clip(rho_n, 1 - eps_low, 1 + eps_high) A_n)
///
/// i.e. `rloo_surrogate` of bits/pg/surrogate.hpp with the old sequence log-probabilities formed
/// from the token ones. There is no KL term in the loss (RLOO puts its KL in the reward:
/// `kl_penalized_rewards`, bits/pg/kl.hpp); `ref_logp` is ignored. On-policy (ratio 1) the
/// gradient is `-(1/B) sum_n A_n sum_t m_nt grad logp_nt`: REINFORCE with a leave-one-out baseline.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

/// TRL's RLOO loss as a surrogate policy (see the file comment). Keeps a per-sequence scratch
/// buffer that grows only (so `evaluate` allocates only when B exceeds every earlier B); one
/// object must not be used by two threads at once.
class rloo_loss {
 public:
  /// The options type (`score_function` accepts it in place of the loss object).
  using options_type = rloo_options;
  /// Identifies a `score_function<rloo_loss>` in saved state.
  static constexpr const char* estimator_name = "score_function_rloo";

  /// TRL's defaults (eps 0.2 on both sides).
  rloo_loss() = default;
  /// @throws invalid_argument unless eps_low in [0, 1) and eps_high finite and >= 0
  explicit rloo_loss(rloo_options o) : o_(o) {
    detail::require(o.eps_low >= 0.0 && o.eps_low < 1.0, "rloo_loss", "eps_low", o.eps_low, "in [0, 1)");
    detail::require(o.eps_high >= 0.0 && std::isfinite(o.eps_high), "rloo_loss", "eps_high", o.eps_high,
                    "finite and >= 0");
  }

  /// The options.
  const rloo_options& options() const noexcept { return o_; }

  /// Loss, per-token coefficients `coef[n*L + t] = dloss/dlogp` (0 on masked tokens; empty `coef`:
  /// loss only) and diagnostics (fractions over sequences). Advantages must be per sequence.
  /// @throws size_mismatch on inconsistent spans; nonfinite_error for a non-finite log-prob at an
  ///         active token, or a non-finite advantage
  template <real_scalar T, class Mask>
  surrogate_result evaluate(const token_batch<T, Mask>& b, std::span<T> coef = {}) const {
    const char* what = "rloo_loss";
    token_batch<T, Mask> v = b;
    v.ref_logp = {};
    detail::check_token_batch(what, v, false);
    const std::size_t B = b.sequences, L = b.length;
    std::vector<T>& old = scratch<T>();
    if (old.size() < B) old.resize(B);
    const bool has_old = !b.old_logp.empty();
    for (std::size_t n = 0; n < B; ++n) {
      double s = 0.0;
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t i = n * L + t;
        const double m = detail::mask_at(b.mask, i);
        if (m == 0.0) continue;
        const double x = static_cast<double>(has_old ? b.old_logp[i] : b.logp[i]);
        if (!std::isfinite(x)) detail::throw_nonfinite(what, has_old ? "old_logp" : "logp", n, t, x);
        s += m * x;
      }
      old[n] = static_cast<T>(s);
    }
    return rloo_surrogate(o_, b, std::span<const T>(old.data(), B), coef);
  }

 private:
  template <class T>
  std::vector<T>& scratch() const noexcept {
    if constexpr (std::is_same_v<T, float>) {
      return old_f_;
    } else {
      return old_d_;
    }
  }

  rloo_options o_{};
  mutable std::vector<float> old_f_;
  mutable std::vector<double> old_d_;
};

}  // namespace stochgrad
