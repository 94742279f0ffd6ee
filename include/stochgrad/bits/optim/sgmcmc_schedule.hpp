// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Step-size schedules of the SG-MCMC samplers (optim::sgld, optim::psgld, optim::sghmc):
/// polynomial decay (Welling & Teh 2011), the same fitted to a first and a last step size
/// (jax-sgmc `polynomial_step_size_first_last`), and the cyclical cosine schedule of cSG-MCMC
/// (Zhang et al. 2020). Each is a `schedule_policy`: a factor on the sampler's base step size.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "../error.hpp"
#include "schedule.hpp"

namespace stochgrad {

/// Polynomial decay \f[ s(k) = (b + k)^{-\gamma}, \qquad k = 0, 1, \dots \f]
/// With the sampler's base step size `a` this is Welling & Teh's `h_k = a (b + k)^(-gamma)`
/// (jax-sgmc `polynomial_step_size`; the defaults b = 1, gamma = 0.33 are its defaults). For
/// `gamma` in (0.5, 1] the sequence satisfies `sum h_k = inf`, `sum h_k^2 < inf`.
struct polynomial_decay {
  static constexpr const char* name = "polynomial_decay";  ///< part of the stepper's kind()
  double b = 1.0;       ///< offset, finite and > 0
  double gamma = 0.33;  ///< decay exponent, finite and >= 0
  /// @throws invalid_argument unless b > 0 and gamma >= 0, both finite.
  void validate() const {
    detail::require(b > 0.0 && std::isfinite(b), "polynomial_decay", "b", b, "finite and > 0");
    detail::require(gamma >= 0.0 && std::isfinite(gamma), "polynomial_decay", "gamma", gamma, "finite and >= 0");
  }
  /// Factor `(b + k)^(-gamma)` at step k.
  double operator()(std::uint64_t k) const noexcept { return std::pow(b + static_cast<double>(k), -gamma); }
};

/// Polynomial decay fitted to a first and a last step size over `iterations` steps (jax-sgmc
/// `polynomial_step_size_first_last`): \f[ s(k) = a\,(b + k)^{-\gamma}, \quad
/// a = \left(\frac{h_\text{last}^{-1/\gamma} - h_\text{first}^{-1/\gamma}}{K - 1}\right)^{-\gamma}, \quad
/// b = \left(\frac{h_\text{first}}{a}\right)^{-1/\gamma}, \f]
/// so `s(0) = first` and `s(K - 1) = last` (a and b computed in double at construction). The
/// factor is the absolute step size: use it with a sampler base step size `lr = 1`. With
/// `first == last` the factor is the constant `first`.
class first_last_polynomial {
 public:
  static constexpr const char* name = "first_last_polynomial";  ///< part of the stepper's kind()
  /// The jax-sgmc `alias.sgld` defaults (first 0.05, last 0.001, gamma 0.33) over `iterations` steps.
  /// @throws invalid_argument as the four-argument constructor.
  explicit first_last_polynomial(std::uint64_t iterations) : first_last_polynomial(0.05, 0.001, iterations) {}
  /// @param first step size at k = 0, finite and > 0
  /// @param last step size at k = iterations - 1, finite, > 0 and <= first
  /// @param iterations number of steps K (>= 2 unless first == last)
  /// @param gamma decay exponent, finite and > 0 (any finite value >= 0 when first == last)
  /// @throws invalid_argument naming the parameter, value and allowed range.
  first_last_polynomial(double first, double last, std::uint64_t iterations, double gamma = 0.33)
      : first_(first), last_(last), gamma_(gamma), iterations_(iterations) {
    const char* w = "first_last_polynomial";
    detail::require(first > 0.0 && std::isfinite(first), w, "first", first, "finite and > 0");
    detail::require(last > 0.0 && std::isfinite(last), w, "last", last, "finite and > 0");
    detail::require(first >= last, w, "last", last, "<= first (a decaying schedule)");
    detail::require(gamma >= 0.0 && std::isfinite(gamma), w, "gamma", gamma, "finite and >= 0");
    if (first == last) {
      a_ = first;
      b_ = 1.0;
      constant_ = true;
      return;
    }
    detail::require(gamma > 0.0, w, "gamma", gamma, "> 0 when first > last");
    detail::require(iterations >= 2, w, "iterations", static_cast<double>(iterations), ">= 2 when first > last");
    const double k1 = static_cast<double>(iterations - 1);
    a_ = std::pow((std::pow(last, -1.0 / gamma) - std::pow(first, -1.0 / gamma)) / k1, -gamma);
    b_ = std::pow(first / a_, -1.0 / gamma);
  }
  /// Step size `a (b + k)^(-gamma)` at step k (`first` for every k when first == last).
  double operator()(std::uint64_t k) const noexcept {
    return constant_ ? a_ : a_ * std::pow(b_ + static_cast<double>(k), -gamma_);
  }
  /// The fitted scale a.
  double a() const noexcept { return a_; }
  /// The fitted offset b.
  double b() const noexcept { return b_; }
  /// The decay exponent gamma.
  double gamma() const noexcept { return gamma_; }
  /// The step size at k = 0.
  double first() const noexcept { return first_; }
  /// The step size at k = iterations - 1.
  double last() const noexcept { return last_; }
  /// The number of iterations K the schedule was fitted to.
  std::uint64_t iterations() const noexcept { return iterations_; }

 private:
  double first_, last_, gamma_;
  std::uint64_t iterations_;
  double a_ = 1.0, b_ = 1.0;
  bool constant_ = false;
};

/// Cyclical cosine schedule of cSG-MCMC (Zhang, Li, Zhang, Chen, Wilson, ICLR 2020; not in
/// jax-sgmc): with cycle length \f$ L = \lceil K / M \rceil \f$,
/// \f[ s(k) = \tfrac{1}{2}\left(\cos\left(\pi\,\frac{k \bmod L}{L}\right) + 1\right), \f]
/// so every cycle restarts at factor 1 and decays toward 0.
struct cyclical_cosine {
  static constexpr const char* name = "cyclical_cosine";  ///< part of the stepper's kind()
  std::uint64_t total = 1;   ///< total iterations K, > 0
  std::uint64_t cycles = 1;  ///< number of cycles M, in [1, total]
  /// @throws invalid_argument unless total > 0 and 1 <= cycles <= total.
  void validate() const {
    detail::require(total > 0, "cyclical_cosine", "total", static_cast<double>(total), "> 0");
    detail::require(cycles >= 1 && cycles <= total, "cyclical_cosine", "cycles", static_cast<double>(cycles),
                    "in [1, total]");
  }
  /// The cycle length `ceil(total / cycles)` (at least 1).
  std::uint64_t cycle_length() const noexcept {
    const std::uint64_t m = cycles == 0 ? 1 : cycles;
    const std::uint64_t l = total / m + (total % m != 0 ? 1 : 0);
    return l == 0 ? 1 : l;
  }
  /// Factor `(cos(pi (k mod L) / L) + 1) / 2` at step k.
  double operator()(std::uint64_t k) const noexcept {
    const std::uint64_t l = cycle_length();
    return 0.5 * (std::cos(std::numbers::pi * static_cast<double>(k % l) / static_cast<double>(l)) + 1.0);
  }
};

}  // namespace stochgrad
