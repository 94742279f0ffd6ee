// SPDX-License-Identifier: Apache-2.0
// Bit-for-bit comparison of two vectors (NaN payloads and signed zeros included).
#pragma once

#include <cstring>
#include <vector>

namespace sgtest {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace sgtest
