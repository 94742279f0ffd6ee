// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief DAPO's batch-side pieces (Yu et al. 2025, arXiv 2503.14476, as verl implements them):
/// overlong reward shaping (verl `DAPORewardManager`, verl/workers/reward_manager/dapo.py) and the
/// dynamic-sampling group filter with its accumulate-until-full rule (the recipe's
/// `dapo_ray_trainer.py`, as quoted in verl docs/algo/dapo.md).
///
/// DAPO's loss side is the existing clipped surrogate: clip-higher (`eps_high = 0.28`) and the
/// token-level aggregation (preset `dapo`). The pieces here act on a generation batch before the
/// step:
///
///     overlong shaping, per response of valid length L (L_max = max_length, L_buf = buffer_length):
///         expected = L_max - L_buf ;  exceed = L - expected
///         penalty  = min(-exceed / L_buf * factor, 0)    (0 up to L_max - L_buf, -factor at L_max)
///         r       += penalty                              (verl puts r on the last valid token)
///     dynamic sampling, per generation batch (metric = accuracy or score per sample):
///         keep group u  iff  std_p(metric over u) > 0  or  |u| = 1         (population std)
///         accumulate kept groups over generation batches until #kept >= train_batch_size,
///         then keep the first train_batch_size * n trajectories; error if max_num_gen_batches > 0
///         batches did not suffice.
///
/// Differences from the reference, deliberate:
/// - "std > 0" is decided exactly (the valid metrics are not all equal). numpy's `np.std` of
///   three copies of 0.1 is 1.4e-17 > 0, so the recipe keeps such a group; here it is dropped (a
///   constant group has no learning signal; spec rl_zo.md §7: "never keeps a group with equal
///   metrics of size >= 2"). For metrics that are short binary fractions (0/1 accuracies, the
///   recipe's case) both agree.
/// - A NaN metric (unscorable) in a group of two or more makes `np.std` NaN, so the recipe drops
///   the group; the same here. An infinite metric is rejected (`nonfinite_error`).
/// - Lengths beyond L_max keep the linear slope (verl's formula has no clamp; verl's responses
///   never exceed L_max).
/// "Overlong filtering" (masking truncated samples) is in the paper but not implemented in verl.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../outcome/group_layout.hpp"

namespace stochgrad {

/// Overlong reward shaping options (verl `reward_model.overlong_buffer`; defaults from the DAPO
/// recipe: max response length 20480, buffer 4096, penalty factor 1).
struct overlong_options {
  std::size_t max_length = 20480;    ///< L_max, the maximal response length; >= buffer_length
  std::size_t buffer_length = 4096;  ///< L_buf, the soft-penalty zone before L_max; >= 1
  double penalty_factor = 1.0;       ///< penalty at L = L_max; finite and >= 0

