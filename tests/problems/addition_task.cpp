// SPDX-License-Identifier: Apache-2.0
// The shoot-out's reward task (bench/harness/addition_task.hpp): the exact expected reward J of
// the sampling policy against closed forms and against sampling, its gradient against central
// finite differences, the exact greedy accuracy against closed forms, and the generation batch.
#include "support/catch.hpp"

#include "../../bench/harness/addition_task.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

using harness::addition_task;
using stochgrad::executor;
using stochgrad::noise_at;
using stochgrad::noise_key;
using stochgrad::problems::addition_policy;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

// Weight s on the right digit of every (digit pair, carry) feature and nothing else: at every
// position the right token has probability p = e^s / (e^s + 9), whatever the prefix.
std::vector<double> warm_theta(double s) {
  const addition_policy<double> pol(2);
  std::vector<double> th(pol.dimension(), 0.0);
  const std::size_t F = pol.features();
  for (std::size_t a = 0; a < 10; ++a) {
    for (std::size_t b = 0; b < 10; ++b) {
      for (std::size_t c = 0; c < 2; ++c) th[((a + b + c) % 10) * F + 20 * a + 2 * b + c] = s;
    }
  }
  return th;
}

// Warm parameters plus Gaussian noise of size `noise` (a policy whose J_ab differ by prompt).
std::vector<double> noisy_theta(double s, double noise, std::uint64_t seed) {
  std::vector<double> th = warm_theta(s);
  for (std::size_t i = 0; i < th.size(); ++i) th[i] += noise * static_cast<double>(noise_at<stochgrad::gaussian>(noise_key{seed, 0, 0}, i));
  return th;
}

}  // namespace

TEST_CASE("addition task: exact expected reward and greedy accuracy in closed form", "[problems][addition]") {
  addition_task<double> task(2);
  const executor ex;
  REQUIRE(task.dimension() == 10 * (200 + 3 + 10));
  std::vector<double> x(task.dimension());
  task.initial_point(x, 0);
  // Uniform policy: every completion of L = 3 tokens has probability 10^-3. Argmax over equal
  // logits picks token 0 everywhere, which is right only for 0 + 0: accuracy 10^-4.
  harness::eval_point e = task.evaluate(x, ex);
  CHECK_THAT(e.reward, WithinRel(1e-3, 1e-12));
  CHECK_THAT(e.objective, WithinRel(1.0 - 1e-3, 1e-14));
  CHECK(e.accuracy == 1e-4);
  // Warm policy: J = p^3 with p = e^s / (e^s + 9); argmax is always right.
  for (double s : {0.5, 1.5, 4.0}) {
    const std::vector<double> th = warm_theta(s);
    const double p = std::exp(s) / (std::exp(s) + 9.0);
    e = task.evaluate(th, ex);
    CHECK_THAT(e.reward, WithinRel(p * p * p, 1e-12));
    CHECK(e.accuracy == (s > 0.0 ? 1.0 : 0.0));
  }
  // The point where the harness scores gradient estimates is the warm policy with s = 2.
  REQUIRE(task.quality_point(x));
  CHECK(x == warm_theta(2.0));
  const double p2 = std::exp(2.0) / (std::exp(2.0) + 9.0);
  CHECK_THAT(task.evaluate(x, ex).reward, WithinRel(p2 * p2 * p2, 1e-12));
}

TEST_CASE("addition task: the exact expected reward matches the sampled reward", "[problems][addition][statistical]") {
  // N = 20000 single completions of fresh uniform prompts: each reward is Bernoulli(J) and they
  // are independent (G = 1), so the mean reward has standard error sqrt(J (1 - J) / N) and lies
  // within 4 of them of J (two-sided probability 6e-5). Two policies with J in (0.05, 0.95).
  addition_task<double> task(2);
  const executor ex;
  for (double s : {2.5, 4.0}) {
    const std::vector<double> th = noisy_theta(s, 0.5, 11);
    const double J = task.evaluate(th, ex).reward;
    const std::size_t N = 20000;
    auto batch = task.make_batch(N, 1);
    batch->draw(th, noise_key{5, 0, 0}, noise_key{5, 1, 0});
    double mean = 0.0;
    for (double r : batch->rewards()) mean += r;
    mean /= static_cast<double>(N);
    const double se = std::sqrt(J * (1.0 - J) / static_cast<double>(N));
    INFO("s = " << s << ": J = " << J << ", sampled " << mean << ", se " << se);
    CHECK(J > 0.05);
    CHECK(J < 0.95);
    CHECK(std::abs(mean - J) < 4.0 * se);
    // The batch's log-probs are those of its tokens: rescoring at the same parameters changes nothing.
    const std::vector<double> lp(batch->logp().begin(), batch->logp().end());
    batch->rescore(th);
    for (std::size_t i = 0; i < lp.size(); i += 97) CHECK(batch->logp()[i] == lp[i]);
  }
}

TEST_CASE("addition task: the exact gradient of 1 - J matches central differences", "[problems][addition]") {
  // 1 - J(theta) is a mean of products of three softmax probabilities, each a smooth function of
  // at most three weights with |third derivative| <= 1, so |d^3 (1 - J)| <= 27 along a coordinate
  // and the central difference with h = 1e-4 has truncation error <= 27 h^2 / 6 = 4.5e-8 plus
  // rounding ~ 1e-16 / h = 1e-12: tolerance 1e-7.
  addition_task<double> task(2);
  const executor ex;
  std::vector<double> th = noisy_theta(1.0, 0.5, 12), g(th.size());
  const double f = task.loss_and_gradient(th, g, ex);
  CHECK_THAT(f, WithinAbs(task.loss(th, ex), 1e-15));
  const double h = 1e-4;
  std::size_t nonzero = 0;
  for (std::size_t j = 0; j < th.size(); j += 13) {
    const double keep = th[j];
    th[j] = keep + h;
    const double up = task.loss(th, ex);
    th[j] = keep - h;
    const double dn = task.loss(th, ex);
    th[j] = keep;
    CHECK_THAT(g[j], WithinAbs((up - dn) / (2 * h), 1e-7));
    nonzero += std::abs(g[j]) > 1e-6 ? 1 : 0;
  }
  CHECK(nonzero > 20);  // the check above compares real numbers, not zeros
}
