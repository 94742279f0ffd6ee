// SPDX-License-Identifier: Apache-2.0
// Element-wise kernels: perturb (every distribution, float/double, span and group forms),
// generate, axpy, scale against scalar references, bitwise; bitwise identical for any thread
// count; argument checking.
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
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

namespace {

// memcmp that accepts empty (possibly null) ranges.
bool same_bytes(const void* a, const void* b, std::size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && same_bytes(a.data(), b.data(), a.size() * sizeof(T));
}

template <class T>
std::vector<T> ramp(std::size_t n, T scale = T(1)) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * (static_cast<T>(i % 101) / T(7) - T(3));
  return v;
}

constexpr std::size_t sizes[] = {0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 1000, 4099};

template <class D, class T>
void check_perturb_against_reference() {
  const noise_key key{77, 3, 9};
  for (const std::size_t n : sizes) {
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{6}, std::uint64_t{1} << 33}) {
      for (const T s : {T(1), T(-2.5), T(1e-3)}) {
        std::vector<T> x = ramp<T>(n), ref = x;
        perturb<D, default_generator, T>(std::span<T>(x), s, key, first);
        for (std::size_t i = 0; i < n; ++i) ref[i] = simd::madd(s, noise_value<D, default_generator, T>(key, first + i), ref[i]);
        INFO("n=" << n << " first=" << first << " s=" << s);
        REQUIRE(same_bits(x, ref));
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("perturb equals the scalar reference x[i] = madd(s, noise_value(key, first + i), x[i])",
                   "[kernels][perturb]", float, double) {
  SECTION("gaussian") { check_perturb_against_reference<gaussian, TestType>(); }
  SECTION("rademacher") { check_perturb_against_reference<rademacher, TestType>(); }
  SECTION("uniform") { check_perturb_against_reference<uniform, TestType>(); }
  SECTION("segmented_uniform") { check_perturb_against_reference<segmented_uniform, TestType>(); }
}

TEMPLATE_TEST_CASE("perturb with +s then -s restores the parameters up to the rounding of the additions",
                   "[kernels][perturb]", float, double) {
  using T = TestType;
  const std::vector<T> x0 = ramp<T>(5000);
  std::vector<T> x = x0;
  const T eps = T(1e-3);
  perturb<gaussian>(std::span<T>(x), eps, {1, 0, 0});
  perturb<gaussian>(std::span<T>(x), -eps, {1, 0, 0});
  // Each element sees two roundings of magnitude <= ulp(|x| + eps |z|)/2 with |z| < 6.4.
  for (std::size_t i = 0; i < x.size(); ++i) {
    const T bound = (std::abs(x0[i]) + eps * T(6.4)) * std::numeric_limits<T>::epsilon();
    REQUIRE(std::abs(x[i] - x0[i]) <= bound);
  }
}

TEMPLATE_TEST_CASE("group perturb: tensor j uses stream key.stream + j", "[kernels][perturb]", float, double) {
  using T = TestType;
  std::vector<T> a = ramp<T>(70), b = ramp<T>(1), c = ramp<T>(0), d = ramp<T>(333);
  std::vector<T> ra = a, rb = b, rc = c, rd = d;
  const std::span<T> group[] = {std::span<T>(a), std::span<T>(b), std::span<T>(c), std::span<T>(d)};
  const noise_key key{5, 10, 2};
  const T s = T(0.75);
  perturb<rademacher>(std::span<const std::span<T>>(group), s, key);
  std::vector<T>* refs[] = {&ra, &rb, &rc, &rd};
  for (std::uint32_t j = 0; j < 4; ++j) {
    std::vector<T>& r = *refs[j];
    for (std::size_t i = 0; i < r.size(); ++i) {
      r[i] = simd::madd(s, noise_value<rademacher, default_generator, T>({5, 10 + j, 2}, i), r[i]);
    }
  }
  CHECK(same_bits(a, ra));
  CHECK(same_bits(b, rb));
  CHECK(same_bits(c, rc));
  CHECK(same_bits(d, rd));
}

TEMPLATE_TEST_CASE("generate writes noise_value", "[kernels][generate]", float, double) {
  using T = TestType;
  for (const std::size_t n : sizes) {
    std::vector<T> out(n), ref(n);
    generate<segmented_uniform>(std::span<T>(out), {3, 1, 4}, 11);
    for (std::size_t i = 0; i < n; ++i) ref[i] = noise_value<segmented_uniform, default_generator, T>({3, 1, 4}, 11 + i);
    REQUIRE(same_bits(out, ref));
  }
}

TEMPLATE_TEST_CASE("axpy and scale equal their scalar references bitwise", "[kernels]", float, double) {
  using T = TestType;
  for (const std::size_t n : sizes) {
    for (const std::size_t off : {std::size_t{0}, std::size_t{1}}) {  // unaligned data
      std::vector<T> xb = ramp<T>(n + off, T(0.37)), yb = ramp<T>(n + off, T(-1.3));
      const std::span<const T> x(xb.data() + off, n);
      const std::span<T> y(yb.data() + off, n);
      std::vector<T> ref(y.begin(), y.end());
      const T a = T(-0.8125);
      axpy<T>(a, x, y);
      for (std::size_t i = 0; i < n; ++i) ref[i] = simd::madd(a, x[i], ref[i]);
      REQUIRE(same_bytes(y.data(), ref.data(), n * sizeof(T)));
      const T c = T(1.0625);
      scale<T>(y, c);
      for (std::size_t i = 0; i < n; ++i) ref[i] = ref[i] * c;
      REQUIRE(same_bytes(y.data(), ref.data(), n * sizeof(T)));
    }
  }
}

TEMPLATE_TEST_CASE("element-wise kernels give identical bits for 1, 2, 3 and 8 threads", "[kernels][threads]", float,
                   double) {
  using T = TestType;
  // Several parallel tasks (detail::task_grain elements each) plus a ragged tail, and a start
  // offset that is not a multiple of 4 so every task has a head.
  const std::size_t n = 5 * detail::task_grain + 1234;
  const noise_key key{2718, 1, 0};
  auto run_all = [&](const executor& ex) {
    std::vector<T> p = ramp<T>(n), r = ramp<T>(n), g(n), y = ramp<T>(n), sc = ramp<T>(n);
    const std::vector<T> x = ramp<T>(n, T(0.5));
    perturb<gaussian>(std::span<T>(p), T(0.01), key, 3, ex);
    perturb<rademacher>(std::span<T>(r), T(-0.5), key, 0, ex);
    generate<uniform>(std::span<T>(g), key, 7, ex);
    axpy<T>(T(0.3), std::span<const T>(x), std::span<T>(y), ex);
    scale<T>(std::span<T>(sc), T(1.5), ex);
    std::vector<T> all;
    for (const auto* v : {&p, &r, &g, &y, &sc}) all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  const std::vector<T> inline_result = run_all(executor{});
  for (const unsigned threads : {1u, 2u, 3u, 8u}) {
    thread_pool pool(threads);
    INFO("threads=" << threads);
    CHECK(same_bits(run_all(executor(pool)), inline_result));
  }
}

TEST_CASE("element-wise kernels: bad input throws, zero length is a no-op", "[kernels][errors]") {
  std::vector<float> v(8, 1.0f), w(7, 1.0f);
  float* null = nullptr;
  const noise_key key{};
  // Size mismatch.
  REQUIRE_THROWS_AS(axpy<float>(1.0f, std::span<const float>(w), std::span<float>(v)), size_mismatch);
  try {
    axpy<float>(1.0f, std::span<const float>(w), std::span<float>(v));
  } catch (const size_mismatch& e) {
    const std::string msg = e.what();
    CHECK(msg.find("axpy") != std::string::npos);
    CHECK(msg.find('7') != std::string::npos);
    CHECK(msg.find('8') != std::string::npos);
  }
  // Null data with non-zero length.
  REQUIRE_THROWS_AS(perturb<gaussian>(std::span<float>(null, 3), 1.0f, key), invalid_argument);
  REQUIRE_THROWS_AS(generate<gaussian>(std::span<float>(null, 3), key), invalid_argument);
  REQUIRE_THROWS_AS(axpy<float>(1.0f, std::span<const float>(null, 8), std::span<float>(v)), invalid_argument);
  REQUIRE_THROWS_AS(axpy<float>(1.0f, std::span<const float>(v), std::span<float>(null, 8)), invalid_argument);
  REQUIRE_THROWS_AS(scale<float>(std::span<float>(null, 1), 2.0f), invalid_argument);
  try {
    scale<float>(std::span<float>(null, 5), 2.0f);
  } catch (const invalid_argument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("scale") != std::string::npos);
    CHECK(msg.find("null") != std::string::npos);
  }
  // The group form checks every tensor.
  std::span<float> group[] = {std::span<float>(v), std::span<float>(null, 2)};
  REQUIRE_THROWS_AS(perturb<gaussian>(std::span<const std::span<float>>(group), 1.0f, key), invalid_argument);
  // Zero length: no-op, null data allowed, nothing touched.
  perturb<gaussian>(std::span<float>(null, 0), 1.0f, key);
  generate<uniform>(std::span<float>(null, 0), key);
  axpy<float>(1.0f, std::span<const float>(null, 0), std::span<float>(null, 0));
  scale<float>(std::span<float>(null, 0), 3.0f);
  std::vector<float> untouched(4, 5.0f);
  perturb<gaussian>(std::span<float>(untouched.data(), 0), 1.0f, key);
  scale<float>(std::span<float>(untouched.data(), 0), 3.0f);
  CHECK(untouched == std::vector<float>(4, 5.0f));
}
