// SPDX-License-Identifier: Apache-2.0
// The inversion Gaussian of philox_icdf (the default generator): accuracy of the octave table
// against the exact normal quantile, monotonicity, continuity between octaves, symmetry, range,
// and scalar == SIMD on hand-picked words (including every octave and the extremes).
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <stochgrad/bits/rng/noise.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

namespace {

// Q(p) = Phi^-1(1 - p) for 0 < p <= 1/2, by bisection on 0.5 erfc(q / sqrt 2) = p in long double.
long double tail_quantile(long double p) {
  long double lo = 0.0L, hi = 40.0L;
  for (int i = 0; i < 120; ++i) {
    const long double mid = 0.5L * (lo + hi);
    if (0.5L * std::erfc(mid / std::sqrt(2.0L)) > p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5L * (lo + hi);
}

// The word whose odd integer x = 2 (w mod 2^31) + 1 is given (x odd), with the given sign bit.
std::uint32_t word_for(std::uint32_t x, bool negative) { return ((x - 1u) >> 1) | (negative ? 0x80000000u : 0u); }

}  // namespace

TEST_CASE("inversion gaussian: within 7.4e-7 (table) + the 24-bit quantisation of p of Phi^-1", "[rng][icdf]") {
  // For every octave k (x in [2^(31-k), 2^(32-k))), 257 points spread over the octave. The table's
  // own error bound is 7.4e-7 (tests/tools/icdf/fit_icdf.cpp). p is used to 24 significant bits,
  // i.e. the value is Q(p') with p' = p (1 - delta), 0 <= delta < 2^-23, which moves Q by at most
  // p 2^-23 / phi(Q(p)); the bound below adds that term.
  double worst = 0;
  for (int k = 0; k < 32; ++k) {
    const std::uint64_t lo = std::uint64_t{1} << (31 - k), span = lo;
    for (int i = 0; i <= 256; ++i) {
      std::uint64_t x64 = lo + (span - 1) * static_cast<std::uint64_t>(i) / 256;
      x64 |= 1u;
      const auto x = static_cast<std::uint32_t>(x64);
      const long double p = std::ldexp(static_cast<long double>(x), -33);
      const long double q = tail_quantile(p);
      const double z = detail::gaussian_icdf(word_for(x, false));
      const double phi = static_cast<double>(std::exp(-q * q / 2) / std::sqrt(2 * 3.14159265358979323846L));
      const double quant = static_cast<double>(p) * 0x1p-23 / phi;
      const double err = std::abs(z - static_cast<double>(q));
      worst = std::max(worst, err - quant);
      INFO("k=" << k << " x=" << x << " z=" << z << " Q=" << static_cast<double>(q));
      REQUIRE(err <= 7.4e-7 + quant);
    }
  }
  CHECK(worst <= 7.4e-7);
}

TEST_CASE("inversion gaussian: |z| decreases with p inside octaves and across octave boundaries", "[rng][icdf]") {
  // Dense walk through every octave in order of increasing p; allow the table error (2 x 7.4e-7)
  // as the only non-monotone step.
  float prev = detail::gaussian_icdf(word_for(1u, false));
  CHECK(prev > 6.3f);
  CHECK(prev < 6.4f);  // Phi^-1(1 - 2^-33) = 6.3379
  for (int k = 31; k >= 0; --k) {
    const std::uint64_t lo = std::uint64_t{1} << (31 - k);
    const std::uint64_t step = std::max<std::uint64_t>(2, lo >> 12);
    for (std::uint64_t x = lo | 1u; x < 2 * lo; x += step | 1u) {
      const float z = detail::gaussian_icdf(word_for(static_cast<std::uint32_t>(x | 1u), false));
      INFO("k=" << k << " x=" << x);
      REQUIRE(z <= prev + 1.5e-6f);
      prev = std::min(prev, z);
    }
  }
  const float last = detail::gaussian_icdf(word_for(0xffffffffu, false));
  CHECK(std::abs(last) < 1e-6f);
}

TEST_CASE("inversion gaussian: exactly antisymmetric in the sign bit; scalar equals SIMD on every octave",
          "[rng][icdf]") {
  constexpr std::size_t W = detail::u32b::size;
  std::vector<std::uint32_t> words;
  for (int k = 0; k < 32; ++k) {
    const std::uint32_t lo = std::uint32_t{1} << (31 - k);
    for (const std::uint32_t x : {lo | 1u, lo + (lo >> 1) + 1u, (lo - 1u) + lo}) {
      words.push_back(word_for(x | 1u, false));
      words.push_back(word_for(x | 1u, true));
    }
  }
  words.push_back(0u);
  words.push_back(0xffffffffu);
  words.push_back(0x7fffffffu);
  words.push_back(0x80000000u);
  while (words.size() % W != 0) words.push_back(0x12345678u);
  for (const std::uint32_t w : words) {
    CHECK(std::bit_cast<std::uint32_t>(detail::gaussian_icdf(w)) ==
          (std::bit_cast<std::uint32_t>(detail::gaussian_icdf(w ^ 0x80000000u)) ^ 0x80000000u));
  }
  // Lane-uniform and mixed registers: the SIMD form (including its rare-octave path) gives the
  // scalar bits.
  alignas(64) float out[W];
  for (std::size_t i = 0; i + W <= words.size(); i += W) {
    detail::gaussian_icdf(detail::u32b::load_unaligned(words.data() + i)).store_aligned(out);
    for (std::size_t j = 0; j < W; ++j) REQUIRE(std::bit_cast<std::uint32_t>(out[j]) == std::bit_cast<std::uint32_t>(detail::gaussian_icdf(words[i + j])));
  }
  for (const std::uint32_t w : words) {
    detail::gaussian_icdf(detail::u32b(w)).store_aligned(out);
    REQUIRE(std::bit_cast<std::uint32_t>(out[0]) == std::bit_cast<std::uint32_t>(detail::gaussian_icdf(w)));
  }
}
