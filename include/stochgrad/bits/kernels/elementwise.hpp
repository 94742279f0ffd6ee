// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Streaming element-wise kernels: seeded perturbation, noise generation, axpy, scale.
///
/// All kernels accept float or double spans of any length and alignment, run on an `executor`
/// (inline by default, or a thread_pool) and give bitwise identical results for any thread count:
/// work is split into tasks of a fixed number of elements, and an element's result never depends
/// on how the range was split. No kernel allocates.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define STOCHGRAD_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define STOCHGRAD_ALWAYS_INLINE_LAMBDA
#endif

namespace stochgrad {
namespace detail {

/// Elements per parallel task (a multiple of simd::chunk).
inline constexpr std::size_t task_grain = std::size_t{1} << 16;
static_assert(task_grain % (4 * 16) == 0);

/// Calls f(begin, end) over [0, n) in tasks of task_grain elements.
template <class F>
void parallel_ranges(const executor& ex, std::size_t n, F&& f) {
  if (n == 0) return;
  if (ex.concurrency() == 1 || n <= task_grain) {
    f(std::size_t{0}, n);
    return;
  }
  const std::size_t tasks = (n + task_grain - 1) / task_grain;
  ex.run(tasks, [&](std::size_t t) {
    const std::size_t b = t * task_grain;
    f(b, std::min(n, b + task_grain));
  });
}

/// Writes the chunk of noise starting at element e0 (e0 % 4 == 0) to z[0, simd::chunk).
template <class D, class G, class T>
STOCHGRAD_ALWAYS_INLINE void noise_chunk_to(const noise_key& key, std::uint64_t e0, T* z) noexcept {
  using B = xsimd::batch<T>;
  B zb[simd::chunk_batches<T>];
  noise_chunk<D, G>(key, e0, zb);
  for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) zb[r].store_aligned(z + r * B::size);
}

/// Runs `body(i, z)` on [b, e) chunk by chunk (z: registers of noise for elements i ..
/// i + simd::chunk), and `edge(i, count, z)` for the partial chunks at both ends (z: an array whose
/// element k is the noise of element i + k). Noise index of element i is first + i. Partial chunks
/// are generated whole with the SIMD path and only the needed elements are used, which gives the
/// same bits as the scalar path (noise_value) at a fraction of its cost.
template <class D, class G, class T, class Body, class Edge>
STOCHGRAD_ALWAYS_INLINE void for_noise_chunks(std::size_t b, std::size_t e, const noise_key& key, std::uint64_t first,
                                              Body&& body, Edge&& edge) noexcept {
  using B = xsimd::batch<T>;
  constexpr std::size_t C = simd::chunk;
  std::size_t i = b;
  if (i < e && ((first + i) & 3u) != 0) {
    const std::uint64_t e0 = (first + i) & ~std::uint64_t{3};
    alignas(64) T z[C];
    noise_chunk_to<D, G, T>(key, e0, z);
    const std::size_t skip = static_cast<std::size_t>((first + i) - e0);
    const std::size_t n = std::min(e - i, C - skip);
    edge(i, n, z + skip);
    i += n;
  }
  if constexpr (detail::pair_chunks_help<D, G>) {
    for (; i + 2 * C <= e; i += 2 * C) {
      B z[2 * simd::chunk_batches<T>];
      noise_chunk_pair<D, G>(key, first + i, z);
      body(i, z);
      body(i + C, z + simd::chunk_batches<T>);
    }
  }
  for (; i + C <= e; i += C) {
    B z[simd::chunk_batches<T>];
    noise_chunk<D, G>(key, first + i, z);
    body(i, z);
  }
  if (i < e) {
    alignas(64) T z[C];
    noise_chunk_to<D, G, T>(key, first + i, z);
    edge(i, e - i, z);
  }
}

/// x[i] += s * z(first + i) for i in [b, e).
template <class D, class G, class T>
void perturb_range(T* STOCHGRAD_RESTRICT x, std::size_t b, std::size_t e, T s, const noise_key& key,
                   std::uint64_t first) noexcept {
  using B = xsimd::batch<T>;
  constexpr std::size_t ahead = prefetch_bytes / sizeof(T), line = 64 / sizeof(T);
  const B sb(s);
  for_noise_chunks<D, G, T>(
      b, e, key, first,
      [x, sb, e](std::size_t i, const B* z) STOCHGRAD_ALWAYS_INLINE_LAMBDA {
        if (i + ahead + simd::chunk <= e) {
          for (std::size_t l = 0; l < simd::chunk; l += line) prefetch_for_write(x + i + ahead + l);
        }
        for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) {
          T* p = x + i + r * B::size;
          simd::madd(sb, z[r], B::load_unaligned(p)).store_unaligned(p);
        }
      },
      [x, s](std::size_t i, std::size_t n, const T* z) {
        for (std::size_t k = 0; k < n; ++k) x[i + k] = simd::madd(s, z[k], x[i + k]);
      });
}

