// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Compile-time names of policies: what a stepper's `kind()` is made of. Saved state is
/// refused by a stepper whose kind differs, so every policy that changes a trajectory (estimator,
/// direction, perturbation schedule, mask, generator, baseline, normalizer, optimizer and its
/// learning-rate schedule, scalar type) contributes its name. Numeric hyper-parameters (learning
/// rates, eps, clip ranges) are the caller's to change on resume and are not part of it.
#pragma once

#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <string_view>

namespace stochgrad::detail {

/// A short compile-time name assembled from parts (at most 127 characters; longer is cut).
struct fixed_name {
  char text[128]{};  ///< NUL-terminated
  constexpr fixed_name(std::initializer_list<std::string_view> parts) {
    std::size_t n = 0;
    for (std::string_view s : parts) {
      for (char c : s) {
        if (n + 1 < sizeof text) text[n++] = c;
      }
    }
  }
};

/// A policy's `name`, or "custom" for policies that do not declare one.
template <class P>
constexpr const char* policy_name() {
  if constexpr (requires { { P::name } -> std::convertible_to<const char*>; }) {
    return P::name;
  } else {
    return "custom";
  }
}

/// Decimal text of a small non-negative integer (0..99), for names such as "philox<10>".
struct small_int_text {
  char text[3]{};  ///< NUL-terminated
  constexpr explicit small_int_text(int v) {
    if (v >= 10) {
      text[0] = static_cast<char>('0' + (v / 10) % 10);
      text[1] = static_cast<char>('0' + v % 10);
    } else {
      text[0] = static_cast<char>('0' + (v < 0 ? 0 : v));
    }
  }
};

}  // namespace stochgrad::detail
