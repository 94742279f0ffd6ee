// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Counter-based noise: keys, distributions and the scalar/SIMD element generators.
///
/// Element `e` of the noise vector identified by `(seed, stream, draw)` is a pure function of those
/// four numbers: Philox is called on the counter
/// `(block & 0xffffffff, block >> 32, stream, draw)` with `block = e >> 2` and key
/// `(seed & 0xffffffff, seed >> 32)`, and lane `e & 3` of the output is turned into a variate
/// (the bit-sliced Rademacher of philox_icdf uses `block = e >> 7` and bit `e & 127`). So
/// any element can be produced without the ones before it, by any thread, in any order, and the
/// SIMD path produces the same bits as the scalar path: both run the same integer code and the
/// same float operations. The bits are also the same on every ISA (scalar, SSE2, AVX2, AVX-512,
/// NEON): every multiply-add in a generator is fused whatever STOCHGRAD_USE_FMA says (exact
/// `std::fma` where the target has no FMA instruction), and no generator uses an operation whose
/// result depends on the ISA (approximate reciprocals, contraction, reassociated reductions).
/// tests/isa/kat.cpp holds known-answer hashes that each ISA build must reproduce.
///
/// Variates are computed in float32 and widened exactly when the parameters are double.
///
/// Generator policies (the `G` template parameter of every noise function and kernel):
/// - `philox<10>` (alias `philox4x32_10`): the reference generator, Philox4x32-10 with the
///   mappings above (Box–Muller Gaussians). Its known-answer vectors and worked values are
///   asserted in tests/rng/philox.cpp. `philox<R>`: same with R rounds.
/// - `philox_icdf<R>`: Philox4x32-R bits, Gaussians by table-driven inversion (one word per
///   element), Rademacher signs bit-sliced (128 per block); uniform and segmented uniform as the
///   spec. `default_generator = philox_icdf<7>`; see its documentation for the reasons.
/// Every policy keeps counter-based keying (element i depends on (seed, stream, draw, i) only) and
/// scalar == SIMD bitwise, and passes the same statistical tests (tests/rng/statistics.cpp) and
/// dieharder checks (tests/CMakeLists.txt). Values differ between policies; a run that must be
/// reproducible across stochgrad versions should name its policy explicitly.
///
/// Speed (AVX-512, one core, N = 1e8 floats; see bench/bench_kernels.cpp): a Gaussian perturbation
/// pass with the default costs about half of the reference's (Philox-10 + Box–Muller); SIMD Philox
/// keeps each counter word in the low half of a 64-bit lane (philox.hpp), the inversion Gaussian is
/// 7 two-register permutes and 6 FMAs per 16 values, and bit-sliced Rademacher signs need one
/// scalar Philox call per 128 elements.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"
#include "icdf_table.hpp"
#include "philox.hpp"

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace stochgrad {

/// Identifies one noise vector: a 64-bit seed, a 32-bit stream (e.g. the parameter tensor's
/// index) and a 32-bit draw (e.g. the query index when q directions are averaged).
struct noise_key {
  std::uint64_t seed = 0;    ///< 64-bit seed; becomes the Philox key.
  std::uint32_t stream = 0;  ///< Counter word 2.
  std::uint32_t draw = 0;    ///< Counter word 3.
  /// Equal when seed, stream and draw are equal (the same noise vector).
  friend constexpr bool operator==(const noise_key&, const noise_key&) = default;
};

/// Distribution tag: standard normal by Box–Muller on word pairs. Lanes 0/1 of a Philox block
/// use words (x0, x1): `rad = sqrt(-2 ln u(x0))`, `ang = 2 pi u(x1)`, lane 0 gets `rad cos ang`,
/// lane 1 `rad sin ang`; lanes 2/3 likewise with (x2, x3). |z| <= 5.887 (see §2.1).
struct gaussian {};
/// Distribution tag: -1 if the top bit of the word is set, else +1 (philox<R>; philox_icdf<R>, the
/// default, bit-slices 128 signs per block instead, see there).
struct rademacher {};
/// Distribution tag: uniform on (0, 1), `u(x) = ((x >> 8) + 0.5) 2^-24` evaluated in float (for
/// u >= 0.5 the half-step rounds to even; the largest word, which would round to 1, gives
/// 1 - 2^-24), so 0 < u < 1 always.
struct uniform {};
/// Distribution tag: BlackVIP's segmented uniform, magnitude `0.5 + 0.5((x & 0xffffff) + 0.5) 2^-24`
/// in [0.5, 1), negative when the top bit is set. E[z^2] = 7/12, E[1/z^2] = 2.
struct segmented_uniform {};

/// Distribution tags stochgrad can generate.
template <class D>
concept noise_distribution = std::is_same_v<D, gaussian> || std::is_same_v<D, rademacher> ||
                             std::is_same_v<D, uniform> || std::is_same_v<D, segmented_uniform>;

/// Generator policy: Philox4x32-`Rounds` bits, mapped to variates as `philox<Rounds>` does except
/// for the Gaussian, which is produced by inversion instead of Box–Muller, one word per element:
/// bit 31 of the word is the sign, the other 31 bits give the tail probability
/// `p = (2 (w mod 2^31) + 1) 2^-33` in (0, 1/2) and `|z| = Phi^-1(1 - p)`, evaluated by a degree-6
/// polynomial per octave of p (table in icdf_table.hpp; absolute error <= 7.4e-7 against the
/// exact quantile, p kept to 24 significant bits). Tails reach `Phi^-1(1 - 2^-33) = 6.34`.
/// The inversion costs about a third of Box–Muller's instructions with AVX-512 (a 32-entry table
/// lookup is one permute).
///
/// Rademacher signs are bit-sliced: element `e` is -1 if bit `e & 31` of word `(e >> 5) & 3` of the
/// block for counter `(b & 0xffffffff, b >> 32, stream, draw)` with `b = e >> 7` is set, else +1; one
/// Philox call serves 128 elements, so a Rademacher pass costs little more than the memory traffic.
/// Uniform and segmented-uniform variates are the reference's (one word per element, `b = e >> 2`).
template <int Rounds>
struct philox_icdf {
  static_assert(Rounds >= 1 && Rounds <= 16, "philox_icdf: Rounds must be in [1, 16]");
  /// Number of Philox rounds.
  static constexpr int rounds = Rounds;
  /// Part of a stepper's kind(): "philox_icdf<7>".
  static constexpr detail::fixed_name name_text{"philox_icdf<", detail::small_int_text(Rounds).text, ">"};
  static constexpr const char* name = name_text.text;  ///< see name_text
  /// Gaussians by table-driven inversion (see above) rather than Box–Muller.
  static constexpr bool gaussian_by_inversion = true;
  /// Rademacher signs bit-sliced: 128 signs per Philox block (see philox_icdf's documentation).
  static constexpr bool rademacher_bitsliced = true;
};

/// Generator policies: a Philox variant (`philox<R>`: the reference mappings; `philox_icdf<R>`:
/// inversion Gaussians).
template <class G>
concept noise_generator = requires { G::rounds; } && (G::rounds >= 1);

/// The generator used when none is named: Philox4x32-7 with inversion Gaussians.
///
/// Why: the Gaussian perturbation pass is the hot loop of zeroth-order training, and it should run
/// at memory speed (<= 1.0x STREAM scale). Philox4x32-10 + Box–Muller (the
/// reference, `philox<10>`, still available by name, with the known-answer vectors and worked values
/// asserted on it) costs more. Salmon et al. (SC 2011) found 7 rounds to be the fewest
/// with which Philox4x32 passes TestU01's Crush batteries (they ship 10 as a safety margin), and the
/// inversion needs about a third of Box–Muller's instructions (timings: bench/README.md). The
/// default passes every statistical test in tests/rng (moments to 4th order, KS and
/// chi-square against N(0,1) on 1e6 and 1e7 draws, tails, correlations across streams, draws, seeds
/// and neighbours, E[z z^T] = I) and the dieharder checks, the same checks as the reference.
/// Counter-based keying is unchanged: element i of a vector depends on (seed, stream, draw, i) only,
/// and the scalar and SIMD paths give identical bits.
using default_generator = philox_icdf<7>;

namespace detail {
template <class G>
inline constexpr bool gaussian_by_inversion = requires { G::gaussian_by_inversion; };
template <class G>
inline constexpr bool rademacher_bitsliced = requires { G::rademacher_bitsliced; };
}  // namespace detail

namespace detail {

using u32b = xsimd::batch<std::uint32_t>;
using i32b = xsimd::batch<std::int32_t>;
using f32b = xsimd::batch<float>;

template <class To, class From>
STOCHGRAD_ALWAYS_INLINE To bits_as(const From& x) noexcept {
  static_assert(sizeof(To) == sizeof(From) && std::is_trivially_copyable_v<From> && std::is_trivially_copyable_v<To>);
  return std::bit_cast<To>(x);
}

// Same-typed helpers for scalar (uint32_t/float) and register (u32b/f32b) code.
STOCHGRAD_ALWAYS_INLINE float as_float(std::uint32_t x) noexcept { return bits_as<float>(x); }
STOCHGRAD_ALWAYS_INLINE f32b as_float(const u32b& x) noexcept { return bits_as<f32b>(x); }
STOCHGRAD_ALWAYS_INLINE std::uint32_t as_u32(float x) noexcept { return bits_as<std::uint32_t>(x); }
STOCHGRAD_ALWAYS_INLINE u32b as_u32(const f32b& x) noexcept { return bits_as<u32b>(x); }
// Converts a word read as a signed 32-bit integer to float (exact for |x| < 2^24; small unsigned
// values below 2^31 convert to themselves).
STOCHGRAD_ALWAYS_INLINE float int_to_float(std::uint32_t x) noexcept {
  return static_cast<float>(static_cast<std::int32_t>(x));
}
STOCHGRAD_ALWAYS_INLINE f32b int_to_float(const u32b& x) noexcept {
  return xsimd::batch_cast<float>(bits_as<i32b>(x));
}
STOCHGRAD_ALWAYS_INLINE float pick(bool c, float a, float b) noexcept { return c ? a : b; }
STOCHGRAD_ALWAYS_INLINE f32b pick(const xsimd::batch_bool<float>& c, const f32b& a, const f32b& b) noexcept {
  return xsimd::select(c, a, b);
}

STOCHGRAD_ALWAYS_INLINE float sqrt_cr(float x) noexcept { return std::sqrt(x); }
STOCHGRAD_ALWAYS_INLINE f32b sqrt_cr(const f32b& x) noexcept { return xsimd::sqrt(x); }

STOCHGRAD_ALWAYS_INLINE float min_f(float a, float b) noexcept { return b < a ? b : a; }
STOCHGRAD_ALWAYS_INLINE f32b min_f(const f32b& a, const f32b& b) noexcept { return xsimd::min(a, b); }

// u(x) = ((x >> 8) + 0.5) * 2^-24, in float. For x >> 8 >= 2^23 the half-step is not representable
// and rounds to even; the largest word would round up to 1.0f, so the result is clamped to the
// largest float below 1 (1 - 2^-24), which keeps u strictly inside (0, 1) as the mappings require.
template <class U>
STOCHGRAD_ALWAYS_INLINE auto uniform01(const U& x) noexcept {
  using F = std::conditional_t<std::is_same_v<U, std::uint32_t>, float, f32b>;
  return min_f((int_to_float(x >> 8) + F(0.5f)) * F(0x1p-24f), F(0x1.fffffep-1f));
}

// Fused multiply-add for the generators, fused on every target: the variates must be the same
// bits on every ISA (an AVX2 rank and an AVX-512 rank of one job regenerate the same z), so they
// cannot follow STOCHGRAD_USE_FMA. Hardware FMA where the target has it; elsewhere std::fma lane by
// lane, which is exact (correctly rounded) and slow: SSE2-only x86-64 builds generate Gaussians
// several times slower than FMA builds, and identically.
STOCHGRAD_ALWAYS_INLINE float gen_fma(float a, float b, float c) noexcept { return std::fma(a, b, c); }
STOCHGRAD_ALWAYS_INLINE f32b gen_fma(const f32b& a, const f32b& b, const f32b& c) noexcept {
#if defined(__AVX512F__)
  return f32b(_mm512_fmadd_ps(a, b, c));
#elif defined(__FMA__) && defined(__AVX__)
  return f32b(_mm256_fmadd_ps(a, b, c));
#elif defined(__FMA__)
  return f32b(_mm_fmadd_ps(a, b, c));
#elif defined(__ARM_NEON) && defined(__aarch64__)
  return f32b(vfmaq_f32(c, a, b));
#else
  constexpr std::size_t W = f32b::size;
  alignas(64) float av[W], bv[W], cv[W];
  a.store_aligned(av);
  b.store_aligned(bv);
  c.store_aligned(cv);
  for (std::size_t j = 0; j < W; ++j) av[j] = std::fma(av[j], bv[j], cv[j]);
  return f32b::load_aligned(av);
#endif
}

// ln u(x) for u(x) = ((x >> 8) + 0.5) 2^-24, from the integer k = x >> 8: write k + 0.5 = 2^j (1 + f)
// with 1 + f in [sqrt(1/2), sqrt(2)); then f = ((k - 2^j) + 0.5) 2^-j is exact in float, and
// ln u = log1p(f) + (j - 24) ln 2 with the Cephes logf polynomial for log1p on that range and ln 2 in
// two parts. Accurate near u = 1, where evaluating u in float first would round it to 1.
template <class F, class U>
STOCHGRAD_ALWAYS_INLINE F log_u_word(const U& x) noexcept {
  const U k = x >> 8;
  const F kf = int_to_float(k);                                  // exact: k < 2^24
  const U shifted = as_u32(kf + F(0.5f)) - U(0x3f3504f3u);         // only selects j
  const U j = ((shifted >> 23) ^ U(0x100u)) - U(0x100u);           // sign-extended, in [-1, 24]
  const F p2j = as_float((j + U(127u)) << 23);
  const F inv_p2j = as_float((U(127u) - j) << 23);
  const F f = ((kf - p2j) + F(0.5f)) * inv_p2j;                    // exact
  const F e = int_to_float(j - U(24u));
  const F z = f * f;
  F p = F(7.0376836292e-2f);
  p = gen_fma(p, f, F(-1.1514610310e-1f));
  p = gen_fma(p, f, F(1.1676998740e-1f));
  p = gen_fma(p, f, F(-1.2420140846e-1f));
  p = gen_fma(p, f, F(1.4249322787e-1f));
  p = gen_fma(p, f, F(-1.6668057665e-1f));
  p = gen_fma(p, f, F(2.0000714765e-1f));
  p = gen_fma(p, f, F(-2.4999993993e-1f));
  p = gen_fma(p, f, F(3.3333331174e-1f));
  F y = (f * z) * p;
  y = gen_fma(e, F(-2.12194440e-4f), y);
  y = gen_fma(z, F(-0.5f), y);
  F r = f + y;
  r = gen_fma(e, F(0.693359375f), r);
  return r;
}

// sin and cos of 2 pi u(x) with u(x) = ((x >> 8) + 0.5) 2^-24, computed from the integer:
// q = round(4u) selects the quadrant and t = u - q/4 in [-1/8, 1/8] is exact in float.
template <class F, class U>
STOCHGRAD_ALWAYS_INLINE void sincos_2pi_u(const U& x, F& s, F& c) noexcept {
  const U k = x >> 8;
  const U q = (k + U(1u << 21)) >> 22;                         // 0..4
  const U r = k - (q << 22);                                   // two's complement, in [-2^21, 2^21)
  const F t = gen_fma(int_to_float(r), F(0x1p-24f), F(0x1p-25f));  // exact
  const F t2 = t * t;
  // Taylor series of sin(2 pi t) to t^9 and cos(2 pi t) to t^10: truncation < 2e-9 on |2 pi t| <= pi/4.
  F ps = F(42.058693944897634f);
  ps = gen_fma(ps, t2, F(-76.70585975306136f));
  ps = gen_fma(ps, t2, F(81.60524927607504f));
  ps = gen_fma(ps, t2, F(-41.341702240399755f));
  ps = gen_fma(ps, t2, F(6.283185307179586f));
  const F sn = ps * t;
  F pc = F(-26.426256783374388f);
  pc = gen_fma(pc, t2, F(60.24464137187664f));
  pc = gen_fma(pc, t2, F(-85.45681720669371f));
  pc = gen_fma(pc, t2, F(64.93939402266828f));
  pc = gen_fma(pc, t2, F(-19.739208802178716f));
  const F cs = gen_fma(pc, t2, F(1.0f));
  // Quadrant q: angle = q pi/2 + 2 pi t. Swap for odd q, negate sin for q in {2,3}, cos for q in {1,2}.
  const U sw_mask = U(0u) - (q & U(1u));        // all ones when odd
  const U snb = as_u32(sn), csb = as_u32(cs);
  const U s_bits = (snb & ~sw_mask) | (csb & sw_mask);
  const U c_bits = (csb & ~sw_mask) | (snb & sw_mask);
  const U s_sign = (q & U(2u)) << 30;           // q in {2,3}
  const U c_sign = ((q + U(1u)) & U(2u)) << 30; // q in {1,2}
  s = as_float(s_bits ^ s_sign);
  c = as_float(c_bits ^ c_sign);
}

// Box–Muller on one word pair.
template <class F, class U>
STOCHGRAD_ALWAYS_INLINE void box_muller(const U& a, const U& b, F& z_even, F& z_odd) noexcept {
  const F rad = sqrt_cr(F(-2.0f) * log_u_word<F, U>(a));
  F s, c;
  sincos_2pi_u<F, U>(b, s, c);
  z_even = rad * c;
  z_odd = rad * s;
}

template <class F, class U>
STOCHGRAD_ALWAYS_INLINE F rademacher_from(const U& x) noexcept {
  return as_float((x & U(0x80000000u)) | U(0x3f800000u));
}

template <class F, class U>
STOCHGRAD_ALWAYS_INLINE F segmented_from(const U& x) noexcept {
  const F mag = gen_fma(int_to_float(x & U(0x00ffffffu)) + F(0.5f), F(0x1p-25f), F(0.5f));
  return as_float(as_u32(mag) | (x & U(0x80000000u)));
}

// Inversion Gaussian (philox_icdf): scalar form. See philox_icdf for the mapping.
STOCHGRAD_ALWAYS_INLINE float gaussian_icdf(std::uint32_t w) noexcept {
  const std::uint32_t x = (w << 1) | 1u;
  const auto k = static_cast<unsigned>(std::countl_zero(x));  // octave, 0..31
  const std::uint32_t mant = ((x << k) >> 8) & 0x7fffffu;      // 23 bits below the leading one
  const float t = as_float(mant | 0x3f800000u) - 1.0f;        // exact, in [0, 1)
  float p = icdf_coef[icdf_degree][k];
  for (int r = icdf_degree - 1; r >= 0; --r) p = gen_fma(p, t, icdf_coef[r][k]);
  return as_float(as_u32(p) ^ (w & 0x80000000u));
}

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
// AVX2 inversion in three parts, so that a chunk's four registers can share one branch (see
// icdf_avx2_chunk): the integer part, the polynomial with the octave tables held in one register
// per coefficient (octaves 0..7, all but 2^-8 of the lanes), and the polynomial for any octave.
struct icdf_avx2 {
  __m256i k;     // octave, 0..31
  __m256 t;      // exact, in [0, 1)
  __m256i sign;  // bit 31 of the word
  // Whether a lane has octave >= 8 (not in the one-register tables).
  STOCHGRAD_ALWAYS_INLINE __m256i rare_lanes() const noexcept { return _mm256_cmpgt_epi32(k, _mm256_set1_epi32(7)); }
  STOCHGRAD_ALWAYS_INLINE bool rare() const noexcept { return _mm256_movemask_ps(_mm256_castsi256_ps(rare_lanes())) != 0; }
};

STOCHGRAD_ALWAYS_INLINE icdf_avx2 icdf_avx2_prepare(const u32b& w) noexcept {
  static_assert(f32b::size == 8, "stochgrad: unexpected register width for AVX2");
  const __m256i wi = w;
  const __m256i x = _mm256_or_si256(_mm256_add_epi32(wi, wi), _mm256_set1_epi32(1));
  // countl_zero(x) without lzcnt: v = x >> 1 with the bit below its leading one cleared converts to
  // float exactly enough that the exponent is floor(log2 v) (no rounding up to the next power of
  // two); k = 30 - floor(log2 v), and x = 1 (v = 0, exponent field 0) is clamped to 31.
  const __m256i v = _mm256_srli_epi32(x, 1);
  const __m256i vt = _mm256_andnot_si256(_mm256_srli_epi32(v, 1), v);
  const __m256i ex = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(vt)), 23);
  const __m256i k = _mm256_min_epi32(_mm256_sub_epi32(_mm256_set1_epi32(157), ex), _mm256_set1_epi32(31));
  const __m256i sh = _mm256_srli_epi32(_mm256_sllv_epi32(x, k), 8);
  const __m256 t = _mm256_sub_ps(
      _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(sh, _mm256_set1_epi32(0x7fffff)), _mm256_set1_epi32(0x3f800000))),
      _mm256_set1_ps(1.0f));
  return {k, t, _mm256_and_si256(wi, _mm256_set1_epi32(static_cast<int>(0x80000000u)))};
}

