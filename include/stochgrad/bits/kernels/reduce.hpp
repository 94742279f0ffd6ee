// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Reductions with a fixed combination order: sum, sum of squares, dot, norm, mean/variance.
///
/// The input is cut into leaves of 1024 elements. A leaf is reduced with four SIMD accumulators in
/// the element type; leaf results are converted to double and combined by a pairwise tree whose
/// shape depends only on the length. Threads evaluate subtrees, so the result is bitwise identical
/// for any thread count. Error: O(eps_T * 1024/(4 W)) per leaf plus O(eps_double log n) overall.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"

namespace stochgrad {

/// Count, mean and sum of squared deviations of a sequence (Chan et al. combinable form).
struct moments {
  std::size_t count = 0;  ///< number of elements
  double mean = 0.0;      ///< arithmetic mean (0 for an empty input)
  double m2 = 0.0;        ///< sum of squared deviations from the mean
  /// Biased variance m2 / n (NaN when empty).
  double variance_biased() const noexcept {
    return count == 0 ? std::nan("") : m2 / static_cast<double>(count);
  }
  /// Unbiased variance m2 / (n - 1) (NaN when n < 2).
  double variance_unbiased() const noexcept {
    return count < 2 ? std::nan("") : m2 / static_cast<double>(count - 1);
  }
  /// Combines the moments of two disjoint sequences.
  friend moments merge(const moments& a, const moments& b) noexcept {
    if (a.count == 0) return b;
    if (b.count == 0) return a;
    const double na = static_cast<double>(a.count), nb = static_cast<double>(b.count);
    const double n = na + nb;
    const double delta = b.mean - a.mean;
    moments r;
    r.count = a.count + b.count;
    r.mean = a.mean + delta * (nb / n);
    r.m2 = a.m2 + b.m2 + delta * delta * (na * nb / n);
    return r;
  }
};

namespace detail {

inline constexpr std::size_t reduce_leaf = 1024;
inline constexpr std::size_t reduce_max_parts = 64;
/// Inputs of fewer leaves than this are reduced on the calling thread.
inline constexpr std::size_t reduce_parallel_min_leaves = 64;

template <class R, class Leaf, class Combine>
R pairwise_leaves(std::size_t lo, std::size_t hi, std::size_t n, const Leaf& leaf, const Combine& comb) {
  if (hi - lo == 1) return leaf(lo * reduce_leaf, std::min(n, (lo + 1) * reduce_leaf));
  const std::size_t mid = lo + (hi - lo) / 2;
  return comb(pairwise_leaves<R>(lo, mid, n, leaf, comb), pairwise_leaves<R>(mid, hi, n, leaf, comb));
}

template <class R, class Combine>
R pairwise_array(const R* v, std::size_t lo, std::size_t hi, const Combine& comb) {
  if (hi - lo == 1) return v[lo];
  const std::size_t mid = lo + (hi - lo) / 2;
  return comb(pairwise_array(v, lo, mid, comb), pairwise_array(v, mid, hi, comb));
}

/// Reduces [0, n) with leaf(begin, end) -> R and an associative-in-exact-arithmetic comb(R, R).
/// The tree depends on n only.
template <class R, class Leaf, class Combine>
R tree_reduce(const executor& ex, std::size_t n, R identity, const Leaf& leaf, const Combine& comb) {
  if (n == 0) return identity;
  const std::size_t leaves = (n + reduce_leaf - 1) / reduce_leaf;
  const std::size_t parts = std::min(leaves, reduce_max_parts);
  R partial[reduce_max_parts];
  auto part = [&](std::size_t p) {
    const std::size_t lo = p * leaves / parts, hi = (p + 1) * leaves / parts;
    partial[p] = pairwise_leaves<R>(lo, hi, n, leaf, comb);
  };
  // Small inputs run on the calling thread (waking the pool would cost more than the work); the
  // parts and their combination are the same either way, so the bits are too.
  if (ex.concurrency() == 1 || leaves < reduce_parallel_min_leaves) {
    for (std::size_t p = 0; p < parts; ++p) part(p);
  } else {
    ex.run(parts, part);
  }
  return pairwise_array(partial, 0, parts, comb);
}

// Sum over [b, e) of op(i-th batch) with four accumulators; op is applied to SIMD batches and to
// scalars (tail) alike.
template <class T, class BatchOp, class ScalarOp>
double leaf_sum(std::size_t b, std::size_t e, const BatchOp& bop, const ScalarOp& sop) noexcept {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
  std::size_t i = b;
  for (; i + 4 * W <= e; i += 4 * W) {
    a0 = bop(a0, i);
    a1 = bop(a1, i + W);
    a2 = bop(a2, i + 2 * W);
    a3 = bop(a3, i + 3 * W);
  }
  for (; i + W <= e; i += W) a0 = bop(a0, i);
  T tail = T(0);
  for (; i < e; ++i) tail = sop(tail, i);
  return static_cast<double>(simd::reduce_add((a0 + a1) + (a2 + a3))) + static_cast<double>(tail);
}

inline double add_d(double a, double b) noexcept { return a + b; }

}  // namespace detail

/// Sum of the elements (double result; see the file comment for the order of operations).
template <real_scalar T>
double sum(std::span<const T> x, const executor& ex = {}) {
  detail::require_data("sum", "x", x.data(), x.size());
  const T* p = x.data();
  using B = xsimd::batch<T>;
  auto leaf = [p](std::size_t b, std::size_t e) {
    return detail::leaf_sum<T>(
        b, e, [p](const B& acc, std::size_t i) { return acc + B::load_unaligned(p + i); },
        [p](T acc, std::size_t i) { return acc + p[i]; });
  };
  return detail::tree_reduce<double>(ex, x.size(), 0.0, leaf, detail::add_d);
}

/// Sum of squares of the elements.
template <real_scalar T>
double sum_squares(std::span<const T> x, const executor& ex = {}) {
  detail::require_data("sum_squares", "x", x.data(), x.size());
  const T* p = x.data();
  using B = xsimd::batch<T>;
  auto leaf = [p](std::size_t b, std::size_t e) {
    return detail::leaf_sum<T>(
        b, e,
        [p](const B& acc, std::size_t i) {
          const B v = B::load_unaligned(p + i);
          return simd::madd(v, v, acc);
        },
        [p](T acc, std::size_t i) { return simd::madd(p[i], p[i], acc); });
  };
  return detail::tree_reduce<double>(ex, x.size(), 0.0, leaf, detail::add_d);
}

/// Dot product.
/// @throws size_mismatch if the lengths differ.
template <real_scalar T>
double dot(std::span<const T> x, std::span<const T> y, const executor& ex = {}) {
  detail::require_same_size("dot", "x", x.size(), "y", y.size());
  detail::require_data("dot", "x", x.data(), x.size());
  detail::require_data("dot", "y", y.data(), y.size());
  const T* p = x.data();
  const T* q = y.data();
  using B = xsimd::batch<T>;
  auto leaf = [p, q](std::size_t b, std::size_t e) {
    return detail::leaf_sum<T>(
        b, e,
        [p, q](const B& acc, std::size_t i) {
          return simd::madd(B::load_unaligned(p + i), B::load_unaligned(q + i), acc);
        },
        [p, q](T acc, std::size_t i) { return simd::madd(p[i], q[i], acc); });
  };
  return detail::tree_reduce<double>(ex, x.size(), 0.0, leaf, detail::add_d);
}

/// Euclidean norm, sqrt(sum_squares(x)).
template <real_scalar T>
double norm(std::span<const T> x, const executor& ex = {}) {
  return std::sqrt(sum_squares<T>(x, ex));
}

/// Count, mean and sum of squared deviations. Each leaf is read once, shifted by c, the mean of
/// its first 2W elements (W = SIMD width; the first element for shorter leaves): with
/// S1 = sum(x - c) and S2 = sum((x - c)^2), m2 = S2 - S1^2/n. When S1^2/n > S2/8 (c far from the
/// leaf mean relative to its spread: sorted or trending data) the leaf is recomputed with two
/// passes shifted by its mean instead, so the relative error of m2 stays within
/// 2 gamma + 4u (gamma: the leaf's summation bound, u: the unit roundoff of T) for any data.
/// Leaves are merged with Chan's formula in a fixed tree (bitwise identical for any thread count).
template <real_scalar T>
moments mean_variance(std::span<const T> x, const executor& ex = {}) {
  detail::require_data("mean_variance", "x", x.data(), x.size());
  const T* p = x.data();
  using B = xsimd::batch<T>;
  auto two_pass = [p](std::size_t b, std::size_t e) {
    const double s = detail::leaf_sum<T>(
        b, e, [p](const B& acc, std::size_t i) { return acc + B::load_unaligned(p + i); },
        [p](T acc, std::size_t i) { return acc + p[i]; });
    const double n = static_cast<double>(e - b);
    const double mean = s / n;
    const T c = static_cast<T>(mean);
    const B cb(c);
    const double s2 = detail::leaf_sum<T>(
        b, e,
        [p, cb](const B& acc, std::size_t i) {
          const B d = B::load_unaligned(p + i) - cb;
          return simd::madd(d, d, acc);
        },
        [p, c](T acc, std::size_t i) {
          const T d = p[i] - c;
          return simd::madd(d, d, acc);
        });
    const double shift = mean - static_cast<double>(c);
    moments m;
    m.count = e - b;
    m.mean = mean;
    m.m2 = std::max(0.0, s2 - n * shift * shift);
    return m;
  };
  auto leaf = [p, two_pass](std::size_t b, std::size_t e) {
    constexpr std::size_t W = B::size;
    T c = p[b];
    if (e - b >= 2 * W) {
      c = static_cast<T>((static_cast<double>(simd::reduce_add(B::load_unaligned(p + b))) +
                          static_cast<double>(simd::reduce_add(B::load_unaligned(p + b + W)))) /
                         static_cast<double>(2 * W));
    }
    const B cb(c);
    B s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0)), q0(T(0)), q1(T(0)), q2(T(0)), q3(T(0));
    std::size_t i = b;
    for (; i + 4 * W <= e; i += 4 * W) {
      const B d0 = B::load_unaligned(p + i) - cb;
      const B d1 = B::load_unaligned(p + i + W) - cb;
      const B d2 = B::load_unaligned(p + i + 2 * W) - cb;
      const B d3 = B::load_unaligned(p + i + 3 * W) - cb;
      s0 += d0;
      s1 += d1;
      s2 += d2;
      s3 += d3;
      q0 = simd::madd(d0, d0, q0);
      q1 = simd::madd(d1, d1, q1);
      q2 = simd::madd(d2, d2, q2);
      q3 = simd::madd(d3, d3, q3);
    }
    for (; i + W <= e; i += W) {
      const B d0 = B::load_unaligned(p + i) - cb;
      s0 += d0;
      q0 = simd::madd(d0, d0, q0);
    }
    T st = T(0), qt = T(0);
    for (; i < e; ++i) {
      const T d = p[i] - c;
      st += d;
      qt = simd::madd(d, d, qt);
    }
    const double S1 = static_cast<double>(simd::reduce_add((s0 + s1) + (s2 + s3))) + static_cast<double>(st);
    const double S2 = static_cast<double>(simd::reduce_add((q0 + q1) + (q2 + q3))) + static_cast<double>(qt);
    const double n = static_cast<double>(e - b);
    const double corr = S1 * (S1 / n);
    if (!(corr <= 0.125 * S2)) return two_pass(b, e);  // cancellation, or non-finite data
    moments m;
    m.count = e - b;
    m.mean = static_cast<double>(c) + S1 / n;
    m.m2 = S2 - corr;
    return m;
  };
  return detail::tree_reduce<moments>(ex, x.size(), moments{}, leaf,
                                      [](const moments& a, const moments& b) { return merge(a, b); });
}

}  // namespace stochgrad
