// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief A small autoregressive policy for a verifiable-reward task: emit the digits of `a + b`
/// token by token (policy-gradient test problem for GRPO, BNPO, RLOO, REINFORCE).
///
/// Task: `a`, `b` uniform in [0, 10^D) (D = `digits`, default 2). The answer is `a + b` written with
/// L = D + 1 digits, least significant first (e.g. 47 + 85 = 132 -> tokens 2, 3, 1). The reward of
/// a completion is 1 if every token is right, else 0 (verifiable, sparse: a uniform policy succeeds
/// with probability 10^-L).
///
/// Policy: a linear softmax model over context features. At answer position k the context is
/// - the digit pair and the incoming carry of the true sum, one-hot over 10 x 10 x 2 = 200 values
///   (`20 a_k + 2 b_k + c_k`; digits beyond the operands are 0),
/// - the position k (one-hot over L),
/// - the previously emitted token (one-hot over 10; none at k = 0), which makes the policy
///   autoregressive: the log-probabilities depend on the sampled prefix.
/// Logits `z_v = sum_{f active} W[v, f]` for the 10 tokens v; parameters `W` row-major
/// `[10 x F]` with F = 200 + L + 10. With `W = 0` every token has probability 1/10.
///
/// Everything a trainer needs: prompts and completions drawn from counter-based streams (a sample
/// is a pure function of its key and index), per-token log-probabilities, the exact reward, and
/// the vector-Jacobian product `grad += sum_t c_t d logp_t / dW` that turns per-token coefficients
/// (bits/pg/surrogate.hpp) into a parameter gradient. No allocation per call.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"

namespace stochgrad::problems {

/// One prompt: the two operands.
struct addition_prompt {
  std::uint32_t a = 0;  ///< first operand
  std::uint32_t b = 0;  ///< second operand
};

/// The addition task and its linear softmax policy (see the file comment).
/// @tparam T parameter and log-probability type
template <real_scalar T>
class addition_policy {
 public:
  using value_type = T;                      ///< parameter type
  static constexpr std::size_t vocab = 10;   ///< tokens 0..9
  static constexpr std::size_t pair_features = 200;  ///< (a_k, b_k, carry_k)

  /// @param digits operand digits D in [1, 9]
  /// @throws invalid_argument otherwise
  explicit addition_policy(unsigned digits = 2) : digits_(digits) {
    detail::require(digits >= 1 && digits <= 9, "addition_policy", "digits", digits, "in [1, 9]");
    modulus_ = 1;
    for (unsigned i = 0; i < digits; ++i) modulus_ *= 10;
  }

  /// Operand digits D.
  unsigned digits() const noexcept { return digits_; }
  /// Completion length L = D + 1.
  std::size_t length() const noexcept { return digits_ + 1; }
  /// Features per position F = 200 + L + 10.
  std::size_t features() const noexcept { return pair_features + length() + vocab; }
  /// Number of parameters 10 F.
  std::size_t dimension() const noexcept { return vocab * features(); }

