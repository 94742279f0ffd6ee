// SPDX-License-Identifier: Apache-2.0
// DP-SGD gradient source (privacy::dp_gradient; design/seeds/data.md section 5.1): the worked step
// of section 5.4 with the spec's numbers, the counter-based noise keys, the lazy chunk path against
// a scalar re-computation, composition with sgd/adam/adan and the first-order stepper, the noise
// variance, the empty batch, Poisson subsampling, and refusal of bad input with nothing changed.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/privacy/privacy.hpp>
#include <stochgrad/bits/stepper/stepper.hpp>
#include <stochgrad/presets.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using privacy::dp_gradient;
using privacy::dp_options;
using privacy::per_sample_gradients;

namespace {

void require_close(std::span<const double> got, const std::vector<double>& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    REQUIRE_THAT(got[i], Catch::Matchers::WithinRel(want[i], rel) || Catch::Matchers::WithinAbs(want[i], 1e-300));
  }
}

// Section 5.4: g_1 = [3, 4, 0], g_2 = [0.3, -0.4, 0], g_3 = [1, 1, 1], C = 1, z = 1.1, xi, B_exp = 3.
const std::vector<double> worked_g{3, 4, 0, 0.3, -0.4, 0, 1, 1, 1};
const std::vector<double> worked_xi{0.5, -1.2, 0.3};
const std::vector<double> worked_out{0.6757832719521696, -0.11421674138116104, 0.30244997861882833};

}  // namespace

TEST_CASE("dp_gradient: worked step of section 5.4", "[privacy][dp]") {
  std::vector<double> w(3, 0.0);
  parameters<double> p(w);
  const std::span<const double> gs(worked_g);
  const std::span<const double> tensors[1] = {gs};
  const per_sample_gradients<double> ps{3, tensors};
  const dp_options o{.max_grad_norm = 1.0, .noise_multiplier = 1.1, .expected_batch_size = 3.0};
  const dense_gradient<double> xi{std::span<const double>(worked_xi)};
  const dp_gradient<double, dense_gradient<double>> g(p, ps, o, xi);
  require_close(g.norms(), {5.0, 0.5, 1.7320508075688772}, 1e-15);
  require_close(g.factors(), {0.199999960000008, 1.0, 0.577349935856485}, 1e-14);
  std::vector<double> out(3);
  const std::span<double> outs[1] = {out};
  materialize(p, g, std::span<const std::span<double>>(outs));
  require_close(out, worked_out, 1e-14);

  SECTION("then an SGD step: theta <- theta - lr g~") {
    const optim::sgd<> sgd({.lr = 0.1});
    auto st = sgd.init(p);
    sgd.update(p, st, g, {});
    for (std::size_t i = 0; i < 3; ++i) REQUIRE_THAT(w[i], Catch::Matchers::WithinRel(-0.1 * worked_out[i], 1e-14));
  }
}

TEST_CASE("dp_gradient: float parameters reproduce the worked step to float precision", "[privacy][dp]") {
  std::vector<float> w(3, 0.0f);
  parameters<float> p(w);
  const std::vector<float> gf(worked_g.begin(), worked_g.end());
  const std::vector<float> xf(worked_xi.begin(), worked_xi.end());
  const std::span<const float> tensors[1] = {std::span<const float>(gf)};
  const dp_gradient<float, dense_gradient<float>> g(p, {3, tensors}, {.max_grad_norm = 1.0, .noise_multiplier = 1.1, .expected_batch_size = 3.0},
                                                    dense_gradient<float>(std::span<const float>(xf)));
  std::vector<float> out(3);
  const std::span<float> outs[1] = {out};
  materialize(p, g, std::span<const std::span<float>>(outs));
  // float: a few ulps of accumulated rounding (4 terms) relative to the largest term (~1).
  for (std::size_t i = 0; i < 3; ++i) REQUIRE(std::abs(out[i] - worked_out[i]) < 4e-7);
}

