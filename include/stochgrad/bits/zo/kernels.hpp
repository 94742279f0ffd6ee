// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The streaming passes of the zeroth-order steppers: seeded perturbation (one or two
/// directions per pass, optionally masked), the norm of a direction, and `direction_source`, the
/// lazy gradient `sum_j c_j * dir_j` that also performs MeZO's restore (and optionally the next
/// step's perturbation) inside the optimizer's update pass.
///
/// Every kernel does, per element, exactly the operations of the reference sequence of passes
/// (`x = madd(s, v, x)` per perturbation, `g = c_0 d_0`, `g = madd(c_j, d_j, g)`), so the fused
/// step is bitwise identical to the reference 4-pass step. Work is split into fixed tasks
/// (kernels/elementwise.hpp), so results do not depend on the thread count. No allocation.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/reduce.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"
#include "directions.hpp"
#include "mask.hpp"

namespace stochgrad::zo::detail {

/// One perturbation `x += scale * v(seed, stream = tensor, draw)` of a pass.
template <real_scalar T>
struct pass_term {
  std::uint64_t seed = 0;
  std::uint32_t draw = 0;
  T scale = T(0);
};

using stochgrad::detail::uint_of;

/// Lane bits 1, 2, 4, ... of a register of T.
template <real_scalar T>
STOCHGRAD_ALWAYS_INLINE xsimd::batch<uint_of<T>> lane_bits() noexcept {
  using U = uint_of<T>;
  constexpr std::size_t W = simd::width<T>;
  alignas(64) U b[W];
  for (std::size_t l = 0; l < W; ++l) b[l] = static_cast<U>(U{1} << l);
  return xsimd::batch<U>::load_aligned(b);
}

/// Registers of all-ones (m = 1) or all-zeros (m = 0) lanes for the chunk whose mask bits are
/// `bits` (bit r * W + l for lane l of register r).
template <real_scalar T>
STOCHGRAD_ALWAYS_INLINE void lane_masks(std::uint64_t bits, xsimd::batch<T>* mk) noexcept {
  using U = uint_of<T>;
  using UB = xsimd::batch<U>;
  constexpr std::size_t W = simd::width<T>, NB = simd::chunk_batches<T>;
  const UB lb = lane_bits<T>();
  const UB ones(static_cast<U>(~U{0})), zero(U{0});
  for (std::size_t r = 0; r < NB; ++r) {
    const UB b(static_cast<U>(bits >> (r * W)));
    mk[r] = std::bit_cast<xsimd::batch<T>>(xsimd::select((b & lb) != zero, ones, zero));
  }
}

/// m ? a : b, lane-wise, with m all-ones or all-zeros per lane.
template <real_scalar T>
STOCHGRAD_ALWAYS_INLINE xsimd::batch<T> blend(const xsimd::batch<T>& m, const xsimd::batch<T>& a,
                                              const xsimd::batch<T>& b) noexcept {
  return b ^ ((a ^ b) & m);  // (xsimd's bitwise_andnot changed argument order across versions)
}

/// x[b, e) += sum over the N terms (in order) of scale * v. The keys and scales are loop-invariant
/// locals, so the generator's key schedule is hoisted out of the chunk loop (N is 1 or 2).
template <std::size_t N, bool Masked, real_scalar T, class Dir>
STOCHGRAD_ALWAYS_INLINE void perturb_range(T* STOCHGRAD_RESTRICT x, std::size_t b, std::size_t e, const Dir& dir,
                                           const mask_view& mask, std::size_t t, const noise_key (&key)[N],
                                           const T (&scale)[N]) noexcept {
  using B = xsimd::batch<T>;
  constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
  constexpr std::size_t ahead = stochgrad::detail::prefetch_bytes / sizeof(T), line = 64 / sizeof(T);
  B s[N];
  for (std::size_t k = 0; k < N; ++k) s[k] = B(scale[k]);
  std::size_t i = b;
  for (; i + C <= e; i += C) {
    if (i + ahead + C <= e) {
      for (std::size_t l = 0; l < C; l += line) stochgrad::detail::prefetch_for_write(x + i + ahead + l);
    }
    B th[NB], v[NB], mk[NB];
    for (std::size_t r = 0; r < NB; ++r) th[r] = B::load_unaligned(x + i + r * W);
    if constexpr (Masked) lane_masks<T>(mask.chunk_bits(t, i), mk);
    for (std::size_t k = 0; k < N; ++k) {
      dir.template chunk<T>(key[k], i, v);
      for (std::size_t r = 0; r < NB; ++r) {
        const B nv = simd::madd(s[k], v[r], th[r]);
        if constexpr (Masked) {
          th[r] = blend<T>(mk[r], nv, th[r]);
        } else {
          th[r] = nv;
        }
      }
    }
    for (std::size_t r = 0; r < NB; ++r) th[r].store_unaligned(x + i + r * W);
  }
  for (; i < e; ++i) {
    if constexpr (Masked) {
      if (!mask.bit(t, i)) continue;
    }
    T xi = x[i];
    for (std::size_t k = 0; k < N; ++k) xi = simd::madd(scale[k], dir.template value<T>(key[k], i), xi);
    x[i] = xi;
  }
}

template <std::size_t N, bool Masked, real_scalar T, class Dir>
void perturb_pass_n(const parameters<T>& p, const Dir& dir, const mask_view& mask, const pass_term<T>* terms,
                    const executor& ex) {
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    T* x = p.tensor(t).data();
    noise_key key[N];
    T scale[N];
    for (std::size_t k = 0; k < N; ++k) {
      key[k] = noise_key{terms[k].seed, p.stream(t), terms[k].draw};
      scale[k] = terms[k].scale;
    }
    stochgrad::detail::parallel_ranges(ex, p.tensor(t).size(), [&](std::size_t b, std::size_t e) {
      perturb_range<N, Masked>(x, b, e, dir, mask, t, key, scale);
    });
  }
}

