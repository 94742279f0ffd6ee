// SPDX-License-Identifier: Apache-2.0
// RDP accountant of the subsampled Gaussian mechanism (privacy::rdp_accountant; design/seeds/data.md
// section 5.2): the four reference epsilons of section 5.3 (official Opacus values) to 1e-9
// relative with their optimal orders, the closed form of the q = 1 row, the order grid,
// monotonicity in every argument, the edge cases of section 5.5, calibration, and bad input.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <stochgrad/bits/privacy/privacy.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::privacy;

TEST_CASE("rdp: the reference epsilons of section 5.3", "[privacy][rdp]") {
  struct row {
    double q, z;
    std::uint64_t steps;
    double delta, eps, order;
  };
  const row rows[] = {
      {256.0 / 60000.0, 1.1, 14062, 1e-5, 2.5965558689607486, 8.1},
      {0.01, 1.0, 1000, 1e-5, 2.1013652716430564, 7.8},
      {1.0, 5.0, 100, 1e-6, 11.68862679916635, 3.5},
      {0.001, 0.8, 5000, 1e-6, 1.5923077586416754, 8.3},
  };
  for (const row& r : rows) {
    INFO("q " << r.q << " z " << r.z);
    const privacy_spent s = epsilon_spent(r.q, r.z, r.steps, r.delta);
    REQUIRE_THAT(s.epsilon, Catch::Matchers::WithinRel(r.eps, 1e-9));
    REQUIRE_THAT(s.best_order, Catch::Matchers::WithinAbs(r.order, 1e-12));
    REQUIRE_FALSE(s.at_boundary);
  }
}

TEST_CASE("rdp: q = 1 row equals its closed form; q = 1 is alpha / (2 z^2)", "[privacy][rdp]") {
  // min over the grid of 100 alpha / 50 - (log 1e-6 + log alpha) / (alpha - 1) + log((alpha - 1) / alpha).
  double best = std::numeric_limits<double>::infinity();
  for (double a : default_orders()) {
    best = std::min(best, 100.0 * a / 50.0 - (std::log(1e-6) + std::log(a)) / (a - 1.0) + std::log((a - 1.0) / a));
  }
  REQUIRE_THAT(best, Catch::Matchers::WithinRel(11.68862679916635, 1e-12));
  REQUIRE(subsampled_gaussian_rdp(1.0, 2.0, 3.5) == 3.5 / 8.0);
}

TEST_CASE("rdp: the order grid is Opacus's DEFAULT_ALPHAS", "[privacy][rdp]") {
  const auto o = default_orders();
  REQUIRE(o.size() == 151);
  REQUIRE(o.front() == 1.1);
  REQUIRE(o[98] == 10.9);
  REQUIRE(o[99] == 12.0);
  REQUIRE(o.back() == 63.0);
  REQUIRE(o[9] == 2.0);  // 1 + 10/10.0: an integer order, binomial sum
}

TEST_CASE("rdp: integer and fractional paths agree near an integer order", "[privacy][rdp]") {
  // RDP is continuous in alpha: the series at 5 +- 1e-7 brackets the binomial sum at 5.
  for (double q : {0.01, 0.2, 0.7}) {
    for (double z : {0.6, 1.0, 3.0}) {
      const double mid = subsampled_gaussian_rdp(q, z, 5.0);
      const double lo = subsampled_gaussian_rdp(q, z, 5.0 - 1e-7), hi = subsampled_gaussian_rdp(q, z, 5.0 + 1e-7);
      INFO("q " << q << " z " << z);
      REQUIRE(lo <= mid * (1 + 1e-9));
      REQUIRE(mid <= hi * (1 + 1e-9));
      REQUIRE_THAT(lo, Catch::Matchers::WithinRel(mid, 1e-5));
    }
  }
}

TEST_CASE("rdp: epsilon is monotone in q, z, steps and delta (property)", "[privacy][rdp]") {
  const double qs[] = {0.001, 0.004, 0.01, 0.05, 0.2, 0.6, 1.0};
  const double zs[] = {0.6, 0.8, 1.0, 1.5, 3.0};
  const std::uint64_t ns[] = {1, 10, 100, 1000};
  for (double z : zs) {
    for (std::uint64_t n : ns) {
      double prev = -1;
      for (double q : qs) {
        const double e = epsilon_spent(q, z, n, 1e-5).epsilon;
        REQUIRE(e >= prev);
        prev = e;
      }
    }
  }
  for (double q : qs) {
    for (std::uint64_t n : ns) {
      double prev = std::numeric_limits<double>::infinity();
      for (double z : zs) {
        const double e = epsilon_spent(q, z, n, 1e-5).epsilon;
        REQUIRE(e <= prev);
        prev = e;
      }
    }
    double prev = -1;
    for (std::uint64_t n : ns) {
      const double e = epsilon_spent(q, 1.0, n, 1e-5).epsilon;
      REQUIRE(e >= prev);
      prev = e;
    }
    prev = std::numeric_limits<double>::infinity();
    for (double d : {1e-9, 1e-7, 1e-5, 1e-3, 0.1}) {
      const double e = epsilon_spent(q, 1.0, 100, d).epsilon;
      REQUIRE(e <= prev);
      prev = e;
    }
  }
}