namespace {

// Two tensors (lengths 70 and 5: full chunks plus tails), B = 4 samples, deterministic values.
struct fixture {
  std::size_t n0 = 70, n1 = 5, B = 4;
  std::vector<double> w0 = std::vector<double>(70, 0.25), w1 = std::vector<double>(5, -0.5);
  std::vector<double> g0, g1;
  std::span<const double> tensors[2];
  parameters<double> p;
  fixture() {
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t e = 0; e < n0; ++e) g0.push_back(std::sin(0.37 * static_cast<double>(b * n0 + e)) * static_cast<double>(b + 1) * 0.3);
      for (std::size_t e = 0; e < n1; ++e) g1.push_back(std::cos(0.91 * static_cast<double>(b * n1 + e)) * 2.0);
    }
    tensors[0] = g0;
    tensors[1] = g1;
    p.add(w0);
    p.add(w1);
  }
  per_sample_gradients<double> ps() const { return {B, tensors}; }
};

}  // namespace

TEST_CASE("dp_gradient: counter-based noise keyed (seed, stream_offset + t, step), chunk and tail paths",
          "[privacy][dp]") {
  fixture f;
  const dp_options o{.max_grad_norm = 1.5, .noise_multiplier = 0.7, .expected_batch_size = 3.5, .seed = 1234,
                     .stream_offset = 10};
  const std::uint64_t step = GENERATE(std::uint64_t{0}, std::uint64_t{7}, (std::uint64_t{1} << 32) + 3);
  const dp_gradient<double> g(f.p, f.ps(), o, step);
  std::vector<double> o0(f.n0), o1(f.n1);
  const std::span<double> outs[2] = {o0, o1};
  materialize(f.p, g, std::span<const std::span<double>>(outs));
  // Independent re-computation: norms over both tensors, factors, the sum, the noise of the key.
  std::vector<double> c(f.B);
  for (std::size_t b = 0; b < f.B; ++b) {
    double s = 0;
    for (std::size_t e = 0; e < f.n0; ++e) s += f.g0[b * f.n0 + e] * f.g0[b * f.n0 + e];
    for (std::size_t e = 0; e < f.n1; ++e) s += f.g1[b * f.n1 + e] * f.g1[b * f.n1 + e];
    c[b] = std::min(1.5 / (std::sqrt(s) + 1e-6), 1.0);
    REQUIRE_THAT(g.factors()[b], Catch::Matchers::WithinRel(c[b], 1e-14));
  }
  const std::uint64_t seed_s = 1234 + (step >> 32) * 0x9E3779B97F4A7C15ULL;
  auto check = [&](std::size_t t, const std::vector<double>& gt, std::size_t n, const std::vector<double>& got) {
    for (std::size_t e = 0; e < n; ++e) {
      double acc = 0;
      for (std::size_t b = 0; b < f.B; ++b) acc += c[b] * gt[b * n + e];
      const noise_key key{seed_s, static_cast<std::uint32_t>(10 + t), static_cast<std::uint32_t>(step)};
      const double z = noise_at<gaussian, default_generator>(key, e);
      const double want = (acc + 0.7 * 1.5 * z) / 3.5;
      INFO("tensor " << t << " element " << e);
      REQUIRE_THAT(got[e], Catch::Matchers::WithinAbs(want, 1e-13));
    }
  };
  check(0, f.g0, f.n0, o0);
  check(1, f.g1, f.n1, o1);
  // The chunk path (elements [0, chunk) of tensor 0) and the scalar path agree bitwise.
  for (std::size_t e = 0; e < f.n0; ++e) {
    double th = f.w0[e];
    REQUIRE(g.at(0, e, th) == o0[e]);
  }
}

