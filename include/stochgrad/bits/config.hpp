// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Build configuration shared by every stochgrad header: SIMD types, the fused multiply-add
/// policy and small portability shims over xsimd 8.1 .. 14.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cmath>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "../version.hpp"

#if defined(__GNUC__) || defined(__clang__)
/// `inline` that also forces inlining (GCC/Clang `always_inline`) for the small hot kernel helpers.
#define STOCHGRAD_ALWAYS_INLINE inline __attribute__((always_inline))
/// Pointer qualifier promising no aliasing (GCC/Clang `__restrict__`), on kernels' output pointers.
#define STOCHGRAD_RESTRICT __restrict__
#else
/// `inline` that also forces inlining where the compiler supports it; plain `inline` here.
#define STOCHGRAD_ALWAYS_INLINE inline
/// Pointer qualifier promising no aliasing where the compiler supports it; empty here.
#define STOCHGRAD_RESTRICT
#endif

/// Whether stochgrad uses fused multiply-add. Defaults to on when the target has hardware FMA.
/// The same choice is made for scalar and SIMD code, which is what keeps the scalar reference
/// paths bitwise identical to the vector kernels.
#ifndef STOCHGRAD_USE_FMA
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define STOCHGRAD_USE_FMA 1
#else
#define STOCHGRAD_USE_FMA 0
#endif
#endif

/// stochgrad's public API: estimator, baseline, normalizer and optimizer policies, the steppers
/// composed from them, parameter sets, noise generation and kernels. `detail` namespaces are not API.
namespace stochgrad {

/// Floating-point element types stochgrad kernels accept.
template <class T>
concept real_scalar = std::is_same_v<T, float> || std::is_same_v<T, double>;

/// SIMD register types and the fused multiply-add helpers shared by scalar and vector kernels.
namespace simd {

/// The SIMD register type for `T` on the architecture this translation unit is compiled for.
template <class T>
using batch = xsimd::batch<T>;

/// Lanes in a register of `T`.
template <class T>
inline constexpr std::size_t width = xsimd::batch<T>::size;

/// Elements handled by one iteration of a noise-reading kernel: four registers of float, i.e.
/// one counter-based RNG call per lane. Independent of the parameter type.
inline constexpr std::size_t chunk = 4 * xsimd::batch<float>::size;

/// Registers of `T` in one chunk.
template <class T>
inline constexpr std::size_t chunk_batches = chunk / xsimd::batch<T>::size;

/// `a * b + c`, fused when STOCHGRAD_USE_FMA is on (scalar overloads).
STOCHGRAD_ALWAYS_INLINE float madd(float a, float b, float c) noexcept {
#if STOCHGRAD_USE_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}
/// @copydoc madd(float,float,float)
STOCHGRAD_ALWAYS_INLINE double madd(double a, double b, double c) noexcept {
#if STOCHGRAD_USE_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}
/// `a * b + c` on registers, with the same fusion choice as the scalar overloads.
/// Uses the FMA instruction directly: xsimd 8.1 falls back to `a * b + c` for AVX-512, which the
/// compiler may or may not contract, and that would break scalar/SIMD bitwise equality.
template <class T, class A>
STOCHGRAD_ALWAYS_INLINE xsimd::batch<T, A> madd(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                                const xsimd::batch<T, A>& c) noexcept {
#if STOCHGRAD_USE_FMA
#if defined(__AVX512F__)
  if constexpr (sizeof(xsimd::batch<T, A>) == 64) {
    if constexpr (std::is_same_v<T, float>) {
      return xsimd::batch<T, A>(_mm512_fmadd_ps(a, b, c));
    } else {
      return xsimd::batch<T, A>(_mm512_fmadd_pd(a, b, c));
    }
  } else
#endif
#if defined(__FMA__) && defined(__AVX__)
  if constexpr (sizeof(xsimd::batch<T, A>) == 32) {
    if constexpr (std::is_same_v<T, float>) {
      return xsimd::batch<T, A>(_mm256_fmadd_ps(a, b, c));
    } else {
      return xsimd::batch<T, A>(_mm256_fmadd_pd(a, b, c));
    }
  } else
#endif
#if defined(__FMA__)
  if constexpr (sizeof(xsimd::batch<T, A>) == 16) {
    if constexpr (std::is_same_v<T, float>) {
      return xsimd::batch<T, A>(_mm_fmadd_ps(a, b, c));
    } else {
      return xsimd::batch<T, A>(_mm_fmadd_pd(a, b, c));
    }
  } else
#endif
  {
    return xsimd::fma(a, b, c);
  }
#else
  return a * b + c;
#endif
}

/// Horizontal sum of a register (xsimd renamed `hadd` to `reduce_add` in version 9).
template <class T, class A>
STOCHGRAD_ALWAYS_INLINE T reduce_add(const xsimd::batch<T, A>& b) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(b);
#else
  return xsimd::hadd(b);
#endif
}

/// Name of the SIMD architecture compiled in (e.g. "avx512bw").
inline const char* arch_name() noexcept { return xsimd::default_arch::name(); }

}  // namespace simd
namespace detail {
/// Bytes ahead of the current chunk that the in-place noise kernels prefetch for writing: the
/// noise generation keeps the core busy long enough per cache line that the hardware prefetchers
/// alone leave an in-place pass partly latency bound out of cache (measurements: bench/README.md).
inline constexpr std::size_t prefetch_bytes = 2048;

/// Hint that the cache line at `p` will be written soon (no-op where the builtin is missing).
STOCHGRAD_ALWAYS_INLINE void prefetch_for_write(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 1, 3);
#else
  (void)p;
#endif
}

/// The unsigned integer type of the same width as the floating type T (float: 32, double: 64).
template <class T>
using uint_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
}  // namespace detail

}  // namespace stochgrad
