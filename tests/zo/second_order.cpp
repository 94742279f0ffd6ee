// SPDX-License-Identifier: Apache-2.0
// Diagonal 2SPSA (zo/second_order.hpp): hand-computed steps with explicit Delta, Delta~ (the
// positive-definite mapping, Spall 2009 feedback and weights), the per-step Hessian estimate's
// expectation on a quadratic (equal to the true diagonal), bad input, bit-identical save/resume.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/alloc_counter.hpp"
#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

using table = zo_test::table_direction<>;
using table_spsa2 = zo::spsa2<constant_schedule, table>;
using S_table = stepper<table_spsa2, no_baseline, no_normalizer, optim::sgd<>, double>;

// f(x) = x1^2 + 2 x2^2 + x1 x2: Hessian A = [[2, 1], [1, 4]], gradient [2 x1 + x2, 4 x2 + x1].
struct quad2 {
  const parameters<double>* p;
  double operator()() const {
    const double a = p->tensor(0)[0], b = p->tensor(0)[1];
    return a * a + 2.0 * b * b + a * b;
  }
};

std::string saved_state(const auto& s) {
  std::stringstream ss;
  s.save(ss);
  return ss.str();
}

}  // namespace

TEST_CASE("2SPSA: hand-computed steps, the positive-definite mapping, feedback and weights", "[zo][spsa2]") {
  // x = [1, 1], c = ct = 0.5 (constant schedule, ratio 1), lr a = 0.1, delta = 0.5.
  // Call 0: Delta = [1, -1], Delta~ = [1, 1]; a = c Delta = [0.5, -0.5], b = ct Delta~ = [0.5, 0.5].
  //   y1 = f(1.5, 0.5) = 2.25 + 0.5 + 0.75 = 3.5;  y2 = f(2, 1) = 4 + 2 + 2 = 8;
  //   y3 = f(1, 2) = 1 + 8 + 2 = 11;  y4 = f(0.5, 1.5) = 0.25 + 4.5 + 0.75 = 5.5.
  //   (y1 - y4)/(2c) = -2 (= Delta . grad f(1, 1) = 3 - 5); y2 - y1 - y3 + y4 = -1 (= 2 a^T A b);
  //   Hhat = -1/(2 * 0.25) * Delta Delta~ = -2 * [1, -1] = [-2, 2]. k = 0: w = 1, Hbar = 0 so Psi = 0:
  //   Hbar = [-2, 2]. Mapping |Hbar| + delta = [2.5, 2.5] (the negative entry by its magnitude):
  //   step -0.1 * (-2 Delta) / 2.5 = [0.08, -0.08]: x = [1.08, 0.92].
  // Call 1: Delta = [1, 1], Delta~ = [1, -1]; A b = [0.5, -1.5], a . A b = -0.5, so y2 - y1 - y3 + y4 = -1,
  //   Hhat = -2 * Delta Delta~ = [-2, 2]; (y1 - y4)/(2c) = Delta . grad f(1.08, 0.92) = 3.08 + 4.76 = 7.84.
  //   Feedback: S = sum Hbar_j Delta_j Delta~_j = -2 * 1 + 2 * (-1) = -4, Psi = Delta Delta~ S - Hbar
  //   = [-4 + 2, 4 - 2] = [-2, 2], Hhat - Psi = [0, 0]; optimal weights with equal c: w = 1/2:
  //   Hbar = [-1, 1]; step 0.1 * 7.84 / 1.5 on both entries.
  //   Without feedback, average weights (w = 1/2): Hbar = [-2, 2]; step 0.1 * 7.84 / 2.5.
  const std::uint64_t master = 21;
  const std::uint64_t s0 = zo::step_seed(master, 0), s1 = zo::step_seed(master, 1);
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {
      {s0, 0, {1.0, -1.0}}, {s0, 1, {1.0, 1.0}}, {s1, 0, {1.0, 1.0}}, {s1, 1, {1.0, -1.0}}};
  const table dir{&rows, &offsets};
  for (const bool fb : {true, false}) {
    std::vector<double> x = {1.0, 1.0};
    S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1}),
              table_spsa2({.eps = 0.5, .ratio = 1.0, .delta = 0.5, .feedback = fb,
                           .weighting = fb ? zo::spsa2_weighting::optimal : zo::spsa2_weighting::average, .seed = master},
                          {}, dir));
    quad2 f{&s.params()};
    const zo::step_report r = s.step(f);
    REQUIRE(r.applied);
    CHECK(r.evaluations == 4);
    CHECK_THAT(r.losses[0], WithinRel(3.5, 1e-12));
    CHECK_THAT(r.losses[1], WithinRel(8.0, 1e-12));
    CHECK_THAT(r.losses[2], WithinRel(11.0, 1e-12));
    CHECK_THAT(r.losses[3], WithinRel(5.5, 1e-12));
    CHECK_THAT(r.projected_gradient, WithinRel(-2.0, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][0], WithinRel(-2.0, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][1], WithinRel(2.0, 1e-12));
    CHECK_THAT(x[0], WithinRel(1.08, 1e-12));
    CHECK_THAT(x[1], WithinRel(0.92, 1e-12));
    const zo::step_report r2 = s.step(f);
    CHECK_THAT(r2.projected_gradient, WithinRel(7.84, 1e-12));
    const double h = fb ? 1.0 : 2.0, step = 0.1 * 7.84 / (h + 0.5);
    CHECK_THAT(s.est_state().hessian[0][0], WithinRel(-h, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][1], WithinRel(h, 1e-12));
    CHECK_THAT(x[0], WithinRel(1.08 - step, 1e-12));
    CHECK_THAT(x[1], WithinRel(0.92 - step, 1e-12));
    if (fb) {
      CHECK_THAT(s.est_state().weight_sum, WithinRel(2 * 0.0625, 1e-12));  // sum of c^2 ct^2
    }
  }
}

