// SPDX-License-Identifier: Apache-2.0
// Data Shapley (data::exact_shapley, tmc_shapley; design/seeds/data.md section 2): the exact
// values of section 2.6 (three games), enumeration of subsets against enumeration of all n!
// permutations, the Shapley axioms on random small games, the TMC pass of section 2.6 (official
// one_iteration values) with both tolerances, the convergence statistic, TMC within its standard
// error of the exact values, the permutation generator, failing utilities and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include <stochgrad/bits/data/data.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::data;

namespace {

using subset = std::span<const std::uint32_t>;

void require_close(const std::vector<double>& got, const std::vector<double>& want, double rel, double abs = 0.0) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    REQUIRE_THAT(got[i], Catch::Matchers::WithinRel(want[i], rel) || Catch::Matchers::WithinAbs(want[i], abs));
  }
}

std::uint32_t mask_of(subset s) {
  std::uint32_t m = 0;
  for (auto i : s) m |= 1u << i;
  return m;
}

// Shapley values by enumerating all n! orders (the second oracle of section 2.2).
template <class U>
std::vector<double> shapley_by_permutations(std::uint32_t n, const U& u) {
  std::vector<std::uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  std::vector<double> phi(n, 0.0);
  double count = 0;
  do {
    double prev = u(subset());
    for (std::uint32_t k = 0; k < n; ++k) {
      const double v = u(subset(perm.data(), k + 1));
      phi[perm[k]] += v - prev;
      prev = v;
    }
    ++count;
  } while (std::next_permutation(perm.begin(), perm.end()));
  for (double& x : phi) x /= count;
  return phi;
}

// Section 2.6, n = 8 TMC game: V(S) = 0.9 - 0.4 exp(-sum w_i).
const double w8[8] = {0.9, 0.1, 0.6, 0.05, 0.3, 0.02, 0.4, 0.01};
double v8(subset s) {
  double t = 0;
  for (auto i : s) t += w8[i];
  return 0.9 - 0.4 * std::exp(-t);
}

}  // namespace

TEST_CASE("exact_shapley: the three games of section 2.6", "[data][shapley]") {
  // n = 3 table game.
  const double table[8] = {0.5, 0.6, 0.55, 0.8, 0.5, 0.7, 0.6, 0.9};  // by mask: {}, {0}, {1}, {0,1}, {2}, {0,2}, {1,2}, all
  auto v3 = [&](subset s) { return table[mask_of(s)]; };
  const auto phi3 = exact_shapley(3, v3);
  require_close(phi3, {0.20833333333333334, 0.13333333333333336, 0.05833333333333331}, 1e-14);
  REQUIRE_THAT(phi3[0] + phi3[1] + phi3[2], Catch::Matchers::WithinAbs(0.4, 1e-15));
  // Weighted majority game, quota 5, weights 4, 3, 2, 1.
  auto maj = [](subset s) {
    const int wt[4] = {4, 3, 2, 1};
    int t = 0;
    for (auto i : s) t += wt[i];
    return t >= 5 ? 1.0 : 0.0;
  };
  require_close(exact_shapley(4, maj), {0.41666666666666663, 0.25, 0.25, 0.08333333333333333}, 1e-15);
  // Saturating game with an interaction between points 0 and 3.
  auto v4 = [](subset s) {
    const double w[4] = {0.3, 0.7, 1.1, 0.2};
    double t = 0;
    bool has0 = false, has3 = false;
    for (auto i : s) {
      t += w[i];
      has0 |= i == 0;
      has3 |= i == 3;
    }
    return 0.9 - 0.4 * std::exp(-t) + ((has0 && has3) ? 0.05 : 0.0);
  };
  require_close(exact_shapley(4, v4),
                {0.07596026383581403, 0.11115008910173114, 0.1632397005656095, 0.059546409007723844}, 1e-13);
  // Section 2.2: subsets and all n! orders agree to 1e-15 on these games.
  require_close(exact_shapley(3, v3), shapley_by_permutations(3, v3), 0.0, 1e-15);
  require_close(exact_shapley(4, maj), shapley_by_permutations(4, maj), 0.0, 1e-15);
  require_close(exact_shapley(4, v4), shapley_by_permutations(4, v4), 0.0, 1e-15);
}

