// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the MPI tests.
#pragma once

#include <stochgrad/mpi.hpp>

#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace sg_mpi_test {

extern stochgrad::mpi::communicator* world_ptr;

/// The communicator over MPI_COMM_WORLD that main() created.
inline stochgrad::mpi::communicator& world() { return *world_ptr; }

/// 64-bit hash of the bits of a range.
template <class T>
std::uint64_t bits_hash(std::span<const T> x) {
  stochgrad::mpi::detail::hasher h;
  h.bytes(x.data(), x.size_bytes());
  return h.digest();
}

/// True on every rank when `v` is the same on every rank (one allgather).
inline bool same_on_all_ranks(std::uint64_t v) {
  auto& c = world();
  std::vector<std::uint64_t> all(static_cast<std::size_t>(c.size()));
  c.allgather(std::span<const std::uint64_t>(&v, 1), std::span<std::uint64_t>(all));
  for (std::uint64_t a : all) {
    if (a != all[0]) return false;
  }
  return true;
}

/// Bitwise equality of two ranges.
template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

/// What stepper::save writes (to show that a refused call left the state untouched).
template <class S>
std::string saved(const S& s) {
  std::ostringstream os;
  s.save(os);
  return os.str();
}

}  // namespace sg_mpi_test
