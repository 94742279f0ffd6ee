// SPDX-License-Identifier: Apache-2.0
// Shared by the libFuzzer targets (fuzz/README in the project README's "Tests" section).
//
// Input convention of the loader targets: the first byte selects the mode.
//  - bit 0 set: the rest is a state image WITHOUT its checksum; the harness appends the FNV-1a
//    checksum, so that the field parser behind the checksum is what gets exercised;
//  - bit 0 clear: the rest is handed to the loader as it is (magic, header and checksum checks).
// A loader must either succeed or throw a stochgrad::error (state_error); anything else (another
// exception, a crash, an over-read, a leak, undefined behaviour, an allocation above libFuzzer's
// -malloc_limit_mb) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include <stochgrad/bits/error.hpp>
#include <stochgrad/bits/stepper/serialize.hpp>

namespace sgfuzz {

inline std::string image_of(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return {};
  std::string b(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1u) {
    const std::uint64_t h = stochgrad::detail::fnv1a64(b.data(), b.size());
    b.append(reinterpret_cast<const char*>(&h), sizeof h);
  }
  return b;
}

/// Saved state of `obj` before and after a refused load must be byte-identical.
template <class Obj>
std::string saved(const Obj& obj) {
  std::ostringstream os;
  obj.save(os);
  return os.str();
}

/// Loads `data` into `obj`: success, or stochgrad::error with `obj` unchanged.
template <class Obj>
void load_or_refuse(Obj& obj, const std::uint8_t* data, std::size_t size) {
  const std::string before = saved(obj);
  std::istringstream is(image_of(data, size));
  try {
    obj.load(is);
  } catch (const stochgrad::error&) {
    if (saved(obj) != before) std::abort();  // a refused load changed the object
    return;
  }
  // Accepted: what was loaded must save and load again.
  std::istringstream again(saved(obj));
  obj.load(again);
}

}  // namespace sgfuzz
