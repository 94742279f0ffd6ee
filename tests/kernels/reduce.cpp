// SPDX-License-Identifier: Apache-2.0
// Reductions (sum, sum_squares, dot, norm, mean_variance) against long double references with a
// derived error bound, the accuracy goal of PERFORMANCE.md (relative error <= 2e-6 on standard
// normals in float32), thread-count independence and argument checking.
//
// Error bound. reduce.hpp cuts the input into leaves of L = 1024 elements; in a leaf, each of the
// 4 W accumulator lanes (W = SIMD width of T) adds L/(4W) elements in sequence, the four registers
// are added pairwise (2 roundings), the lanes are summed (at most W - 1 roundings, whatever order
// the horizontal add uses) and a scalar tail of < W elements adds at most W more; so every term
// goes through at most m = L/(4W) + 2W + 2 roundings in T, and the leaf result has
// |error| <= gamma_m sum|terms| with gamma_m = m u / (1 - m u), u = eps(T)/2 (Higham, Accuracy and
// Stability of Numerical Algorithms, 2nd ed., §4.2). Leaves are combined in double by a tree of
// depth <= ceil(log2(n/L)) + 1, adding (depth + 1) u_double sum|terms|. The long double reference
// (sequential, u = 2^-64) is exact to far below that.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/bits/error.hpp>
#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/kernels/reduce.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