TEST_CASE("dp_gradient composes with every optimizer: lazy source == its materialised gradient", "[privacy][dp]") {
  const dp_options o{.max_grad_norm = 1.0, .noise_multiplier = 1.1, .expected_batch_size = 4.0, .seed = 99};
  auto run = [&](auto opt) {
    fixture a, b;
    const dp_gradient<double> ga(a.p, a.ps(), o, 5);
    auto sa = opt.init(a.p);
    opt.update(a.p, sa, ga, {.step = 5});
    // Same update from the materialised gradient.
    const dp_gradient<double> gb(b.p, b.ps(), o, 5);
    std::vector<double> m0(b.n0), m1(b.n1);
    const std::span<double> outs[2] = {m0, m1};
    materialize(b.p, gb, std::span<const std::span<double>>(outs));
    const std::span<const double> cs[2] = {m0, m1};
    auto sb = opt.init(b.p);
    opt.update(b.p, sb, dense_gradient<double>(std::span<const std::span<const double>>(cs)), {.step = 5});
    REQUIRE(a.w0 == b.w0);
    REQUIRE(a.w1 == b.w1);
    REQUIRE(a.w0 != std::vector<double>(70, 0.25));
  };
  run(optim::sgd<>({.lr = 0.1, .momentum = 0.9}));
  run(optim::adam<>({.lr = 0.01}));
  run(optim::adan<>({.lr = 0.01}));
}

TEST_CASE("dp_gradient drives the first-order stepper (adan preset)", "[privacy][dp]") {
  fixture f;
  stochgrad::adan<double> s(f.p, {.lr = 0.01});
  for (std::uint64_t k = 0; k < 3; ++k) {
    const dp_gradient<double> g(f.p, f.ps(), {.max_grad_norm = 1.0, .noise_multiplier = 1.0, .expected_batch_size = 4.0}, k);
    const update_report r = s.step(g);
    REQUIRE(r.applied);
  }
  REQUIRE(f.w0 != std::vector<double>(70, 0.25));
}

TEST_CASE("dp_gradient: noise variance (z C / B_exp)^2 and an empty batch", "[privacy][dp]") {
  // Empty Poisson batch: the sum is 0, the noise is still added (Opacus). g~ = z C xi / B_exp.
  const std::size_t d = 20000;
  std::vector<double> w(d, 0.0);
  parameters<double> p(w);
  const std::span<const double> tensors[1] = {std::span<const double>()};
  const dp_options o{.max_grad_norm = 2.0, .noise_multiplier = 1.5, .expected_batch_size = 10.0, .seed = 7};
  const dp_gradient<double> g(p, {0, tensors}, o, 3);
  std::vector<double> out(d);
  const std::span<double> outs[1] = {out};
  materialize(p, g, std::span<const std::span<double>>(outs));
  double s = 0, s2 = 0;
  for (double x : out) {
    s += x;
    s2 += x * x;
  }
  const double dd = static_cast<double>(d);
  const double sd = 1.5 * 2.0 / 10.0, mean = s / dd, var = s2 / dd - mean * mean;
  // mean: standard error sd / sqrt(d); variance: standard error sd^2 sqrt(2/d). 5 standard errors.
  REQUIRE(std::abs(mean) < 5 * sd / std::sqrt(dd));
  REQUIRE(std::abs(var - sd * sd) < 5 * sd * sd * std::sqrt(2.0 / dd));
  // Exact: element e is z C xi_e / B_exp with xi_e the key's Gaussian.
  for (std::size_t e = 0; e < 50; ++e) {
    const double z = noise_at<gaussian, default_generator>(privacy::dp_noise_key(7, 0, 3), e);
    REQUIRE_THAT(out[e], Catch::Matchers::WithinAbs(3.0 * z / 10.0, 1e-15));
  }
}

