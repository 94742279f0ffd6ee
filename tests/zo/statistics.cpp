// SPDX-License-Identifier: Apache-2.0
// Statistical properties of the zeroth-order estimators (algorithms.md §11), measured through the
// library's own estimate() path (the same passes and evaluations as a step), in double.
//
// Tolerances: every statistical check compares a sample mean over n independent directions (one
// seed per call) with its exact expectation and accepts |mean - expected| <= 4 standard errors,
// SE = sample standard deviation / sqrt(n). The seeds are fixed, so the tests are deterministic;
// 4 SE corresponds to a false-alarm probability of about 6e-5 per check had the seed been random.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

namespace {

constexpr std::size_t d = 8;

// f(x) = 0.5 sum h_i x_i^2 + sum c_i x_i + sum a_i x_i^3 (a = 0: a quadratic; H = diag(h)).
struct poly {
  std::vector<double> h, c, a;
  double operator()(std::span<const double> x) const {
    double f = 0;
    for (std::size_t i = 0; i < x.size(); ++i) f += 0.5 * h[i] * x[i] * x[i] + c[i] * x[i] + a[i] * x[i] * x[i] * x[i];
    return f;
  }
  std::vector<double> grad(std::span<const double> x) const {
    std::vector<double> g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) g[i] = h[i] * x[i] + c[i] + 3 * a[i] * x[i] * x[i];
    return g;
  }
};

poly quadratic() {
  return {{1, 2, 0.5, 4, 3, 1.5, 0.25, 2.5}, {0.1, -0.2, 0, 0.3, -0.5, 0.2, 0.05, -0.1}, std::vector<double>(d, 0.0)};
}

struct running {
  double n = 0, sum = 0, sum2 = 0;
  void add(double v) {
    n += 1;
    sum += v;
    sum2 += v * v;
  }
  double mean() const { return sum / n; }
  double se() const { return std::sqrt((sum2 - sum * sum / n) / (n - 1) / n); }
};

// Runs n estimates at x0 and accumulates per-component and squared-norm statistics.
template <class E>
struct sampler {
  std::vector<double> x;
  stepper<E, no_baseline, no_normalizer, optim::sgd<>, double> s;
  std::vector<running> comp;
  running norm2, dev2;
  sampler(const std::vector<double>& x0, E est) : x(x0), s(parameters<double>(std::span<double>(x)), {}, est), comp(d) {}
  template <class F>
  void run(const F& f, std::size_t n, const std::vector<double>& g_true) {
    std::vector<double> g(d);
    for (std::size_t k = 0; k < n; ++k) {
      zo::estimate(s, f, std::span<double>(g));
      double nn = 0, dd = 0;
      for (std::size_t i = 0; i < d; ++i) {
        comp[i].add(g[i]);
        nn += g[i] * g[i];
        dd += (g[i] - g_true[i]) * (g[i] - g_true[i]);
      }
      norm2.add(nn);
      dev2.add(dd);
    }
  }
};

double sq(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return s;
}

const std::vector<double> x0 = {1, -2, 0.5, 0.25, -1, 0.75, 2, -0.5};

}  // namespace

TEST_CASE("Gaussian two-point (MeZO) is exactly unbiased on a quadratic; E|g|^2 = (d+2)|g|^2", "[zo][stats]") {
  const poly f = quadratic();
  const std::vector<double> g = f.grad(x0);
  // The central difference of a quadratic is exact: ghat = (z.g) z for every eps (eps = 0.3 here).
  sampler<zo::two_point<gaussian>> sm(x0, zo::two_point<gaussian>({.eps = 0.3, .seed = 101}));
  sm.run(f, 100000, g);
  for (std::size_t i = 0; i < d; ++i) CHECK(std::abs(sm.comp[i].mean() - g[i]) <= 4 * sm.comp[i].se());
  CHECK(std::abs(sm.norm2.mean() - (d + 2) * sq(g)) <= 4 * sm.norm2.se());
  // Sanity of the test's power: the wrong identity d |g|^2 is rejected.
  CHECK(std::abs(sm.norm2.mean() - d * sq(g)) > 4 * sm.norm2.se());
}