TEST_CASE("2SPSA: a zero Hessian estimate gives the step G / delta", "[zo][spsa2]") {
  // f linear (f = 3 x1 - x2): y2 - y1 - y3 + y4 = 0, Hhat = 0, Hbar = 0; the mapping |0| + delta = delta:
  // step = lr * (Delta . [3, -1]) Delta / delta = 0.01 * 4 * [1, -1] / 0.25 = [0.16, -0.16].
  const std::uint64_t master = 2;
  const std::uint64_t s0 = zo::step_seed(master, 0);
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {{s0, 0, {1.0, -1.0}}, {s0, 1, {-1.0, -1.0}}};
  const table dir{&rows, &offsets};
  std::vector<double> x = {0.0, 0.0};
  S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.01}),
            table_spsa2({.eps = 0.5, .delta = 0.25, .seed = master}, {}, dir));
  const parameters<double>* p = &s.params();
  s.step([p] { return 3.0 * p->tensor(0)[0] - p->tensor(0)[1]; });
  CHECK(s.est_state().hessian[0][0] == 0.0);
  CHECK(s.est_state().hessian[0][1] == 0.0);
  CHECK_THAT(x[0], WithinAbs(-0.16, 1e-12));
  CHECK_THAT(x[1], WithinAbs(0.16, 1e-12));
}

TEST_CASE("2SPSA: the per-step Hessian estimate is unbiased for the diagonal on a quadratic", "[zo][spsa2][statistics]") {
  // f = 0.5 x^T A x: y2 - y1 - y3 + y4 = 2 c ct Delta^T A Delta~ exactly, so at k = 0 (w = 1, Hbar = 0
  // before) Hbar = Hhat_i = Delta_i Delta~_i sum_jk A_jk Delta_j Delta~_k, whose expectation is A_ii
  // (Rademacher: E[Delta_j Delta_i] = [j = i], likewise for Delta~). N independent samples (fresh
  // stepper, master seed k); the sample mean must be within 5 standard errors (SE = sample std /
  // sqrt(N)) of A_ii. With feedback and Hbar preset to the true diagonal, Psi removes the terms
  // j = k != i: still unbiased, and the variance must drop.
  const double A[3][3] = {{2.0, 0.5, 0.2}, {0.5, 3.0, -0.4}, {0.2, -0.4, 1.0}};
  auto f = [&](std::span<const double> v) {
    double l = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) l += 0.5 * A[i][j] * v[static_cast<std::size_t>(i)] * v[static_cast<std::size_t>(j)];
    return l;
  };
  const int n = 20000;
  double var_plain[3] = {0, 0, 0};
  for (const bool fb : {false, true}) {
    double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
    for (int k = 0; k < n; ++k) {
      std::vector<double> x = {0.1, -0.2, 0.3};
      stepper<zo::spsa2<constant_schedule>, no_baseline, no_normalizer, optim::sgd<>, double> s(
          parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 1e-300}),
          zo::spsa2<constant_schedule>({.eps = 1e-2, .feedback = fb, .seed = static_cast<std::uint64_t>(k)}));
      if (fb) {
        for (int i = 0; i < 3; ++i) s.est_state().hessian[0][static_cast<std::size_t>(i)] = A[i][i];
      }
      s.step(f);
      for (int i = 0; i < 3; ++i) {
        const double h = s.est_state().hessian[0][static_cast<std::size_t>(i)];
        sum[i] += h;
        sq[i] += h * h;
      }
    }
    for (int i = 0; i < 3; ++i) {
      const double mean = sum[i] / n, var = sq[i] / n - mean * mean, se = std::sqrt(var / n);
      INFO("feedback " << fb << ", i = " << i << ", mean " << mean << ", A_ii " << A[i][i] << ", SE " << se);
      CHECK(std::abs(mean - A[i][i]) < 5.0 * se);
      if (!fb) var_plain[i] = var;
      if (fb) CHECK(var < var_plain[i]);
    }
  }
}

