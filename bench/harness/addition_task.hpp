// SPDX-License-Identifier: Apache-2.0
// The verifiable-reward task of the shoot-out: stochgrad::problems::addition_policy (2-digit
// addition, reward 1 iff the emitted sum is exact) as a harness::reward_task, with the exact
// expected reward, its gradient and the exact greedy accuracy. A header so that
// tests/problems/addition_task.cpp can check those against sampling and finite differences.
#pragma once

#include <stochgrad/bits/outcome/group_layout.hpp>
#include <stochgrad/bits/problems/addition_policy.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include "harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace harness {

// A generation batch of the addition task (P prompts x G completions).
template <class T>
class addition_batch final : public rollout_batch<T> {
 public:
  addition_batch(const stochgrad::problems::addition_policy<T>& pol, std::size_t prompts, std::size_t group)
      : pol_(pol),
        prompts_(prompts),
        per_sample_(prompts * group),
        tokens_(prompts * group * pol.length()),
        logp_(prompts * group * pol.length()),
        rewards_(prompts * group),
        layout_(stochgrad::group_layout::contiguous(prompts, group)),
        group_(group) {}
  void draw(std::span<const T> theta, const stochgrad::noise_key& prompts,
            const stochgrad::noise_key& completions) override {
    pol_.make_prompts(prompts, std::span<stochgrad::problems::addition_prompt>(prompts_));
    for (std::size_t i = 0; i < per_sample_.size(); ++i) per_sample_[i] = prompts_[i / group_];
    pol_.sample(theta, per_sample_, completions, tokens_, logp_, rewards_);
  }
  void rescore(std::span<const T> theta) override { pol_.log_probs(theta, per_sample_, tokens_, logp_); }
  void vjp(std::span<const T> theta, std::span<const T> coef, std::span<T> grad) const override {
    pol_.accumulate_gradient(theta, per_sample_, tokens_, coef, grad);
  }
  std::size_t length() const override { return pol_.length(); }
  std::span<const T> rewards() const override { return rewards_; }
  std::span<const T> logp() const override { return logp_; }
  const stochgrad::group_layout& layout() const override { return layout_; }

 private:
  const stochgrad::problems::addition_policy<T>& pol_;
  std::vector<stochgrad::problems::addition_prompt> prompts_, per_sample_;
  std::vector<std::uint8_t> tokens_;
  std::vector<T> logp_, rewards_;
  stochgrad::group_layout layout_;
  std::size_t group_;
};

// The addition task of stochgrad::problems::addition_policy as a reward task. Prompts are uniform
// over all 10^D x 10^D operand pairs, so the expected reward of the sampling policy is exact:
//   J(theta) = 10^-2D sum_(a,b) prod_k pi(y_k | a, b, y_<k),   y = the digits of a + b
// (a completion is rewarded iff every token is right; sampling is autoregressive), and so is its
// gradient, grad J = 10^-2D sum_(a,b) J_ab sum_k grad log pi(y_k | ...), which is the policy's
// vector-Jacobian product on the correct answers with coefficient J_ab on each token. The
// objective is 1 - J (minimum 0). Greedy accuracy is exact too: argmax decoding is right iff the
// argmax at every position, along the correct prefix, is the right digit.
template <class T>
class addition_task final : public reward_task<T> {
 public:
  explicit addition_task(unsigned digits) : pol_(digits) {
    std::size_t m = 1;
    for (unsigned i = 0; i < digits; ++i) m *= 10;
    for (std::size_t a = 0; a < m; ++a) {
      for (std::size_t b = 0; b < m; ++b) {
        all_.push_back({static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b)});
      }
    }
    const std::size_t L = pol_.length();
    answers_.resize(all_.size() * L);
    for (std::size_t i = 0; i < all_.size(); ++i) {
      pol_.answer(all_[i], std::span<std::uint8_t>(answers_).subspan(i * L, L));
    }
    logp_.resize(answers_.size());
    coef_.resize(answers_.size());
  }
  std::size_t dimension() const override { return pol_.dimension(); }
  bool has_gradient() const override { return true; }
  void initial_point(std::span<T> x, std::uint64_t) const override {
    for (T& v : x) v = T(0);  // the uniform policy: every token has probability 1/10
  }
  double loss(std::span<const T> x, const stochgrad::executor&) override { return 1.0 - expected_reward(x); }
  double loss_and_gradient(std::span<const T> x, std::span<T> g, const stochgrad::executor&) override {
    const double J = expected_reward(x);  // also fills coef_ with -J_ab / n (d(1 - J) per token)
    std::fill(g.begin(), g.end(), T(0));
    pol_.accumulate_gradient(x, all_, answers_, coef_, g);
    return 1.0 - J;
  }
  eval_point evaluate(std::span<const T> x, const stochgrad::executor&) override {
    eval_point e;
    e.reward = expected_reward(x);
    e.objective = 1.0 - e.reward;
    e.accuracy = pol_.greedy_accuracy(x, all_);
    return e;
  }
  /// Gradient estimates are scored at a warm policy, not at W = 0 (where J = 1e-3 and almost every
  /// group of completions is all-wrong, so nearly every estimate is exactly 0): weight 2 on the
  /// right digit of every (digit pair, carry) feature, so each token is right with probability
  /// p = e^2 / (e^2 + 9) = 0.45 and J = p^3 = 0.091; groups of 8 are mixed about half the time.
  bool quality_point(std::span<T> x) const override {
    std::fill(x.begin(), x.end(), T(0));
    const std::size_t F = pol_.features();
    for (std::size_t a = 0; a < 10; ++a) {
      for (std::size_t b = 0; b < 10; ++b) {
        for (std::size_t c = 0; c < 2; ++c) x[((a + b + c) % 10) * F + 20 * a + 2 * b + c] = T(2);
      }
    }
    return true;
  }
  std::unique_ptr<rollout_batch<T>> make_batch(std::size_t prompts, std::size_t group) const override {
    return std::make_unique<addition_batch<T>>(pol_, prompts, group);
  }

 private:
  double expected_reward(std::span<const T> x) {
    pol_.log_probs(x, all_, answers_, logp_);
    const std::size_t L = pol_.length();
    const double inv_n = 1.0 / static_cast<double>(all_.size());
    double sum = 0.0;
    for (std::size_t i = 0; i < all_.size(); ++i) {
      double lp = 0.0;
      for (std::size_t k = 0; k < L; ++k) lp += static_cast<double>(logp_[i * L + k]);
      const double j = std::exp(lp);
      sum += j;
      for (std::size_t k = 0; k < L; ++k) coef_[i * L + k] = static_cast<T>(-j * inv_n);
    }
    return sum * inv_n;
  }

  stochgrad::problems::addition_policy<T> pol_;
  std::vector<stochgrad::problems::addition_prompt> all_;
  std::vector<std::uint8_t> answers_;
  std::vector<T> logp_, coef_;
};

}  // namespace harness
