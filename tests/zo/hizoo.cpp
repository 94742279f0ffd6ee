// SPDX-License-Identifier: Apache-2.0
// HiZOO (zo/hizoo.hpp): hand-computed steps with explicit directions, the closed-form expectation
// of the diagonal Hessian estimate on a quadratic, the min_hessian fallback, bad input, the fused
// pass against a plain loop of the reference formulas, bit-identical save/resume, and HiZOO vs
// MeZO on logistic regression at equal numbers of evaluations.
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
using table_hizoo = zo::hizoo<constant_schedule, table>;
using S_table = stepper<table_hizoo, no_baseline, no_normalizer, optim::sgd<>, double>;

// f(x) = sign * (x1^2 + 2 x2^2): Hessian diag(2, 4) * sign.
struct quad2 {
  const parameters<double>* p;
  double sign = 1.0;
  double operator()() const {
    const double a = p->tensor(0)[0], b = p->tensor(0)[1];
    return sign * (a * a + 2.0 * b * b);
  }
};

// A smoothing schedule factor of 2 (alpha = smooth * 2 exceeds 1 for smooth > 0.5).
struct twice {
  static constexpr const char* name = "twice";
  double operator()(std::uint64_t) const noexcept { return 2.0; }
};

std::string saved_state(const auto& s) {
  std::stringstream ss;
  s.save(ss);
  return ss.str();
}

}  // namespace

TEST_CASE("HiZOO: two hand-computed steps with explicit z", "[zo][hizoo]") {
  // x = [1, 1], f = x1^2 + 2 x2^2, eps = 0.5, alpha = 0.5, lr = 0.1, H = [1, 1].
  // Step 1, z = [1, -1]: L0 = 3; x+ = [1.5, 0.5]: L+ = 2.25 + 0.5 = 2.75; x- = [0.5, 1.5]:
  // L- = 0.25 + 4.5 = 4.75. g = (L+ - L-)/(2 eps) = -2. |L+ + L- - 2 L0|/(2 eps^2) = 1.5/0.5 = 3,
  // Hhat = 3 z^2 / H = [3, 3], H = 0.5 * 1 + 0.5 * 3 = [2, 2]. Step: -2 z sqrt(2) = [-2 sqrt2, 2 sqrt2],
  // x = [1 + 0.2 sqrt2, 1 - 0.2 sqrt2] (wd = 0) or x - 0.1 * 0.5 x on top (wd = 0.5).
  // Step 2, z = [1, 0]: the perturbation is eps sqrt(H) z = [sqrt2/2, 0] =: [a, 0]. L+ - L- = 4 a x1,
  // g = 4 a x1 / 1 = 2 sqrt2 x1; L+ + L- - 2 L0 = 2 a^2 = 1, /(2 eps^2) = 2; Hhat = [2 * 1/2, 0] = [1, 0];
  // H = [0.5 * 2 + 0.5 * 1, 0.5 * 2] = [1.5, 1]; step g z sqrt(H) = [2 sqrt2 sqrt1.5 x1, 0] = [2 sqrt3 x1, 0]:
  // x1 <- x1 (1 - 0.2 sqrt3), x2 unchanged.
  const std::uint64_t master = 11;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {{zo::step_seed(master, 0), 0, {1.0, -1.0}}, {zo::step_seed(master, 1), 0, {1.0, 0.0}}};
  const table dir{&rows, &offsets};
  const double r2 = std::sqrt(2.0), r3 = std::sqrt(3.0);
  SECTION("convex, no weight decay") {
    std::vector<double> x = {1.0, 1.0};
    S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1}),
              table_hizoo({.eps = 0.5, .smooth = 0.5, .seed = master}, {}, dir));
    quad2 f{&s.params()};
    const zo::step_report r = s.step(f);
    REQUIRE(r.applied);
    CHECK(r.evaluations == 3);
    CHECK_THAT(r.losses[0], WithinRel(3.0, 1e-12));
    CHECK_THAT(r.loss_plus, WithinRel(2.75, 1e-12));
    CHECK_THAT(r.loss_minus, WithinRel(4.75, 1e-12));
    CHECK_THAT(r.projected_gradient, WithinRel(-2.0, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][0], WithinRel(2.0, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][1], WithinRel(2.0, 1e-12));
    CHECK_THAT(x[0], WithinRel(1.0 + 0.2 * r2, 1e-12));
    CHECK_THAT(x[1], WithinRel(1.0 - 0.2 * r2, 1e-12));
    const double x1 = x[0];
    s.step(f);
    CHECK_THAT(s.est_state().hessian[0][0], WithinRel(1.5, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][1], WithinRel(1.0, 1e-12));
    CHECK_THAT(x[0], WithinRel((1.0 + 0.2 * r2) * (1.0 - 0.2 * r3), 1e-12));
    CHECK_THAT(x[0], WithinRel(x1 * (1.0 - 0.2 * r3), 1e-12));
    CHECK_THAT(x[1], WithinRel(1.0 - 0.2 * r2, 1e-12));
  }
  SECTION("coupled weight decay on every parameter (as the reference)") {
    std::vector<double> x = {1.0, 1.0};
    S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1, .weight_decay = 0.5}),
              table_hizoo({.eps = 0.5, .smooth = 0.5, .seed = master}, {}, dir));
    quad2 f{&s.params()};
    s.step(f);
    CHECK_THAT(x[0], WithinRel(1.0 - 0.1 * (-2.0 * r2 + 0.5), 1e-12));
    CHECK_THAT(x[1], WithinRel(1.0 - 0.1 * (2.0 * r2 + 0.5), 1e-12));
  }
  SECTION("concave: the absolute value keeps H positive") {
    // f = -(x1^2 + 2 x2^2): L+ + L- - 2 L0 = -1.5, |.| gives the same H = [2, 2]; g = +2.
    std::vector<double> x = {1.0, 1.0};
    S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1}),
              table_hizoo({.eps = 0.5, .smooth = 0.5, .seed = master}, {}, dir));
    quad2 f{&s.params(), -1.0};
    s.step(f);
    CHECK_THAT(s.est_state().hessian[0][0], WithinRel(2.0, 1e-12));
    CHECK_THAT(s.est_state().hessian[0][1], WithinRel(2.0, 1e-12));
    CHECK_THAT(x[0], WithinRel(1.0 - 0.2 * r2, 1e-12));
    CHECK_THAT(x[1], WithinRel(1.0 + 0.2 * r2, 1e-12));
  }
}

