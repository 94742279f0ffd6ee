// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Sparse MeZO's magnitude mask (Liu et al., arXiv 2402.15751): perturb and update
/// only the smallest-magnitude entries of each tensor.
///
/// Per tensor l with n_l entries, at the start of a step and from the UNPERTURBED weights:
/// ```
///   k_l = max(1, floor((1 - sparsity) n_l + 0.5))
///   h_l = k_l-th smallest |theta_l|                (1-based, exact)
///   m_e = 1 if |theta_e| <= h_l else 0           (ties may select more than k_l entries)
/// ```
/// The mask is kept for the whole step as 1 bit per entry (never recomputed from perturbed
/// weights). h_l is found exactly with a radix selection over the magnitude bit patterns (two
/// read passes for float, four for double) using a fixed 2^16-bin histogram: no copy of the
/// weights. Entries with m = 0 are never perturbed and never change at the update: not by the
/// gradient, not by weight decay, not by momentum (the update kernel stores them back unchanged).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/parameters.hpp"

namespace stochgrad::zo {

/// Mask policy: every entry is perturbed and updated (MeZO, SPSA).
struct no_mask {
  static constexpr const char* name = "no_mask";  ///< part of the stepper's kind()
  /// False: no mask state, every entry is perturbed and updated.
  static constexpr bool enabled = false;
  /// Nothing to check (never throws).
  void validate() const noexcept {}
};

/// Mask policy of Sparse MeZO: per tensor, only the `1 - sparsity` fraction of entries with the
/// smallest magnitude is perturbed and updated.
struct magnitude_mask {
  static constexpr const char* name = "magnitude_mask";  ///< part of the stepper's kind()
  /// True: the estimator keeps a 1-bit-per-entry mask and perturbs / updates masked entries only.
  static constexpr bool enabled = true;
  double sparsity = 0.75;  ///< fraction of entries NOT updated, in [0, 1) (paper: 0.5 - 0.8)
  bool dynamic = true;     ///< recompute every step (paper's preference); false: fixed at the first step
  /// @throws invalid_argument unless 0 <= sparsity < 1.
  void validate() const {
    stochgrad::detail::require(sparsity >= 0.0 && sparsity < 1.0, "magnitude_mask", "sparsity", sparsity, "in [0, 1)");
  }
  /// Number of entries kept in a tensor of n entries: max(1, floor((1 - sparsity) n + 0.5)) (0 if n = 0).
  std::size_t kept(std::size_t n) const noexcept {
    if (n == 0) return 0;
    const double k = std::floor((1.0 - sparsity) * static_cast<double>(n) + 0.5);
    return k < 1.0 ? 1 : static_cast<std::size_t>(k);
  }
};

namespace detail {

using stochgrad::detail::uint_of;

/// Bit pattern of |x| (sign cleared): ordered like |x| for every non-NaN x.
template <real_scalar T>
inline uint_of<T> magnitude_bits(T x) noexcept {
  using U = uint_of<T>;
  return std::bit_cast<U>(x) & ~(U{1} << (8 * sizeof(T) - 1));
}

/// Magnitude bit pattern of the k-th smallest |x| (1 <= k <= x.size()), exact, by radix selection
/// from the most significant digit. Digits are 16 bits for large tensors (float: 15 + 16 bits,
/// two read passes; double: 15 + 3 x 16) and 8 bits below 2^14 entries (so that clearing and
/// scanning the histogram never dominates a small tensor). `hist` has 2^16 entries (scratch).
template <real_scalar T>
uint_of<T> kth_smallest_magnitude_bits(std::span<const T> x, std::size_t k, std::span<std::uint32_t> hist) {
  using U = uint_of<T>;
  constexpr int total = 8 * sizeof(T) - 1;
  const int digit = x.size() >= (std::size_t{1} << 14) ? 16 : 8;
  U prefix = 0;
  int shift = total;
  int width = total % digit == 0 ? digit : total % digit;
  while (shift > 0) {
    shift -= width;
    const U digit_mask = static_cast<U>((U{1} << width) - 1);
    const int above = shift + width;
    for (std::size_t b = 0; b <= digit_mask; ++b) hist[b] = 0;
    for (const T v : x) {
      const U u = magnitude_bits(v);
      if ((above >= total ? U{0} : (u >> above)) == prefix) ++hist[static_cast<std::size_t>((u >> shift) & digit_mask)];
    }
    std::size_t below = 0, bin = 0;
    while (below + hist[bin] < k) below += hist[bin++];
    k -= below;
    prefix = static_cast<U>((prefix << width) | static_cast<U>(bin));
    width = digit;
  }
  return prefix;
}

}  // namespace detail

/// The k-th smallest magnitude |x| (1-based) of a tensor, exact.
/// @throws invalid_argument unless 1 <= k <= x.size().
template <real_scalar T>
T kth_smallest_magnitude(std::span<const T> x, std::size_t k) {
  stochgrad::detail::require(k >= 1 && k <= x.size(), "kth_smallest_magnitude", "k", static_cast<double>(k), "in [1, x.size()]");
  std::vector<std::uint32_t> hist(std::size_t{1} << 16);
  return std::bit_cast<T>(detail::kth_smallest_magnitude_bits<T>(x, k, hist));
}

namespace detail {

/// Read-only view of a mask: 1 bit per entry, tensor t starting at word offsets[t].
struct mask_view {
  const std::uint64_t* words = nullptr;
  const std::size_t* offsets = nullptr;
  /// Bits of the chunk starting at element i (a multiple of simd::chunk, which divides 64).
  STOCHGRAD_ALWAYS_INLINE std::uint64_t chunk_bits(std::size_t t, std::size_t i) const noexcept {
    return words[offsets[t] + (i >> 6)] >> (i & 63u);
  }
  STOCHGRAD_ALWAYS_INLINE bool bit(std::size_t t, std::size_t i) const noexcept {
    return ((words[offsets[t] + (i >> 6)] >> (i & 63u)) & 1u) != 0;
  }
};
static_assert(64 % simd::chunk == 0, "stochgrad::zo: a noise chunk must not straddle two mask words");

/// Sized state of a magnitude mask (lives in the estimator state).
template <real_scalar T>
struct mask_state {
  std::vector<std::uint64_t> words;      ///< the mask, 1 bit per entry
  std::vector<std::size_t> offsets;      ///< first word of each tensor (size tensors + 1)
  std::vector<T> thresholds;             ///< h_l of the last computation
  std::vector<std::uint32_t> histogram;  ///< 2^16-bin scratch of the radix selection
  std::size_t selected = 0;              ///< number of entries with m = 1
  bool ready = false;                    ///< a mask has been computed
  bool persistent = false;               ///< a fixed (non-dynamic) mask: saved with the state