TEST_CASE("exact_shapley: subsets and permutations agree; axioms on random games", "[data][shapley]") {
  std::mt19937_64 rng(20240518);
  std::uniform_real_distribution<double> unif(-1.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    const std::uint32_t n = 3 + static_cast<std::uint32_t>(trial % 4);  // 3..6
    // Random game in which point n-1 is null (V ignores it) and points 0 and 1 are symmetric
    // (V depends on them only through how many of the two are present).
    std::vector<double> base(std::size_t{1} << n);
    for (double& b : base) b = unif(rng);
    auto v = [&](subset s) {
      std::uint32_t m = mask_of(s) & ~(1u << (n - 1));
      const std::uint32_t both = m & 3u;
      if (both == 2u) m = (m & ~3u) | 1u;  // {1} -> {0}
      return base[m];
    };
    const auto phi = exact_shapley(n, v);
    const auto phip = shapley_by_permutations(n, v);
    double md = 0;
    for (std::size_t i = 0; i < n; ++i) md = std::max(md, std::abs(phi[i] - phip[i]));
    INFO("max diff " << md);
    // n! <= 720 orders of values in [-1, 1]: a few hundred ulps of summation rounding at most.
    require_close(phi, phip, 0.0, 1e-14);
    double sum = 0;
    for (double x : phi) sum += x;
    std::vector<std::uint32_t> everyone(n);
    std::iota(everyone.begin(), everyone.end(), 0u);
    REQUIRE_THAT(sum, Catch::Matchers::WithinAbs(v(subset(everyone)) - v(subset()), 1e-14));  // efficiency
    REQUIRE(phi[n - 1] == 0.0);                     // null player
    REQUIRE_THAT(phi[0], Catch::Matchers::WithinAbs(phi[1], 1e-15));  // symmetry
  }
}

TEST_CASE("tmc_iteration: the pass of section 2.6 (official one_iteration values)", "[data][shapley]") {
  const std::vector<std::uint32_t> perm{2, 0, 6, 4, 1, 3, 5, 7};
  std::vector<std::uint32_t> all(8);
  std::iota(all.begin(), all.end(), 0u);
  const double mean = v8(all);
  REQUIRE_THAT(mean, Catch::Matchers::WithinRel(0.8629797689958627, 1e-15));
  REQUIRE_THAT(v8(subset()), Catch::Matchers::WithinRel(0.5, 1e-15));
  std::vector<double> m(8);
  tmc_pass p = tmc_iteration(subset(perm), v8, 0.5, mean, 0.1, 5, std::span<double>(m));
  REQUIRE(p.evaluations == 7);
  REQUIRE(p.truncated);
  require_close(m,
                {0.13027259037823868, 0.004217725855812038, 0.18047534556238942, 0.0019558726029016427,
                 0.015506184344120433, 0.0007553743749965092, 0.029424616370317902, 0.0},
                1e-12);
  p = tmc_iteration(subset(perm), v8, 0.5, mean, 0.05, 5, std::span<double>(m));
  REQUIRE(p.evaluations == 8);
  REQUIRE_FALSE(p.truncated);
  REQUIRE_THAT(m[7], Catch::Matchers::WithinRel(0.0003720595070860755, 1e-9));
}

TEST_CASE("convergence_error: the reference statistic", "[data][shapley]") {
  // Fewer rows than the window: 1.
  std::vector<double> few(99 * 2, 1.0);
  REQUIRE(convergence_error(few, 2) == 1.0);
  // 100 rows equal to v except the first, v + a: R_t = v + a / t, so the worst running mean is
  // t = 1 with e = mean_i |a_i| (1 - 1/100) / |v_i + a_i / 100|.
  const double v[2] = {1.0, 2.0}, a[2] = {0.5, -1.0};
  std::vector<double> m;
  for (int t = 0; t < 100; ++t) {
    for (int i = 0; i < 2; ++i) m.push_back(v[i] + (t == 0 ? a[i] : 0.0));
  }
  const double want = 0.5 * (0.5 * 0.99 / 1.005 + 1.0 * 0.99 / 1.99);
  // Running sums of 100 rows then differences of running means: ~100 ulps of rounding.
  REQUIRE_THAT(convergence_error(m, 2), Catch::Matchers::WithinRel(want, 1e-12));
  // Longer history: only the last 100 running means count. 150 rows, first row v + a:
  // e = mean_i |a_i| (1/51 - 1/150) / |v_i + a_i / 150|.
  for (int t = 0; t < 50; ++t) m.insert(m.end(), {v[0], v[1]});
  const double want2 = 0.5 * (0.5 * (1.0 / 51 - 1.0 / 150) / (1.0 + 0.5 / 150) + 1.0 * (1.0 / 51 - 1.0 / 150) / (2.0 - 1.0 / 150));
  REQUIRE_THAT(convergence_error(m, 2), Catch::Matchers::WithinRel(want2, 1e-12));
  REQUIRE_THROWS_AS(convergence_error(std::vector<double>(5, 0.0), 2), invalid_argument);
  REQUIRE_THROWS_AS(convergence_error(m, 0), invalid_argument);
}

TEST_CASE("shapley_permutation: a permutation, reproducible, uniform first position", "[data][shapley]") {
  std::vector<std::uint32_t> p(10), q(10);
  shapley_permutation(5, 3, p);
  shapley_permutation(5, 3, q);
  REQUIRE(p == q);
  std::vector<std::uint32_t> s = p;
  std::sort(s.begin(), s.end());
  for (std::uint32_t i = 0; i < 10; ++i) REQUIRE(s[i] == i);
  shapley_permutation(5, 4, q);
  REQUIRE(p != q);
  // First element over 20000 iterations: chi-square with 9 degrees of freedom; 99.9 % point 27.9.
  std::vector<double> cnt(10, 0.0);
  const int T = 20000;
  for (int t = 0; t < T; ++t) {
    shapley_permutation(11, static_cast<std::uint32_t>(t), p);
    cnt[p[0]] += 1;
  }
  double chi2 = 0;
  for (double c : cnt) chi2 += (c - T / 10.0) * (c - T / 10.0) / (T / 10.0);
  REQUIRE(chi2 < 27.9);
}

