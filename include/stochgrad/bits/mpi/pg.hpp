// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Policy-gradient statistics across ranks: advantages of a batch whose samples (and
/// groups) are spread over the ranks, and DAPO's global token count from the communicator.
///
/// `mpi::advantages(comm, baseline, normalizer, rewards, ids, adv, scratch)`: rank r holds n_r
/// samples of the global batch, which is rank 0's samples, then rank 1's, ... (rank order). Each
/// sample has a reward and a group id (e.g. the prompt's uid); a group may span ranks. The ranks
/// exchange their rewards and ids (one allgather of the counts, one allgatherv of 16 bytes per
/// sample), every rank computes the advantages of the whole batch with the single-process
/// `stochgrad::advantages` and keeps its own slice. So group mean / std, batch std, batch
/// whitening, RLOO, BNPO's Beta fit (`bnpo_mean`, `beta_normalizer`) and every other policy give,
/// bit for bit, the single-process result for the concatenated batch.
///
/// Why the outcomes and not per-rank sufficient statistics (count, sum, sum of squares): the
/// single-process policies compute a group's spread as a second pass around the group mean, and
/// BNPO fits its Beta by moments of per-group means; partial sums combined across ranks round
/// differently, so they could match the single-process batch only to a tolerance, and only for
/// the policies re-derived from sums. One scalar per sample is what a rank would send anyway for
/// any group it shares, it is independent of the parameter count, and it is small next to any
/// gradient exchange (a batch of 4096 completions: 64 KiB per step over all ranks).
///
/// `mpi::dapo_options(comm, o, local_active_tokens)`: DAPO's normaliser N_global (TRL's
/// `num_items_in_batch`, the active tokens of the whole batch over all processes) summed over the
/// ranks in rank order, and `num_processes = R`, so that a rank's surrogate loss is
/// `R * sum(local) / N_global` and averaging the ranks' gradients gives `sum(all) / N_global`.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../error.hpp"
#include "../outcome/group_layout.hpp"
#include "../outcome/policies.hpp"
#include "../pg/surrogate.hpp"
#include "communicator.hpp"
#include "fingerprint.hpp"

namespace stochgrad::mpi {

/// Reusable buffers of `mpi::advantages` (grown, never shrunk: no allocation once a batch of the
/// largest size has been seen).
struct advantage_exchange {
  std::vector<std::uint64_t> counts;  ///< samples per rank of the last batch
  std::vector<double> rewards;        ///< the whole batch's rewards, in rank order
  std::vector<std::int64_t> ids;      ///< the whole batch's group ids, in rank order
  std::vector<double> adv;            ///< the whole batch's advantages (double rewards)
  /// The whole batch's rewards in float (float rewards).
  std::vector<float> rewards_f;
  /// The whole batch's advantages in float (float rewards).
  std::vector<float> adv_f;
  group_layout layout;                ///< the whole batch's groups
  /// Global index of this rank's first sample in the last batch.
  std::uint64_t offset = 0;