namespace {

template <class T>
double gamma_bound(std::size_t n) {
  const double m = 1024.0 / (4.0 * simd::width<T>) + 2.0 * simd::width<T> + 2.0;
  const double u = std::numeric_limits<T>::epsilon() / 2;
  const double depth = std::ceil(std::log2(static_cast<double>(n) / 1024.0 + 1.0)) + 2.0;
  return m * u / (1 - m * u) + depth * std::numeric_limits<double>::epsilon() / 2;
}

template <class T>
std::vector<T> normals(std::size_t n, std::uint64_t seed, T offset = T(0)) {
  std::vector<T> v(n);
  generate<gaussian>(std::span<T>(v), noise_key{seed, 0, 0});
  if (offset != T(0))
    for (T& x : v) x += offset;
  return v;
}

struct ref_sums {
  long double sum = 0, abs_sum = 0, sq = 0;
};
template <class T>
ref_sums reference(const std::vector<T>& v) {
  ref_sums r;
  for (const T x : v) {
    r.sum += x;
    r.abs_sum += std::abs(static_cast<long double>(x));
    r.sq += static_cast<long double>(x) * x;
  }
  return r;
}

template <class T>
void check_accuracy(std::size_t n, std::uint64_t seed) {
  const std::vector<T> x = normals<T>(n, seed), y = normals<T>(n, seed + 1);
  const std::span<const T> xs(x), ys(y);
  const ref_sums r = reference(x);
  const double g = gamma_bound<T>(n);
  INFO("n=" << n << " gamma=" << g);

  const double s = sum<T>(xs);
  const double s_ref = static_cast<double>(r.sum);
  const double s_err = std::abs(s - s_ref);
  INFO("sum=" << s << " ref=" << s_ref << " abs err=" << s_err << " rel err=" << s_err / std::abs(s_ref));
  CHECK(s_err <= g * static_cast<double>(r.abs_sum));
  // PERFORMANCE.md goal 6 (float32): relative error <= 2e-6 of the sum.
  if constexpr (std::is_same_v<T, float>) CHECK(s_err <= 2e-6 * std::abs(s_ref));

  const double q = sum_squares<T>(xs);
  const double q_ref = static_cast<double>(r.sq);
  CHECK(std::abs(q - q_ref) <= g * q_ref);
  if constexpr (std::is_same_v<T, float>) CHECK(std::abs(q - q_ref) <= 2e-6 * q_ref);
  // norm = sqrt(sum_squares): relative error halves, plus one double rounding.
  CHECK(std::abs(norm<T>(xs) - std::sqrt(q_ref)) <= (g / 2 + 1e-15) * std::sqrt(q_ref));

  long double d_ref = 0, d_abs = 0;
  for (std::size_t i = 0; i < n; ++i) {
    d_ref += static_cast<long double>(x[i]) * y[i];
    d_abs += std::abs(static_cast<long double>(x[i]) * y[i]);
  }
  CHECK(std::abs(dot<T>(xs, ys) - static_cast<double>(d_ref)) <= g * static_cast<double>(d_abs));
  // The goal's relative error is measured on dot(x, x): x . y of independent normals is a
  // cancelled sum (|x . y| ~ sqrt(n), and at n = 1e8, seed 3 it is 1.3e-3 sqrt(n)), so an error
  // relative to its value measures the input's conditioning, not the kernel; the bound above
  // relative to sum |x y| is the kernel's.
  if constexpr (std::is_same_v<T, float>) CHECK(std::abs(dot<T>(xs, xs) - q_ref) <= 2e-6 * q_ref);
}

// mean_variance against a two-pass long double reference. A leaf is shifted by c (the mean of its
// first 2W elements) and summed once: d = x - c carries one rounding (u = eps/2), d^2 three, so
// S2 = sum d^2 has relative error <= gamma + 3u (gamma: the summation bound of sum_squares) and
// S1 = sum d has error <= (gamma + u) sum|d| <= (gamma + u) sqrt(n S2). The one-pass result is kept
// only when S1^2/n <= S2/8, so m2 = S2 - S1^2/n >= 7/8 S2 and the error of S1^2/n is at most
// 2 (gamma + u) sqrt(S1^2/n * S2) <= 0.71 (gamma + u) S2. In all, |err m2| <= 8/7 (1.71 gamma
// + 3.71u) m2 <= (2 gamma + 5u) m2; other leaves take two passes (error gamma + 3u). The mean
// behaves like sum / n with the same factor.
template <class T>
void check_moments(const std::vector<T>& x) {
  const std::size_t n = x.size();
  const double nd = static_cast<double>(n);
  const ref_sums r = reference(x);
  const long double mean_ref = r.sum / static_cast<long double>(n);
  long double m2_ref = 0;
  for (const T v : x) m2_ref += (v - mean_ref) * (v - mean_ref);
  const moments m = mean_variance<T>(std::span<const T>(x));
  const double g = 2 * gamma_bound<T>(n) + 5 * std::numeric_limits<T>::epsilon() / 2;
  INFO("n=" << n << " mean=" << m.mean << " ref=" << static_cast<double>(mean_ref) << " m2=" << m.m2
            << " ref=" << static_cast<double>(m2_ref));
  CHECK(m.count == n);
  CHECK(std::abs(m.mean - static_cast<double>(mean_ref)) <= g * static_cast<double>(r.abs_sum) / nd);
  CHECK(std::abs(m.m2 - static_cast<double>(m2_ref)) <= g * static_cast<double>(m2_ref));
  CHECK_THAT(m.variance_unbiased(), Catch::Matchers::WithinRel(static_cast<double>(m2_ref) / (nd - 1), 2 * g));
  CHECK_THAT(m.variance_biased(), Catch::Matchers::WithinRel(static_cast<double>(m2_ref) / nd, 2 * g));
}

}  // namespace

TEMPLATE_TEST_CASE("reductions: within the derived bound of long double references", "[kernels][reduce]", float,
                   double) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{1023}, std::size_t{1025},
                              std::size_t{100003}}) {
    check_accuracy<TestType>(n, 17 + n);
  }
}

TEST_CASE("reductions: relative error <= 2e-6 on 1e6 and 1e7 standard normals in float", "[kernels][reduce]") {
  check_accuracy<float>(1000000, 1);
  check_accuracy<float>(10000000, 2);
}

TEST_CASE("reductions: relative error <= 2e-6 on 1e8 standard normals in float", "[kernels][reduce][.long]") {
  check_accuracy<float>(100000000, 3);
}

