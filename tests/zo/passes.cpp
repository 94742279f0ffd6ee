// SPDX-License-Identifier: Apache-2.0
// The pass structure of the zeroth-order steps.
//
// - Reference (4 passes: +eps, -2 eps, +eps, update), fused (restore+update in one pass) and
//   fused_next (also the next step's +eps) perform, per element, the same floating-point
//   operations in the same order: x = madd(s, v, x) per perturbation, the same gradient
//   expression and the same optimizer kernel; only the grouping into passes over memory differs.
//   The rounding analysis therefore gives a tolerance of exactly 0: the tests require bitwise
//   equality of every evaluation point (checksummed inside the objective), of every loss and of
//   the parameters.
// - The kernels agree bitwise with the library's perturb / noise_gradient.
// - Thread count does not change a single bit.
// - Restore error of perturb/restore cycles without updates: derived bound (see the test).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;

namespace {

// Sizes with SIMD tails, a tensor below one chunk, one of exactly one chunk, and one spanning
// several parallel tasks (task_grain = 65536) for the threading test.
template <class T>
struct model {
  std::vector<std::vector<T>> data;
  parameters<T> p;
  explicit model(std::vector<std::size_t> sizes) {
    data.resize(sizes.size());
    p.add_group({.name = "no_decay", .decay = false});
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      data[t].resize(sizes[t]);
      for (std::size_t i = 0; i < sizes[t]; ++i) data[t][i] = static_cast<T>(0.5 + 0.001 * static_cast<double>((i * 37 + t * 11) % 1000));
    }
    for (std::size_t t = 0; t < sizes.size(); ++t) p.add(std::span<T>(data[t]), t % 2);
  }
};

// A loss that reads every parameter, and records the loss and a checksum of the bits of the
// point it was evaluated at.
template <class T>
struct recording_objective {
  std::vector<double>* losses;
  std::vector<std::uint64_t>* sums;
  double operator()(const parameters<T>& p) const {
    double f = 0;
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      for (std::size_t i = 0; i < p.tensor(t).size(); ++i) {
        const double v = static_cast<double>(p.tensor(t)[i]);
        f += (0.5 + 0.01 * static_cast<double>(i % 7)) * (v - 0.3) * (v - 0.3);
        h = (h ^ static_cast<std::uint64_t>(zo_test::bits(p.tensor(t)[i]))) * 1099511628211ull;
      }
    }
    losses->push_back(f);
    sums->push_back(h);
    return f;
  }
};

template <class T, class E>
struct run_result {
  std::vector<double> losses;
  std::vector<std::uint64_t> sums;
  std::vector<std::vector<T>> params;
};

template <class T, class E>
run_result<T, E> run(std::vector<std::size_t> sizes, E est, int steps, executor ex = {}, double lr = 1e-3) {
  model<T> m(sizes);
  run_result<T, E> r;
  stepper<E, no_baseline, no_normalizer, optim::sgd<>, T> s(
      m.p, optim::sgd<>({.lr = lr, .momentum = 0.9, .weight_decay = 0.01}), est, {}, {}, ex);
  recording_objective<T> f{&r.losses, &r.sums};
  for (int k = 0; k < steps; ++k) s.step(f);
  zo::settle(s);
  r.params = m.data;
  return r;
}

template <class T>
bool same(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
  for (std::size_t t = 0; t < a.size(); ++t) {
    if (!zo_test::same_bits<T>(a[t], b[t])) return false;
  }
  return true;
}

// settle() after fused_next computes fl(fl(x + s v) - s v): two roundings, each at most half an
// ulp of its result (|result| <= |x| + |s v|, |v| <= 6.34): |diff| <= 2 u (|x| + 6.4 s).
template <class T>
bool settle_close(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b, double s) {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  for (std::size_t t = 0; t < a.size(); ++t) {
    for (std::size_t i = 0; i < a[t].size(); ++i) {
      const double x = static_cast<double>(b[t][i]);
      if (std::abs(static_cast<double>(a[t][i]) - x) > 2 * u * (std::abs(x) + 6.4 * s)) return false;
    }
  }
  return true;
}

template <class T, class D>
void check_modes(std::size_t q) {
  const std::vector<std::size_t> sizes = {1000, 77, 3, simd::chunk, 5 * simd::chunk + 13};
  using E = zo::two_point<D>;
  auto est = [&](zo::pass_mode m) { return E({.eps = 1e-3, .q = q, .seed = 77, .mode = m}); };
  const auto ref = run<T>(sizes, est(zo::pass_mode::reference), 12);
  const auto fused = run<T>(sizes, est(zo::pass_mode::fused), 12);
  const auto next = run<T>(sizes, est(zo::pass_mode::fused_next), 12);
  REQUIRE(ref.losses.size() == 12 * 2 * q);
  CHECK(fused.losses == ref.losses);
  CHECK(fused.sums == ref.sums);
  CHECK(same(fused.params, ref.params));
  // fused_next: every evaluation point (hence every loss) is bitwise the reference one; the final
  // parameters differ from the reference only by the settle() pass that removes the pending
  // perturbation (see settle_close).
  CHECK(next.losses == ref.losses);
  CHECK(next.sums == ref.sums);
  CHECK(settle_close(next.params, ref.params, 1e-3));
}

}  // namespace

