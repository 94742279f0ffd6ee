// SPDX-License-Identifier: Apache-2.0
// The BNPO variance theorem (algorithms.md §4.3): closed form, optimality of (1 + a/3, 1 + b/3),
// the GRPO and REINFORCE special values, a Monte Carlo check within 4 standard errors over a grid
// of (a, b), and the consistency of the method-of-moments fit (§11).
#include <cmath>
#include <numbers>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

namespace {
bool near(double got, double want, double r = 1e-12) { return std::abs(got - want) <= 1e-15 + r * std::abs(want); }
}  // namespace

TEST_CASE("BNPO theorem: closed form at the spec's check values", "[outcome][bnpo][theorem]") {
  const double grpo = std::numbers::pi * std::numbers::pi / 64.0;
  {
    const auto [al, be] = bnpo_optimal_parameters(2, 5);
    CHECK(near(al, 1.6666666666666667));
    CHECK(near(be, 2.6666666666666667));
    CHECK(near(bnpo_second_moment(al, be, 2, 5), 0.0946567554351669));
    CHECK(near(bnpo_second_moment(1.5, 1.5, 2, 5), 0.15421256876702114));
    CHECK(near(bnpo_second_moment(1, 1, 2, 5), 0.17857142857142863));
  }
  {
    const auto [al, be] = bnpo_optimal_parameters(0.5, 0.5);
    CHECK(near(al, 1.1666666666666667));
    CHECK(near(bnpo_second_moment(al, be, 0.5, 0.5), 0.12022895654191008));
    CHECK(near(bnpo_second_moment(1, 1, 0.5, 0.5), 0.125));
  }
  {
    const auto [al, be] = bnpo_optimal_parameters(1.5, 1.5);
    CHECK(near(al, 1.5));
    CHECK(near(bnpo_second_moment(al, be, 1.5, 1.5), 0.15421256876702114));
    CHECK(near(bnpo_second_moment(1, 1, 1.5, 1.5), 0.1875));
  }
  {
    const auto [al, be] = bnpo_optimal_parameters(3, 1);
    CHECK(near(al, 2.0));
    CHECK(near(be, 1.3333333333333333));
    CHECK(near(bnpo_second_moment(al, be, 3, 1), 0.09962645772594746));
    CHECK(near(bnpo_second_moment(1, 1, 3, 1), 0.15));
  }
  CHECK(near(bnpo_second_moment(1.5, 1.5, 7, 0.4), grpo));
  CHECK(std::isinf(bnpo_second_moment(3.0, 1.0, 2.0, 2.0)));  // 2 alpha >= a + 3
}

TEST_CASE("BNPO theorem: optimality and special values over a grid of (a, b)", "[outcome][bnpo][theorem]") {
  const double grpo = std::numbers::pi * std::numbers::pi / 64.0;
  const double grid[] = {0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0};
  for (double a : grid) {
    for (double b : grid) {
      INFO("a = " << a << ", b = " << b);
      const auto [al, be] = bnpo_optimal_parameters(a, b);
      const double vs = bnpo_second_moment(al, be, a, b);
      const double vg = bnpo_second_moment(1.5, 1.5, a, b);
      const double vr = bnpo_second_moment(1.0, 1.0, a, b);
      CHECK(near(vg, grpo));
      CHECK(near(vr, a * b / ((a + b) * (a + b + 1.0))));
      CHECK(near(vs, std::exp(3.0 * log_beta_function(al, be) - log_beta_function(a, b))));
      CHECK(vs <= vg * (1 + 1e-14));
      CHECK(vs <= vr * (1 + 1e-14));
      if (a != 1.5 || b != 1.5) CHECK(vs < vg);
      // A minimum: every neighbour is larger; log V is convex along each axis.
      for (double d : {-0.05, 0.05}) {
        CHECK(bnpo_second_moment(al + d, be, a, b) > vs);
        CHECK(bnpo_second_moment(al, be + d, a, b) > vs);
      }
      const double l0 = std::log(bnpo_second_moment(al - 0.1, be, a, b));
      const double l1 = std::log(vs), l2 = std::log(bnpo_second_moment(al + 0.1, be, a, b));
      CHECK(l0 + l2 - 2 * l1 > 0.0);
    }
  }
}

