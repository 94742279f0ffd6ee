// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `token_batch`: views of one micro-batch of B completions padded to length L, as a
/// framework hands them over (row-major `[B x L]` spans), and small token-level helpers.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"

namespace stochgrad {

/// Views of one micro-batch: B sequences (completions) padded to L tokens, row-major `[B x L]`.
/// Nothing is owned or copied.
/// @tparam T  log-probability / advantage type (float or double)
/// @tparam M  mask element type (any arithmetic type: bool, integers, float); a token counts with
///            weight `m` (0/1 in practice), exactly as the peer code multiplies by its mask
template <real_scalar T, class M = T>
struct token_batch {
  static_assert(std::is_arithmetic_v<M>, "stochgrad::token_batch: the mask type M must be arithmetic");
  std::size_t sequences = 0;        ///< B
  std::size_t length = 0;           ///< L (padded length)
  std::span<const T> logp;          ///< log pi_theta(token), `[B x L]` (required)
  std::span<const T> old_logp;      ///< log pi_old(token), `[B x L]`; empty = on-policy (old = logp, ratio 1)
  std::span<const T> ref_logp;      ///< log pi_ref(token), `[B x L]`; required when the KL coefficient is not 0
  std::span<const M> mask;          ///< completion mask `[B x L]`; empty = every token counts
  std::span<const T> advantages;    ///< per sequence `[B]` or per token `[B x L]`
};

namespace detail {

[[noreturn]] inline void throw_nonfinite(const char* what, const char* name, std::size_t row, std::size_t col, double v) {
  throw nonfinite_error(std::string(what) + ": " + name + "[" + std::to_string(row) + "][" + std::to_string(col) +
                        "] = " + num_to_string(v) + " is not finite (active token)");
}

/// Masks are validated like log-probs: a floating-point mask entry must be finite (a NaN entry is
/// "active" since NaN != 0, and it would write NaN into every parameter). `L` >= 1 is the row length.
/// @throws nonfinite_error naming the first non-finite entry
template <class M>
void check_mask_finite(const char* what, std::span<const M> mask, std::size_t L) {
  if constexpr (std::is_floating_point_v<M>) {
    bool ok = true;
    for (const M m : mask) ok &= std::isfinite(m);  // branch-free scan; the index is looked up on failure
    if (!ok) {
      for (std::size_t i = 0; i < mask.size(); ++i) {
        if (!std::isfinite(mask[i])) throw_nonfinite(what, "mask", i / L, i % L, static_cast<double>(mask[i]));
      }
    }
  }
}

template <real_scalar T, class M>
void check_token_batch(const char* what, const token_batch<T, M>& b, bool need_ref) {
  require(b.sequences >= 1, what, "sequences (empty batch)", static_cast<double>(b.sequences), ">= 1");
  require(b.length >= 1, what, "length", static_cast<double>(b.length), ">= 1");
  const std::size_t n = checked_product(what, "sequences", b.sequences, "length", b.length);
  require_same_size(what, "logp", b.logp.size(), "sequences x length", n);
  if (!b.old_logp.empty()) require_same_size(what, "old_logp", b.old_logp.size(), "sequences x length", n);
  if (need_ref || !b.ref_logp.empty()) {
    if (b.ref_logp.empty()) {
      throw invalid_argument(std::string(what) + ": ref_logp is empty but the KL coefficient beta is not 0");
    }
    require_same_size(what, "ref_logp", b.ref_logp.size(), "sequences x length", n);
  }
  if (!b.mask.empty()) {
    require_same_size(what, "mask", b.mask.size(), "sequences x length", n);
    check_mask_finite(what, b.mask, b.length);
  }
  if (b.advantages.size() != b.sequences && b.advantages.size() != n) {
    throw size_mismatch(std::string(what) + ": advantages has " + std::to_string(b.advantages.size()) +
                        " elements; expected sequences = " + std::to_string(b.sequences) +
                        " (per sequence) or sequences x length = " + std::to_string(n) + " (per token)");
  }
}


}  // namespace detail

/// Sequence scores from token-level rewards: `out[n] = sum_t token_rewards[n*L + t]` over all L
/// positions, as verl and BNPO do (the outcome reward usually sits on the last valid token).
/// @throws size_mismatch if `token_rewards.size() != out.size() * L`
template <real_scalar T>
void sum_tokens(std::span<const T> token_rewards, std::size_t length, std::span<T> out) {
  detail::checked_product("sum_tokens", "out.size()", out.size(), "length", length);
  if (token_rewards.size() != out.size() * length) {
    throw size_mismatch("sum_tokens: token_rewards has " + std::to_string(token_rewards.size()) +
                        " elements but out.size() x length = " + std::to_string(out.size() * length));
  }
  for (std::size_t n = 0; n < out.size(); ++n) {
    double s = 0.0;
    for (std::size_t t = 0; t < length; ++t) s += static_cast<double>(token_rewards[n * length + t]);
    out[n] = static_cast<T>(s);
  }
}

/// Per-token advantages `out[n*L + t] = adv[n] * mask[n*L + t]` (verl's broadcast; empty mask =
/// all ones). @throws size_mismatch on inconsistent sizes
template <real_scalar T, class M = T>
void broadcast_tokens(std::span<const T> adv, std::span<const M> mask, std::size_t length, std::span<T> out) {
  detail::checked_product("broadcast_tokens", "adv.size()", adv.size(), "length", length);
  if (out.size() != adv.size() * length || (!mask.empty() && mask.size() != out.size())) {
    throw size_mismatch("broadcast_tokens: expected out (and mask) of " + std::to_string(adv.size() * length) +
                        " elements");
  }
  for (std::size_t n = 0; n < adv.size(); ++n) {
    for (std::size_t t = 0; t < length; ++t) {
      const std::size_t i = n * length + t;
      const double m = mask.empty() ? 1.0 : static_cast<double>(mask[i]);
      out[i] = static_cast<T>(static_cast<double>(adv[n]) * m);
    }
  }
}

}  // namespace stochgrad