// Octaves 0..7 only: one permute per coefficient.
STOCHGRAD_ALWAYS_INLINE f32b icdf_avx2_fast(const icdf_avx2& q) noexcept {
  __m256 p = _mm256_permutevar8x32_ps(_mm256_load_ps(icdf_coef[icdf_degree]), q.k);
  for (int r = icdf_degree - 1; r >= 0; --r)
    p = _mm256_fmadd_ps(p, q.t, _mm256_permutevar8x32_ps(_mm256_load_ps(icdf_coef[r]), q.k));
  return f32b(_mm256_xor_ps(p, _mm256_castsi256_ps(q.sign)));
}

// Any octave: the 32-entry rows as four 8-entry quarters, each permuted by the low three bits of k,
// the quarter chosen by bits 3 and 4 of k (moved to the sign bit, which is what blendv reads). Same
// coefficients and FMAs as the fast path, so the same bits.
STOCHGRAD_ALWAYS_INLINE f32b icdf_avx2_any(const icdf_avx2& q) noexcept {
  const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(q.k, 28));
  const __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(q.k, 27));
  auto coef = [&q, &b3, &b4](int r) {
    const float* c = icdf_coef[r];
    const __m256 q0 = _mm256_permutevar8x32_ps(_mm256_load_ps(c), q.k);
    const __m256 q1 = _mm256_permutevar8x32_ps(_mm256_load_ps(c + 8), q.k);
    const __m256 q2 = _mm256_permutevar8x32_ps(_mm256_load_ps(c + 16), q.k);
    const __m256 q3 = _mm256_permutevar8x32_ps(_mm256_load_ps(c + 24), q.k);
    return _mm256_blendv_ps(_mm256_blendv_ps(q0, q1, b3), _mm256_blendv_ps(q2, q3, b3), b4);
  };
  __m256 p = coef(icdf_degree);
  for (int r = icdf_degree - 1; r >= 0; --r) p = _mm256_fmadd_ps(p, q.t, coef(r));
  return f32b(_mm256_xor_ps(p, _mm256_castsi256_ps(q.sign)));
}