TEST_CASE("BNPO theorem: Monte Carlo within 4 standard errors", "[outcome][bnpo][theorem][statistical]") {
  // X = (R - p)^2 / f(p; alpha, beta)^2 with p ~ Beta(a, b), R ~ Bernoulli(p); E[X] = V(alpha, beta).
  // The 4-SE test needs a finite Var X: near p = 0 the integrand of E[X^2] behaves like
  // p^(a - 4 alpha + 4), finite iff alpha < (a + 5)/4. For alpha* = 1 + a/3 that is a < 3, for
  // alpha = 3/2 it is a > 1 (same for b), hence the grid (a, b) in {1.25, 2, 2.75}^2. SE = sample
  // std / sqrt(N); with N = 1e5 and fixed seeds the test is deterministic.
  const std::size_t N = 100000;
  const double grid[] = {1.25, 2.0, 2.75};
  std::uint64_t seed = 2024;
  for (double a : grid) {
    for (double b : grid) {
      ++seed;
      const auto [al, be] = bnpo_optimal_parameters(a, b);
      const double params[3][2] = {{al, be}, {1.5, 1.5}, {1.0, 1.0}};
      double s[3] = {0, 0, 0}, s2[3] = {0, 0, 0};
      for (std::size_t k = 0; k < N; ++k) {
        const auto d = static_cast<std::uint32_t>(k);
        const double p = beta_variate(a, b, noise_key{seed, 0, d}, noise_key{seed, 1, d});
        const double R = static_cast<double>(noise_at<uniform>(noise_key{seed, 2, 0}, k)) < p ? 1.0 : 0.0;
        for (int j = 0; j < 3; ++j) {
          const double f = std::exp(beta_log_density(p, params[j][0], params[j][1]));
          const double x = (R - p) * (R - p) / (f * f);
          s[j] += x;
          s2[j] += x * x;
        }
      }
      for (int j = 0; j < 3; ++j) {
        const double mean = s[j] / static_cast<double>(N);
        const double var = (s2[j] - static_cast<double>(N) * mean * mean) / static_cast<double>(N - 1);
        const double se = std::sqrt(var / static_cast<double>(N));
        const double v = bnpo_second_moment(params[j][0], params[j][1], a, b);
        INFO("a = " << a << " b = " << b << " normalizer " << j << " MC " << mean << " closed form " << v << " SE " << se);
        CHECK(std::abs(mean - v) < 4.0 * se);
      }
    }
  }
}

TEST_CASE("BNPO method-of-moments fit is consistent", "[outcome][bnpo][statistical]") {
  // p_i ~ Beta(a, b), P = 2e5: the fitted mean and variance are within 4 standard errors of the
  // truth (SE of the mean sqrt(var/P); SE of the sample variance sqrt((mu4 - var^2)/P) with the
  // sample fourth central moment mu4), so the fitted (a, b) converge to the truth.
  const std::size_t P = 200000;
  for (auto [a, b] : {std::pair{2.0, 5.0}, std::pair{0.7, 0.9}, std::pair{4.0, 1.5}}) {
    std::vector<double> p(P);
    for (std::size_t i = 0; i < P; ++i) {
      p[i] = beta_variate(a, b, noise_key{77, 0, static_cast<std::uint32_t>(i)}, noise_key{77, 1, static_cast<std::uint32_t>(i)});
    }
    const beta_fit f = fit_bnpo_beta(p);
    const double m = a / (a + b), v = a * b / ((a + b) * (a + b) * (a + b + 1));
    double mu4 = 0;
    for (double x : p) mu4 += std::pow(x - f.mean, 4) / static_cast<double>(P);
    INFO("a = " << a << " b = " << b << " fitted a = " << f.a << " b = " << f.b);
    CHECK(std::abs(f.mean - m) < 4 * std::sqrt(v / static_cast<double>(P)));
    CHECK(std::abs(f.variance - v) < 4 * std::sqrt((mu4 - v * v) / static_cast<double>(P)));
  }
}