TEMPLATE_TEST_CASE("mean_variance: accurate, also with a large offset", "[kernels][reduce]", float, double) {
  using T = TestType;
  check_moments(normals<T>(1000000, 5));
  // Mean 1e3, sd 1: the naive E[x^2] - E[x]^2 in float would lose every digit of the variance.
  check_moments(normals<T>(1000000, 6, T(1000)));
  check_moments(normals<T>(3, 7));
  // Data on which the one-pass shift is poor, so leaves take the two-pass route: a ramp (every
  // leaf's first elements lie far below its mean) and normals whose leaves start with outliers.
  std::vector<T> ramp(100003);
  for (std::size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<T>(i % 4096);
  check_moments(ramp);
  std::vector<T> spikes = normals<T>(100003, 9);
  for (std::size_t i = 0; i < spikes.size(); i += 1024) {
    for (std::size_t k = i; k < std::min(spikes.size(), i + 64); ++k) spikes[k] += T(50);
  }
  check_moments(spikes);
  const moments one = mean_variance<T>(std::span<const T>(normals<T>(1, 8)));
  CHECK(one.count == 1);
  CHECK(one.m2 == 0.0);
  CHECK(std::isnan(one.variance_unbiased()));
}

TEMPLATE_TEST_CASE("reductions give identical bits for 1, 2, 3 and 8 threads", "[kernels][reduce][threads]", float,
                   double) {
  using T = TestType;
  const std::size_t n = 3 * 64 * 1024 + 517;  // more leaves than the 64 parts, ragged last leaf
  const std::vector<T> x = normals<T>(n, 11), y = normals<T>(n, 12);
  const std::span<const T> xs(x), ys(y);
  auto run_all = [&](const executor& ex) {
    const moments m = mean_variance<T>(xs, ex);
    return std::vector<double>{sum<T>(xs, ex), sum_squares<T>(xs, ex), dot<T>(xs, ys, ex), norm<T>(xs, ex),
                               static_cast<double>(m.count), m.mean, m.m2};
  };
  const std::vector<double> ref = run_all(executor{});
  for (const unsigned threads : {1u, 2u, 3u, 8u}) {
    thread_pool pool(threads);
    const std::vector<double> got = run_all(executor(pool));
    INFO("threads=" << threads);
    CHECK(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(double)) == 0);
  }
  // Smaller inputs (fewer leaves than parts) too.
  for (const std::size_t m : {std::size_t{1}, std::size_t{1500}, std::size_t{40000}}) {
    const std::span<const T> part(x.data(), m);
    thread_pool pool(3);
    CHECK(std::bit_cast<std::uint64_t>(sum<T>(part, executor(pool))) == std::bit_cast<std::uint64_t>(sum<T>(part)));
  }
}

TEST_CASE("reductions: bad input throws, zero length gives the empty result", "[kernels][reduce][errors]") {
  std::vector<float> v(8, 1.0f), w(9, 1.0f);
  const float* null = nullptr;
  REQUIRE_THROWS_AS(dot<float>(std::span<const float>(v), std::span<const float>(w)), size_mismatch);
  REQUIRE_THROWS_AS(sum<float>(std::span<const float>(null, 2)), invalid_argument);
  REQUIRE_THROWS_AS(sum_squares<float>(std::span<const float>(null, 2)), invalid_argument);
  REQUIRE_THROWS_AS(norm<float>(std::span<const float>(null, 2)), invalid_argument);
  REQUIRE_THROWS_AS(mean_variance<float>(std::span<const float>(null, 2)), invalid_argument);
  REQUIRE_THROWS_AS(dot<float>(std::span<const float>(null, 8), std::span<const float>(v)), invalid_argument);
  REQUIRE_THROWS_AS(dot<float>(std::span<const float>(v), std::span<const float>(null, 8)), invalid_argument);
  try {
    dot<float>(std::span<const float>(v), std::span<const float>(w));
  } catch (const size_mismatch& e) {
    CHECK(std::string(e.what()).find("dot") != std::string::npos);
  }
  CHECK(sum<float>(std::span<const float>(null, 0)) == 0.0);
  CHECK(sum_squares<double>(std::span<const double>()) == 0.0);
  CHECK(dot<float>(std::span<const float>(null, 0), std::span<const float>(null, 0)) == 0.0);
  CHECK(norm<float>(std::span<const float>()) == 0.0);
  const moments m = mean_variance<float>(std::span<const float>(null, 0));
  CHECK(m.count == 0);
  CHECK(std::isnan(m.variance_biased()));
}