TEST_CASE("HiZOO: a vanishing estimate falls back to min_hessian", "[zo][hizoo]") {
  // alpha = 1 on a constant objective: L+ + L- - 2 L0 = 0, so (1 - 1) H + 0 = 0 -> H = min_hessian;
  // g = 0, and every pass is exact (x, eps z on the binary grid), so x is unchanged bitwise.
  const std::uint64_t master = 3;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {{zo::step_seed(master, 0), 0, {1.0, -1.0}}, {zo::step_seed(master, 1), 0, {0.5, 2.0}}};
  const table dir{&rows, &offsets};
  std::vector<double> x = {1.0, 1.0};
  S_table s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1}),
            table_hizoo({.eps = 0.5, .smooth = 1.0, .min_hessian = 1e-6, .seed = master}, {}, dir));
  s.step([] { return 1.0; });
  CHECK(s.est_state().hessian[0][0] == 1e-6);
  CHECK(s.est_state().hessian[0][1] == 1e-6);
  CHECK(x[0] == 1.0);
  CHECK(x[1] == 1.0);
  // The next step divides by H = 1e-6 (finite, not by zero): quad2 gives a finite update.
  quad2 f{&s.params()};
  const zo::step_report r = s.step(f);
  CHECK(r.applied);
  CHECK(std::isfinite(x[0]));
  CHECK(std::isfinite(x[1]));
  CHECK(std::isfinite(s.est_state().hessian[0][0]));
  CHECK(s.est_state().hessian[0][0] >= 1e-6);
}

