// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Free functions over zeroth-order steppers: `settle`, `estimate`, `replay`.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "../error.hpp"
#include "objective.hpp"
#include "replay_log.hpp"

namespace stochgrad::zo {

/// Removes a pending next-step perturbation (pass_mode::fused_next), so that the parameters hold
/// the current iterate (e.g. before evaluating or exporting the model). No-op otherwise.
template <class S>
void settle(S& s) {
  s.estimator().settle(s);
}

/// The zeroth-order gradient estimate at the current parameters, written to `out` (one span per
/// tensor), without an update: the same perturbations and evaluations as a step. The same as the
/// member `s.estimate(f, out)`.
template <class S, class F>
step_report estimate(S& s, F&& f, std::span<const std::span<typename S::value_type>> out) {
  return s.estimate(std::forward<F>(f), out);
}
/// @copydoc estimate
/// Single-tensor parameter sets.
template <class S, class F>
step_report estimate(S& s, F&& f, std::span<typename S::value_type> out) {
  return s.estimate(std::forward<F>(f), out);
}

/// Reconstructs a recorded run: starting from the parameters and stepper state the log was
/// recorded from (same configuration), replays entries [first, first + count) without calling the
/// objective. The result is bitwise identical to the recorded run (steps that threw are not in a
/// log; a run with such a step cannot be replayed exactly).
/// @throws state_error when an entry does not match the stepper's call counter.
template <class S>
void replay(S& s, const replay_log& log, std::size_t first = 0, std::size_t count = static_cast<std::size_t>(-1)) {
  const std::size_t n = log.size();
  const std::size_t b = first < n ? first : n;
  const std::size_t end = count > n - b ? n : b + count;
  for (std::size_t i = b; i < end; ++i) {
    s.estimator().replay(s, log[i], i + 1 < log.size() ? &log[i + 1] : nullptr);
  }
}

}  // namespace stochgrad::zo