TEST_CASE("tmc_shapley: within its standard error of the exact values", "[data][shapley]") {
  // Random 6-point game (superadditive-ish scores in [0.5, 1]); no truncation (tolerance 0) so the
  // estimator is unbiased; each value's tolerance is 5 standard errors of the mean of its marginals.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  const std::uint32_t n = 6;
  std::vector<double> base(64);
  for (std::size_t m = 0; m < 64; ++m) base[m] = 0.5 + 0.5 * (std::popcount(m) / 6.0) * (0.7 + 0.3 * unif(rng));
  auto v = [&](subset s) { return base[mask_of(s)]; };
  const auto exact = exact_shapley(n, v);
  const tmc_result r = tmc_shapley(n, v, {.tolerance = 0.0, .err = 1e-9, .max_iterations = 4000, .seed = 11});
  REQUIRE(r.iterations == 4000);
  REQUIRE_FALSE(r.converged);
  REQUIRE(r.evaluations == 4000 * 6 + 2);
  for (std::uint32_t i = 0; i < n; ++i) {
    double s = 0, s2 = 0;
    for (std::size_t t = 0; t < r.iterations; ++t) {
      s += r.marginals[t * n + i];
      s2 += r.marginals[t * n + i] * r.marginals[t * n + i];
    }
    const double T = static_cast<double>(r.iterations), mean = s / T, var = s2 / T - mean * mean;
    REQUIRE_THAT(r.values[i], Catch::Matchers::WithinAbs(mean, 1e-15));
    INFO("point " << i);
    REQUIRE(std::abs(r.values[i] - exact[i]) < 5.0 * std::sqrt(var / T) + 1e-12);
  }
}

TEST_CASE("tmc_shapley: stops when the convergence statistic is below err", "[data][shapley]") {
  // The n = 8 game with the reference defaults (tolerance 0.01, err 0.1, blocks of 100).
  const tmc_result r = tmc_shapley(8, v8, {.seed = 3});
  REQUIRE(r.converged);
  REQUIRE(r.error < 0.1);
  REQUIRE(r.iterations % 100 == 0);
  REQUIRE(r.iterations >= 100);
  REQUIRE(convergence_error(std::span<const double>(r.marginals.data(), r.iterations * 8 - 800), 8) >= 0.1);
}

TEST_CASE("tmc_shapley: failing utilities and bad input", "[data][shapley]") {
  // A non-finite value keeps the previous score (the reference's rule for a failed fit).
  auto nan_at_2 = [](subset s) { return s.size() == 2 ? std::nan("") : static_cast<double>(s.size()); };
  const std::vector<std::uint32_t> perm{0, 1, 2};
  std::vector<double> m(3);
  const tmc_pass p = tmc_iteration(subset(perm), nan_at_2, 0.0, 3.0, 0.0, 5, std::span<double>(m));
  REQUIRE(p.failures == 1);
  REQUIRE(m == std::vector<double>{1.0, 0.0, 2.0});
  // A utility that throws: the exception leaves the estimators.
  struct boom : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  auto thrower = [](subset s) -> double {
    if (s.size() == 3) throw boom("fit failed");
    return 0.0;
  };
  REQUIRE_THROWS_AS(exact_shapley(4, thrower), boom);
  REQUIRE_THROWS_AS(tmc_shapley(4, thrower, {.empty_score = 0.0, .mean_score = 1.0}), boom);
  REQUIRE_THROWS_AS(exact_shapley(3, nan_at_2), nonfinite_error);
  REQUIRE_THROWS_AS(exact_shapley(0, v8), invalid_argument);
  REQUIRE_THROWS_AS(exact_shapley(21, v8), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(0, v8), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.tolerance = -1.0}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.window = 0}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.err = 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.check_every = 0}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.max_iterations = 0}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_shapley(8, v8, {.mean_score = std::nan("")}), invalid_argument);
  REQUIRE_THROWS_AS(tmc_iteration(subset(perm), v8, 0.5, 0.8, 0.1, 5, std::span<double>(m.data(), 2)), size_mismatch);
  // |mean_score| < 1e-12: absolute tolerance. V = 0 everywhere except V(all) = 0: every prefix hits.
  auto zero = [](subset) { return 0.0; };
  std::vector<std::uint32_t> p8(8);
  std::iota(p8.begin(), p8.end(), 0u);
  std::vector<double> m8(8);
  const tmc_pass z = tmc_iteration(subset(p8), zero, 0.0, 0.0, 0.01, 5, std::span<double>(m8));
  REQUIRE(z.evaluations == 6);
  REQUIRE(z.truncated);
}