/// x += sum over terms (in order) of scale * v, over every tensor; masked-out entries untouched.
/// Bitwise equal to one `perturb` pass per term.
template <bool Masked, real_scalar T, class Dir>
void perturb_pass(const parameters<T>& p, const Dir& dir, const mask_view& mask, const pass_term<T>* terms,
                  std::size_t n_terms, const executor& ex) {
  for (std::size_t k = 0; k < n_terms; k += 2) {
    if (n_terms - k >= 2) {
      perturb_pass_n<2, Masked>(p, dir, mask, terms + k, ex);
    } else {
      perturb_pass_n<1, Masked>(p, dir, mask, terms + k, ex);
    }
  }
}

/// Squared Euclidean norm of the (masked) direction v(seed, draw) over all tensors, in a
/// thread-count independent order (leaves of 1024 elements, pairwise tree; tensors in order).
template <bool Masked, real_scalar T, class Dir>
double direction_squared_norm(const parameters<T>& p, const Dir& dir, const mask_view& mask, std::uint64_t seed,
                              std::uint32_t draw, const executor& ex) {
  using B = xsimd::batch<T>;
  constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>;
  double total = 0.0;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const noise_key key{seed, p.stream(t), draw};
    auto leaf = [&](std::size_t b, std::size_t e) {
      B acc(T(0));
      std::size_t i = b;
      for (; i + C <= e; i += C) {
        B v[NB], mk[NB];
        dir.template chunk<T>(key, i, v);
        if constexpr (Masked) lane_masks<T>(mask.chunk_bits(t, i), mk);
        for (std::size_t r = 0; r < NB; ++r) {
          const B vr = Masked ? (v[r] & mk[r]) : v[r];
          acc = simd::madd(vr, vr, acc);
        }
      }
      T tail = T(0);
      for (; i < e; ++i) {
        if constexpr (Masked) {
          if (!mask.bit(t, i)) continue;
        }
        const T vi = dir.template value<T>(key, i);
        tail = simd::madd(vi, vi, tail);
      }
      return static_cast<double>(simd::reduce_add(acc)) + static_cast<double>(tail);
    };
    total += stochgrad::detail::tree_reduce<double>(ex, p.tensor(t).size(), 0.0, leaf, stochgrad::detail::add_d);
  }
  return total;
}

}  // namespace stochgrad::zo::detail

