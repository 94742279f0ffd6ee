// SPDX-License-Identifier: Apache-2.0
// The addition policy (bits/problems/addition_policy.hpp): the vector-Jacobian product against
// finite differences, sampling against the model's own probabilities, and a bounded training run
// showing that the verifiable-reward task is learnable with stochgrad's advantages and
// coefficients and a plain Adam loop written here. The same runs through the grpo / bnpo / rloo /
// reinforce steppers are in tests/pg/training.cpp.
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using problems::addition_policy;
using problems::addition_prompt;

TEST_CASE("addition policy: answers, rewards, log-probs and the VJP", "[pg][problem]") {
  const addition_policy<double> pol;
  REQUIRE(pol.length() == 3);
  REQUIRE(pol.dimension() == 10 * (200 + 3 + 10));
  std::uint8_t ans[3];
  pol.answer({47, 85}, ans);
  CHECK(ans[0] == 2);
  CHECK(ans[1] == 3);
  CHECK(ans[2] == 1);
  CHECK(pol.reward({47, 85}, ans) == 1.0);
  ans[1] = 4;
  CHECK(pol.reward({47, 85}, ans) == 0.0);
  // A random parameter vector; sampled tokens' log-probs equal the teacher-forced ones.
  std::vector<double> theta(pol.dimension());
  for (std::size_t i = 0; i < theta.size(); ++i) theta[i] = 0.7 * static_cast<double>(noise_at<gaussian>(noise_key{3, 0, 0}, i));
  std::vector<addition_prompt> pr(6);
  pol.make_prompts(noise_key{3, 1, 0}, pr);
  for (const auto& p : pr) {
    CHECK(p.a < 100);
    CHECK(p.b < 100);
  }
  std::vector<std::uint8_t> tok(18);
  std::vector<double> lp(18), lp2(18), r(6);
  pol.sample(theta, pr, noise_key{3, 2, 0}, tok, lp, r);
  pol.log_probs(theta, pr, tok, lp2);
  for (std::size_t i = 0; i < 18; ++i) CHECK(std::abs(lp[i] - lp2[i]) < 1e-14);
  // VJP = gradient of sum_t c_t logp_t, checked by central differences on a few coordinates
  // (h = 1e-6; logp is smooth with |d3 logp| <= 2, so the error is below 1e-9).
  std::vector<double> c(18), g(theta.size(), 0.0);
  for (std::size_t i = 0; i < 18; ++i) c[i] = static_cast<double>(noise_at<gaussian>(noise_key{3, 3, 0}, i));
  pol.accumulate_gradient(theta, pr, tok, c, g);
  auto objective = [&](const std::vector<double>& th) {
    std::vector<double> l(18);
    pol.log_probs(th, pr, tok, l);
    double s = 0;
    for (std::size_t i = 0; i < 18; ++i) s += c[i] * l[i];
    return s;
  };
  std::size_t nonzero = 0;
  for (std::size_t j = 0; j < theta.size(); j += 7) {
    std::vector<double> t = theta;
    t[j] += 1e-6;
    const double up = objective(t);
    t[j] -= 2e-6;
    const double dn = objective(t);
    CHECK(std::abs(g[j] - (up - dn) / 2e-6) < 1e-8);
    nonzero += g[j] != 0.0 ? 1 : 0;
  }
  CHECK(nonzero > 5);
}

TEST_CASE("addition policy: sampling frequencies match the model's probabilities", "[pg][problem][statistical]") {
  // At W = 0 every token has probability 1/10: over N = 20000 draws each digit's count is within
  // 4 standard errors sqrt(N p (1 - p)) of N/10 at every position.
  const addition_policy<double> pol;
  const std::vector<double> theta(pol.dimension(), 0.0);
  const std::size_t N = 20000;
  std::vector<addition_prompt> pr(N, addition_prompt{12, 34});
  std::vector<std::uint8_t> tok(N * 3);
  std::vector<double> lp(N * 3), r(N);
  pol.sample(theta, pr, noise_key{8, 0, 0}, tok, lp, r);
  for (std::size_t k = 0; k < 3; ++k) {
    std::size_t count[10] = {};
    for (std::size_t n = 0; n < N; ++n) ++count[tok[n * 3 + k]];
    for (std::size_t v = 0; v < 10; ++v) {
      CHECK(std::abs(static_cast<double>(count[v]) - N / 10.0) < 4 * std::sqrt(N * 0.1 * 0.9));
    }
  }
  for (double x : lp) CHECK(std::abs(x - std::log(0.1)) < 1e-15);
}

