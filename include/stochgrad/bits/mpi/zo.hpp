// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Zeroth-order training over MPI where only scalars travel: `mpi::data_parallel` (every rank
/// holds the full parameters and its own data shard) and `mpi::sharded` (every rank holds a slice
/// of each parameter tensor).
///
/// Design: a driver is a thin wrapper around an ordinary single-process stepper, not a policy
/// inside it. The stepper's estimator already calls the objective once per perturbation and owns
/// the perturbation (guard, restore, fused update); the driver hands it an objective that
///   1. evaluates the caller's local objective at the current (perturbed) parameters,
///   2. exchanges `(loss, status)` with every rank (one MPI_Allgather of 16 bytes per rank),
///   3. returns the combined loss, identical on every rank.
/// The directions are regenerated on every rank from the shared seed, so all ranks perturb alike,
/// receive the same combined losses and apply the identical update. Per step, a rank sends one
/// 16-byte record per evaluation (2q for two_point): O(q), independent of the parameter count
/// (`last_step()`). Attaching the communicator inside `stepper` like an executor would have needed
/// a new hook in every zeroth-order estimator; the driver needs none and works with every
/// zeroth-order estimator whose step takes an objective.
///
/// Combination (in rank order, after the allgather, so the result does not depend on MPI's
/// reduction tree; the same function is public for single-process references):
/// ```
///   data_parallel:  L = fma(n_{R-1}, L_{R-1}, ... fma(n_1, L_1, n_0 L_0)) / (n_0 + ... + n_{R-1})
///                   (L_r: rank r's mean loss over its shard of n_r samples)       weighted_mean()
///   sharded:        L = ((L_0 + L_1) + L_2) + ... + L_{R-1}
///                   (L_r: rank r's partial loss, the terms of its slice)          rank_sum()
/// ```
/// A run on R ranks is therefore bitwise equal to a single-process run whose objective computes the
/// same L_r and combines them with the same function.
///
/// Faults, identical on every rank (every rank takes part in every exchange, so nothing hangs):
/// - the objective throws on some ranks: the exception is caught there, the status says so, and
///   every rank throws `rank_failure` (naming the failing ranks and the first one's message; one
///   more allgather of 256 bytes per rank, only then) from inside the step, so every stepper
///   restores its parameters alike and uses the step's seed up; the next step works;
/// - the objective returns a non-finite or invalid loss on some ranks: every rank sees an invalid
///   evaluation, so the step is skipped everywhere (or `nonfinite_error` under
///   nonfinite_policy::throw_error);
/// - the ranks were built differently: attaching fails on every rank with `config_mismatch`
///   (fingerprint.hpp: stepper type, options, seed, shapes, state, parameter values).
/// After attaching, drive the stepper only through the driver (a direct `step` on one rank would
/// desynchronise it from the others).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/family.hpp"
#include "../error.hpp"
#include "../zo/objective.hpp"
#include "communicator.hpp"
#include "fingerprint.hpp"
#include "sharded_direction.hpp"

namespace stochgrad::mpi {

/// The data-parallel combination `fma(n_{R-1}, L_{R-1}, ... fma(n_1, L_1, n_0 L_0)) / sum_r n_r`
/// of per-rank mean losses `losses[r]` over shards of `sizes[r]` samples, in rank order.
/// @throws size_mismatch when the spans differ in length; invalid_argument when they are empty or
///         the sizes sum to 0.
inline double weighted_mean(std::span<const double> losses, std::span<const std::uint64_t> sizes) {
  stochgrad::detail::require_same_size("mpi::weighted_mean", "losses", losses.size(), "sizes", sizes.size());
  if (losses.empty()) throw invalid_argument("mpi::weighted_mean: no losses");
  double acc = static_cast<double>(sizes[0]) * losses[0];
  double total = static_cast<double>(sizes[0]);
  for (std::size_t r = 1; r < losses.size(); ++r) {
    acc = std::fma(static_cast<double>(sizes[r]), losses[r], acc);
    total += static_cast<double>(sizes[r]);
  }
  if (!(total > 0.0)) throw invalid_argument("mpi::weighted_mean: the shard sizes sum to 0");
  return acc / total;
}

/// The sharded combination `((L_0 + L_1) + L_2) + ... + L_{R-1}` of per-rank partial losses, in
/// rank order. @throws invalid_argument when `losses` is empty.
inline double rank_sum(std::span<const double> losses) {
  if (losses.empty()) throw invalid_argument("mpi::rank_sum: no losses");
  double acc = losses[0];
  for (std::size_t r = 1; r < losses.size(); ++r) acc += losses[r];
  return acc;
}

namespace detail {

enum class combine_rule { weighted_mean, sum };

/// One rank's evaluation on the wire: the loss bits and a status (two 64-bit words, no padding).
struct loss_wire {
  std::uint64_t loss_bits = 0;
  std::uint64_t status = 0;  ///< eval_ok, eval_unusable, eval_threw
};
inline constexpr std::uint64_t eval_ok = 0, eval_unusable = 1, eval_threw = 2;

/// The first bytes of a failing rank's exception message (sent only after a failure).
struct failure_text {
  char text[256] = {};
};

/// The engine of data_parallel and sharded (file comment).
template <class Stepper, combine_rule Rule>
class zo_driver {
 public:
  using stepper_type = Stepper;
  using value_type = typename Stepper::value_type;
  static_assert(Stepper::estimator_type::family == estimator_family::zeroth_order,
                "stochgrad::mpi: data_parallel and sharded drive zeroth-order steppers (mezo, spsa, two_point, "
                "one_sided, coordinate_wise ...), whose step takes an objective; only the losses travel");