namespace stochgrad::zo {

/// The lazy zeroth-order gradient `g = sum_j c_j * d_j` over the query directions of one step,
/// where `d_j = v_j` (or `1/v_j` for inverse-form directions, masked entries 0), regenerated in
/// registers inside the optimizer's update pass: no gradient buffer. It may also
/// - restore the last perturbation, `theta += s_r * v_r`, before the optimizer sees theta (so
///   restore and update are one pass: bitwise equal to a separate restore pass), and
/// - add the next step's first perturbation `theta += s_n * v_n` to the updated parameters
///   (steady-state MeZO in 2 passes), and
/// - with a mask, store masked-out entries back unchanged (so neither weight decay nor momentum
///   moves them).
/// A `gradient_source` (optim/source.hpp); usable with every optimizer policy.
template <real_scalar T, class Dir, bool Masked = false>
class direction_source {
 public:
  /// The terms `(seed, draw, c_j)` (the array must outlive the source) over parameters `p`.
  direction_source(const parameters<T>& p, const Dir& dir, std::span<const noise_term> terms,
                   detail::mask_view mask = {}) noexcept
      : p_(&p), dir_(dir), terms_(terms), mask_(mask) {
    if (!terms_.empty()) {
      seed0_ = terms_[0].seed;
      draw0_ = terms_[0].draw;
      coef0_ = static_cast<T>(terms_[0].scale);
    }
  }

  /// Adds the restore `theta += scale * v(seed, draw)` applied before the update.
  void set_restore(std::uint64_t seed, std::uint32_t draw, T scale) noexcept {
    restore_ = true;
    restore_key_ = {seed, draw, scale};
    restore_term_ = -1;
    for (std::size_t k = 0; k < terms_.size(); ++k) {
      if (terms_[k].seed == seed && terms_[k].draw == draw) {
        restore_term_ = static_cast<long>(k);
        break;
      }
    }
  }
  /// Adds the perturbation `theta += scale * v(seed, draw)` applied after the update.
  void set_next(std::uint64_t seed, std::uint32_t draw, T scale) noexcept {
    next_ = true;
    next_key_ = {seed, draw, scale};
  }

  /// Registers of tensor t at [i, i + chunk): `out = sum_j c_j d_j` (masked entries 0); first applies
  /// the restore `theta += s_r v_r` to `theta` when one is set.
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>;
    B v[NB], mk[NB];
    prefetch(t, i);
    if constexpr (Masked) detail::lane_masks<T>(mask_.chunk_bits(t, i), mk);
    const std::uint32_t stream = p_->stream(t);
    if (terms_.size() == 1) {
      // One direction (MeZO, SPSA): no loop, scalars in locals.
      const noise_key key{seed0_, stream, draw0_};
      dir_.template chunk<T>(key, i, v);
      if (restore_term_ == 0) perturb(theta, v, mk, restore_key_.scale);
      const B c(coef0_);
      for (std::size_t r = 0; r < NB; ++r) out[r] = c * grad_dir(v[r], mk[r]);
    } else {
      for (std::size_t k = 0; k < terms_.size(); ++k) {
        dir_.template chunk<T>(noise_key{terms_[k].seed, stream, terms_[k].draw}, i, v);
        if (static_cast<long>(k) == restore_term_) perturb(theta, v, mk, restore_key_.scale);
        const B c(static_cast<T>(terms_[k].scale));
        for (std::size_t r = 0; r < NB; ++r) out[r] = k == 0 ? c * grad_dir(v[r], mk[r]) : simd::madd(c, grad_dir(v[r], mk[r]), out[r]);
      }
    }
    if (restore_ && restore_term_ < 0) {
      dir_.template chunk<T>(noise_key{restore_key_.seed, stream, restore_key_.draw}, i, v);
      perturb(theta, v, mk, restore_key_.scale);
    }
  }

