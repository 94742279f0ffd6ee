// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `simd::exp` for registers of double without integer conversions.
///
/// xsimd 8's `exp` for double builds 2^k through a double -> int64 conversion that AVX-512F
/// without AVX-512DQ (and AVX2) performs lane by lane; in the policy-gradient token kernels that
/// conversion was most of the time per token. This version rounds x log2(e) to an integer with
/// the 1.5 * 2^52 shifter, so k is read from the low bits of a double and 2^k is assembled with
/// an integer add and shift. Reduction r = x - k ln2 (Cody–Waite, two constants, |r| <= ln2/2),
/// exp(r) by its Taylor polynomial of degree 13 (truncation < 3e-18 relative) in Horner form:
/// error within a few ulp of the correctly rounded value over |x| <= 708. Registers with a lane
/// outside that range (or NaN/Inf) are passed to `xsimd::exp`, which handles overflow, underflow
/// and special values, after clamping: xsimd converts x log2(e) to int64 for every lane, which is
/// undefined behaviour for |x| beyond ~6.4e18 and for NaN (UBSan's float-cast-overflow reports it
/// for log-ratios near 1e30). So lanes are first clamped to [-750, 710] (e^x is already 0 below
/// -745.14 and +inf above 709.79, so +-inf and every huge value keep their result) and NaN lanes
/// are computed as 0 and put back afterwards: `exp(x) = x` for NaN. Lanes in [-750, 710] are
/// unchanged, so the results are bit for bit xsimd's.
#pragma once

#include <bit>
#include <cstdint>

#include "../config.hpp"

namespace stochgrad::simd {

/// e^x lane-wise (see the file comment for the accuracy and the special-value handling).
template <class A>
STOCHGRAD_ALWAYS_INLINE xsimd::batch<double, A> exp(const xsimd::batch<double, A>& x) noexcept {
  using V = xsimd::batch<double, A>;
  using I = xsimd::batch<std::int64_t, A>;
  if (!xsimd::all(xsimd::abs(x) <= V(708.0))) {
    const auto nan = xsimd::isnan(x);
    const V xc = xsimd::select(nan, V(0.0), xsimd::min(xsimd::max(x, V(-750.0)), V(710.0)));
    return xsimd::select(nan, x, xsimd::exp(xc));
  }
  constexpr double log2e = 1.4426950408889634074;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // ln 2 to 32 bits: k * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: x + shifter rounds x to an integer
  const V t = madd(x, V(log2e), V(shifter));
  const V k = t - V(shifter);
  V r = madd(-k, V(ln2_hi), x);
  r = madd(-k, V(ln2_lo), r);
  // 1/13!, ..., 1/2!, 1, 1 (Horner: within 1 ulp here; Estrin's shorter chain measured 2.1 ulp
  // and was only 3-8 % faster in the token kernels, which are throughput bound).
  constexpr double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                          1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,      1.0 / 720.0,
                          1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,         0.5,
                          1.0,                1.0};
  V p(c[0]);
  for (int j = 1; j < 14; ++j) p = madd(p, r, V(c[j]));
  // 2^k: k sits in the low mantissa bits of t (|k| <= 1022 < 2^51).
  const I ki = std::bit_cast<I>(t) - std::bit_cast<I>(V(shifter));
  const V scale = std::bit_cast<V>((ki + I(1023)) << 52);
  return p * scale;
}

}  // namespace stochgrad::simd
