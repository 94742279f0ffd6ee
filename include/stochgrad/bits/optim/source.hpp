// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Lazy gradient sources: what an optimizer kernel reads, a SIMD chunk at a time.
///
/// A source yields the gradient of tensor `t` at element `i`. Dense sources read memory; noise
/// sources regenerate `scale * z(seed, stream, draw)` from the counter-based generator, so a
/// zeroth-order estimate is never materialised: MeZO+SGD is one pass, and MeZO+Adan computes g in
/// registers inside the Adan kernel. The parameter registers are passed in too, so a source may
/// depend on the current parameters (e.g. a magnitude mask computed from unperturbed weights).
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/reduce.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"
#include "parameters.hpp"

namespace stochgrad {

/// A gradient source for parameters of type T.
/// - `s.load_chunk(t, i, theta, out)`: writes `simd::chunk_batches<T>` registers holding the
///   gradient of tensor t at elements [i, i + simd::chunk); `i % simd::chunk == 0`; `theta` holds the
///   current parameter registers of the same elements, and the source may adjust them before the
///   optimizer sees them (this is how MeZO's restore pass is fused into the update).
/// - `s.at(t, i, theta_i)`: the same for one element (bitwise equal to the chunk path).
/// - `s.check(p)`: throws size_mismatch (or invalid_argument) if the source does not fit `p`.
/// Optional: `s.finish_chunk(t, i, theta)` / `s.finish_at(t, i, theta_i)` adjust the updated
/// parameters before they are stored (fusing the next step's perturbation into the update).
template <class S, class T>
concept gradient_source = real_scalar<T> && requires(const S& s, std::size_t t, std::size_t i,
                                                     xsimd::batch<T>* theta, xsimd::batch<T>* out, T& th,
                                                     const parameters<T>& p) {
  s.load_chunk(t, i, theta, out);
  { s.at(t, i, th) } -> std::convertible_to<T>;
  s.check(p);
};

namespace detail {
template <class S, class T>
concept has_finish = requires(const S& s, std::size_t t, std::size_t i, xsimd::batch<T>* theta, T& th) {
  s.finish_chunk(t, i, theta);
  s.finish_at(t, i, th);
};
}  // namespace detail

/// A gradient held in memory: one span per tensor (owned by the caller).
template <real_scalar T>
class dense_gradient {
 public:
  /// One span per tensor, in the order of the parameters' tensors. The array of spans must
  /// outlive the source.
  explicit dense_gradient(std::span<const std::span<const T>> grads) noexcept : grads_(grads) {}
  /// A single-tensor gradient.
  explicit dense_gradient(std::span<const T> g) noexcept : one_{g}, grads_(one_.data(), 1) {}
  /// Copies the view; a single-tensor source's copy refers to its own copy of the span, so it does
  /// not dangle when `o` is destroyed.
  dense_gradient(const dense_gradient& o) noexcept : one_(o.one_), grads_(o.grads_) {
    if (o.grads_.data() == o.one_.data()) grads_ = std::span<const std::span<const T>>(one_.data(), 1);
  }
  dense_gradient& operator=(const dense_gradient&) = delete;

  /// Registers of tensor t at [i, i + chunk).
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>*,
                                          xsimd::batch<T>* out) const noexcept {
    const T* p = grads_[t].data() + i;
    for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) out[r] = xsimd::batch<T>::load_unaligned(p + r * simd::width<T>);
  }
  /// Element i of tensor t.
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T&) const noexcept { return grads_[t][i]; }
  /// @throws size_mismatch unless there is one gradient per tensor, each of the tensor's length.
  void check(const parameters<T>& p) const {
    detail::require_same_size("dense_gradient", "parameter tensors", p.tensors(), "gradient tensors", grads_.size());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      detail::require_same_size("dense_gradient", "parameter tensor", p.tensor(t).size(), "its gradient",
                                grads_[t].size());
      detail::require_data("dense_gradient", "gradient", grads_[t].data(), grads_[t].size());
    }
  }
  /// The spans.
  std::span<const std::span<const T>> spans() const noexcept { return grads_; }

 private:
  std::array<std::span<const T>, 1> one_{};
  std::span<const std::span<const T>> grads_;
};

