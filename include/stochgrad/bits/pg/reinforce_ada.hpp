// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Reinforce-Ada adaptive sampling by successive elimination (RLHFlow/Reinforce-Ada,
/// `ray_trainer.py` `_generate_multi_round_adaptive_downsampling`).
///
/// Instead of a fixed G per prompt, sample in rounds of R per active prompt and stop sampling a
/// prompt once its pool holds enough positive and negative examples; hard prompts keep getting
/// samples. This avoids groups whose rewards are all equal (zero GRPO signal).
///
///     per prompt: pos pool, neg pool (sample ids in insertion order); positive iff reward > tau
///     for round = 1..T while some prompt is active:
///         R new samples per active prompt; append to the pools
///         exit "balanced":          |pos| >= floor(n/2) and |neg| >= n - floor(n/2)
///         exit "positive_focused":  |pos| >= 1
///         a prompt that exits is finished: select its n samples (below)
///     after T rounds, unfinished prompts fall back to the same selection with take = min(n, |pos| + |neg|)
///     targets: balanced   target_pos = floor(n/2)
///              positive_focused   target_pos = clip(ceil(|pos| / (|pos| + |neg|) * n), 1, take - 1)
///              (take <= 1: min(|pos|, take));  target_neg = take - target_pos
///     selection: the FIRST min(target, |pool|) samples of each pool (no randomness); if short, top
///                up from the pool that has extra (positives first)
///
/// The pool counts (all samples of all rounds, not only the kept ones) feed the global-statistics
/// baseline `pool_mean` / `pool_std` (bits/outcome/pool.hpp, §5.2). Sample ids are
/// `round * R + j` (j < R) within a prompt: what the caller's generator used for that sample.
/// Randomness lives in the caller's generator only (seeded and counter-based in the tests).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../base/scratch.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/pool.hpp"

namespace stochgrad {

/// Exit rule of Reinforce-Ada.
enum class ada_exit {
  balanced,          ///< enough positives AND negatives (floor(n/2) and n - floor(n/2))
  positive_focused,  ///< at least one positive
};

/// Options (defaults: Reinforce-Ada's algorithm.py; the training script uses keep = 4).
struct reinforce_ada_options {
  std::size_t round_repeat = 8;     ///< R: samples per active prompt per round; >= 1
  std::size_t max_rounds = 4;       ///< T; >= 1
  std::size_t keep = 4;             ///< n: samples kept per prompt; >= 1
  double positive_threshold = 0.7;  ///< tau: positive iff reward > tau
  ada_exit exit = ada_exit::balanced;  ///< exit rule
};

/// One Reinforce-Ada batch: drive it round by round (`active`, `observe`, `end_round`) or with
/// `run`. Buffers grow with the largest batch seen and are reused.
class reinforce_ada {
 public:
  /// @throws invalid_argument for options outside their ranges
  explicit reinforce_ada(reinforce_ada_options o = {}) : o_(o) {
    const char* w = "reinforce_ada";
    detail::require(o.round_repeat >= 1, w, "round_repeat", static_cast<double>(o.round_repeat), ">= 1");
    detail::require(o.max_rounds >= 1, w, "max_rounds", static_cast<double>(o.max_rounds), ">= 1");
    detail::require(o.keep >= 1, w, "keep", static_cast<double>(o.keep), ">= 1");
    detail::require(std::isfinite(o.positive_threshold), w, "positive_threshold", o.positive_threshold, "finite");
  }

  /// The options.
  const reinforce_ada_options& options() const noexcept { return o_; }

