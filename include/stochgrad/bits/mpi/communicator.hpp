// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `mpi::communicator`: stochgrad's handle on the caller's MPI communicator, and the
/// exceptions of the MPI component.
///
/// The communicator duplicates the caller's `MPI_Comm` (`MPI_Comm_dup`, collective), so that
/// stochgrad's collectives never match the caller's own messages, and sets `MPI_ERRORS_RETURN` on
/// the duplicate: every MPI error of stochgrad's calls becomes an `mpi::mpi_error` (a
/// `stochgrad::error`) naming the call and MPI's error string, instead of aborting the job. The
/// caller's communicator and its error handler are left as they are. `MPI_COMM_WORLD` is never
/// used implicitly: the caller passes the communicator the job should use.
///
/// Every collective also counts what this rank contributes (`traffic`): the number of collective
/// calls and the payload bytes this rank hands to them. The payload is what the algorithm needs
/// to exchange; the transport's own traffic depends on MPI's algorithm (a ring allgather forwards
/// (R - 1) payloads per rank) and is not counted.
///
/// Not thread-safe: one thread at a time calls into a communicator (MPI_THREAD_FUNNELED is enough).
#pragma once

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace stochgrad::mpi {

/// An MPI call made by stochgrad returned an error (the duplicate communicator uses
/// MPI_ERRORS_RETURN). `code()` is MPI's error code; the message names the call and carries MPI's
/// error string.
class mpi_error : public error {
 public:
  /// The message `what` (naming the call and MPI's error string) and MPI's error `code`.
  mpi_error(const std::string& what, int code) : error(what), code_(code) {}
  /// The MPI error code returned by the call.
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// A step failed on some ranks: the objective threw there. Every rank of the communicator throws
/// it, with the same message (the failing ranks and the first failing rank's exception text), after
/// the stepper has restored its parameters; the step's seed is used up on every rank alike.
class rank_failure : public error {
 public:
  /// The message `what` and the failing ranks `ranks` (ascending).
  rank_failure(const std::string& what, std::vector<int> ranks) : error(what), ranks_(std::move(ranks)) {}
  /// The ranks whose objective threw, ascending.
  const std::vector<int>& failed_ranks() const noexcept { return ranks_; }

 private:
  std::vector<int> ranks_;
};

/// The ranks disagree about something that must be the same everywhere (stepper type, options,
/// seed, parameter shapes, parameter values, step state, shard layout), or one rank was given a bad
/// argument. Thrown on every rank with the same message, when a driver attaches; nothing is changed.
class config_mismatch : public invalid_argument {
 public:
  using invalid_argument::invalid_argument;
};

/// What one rank has contributed to stochgrad's collectives (see the file comment).
struct traffic {
  std::uint64_t collectives = 0;  ///< collective calls made
  std::uint64_t bytes_sent = 0;   ///< payload bytes this rank contributed to them
  /// Equal when both counters are equal.
  friend constexpr bool operator==(const traffic&, const traffic&) = default;
};

/// The difference of two traffic counters (what happened between two readings).
constexpr traffic operator-(const traffic& a, const traffic& b) noexcept {
  return {a.collectives - b.collectives, a.bytes_sent - b.bytes_sent};
}

namespace detail {

/// Throws mpi_error "`call`: <MPI error string> (code N)" unless `rc == MPI_SUCCESS`.
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING + 1] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  text[len < 0 ? 0 : (len > MPI_MAX_ERROR_STRING ? MPI_MAX_ERROR_STRING : len)] = '\0';
  throw mpi_error(std::string("stochgrad::mpi: ") + call + " failed: " + (len > 0 ? text : "unknown MPI error") +
                      " (code " + std::to_string(rc) + ")",
                  rc);
}

inline bool mpi_running() noexcept {
  int init = 0, fin = 0;
  if (MPI_Initialized(&init) != MPI_SUCCESS || MPI_Finalized(&fin) != MPI_SUCCESS) return false;
  return init != 0 && fin == 0;
}

}  // namespace detail

