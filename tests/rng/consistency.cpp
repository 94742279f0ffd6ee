// SPDX-License-Identifier: Apache-2.0
// Counter-based invariance (algorithms.md §11): the SIMD kernels and the scalar reference give the
// same bits for every element, whatever the length, the start offset, the pointer alignment or the
// way a vector is sliced; element i never depends on the elements before it.
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

// Every generator policy the library offers is held to the same checks: the spec reference
// philox<10>, philox<7>, the default (philox_icdf<7>) and philox_icdf<10>.
#define SG_GENERATORS philox<10>, philox<7>, default_generator, philox_icdf<10>
// Distinct generator list (TEMPLATE_TEST_CASE needs distinct types).
#define SG_GENERATOR_PAIRS                                                                                  \
  (std::pair<philox<10>, float>), (std::pair<philox<10>, double>), (std::pair<philox<7>, float>),          \
      (std::pair<philox<7>, double>), (std::pair<philox_icdf<7>, float>), (std::pair<philox_icdf<7>, double>), \
      (std::pair<philox_icdf<10>, float>)

namespace {

template <class T>
auto bits(T v) {
  if constexpr (sizeof(T) == 4) {
    return std::bit_cast<std::uint32_t>(v);
  } else {
    return std::bit_cast<std::uint64_t>(v);
  }
}

// Index of the first element where a and b differ bitwise, or -1.
template <class T>
long first_mismatch(const T* a, const T* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (bits(a[i]) != bits(b[i])) return static_cast<long>(i);
  }
  return -1;
}

constexpr std::array<std::size_t, 24> lengths{0,  1,  2,  3,  4,  5,  7,   8,   15,  16,  17,  31,
                                              32, 33, 63, 64, 65, 95, 127, 128, 129, 257, 300, 1000};

// Start offsets: small and unaligned to 4, 16 and 64 elements; around the 2^32-block boundary
// (element 2^34 is block 2^32, where counter word 0 wraps and word 1 becomes 1); and near 2^64.
constexpr std::uint64_t two34 = std::uint64_t{1} << 34;
constexpr std::array<std::uint64_t, 14> firsts{0,          1,          2,          3,          4,
                                               5,          13,         64,         67,         two34 - 37,
                                               two34 - 4,  two34 + 3,  (std::uint64_t{1} << 40) + 6,
                                               ~std::uint64_t{0} - 1100};

template <class D, class G, class T>
void check_generate_and_perturb() {
  const noise_key key{0x0123456789abcdefULL, 7, 3};
  std::vector<T> buf(1000 + 8), ref(1000 + 8), x0(1000 + 8);
  for (std::size_t i = 0; i < x0.size(); ++i) x0[i] = static_cast<T>(0.25) * static_cast<T>(i % 17) - T(2);
  const T s = static_cast<T>(-0.3125);
  for (const std::uint64_t first : firsts) {
    for (const std::size_t n : lengths) {
      for (const std::size_t misalign : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
        T* out = buf.data() + misalign;
        // generate: out[i] = z(first + i)
        generate<D, G, T>(std::span<T>(out, n), key, first);
        for (std::size_t i = 0; i < n; ++i) ref[i] = noise_value<D, G, T>(key, first + i);
        const long bad = first_mismatch(out, ref.data(), n);
        INFO("generate: first=" << first << " n=" << n << " misalign=" << misalign << " mismatch at " << bad);
        REQUIRE(bad == -1);
        // perturb: x[i] = madd(s, z(first + i), x[i])
        std::memcpy(out, x0.data(), n * sizeof(T));
        perturb<D, G, T>(std::span<T>(out, n), s, key, first);
        for (std::size_t i = 0; i < n; ++i) ref[i] = simd::madd(s, noise_value<D, G, T>(key, first + i), x0[i]);
        const long badp = first_mismatch(out, ref.data(), n);
        INFO("perturb: first=" << first << " n=" << n << " misalign=" << misalign << " mismatch at " << badp);
        REQUIRE(badp == -1);
      }
    }
  }
}