TEST_CASE("HiZOO: expectation of the diagonal estimate on a quadratic", "[zo][hizoo][statistics]") {
  // f = 0.5 sum a_i x_i^2 (A = diag(1, 2, 3)): L+ + L- - 2 L0 = eps^2 (D z)^T A (D z) with D = sqrt(H),
  // so with alpha = 1 the new H is Hhat_i = (z^T M z / 2) z_i^2 / H_i, M = D A D, and for Gaussian z
  // E[z_i^2 z^T M z] = 3 M_ii + sum_{j != i} M_jj, hence E[Hhat_i] = A_ii + tr(M) / (2 H_i) (not A_ii:
  // the reference's estimator carries the trace term). N independent one-step samples (fresh
  // stepper, master seed k); the sample mean must be within 5 standard errors (SE = sample std /
  // sqrt(N)) of the closed form, and at least 10 SE away from the true diagonal A_ii (the bias).
  const double a[3] = {1.0, 2.0, 3.0};
  const int n = 20000;
  auto run = [&](const double (&h0)[3], const double (&expected)[3]) {
    double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
    for (int k = 0; k < n; ++k) {
      std::vector<double> x = {0.3, -0.2, 0.1};
      hizoo<double> s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 1e-300}),
                      zo::hizoo<>({.eps = 1e-2, .smooth = 1.0, .seed = static_cast<std::uint64_t>(k)}));
      for (int i = 0; i < 3; ++i) s.est_state().hessian[0][i] = h0[i];
      auto f = [&](std::span<const double> v) { return 0.5 * (a[0] * v[0] * v[0] + a[1] * v[1] * v[1] + a[2] * v[2] * v[2]); };
      s.step(f);
      for (int i = 0; i < 3; ++i) {
        const double h = s.est_state().hessian[0][i];
        sum[i] += h;
        sq[i] += h * h;
      }
    }
    for (int i = 0; i < 3; ++i) {
      const double mean = sum[i] / n, var = sq[i] / n - mean * mean, se = std::sqrt(var / n);
      INFO("i = " << i << ", mean " << mean << ", expected " << expected[i] << ", SE " << se);
      CHECK(std::abs(mean - expected[i]) < 5.0 * se);
      CHECK(std::abs(mean - a[i]) > 10.0 * se);
    }
  };
  SECTION("H = 1: E = A_ii + tr(A)/2 = [4, 5, 6]") {
    run({1.0, 1.0, 1.0}, {4.0, 5.0, 6.0});
  }
  SECTION("H = [4, 1, 0.25]: tr(DAD) = 4 + 2 + 0.75 = 6.75, E = [1 + 6.75/8, 2 + 6.75/2, 3 + 6.75/0.5]") {
    run({4.0, 1.0, 0.25}, {1.84375, 5.375, 16.5});
  }
}

TEST_CASE("HiZOO: the fused pass equals a plain loop of the reference formulas", "[zo][hizoo]") {
  // n = 100 doubles (full SIMD chunks and a scalar tail); z from the library's Gaussian direction,
  // everything else recomputed here element by element in double (the reference's operations);
  // the tolerances allow for fma-vs-separate rounding amplified by the curvature difference
  // (L+ + L- - 2 L0)/eps^2 (relative error about 1e-16 L / (eps^2 curvature) ~ 1e-12).
  const std::size_t n = 100;
  std::vector<double> x(n), y(n), h(n, 1.0);
  for (std::size_t i = 0; i < n; ++i) x[i] = y[i] = 0.01 * static_cast<double>(i) - 0.3;
  auto f_of = [](std::span<const double> v) {
    double l = 0;
    for (std::size_t i = 0; i < v.size(); ++i) l += (1.0 + 0.01 * static_cast<double>(i)) * v[i] * v[i] + 0.1 * v[i];
    return l;
  };
  const double eps = 1e-2, alpha = 0.01, lr = 1e-3, wd = 0.1;
  hizoo<double> s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = lr, .weight_decay = wd}),
                  zo::hizoo<>({.eps = eps, .smooth = alpha, .seed = 5}));
  const zo::noise_direction<gaussian> dir{};
  for (std::uint64_t call = 0; call < 3; ++call) {
    const std::uint64_t seed = zo::step_seed(5, call);
    std::vector<double> z(n), xp(n), xm(n);
    for (std::size_t i = 0; i < n; ++i) {
      z[i] = dir.value<double>(noise_key{seed, s.params().stream(0), 0}, i);
      xp[i] = y[i] + eps * std::sqrt(h[i]) * z[i];
      xm[i] = y[i] - eps * std::sqrt(h[i]) * z[i];
    }
    const double l0 = f_of(y), lp = f_of(xp), lm = f_of(xm);
    const double pg = (lp - lm) / (2 * eps), dd = std::abs(lp + lm - 2 * l0) / (2 * eps * eps);
    for (std::size_t i = 0; i < n; ++i) {
      h[i] = (1 - alpha) * h[i] + alpha * dd * z[i] * z[i] / h[i];
      y[i] -= lr * (pg * z[i] * std::sqrt(h[i]) + wd * y[i]);
    }
    s.step(f_of);
  }
  for (std::size_t i = 0; i < n; ++i) {
    CHECK_THAT(x[i], WithinAbs(y[i], 1e-12));
    CHECK_THAT(s.est_state().hessian[0][i], WithinRel(h[i], 1e-9));
  }
}