  /// Wire buffer of this rank's outcomes (reserved internals).
  std::vector<std::uint64_t> wire_mine;
  /// Wire buffer of every rank's outcomes, in rank order (reserved internals).
  std::vector<std::uint64_t> wire_all;
  /// Per-rank status words of the last exchange (reserved internals).
  std::vector<std::uint64_t> status;
};

namespace detail {

/// Exchanges (count, status) and fills `x.counts` and `x.offset`; throws the same
/// invalid_argument on every rank when a rank's status is not 0.
inline std::uint64_t exchange_counts(communicator& comm, std::uint64_t n, std::uint64_t status, advantage_exchange& x,
                                     const char* who) {
  const auto R = static_cast<std::size_t>(comm.size());
  const std::uint64_t mine[2] = {n, status};
  x.status.resize(2 * R);
  comm.allgather(std::span<const std::uint64_t>(mine, 2), std::span<std::uint64_t>(x.status));
  x.counts.resize(R);
  std::string msg;
  std::uint64_t total = 0;
  x.offset = 0;
  for (std::size_t r = 0; r < R; ++r) {
    x.counts[r] = x.status[2 * r];
    if (r < static_cast<std::size_t>(comm.rank())) x.offset += x.counts[r];
    total += x.counts[r];
    if (x.status[2 * r + 1] != 0) {
      msg += "\n  rank " + std::to_string(r) +
             ": the rewards, group ids and advantage output do not have the same length";
    }
  }
  if (total == 0) msg += "\n  the batch is empty on every rank";
  if (!msg.empty()) {
    throw invalid_argument(std::string("stochgrad::mpi::") + who + ": refused on every rank (nothing was changed):" + msg);
  }
  return total;
}

template <class T>
void gather_rewards(communicator& comm, std::span<const T> rewards, advantage_exchange& x, std::uint64_t total) {
  x.rewards.resize(total);
  x.wire_mine.resize(rewards.size());
  for (std::size_t i = 0; i < rewards.size(); ++i) {
    x.wire_mine[i] = std::bit_cast<std::uint64_t>(static_cast<double>(rewards[i]));
  }
  x.wire_all.resize(total);
  comm.allgatherv(std::span<const std::uint64_t>(x.wire_mine), x.counts, std::span<std::uint64_t>(x.wire_all));
  for (std::size_t i = 0; i < total; ++i) x.rewards[i] = std::bit_cast<double>(x.wire_all[i]);
}

/// Runs the single-process policies on the whole batch in the caller's element type T (float
/// rewards were widened exactly for the wire and are narrowed back exactly), and copies this
/// rank's slice out.
template <class B, class N, real_scalar T>
advantage_stats compute_and_scatter(const B& b, const N& nrm, advantage_exchange& x, std::span<T> adv) {
  const std::size_t total = x.rewards.size();
  if constexpr (std::is_same_v<T, double>) {
    x.adv.resize(total);
    const advantage_stats st =
        stochgrad::advantages(b, nrm, std::span<const double>(x.rewards), x.layout, std::span<double>(x.adv));
    for (std::size_t i = 0; i < adv.size(); ++i) adv[i] = x.adv[x.offset + i];
    return st;
  } else {
    x.rewards_f.resize(total);
    x.adv_f.resize(total);
    for (std::size_t i = 0; i < total; ++i) x.rewards_f[i] = static_cast<float>(x.rewards[i]);
    const advantage_stats st =
        stochgrad::advantages(b, nrm, std::span<const float>(x.rewards_f), x.layout, std::span<float>(x.adv_f));
    for (std::size_t i = 0; i < adv.size(); ++i) adv[i] = x.adv_f[x.offset + i];
    return st;
  }
}

}  // namespace detail

/// Advantages of a batch spread over the ranks, groups given by id (file comment): this rank's
/// `rewards[i]` (sample i of its n_r samples, group `ids[i]`) gets `adv[i]`, the advantage that
/// `stochgrad::advantages(b, nrm, all_rewards, group_layout::by_id(all_ids), all_adv)` gives sample
/// `offset + i` of the concatenated batch, computed in T as the single-process call would (float
/// rewards travel widened to double, exactly).
/// A rank may hold 0 samples. Collective. Returns the whole batch's statistics.
/// @throws invalid_argument on every rank (nothing written) when a rank's three spans differ in
///         length or the whole batch is empty; the single-process policies' exceptions (identical
///         on every rank: they see the same batch); mpi_error.
template <class B, class N, real_scalar T>
advantage_stats advantages(communicator& comm, const B& b, const N& nrm, std::span<const T> rewards,
                           std::span<const std::int64_t> ids, std::span<T> adv, advantage_exchange& x) {
  const bool ok = rewards.size() == ids.size() && rewards.size() == adv.size();
  const std::uint64_t total = detail::exchange_counts(comm, rewards.size(), ok ? 0 : 1, x, "advantages");
  detail::gather_rewards(comm, rewards, x, total);
  x.ids.resize(total);
  comm.allgatherv(ids, x.counts, std::span<std::int64_t>(x.ids));
  x.layout.assign_ids(x.ids);
  return detail::compute_and_scatter(b, nrm, x, adv);
}

/// As the id form, for the contiguous layout `[P x G]` of the whole batch: global sample n is in
/// group n / G (ranks need not hold whole groups). The ranks' sample counts must sum to a multiple
/// of G. @throws invalid_argument on every rank as the id form, and when G = 0 or the total is not
/// a multiple of G.
template <class B, class N, real_scalar T>
advantage_stats advantages(communicator& comm, const B& b, const N& nrm, std::span<const T> rewards,
                           std::size_t group_size, std::span<T> adv, advantage_exchange& x) {
  const bool ok = rewards.size() == adv.size();
  const std::uint64_t total = detail::exchange_counts(comm, rewards.size(), ok ? 0 : 1, x, "advantages");
  if (group_size == 0 || total % group_size != 0) {
    throw invalid_argument("stochgrad::mpi::advantages: the batch of " + std::to_string(total) +
                           " samples over all ranks is not a whole number of groups of " + std::to_string(group_size) +
                           " (refused on every rank; nothing was changed)");
  }
  detail::gather_rewards(comm, rewards, x, total);
  x.layout.assign_contiguous(total / group_size, group_size);
  return detail::compute_and_scatter(b, nrm, x, adv);
}

/// Sum over the ranks, in rank order, of a count (exact). Collective: one allgather of 8 bytes.
/// @throws mpi_error.
inline std::uint64_t global_sum(communicator& comm, std::uint64_t local) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const std::uint64_t>(&local, 1), std::span<std::uint64_t>(all));
  std::uint64_t s = 0;
  for (std::uint64_t v : all) s += v;
  return s;
}

/// `o` with DAPO's global token count from the communicator (file comment):
/// `global_active_tokens = sum over ranks of local_active_tokens` and `num_processes = R`.
/// Collective. @throws mpi_error.
inline surrogate_options dapo_options(communicator& comm, surrogate_options o, std::uint64_t local_active_tokens) {
  o.global_active_tokens = static_cast<double>(global_sum(comm, local_active_tokens));
  o.num_processes = static_cast<std::size_t>(comm.size());
  return o;
}

}  // namespace stochgrad::mpi
