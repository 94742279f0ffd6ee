// SPDX-License-Identifier: Apache-2.0
// Shared by tests/pg/steppers*.cpp and tests/pg/training*.cpp: generation batches of the addition
// policy (bits/problems/addition_policy.hpp) in the shape a policy-gradient stepper takes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

namespace pgtest {

using stochgrad::problems::addition_policy;
using stochgrad::problems::addition_prompt;

/// P prompts x G completions of the addition task, drawn from counter-based streams keyed by
/// (seed, step): prompts use stream 0, completions stream 1.
template <class T>
struct addition_rollouts {
  addition_policy<T> pol{};
  std::size_t P = 32, G = 8, L = 3, S = 256;
  std::vector<addition_prompt> prompts, per_sample;
  std::vector<std::uint8_t> tokens;
  std::vector<T> logp, rewards;
  stochgrad::group_layout layout;

  addition_rollouts(std::size_t p, std::size_t g) : P(p), G(g), L(pol.length()), S(p * g) {
    prompts.resize(P);
    per_sample.resize(S);
    tokens.resize(S * L);
    logp.resize(S * L);
    rewards.resize(S);
    layout = stochgrad::group_layout::contiguous(P, G);
  }

  /// Fresh prompts and completions sampled from the policy at `theta`.
  void draw(std::span<const T> theta, std::uint64_t seed, std::uint32_t step) {
    pol.make_prompts(stochgrad::noise_key{seed, 0, step}, prompts);
    for (std::size_t i = 0; i < S; ++i) per_sample[i] = prompts[i / G];
    pol.sample(theta, per_sample, stochgrad::noise_key{seed, 1, step}, tokens, logp, rewards);
  }
  /// Log-probabilities of the current completions under `theta` (PPO iterations after the first).
  void rescore(std::span<const T> theta) { pol.log_probs(theta, per_sample, tokens, logp); }

  /// The batch as a stepper takes it (rewards and log-probs of this object).
  stochgrad::pg_batch<T> batch() const {
    stochgrad::pg_batch<T> b;
    b.rewards = rewards;
    b.length = L;
    b.logp = logp;
    return b;
  }
  /// The vector-Jacobian callback: grad += sum_t c_t d logp_t / d theta.
  auto vjp(std::span<const T> theta) {
    return [this, theta](std::span<const T> coef, std::span<T> grad) {
      pol.accumulate_gradient(theta, per_sample, tokens, coef, grad);
    };
  }
  /// Mean reward of the current batch.
  double mean_reward() const {
    double s = 0.0;
    for (T r : rewards) s += static_cast<double>(r);
    return s / static_cast<double>(S);
  }
};

/// Parameters that put weight `strength` on the right digit of every (digit pair, carry) feature:
/// each token is right with probability e^s / (e^s + 9), so groups of completions are mixed.
template <class T>
std::vector<T> warm_theta(const addition_policy<T>& pol, double strength) {
  std::vector<T> th(pol.dimension(), T(0));
  const std::size_t F = pol.features();
  for (std::size_t a = 0; a < 10; ++a) {
    for (std::size_t b = 0; b < 10; ++b) {
      for (std::size_t c = 0; c < 2; ++c) th[((a + b + c) % 10) * F + 20 * a + 2 * b + c] = static_cast<T>(strength);
    }
  }
  return th;
}

}  // namespace pgtest