// Four registers of inversion Gaussians with one branch: all four through the fast path, and, for
// the one chunk in eight that holds a lane of octave >= 8, again through the any-octave path.
// Evaluating the four independent polynomials without a branch between them lets them overlap.
STOCHGRAD_ALWAYS_INLINE void icdf_avx2_chunk(const u32b (&w)[4], f32b (&z)[4]) noexcept {
  icdf_avx2 q[4];
  for (int r = 0; r < 4; ++r) q[r] = icdf_avx2_prepare(w[r]);
  for (int r = 0; r < 4; ++r) z[r] = icdf_avx2_fast(q[r]);
  const __m256i any = _mm256_or_si256(_mm256_or_si256(q[0].rare_lanes(), q[1].rare_lanes()),
                                      _mm256_or_si256(q[2].rare_lanes(), q[3].rare_lanes()));
  if (_mm256_movemask_ps(_mm256_castsi256_ps(any)) != 0) [[unlikely]] {
    for (int r = 0; r < 4; ++r)
      if (q[r].rare()) z[r] = icdf_avx2_any(q[r]);
  }
}
#endif

// SIMD form: same operations lane by lane. With AVX-512 the table lookup is one two-register
// permute per coefficient; elsewhere the lanes are looked up through memory.
STOCHGRAD_ALWAYS_INLINE f32b gaussian_icdf(const u32b& w) noexcept {
#if defined(__AVX512F__) && defined(__AVX512CD__)
  static_assert(f32b::size == 16, "stochgrad: unexpected register width for AVX-512");
  const __m512i wi = w;
  const __m512i x = _mm512_or_si512(_mm512_add_epi32(wi, wi), _mm512_set1_epi32(1));
  const __m512i k = _mm512_lzcnt_epi32(x);
  const __m512i sh = _mm512_srli_epi32(_mm512_sllv_epi32(x, k), 8);
  const __m512 t = _mm512_sub_ps(
      _mm512_castsi512_ps(_mm512_ternarylogic_epi32(sh, _mm512_set1_epi32(0x7fffff), _mm512_set1_epi32(0x3f800000), 0xEA)),
      _mm512_set1_ps(1.0f));
  auto coef = [&k](int r) {
    return _mm512_permutex2var_ps(_mm512_load_ps(icdf_coef[r]), k, _mm512_load_ps(icdf_coef[r] + 16));
  };
  __m512 p = coef(icdf_degree);
  for (int r = icdf_degree - 1; r >= 0; --r) p = _mm512_fmadd_ps(p, t, coef(r));
  static_assert(STOCHGRAD_USE_FMA, "AVX-512 implies FMA");
  return f32b(_mm512_castsi512_ps(
      _mm512_ternarylogic_epi32(_mm512_castps_si512(p), wi, _mm512_set1_epi32(static_cast<int>(0x80000000u)), 0x78)));
#elif defined(__AVX2__) && defined(__FMA__)
  const icdf_avx2 q = icdf_avx2_prepare(w);
  return q.rare() ? icdf_avx2_any(q) : icdf_avx2_fast(q);
#else
  // Portable: the integer part and the lookups lane by lane, the polynomial on registers.
  constexpr std::size_t W = f32b::size;
  alignas(64) std::uint32_t wv[W];
  alignas(64) float tv[W], cv[icdf_degree + 1][W];
  w.store_aligned(wv);
  for (std::size_t j = 0; j < W; ++j) {
    const std::uint32_t x = (wv[j] << 1) | 1u;
    const auto k = static_cast<unsigned>(std::countl_zero(x));
    tv[j] = as_float((((x << k) >> 8) & 0x7fffffu) | 0x3f800000u) - 1.0f;
    for (int r = 0; r <= icdf_degree; ++r) cv[r][j] = icdf_coef[r][k];
  }
  const f32b t = f32b::load_aligned(tv);
  f32b p = f32b::load_aligned(cv[icdf_degree]);
  for (int r = icdf_degree - 1; r >= 0; --r) p = gen_fma(p, t, f32b::load_aligned(cv[r]));
  return as_float(as_u32(p) ^ (w & u32b(0x80000000u)));
#endif
}