  /// @throws invalid_argument naming the option when buffer_length < 1, max_length < buffer_length
  ///         or penalty_factor is negative or not finite
  void validate() const {
    const char* w = "overlong_penalty";
    detail::require(buffer_length >= 1, w, "buffer_length", static_cast<double>(buffer_length), ">= 1");
    if (max_length < buffer_length) {
      throw invalid_argument(std::string(w) + ": the overlong buffer (buffer_length = " + std::to_string(buffer_length) +
                             ") is longer than the maximum length (max_length = " + std::to_string(max_length) +
                             "); DAPO requires max_length >= buffer_length");
    }
    detail::require(penalty_factor >= 0.0 && std::isfinite(penalty_factor), w, "penalty_factor", penalty_factor,
                    "finite and >= 0");
  }
};

namespace detail {

template <class I>
void check_lengths(const char* what, std::span<const I> lengths) {
  static_assert(std::is_arithmetic_v<I>, "stochgrad: lengths must be an arithmetic type");
  for (std::size_t n = 0; n < lengths.size(); ++n) {
    const double v = static_cast<double>(lengths[n]);
    if (!(v >= 0.0) || !std::isfinite(v)) {
      throw invalid_argument(std::string(what) + ": lengths[" + std::to_string(n) + "] = " + num_to_string(v) +
                             ", must be finite and >= 0");
    }
  }
}

// verl: overlong_reward = min(-exceed_len / overlong_buffer_len * overlong_penalty_factor, 0).
inline double overlong_value(double length, const overlong_options& o) noexcept {
  const double expected = static_cast<double>(o.max_length - o.buffer_length);
  const double exceed = length - expected;
  return std::min(-exceed / static_cast<double>(o.buffer_length) * o.penalty_factor, 0.0);
}

}  // namespace detail

/// DAPO's overlong penalty of each response (written, not added):
/// `out[n] = min(-(L_n - (L_max - L_buf)) / L_buf * factor, 0)`, i.e. 0 up to `L_max - L_buf`
/// tokens, then linear down to `-factor` at `L_max` (and beyond, with the same slope).
/// @param lengths  valid length L_n of each response (any arithmetic type; e.g. the mask's row sums)
/// @param o        L_max, L_buf and the factor
/// @param out      one penalty per response
/// @throws invalid_argument for bad options (L_max < L_buf, L_buf = 0, factor < 0) or a negative or
///         non-finite length; size_mismatch if `out.size() != lengths.size()`. Nothing is written then.
template <real_scalar T, class I>
void overlong_penalty(std::span<const I> lengths, const overlong_options& o, std::span<T> out) {
  o.validate();
  detail::require_same_size("overlong_penalty", "lengths", lengths.size(), "out", out.size());
  detail::check_lengths("overlong_penalty", lengths);
  for (std::size_t n = 0; n < lengths.size(); ++n) {
    out[n] = static_cast<T>(detail::overlong_value(static_cast<double>(lengths[n]), o));
  }
}

/// The same penalty with the spec's positional arguments: `overlong_penalty(lengths, L_max, L_buf,
/// factor, out)`. @throws as the options overload
template <real_scalar T, class I>
void overlong_penalty(std::span<const I> lengths, std::size_t max_length, std::size_t buffer_length,
                      double penalty_factor, std::span<T> out) {
  overlong_penalty(lengths, overlong_options{max_length, buffer_length, penalty_factor}, out);
}

/// Overlong reward shaping in place (verl `DAPORewardManager` with `overlong_buffer.enable`):
/// `rewards[n] += min(-(L_n - (L_max - L_buf)) / L_buf * factor, 0)`. A NaN reward stays NaN.
/// @param rewards  one reward per response, shaped in place
/// @param lengths  valid length of each response
/// @param o        L_max, L_buf and the factor
/// @throws as `overlong_penalty`; `rewards` is unchanged then
template <real_scalar T, class I>
void shape_overlong_rewards(std::span<T> rewards, std::span<const I> lengths, const overlong_options& o) {
  o.validate();
  detail::require_same_size("shape_overlong_rewards", "lengths", lengths.size(), "rewards", rewards.size());
  detail::check_lengths("shape_overlong_rewards", lengths);
  for (std::size_t n = 0; n < lengths.size(); ++n) {
    rewards[n] = static_cast<T>(static_cast<double>(rewards[n]) +
                                detail::overlong_value(static_cast<double>(lengths[n]), o));
  }
}

/// What `dynamic_sampling_filter` kept.
struct group_filter_result {
  std::size_t kept_groups = 0;     ///< groups kept (written to the front of `kept_groups`)
  std::size_t dropped_groups = 0;  ///< groups dropped (constant metric, or a NaN in a group of >= 2)
  std::size_t kept_samples = 0;    ///< samples in the kept groups
};

namespace detail {

template <class V>
void check_metric(const char* what, std::span<const V> metric, const group_layout& g) {
  static_assert(std::is_arithmetic_v<V>, "stochgrad: the dynamic-sampling metric must be an arithmetic type");
  require(metric.size() >= 1, what, "metric.size() (empty batch)", 0.0, ">= 1");
  require_same_size(what, "metric", metric.size(), "layout samples", g.samples());
  for (std::size_t n = 0; n < metric.size(); ++n) {
    const double v = static_cast<double>(metric[n]);
    if (std::isinf(v)) {
      throw nonfinite_error(std::string(what) + ": metric[" + std::to_string(n) + "] = " + num_to_string(v) +
                            " is infinite");
    }
  }
}

// DAPO's rule for group k: population std > 0 (values not all equal, no NaN) or exactly one sample.
template <class V>
bool keep_group(std::span<const V> metric, const group_layout& g, std::size_t k) {
  if (g.size_of(k) == 1) return true;
  bool nan = false, differ = false;
  const double first = static_cast<double>(metric[g.member(k, 0)]);
  g.for_each_member(k, [&](std::size_t n) {
    const double v = static_cast<double>(metric[n]);
    nan = nan || std::isnan(v);
    differ = differ || v != first;
  });
  return differ && !nan;
}

}  // namespace detail

/// DAPO's dynamic-sampling group filter on one generation batch: group u is kept iff the
/// population standard deviation of its metric is > 0 (its values are not all equal, see the file
/// comment) or it has exactly one sample. Kept group indices (the layout's numbering, i.e. order of
/// first appearance) are written to the front of `kept_groups` in increasing order.
/// @param metric       one metric value per sample (the recipe's "acc", "score", "seq_reward", ...)
/// @param g            grouping of the samples (prompt ids)
/// @param kept_groups  output of at least `g.groups()` elements
/// @return counts of kept and dropped groups and kept samples
/// @throws invalid_argument for an empty batch; size_mismatch if `metric.size() != g.samples()` or
///         `kept_groups` is shorter than `g.groups()`; nonfinite_error for an infinite metric.
///         Nothing is written then.
template <class V>
group_filter_result dynamic_sampling_filter(std::span<const V> metric, const group_layout& g,
                                            std::span<std::size_t> kept_groups) {
  const char* what = "dynamic_sampling_filter";
  detail::check_metric(what, metric, g);
  if (kept_groups.size() < g.groups()) {
    throw size_mismatch(std::string(what) + ": kept_groups has " + std::to_string(kept_groups.size()) +
                        " elements but the layout has " + std::to_string(g.groups()) + " groups");
  }
  group_filter_result res;
  for (std::size_t k = 0; k < g.groups(); ++k) {
    if (detail::keep_group(metric, g, k)) {
      kept_groups[res.kept_groups++] = k;
      res.kept_samples += g.size_of(k);
    } else {
      ++res.dropped_groups;
    }
  }
  return res;
}

/// Overload for non-const metric spans (same parameters, result and exceptions).
template <class V>
  requires(!std::is_const_v<V>)
group_filter_result dynamic_sampling_filter(std::span<V> metric, const group_layout& g,
                                            std::span<std::size_t> kept_groups) {
  return dynamic_sampling_filter(std::span<const V>(metric.data(), metric.size()), g, kept_groups);
}

/// Thrown by `dynamic_sampling::offer` when `max_num_gen_batches` generation batches did not give
/// `train_batch_size` kept prompts (the recipe's ValueError "Generated too many. Please check if
/// your data are too difficult").
class dynamic_sampling_exhausted : public error {
 public:
  using error::error;
};

/// Options of DAPO's accumulate-until-full loop (recipe `algorithm.filter_groups`,
/// `data.train_batch_size`, `actor_rollout_ref.rollout.n`; recipe example values).
struct dynamic_sampling_options {
  std::size_t train_batch_size = 512;    ///< prompts per training batch; >= 1
  std::size_t samples_per_prompt = 16;   ///< rollout n: the batch is cut to train_batch_size * n trajectories; >= 1
  std::size_t max_num_gen_batches = 10;  ///< generation batches tried per training batch; 0 = no limit

