// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Sharded optimizer state (ZeRO stage 1) over MPI: `mpi::sharded_optimizer<Policy, T>`.
///
/// Every rank holds the full parameters; the flat parameter vector (tensors in order, P elements)
/// is cut into R contiguous shards of `c = ceil(P / R)` elements (shard r = [r c, min(P, (r+1) c)),
/// possibly empty for the last ranks of a tiny model), and rank r keeps the optimizer state of its
/// shard only (about 1/R of the state memory). One step:
/// ```
///   1. reduce-scatter: rank r receives every rank's gradient on its shard (MPI_Alltoall in
///      buckets) and sums it in rank order, s_i = ((g_0[i] + g_1[i]) + ...) + g_{R-1}[i], then
///      divides by R for the mean (one division in T), as mpi::gradient_reducer does;
///   2. the optimizer policy's fused update of the shard with that gradient (its own state);
///   3. all-gather: every rank receives the updated shards (MPI_Allgather in buckets).
/// ```
/// Each element is reduced once and updated once, on one rank, with the same arithmetic as a
/// single process stepping the rank-order sum (or mean) of the gradients, so all ranks end bit for
/// bit equal to that single-process trajectory for element-wise optimizers (SGD, Adam, AdamW,
/// Adan, Lion-like rules). Optimizer options that need a decision over the whole gradient
/// (global-norm clipping `max_grad_norm`, `skip_nonfinite`) are refused at construction: clip or
/// check before `step` instead.
///
/// Memory per rank: the shard's optimizer state, the shard's reduced gradient (c elements) and two
/// bucket buffers of R x `bucket` elements; no second full-size gradient.
///
/// Checkpoints are per rank (`save` / `load`): a shard's state, tagged with the rank count, the
/// rank, the parameter count and the policy's name. Loading on another rank count, another rank or
/// other parameters is refused with state_error (re-sharding is not supported: resume on the same
/// number of ranks); nothing changes then.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../stepper/serialize.hpp"
#include "communicator.hpp"

namespace stochgrad::mpi {

/// How step() combines the ranks' gradients.
enum class gradient_reduction {
  mean,  ///< (rank-order sum) / R: each rank passes the mean gradient of an equal-size data shard
  sum,   ///< rank-order sum: each rank passes its shard's gradient already weighted by its share
};

/// ZeRO-1 sharded optimizer (file comment): the state of `Policy` for this rank's 1/R of the
/// parameters, a deterministic reduce-scatter of the gradients and an all-gather of the parameters.
/// @code
/// stochgrad::mpi::sharded_optimizer<stochgrad::optim::adam<>, float> opt(comm, params, stochgrad::optim::adam<>({.lr = 1e-3}));
/// model.value_and_gradient(w, g);   // this rank's gradient, full size
/// opt.step(std::span<const float>(g));
/// @endcode
template <class Policy, real_scalar T>
class sharded_optimizer {
 public:
  /// The policy's state type for the shard.
  using state_type = typename Policy::template state<T>;

  /// @param comm    the communicator (not owned; must outlive the optimizer)
  /// @param p       the full parameters (the same shapes and groups on every rank)
  /// @param policy  the optimizer policy
  /// @param bucket  elements per shard and bucket (>= 1; buffers hold R x bucket elements)
  /// @throws invalid_argument for bucket = 0 or a policy with max_grad_norm > 0 or skip_nonfinite;
  /// size_mismatch on every rank when the ranks' parameter counts or tensor counts differ. Collective.
  sharded_optimizer(communicator& comm, const parameters<T>& p, Policy policy = {}, std::size_t bucket = std::size_t{1} << 20)
      : comm_(&comm), full_(p), policy_(std::move(policy)), bucket_(bucket) {
    stochgrad::detail::require(bucket >= 1, "mpi::sharded_optimizer", "bucket", static_cast<double>(bucket), ">= 1");
    if constexpr (requires { policy_.options().max_grad_norm; }) {
      stochgrad::detail::require(policy_.options().max_grad_norm == 0.0, "mpi::sharded_optimizer", "max_grad_norm",
                                 policy_.options().max_grad_norm,
                                 "0 (global-norm clipping needs the whole gradient: clip before step)");
    }
    if constexpr (requires { policy_.options().skip_nonfinite; }) {
      stochgrad::detail::require(!policy_.options().skip_nonfinite, "mpi::sharded_optimizer", "skip_nonfinite", 1.0,
                                 "false (the skip decision needs the whole gradient: check before step)");
    }
    check_shapes();
    const auto R = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
    total_ = p.size();
    chunk_ = (total_ + R - 1) / R;
    lo_ = std::min(total_, me * chunk_);
    hi_ = std::min(total_, lo_ + chunk_);
    build_shard();
    state_ = policy_.init(shard_);
    grad_.assign(chunk_, T(0));
  }

