// SPDX-License-Identifier: Apache-2.0
// Test support for the zeroth-order tests: a direction policy that returns explicitly given
// vectors (the worked examples of algorithms.md use explicit z, independent of the RNG), bit
// helpers and a counting global allocator switch.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/bits/config.hpp>
#include <stochgrad/bits/rng/noise.hpp>

namespace zo_test {

/// A direction policy with given vectors: direction (seed, draw) of tensor `stream` at element e is
/// rows[i].v[offsets[stream] + e] for the row with that seed and draw (NaN if there is none, so a
/// wrong key is loud). Holds pointers only: copying it never allocates.
template <bool Inverse = false, bool Normalized = false>
struct table_direction {
  static constexpr bool inverse = Inverse;
  static constexpr bool normalized = Normalized;
  static constexpr const char* name = "table";
  struct row {
    std::uint64_t seed;
    std::uint32_t draw;
    std::vector<double> v;
  };
  const std::vector<row>* rows = nullptr;
  const std::vector<std::size_t>* offsets = nullptr;

  template <class T>
  T value(const stochgrad::noise_key& k, std::uint64_t e) const noexcept {
    for (const row& r : *rows) {
      if (r.seed == k.seed && r.draw == k.draw) return static_cast<T>(r.v[(*offsets)[k.stream] + e]);
    }
    return static_cast<T>(NAN);
  }
  template <class T>
  void chunk(const stochgrad::noise_key& k, std::uint64_t e0, xsimd::batch<T>* out) const noexcept {
    constexpr std::size_t C = stochgrad::simd::chunk, W = stochgrad::simd::width<T>;
    alignas(64) T buf[C];
    for (std::size_t j = 0; j < C; ++j) buf[j] = value<T>(k, e0 + j);
    for (std::size_t r = 0; r < C / W; ++r) out[r] = xsimd::batch<T>::load_aligned(buf + r * W);
  }
};

template <class T>
auto bits(T v) {
  if constexpr (sizeof(T) == 4) {
    return std::bit_cast<std::uint32_t>(v);
  } else {
    return std::bit_cast<std::uint64_t>(v);
  }
}

/// True when the two vectors are bitwise identical.
template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (bits(a[i]) != bits(b[i])) return false;
  }
  return true;
}

/// Distance in units in the last place between two finite values of the same sign.
template <class T>
long long ulp_distance(T a, T b) {
  const auto ia = static_cast<long long>(bits(a));
  const auto ib = static_cast<long long>(bits(b));
  return ia > ib ? ia - ib : ib - ia;
}

}  // namespace zo_test