// The variate of distribution D for the element in lane `lane` of a Philox output block.
// Scalar bit-sliced Rademacher (philox_icdf).
template <int Rounds>
inline float rademacher_bitsliced_at(const noise_key& k, std::uint64_t e) noexcept {
  const std::uint64_t b = e >> 7;
  const philox_block o = philox4x32<Rounds>({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), k.stream, k.draw},
                                            {static_cast<std::uint32_t>(k.seed), static_cast<std::uint32_t>(k.seed >> 32)});
  const std::uint32_t bit = (o[(e >> 5) & 3u] >> (e & 31u)) & 1u;
  return as_float((bit << 31) | 0x3f800000u);
}

template <class D, class G>
inline float variate_from_block(const philox_block& o, unsigned lane) noexcept {
  if constexpr (std::is_same_v<D, gaussian> && gaussian_by_inversion<G>) {
    return gaussian_icdf(o[lane]);
  } else if constexpr (std::is_same_v<D, gaussian>) {
    const unsigned p = lane & 2u;
    float ze, zo;
    box_muller<float, std::uint32_t>(o[p], o[p + 1], ze, zo);
    return (lane & 1u) ? zo : ze;
  } else if constexpr (std::is_same_v<D, rademacher>) {
    return rademacher_from<float>(o[lane]);
  } else if constexpr (std::is_same_v<D, uniform>) {
    return uniform01(o[lane]);
  } else {
    return segmented_from<float>(o[lane]);
  }
}

