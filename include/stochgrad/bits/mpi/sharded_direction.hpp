// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `mpi::sharded_direction`: the direction policy of a rank that holds a slice of each
/// parameter tensor, and `mpi::shard_of`, an even split of a tensor over the ranks.
///
/// Element e of the direction v(seed, stream t, draw j) is a pure function of (seed, t, j, e)
/// (rng/noise.hpp: Philox counter `(e >> 2, t, j)`, lane `e & 3`). A rank holding elements
/// [o_t, o_t + n_t) of tensor t, stored as its local tensor t, generates local element i as global
/// element `o_t + i`:
/// ```
///   v_local(seed, t, j)[i] = v(seed, t, j)[o_t + i]
/// ```
/// so every slice gets exactly the z of the unsharded tensor, and the elementwise passes
/// (perturb, restore, the optimizer's update) compute the same bits as on one process. When o_t is
/// a multiple of `simd::chunk` the SIMD chunk path is used unchanged; otherwise each chunk is
/// assembled from the scalar path (bitwise equal, about 4x slower to generate: align slices with
/// `shard_of`).
///
/// Only non-normalized directions: `unit_sphere` divides by the norm over all tensors (and scales
/// by the global dimension), which a slice does not know.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"
#include "../zo/difference.hpp"
#include "../zo/directions.hpp"

namespace stochgrad::mpi {

/// A slice of a tensor: elements [offset, offset + count) of the global tensor.
struct shard_range {
  std::uint64_t offset = 0;  ///< global index of the slice's first element
  std::uint64_t count = 0;   ///< elements in the slice
  /// Equal when offset and count are equal.
  friend constexpr bool operator==(const shard_range&, const shard_range&) = default;
};

/// Rank `rank`'s slice of a tensor of `global` elements split over `ranks` ranks in rank order:
/// blocks of `align` elements are dealt out as evenly as possible (the first `blocks % ranks`
/// ranks get one more), the last rank also takes the remainder below one block. With the default
/// alignment every offset is a multiple of simd::chunk (the fast generation path).
/// @throws invalid_argument for ranks < 1, rank outside [0, ranks) or align = 0.
inline shard_range shard_of(std::uint64_t global, int rank, int ranks, std::uint64_t align = simd::chunk) {
  stochgrad::detail::require(ranks >= 1, "mpi::shard_of", "ranks", ranks, ">= 1");
  stochgrad::detail::require(rank >= 0 && rank < ranks, "mpi::shard_of", "rank", rank, "in [0, ranks)");
  stochgrad::detail::require(align >= 1, "mpi::shard_of", "align", static_cast<double>(align), ">= 1");
  const auto R = static_cast<std::uint64_t>(ranks), r = static_cast<std::uint64_t>(rank);
  const std::uint64_t blocks = global / align, extra = blocks % R, base = blocks / R;
  const std::uint64_t first = r * base + (r < extra ? r : extra);
  const std::uint64_t mine = base + (r < extra ? 1 : 0);
  shard_range s{first * align, mine * align};
  if (r + 1 == R) s.count += global - blocks * align;
  return s;
}

/// Direction policy (zo::direction_policy) of a sharded rank: distribution tag D with generator G,
/// tensor t's local element i generated as global element `offset(t) + i` (file comment).
/// Use it as the direction of two_point / one_sided, with the same generator G as the estimator's:
/// @code
/// using dir = stochgrad::mpi::sharded_direction<stochgrad::gaussian>;
/// stochgrad::zo::two_point<dir> est({.eps = 1e-3, .seed = 7}, {}, {}, dir({off_w, off_b}));
/// @endcode
/// Copies share one offset table (a copy allocates nothing).
template <class D, noise_generator G = default_generator>
class sharded_direction {
  using base = zo::noise_direction<D, G>;
  static_assert(!base::normalized,
                "stochgrad::mpi::sharded_direction: unit_sphere directions are divided by their norm over all "
                "tensors, which a rank holding a slice does not know; use gaussian, rademacher or segmented_uniform");

 public:
  static constexpr bool inverse = base::inverse;  ///< as the unsharded direction
  static constexpr bool normalized = false;        ///< never (see the static_assert)
  /// Part of the stepper's kind(), e.g. "sharded<gaussian>".
  static constexpr stochgrad::detail::fixed_name name_text{"sharded<", zo::detail::direction_name<D>(), ">"};
  static constexpr const char* name = name_text.text;  ///< see name_text

  /// Every offset 0 (an unsharded rank).
  sharded_direction() : off_(std::make_shared<const std::vector<std::uint64_t>>()) {}
  /// Global offset of tensor t's first local element, for each tensor t.
  explicit sharded_direction(std::vector<std::uint64_t> offsets)
      : off_(std::make_shared<const std::vector<std::uint64_t>>(std::move(offsets))) {}

  /// The offset table (one entry per tensor).
  std::span<const std::uint64_t> offsets() const noexcept { return *off_; }
  /// The global offset of tensor `t` (0 beyond the table).
  std::uint64_t offset(std::size_t t) const noexcept { return t < off_->size() ? (*off_)[t] : 0; }

  /// `simd::chunk_batches<T>` registers of v at local elements [e0, e0 + simd::chunk).
  template <real_scalar T>
  STOCHGRAD_ALWAYS_INLINE void chunk(const noise_key& k, std::uint64_t e0, xsimd::batch<T>* out) const noexcept {
    const std::uint64_t o = offset(k.stream);
    if (o % simd::chunk == 0) {
      base{}.template chunk<T>(k, e0 + o, out);
    } else {
      constexpr std::size_t W = xsimd::batch<T>::size;
      alignas(64) T buf[simd::chunk];
      for (std::size_t i = 0; i < simd::chunk; ++i) buf[i] = base{}.template value<T>(k, e0 + o + i);
      for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) out[r] = xsimd::batch<T>::load_aligned(buf + r * W);
    }
  }
  /// Local element e of v (global element offset(stream) + e).
  template <real_scalar T>
  STOCHGRAD_ALWAYS_INLINE T value(const noise_key& k, std::uint64_t e) const noexcept {
    return base{}.template value<T>(k, e + offset(k.stream));
  }

 private:
  std::shared_ptr<const std::vector<std::uint64_t>> off_;
};

namespace detail {
template <class D>
struct is_sharded_direction : std::false_type {};
template <class D, class G>
struct is_sharded_direction<sharded_direction<D, G>> : std::true_type {};
}  // namespace detail

}  // namespace stochgrad::mpi