  /// One step from this rank's gradient (one span per tensor of the full parameters). Collective.
  /// @throws size_mismatch on every rank (nothing changed) when the spans of any rank do not match
  /// the parameters (decided collectively: 8 bytes per rank, so no rank is left in a collective); whatever
  /// the policy's update throws, after which the ranks' parameters may differ (collective state is
  /// not rolled back: treat it as fatal for the job).
  update_report step(std::span<const std::span<const T>> grads, gradient_reduction how = gradient_reduction::mean) {
    check_gradient_shapes(grads);
    reduce_scatter(grads, how);
    shard_grads_.clear();
    std::size_t off = 0;
    for (std::size_t t = 0; t < shard_.tensors(); ++t) {
      shard_grads_.push_back(std::span<const T>(grad_.data() + off, shard_.tensor(t).size()));
      off += shard_.tensor(t).size();
    }
    step_context ctx;
    ctx.step = steps_;
    const update_report rep =
        policy_.update(shard_, state_, dense_gradient<T>(std::span<const std::span<const T>>(shard_grads_)), ctx);
    ++steps_;
    all_gather_parameters();
    return rep;
  }

  /// @copydoc step(std::span<const std::span<const T>>, gradient_reduction)
  /// (single-tensor parameters).
  update_report step(std::span<const T> grad, gradient_reduction how = gradient_reduction::mean) {
    const std::span<const T> one[1] = {grad};
    return step(std::span<const std::span<const T>>(one, 1), how);
  }

  /// First flat index of this rank's shard.
  std::size_t shard_begin() const noexcept { return lo_; }
  /// One past the last flat index of this rank's shard.
  std::size_t shard_end() const noexcept { return hi_; }
  /// This rank's optimizer state (for its shard only).
  const state_type& shard_state() const noexcept { return state_; }
  /// The shard's parameters (views into the full parameters).
  const parameters<T>& shard_parameters() const noexcept { return shard_; }
  /// Steps taken.
  std::uint64_t steps() const noexcept { return steps_; }

  /// Writes this rank's shard checkpoint (file comment).
  void save(std::ostream& os) {
    state_writer w;
    std::uint64_t R = static_cast<std::uint64_t>(comm_->size()), me = static_cast<std::uint64_t>(comm_->rank()), P = total_,
                  k = steps_;
    std::string name = Policy::name;
    w.field("zero1.ranks", R);
    w.field("zero1.rank", me);
    w.field("zero1.parameters", P);
    w.field("zero1.steps", k);
    w.field("zero1.policy", name);
    state_.serialize(w);
    w.finish(os);
  }