  /// @throws invalid_argument for a zero train_batch_size or samples_per_prompt, or an overflowing product
  void validate() const {
    const char* w = "dynamic_sampling";
    detail::require(train_batch_size >= 1, w, "train_batch_size", static_cast<double>(train_batch_size), ">= 1");
    detail::require(samples_per_prompt >= 1, w, "samples_per_prompt", static_cast<double>(samples_per_prompt), ">= 1");
    detail::checked_product(w, "train_batch_size", train_batch_size, "samples_per_prompt", samples_per_prompt);
  }
};

/// One kept trajectory: sample `sample` of generation batch `batch` (counted from the last `clear`).
struct kept_sample {
  std::size_t batch = 0;   ///< generation batch index since the last clear (0, 1, ...)
  std::size_t sample = 0;  ///< sample index within that batch
};

/// DAPO's dynamic sampling as a small stateful helper: offer each generation batch (its metric and
/// layout); the samples of the kept groups are recorded in sample order (the recipe's
/// `kept_traj_idxs`) and appended to those of earlier batches. Once at least `train_batch_size`
/// prompts are kept, `ready()` is true and `kept()` lists the first `train_batch_size *
/// samples_per_prompt` trajectories (the recipe's `batch[:traj_bsz]`); train on them, then `clear()`.
///
/// @code
/// stochgrad::dynamic_sampling ds({.train_batch_size = 2, .samples_per_prompt = 2, .max_num_gen_batches = 3});
/// const std::vector<double> acc{1, 1, 0, 1};                  // prompt 0 all correct: dropped
/// ds.offer<double>(acc, stochgrad::group_layout::contiguous(2, 2));   // 1 prompt kept, not ready
/// @endcode
/// Not thread-safe; `kept()` allocates as it grows (once per training batch).
class dynamic_sampling {
 public:
  /// Recipe example values (512 prompts, n = 16, 10 generation batches).
  dynamic_sampling() = default;
  /// @throws invalid_argument from `o.validate()`
  explicit dynamic_sampling(dynamic_sampling_options o) : o_(o) { o_.validate(); }