TEST_CASE("rdp_accountant: phases compose additively and consecutive steps merge", "[privacy][rdp]") {
  rdp_accountant a;
  for (int k = 0; k < 1000; ++k) a.step(1.0, 0.01);
  REQUIRE(a.history().size() == 1);
  REQUIRE(a.history()[0].steps == 1000);
  REQUIRE_THAT(a.epsilon(1e-5), Catch::Matchers::WithinRel(2.1013652716430564, 1e-9));
  // Two phases: the RDP adds, so splitting one phase in two changes nothing.
  rdp_accountant b;
  b.step(1.0, 0.01, 400);
  b.step(2.0, 0.01, 1);
  b.step(1.0, 0.01, 600);
  REQUIRE(b.history().size() == 3);
  rdp_accountant c;
  c.step(1.0, 0.01, 1000);
  c.step(2.0, 0.01, 1);
  REQUIRE_THAT(b.epsilon(1e-5), Catch::Matchers::WithinRel(c.epsilon(1e-5), 1e-12));
  REQUIRE(b.epsilon(1e-5) > a.epsilon(1e-5));
}

TEST_CASE("rdp: edge cases of section 5.5 and documented values", "[privacy][rdp]") {
  // q = 0: RDP 0 at every order; epsilon is the conversion's floor (minimum over the orders).
  REQUIRE(subsampled_gaussian_rdp(0.0, 1.0, 3.0) == 0.0);
  const auto o = default_orders();
  double floor_eps = std::numeric_limits<double>::infinity();
  for (double a : o) floor_eps = std::min(floor_eps, -(std::log(1e-5) + std::log(a)) / (a - 1.0) + std::log((a - 1.0) / a));
  REQUIRE(epsilon_spent(0.0, 1.0, 100, 1e-5).epsilon == floor_eps);
  // z = 0 with q > 0: infinite RDP, infinite epsilon.
  REQUIRE(std::isinf(subsampled_gaussian_rdp(0.5, 0.0, 2.0)));
  REQUIRE(std::isinf(epsilon_spent(0.5, 0.0, 1, 1e-5).epsilon));
  // Zero steps: as q = 0.
  REQUIRE(epsilon_spent(0.3, 1.0, 0, 1e-5).epsilon == floor_eps);
}

TEST_CASE("noise_multiplier_for: Opacus's calibration", "[privacy][rdp]") {
  const double z = noise_multiplier_for(2.0, 1e-5, 0.01, 1000);
  const double e = epsilon_spent(0.01, z, 1000, 1e-5).epsilon;
  REQUIRE(e <= 2.0);
  REQUIRE(2.0 - e <= 0.01);
  // The section 5.3 row (q 0.01, 1000 steps, z = 1.0) spends 2.1013...: a target just above it
  // needs a multiplier at most 1.0, within the bisection's epsilon tolerance.
  const double z2 = noise_multiplier_for(2.11, 1e-5, 0.01, 1000);
  REQUIRE(z2 <= 1.0);
  REQUIRE(epsilon_spent(0.01, z2, 1000, 1e-5).epsilon >= 2.1);
  REQUIRE_THROWS_AS(noise_multiplier_for(1e-9, 1e-5, 1.0, 1000000), invalid_argument);
}

TEST_CASE("rdp: bad input throws and leaves the accountant untouched", "[privacy][rdp]") {
  REQUIRE_THROWS_AS(subsampled_gaussian_rdp(-0.1, 1.0, 2.0), invalid_argument);
  REQUIRE_THROWS_AS(subsampled_gaussian_rdp(1.1, 1.0, 2.0), invalid_argument);
  REQUIRE_THROWS_AS(subsampled_gaussian_rdp(0.1, -1.0, 2.0), invalid_argument);
  REQUIRE_THROWS_AS(subsampled_gaussian_rdp(0.1, 1.0, 1.0), invalid_argument);
  REQUIRE_THROWS_AS(epsilon_spent(0.1, 1.0, 10, 0.0), invalid_argument);
  REQUIRE_THROWS_AS(epsilon_spent(0.1, 1.0, 10, 1.0), invalid_argument);
  REQUIRE_THROWS_AS(noise_multiplier_for(0.0, 1e-5, 0.1, 10), invalid_argument);
  REQUIRE_THROWS_AS(noise_multiplier_for(1.0, 1e-5, 0.0, 10), invalid_argument);
  REQUIRE_THROWS_AS(noise_multiplier_for(1.0, 1e-5, 0.1, 0), invalid_argument);
  rdp_accountant a;
  a.step(1.0, 0.01, 10);
  REQUIRE_THROWS_AS(a.step(-1.0, 0.01), invalid_argument);
  REQUIRE_THROWS_AS(a.step(1.0, 2.0), invalid_argument);
  REQUIRE_THROWS_AS(a.set_history({{1.0, 0.5, 1}, {1.0, -0.5, 1}}), invalid_argument);
  REQUIRE(a.history().size() == 1);
  REQUIRE(a.history()[0].steps == 10);
}