TEMPLATE_TEST_CASE("reference, fused and fused_next steps are bitwise identical", "[zo][passes]", float, double) {
  SECTION("gaussian q=1") { check_modes<TestType, gaussian>(1); }
  SECTION("gaussian q=3") { check_modes<TestType, gaussian>(3); }
  SECTION("rademacher q=2") { check_modes<TestType, rademacher>(2); }
  SECTION("segmented_uniform q=1") { check_modes<TestType, segmented_uniform>(1); }
  SECTION("unit_sphere q=2") { check_modes<TestType, unit_sphere>(2); }
}

TEMPLATE_TEST_CASE("one-sided modes are bitwise identical (with and without a center point)", "[zo][passes]", float,
                   double) {
  const std::vector<std::size_t> sizes = {300, 5, 2 * simd::chunk + 1};
  for (bool center : {true, false}) {
    using E = zo::one_sided<gaussian>;
    auto est = [&](zo::pass_mode m) { return E({.eps = 1e-3, .q = 2, .seed = 5, .mode = m, .center = center}); };
    // The one-point estimate (no center) is f / eps along z: keep the steps small.
    const double lr = center ? 1e-3 : 1e-8;
    const auto ref = run<TestType>(sizes, est(zo::pass_mode::reference), 8, {}, lr);
    const auto fused = run<TestType>(sizes, est(zo::pass_mode::fused), 8, {}, lr);
    const auto next = run<TestType>(sizes, est(zo::pass_mode::fused_next), 8, {}, lr);
    for (double l : ref.losses) REQUIRE(std::isfinite(l));
    CHECK(fused.losses == ref.losses);
    CHECK(same(fused.params, ref.params));
    CHECK(next.losses == ref.losses);
    CHECK(settle_close(next.params, ref.params, 1e-3));
  }
}

TEMPLATE_TEST_CASE("Sparse MeZO: reference and fused steps are bitwise identical", "[zo][passes][sparse]", float, double) {
  const std::vector<std::size_t> sizes = {1000, 77, 3, 5 * simd::chunk + 13};
  using E = zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>;
  auto est = [&](zo::pass_mode m) { return E({.eps = 1e-3, .q = 2, .seed = 8, .mode = m}, {}, {.sparsity = 0.6}); };
  const auto ref = run<TestType>(sizes, est(zo::pass_mode::reference), 10);
  const auto fused = run<TestType>(sizes, est(zo::pass_mode::fused), 10);
  const auto next = run<TestType>(sizes, est(zo::pass_mode::fused_next), 10);  // falls back to fused
  CHECK(fused.losses == ref.losses);
  CHECK(same(fused.params, ref.params));
  CHECK(next.losses == ref.losses);
  CHECK(same(next.params, ref.params));
}