  void init(const parameters<T>& p, bool enabled, bool fixed) {
    if (!enabled) return;
    offsets.assign(p.tensors() + 1, 0);
    for (std::size_t t = 0; t < p.tensors(); ++t) offsets[t + 1] = offsets[t] + (p.tensor(t).size() + 63) / 64;
    words.assign(offsets.back(), 0);
    thresholds.assign(p.tensors(), T(0));
    histogram.assign(std::size_t{1} << 16, 0);
    persistent = fixed;
  }

  /// Computes thresholds and bits from the current (unperturbed) parameters.
  void compute(const parameters<T>& p, const magnitude_mask& m) {
    selected = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const std::span<const T> x = p.tensor(t);
      const std::size_t n = x.size();
      if (n == 0) continue;
      const auto h = kth_smallest_magnitude_bits<T>(x, m.kept(n), histogram);
      thresholds[t] = std::bit_cast<T>(h);
      std::uint64_t* w = words.data() + offsets[t];
      for (std::size_t b = 0; b < n; b += 64) {
        const std::size_t e = n - b < 64 ? n - b : 64;
        std::uint64_t bits = 0;
        for (std::size_t j = 0; j < e; ++j) bits |= static_cast<std::uint64_t>(magnitude_bits(x[b + j]) <= h) << j;
        w[b / 64] = bits;
        selected += static_cast<std::size_t>(std::popcount(bits));
      }
    }
    ready = true;
  }

  mask_view view() const noexcept { return {words.data(), offsets.data()}; }

  template <class Ar>
  void serialize(Ar& ar) {
    if (!persistent) return;
    const std::size_t expected = words.size();
    ar.field("zo_mask_ready", ready);
    std::uint64_t sel = selected;
    ar.field("zo_mask_selected", sel);
    selected = static_cast<std::size_t>(sel);
    ar.field("zo_mask_bits", words);
    if (Ar::loading && words.size() != expected) {
      throw state_error("load: the saved Sparse MeZO mask has " + std::to_string(words.size()) + " words, expected " +
                        std::to_string(expected));
    }
  }
};

}  // namespace detail
}  // namespace stochgrad::zo