  /// Element i of tensor t, bitwise equal to `load_chunk`: returns `sum_j c_j d_j` and applies the
  /// restore to `th` when one is set (not for a masked-out entry).
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const bool on = !Masked || mask_.bit(t, i);
    const std::uint32_t stream = p_->stream(t);
    T g = T(0);
    for (std::size_t k = 0; k < terms_.size(); ++k) {
      const T v = dir_.template value<T>(noise_key{terms_[k].seed, stream, terms_[k].draw}, i);
      if (static_cast<long>(k) == restore_term_ && on) th = simd::madd(restore_key_.scale, v, th);
      T d = v;
      if constexpr (Dir::inverse) d = T(1) / d;
      if (!on) d = T(0);
      const T c = static_cast<T>(terms_[k].scale);
      g = k == 0 ? c * d : simd::madd(c, d, g);
    }
    if (restore_ && restore_term_ < 0 && on) {
      th = simd::madd(restore_key_.scale, dir_.template value<T>(noise_key{restore_key_.seed, stream, restore_key_.draw}, i), th);
    }
    return g;
  }

  /// After the update: resets masked-out entries of `theta` to their stored values, then adds the
  /// next perturbation `theta += s_n v_n` when one is set.
  STOCHGRAD_ALWAYS_INLINE void finish_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    B mk[NB];
    if constexpr (Masked) {
      // Masked-out entries: back to the value in memory (never perturbed, so the unperturbed one).
      detail::lane_masks<T>(mask_.chunk_bits(t, i), mk);
      const T* mem = p_->tensor(t).data() + i;
      for (std::size_t r = 0; r < NB; ++r) theta[r] = detail::blend<T>(mk[r], theta[r], B::load_unaligned(mem + r * W));
    }
    if (next_) {
      B v[NB];
      dir_.template chunk<T>(noise_key{next_key_.seed, p_->stream(t), next_key_.draw}, i, v);
      perturb(theta, v, mk, next_key_.scale);
    }
  }

  /// Element form of `finish_chunk`: a masked-out entry gets its stored value back; otherwise the
  /// next perturbation is added when one is set.
  STOCHGRAD_ALWAYS_INLINE void finish_at(std::size_t t, std::size_t i, T& th) const noexcept {
    if constexpr (Masked) {
      if (!mask_.bit(t, i)) {
        th = p_->tensor(t)[i];
        return;
      }
    }
    if (next_) th = simd::madd(next_key_.scale, dir_.template value<T>(noise_key{next_key_.seed, p_->stream(t), next_key_.draw}, i), th);
  }

  /// @throws invalid_argument when there are no terms; size_mismatch for another parameter set.
  void check(const parameters<T>& p) const {
    if (terms_.empty()) throw invalid_argument("direction_source: no terms (q must be >= 1)");
    stochgrad::detail::require_same_size("direction_source", "parameter tensors", p.tensors(), "source tensors",
                                         p_->tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      stochgrad::detail::require_same_size("direction_source", "parameter tensor", p.tensor(t).size(), "source tensor",
                                           p_->tensor(t).size());
    }
  }

  /// The terms (one per query direction).
  std::span<const noise_term> terms() const noexcept { return terms_; }
  /// Number of query directions averaged in the estimate.
  std::size_t queries() const noexcept { return terms_.size(); }

 private:
  struct key3 {
    std::uint64_t seed = 0;
    std::uint32_t draw = 0;
    T scale = T(0);
  };
  // Prefetches the parameters `prefetch_bytes` (config.hpp) ahead of the chunk (the update pass regenerates noise for long
  // enough per cache line that the hardware prefetchers alone leave it partly latency bound).
  STOCHGRAD_ALWAYS_INLINE void prefetch(std::size_t t, std::size_t i) const noexcept {
    constexpr std::size_t ahead = stochgrad::detail::prefetch_bytes / sizeof(T), line = 64 / sizeof(T);
    const std::span<T> x = p_->tensor(t);
    if (i + ahead + simd::chunk <= x.size()) {
      for (std::size_t l = 0; l < simd::chunk; l += line) stochgrad::detail::prefetch_for_write(x.data() + i + ahead + l);
    }
  }

  // The gradient direction of a perturbation register: v, or 1/v (inverse form); 0 where masked out.
  STOCHGRAD_ALWAYS_INLINE static xsimd::batch<T> grad_dir(const xsimd::batch<T>& v, const xsimd::batch<T>& mk) noexcept {
    xsimd::batch<T> d = v;
    if constexpr (Dir::inverse) d = xsimd::batch<T>(T(1)) / d;
    if constexpr (Masked) {
      d = d & mk;
    } else {
      (void)mk;
    }
    return d;
  }

  STOCHGRAD_ALWAYS_INLINE void perturb(xsimd::batch<T>* theta, const xsimd::batch<T>* v, const xsimd::batch<T>* mk,
                                       T scale) const noexcept {
    using B = xsimd::batch<T>;
    const B s(scale);
    for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) {
      const B nv = simd::madd(s, v[r], theta[r]);
      if constexpr (Masked) {
        theta[r] = detail::blend<T>(mk[r], nv, theta[r]);
      } else {
        (void)mk;
        theta[r] = nv;
      }
    }
  }

  const parameters<T>* p_;
  Dir dir_;
  std::span<const noise_term> terms_;
  std::uint64_t seed0_ = 0;  // terms_[0], unpacked for the one-direction path
  std::uint32_t draw0_ = 0;
  T coef0_ = T(0);
  detail::mask_view mask_;
  bool restore_ = false;
  long restore_term_ = -1;
  key3 restore_key_{};
  bool next_ = false;
  key3 next_key_{};
};

}  // namespace stochgrad::zo