TEST_CASE("HiZOO: bad input is refused before anything changes", "[zo][hizoo][faults]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(zo::hizoo<>({.eps = 0.0}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.eps = -1e-3}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.eps = nan}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.smooth = -0.1}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.smooth = 1.5}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.smooth = nan}), invalid_argument);
  CHECK_THROWS_AS(zo::hizoo<>({.min_hessian = 0.0}), invalid_argument);
  CHECK_NOTHROW(zo::hizoo<>({.eps = 1e-3, .smooth = 1.0}));

  std::vector<float> x(70);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i);
  int calls = 0;
  auto f = [&](std::span<const float> v) {
    ++calls;
    double l = 0;
    for (float e : v) l += double(e) * e;
    return l;
  };
  SECTION("an optimizer with a pre-pass (clipping, non-finite skip)") {
    for (const optim::sgd_options o : {optim::sgd_options{.lr = 0.1, .max_grad_norm = 1.0},
                                      optim::sgd_options{.lr = 0.1, .skip_nonfinite = true}}) {
      hizoo<float> s(parameters<float>(std::span<float>(x)), optim::sgd<>(o), zo::hizoo<>({.seed = 1}));
      const std::vector<float> before = x;
      const std::string st = saved_state(s);
      CHECK_THROWS_AS(s.step(f), invalid_argument);
      CHECK(calls == 0);
      CHECK(zo_test::same_bits<float>(x, before));
      CHECK(saved_state(s) == st);
    }
  }
  SECTION("a schedule taking alpha above 1") {
    stepper<zo::hizoo<twice>, no_baseline, no_normalizer, optim::sgd<>, float> s(
        parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 0.1}), zo::hizoo<twice>({.smooth = 0.75}));
    const std::vector<float> before = x;
    const std::string st = saved_state(s);
    CHECK_THROWS_AS(s.step(f), invalid_argument);
    CHECK(calls == 0);
    CHECK(zo_test::same_bits<float>(x, before));
    CHECK(saved_state(s) == st);
  }
  SECTION("a non-finite evaluation: restored, H untouched, skipped; or thrown") {
    for (const auto pol : {zo::nonfinite_policy::skip, zo::nonfinite_policy::throw_error}) {
      hizoo<float> s(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 0.1}),
                     zo::hizoo<>({.eps = 1e-2, .smooth = 0.5, .seed = 2, .on_nonfinite = pol}));
      s.step(f);  // H != 1 from here
      const std::vector<float> before = x, h_before = s.est_state().hessian[0];
      int k = 0;
      auto bad = [&](std::span<const float> v) { return ++k == 3 ? std::nan("") : f(v); };
      if (pol == zo::nonfinite_policy::skip) {
        const zo::step_report r = s.step(bad);
        CHECK(r.nonfinite);
        CHECK_FALSE(r.applied);
      } else {
        CHECK_THROWS_AS(s.step(bad), nonfinite_error);
      }
      // +eps, -2 eps, +eps in float: restored within the guard's rounding bound (3 roundings of
      // values of about |x| + eps sqrt(H) |z|, so a few 2^-24 relative).
      for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(x[i] - before[i]) <= 1e-6f * (1.0f + std::abs(before[i])));
      CHECK(zo_test::same_bits<float>(s.est_state().hessian[0], h_before));
      CHECK(s.steps() == 1);
      CHECK(s.est_state().calls == 2);
    }
  }
  SECTION("an objective that throws: parameters restored, H untouched") {
    hizoo<float> s(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 0.1}), zo::hizoo<>({.eps = 1e-2, .seed = 4}));
    const std::vector<float> before = x;
    int k = 0;
    auto thrower = [&](std::span<const float> v) {
      if (++k == 2) throw std::runtime_error("objective failed");
      return f(v);
    };
    CHECK_THROWS_AS(s.step(thrower), std::runtime_error);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(x[i] - before[i]) <= 1e-6f * (1.0f + std::abs(before[i])));
    for (float v : s.est_state().hessian[0]) CHECK(v == 1.0f);
    CHECK(s.steps() == 0);
  }
}