TEST_CASE("dp_gradient: bad input throws before anything changes", "[privacy][dp]") {
  fixture f;
  const optim::adam<> opt({.lr = 0.01});
  auto st = opt.init(f.p);
  const auto w0 = f.w0;
  const auto m0 = st.exp_avg;
  const dp_options good{.max_grad_norm = 1.0, .noise_multiplier = 1.0, .expected_batch_size = 4.0};
  auto attempt = [&](const dp_options& o, per_sample_gradients<double> ps) {
    const dp_gradient<double> g(f.p, ps, o, 0);
    opt.update(f.p, st, g, {});
  };
  dp_options o = good;
  o.max_grad_norm = 0.0;
  REQUIRE_THROWS_AS(attempt(o, f.ps()), invalid_argument);
  o.max_grad_norm = -1.0;
  REQUIRE_THROWS_AS(attempt(o, f.ps()), invalid_argument);
  o = good;
  o.noise_multiplier = -0.5;
  REQUIRE_THROWS_AS(attempt(o, f.ps()), invalid_argument);
  o.noise_multiplier = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_AS(attempt(o, f.ps()), invalid_argument);
  o = good;
  o.expected_batch_size = 0.0;
  REQUIRE_THROWS_AS(attempt(o, f.ps()), invalid_argument);
  // Layout that does not fit: batch 3 for 4 samples' worth of values; one tensor missing.
  REQUIRE_THROWS_AS(attempt(good, {3, f.tensors}), size_mismatch);
  REQUIRE_THROWS_AS(attempt(good, {4, std::span<const std::span<const double>>(f.tensors, 1)}), size_mismatch);
  // A NaN per-sample gradient.
  f.g1[7] = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_AS(attempt(good, f.ps()), nonfinite_error);
  REQUIRE(f.w0 == w0);
  REQUIRE(st.exp_avg == m0);
  REQUIRE(st.steps == std::vector<std::uint64_t>(st.steps.size(), 0));
}

TEST_CASE("poisson_sample: rate q, reproducible, q = 0 and q = 1", "[privacy][dp]") {
  REQUIRE(privacy::poisson_sample(1000, 0.0, 1, 0).empty());
  REQUIRE(privacy::poisson_sample(1000, 1.0, 1, 0).size() == 1000);
  const std::uint32_t n = 100000;
  const double q = 0.3;
  const auto a = privacy::poisson_sample(n, q, 42, 17);
  // Binomial(n, q): standard deviation sqrt(n q (1 - q)) = 145; 5 standard deviations.
  REQUIRE(std::abs(static_cast<double>(a.size()) - n * q) < 5 * std::sqrt(n * q * (1 - q)));
  REQUIRE(a == privacy::poisson_sample(n, q, 42, 17));
  const auto b = privacy::poisson_sample(n, q, 42, 18);
  REQUIRE(a != b);
  for (std::size_t i = 1; i < a.size(); ++i) REQUIRE(a[i - 1] < a[i]);
  // Independence of consecutive steps: the overlap is ~ n q^2 (std sqrt(n q^2 (1 - q^2))).
  std::vector<char> in(n, 0);
  for (auto i : a) in[i] = 1;
  double both = 0;
  for (auto i : b) both += in[i];
  REQUIRE(std::abs(both - n * q * q) < 5 * std::sqrt(n * q * q * (1 - q * q)));
  REQUIRE_THROWS_AS(privacy::poisson_sample(10, 1.5, 0, 0), invalid_argument);
  REQUIRE_THROWS_AS(privacy::poisson_sample(10, -0.1, 0, 0), invalid_argument);
}

TEST_CASE("secure_seed draws from the OS entropy source", "[privacy][dp]") {
  // Two 64-bit draws collide with probability 2^-64.
  REQUIRE(privacy::secure_seed() != privacy::secure_seed());
}

TEST_CASE("dp_gradient<float>: SIMD chunk path == scalar path bitwise", "[privacy][dp]") {
  const std::size_t n = 133, B = 5;
  std::vector<float> w(n, 0.1f), g(B * n);
  for (std::size_t k = 0; k < g.size(); ++k) g[k] = static_cast<float>(std::sin(0.13 * static_cast<double>(k)));
  parameters<float> p(w);
  const std::span<const float> tensors[1] = {std::span<const float>(g)};
  const dp_gradient<float> src(p, {B, tensors}, {.max_grad_norm = 2.0, .noise_multiplier = 0.9, .expected_batch_size = 6.0, .seed = 5}, 11);
  std::vector<float> out(n);
  const std::span<float> outs[1] = {out};
  materialize(p, src, std::span<const std::span<float>>(outs));
  for (std::size_t e = 0; e < n; ++e) {
    float th = w[e];
    REQUIRE(src.at(0, e, th) == out[e]);
  }
}