  /// Fills `out` with prompts drawn uniformly from the stream `key` (prompt i uses elements 2i, 2i+1).
  void make_prompts(const noise_key& key, std::span<addition_prompt> out) const noexcept {
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i].a = draw_operand(key, 2 * i);
      out[i].b = draw_operand(key, 2 * i + 1);
    }
  }

  /// The correct answer tokens of prompt p (L digits of a + b, least significant first).
  void answer(const addition_prompt& p, std::span<std::uint8_t> out) const {
    detail::require_same_size("addition_policy::answer", "out", out.size(), "length", length());
    std::uint64_t s = static_cast<std::uint64_t>(p.a) + p.b;
    for (std::size_t k = 0; k < length(); ++k) {
      out[k] = static_cast<std::uint8_t>(s % 10);
      s /= 10;
    }
  }

  /// Reward of one completion: 1 if it equals the answer, else 0.
  double reward(const addition_prompt& p, std::span<const std::uint8_t> tokens) const {
    detail::require_same_size("addition_policy::reward", "tokens", tokens.size(), "length", length());
    std::uint64_t s = static_cast<std::uint64_t>(p.a) + p.b;
    for (std::size_t k = 0; k < length(); ++k) {
      if (tokens[k] != s % 10) return 0.0;
      s /= 10;
    }
    return 1.0;
  }

  /// Samples one completion per entry of `prompts` (pass each prompt G times for a group of G):
  /// token k of sample n uses the uniform `noise_at<uniform>(key, n L + k)` and inverse-CDF
  /// sampling. Writes the tokens `[N x L]`, their log-probabilities `[N x L]` and the rewards `[N]`.
  /// @throws size_mismatch on inconsistent sizes
  void sample(std::span<const T> theta, std::span<const addition_prompt> prompts, const noise_key& key,
              std::span<std::uint8_t> tokens, std::span<T> logp, std::span<T> rewards) const {
    const char* w = "addition_policy::sample";
    const std::size_t N = prompts.size(), L = length();
    detail::require_same_size(w, "theta", theta.size(), "dimension", dimension());
    detail::require_same_size(w, "tokens", tokens.size(), "prompts x length", N * L);
    detail::require_same_size(w, "logp", logp.size(), "prompts x length", N * L);
    detail::require_same_size(w, "rewards", rewards.size(), "prompts", N);
    double lp[vocab];
    for (std::size_t n = 0; n < N; ++n) {
      int prev = -1;
      for (std::size_t k = 0; k < L; ++k) {
        log_softmax(theta, prompts[n], k, prev, lp);
        const double u = static_cast<double>(noise_at<uniform>(key, n * L + k));
        double cdf = 0.0;
        std::size_t v = 0;
        for (; v + 1 < vocab; ++v) {
          cdf += std::exp(lp[v]);
          if (u < cdf) break;
        }
        tokens[n * L + k] = static_cast<std::uint8_t>(v);
        logp[n * L + k] = static_cast<T>(lp[v]);
        prev = static_cast<int>(v);
      }
      rewards[n] = static_cast<T>(reward(prompts[n], tokens.subspan(n * L, L)));
    }
  }

  /// Log-probabilities `[N x L]` of given completions under `theta` (teacher forcing).
  void log_probs(std::span<const T> theta, std::span<const addition_prompt> prompts,
                 std::span<const std::uint8_t> tokens, std::span<T> logp) const {
    const char* w = "addition_policy::log_probs";
    const std::size_t N = prompts.size(), L = length();
    detail::require_same_size(w, "theta", theta.size(), "dimension", dimension());
    detail::require_same_size(w, "tokens", tokens.size(), "prompts x length", N * L);
    detail::require_same_size(w, "logp", logp.size(), "prompts x length", N * L);
    double lp[vocab];
    for (std::size_t n = 0; n < N; ++n) {
      int prev = -1;
      for (std::size_t k = 0; k < L; ++k) {
        const std::uint8_t y = check_token(tokens[n * L + k]);
        log_softmax(theta, prompts[n], k, prev, lp);
        logp[n * L + k] = static_cast<T>(lp[y]);
        prev = y;
      }
    }
  }

  /// Vector-Jacobian product: `grad += sum_{n,t} coef[n L + t] * d logp[n L + t] / d theta`. With
  /// the coefficients dLoss/dlogp of a surrogate this accumulates the loss gradient. For the softmax,
  /// `d logp_t / d W[v, f] = (1[v = y_t] - pi_v) x_f` over the active features f of position t.
  void accumulate_gradient(std::span<const T> theta, std::span<const addition_prompt> prompts,
                           std::span<const std::uint8_t> tokens, std::span<const T> coef, std::span<T> grad) const {
    const char* w = "addition_policy::accumulate_gradient";
    const std::size_t N = prompts.size(), L = length(), F = features();
    detail::require_same_size(w, "theta", theta.size(), "dimension", dimension());
    detail::require_same_size(w, "grad", grad.size(), "dimension", dimension());
    detail::require_same_size(w, "tokens", tokens.size(), "prompts x length", N * L);
    detail::require_same_size(w, "coef", coef.size(), "prompts x length", N * L);
    double lp[vocab];
    std::size_t f[3];
    for (std::size_t n = 0; n < N; ++n) {
      int prev = -1;
      for (std::size_t k = 0; k < L; ++k) {
        const std::uint8_t y = check_token(tokens[n * L + k]);
        const double c = static_cast<double>(coef[n * L + k]);
        if (c != 0.0) {
          const std::size_t nf = active_features(prompts[n], k, prev, f);
          log_softmax(theta, prompts[n], k, prev, lp);
          for (std::size_t v = 0; v < vocab; ++v) {
            const double g = c * ((v == y ? 1.0 : 0.0) - std::exp(lp[v]));
            for (std::size_t j = 0; j < nf; ++j) {
              T& gv = grad[v * F + f[j]];
              gv = static_cast<T>(static_cast<double>(gv) + g);
            }
          }
        }
        prev = y;
      }
    }
  }

  /// Fraction of prompts answered exactly by greedy (argmax) decoding.
  double greedy_accuracy(std::span<const T> theta, std::span<const addition_prompt> prompts) const {
    detail::require_same_size("addition_policy::greedy_accuracy", "theta", theta.size(), "dimension", dimension());
    if (prompts.empty()) return 0.0;
    double lp[vocab];
    std::size_t correct = 0;
    for (const addition_prompt& p : prompts) {
      std::uint64_t s = static_cast<std::uint64_t>(p.a) + p.b;
      int prev = -1;
      bool ok = true;
      for (std::size_t k = 0; k < length(); ++k) {
        log_softmax(theta, p, k, prev, lp);
        const auto y = static_cast<std::size_t>(std::max_element(lp, lp + vocab) - lp);
        ok = ok && y == s % 10;
        s /= 10;
        prev = static_cast<int>(y);
      }
      correct += ok ? 1 : 0;
    }
    return static_cast<double>(correct) / static_cast<double>(prompts.size());
  }

 private:
  std::uint32_t draw_operand(const noise_key& key, std::uint64_t e) const noexcept {
    const double u = static_cast<double>(noise_at<uniform>(key, e));
    const auto v = static_cast<std::uint32_t>(u * static_cast<double>(modulus_));
    return std::min(v, modulus_ - 1);
  }

  static std::uint8_t check_token(std::uint8_t y) {
    if (y >= vocab) {
      throw invalid_argument("addition_policy: token = " + std::to_string(y) + ", must be in [0, 9]");
    }
    return y;
  }

  // Active feature indices at position k (value 1 each): digit pair + carry, position, previous token.
  std::size_t active_features(const addition_prompt& p, std::size_t k, int prev, std::size_t* f) const noexcept {
    std::uint32_t a = p.a, b = p.b, carry = 0;
    for (std::size_t i = 0; i < k; ++i) {
      carry = (a % 10 + b % 10 + carry) >= 10 ? 1 : 0;
      a /= 10;
      b /= 10;
    }
    f[0] = 20 * (a % 10) + 2 * (b % 10) + carry;
    f[1] = pair_features + k;
    if (prev < 0) return 2;
    f[2] = pair_features + length() + static_cast<std::size_t>(prev);
    return 3;
  }

  void log_softmax(std::span<const T> theta, const addition_prompt& p, std::size_t k, int prev, double* lp) const {
    std::size_t f[3];
    const std::size_t nf = active_features(p, k, prev, f);
    const std::size_t F = features();
    double mx = -INFINITY;
    for (std::size_t v = 0; v < vocab; ++v) {
      double z = 0.0;
      for (std::size_t j = 0; j < nf; ++j) z += static_cast<double>(theta[v * F + f[j]]);
      lp[v] = z;
      mx = std::max(mx, z);
    }
    double s = 0.0;
    for (std::size_t v = 0; v < vocab; ++v) s += std::exp(lp[v] - mx);
    const double lse = mx + std::log(s);
    for (std::size_t v = 0; v < vocab; ++v) lp[v] -= lse;
  }

  unsigned digits_;
  std::uint32_t modulus_;
};

}  // namespace stochgrad::problems