  /// One step of the stepper with the local objective `f` (as `stepper::step(f)` takes it: `f()`,
  /// `f(const parameters<T>&)` or `f(std::span<const T>)`, returning a number or zo::evaluation).
  /// Collective: every rank calls it. Returns the stepper's report, in which every loss is the
  /// combined one (the same on every rank).
  /// @throws rank_failure on every rank when `f` threw on some rank (parameters restored);
  ///         whatever the stepper throws (the same on every rank: nonfinite_error under
  ///         throw_error, invalid_argument for a bad schedule or objective); mpi_error.
  template <class F>
  zo::step_report step(F&& f) {
    using T = value_type;
    zo::detail::check_objective<std::remove_reference_t<F>, T>();
    zo::detail::check_objective_fits<T, std::remove_reference_t<F>>(s_->params());  // the same on every rank
    const traffic before = comm_->sent();
    struct account {
      zo_driver* d;
      traffic before;
      ~account() { d->last_ = d->comm_->sent() - before; }
    } acc{this, before};
    eval_ = 0;
    auto combined = [this, &f]() -> zo::evaluation { return exchange(f); };
    return s_->step(combined);
  }

  /// What this rank sent during the last `step` (collectives and payload bytes): one 16-byte
  /// record per evaluation, plus one 256-byte message after a failure.
  const traffic& last_step() const noexcept { return last_; }
  /// The stepper.
  Stepper& stepper() noexcept { return *s_; }
  const Stepper& stepper() const noexcept { return *s_; }
  /// The communicator.
  communicator& comm() noexcept { return *comm_; }
  /// The local (uncombined) values of the last evaluation, one per rank, in rank order.
  std::span<const double> last_local_losses() const noexcept { return local_; }

 protected:
  zo_driver(communicator& comm, Stepper& s) : comm_(&comm), s_(&s) {
    const auto R = static_cast<std::size_t>(comm.size());
    gathered_.resize(R);
    local_.resize(R);
    weights_.resize(R, 1);
  }

  template <class F>
  zo::evaluation exchange(F& f) {
    using T = value_type;
    loss_wire mine{std::bit_cast<std::uint64_t>(std::numeric_limits<double>::quiet_NaN()), eval_ok};
    failure_text why{};
    try {
      const zo::evaluation e = zo::detail::evaluate<T>(f, s_->params());
      mine.loss_bits = std::bit_cast<std::uint64_t>(e.loss);
      mine.status = zo::detail::usable(e) ? eval_ok : eval_unusable;
    } catch (const std::exception& ex) {
      mine.status = eval_threw;
      std::strncpy(why.text, ex.what(), sizeof why.text - 1);
    } catch (...) {
      mine.status = eval_threw;
      std::strncpy(why.text, "an exception not derived from std::exception", sizeof why.text - 1);
    }
    const std::size_t ev = eval_++;
    comm_->allgather(std::span<const loss_wire>(&mine, 1), std::span<loss_wire>(gathered_));
    bool usable_all = true, threw = false;
    for (std::size_t r = 0; r < gathered_.size(); ++r) {
      local_[r] = std::bit_cast<double>(gathered_[r].loss_bits);
      threw = threw || gathered_[r].status == eval_threw;
      usable_all = usable_all && gathered_[r].status == eval_ok;
    }
    if (threw) fail(why, ev);
    if (!usable_all) return {std::numeric_limits<double>::quiet_NaN(), false};
    if constexpr (Rule == combine_rule::weighted_mean) {
      return {weighted_mean(local_, weights_), true};
    } else {
      return {rank_sum(local_), true};
    }
  }