TEMPLATE_TEST_CASE("the ZO kernels agree bitwise with the library's perturb and noise_gradient", "[zo][passes]", float,
                   double) {
  using T = TestType;
  for (std::size_t n : {std::size_t{1}, std::size_t{63}, simd::chunk, std::size_t{1000}, std::size_t{70001}}) {
    std::vector<T> a(n), b(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = b[i] = static_cast<T>(std::sin(static_cast<double>(i)));
    const parameters<T> p{std::span<T>(a)};
    const zo::noise_direction<gaussian> dir;
    const zo::detail::pass_term<T> terms[2] = {{42, 3, T(0.25)}, {43, 0, T(-1.5)}};
    zo::detail::perturb_pass<false>(p, dir, {}, terms, 2, {});
    perturb<gaussian>(std::span<T>(b), T(0.25), noise_key{42, 0, 3});
    perturb<gaussian>(std::span<T>(b), T(-1.5), noise_key{43, 0, 0});
    CHECK(zo_test::same_bits<T>(a, b));

    const noise_term nt[2] = {{42, 3, 0.7}, {43, 1, -2.5}};
    const zo::direction_source<T, zo::noise_direction<gaussian>> src(p, dir, nt);
    const noise_gradient<gaussian, default_generator, T> ng{std::span<const noise_term>(nt)};
    std::vector<T> ga(n), gb(n);
    const std::span<T> oa[1] = {ga}, ob[1] = {gb};
    materialize(p, src, std::span<const std::span<T>>(oa));
    materialize(p, ng, std::span<const std::span<T>>(ob));
    CHECK(zo_test::same_bits<T>(ga, gb));
  }
}

TEMPLATE_TEST_CASE("whole trajectories are bitwise identical on 1 and 2 threads", "[zo][passes][threads]", float, double) {
  using T = TestType;
  const std::vector<std::size_t> sizes = {200003, 77};  // 4 tasks of 65536 in the first tensor
  thread_pool pool(2);
  SECTION("mezo fused_next") {
    auto est = [] { return zo::two_point<gaussian>({.eps = 1e-3, .q = 2, .seed = 1, .mode = zo::pass_mode::fused_next}); };
    const auto one = run<T>(sizes, est(), 4);
    const auto two = run<T>(sizes, est(), 4, executor(pool));
    CHECK(one.losses == two.losses);
    CHECK(same(one.params, two.params));
  }
  SECTION("unit sphere (norm reduction)") {
    auto est = [] { return zo::one_sided<unit_sphere>({.eps = 1e-3, .q = 2, .seed = 2}); };
    const auto one = run<T>(sizes, est(), 3);
    const auto two = run<T>(sizes, est(), 3, executor(pool));
    CHECK(one.losses == two.losses);
    CHECK(same(one.params, two.params));
  }
  SECTION("sparse mezo") {
    using E = zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>;
    auto est = [] { return E({.eps = 1e-3, .seed = 3}, {}, {.sparsity = 0.75}); };
    const auto one = run<T>(sizes, est(), 3);
    const auto two = run<T>(sizes, est(), 3, executor(pool));
    CHECK(one.losses == two.losses);
    CHECK(same(one.params, two.params));
  }
}

TEMPLATE_TEST_CASE("restore error after 1e4 perturb/restore cycles without updates", "[zo][passes][restore]", float,
                   double) {
  // Derivation. Entries lie in [1.25, 1.75] and |eps z| <= 1e-3 * 6.34 (the largest variate of the
  // default generator), so every intermediate
  // value stays in the binade [1, 2), where the spacing is one ulp u (2^-23 float, 2^-52 double).
  // Write P = eps z / u (z is regenerated bitwise identically in every pass; eps z is exact
  // inside the fused multiply-add, or rounded once to p and then scaled exactly by -2 without
  // FMA) and f = frac(P). One cycle x1 = rd(x + P), x2 = rd(x1 - 2P), x3 = rd(x2 + P) (round to
  // nearest, in ulps) returns x3 - x = 0 for f < 1/4 or f >= 3/4, -1 for 1/4 <= f < 1/2 and +1
  // for 1/2 <= f < 3/4. So:
  //   worst case  |x_n - x_0| <= n ulps;
  //   with f uniform and independent across cycles (each cycle has its own seed) the error is a
  //   random walk with steps -1/0/+1 of probabilities 1/4, 1/2, 1/4: E[(err/u)^2] = n/2.
  // Over d = 1000 independent entries the mean of (err/u)^2 has standard error about
  // sqrt(2/d) * n/2 (Gaussian fourth moment); we accept 4 standard errors.
  using T = TestType;
  const std::size_t d = 1000, n = 10000;
  std::vector<T> x(d);
  for (std::size_t i = 0; i < d; ++i) x[i] = static_cast<T>(1.25 + 0.5 * static_cast<double>(i) / static_cast<double>(d));
  const std::vector<T> x0 = x;
  stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T> s(
      parameters<T>(std::span<T>(x)), {}, zo::two_point<gaussian>({.eps = 1e-3, .seed = 99}));
  std::vector<T> g(d);
  auto f = [] { return 0.0; };
  for (std::size_t k = 0; k < n; ++k) zo::estimate(s, f, std::span<T>(g));  // +eps, -2 eps, +eps; no update
  const double u = std::is_same_v<T, float> ? 0x1p-23 : 0x1p-52;
  double worst = 0, ms = 0;
  for (std::size_t i = 0; i < d; ++i) {
    const double e = (static_cast<double>(x[i]) - static_cast<double>(x0[i])) / u;
    CHECK(e == std::round(e));  // an integer number of ulps
    worst = std::max(worst, std::abs(e));
    ms += e * e / static_cast<double>(d);
  }
  CHECK(worst <= static_cast<double>(n));
  const double expected = static_cast<double>(n) / 2.0;
  CHECK(std::abs(ms - expected) <= 4.0 * std::sqrt(2.0 / static_cast<double>(d)) * expected);
  // The model's prediction is distinguishable from "no error" and from "one rounding per pass":
  CHECK(ms > 0.5 * expected);
}