/// One term `scale * z(seed, stream, draw)` of a noise-direction gradient.
struct noise_term {
  std::uint64_t seed = 0;  ///< noise seed
  std::uint32_t draw = 0;  ///< draw index (query number)
  double scale = 0.0;      ///< coefficient (e.g. the projected gradient (L+ - L-)/(2 eps))
};

/// The gradient `sum_k scale_k * z_k` where `z_k` is the noise of tensor t under key
/// `{seed_k, stream_offset + t, draw_k}`: regenerated, never stored. Tensor-wise evaluation:
/// `g = scale_0 * z_0`, then `g = madd(scale_k, z_k, g)` in the parameter type.
template <noise_distribution D, noise_generator G, real_scalar T>
class noise_gradient {
 public:
  /// A single term (MeZO, SPSA with q = 1).
  noise_gradient(std::uint64_t seed, std::uint32_t draw, double scale, std::uint32_t stream_offset = 0) noexcept
      : one_{noise_term{seed, draw, scale}}, terms_(one_.data(), 1), stream_offset_(stream_offset) {}
  /// Several terms (n-SPSA, q queries, ES population); the array must outlive the source.
  explicit noise_gradient(std::span<const noise_term> terms, std::uint32_t stream_offset = 0) noexcept
      : terms_(terms), stream_offset_(stream_offset) {}
  /// Copies the view; a single-term source's copy refers to its own copy of the term, so it does
  /// not dangle when `o` is destroyed.
  noise_gradient(const noise_gradient& o) noexcept : one_(o.one_), terms_(o.terms_), stream_offset_(o.stream_offset_) {
    if (o.terms_.data() == o.one_.data()) terms_ = std::span<const noise_term>(one_.data(), 1);
  }
  noise_gradient& operator=(const noise_gradient&) = delete;

  /// Registers of tensor t at [i, i + chunk): `out = scale_0 z_0`, then `out = madd(scale_k, z_k, out)`
  /// with z_k the noise chunk of key `{seed_k, stream_offset + t, draw_k}`; theta is not used.
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>*,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>;
    B z[NB];
    noise_chunk<D, G>(key(t, terms_[0]), i, z);
    const B s0(static_cast<T>(terms_[0].scale));
    for (std::size_t r = 0; r < NB; ++r) out[r] = s0 * z[r];
    for (std::size_t k = 1; k < terms_.size(); ++k) {
      noise_chunk<D, G>(key(t, terms_[k]), i, z);
      const B sk(static_cast<T>(terms_[k].scale));
      for (std::size_t r = 0; r < NB; ++r) out[r] = simd::madd(sk, z[r], out[r]);
    }
  }
  /// Element i of tensor t, computed the same way in scalar code (bitwise equal to `load_chunk`).
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T&) const noexcept {
    T g = static_cast<T>(terms_[0].scale) * noise_value<D, G, T>(key(t, terms_[0]), i);
    for (std::size_t k = 1; k < terms_.size(); ++k) {
      g = simd::madd(static_cast<T>(terms_[k].scale), noise_value<D, G, T>(key(t, terms_[k]), i), g);
    }
    return g;
  }
  /// @throws invalid_argument when there are no terms.
  void check(const parameters<T>&) const {
    if (terms_.empty()) throw invalid_argument("noise_gradient: no terms (q must be >= 1)");
  }
  /// The terms.
  std::span<const noise_term> terms() const noexcept { return terms_; }

 private:
  noise_key key(std::size_t t, const noise_term& term) const noexcept {
    return noise_key{term.seed, stream_offset_ + static_cast<std::uint32_t>(t), term.draw};
  }
  std::array<noise_term, 1> one_{};
  std::span<const noise_term> terms_;
  std::uint32_t stream_offset_ = 0;
};

