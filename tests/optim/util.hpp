// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the tests/optim/ test programs (not a test itself: only *.cpp become tests).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>

namespace sg_test {

template <class T>
auto bits(T v) {
  if constexpr (sizeof(T) == 4) {
    return std::bit_cast<std::uint32_t>(v);
  } else {
    return std::bit_cast<std::uint64_t>(v);
  }
}

// Index of the first element where a and b differ bitwise, or -1.
template <class T>
long first_mismatch(std::span<const T> a, std::span<const T> b) {
  if (a.size() != b.size()) return -2;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (bits(a[i]) != bits(b[i])) return static_cast<long>(i);
  }
  return -1;
}
template <class T>
long first_mismatch(const std::vector<T>& a, const std::vector<T>& b) {
  return first_mismatch(std::span<const T>(a), std::span<const T>(b));
}
template <class T>
long first_mismatch(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
  if (a.size() != b.size()) return -2;
  long off = 0;
  for (std::size_t t = 0; t < a.size(); ++t) {
    const long m = first_mismatch(a[t], b[t]);
    if (m != -1) return m < 0 ? m : off + m;
    off += static_cast<long>(a[t].size());
  }
  return -1;
}

// Relative error with an absolute floor: |a - b| / max(|b|, floor).
inline double rel_err(double a, double b, double floor = 1e-300) {
  const double d = a > b ? a - b : b - a;
  const double m = b < 0 ? -b : b;
  return d / (m > floor ? m : floor);
}

// A deterministic, non-trivial test vector: x_i = amp * sin(0.7 i + phase) (+ offset).
template <class T>
std::vector<T> wave(std::size_t n, double amp, double phase, double offset = 0.0);

}  // namespace sg_test

#include <cmath>

template <class T>
std::vector<T> sg_test::wave(std::size_t n, double amp, double phase, double offset) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(offset + amp * std::sin(0.7 * static_cast<double>(i) + phase));
  return v;
}