constexpr philox_block counter_for(const noise_key& k, std::uint64_t block) noexcept {
  return {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), k.stream, k.draw};
}
constexpr philox_key key_for(const noise_key& k) noexcept {
  return {static_cast<std::uint32_t>(k.seed), static_cast<std::uint32_t>(k.seed >> 32)};
}

// ---------------------------------------------------------------------------------------------
// Chunk layout. A chunk is `simd::chunk` = 4 W elements (W float lanes) = W Philox blocks, run as
// two half-density register sets of W/2 blocks (see philox.hpp). After the rounds, each set is
// packed into two full 32-bit registers P and Q: lane j = 2m + p holds words 2p (P) and 2p + 1 (Q)
// of the block in 64-bit lane m. The distribution maps (P, Q) lane-wise to (E, O), the variates of
// elements 4b + 2p and 4b + 2p + 1 (for the Gaussian: one Box–Muller pair). An in-lane unpack
// (unpacklo/unpackhi within 128-bit lanes) of E and O then yields memory order, provided 64-bit
// lane m of a set holds set-relative block sigma(m) with sigma(2k) = k, sigma(2k + 1) = W/4 + k.

#if defined(STOCHGRAD_PHILOX_HD)
static_assert(STOCHGRAD_PHILOX_HD == 8 * sizeof(f32b), "stochgrad: SIMD Philox width must match the float register");

