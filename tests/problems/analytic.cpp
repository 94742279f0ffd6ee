// SPDX-License-Identifier: Apache-2.0
// The analytic test problems: ill-conditioned quadratic and chained Rosenbrock. Gradients against
// central finite differences (tolerances derived below), known minima and known values.
#include "support/catch.hpp"

#include <stochgrad/bits/problems/problems.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace sp = stochgrad::problems;

namespace {

constexpr double u64 = std::numeric_limits<double>::epsilon() / 2;  // unit roundoff of double

// A point with entries z(seed) * scale + shift from the library's generator.
std::vector<double> random_point(std::size_t d, std::uint64_t seed, double scale, double shift = 0.0) {
  std::vector<double> x(d);
  for (std::size_t i = 0; i < d; ++i) {
    x[i] = shift + scale * static_cast<double>(stochgrad::noise_at<stochgrad::gaussian>({seed, 7, 0}, i));
  }
  return x;
}

// Central difference (f(x + h e_k) - f(x - h e_k)) / (2h) of problem p at x, coordinate k.
template <class P>
double central_difference(const P& p, std::vector<double> x, std::size_t k, double h) {
  const double xk = x[k];
  x[k] = xk + h;
  const double fp = p.value(std::span<const double>(x));
  x[k] = xk - h;
  const double fm = p.value(std::span<const double>(x));
  return (fp - fm) / (2 * h);
}

}  // namespace

TEST_CASE("quadratic: log-spaced spectrum with the requested condition number", "[problems][quadratic]") {
  const double kappa = GENERATE(1.0, 10.0, 1e4);
  const sp::quadratic<double> q({.dimension = 50, .condition_number = kappa});
  const auto lam = q.eigenvalues();
  REQUIRE(lam.size() == 50);
  REQUIRE_THAT(lam.front(), Catch::Matchers::WithinRel(1.0 / kappa, 1e-14));
  REQUIRE(lam.back() == 1.0);
  REQUIRE_THAT(lam.back() / lam.front(), Catch::Matchers::WithinRel(kappa, 1e-13));
  for (std::size_t i = 1; i < lam.size(); ++i) {
    REQUIRE(lam[i] >= lam[i - 1]);
    // log-spacing: constant ratio kappa^(1/(d-1)) between neighbours
    REQUIRE_THAT(lam[i] / lam[i - 1], Catch::Matchers::WithinRel(std::pow(kappa, 1.0 / 49.0), 1e-12));
  }
}

TEST_CASE("quadratic: minimum 0 at the solution, value at 0 by formula", "[problems][quadratic]") {
  const bool rotate = GENERATE(false, true);
  const sp::quadratic<double> q({.dimension = 40, .condition_number = 100.0, .rotate = rotate, .seed = 3});
  std::vector<double> xs(q.solution().begin(), q.solution().end());
  std::vector<double> g(40, 1.0);
  // x - x* is exactly 0, so value and gradient are exactly 0.
  REQUIRE(q.value(std::span<const double>(xs)) == 0.0);
  REQUIRE(q.value_and_gradient(std::span<const double>(xs), std::span<double>(g)) == 0.0);
  for (double v : g) REQUIRE(v == 0.0);
  REQUIRE(q.optimal_value() == 0.0);

  std::vector<double> x0(40, 5.0);
  q.initial_point(std::span<double>(x0));
  for (double v : x0) REQUIRE(v == 0.0);
  if (!rotate) {
    // f(0) = 1/2 sum lambda_i x*_i^2 (summation order differs: relative rounding <= 40 u).
    double f0 = 0.0;
    for (std::size_t i = 0; i < 40; ++i) f0 += 0.5 * q.eigenvalues()[i] * xs[i] * xs[i];
    REQUIRE_THAT(q.value(std::span<const double>(x0)), Catch::Matchers::WithinRel(f0, 100 * u64));
  }
  // The solution is standard normal noise of the library's generator, keyed by the seed.
  for (std::size_t i = 0; i < 40; ++i) {
    REQUIRE(xs[i] == static_cast<double>(stochgrad::noise_at<stochgrad::gaussian>({3, 0, 0}, i)));
  }
}