namespace {

struct run_result {
  double acc_start = 0, acc_end = 0;
  int steps_to_target = -1;
};

// On-policy training: each step draws P fresh prompts, G completions each, computes advantages
// with the given baseline x normalizer, per-token coefficients with the clipped surrogate
// (ratio 1, "grpo" aggregation), the gradient by the policy's VJP, and takes an Adam step.
template <class B, class N>
run_result train(const B& base, const N& norm, std::size_t steps, double target, bool verbose) {
  const addition_policy<double> pol;
  const std::size_t P = 32, G = 8, L = pol.length(), S = P * G, d = pol.dimension();
  std::vector<double> theta(d, 0.0), grad(d), m1(d, 0.0), m2(d, 0.0);
  std::vector<addition_prompt> prompts(P), per_sample(S), test(1000);
  pol.make_prompts(noise_key{1234, 9, 0}, test);
  std::vector<std::uint8_t> tok(S * L);
  std::vector<double> lp(S * L), r(S), adv(S), coef(S * L);
  const group_layout layout = group_layout::contiguous(P, G);
  surrogate_options so;
  so.aggregation = loss_aggregation::grpo;
  const clipped_surrogate sur(so);
  const double lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  run_result res;
  res.acc_start = pol.greedy_accuracy(theta, test);
  for (std::size_t step = 0; step < steps; ++step) {
    const auto s32 = static_cast<std::uint32_t>(step);
    pol.make_prompts(noise_key{1234, 0, s32}, prompts);
    for (std::size_t i = 0; i < S; ++i) per_sample[i] = prompts[i / G];
    pol.sample(theta, per_sample, noise_key{1234, 1, s32}, tok, lp, r);
    advantages(base, norm, std::span<const double>(r), layout, std::span<double>(adv));
    sur.evaluate<double>(token_batch<double>{S, L, lp, {}, {}, {}, adv}, coef);
    std::fill(grad.begin(), grad.end(), 0.0);
    pol.accumulate_gradient(theta, per_sample, tok, coef, grad);
    const double t = static_cast<double>(step + 1);
    for (std::size_t i = 0; i < d; ++i) {
      m1[i] = b1 * m1[i] + (1 - b1) * grad[i];
      m2[i] = b2 * m2[i] + (1 - b2) * grad[i] * grad[i];
      const double mh = m1[i] / (1 - std::pow(b1, t)), vh = m2[i] / (1 - std::pow(b2, t));
      theta[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
    if ((step + 1) % 25 == 0) {
      const double acc = pol.greedy_accuracy(theta, test);
      if (verbose) std::printf("  step %4zu  mean reward %.3f  greedy accuracy %.3f\n", step + 1,
                               std::accumulate(r.begin(), r.end(), 0.0) / static_cast<double>(S), acc);
      if (res.steps_to_target < 0 && acc >= target) res.steps_to_target = static_cast<int>(step + 1);
    }
  }
  res.acc_end = pol.greedy_accuracy(theta, test);
  return res;
}

}  // namespace

TEST_CASE("addition policy is learnable: GRPO and BNPO advantages + Adam, accuracy from ~0", "[pg][problem][training]") {
  // Fixed seeds: the run is deterministic. Greedy accuracy on 1000 held-out prompts starts at the
  // chance level of argmax over uniform logits (token 0 everywhere: only 0 + 0) and must reach 0.9
  // within 400 steps of 32 prompts x 8 samples.
  const run_result grpo = train(group_mean{}, group_std{}, 400, 0.9, true);
  INFO("GRPO: accuracy " << grpo.acc_start << " -> " << grpo.acc_end << ", 0.9 reached at step " << grpo.steps_to_target);
  CHECK(grpo.acc_start < 0.01);
  CHECK(grpo.acc_end >= 0.9);
  CHECK(grpo.steps_to_target > 0);
  const run_result bnpo = train(bnpo_mean{}, beta_normalizer{}, 400, 0.9, true);
  INFO("BNPO: accuracy " << bnpo.acc_start << " -> " << bnpo.acc_end << ", 0.9 reached at step " << bnpo.steps_to_target);
  CHECK(bnpo.acc_start < 0.01);
  CHECK(bnpo.acc_end >= 0.9);
}