  /// Reads this rank's shard checkpoint. Not collective.
  /// @throws state_error (nothing changed) for a checkpoint of another rank count, rank, parameter
  /// count or policy, or a corrupt one.
  void load(std::istream& is) {
    state_reader r(is);
    std::uint64_t R = 0, me = 0, P = 0, k = 0;
    std::string name;
    r.field("zero1.ranks", R);
    r.field("zero1.rank", me);
    r.field("zero1.parameters", P);
    r.field("zero1.steps", k);
    r.field("zero1.policy", name);
    if (R != static_cast<std::uint64_t>(comm_->size()) || me != static_cast<std::uint64_t>(comm_->rank())) {
      throw state_error("mpi::sharded_optimizer::load: the checkpoint is rank " + std::to_string(me) + " of " + std::to_string(R) +
                        " ranks; this is rank " + std::to_string(comm_->rank()) + " of " + std::to_string(comm_->size()) +
                        " (re-sharding is not supported: resume on the same number of ranks)");
    }
    if (P != total_ || name != Policy::name) {
      throw state_error("mpi::sharded_optimizer::load: the checkpoint is for " + std::to_string(P) + " parameters and policy " +
                        name + "; this optimizer has " + std::to_string(total_) + " and " + Policy::name);
    }
    state_type s = policy_.init(shard_);
    s.serialize(r);
    r.finish();
    if constexpr (requires { policy_.check_state(s, shard_); }) {
      policy_.check_state(s, shard_);
    } else {
      s.check(shard_);
    }
    state_ = std::move(s);
    steps_ = k;
  }

 private:
  void check_shapes() {
    const auto R = static_cast<std::size_t>(comm_->size());
    const std::uint64_t mine[2] = {full_.size(), full_.tensors()};
    std::vector<std::uint64_t> all(2 * R);
    comm_->allgather(std::span<const std::uint64_t>(mine, 2), std::span<std::uint64_t>(all));
    for (std::size_t r = 1; r < R; ++r) {
      if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) {
        throw size_mismatch("mpi::sharded_optimizer: rank " + std::to_string(r) + " has " + std::to_string(all[2 * r]) +
                            " parameters in " + std::to_string(all[2 * r + 1]) + " tensors, rank 0 has " +
                            std::to_string(all[0]) + " in " + std::to_string(all[1]) + " (refused on every rank)");
      }
    }
  }

  // Collective shape check of the step's gradient: every rank learns which ranks passed spans that
  // do not match the parameters and throws, before any data moves.
  void check_gradient_shapes(std::span<const std::span<const T>> grads) {
    bool ok = grads.size() == full_.tensors();
    for (std::size_t t = 0; ok && t < grads.size(); ++t) ok = grads[t].size() == full_.tensor(t).size();
    const auto R = static_cast<std::size_t>(comm_->size());
    const std::uint64_t mine = ok ? 1 : 0;
    flags_.resize(R);
    comm_->allgather(std::span<const std::uint64_t>(&mine, 1), std::span<std::uint64_t>(flags_));
    std::string bad;
    for (std::size_t r = 0; r < R; ++r) {
      if (flags_[r] == 0) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
    }
    if (!bad.empty()) {
      throw size_mismatch("mpi::sharded_optimizer::step: the gradient does not match the parameters (" +
                          std::to_string(full_.tensors()) + " tensors, " + std::to_string(total_) +
                          " elements) on rank(s) " + bad + " (refused on every rank; nothing was changed)");
    }
  }

  // The shard's pieces of each tensor, in their tensors' groups (all groups kept, so step counters
  // and per-group options line up with the full parameters').
  void build_shard() {
    shard_.set_group(0, full_.group(0));
    for (std::size_t g = 1; g < full_.groups(); ++g) shard_.add_group(full_.group(g));
    std::size_t off = 0;
    for (std::size_t t = 0; t < full_.tensors(); ++t) {
      const std::size_t n = full_.tensor(t).size(), a = std::max(off, lo_), b = std::min(off + n, hi_);
      if (a < b) shard_.add(std::span<T>(full_.tensor(t).data() + (a - off), b - a), full_.group_of(t));
      off += n;
    }
  }