namespace detail {

/// Base of the gradient-source adaptors (scaled_source, zo::with_queries): forwards every member
/// of the source protocol (load_chunk, at, finish_chunk, finish_at, check) to `inner`, which must
/// outlive the adaptor. A derived adaptor redeclares only what it changes.
template <class Inner>
class source_adaptor {
 public:
  explicit source_adaptor(const Inner& inner) noexcept : inner_(inner) {}
  /// Forwards to `inner.load_chunk`.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    inner_.load_chunk(t, i, theta, out);
  }
  /// Forwards to `inner.at`.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    return inner_.at(t, i, th);
  }
  /// Forwards to `inner.finish_chunk` (only where the inner source has one).
  template <class T>
    requires has_finish<Inner, T>
  STOCHGRAD_ALWAYS_INLINE void finish_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta) const noexcept {
    inner_.finish_chunk(t, i, theta);
  }
  /// Forwards to `inner.finish_at` (only where the inner source has one).
  template <class T>
    requires has_finish<Inner, T>
  STOCHGRAD_ALWAYS_INLINE void finish_at(std::size_t t, std::size_t i, T& th) const noexcept {
    inner_.finish_at(t, i, th);
  }
  /// Forwards to `inner.check`.
  template <class T>
  void check(const parameters<T>& p) const {
    inner_.check(p);
  }

 protected:
  const Inner& inner_;  ///< the wrapped source (not owned)
};

}  // namespace detail

/// `factor * inner`: e.g. a global-norm clipping factor applied lazily.
template <class Inner>
class scaled_source : public detail::source_adaptor<Inner> {
 public:
  /// Wraps `inner` (not owned; must outlive this source) with the factor `factor`.
  scaled_source(const Inner& inner, double factor) noexcept : detail::source_adaptor<Inner>(inner), factor_(factor) {}
  /// The inner chunk times `factor`.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    this->inner_.load_chunk(t, i, theta, out);
    const xsimd::batch<T> f(static_cast<T>(factor_));
    for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) out[r] = out[r] * f;
  }
  /// The inner element times `factor`.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    return this->inner_.at(t, i, th) * static_cast<T>(factor_);
  }

 private:
  double factor_;
};

namespace detail {

/// The one-pass driver of every optimizer kernel. For each tensor t and full chunk at i: loads the
/// parameter registers, lets the source adjust them and produce the gradient registers, calls
/// `chunk(t, i, theta, g)` (which updates `theta` in place and the optimizer's own state), lets the
/// source finish them, and stores them. Tail elements go through `scalar(t, i, theta_i, g_i)` the
/// same way. Task boundaries depend on tensor sizes only, so results do not depend on threads.
template <real_scalar T, class Source, class Chunk, class Scalar>
void for_each_gradient_chunk(const parameters<T>& p, const Source& g, const executor& ex, const Chunk& chunk,
                             const Scalar& scalar) {
  using B = xsimd::batch<T>;
  constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    T* theta = p.tensor(t).data();
    parallel_ranges(ex, p.tensor(t).size(), [&](std::size_t b, std::size_t e) {
      std::size_t i = b;  // b is a multiple of task_grain, hence of C
      for (; i + C <= e; i += C) {
        B th[NB], gr[NB];
        for (std::size_t r = 0; r < NB; ++r) th[r] = B::load_unaligned(theta + i + r * W);
        g.load_chunk(t, i, th, gr);
        chunk(t, i, th, gr);
        if constexpr (has_finish<Source, T>) g.finish_chunk(t, i, th);
        for (std::size_t r = 0; r < NB; ++r) th[r].store_unaligned(theta + i + r * W);
      }
      for (; i < e; ++i) {
        T th = theta[i];
        const T gi = g.at(t, i, th);
        scalar(t, i, th, gi);
        if constexpr (has_finish<Source, T>) g.finish_at(t, i, th);
        theta[i] = th;
      }
    });
  }
}