TEST_CASE("2SPSA: bad input is refused before anything changes", "[zo][spsa2][faults]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(zo::spsa2<>({.eps = 0.0}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.eps = -1.0}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.eps = nan}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.ratio = 0.0}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.delta = 0.0}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.delta = -1e-3}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({.delta = nan}), invalid_argument);
  CHECK_THROWS_AS(zo::spsa2<>({}, zo::spall_perturbation{-1.0}), invalid_argument);
  CHECK_NOTHROW(zo::spsa2<>({.eps = 0.1, .ratio = 2.0, .delta = 1.0}));

  std::vector<float> x(70);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i);
  int calls = 0;
  auto f = [&](std::span<const float> v) {
    ++calls;
    double l = 0;
    for (float e : v) l += double(e) * e;
    return l;
  };
  SECTION("an optimizer with a pre-pass") {
    spsa2<float> s(parameters<float>(std::span<float>(x)),
                   optim::sgd<spall_gain>({.lr = 0.1, .max_grad_norm = 1.0}, spall_gain{10.0, 0.602}), zo::spsa2<>({.seed = 1}));
    const std::vector<float> before = x;
    const std::string st = saved_state(s);
    CHECK_THROWS_AS(s.step(f), invalid_argument);
    CHECK(calls == 0);
    CHECK(zo_test::same_bits<float>(x, before));
    CHECK(saved_state(s) == st);
  }
  SECTION("a non-finite evaluation: restored, Hbar untouched") {
    spsa2<float> s(parameters<float>(std::span<float>(x)), optim::sgd<spall_gain>({.lr = 0.01}, spall_gain{10.0, 0.602}),
                   zo::spsa2<>({.eps = 1e-2, .seed = 2}));
    s.step(f);
    const std::vector<float> before = x, h_before = s.est_state().hessian[0];
    int k = 0;
    auto bad = [&](std::span<const float> v) { return ++k == 2 ? std::numeric_limits<double>::infinity() : f(v); };
    const zo::step_report r = s.step(bad);
    CHECK(r.nonfinite);
    CHECK_FALSE(r.applied);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(x[i] - before[i]) <= 1e-6f * (1.0f + std::abs(before[i])));
    CHECK(zo_test::same_bits<float>(s.est_state().hessian[0], h_before));
    CHECK(s.steps() == 1);
  }
  SECTION("an objective that throws: restored") {
    spsa2<float> s(parameters<float>(std::span<float>(x)), optim::sgd<spall_gain>({.lr = 0.01}, spall_gain{10.0, 0.602}),
                   zo::spsa2<>({.eps = 1e-2, .seed = 3}));
    const std::vector<float> before = x;
    int k = 0;
    auto thrower = [&](std::span<const float> v) {
      if (++k == 3) throw std::runtime_error("objective failed");
      return f(v);
    };
    CHECK_THROWS_AS(s.step(thrower), std::runtime_error);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(x[i] - before[i]) <= 1e-6f * (1.0f + std::abs(before[i])));
    for (float v : s.est_state().hessian[0]) CHECK(v == 0.0f);
  }
}