  /// Starts a batch of `prompts` prompts (all active, round 0). @throws invalid_argument if 0
  void begin(std::size_t prompts) {
    detail::require(prompts >= 1, "reinforce_ada::begin", "prompts (empty batch)", 0.0, ">= 1");
    P_ = prompts;
    const std::size_t cap = o_.round_repeat * o_.max_rounds;
    stochgrad::detail::grow(pos_id_, P_ * cap);
    stochgrad::detail::grow(neg_id_, P_ * cap);
    stochgrad::detail::grow(pos_r_, P_ * cap);
    stochgrad::detail::grow(neg_r_, P_ * cap);
    stochgrad::detail::grow(npos_, P_);
    stochgrad::detail::grow(nneg_, P_);
    stochgrad::detail::grow(finished_, P_);
    stochgrad::detail::grow(rounds_, P_);
    stochgrad::detail::grow(observed_, P_);
    stochgrad::detail::grow(active_, P_);
    stochgrad::detail::grow(pool_, P_);
    stochgrad::detail::grow(sel_id_, P_ * o_.keep);
    stochgrad::detail::grow(sel_r_, P_ * o_.keep);
    stochgrad::detail::grow(nsel_, P_);
    for (std::size_t u = 0; u < P_; ++u) {
      npos_[u] = nneg_[u] = 0;
      finished_[u] = 0;
      rounds_[u] = 0;
      observed_[u] = 0;
      nsel_[u] = 0;
      pool_[u] = pool_counts{};
      active_[u] = u;
    }
    nactive_ = P_;
    round_ = 0;
    closed_ = false;
  }

  /// Prompts that need `round_repeat` new samples in the current round (empty when done).
  std::span<const std::size_t> active() const noexcept { return {active_.data(), closed_ ? 0 : nactive_}; }
  /// Current round (0-based).
  std::size_t round() const noexcept { return round_; }
  /// True once every prompt has its selection.
  bool done() const noexcept { return closed_; }

  /// Reports the `round_repeat` rewards of active prompt `u` for the current round.
  /// @throws invalid_argument / size_mismatch / state_error on misuse
  void observe(std::size_t u, std::span<const double> rewards) {
    const char* w = "reinforce_ada::observe";
    if (closed_) throw state_error("reinforce_ada::observe: the batch is finished; call begin()");
    detail::require(u < P_, w, "prompt", static_cast<double>(u), "< prompts");
    detail::require_same_size(w, "rewards", rewards.size(), "round_repeat", o_.round_repeat);
    if (finished_[u]) throw state_error("reinforce_ada::observe: prompt already finished");
    if (observed_[u]) throw state_error("reinforce_ada::observe: prompt already observed in this round");
    const std::size_t cap = o_.round_repeat * o_.max_rounds;
    for (std::size_t j = 0; j < rewards.size(); ++j) {
      const double r = rewards[j];
      detail::require(!std::isnan(r), w, "reward", r, "not NaN");
      const std::size_t id = round_ * o_.round_repeat + j;
      if (r > o_.positive_threshold) {
        pos_id_[u * cap + npos_[u]] = id;
        pos_r_[u * cap + npos_[u]++] = r;
        ++pool_[u].positives;
      } else {
        neg_id_[u * cap + nneg_[u]] = id;
        neg_r_[u * cap + nneg_[u]++] = r;
        ++pool_[u].negatives;
      }
    }
    observed_[u] = 1;
    ++rounds_[u];
  }

  /// Closes the current round: prompts meeting the exit rule are finished and selected; after the
  /// last round the others fall back. @throws state_error if an active prompt was not observed
  void end_round() {
    if (closed_) throw state_error("reinforce_ada::end_round: the batch is finished; call begin()");
    for (std::size_t a = 0; a < nactive_; ++a) {
      if (!observed_[active_[a]]) {
        throw state_error("reinforce_ada::end_round: an active prompt was not observed this round");
      }
    }
    std::size_t k = 0;
    for (std::size_t a = 0; a < nactive_; ++a) {
      const std::size_t u = active_[a];
      observed_[u] = 0;
      if (exits(u)) {
        finished_[u] = 1;
        select(u);
      } else {
        active_[k++] = u;
      }
    }
    nactive_ = k;
    ++round_;
    if (round_ >= o_.max_rounds || nactive_ == 0) {
      for (std::size_t a = 0; a < nactive_; ++a) select(active_[a]);
      nactive_ = 0;
      closed_ = true;
    }
  }

