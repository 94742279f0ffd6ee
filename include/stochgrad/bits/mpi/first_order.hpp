// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief First-order data parallelism: `mpi::gradient_reducer`, a deterministic in-place sum or
/// average of a gradient over the ranks, bucketed, so that every rank hands its optimizer the same
/// bits.
///
/// Per element i, with g_r rank r's gradient:
/// ```
///   sum:      s_i = ((g_0[i] + g_1[i]) + g_2[i]) + ... + g_{R-1}[i]        (in T, rank order)
///   average:  a_i = s_i / R                                               (one division in T)
/// ```
/// independent of MPI's reduction algorithm: the gradient is cut into buckets of at most
/// `bucket` elements; each bucket is split into R chunks, chunk d is sent to rank d
/// (MPI_Alltoall: a reduce-scatter whose summation this code does, in rank order), rank d sums its
/// chunk, and the summed chunks are all-gathered (MPI_Allgather). Every element is summed once, on
/// one rank, so all ranks receive identical bits, equal to the single-process expression above.
/// Memory: two buffers of about `bucket` elements (not a second copy of the gradient). Payload per
/// rank and call: the gradient (alltoall) plus 1/R of it (allgather), padded to whole chunks, plus
/// 16 bytes for the size check.
///
/// The gradient's length is checked across the ranks first (one allgather of 16 bytes): a rank
/// with another length makes every rank throw size_mismatch instead of hanging.
///
/// With the reducer every rank keeps the full optimizer state and applies the identical update;
/// mpi::sharded_optimizer (zero1.hpp) keeps 1/R of the state per rank instead (ZeRO stage 1).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "communicator.hpp"
#include "fingerprint.hpp"

namespace stochgrad::mpi {

/// Deterministic gradient sum / average over the ranks (file comment).
/// @code
/// stochgrad::mpi::gradient_reducer<float> reduce(comm);
/// model.value_and_gradient(w, g);       // this rank's mean gradient over an equal-size shard
/// reduce.average(g);                    // the same bits on every rank
/// adam.step(g);
/// @endcode
template <real_scalar T>
class gradient_reducer {
 public:
  /// @param comm    the communicator (not owned; must outlive the reducer)
  /// @param bucket  elements per bucket (>= 1; default 2^20: two 4 MiB float buffers).
  /// @throws invalid_argument for bucket = 0.
  explicit gradient_reducer(communicator& comm, std::size_t bucket = std::size_t{1} << 20) : comm_(&comm), bucket_(bucket) {
    stochgrad::detail::require(bucket >= 1, "mpi::gradient_reducer", "bucket", 0.0, ">= 1");
  }

  /// g <- the rank-order sum of the ranks' g (file comment). Collective.
  /// @throws size_mismatch on every rank (g untouched) when the ranks' lengths differ; mpi_error.
  void sum(std::span<T> g) { reduce(g, false); }
  /// g <- (rank-order sum) / R. Collective. @throws as sum.
  void average(std::span<T> g) { reduce(g, true); }
  /// Each tensor in turn (the same number of tensors on every rank). @throws as sum.
  void average(std::span<const std::span<T>> tensors) {
    for (const std::span<T>& t : tensors) reduce(t, true);
  }
  /// @copydoc average(std::span<const std::span<T>>)
  void sum(std::span<const std::span<T>> tensors) {
    for (const std::span<T>& t : tensors) reduce(t, false);
  }

  /// Elements per bucket.
  std::size_t bucket() const noexcept { return bucket_; }

 private:
  void check_lengths(std::size_t n) {
    const auto R = static_cast<std::size_t>(comm_->size());
    const std::uint64_t mine[2] = {n, 0};
    lengths_.resize(2 * R);
    comm_->allgather(std::span<const std::uint64_t>(mine, 2), std::span<std::uint64_t>(lengths_));
    std::vector<int> differ;
    for (std::size_t r = 1; r < R; ++r) {
      if (lengths_[2 * r] != lengths_[0]) differ.push_back(static_cast<int>(r));
    }
    if (!differ.empty()) {
      throw size_mismatch("stochgrad::mpi::gradient_reducer: the gradient has " + std::to_string(lengths_[0]) +
                          " elements on rank 0 but another length on rank(s) " + detail::rank_list(differ) +
                          " (refused on every rank; nothing was changed)");
    }
  }

  void reduce(std::span<T> g, bool mean) {
    check_lengths(g.size());
    const auto R = static_cast<std::size_t>(comm_->size());
    const T inv_div = static_cast<T>(R);
    for (std::size_t b = 0; b < g.size(); b += bucket_) {
      const std::size_t n = std::min(bucket_, g.size() - b);
      const std::size_t c = (n + R - 1) / R;  // chunk per rank
      send_.assign(R * c, T(0));
      recv_.resize(R * c);
      std::copy(g.begin() + static_cast<std::ptrdiff_t>(b), g.begin() + static_cast<std::ptrdiff_t>(b + n), send_.begin());
      comm_->alltoall(std::span<const T>(send_), std::span<T>(recv_));
      // recv_ block r = rank r's values of my chunk: sum them in rank order.
      for (std::size_t i = 0; i < c; ++i) {
        T acc = recv_[i];
        for (std::size_t r = 1; r < R; ++r) acc += recv_[r * c + i];
        send_[i] = mean ? acc / inv_div : acc;
      }
      comm_->allgather(std::span<const T>(send_.data(), c), std::span<T>(recv_));
      std::copy(recv_.begin(), recv_.begin() + static_cast<std::ptrdiff_t>(n), g.begin() + static_cast<std::ptrdiff_t>(b));
    }
  }

  communicator* comm_;
  std::size_t bucket_;
  std::vector<T> send_, recv_;
  std::vector<std::uint64_t> lengths_;
};

}  // namespace stochgrad::mpi