TEST_CASE("2SPSA: save -> load -> continue is bit-identical", "[zo][spsa2][state]") {
  const std::size_t n = 1000;
  auto f = [](std::span<const float> v) {
    double l = 0;
    for (std::size_t i = 0; i < v.size(); ++i) l += (1.0 + 1e-2 * static_cast<double>(i)) * double(v[i]) * v[i];
    return l;
  };
  std::vector<float> a(n);
  for (std::size_t i = 0; i < n; ++i) a[i] = std::cos(0.1f * static_cast<float>(i));
  const double f0 = f(a);
  auto make = [](std::vector<float>& x, std::uint64_t seed) {
    return spsa2<float>(parameters<float>(std::span<float>(x)), optim::sgd<spall_gain>({.lr = 0.05}, spall_gain{10.0, 0.602}),
                        zo::spsa2<>({.eps = 1e-2, .delta = 1.0, .seed = seed}));
  };
  auto s = make(a, 9);
  for (int k = 0; k < 10; ++k) s.step(f);
  std::stringstream ss;
  s.save(ss);
  std::vector<float> b = a;
  for (int k = 0; k < 10; ++k) s.step(f);
  auto t = make(b, 777);  // the saved seed wins
  t.load(ss);
  for (int k = 0; k < 10; ++k) t.step(f);
  CHECK(zo_test::same_bits<float>(a, b));
  CHECK(zo_test::same_bits<float>(s.est_state().hessian[0], t.est_state().hessian[0]));
  CHECK(saved_state(s) == saved_state(t));
  CHECK(f(a) != f0);  // it moved
}

TEST_CASE("2SPSA vs SPSA on an ill-conditioned quadratic (d = 10)", "[zo][spsa2][convergence]") {
  // f = sum_i 10^(i/3) x_i^2 (condition number 10^3), x0 = 1; equal evaluations: SPSA 2 per step,
  // 2SPSA 4 per step. Measured (seeds 1-3 mean, AVX2 build): f0 = 1865.4, SPSA (a = 0.002) 3.48,
  // 2SPSA (a = 0.5, delta = 1) 6.22; with delta = 1e-2 2SPSA diverges (5e11: the first Hbar are
  // single noisy samples, |Hbar| + delta can be tiny), a = 1 gives 12.5, a = 2 with delta = 2 diverges.
  // 2SPSA is NOT better than tuned SPSA here at equal evaluations; asserted is only what holds:
  // it reduces f by more than 100x with these settings.
  const std::size_t d = 10;
  auto f = [&](std::span<const double> v) {
    double l = 0;
    for (std::size_t i = 0; i < d; ++i) l += std::pow(10.0, static_cast<double>(i) / 3.0) * v[i] * v[i];
    return l;
  };
  const int evals = 8000;
  double f_spsa = 0, f_2spsa = 0;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    std::vector<double> x(d, 1.0), y(d, 1.0);
    spall_spsa<double> s(parameters<double>(std::span<double>(x)), optim::sgd<spall_gain>({.lr = 0.002}, spall_gain{100.0, 0.602}),
                   zo::two_point<rademacher, zo::spall_perturbation>({.eps = 1e-2, .seed = seed}));
    for (int k = 0; k < evals / 2; ++k) s.step(f);
    f_spsa += f(x) / 3;
    spsa2<double> t(parameters<double>(std::span<double>(y)), optim::sgd<spall_gain>({.lr = 0.5}, spall_gain{100.0, 0.602}),
                    zo::spsa2<>({.eps = 1e-2, .delta = 1.0, .seed = seed}));
    for (int k = 0; k < evals / 4; ++k) t.step(f);
    f_2spsa += f(y) / 3;
  }
  const double f0 = f(std::vector<double>(d, 1.0));
  INFO("f0 = " << f0 << ", SPSA " << f_spsa << ", 2SPSA " << f_2spsa);
  CHECK(f_2spsa < f0 / 100);
  CHECK(f_spsa < f0 / 100);
}

TEST_CASE("2SPSA: no allocation per step after construction", "[zo][allocation]") {
  std::vector<float> x(1000, 0.5f);
  spsa2<float> s(parameters<float>(std::span<float>(x)), optim::sgd<spall_gain>({.lr = 1e-4}, spall_gain{10.0, 0.602}), zo::spsa2<>({.eps = 1e-3, .delta = 1.0, .seed = 1}));
  auto f = [](std::span<const float> v) {
    double l = 0;
    for (float e : v) l += double(e) * e;
    return l;
  };
  s.step(f);
  const long before = alloc_counter::count.load();
  for (int k = 0; k < 20; ++k) s.step(f);
  CHECK(alloc_counter::count.load() - before == 0);
  CHECK(alloc_counter::count.load() > 0);  // the counter is live (construction allocated)
}