  [[noreturn]] void fail(const failure_text& why, std::size_t ev) {
    std::vector<failure_text> texts(gathered_.size());
    comm_->allgather(std::span<const failure_text>(&why, 1), std::span<failure_text>(texts));
    std::vector<int> ranks;
    for (std::size_t r = 0; r < gathered_.size(); ++r) {
      if (gathered_[r].status == eval_threw) ranks.push_back(static_cast<int>(r));
    }
    std::string call;
    if constexpr (requires { s_->est_state().calls; }) {
      call = " of step call " + std::to_string(s_->est_state().calls - 1);
    }
    failure_text& first = texts[static_cast<std::size_t>(ranks.front())];
    first.text[sizeof first.text - 1] = '\0';
    std::string msg = std::string("stochgrad::mpi: the objective threw on rank(s) ") + rank_list(ranks) +
                      " at evaluation " + std::to_string(ev) + call + " (rank " + std::to_string(ranks.front()) +
                      ": " + first.text + "); every rank restored its parameters";
    throw rank_failure(msg, std::move(ranks));
  }

  communicator* comm_;
  Stepper* s_;
  std::vector<loss_wire> gathered_;
  std::vector<double> local_;
  std::vector<std::uint64_t> weights_;
  std::size_t eval_ = 0;
  traffic last_{};
};

}  // namespace detail

/// Data-parallel zeroth-order training (file comment): every rank holds the full parameters, bit
/// for bit, and its own shard of the data; the loss is the shard-size weighted mean of the ranks'
/// mean losses, `weighted_mean`.
/// @code
/// stochgrad::mpi::communicator comm(MPI_COMM_WORLD);          // the caller's communicator
/// stochgrad::mezo<float> m(w, {.lr = 1e-3}, {.eps = 1e-3, .seed = 7});
/// stochgrad::mpi::data_parallel dp(comm, m, my_shard.size());  // collective; checks the ranks agree
/// for (int k = 0; k < steps; ++k) dp.step([&](std::span<const float> x) { return loss(x, my_shard); });
/// @endcode
template <class Stepper>
class data_parallel : public detail::zo_driver<Stepper, detail::combine_rule::weighted_mean> {
  using base = detail::zo_driver<Stepper, detail::combine_rule::weighted_mean>;

 public:
  /// Attaches to `s` (collective over `comm`). `shard_size`: the number of samples this rank's
  /// objective averages over (its weight). The communicator and the stepper must outlive the driver.
  /// @throws config_mismatch on every rank, before anything changes, when a rank's shard size is 0
  ///         or the ranks' steppers differ (fingerprint.hpp: type, options, salt, shapes, state,
  ///         parameter values); mpi_error.
  data_parallel(communicator& comm, Stepper& s, std::uint64_t shard_size, attach_options o = {}) : base(comm, s) {
    detail::attach_record mine = detail::fingerprint(s, o, true);
    mine.weight = shard_size;
    if (shard_size == 0) mine.status = static_cast<std::uint64_t>(detail::attach_status::zero_shard);
    std::vector<detail::attach_record> all;
    detail::agree(comm, mine, all, "data_parallel");
    for (std::size_t r = 0; r < all.size(); ++r) {
      this->weights_[r] = all[r].weight;
      total_ += all[r].weight;
    }
  }

  /// The shard sizes n_r of every rank, in rank order.
  std::span<const std::uint64_t> shard_sizes() const noexcept { return this->weights_; }
  /// The total number of samples, sum_r n_r.
  std::uint64_t total_size() const noexcept { return total_; }

