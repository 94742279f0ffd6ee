// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Step-local scratch buffers: grown to the largest size seen, never shrunk, so a step
/// allocates only when a size exceeds every earlier one.
#pragma once

#include <cstddef>

namespace stochgrad::detail {

/// Grows a scratch container to at least `n` elements (never shrinks).
template <class V>
void grow(V& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace stochgrad::detail