/// Like for_each_gradient_chunk but read-only: `chunk(t, i, g)` / `scalar(t, i, g_i)` see the
/// gradient (computed from a copy of the parameters); nothing is stored.
template <real_scalar T, class Source, class Chunk, class Scalar>
void for_each_gradient_chunk_read(const parameters<T>& p, const Source& g, const executor& ex, const Chunk& chunk,
                                  const Scalar& scalar) {
  using B = xsimd::batch<T>;
  constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const T* theta = p.tensor(t).data();
    parallel_ranges(ex, p.tensor(t).size(), [&](std::size_t b, std::size_t e) {
      std::size_t i = b;
      for (; i + C <= e; i += C) {
        B th[NB], gr[NB];
        for (std::size_t r = 0; r < NB; ++r) th[r] = B::load_unaligned(theta + i + r * W);
        g.load_chunk(t, i, th, gr);
        chunk(t, i, gr);
      }
      for (; i < e; ++i) {
        T th = theta[i];
        scalar(t, i, g.at(t, i, th));
      }
    });
  }
}

}  // namespace detail

/// Writes the source's values into `out` (one span per tensor), with the same arithmetic as the
/// lazy path (so an optimizer fed the materialised gradient gives bitwise the same result).
template <real_scalar T, class Source>
void materialize(const parameters<T>& p, const Source& g, std::span<const std::span<T>> out, const executor& ex = {}) {
  detail::require_same_size("materialize", "parameter tensors", p.tensors(), "outputs", out.size());
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    detail::require_same_size("materialize", "parameter tensor", p.tensor(t).size(), "output", out[t].size());
  }
  g.check(p);
  detail::for_each_gradient_chunk_read(
      p, g, ex,
      [&](std::size_t t, std::size_t i, const xsimd::batch<T>* gr) {
        for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) gr[r].store_unaligned(out[t].data() + i + r * simd::width<T>);
      },
      [&](std::size_t t, std::size_t i, T gi) { out[t][i] = gi; });
}

/// Squared global norm `sum_t ||g_t||^2` of a source (one extra read/regeneration pass), in a
/// thread-count-independent order. Squares are accumulated in double also for float gradients,
/// so finite float gradients never overflow the norm.
template <real_scalar T, class Source>
double global_squared_norm(const parameters<T>& p, const Source& g, const executor& ex = {}) {
  g.check(p);
  double total = 0.0;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const T* theta = p.tensor(t).data();
    const std::size_t n = p.tensor(t).size();
    auto leaf = [&](std::size_t b, std::size_t e) {
      using B = xsimd::batch<T>;
      using D = xsimd::batch<double>;
      constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
      // Leaves are 1024 elements (a multiple of C) and start at multiples of 1024.
      D acc(0.0);
      std::size_t i = b;
      for (; i + C <= e; i += C) {
        B th[NB], gr[NB];
        for (std::size_t r = 0; r < NB; ++r) th[r] = B::load_unaligned(theta + i + r * W);
        g.load_chunk(t, i, th, gr);
        for (std::size_t r = 0; r < NB; ++r) {
          if constexpr (std::is_same_v<T, float>) {
            D lo, hi;
            detail::widen(gr[r], lo, hi);
            acc = simd::madd(lo, lo, acc);
            acc = simd::madd(hi, hi, acc);
          } else {
            acc = simd::madd(gr[r], gr[r], acc);
          }
        }
      }
      double tail = 0.0;
      for (; i < e; ++i) {
        T th = theta[i];
        const double gi = static_cast<double>(g.at(t, i, th));
        tail = simd::madd(gi, gi, tail);
      }
      return simd::reduce_add(acc) + tail;
    };
    total += detail::tree_reduce<double>(ex, n, 0.0, leaf, detail::add_d);
  }
  return total;
}

/// True when every element of the source is finite (one extra pass).
template <real_scalar T, class Source>
bool all_finite(const parameters<T>& p, const Source& g, const executor& ex = {}) {
  // The squared norm (accumulated in double) is finite iff every element is finite, except for
  // double gradients whose squares overflow: then fall back to an exact element-wise scan.
  const double sq = global_squared_norm(p, g, ex);
  if (std::isfinite(sq)) return true;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const T* theta = p.tensor(t).data();
    for (std::size_t i = 0; i < p.tensor(t).size(); ++i) {
      T th = theta[i];
      if (!std::isfinite(g.at(t, i, th))) return false;
    }
  }
  return true;
}

}  // namespace stochgrad
