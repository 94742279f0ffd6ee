// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Philox4x32-R counter-based generator (Salmon et al., "Parallel random numbers: as easy
/// as 1, 2, 3", SC 2011), scalar and SIMD (structure-of-arrays) forms with identical output.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "../base/names.hpp"
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
  /// Part of a stepper's kind(): "philox<10>".
  static constexpr detail::fixed_name name_text{"philox<", detail::small_int_text(Rounds).text, ">"};
  static constexpr const char* name = name_text.text;  ///< see name_text
};

/// Philox4x32-10 (Salmon et al., SC 2011): the reference generator, with Random123's
/// known-answer vectors asserted in tests/rng/philox.cpp.
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


// ---------------------------------------------------------------------------------------------
// Half-density SIMD Philox. Each 64-bit lane of a register holds one counter word in its low
// 32 bits; the high 32 bits are "don't care". A round is then two unsigned 32x32->64 multiplies
// (which read only the low halves), two 64-bit right shifts for the high products and two
// three-way XORs: 6 instructions per round for W/2 blocks, against 16 for the full-density form
// (whose high/low split needs extra shifts and blends). The low product word needs no work at
// all: its low half *is* the low word. Only the masked/zeroing intrinsic forms are used on
// AVX-512, because GCC 12's unmasked forms start from `_mm512_undefined_*()` and trigger false
// -Wuninitialized reports once inlined (GCC bug 105593).
#if defined(__AVX512F__)
#define STOCHGRAD_PHILOX_HD 512
using hd_reg = __m512i;
STOCHGRAD_ALWAYS_INLINE hd_reg hd_set(std::uint32_t x) noexcept { return _mm512_set1_epi64(static_cast<long long>(x)); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_mul(hd_reg a, hd_reg m) noexcept {
  return _mm512_maskz_mul_epu32(static_cast<__mmask8>(0xFF), a, m);
}
// The high word moved down by a dword shuffle (port 5) rather than a shift (port 0, which the
// multiplies already load).
STOCHGRAD_ALWAYS_INLINE hd_reg hd_hi(hd_reg p) noexcept {
  return _mm512_maskz_shuffle_epi32(static_cast<__mmask16>(0xFFFF), p, static_cast<_MM_PERM_ENUM>(0xF5));
}
STOCHGRAD_ALWAYS_INLINE hd_reg hd_xor3(hd_reg a, hd_reg b, hd_reg c) noexcept {
  return _mm512_ternarylogic_epi64(a, b, c, 0x96);
}
#elif defined(__AVX2__)
#define STOCHGRAD_PHILOX_HD 256
using hd_reg = __m256i;
STOCHGRAD_ALWAYS_INLINE hd_reg hd_set(std::uint32_t x) noexcept { return _mm256_set1_epi64x(static_cast<long long>(x)); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_mul(hd_reg a, hd_reg m) noexcept { return _mm256_mul_epu32(a, m); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_hi(hd_reg p) noexcept { return _mm256_srli_epi64(p, 32); }
// a is the product's high word, the last operand to be ready: b ^ c is computed while the multiply
// runs, leaving one XOR on the round's critical path (multiply, shift, XOR).
STOCHGRAD_ALWAYS_INLINE hd_reg hd_xor3(hd_reg a, hd_reg b, hd_reg c) noexcept {
  return _mm256_xor_si256(a, _mm256_xor_si256(b, c));
}
#elif defined(__SSE2__) && !defined(__AVX__)
#define STOCHGRAD_PHILOX_HD 128
using hd_reg = __m128i;
STOCHGRAD_ALWAYS_INLINE hd_reg hd_set(std::uint32_t x) noexcept { return _mm_set1_epi64x(static_cast<long long>(x)); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_mul(hd_reg a, hd_reg m) noexcept { return _mm_mul_epu32(a, m); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_hi(hd_reg p) noexcept { return _mm_srli_epi64(p, 32); }
STOCHGRAD_ALWAYS_INLINE hd_reg hd_xor3(hd_reg a, hd_reg b, hd_reg c) noexcept {
  return _mm_xor_si128(a, _mm_xor_si128(b, c));  // a last, as in the AVX2 form
}
#endif

#if defined(STOCHGRAD_PHILOX_HD)
/// Philox rounds on `N` independent half-density register sets (interleaved for latency hiding).
template <int Rounds, int N>
STOCHGRAD_ALWAYS_INLINE void philox_rounds_hd(hd_reg (&c0)[N], hd_reg (&c1)[N], hd_reg (&c2)[N], hd_reg (&c3)[N],
                                              std::uint32_t k0, std::uint32_t k1) noexcept {
  const hd_reg m0 = hd_set(philox_m0), m1 = hd_set(philox_m1);
  for (int r = 0; r < Rounds; ++r) {
    if (r != 0) {
      k0 += philox_w0;
      k1 += philox_w1;
    }
    const hd_reg kk0 = hd_set(k0), kk1 = hd_set(k1);
    for (int s = 0; s < N; ++s) {
      const hd_reg p0 = hd_mul(c0[s], m0);
      const hd_reg p1 = hd_mul(c2[s], m1);
      c0[s] = hd_xor3(hd_hi(p1), c1[s], kk0);
      c2[s] = hd_xor3(hd_hi(p0), c3[s], kk1);
      c1[s] = p1;
      c3[s] = p0;
    }
  }
}
#endif

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