TEST_CASE("Rademacher SPSA is unbiased; |g|^2 = d (Delta.g)^2, E|g - grad|^2 = (d-1)|grad|^2", "[zo][stats]") {
  const poly f = quadratic();
  const std::vector<double> g = f.grad(x0);
  sampler<zo::two_point<rademacher>> sm(x0, zo::two_point<rademacher>({.eps = 0.1, .seed = 202}));
  sm.run(f, 100000, g);
  for (std::size_t i = 0; i < d; ++i) CHECK(std::abs(sm.comp[i].mean() - g[i]) <= 4 * sm.comp[i].se());
  CHECK(std::abs(sm.norm2.mean() - d * sq(g)) <= 4 * sm.norm2.se());
  CHECK(std::abs(sm.dev2.mean() - (d - 1) * sq(g)) <= 4 * sm.dev2.se());
}

TEST_CASE("segmented-uniform SPSA (inverse form) is unbiased on a quadratic", "[zo][stats]") {
  const poly f = quadratic();
  const std::vector<double> g = f.grad(x0);
  sampler<zo::two_point<segmented_uniform>> sm(x0, zo::two_point<segmented_uniform>({.eps = 0.05, .seed = 303}));
  sm.run(f, 100000, g);
  for (std::size_t i = 0; i < d; ++i) CHECK(std::abs(sm.comp[i].mean() - g[i]) <= 4 * sm.comp[i].se());
  // E|ghat|^2 = sum_i E[(Delta.g)^2 / Delta_i^2] = |g|^2 + E[Delta^2] E[1/Delta^2] (d|g|^2 - |g|^2)
  //           = |g|^2 (1 + (7/12)(2)(d - 1)) with E[Delta^2] = 7/12, E[1/Delta^2] = 2 (§8.2).
  const double expected = sq(g) * (1.0 + 7.0 / 12.0 * 2.0 * (d - 1));
  CHECK(std::abs(sm.norm2.mean() - expected) <= 4 * sm.norm2.se());
}

TEST_CASE("RGE (one-sided, unit sphere, q directions): E|g - grad|^2 = (d-1)|grad|^2 / q on a linear f", "[zo][stats]") {
  poly f = quadratic();
  f.h.assign(d, 0.0);  // linear: the forward difference is exact
  const std::vector<double> g = f.grad(x0);
  for (std::size_t q : {1u, 3u}) {
    sampler<zo::one_sided<unit_sphere>> sm(x0, zo::one_sided<unit_sphere>({.eps = 0.01, .q = q, .seed = 404 + q}));
    sm.run(f, q == 1 ? 100000 : 50000, g);  // >= 1e5 directions each
    for (std::size_t i = 0; i < d; ++i) CHECK(std::abs(sm.comp[i].mean() - g[i]) <= 4 * sm.comp[i].se());
    CHECK(std::abs(sm.dev2.mean() - (d - 1) * sq(g) / static_cast<double>(q)) <= 4 * sm.dev2.se());
  }
}

TEST_CASE("averaging q Gaussian directions divides the variance by q", "[zo][stats]") {
  const poly f = quadratic();
  const std::vector<double> g = f.grad(x0);
  // Per direction E|(z.g) z - g|^2 = (d+2)|g|^2 - |g|^2 = (d+1)|g|^2; averaged over q: /q.
  sampler<zo::two_point<gaussian>> sm(x0, zo::two_point<gaussian>({.eps = 0.1, .q = 4, .seed = 505}));
  sm.run(f, 50000, g);
  CHECK(std::abs(sm.dev2.mean() - (d + 1) * sq(g) / 4.0) <= 4 * sm.dev2.se());
}

