// SPDX-License-Identifier: Apache-2.0
// Philox4x32-10 known-answer vectors and the worked values of algorithms.md §2.1 (seed 42).
//
// Everything here is asserted on the *reference* generator `philox<10>` by name, whatever
// `default_generator` is: the spec's Philox-10 + Box–Muller mapping must stay available and exact.
#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/rng/noise.hpp>
#include <stochgrad/bits/rng/philox.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using ref_gen = philox<10>;

namespace {

// Random123 kat_vectors for philox4x32-10 (algorithms.md §2.1).
struct kat {
  philox_block ctr;
  philox_key key;
  philox_block expected;
};
constexpr std::array<kat, 3> kats{{
    {{0u, 0u, 0u, 0u}, {0u, 0u}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
}};

// The worked example, reference values computed in double (algorithms.md §2.1).
constexpr std::uint64_t seed = 42;
constexpr philox_block s0d0_block0{0x9ceaf053u, 0x77f5493bu, 0x12bf50adu, 0x5742b3d7u};
constexpr philox_block s0d0_block1{0xfcdb2127u, 0x53ba6cfdu, 0x838f5a6eu, 0x744e06fbu};
constexpr philox_block s1d0_block0{0x02933769u, 0x2051e913u, 0x3b68b038u, 0xb62c409cu};
constexpr philox_block s0d1_block0{0x20439b04u, 0x9807e022u, 0x5419fa3fu, 0xc8fa5a2du};
constexpr double gauss_s0d0[8] = {-0.970189792709816,   0.19401885478711742, -1.235620531233685,
                                  1.9239269611530123,   -0.07318142112798447, 0.13913739229338928,
                                  -1.1066649654538214,  0.3266831578452686};
constexpr double rad_s0d0[8] = {-1, +1, +1, +1, -1, +1, -1, +1};
constexpr double seg_s0d0[4] = {-0.9588647931814194, 0.9790743440389633, 0.8736623972654343,
                                0.6302783340215683};
constexpr double gauss_s1d0[4] = {2.127690458040374, 2.1613741403903965, -0.4082709037325331,
                                  -1.6597530572367774};
constexpr double gauss_s0d1[4] = {-1.6914354812537753, -1.1320296441078899, 0.3261287026776039,
                                  -1.4560036614837133};

// algorithms.md §0.4: float Gaussian variates vs the double reference, absolute 2e-6; other float
// quantities relative 2e-6.
constexpr double gauss_abs_tol = 2e-6;
constexpr double float_rel_tol = 2e-6;

}  // namespace

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors bit for bit", "[rng][philox]") {
  for (const kat& k : kats) {
    const philox_block out = philox4x32<10>(k.ctr, k.key);
    for (int w = 0; w < 4; ++w) CHECK(out[static_cast<std::size_t>(w)] == k.expected[static_cast<std::size_t>(w)]);
  }
  // The default template argument is the 10-round generator.
  CHECK(philox4x32(kats[2].ctr, kats[2].key) == kats[2].expected);
  // And it is usable in constant expressions.
  STATIC_REQUIRE(philox4x32<10>({0u, 0u, 0u, 0u}, {0u, 0u})[0] == 0x6627e8d5u);
  STATIC_REQUIRE(philox4x32<10>({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                                {0xa4093822u, 0x299f31d0u})[3] == 0x24126ea1u);
}

TEST_CASE("philox round counts differ (the round parameter is honoured)", "[rng][philox]") {
  const philox_block c{1u, 2u, 3u, 4u};
  const philox_key k{5u, 6u};
  CHECK(philox4x32<7>(c, k) != philox4x32<10>(c, k));
  CHECK(philox4x32<10>(c, k) != philox4x32<11>(c, k));
}

TEST_CASE("seed-42 worked example: Philox blocks from the (seed, stream, draw, block) keying", "[rng][worked]") {
  const philox_key key{static_cast<std::uint32_t>(seed & 0xffffffffu), static_cast<std::uint32_t>(seed >> 32)};
  CHECK(philox4x32<10>({0u, 0u, 0u, 0u}, key) == s0d0_block0);
  CHECK(philox4x32<10>({1u, 0u, 0u, 0u}, key) == s0d0_block1);
  CHECK(philox4x32<10>({0u, 0u, 1u, 0u}, key) == s1d0_block0);
  CHECK(philox4x32<10>({0u, 0u, 0u, 1u}, key) == s0d1_block0);
}

TEST_CASE("seed-42 worked example: variates through the scalar path", "[rng][worked]") {
  const noise_key k00{seed, 0, 0}, k10{seed, 1, 0}, k01{seed, 0, 1};
  for (std::uint64_t e = 0; e < 8; ++e) {
    CHECK_THAT(double(noise_at<gaussian, ref_gen>(k00, e)), Catch::Matchers::WithinAbs(gauss_s0d0[e], gauss_abs_tol));
    CHECK_THAT((noise_value<gaussian, ref_gen, double>(k00, e)),
               Catch::Matchers::WithinAbs(gauss_s0d0[e], gauss_abs_tol));
    CHECK(double(noise_at<rademacher, ref_gen>(k00, e)) == rad_s0d0[e]);
  }
  for (std::uint64_t e = 0; e < 4; ++e) {
    CHECK_THAT(double(noise_at<segmented_uniform, ref_gen>(k00, e)),
               Catch::Matchers::WithinRel(seg_s0d0[e], float_rel_tol));
    CHECK_THAT(double(noise_at<gaussian, ref_gen>(k10, e)), Catch::Matchers::WithinAbs(gauss_s1d0[e], gauss_abs_tol));
    CHECK_THAT(double(noise_at<gaussian, ref_gen>(k01, e)), Catch::Matchers::WithinAbs(gauss_s0d1[e], gauss_abs_tol));
  }
}

TEST_CASE("seed-42 worked example: uniform variates follow u(x) = ((x >> 8) + 0.5) 2^-24", "[rng][worked]") {
  const noise_key k00{seed, 0, 0};
  for (std::uint64_t e = 0; e < 8; ++e) {
    const std::uint32_t x = (e < 4 ? s0d0_block0 : s0d0_block1)[e & 3];
    const double u = (static_cast<double>(x >> 8) + 0.5) * 0x1p-24;
    CHECK_THAT(double(noise_at<uniform, ref_gen>(k00, e)), Catch::Matchers::WithinRel(u, float_rel_tol));
  }
}

TEMPLATE_TEST_CASE("seed-42 worked example: variates through the SIMD kernels", "[rng][worked]", float, double) {
  using T = TestType;
  // Long enough that the SIMD chunk loop (not only the scalar head/tail) produces elements 0..7.
  std::vector<T> g00(256), r00(256), s00(256), g10(256), g01(256);
  generate<gaussian, ref_gen, T>(std::span<T>(g00), {seed, 0, 0});
  generate<rademacher, ref_gen, T>(std::span<T>(r00), {seed, 0, 0});
  generate<segmented_uniform, ref_gen, T>(std::span<T>(s00), {seed, 0, 0});
  generate<gaussian, ref_gen, T>(std::span<T>(g10), {seed, 1, 0});
  generate<gaussian, ref_gen, T>(std::span<T>(g01), {seed, 0, 1});
  for (std::size_t e = 0; e < 8; ++e) {
    CHECK_THAT(double(g00[e]), Catch::Matchers::WithinAbs(gauss_s0d0[e], gauss_abs_tol));
    CHECK(double(r00[e]) == rad_s0d0[e]);
  }
  for (std::size_t e = 0; e < 4; ++e) {
    CHECK_THAT(double(s00[e]), Catch::Matchers::WithinRel(seg_s0d0[e], float_rel_tol));
    CHECK_THAT(double(g10[e]), Catch::Matchers::WithinAbs(gauss_s1d0[e], gauss_abs_tol));
    CHECK_THAT(double(g01[e]), Catch::Matchers::WithinAbs(gauss_s0d1[e], gauss_abs_tol));
  }
}

TEST_CASE("seed-42 worked example: a perturbation of zeros with s = 1 reproduces the variates", "[rng][worked]") {
  std::vector<float> x(300, 0.0f);
  perturb<gaussian, ref_gen, float>(std::span<float>(x), 1.0f, {seed, 0, 0});
  for (std::size_t e = 0; e < 8; ++e) CHECK_THAT(double(x[e]), Catch::Matchers::WithinAbs(gauss_s0d0[e], gauss_abs_tol));
}
