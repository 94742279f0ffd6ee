// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Perturbation schedules of the difference estimators: how the perturbation size (and,
/// for DREAM, the number of query directions) changes with the step number k = 0, 1, 2, ...
///
/// A perturbation schedule is any `schedule_policy` (optim/schedule.hpp): `s(k)` multiplies the
/// estimator's `eps`. It may also have `s.queries(k, q)`, the number of directions at step k
/// given the configured q (default: q). Learning-rate gains (Spall's a_k) are the optimizer's
/// schedule (`spall_gain`), not this one.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../error.hpp"
#include "../optim/schedule.hpp"

namespace stochgrad::zo {

/// Spall's perturbation gain: `c_k = c / (k + 1)^gamma` (Spall, IEEE TAES 34(3), 1998), the
/// factor `1 / (k + 1)^gamma` on `eps = c`. Default gamma = 0.101 (practical value; with the gain
/// exponent alpha = 0.602, `2 (alpha - gamma) = 1.002 > 1` as convergence requires). BlackVIP's
/// `c_k = c / k^gamma` with k starting at 1 is the same sequence.
struct spall_perturbation {
  static constexpr const char* name = "spall_perturbation";  ///< part of the stepper's kind()
  double gamma = 0.101;  ///< decay exponent, >= 0
  /// @throws invalid_argument if gamma < 0 or not finite.
  void validate() const {
    stochgrad::detail::require(gamma >= 0.0 && std::isfinite(gamma), "spall_perturbation", "gamma", gamma, ">= 0 and finite");
  }
  /// eps factor `1 / (k + 1)^gamma` at step k.
  double operator()(std::uint64_t k) const noexcept { return 1.0 / std::pow(static_cast<double>(k) + 1.0, gamma); }
};

/// DREAM's GC-SPSA schedule (AntigoneRandy/DREAM `src/trainer.py`), driven by the fractional epoch
/// `e = k / steps_per_epoch` (HuggingFace's state.epoch after k updates):
/// ```
///   q_e   = max(1, floor(q / 2^floor(e / halve_every)))     (DREAM: q = 4, halve_every = 2)
///   eps_e = eps / (1 + e / decay_epochs)^decay_power        (DREAM: 100 and 0.2)
/// ```
struct dream_schedule {
  static constexpr const char* name = "dream_schedule";  ///< part of the stepper's kind()
  std::uint64_t steps_per_epoch = 1;  ///< optimizer steps per epoch, >= 1
  std::uint64_t halve_every = 2;      ///< epochs between halvings of q, >= 1
  double decay_epochs = 100.0;        ///< > 0
  double decay_power = 0.2;           ///< >= 0
  /// @throws invalid_argument for a value outside its range.
  void validate() const {
    stochgrad::detail::require(steps_per_epoch >= 1, "dream_schedule", "steps_per_epoch", static_cast<double>(steps_per_epoch), ">= 1");
    stochgrad::detail::require(halve_every >= 1, "dream_schedule", "halve_every", static_cast<double>(halve_every), ">= 1");
    stochgrad::detail::require(decay_epochs > 0.0 && std::isfinite(decay_epochs), "dream_schedule", "decay_epochs", decay_epochs,
                    "> 0 and finite");
    stochgrad::detail::require(decay_power >= 0.0 && std::isfinite(decay_power), "dream_schedule", "decay_power", decay_power,
                    ">= 0 and finite");
  }
  /// The fractional epoch after k updates.
  double epoch(std::uint64_t k) const noexcept { return static_cast<double>(k) / static_cast<double>(steps_per_epoch); }
  /// eps factor `1 / (1 + e/decay_epochs)^decay_power`.
  double operator()(std::uint64_t k) const noexcept {
    return 1.0 / std::pow(1.0 + epoch(k) / decay_epochs, decay_power);
  }
  /// `max(1, floor(q / 2^floor(e / halve_every)))`, in integers.
  std::size_t queries(std::uint64_t k, std::size_t q) const noexcept {
    const std::uint64_t halvings = k / (steps_per_epoch * halve_every);
    const std::size_t v = halvings >= 64 ? 0 : static_cast<std::size_t>(static_cast<std::uint64_t>(q) >> halvings);
    return v < 1 ? 1 : v;
  }
};

namespace detail {

template <class S>
void validate_schedule(const S& s) {
  if constexpr (requires { s.validate(); }) s.validate();
}

/// q at step k under schedule s.
template <class S>
std::size_t queries_at(const S& s, std::uint64_t k, std::size_t q) noexcept {
  if constexpr (requires { { s.queries(k, q) } -> std::convertible_to<std::size_t>; }) {
    return static_cast<std::size_t>(s.queries(k, q));
  } else {
    return q;
  }
}

}  // namespace detail
}  // namespace stochgrad::zo
