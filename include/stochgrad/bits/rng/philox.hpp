// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Philox4x32-R counter-based generator (Salmon et al., "Parallel random numbers: as easy
/// as 1, 2, 3", SC 2011), scalar and SIMD (structure-of-arrays) forms with identical output.
#pragma once

#include <array>
#include <cstdint>

#include "../config.hpp"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE4_1__)
#include <immintrin.h>
#endif

namespace stochgrad {

/// Generator policy: Philox4x32 with `Rounds` rounds. `philox<10>` is the published generator
/// (checked against the Random123 known-answer vectors); fewer rounds are faster.
template <int Rounds>
struct philox {
  static_assert(Rounds >= 1 && Rounds <= 16, "philox: Rounds must be in [1, 16]");
  /// Number of rounds.
  static constexpr int rounds = Rounds;
};

/// The reference generator of the specification (algorithms.md §2.1).
using philox4x32_10 = philox<10>;

/// Four 32-bit words: a Philox counter or output block.
using philox_block = std::array<std::uint32_t, 4>;
/// Two 32-bit words: a Philox key.
using philox_key = std::array<std::uint32_t, 2>;

namespace detail {

inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;

constexpr STOCHGRAD_ALWAYS_INLINE void mulhilo(std::uint32_t a, std::uint32_t m, std::uint32_t& hi, std::uint32_t& lo) noexcept {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * m;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

using u32batch = xsimd::batch<std::uint32_t>;

// 32x32 -> 64-bit products of every lane with a constant, split into high and low words.
STOCHGRAD_ALWAYS_INLINE void mulhilo(const u32batch& a, std::uint32_t m, u32batch& hi, u32batch& lo) noexcept {
#if defined(__AVX512F__)
  static_assert(u32batch::size == 16, "stochgrad: unexpected register width for AVX-512");
  const __m512i av = a;
  const __m512i mv = _mm512_set1_epi32(static_cast<int>(m));
  const __m512i even = _mm512_mul_epu32(av, mv);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(av, 32), mv);
  hi = u32batch(_mm512_mask_blend_epi32(static_cast<__mmask16>(0xAAAA), _mm512_srli_epi64(even, 32), odd));
  lo = u32batch(_mm512_mask_blend_epi32(static_cast<__mmask16>(0xAAAA), even, _mm512_slli_epi64(odd, 32)));
#elif defined(__AVX2__)
  static_assert(u32batch::size == 8, "stochgrad: unexpected register width for AVX2");
  const __m256i av = a;
  const __m256i mv = _mm256_set1_epi32(static_cast<int>(m));
  const __m256i even = _mm256_mul_epu32(av, mv);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(av, 32), mv);
  hi = u32batch(_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA));
  lo = u32batch(_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA));
#elif defined(__SSE4_1__) && !defined(__AVX__)
  static_assert(u32batch::size == 4, "stochgrad: unexpected register width for SSE4.1");
  const __m128i av = a;
  const __m128i mv = _mm_set1_epi32(static_cast<int>(m));
  const __m128i even = _mm_mul_epu32(av, mv);
  const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(av, 32), mv);
  hi = u32batch(_mm_blend_epi16(_mm_srli_epi64(even, 32), odd, 0xCC));
  lo = u32batch(_mm_blend_epi16(even, _mm_slli_epi64(odd, 32), 0xCC));
#else
  // Portable fallback: lane by lane.
  alignas(64) std::uint32_t in[u32batch::size], h[u32batch::size], l[u32batch::size];
  a.store_aligned(in);
  for (std::size_t i = 0; i < u32batch::size; ++i) mulhilo(in[i], m, h[i], l[i]);
  hi = u32batch::load_aligned(h);
  lo = u32batch::load_aligned(l);
#endif
}

/// Philox rounds on a counter held in four words (scalars, or registers in SoA form).
template <int Rounds, class W>
constexpr STOCHGRAD_ALWAYS_INLINE void philox_rounds(W& c0, W& c1, W& c2, W& c3, std::uint32_t k0, std::uint32_t k1) noexcept {
  for (int r = 0; r < Rounds; ++r) {
    if (r != 0) {
      k0 += philox_w0;
      k1 += philox_w1;
    }
    W hi0, lo0, hi1, lo1;
    mulhilo(c0, philox_m0, hi0, lo0);
    mulhilo(c2, philox_m1, hi1, lo1);
    const W n0 = hi1 ^ c1 ^ W(k0);
    const W n2 = hi0 ^ c3 ^ W(k1);
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
}

}  // namespace detail

/// Philox4x32-R on one counter block: the raw generator, for known-answer tests and for users
/// who want bits.
template <int Rounds = 10>
constexpr philox_block philox4x32(philox_block ctr, philox_key key) noexcept {
  std::uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  detail::philox_rounds<Rounds>(c0, c1, c2, c3, key[0], key[1]);
  return {c0, c1, c2, c3};
}

}  // namespace stochgrad