  /// Runs a whole batch: `generate(prompt, round, std::span<double> rewards)` fills the
  /// `round_repeat` rewards of samples `round * R + j` of `prompt`.
  template <class F>
  void run(std::size_t prompts, F&& generate) {
    begin(prompts);
    std::vector<double>& buf = buf_;
    stochgrad::detail::grow(buf, o_.round_repeat);
    while (!closed_) {
      for (std::size_t a = 0; a < nactive_; ++a) {
        const std::size_t u = active_[a];
        std::span<double> r(buf.data(), o_.round_repeat);
        generate(u, round_, r);
        observe(u, std::span<const double>(r));
      }
      end_round();
    }
  }

  /// Number of prompts of the batch.
  std::size_t prompts() const noexcept { return P_; }
  /// True if prompt u met the exit rule (false: it fell back after the last round).
  bool finished(std::size_t u) const {
    check(u);
    return finished_[u] != 0;
  }
  /// Rounds in which prompt u was sampled.
  std::size_t rounds_sampled(std::size_t u) const {
    check(u);
    return rounds_[u];
  }
  /// Kept sample ids of prompt u (positives first).
  std::span<const std::size_t> selected(std::size_t u) const {
    check(u);
    return {sel_id_.data() + u * o_.keep, nsel_[u]};
  }
  /// Rewards of the kept samples of prompt u, in the order of `selected(u)`.
  std::span<const double> selected_rewards(std::size_t u) const {
    check(u);
    return {sel_r_.data() + u * o_.keep, nsel_[u]};
  }
  /// Pool counts of every prompt (for `pool_mean` / `pool_std`, one entry per prompt).
  std::span<const pool_counts> pool() const noexcept { return {pool_.data(), P_}; }

 private:
  void check(std::size_t u) const {
    detail::require(u < P_, "reinforce_ada", "prompt", static_cast<double>(u), "< prompts");
  }
  bool exits(std::size_t u) const {
    const std::size_t half = o_.keep / 2;
    if (o_.exit == ada_exit::balanced) return npos_[u] >= half && nneg_[u] >= o_.keep - half;
    return npos_[u] >= 1;
  }
  void select(std::size_t u) {
    const std::size_t cap = o_.round_repeat * o_.max_rounds;
    const std::size_t np = npos_[u], nn = nneg_[u];
    const std::size_t take = std::min(o_.keep, np + nn);
    std::size_t tp;
    if (o_.exit == ada_exit::balanced) {
      tp = std::min(o_.keep / 2, take);
    } else if (take <= 1) {
      tp = std::min(np, take);
    } else {
      const double frac = static_cast<double>(np) / static_cast<double>(np + nn);
      const auto c = static_cast<std::size_t>(std::ceil(frac * static_cast<double>(o_.keep)));
      tp = std::min(std::max<std::size_t>(c, 1), take - 1);
    }
    const std::size_t tn = take - tp;
    std::size_t ip = std::min(tp, np), in = std::min(tn, nn);
    // Top up: positives first, then negatives.
    while (ip + in < take && ip < np) ++ip;
    while (ip + in < take && in < nn) ++in;
    std::size_t k = 0;
    for (std::size_t j = 0; j < ip; ++j, ++k) {
      sel_id_[u * o_.keep + k] = pos_id_[u * cap + j];
      sel_r_[u * o_.keep + k] = pos_r_[u * cap + j];
    }
    for (std::size_t j = 0; j < in; ++j, ++k) {
      sel_id_[u * o_.keep + k] = neg_id_[u * cap + j];
      sel_r_[u * o_.keep + k] = neg_r_[u * cap + j];
    }
    nsel_[u] = k;
  }

  reinforce_ada_options o_;
  std::size_t P_ = 0, nactive_ = 0, round_ = 0;
  bool closed_ = true;
  std::vector<std::size_t> pos_id_, neg_id_, npos_, nneg_, rounds_, active_, sel_id_, nsel_;
  std::vector<double> pos_r_, neg_r_, sel_r_, buf_;
  std::vector<unsigned char> finished_, observed_;
  std::vector<pool_counts> pool_;
};

}  // namespace stochgrad