TEST_CASE("bias on a cubic: two-sided error exactly O(eps^2) (ratio 4 under common directions), one-sided O(eps)", "[zo][stats]") {
  // f = sum a_i x_i^3 + quadratic. Per direction z:
  //   two-sided (f(x+ez) - f(x-ez))/(2e) = z.g + e^2 K(z),          K(z) = sum a_j z_j^3
  //   one-sided (f(x+ez) - f(x))/e       = z.g + e/2 z'H z + e^2 K(z), H = Hessian at x
  // With the same seeds (common random numbers) for every eps, the per-direction differences of
  // two-sided estimates between eps values are exactly (e1^2 - e2^2) K(z) z, so summed over the
  // samples [d(0.2, 0.1)] / [d(0.1, 0.05)] = (0.04 - 0.01) / (0.01 - 0.0025) = 4 up to rounding
  // (double: each estimate is accurate to ~1e-13 relative and the differences are >= 1e-3 of its
  // size, so the ratio is within 1e-6 of 4). The bias E[e^2 K(z) z_i] = 3 a_i e^2 (E z^4 = 3) is
  // checked within 4 standard errors of the per-sample differences. The one-sided per-direction
  // error is dominated by the e/2 z'Hz term, so its mean absolute differences scale like e: ratio
  // 2 (plus O(e) from the e^2 term; accept [1.5, 3], far from 4). (Its MEAN over symmetric
  // directions is still O(e^2): E[(z'Hz) z] = 0.)
  poly f = quadratic();
  f.a = {0.5, -0.3, 0.2, 0.1, -0.4, 0.25, 0.3, -0.2};
  const std::vector<double> eps = {0.2, 0.1, 0.05};
  const std::size_t n = 20000;
  struct result {
    std::vector<double> d01, d12, a01, a12;
    std::vector<running> k;
  };
  auto run = [&](auto est_for) {
    std::vector<std::vector<double>> x(3, x0);
    using E = decltype(est_for(0.1));
    std::vector<stepper<E, no_baseline, no_normalizer, optim::sgd<>, double>> s;
    s.reserve(3);
    for (std::size_t e = 0; e < 3; ++e) s.emplace_back(parameters<double>(std::span<double>(x[e])), optim::sgd<>{}, est_for(eps[e]));
    result r{std::vector<double>(d), std::vector<double>(d), std::vector<double>(d), std::vector<double>(d), std::vector<running>(d)};
    std::vector<std::vector<double>> g(3, std::vector<double>(d));
    for (std::size_t it = 0; it < n; ++it) {
      for (std::size_t e = 0; e < 3; ++e) zo::estimate(s[e], f, std::span<double>(g[e]));
      for (std::size_t i = 0; i < d; ++i) {
        r.d01[i] += g[0][i] - g[1][i];
        r.d12[i] += g[1][i] - g[2][i];
        r.a01[i] += std::abs(g[0][i] - g[1][i]);
        r.a12[i] += std::abs(g[1][i] - g[2][i]);
        r.k[i].add((g[0][i] - g[1][i]) / (eps[0] * eps[0] - eps[1] * eps[1]));
      }
    }
    return r;
  };
  SECTION("two-sided") {
    const result r = run([](double e) { return zo::two_point<gaussian>({.eps = e, .seed = 606}); });
    for (std::size_t i = 0; i < d; ++i) {
      CHECK(std::abs(r.d01[i] / r.d12[i] - 4.0) < 1e-6);
      CHECK(std::abs(r.a01[i] / r.a12[i] - 4.0) < 1e-6);
      CHECK(std::abs(r.k[i].mean() - 3.0 * f.a[i]) <= 4 * r.k[i].se());
    }
  }
  SECTION("one-sided") {
    const result r = run([](double e) { return zo::one_sided<gaussian>({.eps = e, .seed = 606}); });
    for (std::size_t i = 0; i < d; ++i) {
      const double ratio = r.a01[i] / r.a12[i];
      CHECK(ratio > 1.5);
      CHECK(ratio < 3.0);
    }
  }
}