TEST_CASE("quadratic: gradient equals central finite differences", "[problems][quadratic]") {
  const bool rotate = GENERATE(false, true);
  const std::size_t d = 30;
  const sp::quadratic<double> q({.dimension = d, .condition_number = 1e3, .rotate = rotate, .seed = 11});
  const auto x = random_point(d, 5, 1.0);
  std::vector<double> g(d);
  const double f = q.value_and_gradient(std::span<const double>(x), std::span<double>(g));
  REQUIRE(f == q.value(std::span<const double>(x)));
  // A quadratic has no third derivative, so the central difference is exact in exact arithmetic;
  // what is left is rounding: each f evaluation (O(d) terms, d <= 30, plus the O(d^2) rotation)
  // carries a relative error below gamma = 4 d u, so |FD - g_k| <= gamma * max|f| / h. We allow
  // 10 times that bound.
  const double h = 1e-4;
  for (std::size_t k = 0; k < d; ++k) {
    const double fd = central_difference(q, x, k, h);
    const double bound = 10 * 4 * static_cast<double>(d) * u64 * (f + 1.0) / h;
    INFO("k = " << k << " fd = " << fd << " g = " << g[k] << " bound = " << bound);
    REQUIRE(std::abs(fd - g[k]) <= bound);
  }
}

TEST_CASE("quadratic: the rotation is orthogonal and mixes coordinates", "[problems][quadratic]") {
  const std::size_t d = 25;
  const sp::quadratic<double> q({.dimension = d, .condition_number = 50.0, .rotate = true, .seed = 2});
  const auto& Q = q.rotation();
  REQUIRE(static_cast<std::size_t>(Q.rows()) == d);
  const double orth_err = (Q.transpose() * Q - Eigen::MatrixXd::Identity(25, 25)).cwiseAbs().maxCoeff();
  REQUIRE(orth_err <= 100 * static_cast<double>(d) * u64);
  // trace(A) = sum of the eigenvalues: A_kk = 2 f(x* + e_k). The Hessian is not diagonal.
  std::vector<double> x(q.solution().begin(), q.solution().end());
  double trace = 0.0;
  double sum_lambda = 0.0;
  for (std::size_t k = 0; k < d; ++k) {
    std::vector<double> e = x;
    e[k] += 1.0;
    trace += 2.0 * q.value(std::span<const double>(e));
    sum_lambda += q.eigenvalues()[k];
  }
  REQUIRE_THAT(trace, Catch::Matchers::WithinRel(sum_lambda, 1e-12));
  std::vector<double> e = x;
  e[0] += 1.0;
  std::vector<double> g(d);
  q.value_and_gradient(std::span<const double>(e), std::span<double>(g));  // g = A e_0: column 0
  double off = 0.0;
  for (std::size_t k = 1; k < d; ++k) off = std::max(off, std::abs(g[k]));
  REQUIRE(off > 1e-3);  // a Haar rotation of 25 coordinates leaves no column of A near e_0 * const
}

TEST_CASE("quadratic: gradient descent reaches the solution", "[problems][quadratic]") {
  // lr = 1 = 1/L: error in eigendirection i shrinks by (1 - lambda_i) per step, at worst
  // (1 - 1/kappa) = 0.9 for kappa = 10; 600 steps give 0.9^600 ~ 2e-28 relative.
  const sp::quadratic<double> q({.dimension = 20, .condition_number = 10.0, .rotate = true, .seed = 4});
  std::vector<double> x(20), g(20);
  q.initial_point(std::span<double>(x));
  for (int s = 0; s < 600; ++s) {
    q.value_and_gradient(std::span<const double>(x), std::span<double>(g));
    for (std::size_t i = 0; i < 20; ++i) x[i] -= g[i];
  }
  for (std::size_t i = 0; i < 20; ++i) REQUIRE_THAT(x[i], Catch::Matchers::WithinAbs(q.solution()[i], 1e-12));
  REQUIRE(q.value(std::span<const double>(x)) <= 1e-24);
}