  /// Filters one generation batch and records its kept samples.
  /// @param metric  one metric per sample of this batch
  /// @param g       grouping of this batch's samples
  /// @return true when the training batch is complete (`ready()`)
  /// @throws state_error if the helper is already ready (call `clear()` after training);
  ///         invalid_argument / size_mismatch / nonfinite_error as `dynamic_sampling_filter`;
  ///         dynamic_sampling_exhausted if this was batch number `max_num_gen_batches` (> 0) and
  ///         the prompts kept are still fewer than `train_batch_size`. The state is unchanged
  ///         whenever it throws (an exhausted batch is not recorded).
  template <class V>
  bool offer(std::span<const V> metric, const group_layout& g) {
    if (ready_) {
      throw state_error("dynamic_sampling::offer: the training batch is complete; train on kept() and call clear()");
    }
    detail::check_metric("dynamic_sampling::offer", metric, g);
    std::size_t kept_prompts = 0, kept_samples = 0;
    keep_.resize(g.groups());  // scratch; its contents are not part of the state
    for (std::size_t k = 0; k < g.groups(); ++k) {
      keep_[k] = detail::keep_group(metric, g, k) ? 1 : 0;
      kept_prompts += keep_[k];
      kept_samples += keep_[k] != 0 ? g.size_of(k) : 0;
    }
    const std::size_t total = prompts_ + kept_prompts;
    const std::size_t batch = batches_ + 1;
    if (total < o_.train_batch_size && o_.max_num_gen_batches > 0 && batch >= o_.max_num_gen_batches) {
      throw dynamic_sampling_exhausted(
          "dynamic_sampling::offer: " + std::to_string(batch) + " generation batches (max_num_gen_batches = " +
          std::to_string(o_.max_num_gen_batches) + ") kept " + std::to_string(total) + " prompts < train_batch_size = " +
          std::to_string(o_.train_batch_size) +
          "; the data may be too difficult or too easy (set max_num_gen_batches = 0 for endless trials)");
    }
    kept_.reserve(kept_.size() + kept_samples);  // the only step that can fail (bad_alloc), before any change
    for (std::size_t n = 0; n < metric.size(); ++n) {
      if (keep_[g.group_of(n)] != 0) kept_.push_back(kept_sample{batches_, n});
    }
    prompts_ = total;
    batches_ = batch;
    if (prompts_ >= o_.train_batch_size) {
      ready_ = true;
      const std::size_t traj = o_.train_batch_size * o_.samples_per_prompt;
      if (kept_.size() > traj) kept_.resize(traj);
    }
    return ready_;
  }

  /// Overload for non-const metric spans (same parameters, result and exceptions).
  template <class V>
    requires(!std::is_const_v<V>)
  bool offer(std::span<V> metric, const group_layout& g) {
    return offer(std::span<const V>(metric.data(), metric.size()), g);
  }

  /// True once `train_batch_size` prompts are kept.
  bool ready() const noexcept { return ready_; }
  /// Kept prompts so far (before the truncation to trajectories).
  std::size_t kept_prompts() const noexcept { return prompts_; }
  /// Generation batches offered since the last clear.
  std::size_t generation_batches() const noexcept { return batches_; }
  /// Kept trajectories in order (batch, then sample); truncated once ready.
  std::span<const kept_sample> kept() const noexcept { return kept_; }
  /// The options.
  const dynamic_sampling_options& options() const noexcept { return o_; }
  /// Starts the next training batch (keeps the capacity).
  void clear() noexcept {
    kept_.clear();
    prompts_ = 0;
    batches_ = 0;
    ready_ = false;
  }

 private:
  dynamic_sampling_options o_{};
  std::vector<kept_sample> kept_;
  std::vector<unsigned char> keep_;  // per-group keep flags of the batch being offered (scratch)
  std::size_t prompts_ = 0;
  std::size_t batches_ = 0;
  bool ready_ = false;
};

}  // namespace stochgrad
