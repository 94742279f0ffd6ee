// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Learning-rate schedules as policies: a schedule maps the step number k = 0, 1, 2, ...
/// to a factor that multiplies the optimizer's base learning rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>

#include "../base/names.hpp"
#include "../error.hpp"

namespace stochgrad {

/// A schedule: `s(k)` is the learning-rate factor at step k (k counts from 0).
template <class S>
concept schedule_policy = requires(const S& s, std::uint64_t k) {
  { s(k) } -> std::convertible_to<double>;
};

/// Factor 1 at every step.
struct constant_schedule {
  static constexpr const char* name = "constant";  ///< part of the stepper's kind()
  /// Factor 1 for every step k.
  double operator()(std::uint64_t) const noexcept { return 1.0; }
};

/// Linear warm-up: factor (k + 1) / warmup for k < warmup, then 1.
struct linear_warmup {
  static constexpr const char* name = "linear_warmup";  ///< part of the stepper's kind()
  std::uint64_t warmup = 0;  ///< warm-up steps (0: none)
  /// Factor `(k + 1) / warmup` for k < warmup, else 1.
  double operator()(std::uint64_t k) const noexcept {
    return (warmup == 0 || k >= warmup) ? 1.0 : static_cast<double>(k + 1) / static_cast<double>(warmup);
  }
};

/// Linear warm-up then cosine decay from 1 to `min_factor` at step `total` (constant after).
struct cosine_schedule {
  static constexpr const char* name = "cosine";  ///< part of the stepper's kind()
  std::uint64_t total = 1;   ///< step at which the decay ends (> warmup)
  std::uint64_t warmup = 0;  ///< linear warm-up steps
  double min_factor = 0.0;   ///< final factor, in [0, 1]
  /// @throws invalid_argument if total <= warmup or min_factor outside [0, 1].
  void validate() const {
    detail::require(total > warmup, "cosine_schedule", "total", static_cast<double>(total), "> warmup");
    detail::require(min_factor >= 0.0 && min_factor <= 1.0, "cosine_schedule", "min_factor", min_factor, "in [0, 1]");
  }
  /// Factor at step k: `(k + 1) / warmup` for k < warmup; `min + (1 - min) (1 + cos(pi p)) / 2` with
  /// `p = (k - warmup) / (total - warmup)` for warmup <= k < total; `min_factor` for k >= total.
  double operator()(std::uint64_t k) const noexcept {
    if (k < warmup) return static_cast<double>(k + 1) / static_cast<double>(warmup);
    if (k >= total) return min_factor;
    const double p = static_cast<double>(k - warmup) / static_cast<double>(total - warmup);
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
  }
};

/// Step decay: factor gamma^floor(k / every).
struct step_decay {
  static constexpr const char* name = "step_decay";  ///< part of the stepper's kind()
  std::uint64_t every = 1;  ///< steps between decays (> 0)
  double gamma = 0.1;       ///< multiplicative decay (in (0, 1])
  /// @throws invalid_argument if every == 0 or gamma outside (0, 1].
  void validate() const {
    detail::require(every > 0, "step_decay", "every", static_cast<double>(every), "> 0");
    detail::require(gamma > 0.0 && gamma <= 1.0, "step_decay", "gamma", gamma, "in (0, 1]");
  }
  /// Factor `gamma^floor(k / every)` at step k.
  double operator()(std::uint64_t k) const noexcept {
    return std::pow(gamma, static_cast<double>(k / every));
  }
};

/// Spall's gain sequence factor `1 / (k + 1 + A)^alpha` (Spall 1998): with base learning rate `a`
/// this is `a_k = a / (k + 1 + A)^alpha`; with A = 0, alpha = gamma it is the `c_k / c` factor.
/// Practical defaults alpha = 0.602 (gain a_k), gamma = 0.101 (perturbation c_k).
struct spall_gain {
  static constexpr const char* name = "spall_gain";  ///< part of the stepper's kind()
  double A = 0.0;        ///< stability constant (about 10 % of the iterations), >= 0
  double alpha = 0.602;  ///< decay exponent, > 0
  /// @throws invalid_argument if A < 0, alpha <= 0, or either is not finite.
  void validate() const {
    detail::require(A >= 0.0 && std::isfinite(A), "spall_gain", "A", A, "finite and >= 0");
    detail::require(alpha > 0.0 && std::isfinite(alpha), "spall_gain", "alpha", alpha, "finite and > 0");
  }
  /// Factor `1 / (k + 1 + A)^alpha` at step k.
  double operator()(std::uint64_t k) const noexcept { return 1.0 / std::pow(static_cast<double>(k) + 1.0 + A, alpha); }
};

}  // namespace stochgrad