// Set-relative block numbers sigma(m) of the 64-bit lanes, offset by the set's position.
template <std::size_t Set>
struct chunk_set_offsets {
  static constexpr std::size_t Q = f32b::size / 2, L = Q / 2;
  alignas(64) static constexpr std::uint64_t value[Q] = {
#if STOCHGRAD_PHILOX_HD == 512
      Set * Q + 0, Set * Q + L + 0, Set * Q + 1, Set * Q + L + 1, Set * Q + 2, Set * Q + L + 2, Set * Q + 3, Set * Q + L + 3
#elif STOCHGRAD_PHILOX_HD == 256
      Set * Q + 0, Set * Q + L + 0, Set * Q + 1, Set * Q + L + 1
#else
      Set * Q + 0, Set * Q + L + 0
#endif
  };
};

// 64-bit block numbers of the lanes of register set `Set` of the chunk starting at block b0.
template <std::size_t Set>
STOCHGRAD_ALWAYS_INLINE hd_reg chunk_set_blocks(std::uint64_t b0) noexcept {
  const std::uint64_t* off = chunk_set_offsets<Set>::value;
#if STOCHGRAD_PHILOX_HD == 512
  return _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(b0)), _mm512_load_si512(off));
#elif STOCHGRAD_PHILOX_HD == 256
  return _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(b0)),
                          _mm256_load_si256(reinterpret_cast<const __m256i*>(off)));
#else
  return _mm_add_epi64(_mm_set1_epi64x(static_cast<long long>(b0)), _mm_load_si128(reinterpret_cast<const __m128i*>(off)));
#endif
}

// Full register whose lane 2m is the low word of a's 64-bit lane m and lane 2m + 1 that of b's.
STOCHGRAD_ALWAYS_INLINE u32b pack_low_words(hd_reg a, hd_reg b) noexcept {
#if STOCHGRAD_PHILOX_HD == 512
  const __m512i idx = _mm512_set_epi32(30, 14, 28, 12, 26, 10, 24, 8, 22, 6, 20, 4, 18, 2, 16, 0);
  return u32b(_mm512_permutex2var_epi32(a, idx, b));
#elif STOCHGRAD_PHILOX_HD == 256
  return u32b(_mm256_blend_epi32(a, _mm256_slli_epi64(b, 32), 0xAA));
#else
  return u32b(_mm_or_si128(_mm_and_si128(a, _mm_set1_epi64x(0xffffffffLL)), _mm_slli_epi64(b, 32)));
#endif
}

// In-lane interleave of the even- and odd-element variates into memory order.
STOCHGRAD_ALWAYS_INLINE void interleave_inlane(const f32b& e, const f32b& o, f32b& lo, f32b& hi) noexcept {
#if STOCHGRAD_PHILOX_HD == 512
  lo = f32b(_mm512_unpacklo_ps(e, o));
  hi = f32b(_mm512_unpackhi_ps(e, o));
#elif STOCHGRAD_PHILOX_HD == 256
  lo = f32b(_mm256_unpacklo_ps(e, o));
  hi = f32b(_mm256_unpackhi_ps(e, o));
#else
  lo = f32b(_mm_unpacklo_ps(e, o));
  hi = f32b(_mm_unpackhi_ps(e, o));
#endif
}
#endif

// Variates of the even and odd elements from the word registers P and Q (see the layout above).
template <class D, class G>
STOCHGRAD_ALWAYS_INLINE void variates_from_words(const u32b& p, const u32b& q, f32b& e, f32b& o) noexcept {
  if constexpr (std::is_same_v<D, gaussian> && gaussian_by_inversion<G>) {
    e = gaussian_icdf(p);
    o = gaussian_icdf(q);
  } else if constexpr (std::is_same_v<D, gaussian>) {
    box_muller<f32b, u32b>(p, q, e, o);
  } else if constexpr (std::is_same_v<D, rademacher>) {
    e = rademacher_from<f32b>(p);
    o = rademacher_from<f32b>(q);
  } else if constexpr (std::is_same_v<D, uniform>) {
    e = uniform01(p);
    o = uniform01(q);
  } else {
    e = segmented_from<f32b>(p);
    o = segmented_from<f32b>(q);
  }
}

// Bit-sliced Rademacher (philox_icdf): the 64 signs of elements e0 .. e0 + 63 (e0 % 4 == 0) as
// bits 0..63, from the 128-bit blocks e0 >> 7 and, when the chunk crosses into it, the next one.
template <int Rounds>
STOCHGRAD_ALWAYS_INLINE std::uint64_t rademacher_bits64(std::uint64_t e0, std::uint32_t stream, std::uint32_t draw,
                                                        philox_key key) noexcept {
  const std::uint64_t b = e0 >> 7;
  const unsigned off = static_cast<unsigned>(e0 & 127u);
  const philox_block o =
      philox4x32<Rounds>({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), stream, draw}, key);
  const std::uint64_t lo = o[0] | (std::uint64_t{o[1]} << 32), hi = o[2] | (std::uint64_t{o[3]} << 32);
  if (off == 0) return lo;
  if (off < 64) return (lo >> off) | (hi << (64 - off));
  if (off == 64) return hi;
  const std::uint64_t b1 = b + 1;
  const philox_block o1 =
      philox4x32<Rounds>({static_cast<std::uint32_t>(b1), static_cast<std::uint32_t>(b1 >> 32), stream, draw}, key);
  const std::uint64_t next = o1[0] | (std::uint64_t{o1[1]} << 32);
  return (hi >> (off - 64)) | (next << (128 - off));
}