TEST_CASE("quadratic: float matches double and results do not depend on the thread count",
          "[problems][quadratic]") {
  const std::size_t d = 300'001;  // several reduction parts and parallel tasks, odd tail
  const sp::quadratic<float> qf({.dimension = d, .condition_number = 1e6, .seed = 9});
  const sp::quadratic<double> qd({.dimension = d, .condition_number = 1e6, .seed = 9});
  std::vector<float> xf(d);
  std::vector<double> xd(d);
  for (std::size_t i = 0; i < d; ++i) {
    xf[i] = stochgrad::noise_at<stochgrad::gaussian>({1, 2, 3}, i);
    xd[i] = static_cast<double>(xf[i]);
  }
  std::vector<float> g1(d), g2(d);
  const double f1 = qf.value_and_gradient(std::span<const float>(xf), std::span<float>(g1));
  stochgrad::thread_pool pool(2);
  const double f2 = qf.value_and_gradient(std::span<const float>(xf), std::span<float>(g2), stochgrad::executor(pool));
  REQUIRE(f1 == f2);
  REQUIRE(g1 == g2);
  REQUIRE(qf.value(std::span<const float>(xf), stochgrad::executor(pool)) == f1);
  // Float: each term lambda r^2 is rounded a few times (relative <= 4 u_f), and leaves of 1024
  // elements are summed in float (relative <= 256 u_f with 4-way accumulators); all terms are
  // positive, so the total relative error is below ~260 u_f = 1.6e-5. Allow 2e-5.
  const double fd = qd.value(std::span<const double>(xd));
  REQUIRE_THAT(f1, Catch::Matchers::WithinRel(fd, 2e-5));
}

TEST_CASE("quadratic: bad options and sizes are rejected", "[problems][quadratic]") {
  REQUIRE_THROWS_AS(sp::quadratic<double>({.dimension = 0}), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::quadratic<double>({.dimension = 5, .condition_number = 0.5}), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::quadratic<double>({.dimension = 5, .condition_number = std::numeric_limits<double>::infinity()}),
                    stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::quadratic<float>({.dimension = 5000, .rotate = true}), stochgrad::invalid_argument);
  const sp::quadratic<double> q({.dimension = 4});
  std::vector<double> x(3), g(4);
  REQUIRE_THROWS_AS(q.value(std::span<const double>(x)), stochgrad::size_mismatch);
  REQUIRE_THROWS_AS(q.value_and_gradient(std::span<const double>(g), std::span<double>(x)), stochgrad::size_mismatch);
  STATIC_REQUIRE(sp::differentiable_problem<sp::quadratic<float>>);
  STATIC_REQUIRE(sp::differentiable_problem<sp::rosenbrock<double>>);
}