template <class D, class G>
void check_chunks() {
  const noise_key key{42, 1, 2};
  constexpr std::size_t C = simd::chunk;
  alignas(64) float fz[C];
  alignas(64) double dz[C];
  for (const std::uint64_t base : {std::uint64_t{0}, std::uint64_t{4}, std::uint64_t{12}, two34 - 4 * C, two34 - 8,
                                   two34 + 20, ~std::uint64_t{0} - 4 * C + 1}) {
    const std::uint64_t e0 = base & ~std::uint64_t{3};
    xsimd::batch<float> zf[4];
    noise_chunk<D, G>(key, e0, zf);
    for (std::size_t r = 0; r < 4; ++r) zf[r].store_aligned(fz + r * xsimd::batch<float>::size);
    xsimd::batch<double> zd[simd::chunk_batches<double>];
    noise_chunk<D, G>(key, e0, zd);
    for (std::size_t r = 0; r < simd::chunk_batches<double>; ++r) zd[r].store_aligned(dz + r * xsimd::batch<double>::size);
    for (std::size_t i = 0; i < C; ++i) {
      INFO("e0=" << e0 << " i=" << i);
      REQUIRE(bits(fz[i]) == bits(noise_at<D, G>(key, e0 + i)));
      REQUIRE(bits(dz[i]) == bits(noise_value<D, G, double>(key, e0 + i)));
      REQUIRE(bits(dz[i]) == bits(static_cast<double>(fz[i])));
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("noise_chunk equals noise_at bitwise for every lane (float and double registers)",
                   "[rng][simd]", SG_GENERATORS) {
  check_chunks<gaussian, TestType>();
  check_chunks<rademacher, TestType>();
  check_chunks<uniform, TestType>();
  check_chunks<segmented_uniform, TestType>();
}

TEMPLATE_TEST_CASE("generate and perturb equal the scalar path bitwise: any length, offset, alignment",
                   "[rng][simd]", SG_GENERATOR_PAIRS) {
  using G = typename TestType::first_type;
  using T = typename TestType::second_type;
  SECTION("gaussian") { check_generate_and_perturb<gaussian, G, T>(); }
  SECTION("rademacher") { check_generate_and_perturb<rademacher, G, T>(); }
  SECTION("uniform") { check_generate_and_perturb<uniform, G, T>(); }
  SECTION("segmented_uniform") { check_generate_and_perturb<segmented_uniform, G, T>(); }
}

TEMPLATE_TEST_CASE("default generator: generate and perturb equal the scalar path bitwise", "[rng][simd]", float,
                   double) {
  using T = TestType;
  SECTION("gaussian") { check_generate_and_perturb<gaussian, default_generator, T>(); }
  SECTION("rademacher") { check_generate_and_perturb<rademacher, default_generator, T>(); }
  SECTION("uniform") { check_generate_and_perturb<uniform, default_generator, T>(); }
  SECTION("segmented_uniform") { check_generate_and_perturb<segmented_uniform, default_generator, T>(); }
}

TEMPLATE_TEST_CASE("a slice generated with an offset equals the same slice of the full vector", "[rng][simd]",
                   SG_GENERATORS) {
  using G = TestType;
  const noise_key key{99, 4, 5};
  constexpr std::size_t n = 3000;
  std::vector<float> full(n), part(n);
  std::vector<double> fulld(n), partd(n);
  generate<gaussian, G, float>(std::span<float>(full), key);
  generate<gaussian, G, double>(std::span<double>(fulld), key);
  for (const std::size_t off : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}, std::size_t{63},
                                std::size_t{64}, std::size_t{65}, std::size_t{1001}}) {
    for (const std::size_t len : {std::size_t{1}, std::size_t{6}, std::size_t{70}, std::size_t{129}, n - off}) {
      generate<gaussian, G, float>(std::span<float>(part.data(), len), key, off);
      generate<gaussian, G, double>(std::span<double>(partd.data(), len), key, off);
      INFO("off=" << off << " len=" << len);
      REQUIRE(first_mismatch(part.data(), full.data() + off, len) == -1);
      REQUIRE(first_mismatch(partd.data(), fulld.data() + off, len) == -1);
    }
  }
  // Generating in reverse order, one element at a time, changes nothing either.
  for (std::size_t i = n; i-- > 0;) generate<gaussian, G, float>(std::span<float>(part.data() + i, 1), key, i);
  REQUIRE(first_mismatch(part.data(), full.data(), n) == -1);
}

TEMPLATE_TEST_CASE("double variates are the float variates widened exactly", "[rng][simd]", SG_GENERATORS) {
  using G = TestType;
  const noise_key key{7, 0, 0};
  std::vector<float> f(777);
  std::vector<double> d(777);
  generate<gaussian, G, float>(std::span<float>(f), key, 5);
  generate<gaussian, G, double>(std::span<double>(d), key, 5);
  for (std::size_t i = 0; i < f.size(); ++i) REQUIRE(bits(d[i]) == bits(static_cast<double>(f[i])));
}

TEST_CASE("streams, draws and seeds select different vectors", "[rng]") {
  const noise_key base{1234, 5, 6};
  noise_key other_stream = base, other_draw = base, other_seed_lo = base, other_seed_hi = base;
  other_stream.stream += 1;
  other_draw.draw += 1;
  other_seed_lo.seed += 1;
  other_seed_hi.seed += std::uint64_t{1} << 32;
  for (std::uint64_t e = 0; e < 64; ++e) {
    const float z = noise_at<uniform>(base, e);
    CHECK(z != noise_at<uniform>(other_stream, e));
    CHECK(z != noise_at<uniform>(other_draw, e));
    CHECK(z != noise_at<uniform>(other_seed_lo, e));
    CHECK(z != noise_at<uniform>(other_seed_hi, e));
  }
}