// Registers of +-1 from sign bits: lane j of register r is -1 iff bit r W + j is set (W <= 32).
STOCHGRAD_ALWAYS_INLINE void signs_from_bits(std::uint64_t bits, f32b out[4]) noexcept {
  constexpr std::size_t W = f32b::size;
  static_assert(4 * W <= 64, "stochgrad: bit-sliced signs need 4 W <= 64");
#if defined(__AVX512F__)
  for (std::size_t r = 0; r < 4; ++r) {
    const auto m = static_cast<__mmask16>(bits >> (r * W));
    out[r] = f32b(_mm512_castsi512_ps(_mm512_mask_or_epi32(_mm512_set1_epi32(0x3f800000), m, _mm512_set1_epi32(0x3f800000),
                                                           _mm512_set1_epi32(static_cast<int>(0x80000000u)))));
  }
#else
  alignas(64) std::uint32_t lane_bit[W];
  for (std::size_t j = 0; j < W; ++j) lane_bit[j] = std::uint32_t{1} << j;
  const u32b lb = u32b::load_aligned(lane_bit);
  for (std::size_t r = 0; r < 4; ++r) {
    const u32b word(static_cast<std::uint32_t>(bits >> (r * W)));
    const u32b sign = xsimd::select((word & lb) != u32b(0u), u32b(0x80000000u), u32b(0u));
    out[r] = as_float(sign | u32b(0x3f800000u));
  }
#endif
}

#if defined(STOCHGRAD_PHILOX_HD)
// The 4 NC float registers of the NC consecutive chunks starting at block b0, in memory order: the
// Philox rounds of all 2 NC register sets interleaved (on AVX2 a single chunk's two sets leave the
// multiplier waiting on the round's latency; two chunks fill it), then each chunk's mapping.
template <class D, class G, int NC>
STOCHGRAD_ALWAYS_INLINE void chunk_variates_hd(std::uint64_t b0, std::uint32_t stream, std::uint32_t draw, std::uint32_t k0,
                                               std::uint32_t k1, f32b* out) noexcept {
  constexpr int S = 2 * NC;
  hd_reg c0[S], c1[S], c2[S], c3[S];
  for (int c = 0; c < NC; ++c) {
    const std::uint64_t bc = b0 + static_cast<std::uint64_t>(c) * f32b::size;  // a chunk is W blocks
    c0[2 * c] = chunk_set_blocks<0>(bc);
    c0[2 * c + 1] = chunk_set_blocks<1>(bc);
  }
  for (int s = 0; s < S; ++s) {
    c1[s] = hd_hi(c0[s]);  // block >> 32
    c2[s] = hd_set(stream);
    c3[s] = hd_set(draw);
  }
  philox_rounds_hd<G::rounds, S>(c0, c1, c2, c3, k0, k1);
  for (int c = 0; c < NC; ++c) {
    f32b* o4 = out + 4 * c;
    const int a = 2 * c, b = 2 * c + 1;
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<D, gaussian> && gaussian_by_inversion<G>) {
      const u32b w[4] = {pack_low_words(c0[a], c2[a]), pack_low_words(c1[a], c3[a]), pack_low_words(c0[b], c2[b]),
                         pack_low_words(c1[b], c3[b])};
      f32b z[4];
      icdf_avx2_chunk(w, z);
      interleave_inlane(z[0], z[1], o4[0], o4[1]);
      interleave_inlane(z[2], z[3], o4[2], o4[3]);
      continue;
    }
#endif
    for (const int s : {a, b}) {
      f32b e, o;
      variates_from_words<D, G>(pack_low_words(c0[s], c2[s]), pack_low_words(c1[s], c3[s]), e, o);
      interleave_inlane(e, o, o4[2 * (s - a)], o4[2 * (s - a) + 1]);
    }
  }
}
#endif

// The four float registers of the chunk starting at block b0, in memory order.
template <class D, class G>
STOCHGRAD_ALWAYS_INLINE void chunk_variates(std::uint64_t b0, std::uint32_t stream, std::uint32_t draw, std::uint32_t k0,
                                            std::uint32_t k1, f32b out[4]) noexcept {
  if constexpr (std::is_same_v<D, rademacher> && rademacher_bitsliced<G>) {
    if constexpr (4 * f32b::size <= 64) {
      signs_from_bits(rademacher_bits64<G::rounds>(b0 << 2, stream, draw, {k0, k1}), out);
      return;
    }
  }
#if defined(STOCHGRAD_PHILOX_HD)
  chunk_variates_hd<D, G, 1>(b0, stream, draw, k0, k1, out);
#else
  // Portable form (any register width): blocks computed one at a time, then the same mapping.
  constexpr std::size_t W = f32b::size;
  alignas(64) std::uint32_t pw[W], qw[W];
  alignas(64) float ev[W], ov[W], mem[4 * W];
  for (std::size_t s = 0; s < 2; ++s) {
    for (std::size_t j = 0; j < W; ++j) {
      const std::uint64_t blk = b0 + s * (W / 2) + j / 2;
      const philox_block o = philox4x32<G::rounds>({static_cast<std::uint32_t>(blk), static_cast<std::uint32_t>(blk >> 32),
                                                  stream, draw},
                                                 {k0, k1});
      pw[j] = o[2 * (j % 2)];
      qw[j] = o[2 * (j % 2) + 1];
    }
    f32b e, o;
    variates_from_words<D, G>(u32b::load_aligned(pw), u32b::load_aligned(qw), e, o);
    e.store_aligned(ev);
    o.store_aligned(ov);
    for (std::size_t j = 0; j < W; ++j) {
      mem[s * 2 * W + 2 * j] = ev[j];
      mem[s * 2 * W + 2 * j + 1] = ov[j];
    }
  }
  for (std::size_t r = 0; r < 4; ++r) out[r] = f32b::load_aligned(mem + r * W);
#endif
}