/// out[i] = z(first + i) for i in [b, e).
template <class D, class G, class T>
void generate_range(T* STOCHGRAD_RESTRICT out, std::size_t b, std::size_t e, const noise_key& key,
                    std::uint64_t first) noexcept {
  using B = xsimd::batch<T>;
  for_noise_chunks<D, G, T>(
      b, e, key, first,
      [out](std::size_t i, const B* z) STOCHGRAD_ALWAYS_INLINE_LAMBDA {
        for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) z[r].store_unaligned(out + i + r * B::size);
      },
      [out](std::size_t i, std::size_t n, const T* z) {
        for (std::size_t k = 0; k < n; ++k) out[i + k] = z[k];
      });
}

}  // namespace detail

/// Seeded perturbation `x[i] += s * z(key, first + i)`, z regenerated from the counter-based
/// generator and never stored (MeZO's perturb/restore/update passes).
/// @tparam D distribution (gaussian, rademacher, uniform, segmented_uniform)
/// @tparam G generator policy
/// @param x      parameters, updated in place
/// @param s      scale (e.g. +eps, -2 eps, -lr * projected gradient)
/// @param key    which noise vector
/// @param first  noise index of x[0] (for a slice of a larger tensor); default 0
/// @param ex     where to run
/// @throws invalid_argument if x has null data and non-zero length.
template <noise_distribution D = gaussian, noise_generator G = default_generator, real_scalar T>
void perturb(std::span<T> x, T s, const noise_key& key, std::uint64_t first = 0, const executor& ex = {}) {
  detail::require_data("perturb", "x", x.data(), x.size());
  T* p = x.data();
  detail::parallel_ranges(ex, x.size(), [&](std::size_t b, std::size_t e) {
    detail::perturb_range<D, G, T>(p, b, e, s, key, first);
  });
}

/// Seeded perturbation of a group of tensors: tensor j uses stream `key.stream + j`.
template <noise_distribution D = gaussian, noise_generator G = default_generator, real_scalar T>
void perturb(std::span<const std::span<T>> tensors, T s, const noise_key& key, const executor& ex = {}) {
  for (std::size_t j = 0; j < tensors.size(); ++j) {
    noise_key k = key;
    k.stream = key.stream + static_cast<std::uint32_t>(j);
    perturb<D, G, T>(tensors[j], s, k, 0, ex);
  }
}

/// Writes `out[i] = z(key, first + i)`.
/// @throws invalid_argument if out has null data and non-zero length.
template <noise_distribution D = gaussian, noise_generator G = default_generator, real_scalar T>
void generate(std::span<T> out, const noise_key& key, std::uint64_t first = 0, const executor& ex = {}) {
  detail::require_data("generate", "out", out.data(), out.size());
  T* p = out.data();
  detail::parallel_ranges(ex, out.size(), [&](std::size_t b, std::size_t e) {
    detail::generate_range<D, G, T>(p, b, e, key, first);
  });
}

/// `y[i] += a * x[i]`.
/// @throws size_mismatch if the lengths differ; invalid_argument for null data.
template <real_scalar T>
void axpy(T a, std::span<const T> x, std::span<T> y, const executor& ex = {}) {
  detail::require_same_size("axpy", "x", x.size(), "y", y.size());
  detail::require_data("axpy", "x", x.data(), x.size());
  detail::require_data("axpy", "y", y.data(), y.size());
  const T* xp = x.data();
  T* yp = y.data();
  detail::parallel_ranges(ex, y.size(), [&](std::size_t b, std::size_t e) {
    using B = xsimd::batch<T>;
    const B ab(a);
    std::size_t i = b;
    for (; i + B::size <= e; i += B::size) {
      simd::madd(ab, B::load_unaligned(xp + i), B::load_unaligned(yp + i)).store_unaligned(yp + i);
    }
    for (; i < e; ++i) yp[i] = simd::madd(a, xp[i], yp[i]);
  });
}

/// `x[i] *= a`.
/// @throws invalid_argument for null data.
template <real_scalar T>
void scale(std::span<T> x, T a, const executor& ex = {}) {
  detail::require_data("scale", "x", x.data(), x.size());
  T* xp = x.data();
  detail::parallel_ranges(ex, x.size(), [&](std::size_t b, std::size_t e) {
    using B = xsimd::batch<T>;
    const B ab(a);
    std::size_t i = b;
    for (; i + B::size <= e; i += B::size) (B::load_unaligned(xp + i) * ab).store_unaligned(xp + i);
    for (; i < e; ++i) xp[i] *= a;
  });
}

}  // namespace stochgrad