  // out[0, n) <- the flat gradient at [begin, begin + n), zero past the end.
  void copy_flat(std::span<const std::span<const T>> grads, std::size_t begin, std::size_t n, T* out) const {
    std::fill(out, out + n, T(0));
    std::size_t off = 0;
    for (std::size_t t = 0; t < grads.size() && off < begin + n; ++t) {
      const std::size_t len = grads[t].size(), a = std::max(off, begin), b = std::min(off + len, begin + n);
      if (a < b) std::copy(grads[t].begin() + static_cast<std::ptrdiff_t>(a - off), grads[t].begin() + static_cast<std::ptrdiff_t>(b - off),
                           out + (a - begin));
      off += len;
    }
  }

  void reduce_scatter(std::span<const std::span<const T>> grads, gradient_reduction how) {
    const auto R = static_cast<std::size_t>(comm_->size());
    const T div = static_cast<T>(R);
    for (std::size_t k0 = 0; k0 < chunk_; k0 += bucket_) {
      const std::size_t n = std::min(bucket_, chunk_ - k0);
      send_.resize(R * n);
      recv_.resize(R * n);
      for (std::size_t r = 0; r < R; ++r) {  // piece k0 of rank r's shard, zero-padded
        const std::size_t begin = r * chunk_ + k0, end = std::min(std::min(total_, (r + 1) * chunk_), begin + n);
        const std::size_t avail = end > begin ? end - begin : 0;
        copy_flat(grads, begin, avail, send_.data() + r * n);
        std::fill(send_.data() + r * n + avail, send_.data() + (r + 1) * n, T(0));
      }
      comm_->alltoall(std::span<const T>(send_), std::span<T>(recv_));
      for (std::size_t i = 0; i < n; ++i) {
        T acc = recv_[i];
        for (std::size_t r = 1; r < R; ++r) acc += recv_[r * n + i];
        grad_[k0 + i] = how == gradient_reduction::mean ? acc / div : acc;
      }
    }
  }

  void all_gather_parameters() {
    const auto R = static_cast<std::size_t>(comm_->size());
    for (std::size_t k0 = 0; k0 < chunk_; k0 += bucket_) {
      const std::size_t n = std::min(bucket_, chunk_ - k0);
      send_.assign(n, T(0));
      recv_.resize(R * n);
      read_flat(lo_ + k0, std::min(n, hi_ > lo_ + k0 ? hi_ - lo_ - k0 : 0), send_.data());
      comm_->allgather(std::span<const T>(send_.data(), n), std::span<T>(recv_));
      for (std::size_t r = 0; r < R; ++r) {
        const std::size_t begin = r * chunk_ + k0, end = std::min(std::min(total_, (r + 1) * chunk_), begin + n);
        if (begin < end) write_flat(begin, end - begin, recv_.data() + r * n);
      }
    }
  }

  void read_flat(std::size_t begin, std::size_t n, T* out) const {
    std::size_t off = 0;
    for (std::size_t t = 0; t < full_.tensors(); ++t) {
      const std::size_t len = full_.tensor(t).size(), a = std::max(off, begin), b = std::min(off + len, begin + n);
      if (a < b) std::copy(full_.tensor(t).data() + (a - off), full_.tensor(t).data() + (b - off), out + (a - begin));
      off += len;
    }
  }

  void write_flat(std::size_t begin, std::size_t n, const T* in) {
    std::size_t off = 0;
    for (std::size_t t = 0; t < full_.tensors(); ++t) {
      const std::size_t len = full_.tensor(t).size(), a = std::max(off, begin), b = std::min(off + len, begin + n);
      if (a < b) std::copy(in + (a - begin), in + (b - begin), full_.tensor(t).data() + (a - off));
      off += len;
    }
  }

  communicator* comm_;
  parameters<T> full_;
  parameters<T> shard_;
  Policy policy_;
  std::size_t bucket_;
  std::size_t total_ = 0, chunk_ = 0, lo_ = 0, hi_ = 0;
  std::uint64_t steps_ = 0;
  state_type state_;
  std::vector<T> grad_, send_, recv_;
  std::vector<std::span<const T>> shard_grads_;
  std::vector<std::uint64_t> flags_;
};

}  // namespace stochgrad::mpi