// Whether chunk_variates_pair is faster than two chunk_variates calls (SIMD Philox rounds; the
// bit-sliced Rademacher makes one scalar Philox call per chunk and gains nothing).
template <class D, class G>
inline constexpr bool pair_chunks_help =
#if defined(STOCHGRAD_PHILOX_HD)
    !(std::is_same_v<D, rademacher> && rademacher_bitsliced<G>);
#else
    false;
#endif

// Two consecutive chunks (8 registers, memory order), bitwise equal to two chunk_variates calls.
template <class D, class G>
STOCHGRAD_ALWAYS_INLINE void chunk_variates_pair(std::uint64_t b0, std::uint32_t stream, std::uint32_t draw, std::uint32_t k0,
                                                 std::uint32_t k1, f32b out[8]) noexcept {
#if defined(STOCHGRAD_PHILOX_HD)
  if constexpr (pair_chunks_help<D, G>) {
    chunk_variates_hd<D, G, 2>(b0, stream, draw, k0, k1, out);
    return;
  }
#endif
  chunk_variates<D, G>(b0, stream, draw, k0, k1, out);
  chunk_variates<D, G>(b0 + f32b::size, stream, draw, k0, k1, out + 4);
}

using f64b = xsimd::batch<double>;

// Exact float -> double widening of one register into two, in memory order.
STOCHGRAD_ALWAYS_INLINE void widen(const f32b& x, f64b& lo, f64b& hi) noexcept {
#if defined(__AVX512F__)
  static_assert(f32b::size == 16, "stochgrad: unexpected register width for AVX-512");
  const __m512 v = x;
  lo = f64b(_mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  hi = f64b(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
#elif defined(__AVX__)
  static_assert(f32b::size == 8, "stochgrad: unexpected register width for AVX");
  const __m256 v = x;
  lo = f64b(_mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  hi = f64b(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
#elif defined(__SSE2__)
  static_assert(f32b::size == 4, "stochgrad: unexpected register width for SSE2");
  const __m128 v = x;
  lo = f64b(_mm_cvtps_pd(v));
  hi = f64b(_mm_cvtps_pd(_mm_movehl_ps(v, v)));
#else
  alignas(64) float f[f32b::size];
  alignas(64) double d[f32b::size];
  x.store_aligned(f);
  for (std::size_t i = 0; i < f32b::size; ++i) d[i] = static_cast<double>(f[i]);
  lo = f64b::load_aligned(d);
  hi = f64b::load_aligned(d + f64b::size);
#endif
}

}  // namespace detail

/// One element of a noise vector, computed on its own (the scalar reference path).
/// @tparam D   distribution tag (gaussian, rademacher, uniform, segmented_uniform)
/// @tparam G   generator policy (default philox<10>)
/// @param key  which noise vector
/// @param e    element index inside the vector
template <noise_distribution D, noise_generator G = default_generator>
inline float noise_at(const noise_key& key, std::uint64_t e) noexcept {
  if constexpr (std::is_same_v<D, rademacher> && detail::rademacher_bitsliced<G>) {
    return detail::rademacher_bitsliced_at<G::rounds>(key, e);
  }
  const philox_block o = philox4x32<G::rounds>(detail::counter_for(key, e >> 2), detail::key_for(key));
  return detail::variate_from_block<D, G>(o, static_cast<unsigned>(e & 3u));
}

/// SIMD generation of one chunk of `simd::chunk` consecutive elements starting at `e0`
/// (`e0 % 4 == 0`), as four float registers in memory order. Bitwise equal to `noise_at` for
/// every element.
template <noise_distribution D, noise_generator G = default_generator>
STOCHGRAD_ALWAYS_INLINE void noise_chunk(const noise_key& key, std::uint64_t e0, xsimd::batch<float> out[4]) noexcept {
  detail::chunk_variates<D, G>(e0 >> 2, key.stream, key.draw, static_cast<std::uint32_t>(key.seed),
                                       static_cast<std::uint32_t>(key.seed >> 32), out);
}

/// Two consecutive chunks starting at `e0` (`e0 % 4 == 0`): `out[0..3]` as `noise_chunk(key, e0)`
/// and `out[4..7]` as `noise_chunk(key, e0 + simd::chunk)`, bitwise. Faster than two calls where the
/// generator's rounds are latency-bound on one chunk (AVX2).
template <noise_distribution D, noise_generator G = default_generator>
STOCHGRAD_ALWAYS_INLINE void noise_chunk_pair(const noise_key& key, std::uint64_t e0, xsimd::batch<float> out[8]) noexcept {
  detail::chunk_variates_pair<D, G>(e0 >> 2, key.stream, key.draw, static_cast<std::uint32_t>(key.seed),
                                    static_cast<std::uint32_t>(key.seed >> 32), out);
}

/// @copydoc noise_chunk_pair
/// Double registers: the float variates widened exactly (`2 simd::chunk_batches<double>` registers).
template <noise_distribution D, noise_generator G = default_generator>
STOCHGRAD_ALWAYS_INLINE void noise_chunk_pair(const noise_key& key, std::uint64_t e0, xsimd::batch<double> out[]) noexcept {
  xsimd::batch<float> f[8];
  noise_chunk_pair<D, G>(key, e0, f);
  for (int r = 0; r < 8; ++r) detail::widen(f[r], out[2 * r], out[2 * r + 1]);
}

/// @copydoc noise_chunk
/// Double registers: the float variates widened exactly (`simd::chunk_batches<double>` registers).
template <noise_distribution D, noise_generator G = default_generator>
STOCHGRAD_ALWAYS_INLINE void noise_chunk(const noise_key& key, std::uint64_t e0, xsimd::batch<double> out[]) noexcept {
  xsimd::batch<float> f[4];
  noise_chunk<D, G>(key, e0, f);
  for (int r = 0; r < 4; ++r) detail::widen(f[r], out[2 * r], out[2 * r + 1]);
}

/// Scalar variate in the parameter type (float, or the float variate widened to double).
template <noise_distribution D, noise_generator G = default_generator, real_scalar T = float>
inline T noise_value(const noise_key& key, std::uint64_t e) noexcept {
  return static_cast<T>(noise_at<D, G>(key, e));
}

}  // namespace stochgrad