 private:
  std::uint64_t total_ = 0;
};

/// Zeroth-order training with sharded parameters (file comment): rank r holds elements
/// [o_{r,t}, o_{r,t} + n_{r,t}) of each tensor t, the slices of the ranks tiling each tensor in rank
/// order (`shard_of`). The stepper's estimator must use `sharded_direction` with the rank's
/// offsets, so each slice is perturbed by exactly the z of the unsharded tensor; the objective
/// returns the rank's partial loss (the terms that depend on its slice, or any split of the loss
/// into per-rank terms), combined by `rank_sum`. Elementwise optimizers (sgd, adam, adamw, adan
/// without clipping or skip_nonfinite) then reproduce the unsharded run bit for bit.
/// @code
/// const auto sw = stochgrad::mpi::shard_of(W.size(), comm.rank(), comm.size());
/// using dir = stochgrad::mpi::sharded_direction<stochgrad::gaussian>;
/// stochgrad::stepper<stochgrad::zo::two_point<dir>, stochgrad::no_baseline, stochgrad::no_normalizer,
///                    stochgrad::optim::adam<>, float>
///     s(params_of_my_slices, stochgrad::optim::adam<>({.lr = 1e-3}),
///       stochgrad::zo::two_point<dir>({.eps = 1e-3, .seed = 7}, {}, {}, dir({sw.offset})));
/// stochgrad::mpi::sharded drv(comm, s);
/// drv.step(partial_loss);
/// @endcode
template <class Stepper>
class sharded : public detail::zo_driver<Stepper, detail::combine_rule::sum> {
  using base = detail::zo_driver<Stepper, detail::combine_rule::sum>;
  using estimator = typename Stepper::estimator_type;
  static_assert(requires { typename estimator::direction_type; } &&
                    detail::is_sharded_direction<typename estimator::direction_type>::value,
                "stochgrad::mpi::sharded: the estimator must be two_point or one_sided over "
                "mpi::sharded_direction<D> (so that each slice gets the z of the unsharded tensor)");
  static_assert(!estimator::mask_type::enabled,
                "stochgrad::mpi::sharded: a magnitude mask selects entries by a threshold over all parameters, "
                "which a rank holding a slice does not know; use no_mask");

 public:
  /// Attaches to `s` (collective over `comm`): checks that the ranks agree (fingerprint.hpp, without
  /// the parameter values and saved state, which are the rank's own slices) and that their slices
  /// tile every tensor in rank order. The communicator and the stepper must outlive the driver.
  /// @throws config_mismatch on every rank, before anything changes, when a rank's direction does
  ///         not have one offset per tensor, its optimizer clips by the global norm or skips on a
  ///         non-finite gradient, the ranks' steppers differ, or the slices do not tile; mpi_error.
  explicit sharded(communicator& comm, Stepper& s, attach_options o = {}) : base(comm, s) {
    const auto& p = s.params();
    const auto offsets = s.estimator().direction().offsets();
    detail::attach_record mine = detail::fingerprint(s, o, false);
    if (offsets.size() != p.tensors()) mine.status = static_cast<std::uint64_t>(detail::attach_status::offsets_count);
    if constexpr (requires { s.optimizer().options().max_grad_norm; s.optimizer().options().skip_nonfinite; }) {
      const auto& oo = s.optimizer().options();
      if (oo.max_grad_norm > 0.0 || oo.skip_nonfinite) {
        mine.status = static_cast<std::uint64_t>(detail::attach_status::global_norm);
      }
    }
    std::vector<detail::attach_record> all;
    detail::agree(comm, mine, all, "sharded");
    // The same number of tensors on every rank from here on (the shape hash agreed).
    const std::size_t nt = p.tensors(), R = static_cast<std::size_t>(comm.size());
    std::vector<shard_range> local(nt), ranges(nt * R);
    for (std::size_t t = 0; t < nt; ++t) local[t] = {offsets[t], p.tensor(t).size()};
    comm.allgather(std::span<const shard_range>(local), std::span<shard_range>(ranges));
    std::string msg;
    global_.assign(nt, 0);
    for (std::size_t t = 0; t < nt; ++t) {
      std::uint64_t next = 0;
      for (std::size_t r = 0; r < R; ++r) {
        const shard_range& g = ranges[r * nt + t];
        if (g.offset != next && msg.size() < 2000) {
          msg += "\n  tensor " + std::to_string(t) + ": rank " + std::to_string(r) + " starts at " +
                 std::to_string(g.offset) + ", expected " + std::to_string(next) +
                 (r == 0 ? " (rank 0 holds the first slice)" : " (where rank " + std::to_string(r - 1) + "'s ends)");
        }
        next = g.offset + g.count;
      }
      global_[t] = next;
    }
    if (!msg.empty()) {
      throw config_mismatch("stochgrad::mpi::sharded: the ranks' slices do not tile the tensors in rank order "
                            "(nothing was changed):" + msg);
    }
    ranges_ = std::move(ranges);
  }

  /// Global size of tensor `t` (the sum of the ranks' slices).
  std::uint64_t global_size(std::size_t t) const noexcept { return global_[t]; }
  /// Rank r's slice of tensor t.
  shard_range slice(int r, std::size_t t) const noexcept {
    return ranges_[static_cast<std::size_t>(r) * global_.size() + t];
  }

 private:
  std::vector<std::uint64_t> global_;
  std::vector<shard_range> ranges_;
};

}  // namespace stochgrad::mpi