TEST_CASE("HiZOO: save -> load -> continue is bit-identical", "[zo][hizoo][state]") {
  const std::size_t n = 1000;  // 31 float chunks + a tail of 8 on AVX2
  auto f = [](std::span<const float> v) {
    double l = 0;
    for (std::size_t i = 0; i < v.size(); ++i) l += (1.0 + 1e-3 * static_cast<double>(i)) * double(v[i]) * v[i];
    return l;
  };
  std::vector<float> a(n);
  for (std::size_t i = 0; i < n; ++i) a[i] = std::sin(0.1f * static_cast<float>(i));
  hizoo<float> s(parameters<float>(std::span<float>(a)), optim::sgd<>({.lr = 1e-3, .momentum = 0.9}),
                 zo::hizoo<>({.eps = 1e-3, .smooth = 0.1, .seed = 9}));
  for (int k = 0; k < 10; ++k) s.step(f);
  std::stringstream ss;
  s.save(ss);
  std::vector<float> b = a;
  for (int k = 0; k < 10; ++k) s.step(f);
  hizoo<float> t(parameters<float>(std::span<float>(b)), optim::sgd<>({.lr = 1e-3, .momentum = 0.9}),
                 zo::hizoo<>({.eps = 1e-3, .smooth = 0.1, .seed = 12345}));  // the saved seed wins
  t.load(ss);
  for (int k = 0; k < 10; ++k) t.step(f);
  CHECK(zo_test::same_bits<float>(a, b));
  CHECK(zo_test::same_bits<float>(s.est_state().hessian[0], t.est_state().hessian[0]));
  CHECK(saved_state(s) == saved_state(t));
  CHECK(s.est_state().hessian[0][0] != 1.0f);  // H did move
}

TEST_CASE("HiZOO vs MeZO on logistic regression at equal evaluations", "[zo][hizoo][convergence]") {
  const auto data = problems::load_breast_cancer<double>(std::string(STOCHGRAD_DATA_DIR) + "/breast_cancer.csv");
  const auto split = problems::standardized_split(data, 0.2, 0);
  const problems::logistic_regression<double> lr(split.train, split.test);
  auto f = [&](std::span<const double> x) { return lr.value(x); };
  const int evals = 6000;  // MeZO: 3000 steps of 2; HiZOO: 2000 steps of 3
  // Measured (seeds 1-3 mean, this build, AVX2): MeZO 0.05468; HiZOO 0.05774 (smooth 1e-8),
  // 0.05820 (1e-4), 0.06679 (1e-2), 0.06746 (1e-1). HiZOO is NOT better here at equal evaluations:
  // its third evaluation per step buys a Hessian estimate that, on this well-conditioned
  // standardised problem, does not pay for the steps it costs (with smooth 1e-8, H stays ~1 and
  // HiZOO is MeZO with 2/3 of the steps). So only what holds is asserted: HiZOO also reduces
  // ln 2 by more than 8x, and is within 25 % of MeZO's final loss.
  const double smooth = GENERATE(1e-8, 1e-2);
  double f_mezo = 0, f_hizoo = 0;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    std::vector<double> x(lr.dimension(), 0.0);
    mezo<double> m(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.05}),
                   zo::two_point<gaussian>({.eps = 1e-3, .seed = seed}));
    for (int k = 0; k < evals / 2; ++k) m.step(f);
    f_mezo += f(x) / 3;
    std::vector<double> y(lr.dimension(), 0.0);
    hizoo<double> h(parameters<double>(std::span<double>(y)), optim::sgd<>({.lr = 0.05}),
                    zo::hizoo<>({.eps = 1e-3, .smooth = smooth, .seed = seed}));
    for (int k = 0; k < evals / 3; ++k) h.step(f);
    f_hizoo += f(y) / 3;
  }
  INFO("smooth " << smooth << ": mean over seeds 1-3 at " << evals << " evaluations: MeZO " << f_mezo << ", HiZOO " << f_hizoo);
  CHECK(f_hizoo < std::log(2.0) / 8);
  CHECK(f_hizoo < 1.25 * f_mezo);
}

TEST_CASE("HiZOO: no allocation per step after construction", "[zo][allocation]") {
  std::vector<float> x(1000, 0.5f);
  hizoo<float> s(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 1e-4}), zo::hizoo<>({.eps = 1e-3, .smooth = 0.1, .seed = 1}));
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
