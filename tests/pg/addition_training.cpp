// SPDX-License-Identifier: Apache-2.0
// The addition policy (bits/problems/addition_policy.hpp): the vector-Jacobian product against
// finite differences and sampling against the model's own probabilities. Training on it, through
// the grpo / bnpo / rloo / reinforce steppers, is tests/pg/training.cpp.
#include <cmath>
#include <cstdio>
#include <vector>

#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

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