/// stochgrad's handle on a communicator (see the file comment).
class communicator {
 public:
  /// Duplicates `comm` (collective over `comm`: every rank of it constructs a communicator) and
  /// sets MPI_ERRORS_RETURN on the duplicate.
  /// @throws state_error when MPI is not initialized (or already finalized); invalid_argument for
  ///         MPI_COMM_NULL; mpi_error when the duplication fails (an error of `MPI_Comm_dup` itself
  ///         goes through `comm`'s own error handler first, MPI_ERRORS_ARE_FATAL by default).
  explicit communicator(MPI_Comm comm) {
    if (!detail::mpi_running()) {
      throw state_error("stochgrad::mpi::communicator: MPI is not initialized (call MPI_Init first) or is finalized");
    }
    if (comm == MPI_COMM_NULL) throw invalid_argument("stochgrad::mpi::communicator: the communicator is MPI_COMM_NULL");
    detail::check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    const int rc = MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) {
      detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
      detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    } else {
      MPI_Comm_free(&comm_);
      detail::check(rc, "MPI_Comm_set_errhandler");
    }
  }
  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;
  /// Takes over `o`'s duplicate communicator; `o` is left without one (MPI_COMM_NULL).
  communicator(communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)),
        rank_(o.rank_),
        size_(o.size_),
        traffic_(o.traffic_),
        byte_counts_(std::move(o.byte_counts_)),
        byte_displs_(std::move(o.byte_displs_)) {}
  /// Frees this communicator's duplicate, then takes over `o`'s (left with MPI_COMM_NULL).
  communicator& operator=(communicator&& o) noexcept {
    if (this != &o) {
      release();
      comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
      rank_ = o.rank_;
      size_ = o.size_;
      traffic_ = o.traffic_;
      byte_counts_ = std::move(o.byte_counts_);
      byte_displs_ = std::move(o.byte_displs_);
    }
    return *this;
  }
  /// Frees the duplicate (skipped when MPI is already finalized: destroy communicators before
  /// MPI_Finalize).
  ~communicator() { release(); }

  /// This process's rank in the communicator, in [0, size()).
  int rank() const noexcept { return rank_; }
  /// Number of ranks R.
  int size() const noexcept { return size_; }
  /// The duplicate communicator stochgrad uses (MPI_ERRORS_RETURN set).
  MPI_Comm handle() const noexcept { return comm_; }

  /// What this rank has contributed so far (see the file comment).
  const traffic& sent() const noexcept { return traffic_; }
  /// Sets the traffic counters to zero.
  void reset_traffic() noexcept { traffic_ = {}; }

  /// MPI_Allgather of `mine` (the same number of elements on every rank): `all` receives rank r's
  /// elements at [r * mine.size(), (r + 1) * mine.size()), in rank order. Elements travel as
  /// bytes (T trivially copyable, without padding bytes whose value would be indeterminate).
  /// Collective. Counts one collective and `mine.size_bytes()` bytes.
  /// @throws size_mismatch (before any communication) when `all` does not hold size() * mine.size()
  ///         elements; invalid_argument when the byte count does not fit in an int; mpi_error.
  template <class T>
  void allgather(std::span<const T> mine, std::span<T> all) {
    static_assert(std::is_trivially_copyable_v<T> &&
                      (std::has_unique_object_representations_v<T> || std::is_floating_point_v<T>),
                  "stochgrad::mpi::communicator::allgather: elements travel as bytes; use a trivially copyable "
                  "type without padding");
    stochgrad::detail::require_same_size("communicator::allgather", "the receive buffer", all.size(),
                                         "size() x the send buffer",
                                         stochgrad::detail::checked_product("communicator::allgather", "ranks",
                                                                            static_cast<std::size_t>(size_), "elements",
                                                                            mine.size()));
    const std::size_t bytes = mine.size_bytes();
    if (bytes > static_cast<std::size_t>(INT_MAX)) {
      throw invalid_argument("communicator::allgather: " + std::to_string(bytes) + " bytes per rank exceed INT_MAX");
    }
    const int n = static_cast<int>(bytes);
    detail::check(MPI_Allgather(mine.data(), n, MPI_BYTE, all.data(), n, MPI_BYTE, comm_), "MPI_Allgather");
    ++traffic_.collectives;
    traffic_.bytes_sent += bytes;
  }

  /// MPI_Allgatherv: rank r contributes `counts[r]` elements (`mine.size()` must equal
  /// `counts[rank()]`), and `all` receives them concatenated in rank order. `counts` must be the
  /// same on every rank (e.g. from an allgather of the local sizes). Collective. Counts one
  /// collective and `mine.size_bytes()` bytes. Reuses internal count/displacement arrays
  /// (allocates only when the communicator is first used this way).
  /// @throws size_mismatch (before any communication) when `counts` does not have size() entries,
  ///         `mine` does not hold counts[rank()] elements or `all` not their sum; invalid_argument
  ///         when a byte count or displacement does not fit in an int; mpi_error.
  template <class T>
  void allgatherv(std::span<const T> mine, std::span<const std::uint64_t> counts, std::span<T> all) {
    static_assert(std::is_trivially_copyable_v<T> &&
                      (std::has_unique_object_representations_v<T> || std::is_floating_point_v<T>),
                  "stochgrad::mpi::communicator::allgatherv: elements travel as bytes; use a trivially copyable "
                  "type without padding");
    const auto R = static_cast<std::size_t>(size_);
    stochgrad::detail::require_same_size("communicator::allgatherv", "counts", counts.size(), "ranks", R);
    stochgrad::detail::require_same_size("communicator::allgatherv", "the send buffer", mine.size(),
                                         "this rank's count", static_cast<std::size_t>(counts[static_cast<std::size_t>(rank_)]));
    byte_counts_.resize(R);
    byte_displs_.resize(R);
    std::uint64_t total = 0;
    for (std::size_t r = 0; r < R; ++r) {
      const std::uint64_t b = counts[r] * sizeof(T);
      if (b > static_cast<std::uint64_t>(INT_MAX) || total * sizeof(T) > static_cast<std::uint64_t>(INT_MAX)) {
        throw invalid_argument("communicator::allgatherv: the byte counts exceed INT_MAX");
      }
      byte_counts_[r] = static_cast<int>(b);
      byte_displs_[r] = static_cast<int>(total * sizeof(T));
      total += counts[r];
    }
    stochgrad::detail::require_same_size("communicator::allgatherv", "the receive buffer", all.size(),
                                         "the sum of the counts", static_cast<std::size_t>(total));
    detail::check(MPI_Allgatherv(mine.data(), byte_counts_[static_cast<std::size_t>(rank_)], MPI_BYTE, all.data(),
                                 byte_counts_.data(), byte_displs_.data(), MPI_BYTE, comm_),
                  "MPI_Allgatherv");
    ++traffic_.collectives;
    traffic_.bytes_sent += mine.size_bytes();
  }

  /// MPI_Alltoall: `send` holds size() blocks of k elements, block d going to rank d; `recv`
  /// receives size() blocks of k, block r from rank r. Collective (the same k on every rank).
  /// Counts one collective and `send.size_bytes()` bytes.
  /// @throws size_mismatch (before any communication) when `send` is not a whole number of blocks
  ///         or `recv` differs from it in size; invalid_argument when a block's byte count does not
  ///         fit in an int; mpi_error.
  template <class T>
  void alltoall(std::span<const T> send, std::span<T> recv) {
    static_assert(std::is_trivially_copyable_v<T> &&
                      (std::has_unique_object_representations_v<T> || std::is_floating_point_v<T>),
                  "stochgrad::mpi::communicator::alltoall: elements travel as bytes; use a trivially copyable "
                  "type without padding");
    const auto R = static_cast<std::size_t>(size_);
    stochgrad::detail::require_same_size("communicator::alltoall", "the receive buffer", recv.size(), "the send buffer",
                                         send.size());
    stochgrad::detail::require_same_size("communicator::alltoall", "the send buffer", send.size(),
                                         "size() x its block", R * (send.size() / R));
    const std::size_t bytes = send.size_bytes() / R;
    if (bytes > static_cast<std::size_t>(INT_MAX)) {
      throw invalid_argument("communicator::alltoall: " + std::to_string(bytes) + " bytes per block exceed INT_MAX");
    }
    const int n = static_cast<int>(bytes);
    detail::check(MPI_Alltoall(send.data(), n, MPI_BYTE, recv.data(), n, MPI_BYTE, comm_), "MPI_Alltoall");
    ++traffic_.collectives;
    traffic_.bytes_sent += send.size_bytes();
  }

  /// MPI_Barrier. Collective. Counts one collective and no bytes. @throws mpi_error.
  void barrier() {
    detail::check(MPI_Barrier(comm_), "MPI_Barrier");
    ++traffic_.collectives;
  }

 private:
  void release() noexcept {
    if (comm_ != MPI_COMM_NULL && detail::mpi_running()) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  traffic traffic_{};
  std::vector<int> byte_counts_, byte_displs_;  // allgatherv scratch
};

}  // namespace stochgrad::mpi