TEST_CASE("rosenbrock: known values, gradient and minimum", "[problems][rosenbrock]") {
  const sp::rosenbrock<double> r2(2);
  std::vector<double> x(2), g(2);
  r2.initial_point(std::span<double>(x));
  REQUIRE(x == std::vector<double>{-1.2, 1.0});
  // f(-1.2, 1) = 100 (1 - 1.44)^2 + 2.2^2 = 24.2; grad = (-400 x (y - x^2) - 2 (1 - x), 200 (y - x^2))
  //            = (-215.6, -88).
  REQUIRE_THAT(r2.value_and_gradient(std::span<const double>(x), std::span<double>(g)),
               Catch::Matchers::WithinRel(24.2, 1e-14));
  REQUIRE_THAT(g[0], Catch::Matchers::WithinRel(-215.6, 1e-14));
  REQUIRE_THAT(g[1], Catch::Matchers::WithinRel(-88.0, 1e-14));
  for (std::size_t d : {std::size_t{2}, std::size_t{10}}) {
    const sp::rosenbrock<double> r(d);
    std::vector<double> ones(d, 1.0), gr(d, 7.0);
    REQUIRE(r.value_and_gradient(std::span<const double>(ones), std::span<double>(gr)) == 0.0);
    for (double v : gr) REQUIRE(v == 0.0);
    REQUIRE(r.optimal_value() == 0.0);
  }
  REQUIRE_THROWS_AS(sp::rosenbrock<double>(1), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(r2.value(std::span<const double>(std::vector<double>(3))), stochgrad::size_mismatch);
}

TEST_CASE("rosenbrock: gradient equals central finite differences", "[problems][rosenbrock]") {
  const std::size_t d = GENERATE(std::size_t{2}, std::size_t{10});
  const sp::rosenbrock<double> r(d);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    const auto x = random_point(d, seed, 0.7, 0.3);
    std::vector<double> g(d);
    const double f = r.value_and_gradient(std::span<const double>(x), std::span<double>(g));
    const double h = 1e-5;
    double xmax = 0.0;
    for (double v : x) xmax = std::max(xmax, std::abs(v));
    for (std::size_t k = 0; k < d; ++k) {
      const double fd = central_difference(r, x, k, h);
      // Truncation: h^2/6 |d^3f/dx_k^3| with d^3f/dx_k^3 = 2400 x_k, so <= 400 h^2 (xmax + h).
      // Rounding: each f has 3(d-1) terms, relative error <= 6 d u, so <= 6 d u max|f| / h
      // (h chosen where both are small). Allow 10 times their sum.
      const double bound = 10 * (400 * h * h * (xmax + h) + 6 * static_cast<double>(d) * u64 * (f + 1.0) / h);
      INFO("d = " << d << " k = " << k << " fd = " << fd << " g = " << g[k] << " bound = " << bound);
      REQUIRE(std::abs(fd - g[k]) <= bound);
    }
  }
}

TEST_CASE("rosenbrock: float parameters give the double result rounded", "[problems][rosenbrock]") {
  const sp::rosenbrock<float> rf(10);
  const sp::rosenbrock<double> rd(10);
  std::vector<float> xf(10);
  std::vector<double> xd(10);
  for (std::size_t i = 0; i < 10; ++i) {
    xf[i] = 0.5f * stochgrad::noise_at<stochgrad::gaussian>({4, 0, 0}, i);
    xd[i] = static_cast<double>(xf[i]);
  }
  std::vector<float> gf(10);
  std::vector<double> gd(10);
  // Both evaluate in double from the same (exactly widened) inputs.
  REQUIRE(rf.value_and_gradient(std::span<const float>(xf), std::span<float>(gf)) ==
          rd.value_and_gradient(std::span<const double>(xd), std::span<double>(gd)));
  for (std::size_t i = 0; i < 10; ++i) REQUIRE(gf[i] == static_cast<float>(gd[i]));
  rf.initial_point(std::span<float>(xf));
  REQUIRE(xf[0] == -1.2f);
  REQUIRE(xf[1] == 1.0f);
}

TEST_CASE("quadratic: results do not depend on the alignment of the caller's buffers", "[problems][quadratic]") {
  const sp::quadratic<float> q({.dimension = 301, .condition_number = 1e3, .rotate = true, .seed = 8});
  // The same point at offsets 0..15 floats into a buffer: every alignment an allocator may give.
  std::vector<float> buf(301 + 16), gbuf(301 + 16);
  std::vector<float> ref_g;
  double ref_f = 0.0;
  for (std::size_t off = 0; off < 16; ++off) {
    for (std::size_t i = 0; i < 301; ++i) buf[off + i] = stochgrad::noise_at<stochgrad::gaussian>({2, 0, 0}, i);
    const std::span<const float> x(buf.data() + off, 301);
    const std::span<float> g(gbuf.data() + (15 - off), 301);
    const double f = q.value_and_gradient(x, g);
    if (off == 0) {
      ref_f = f;
      ref_g.assign(g.begin(), g.end());
    }
    REQUIRE(f == ref_f);
    REQUIRE(std::equal(g.begin(), g.end(), ref_g.begin()));
  }
}
