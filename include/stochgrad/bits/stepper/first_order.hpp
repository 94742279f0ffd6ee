// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The first-order estimator: the gradient is supplied by the caller (the `adan` preset).
#pragma once

#include <span>
#include <type_traits>

#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "stepper_template.hpp"

namespace stochgrad {

/// Estimator policy: the user's own gradient (exact or from their autodiff). There are no
/// outcomes to shape, so the baseline and normalizer must be `no_baseline` and `no_normalizer`.
struct first_order {
  /// Identifies the estimator in saved state and in the stepper's kind().
  static constexpr const char* name = "first_order";
  /// Estimator family: the caller's gradient.
  static constexpr estimator_family family = estimator_family::first_order;

  /// No estimator state.
  template <class T>
  struct state {
    /// Writes / reads nothing (serialize.hpp archive protocol).
    template <class Ar>
    void serialize(Ar&) {}
  };
  /// Fresh (empty) state for any parameter set.
  template <class T>
  state<T> init(const parameters<T>&) const {
    return {};
  }

  /// Compile-time composition check (stepper_template.hpp): static_asserts that B is `no_baseline`
  /// and N is `no_normalizer`.
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_same_v<B, no_baseline>,
                  "stochgrad: first_order takes the caller's gradient, which has no outcomes to subtract a "
                  "baseline from: use no_baseline");
    static_assert(std::is_same_v<N, no_normalizer>,
                  "stochgrad: first_order takes the caller's gradient, which has no outcomes to normalize: "
                  "use no_normalizer");
    return true;
  }

  /// One step with the gradient of a single-tensor parameter set.
  template <class S>
  update_report step(S& s, std::span<const typename S::value_type> g) const {
    return s.apply(dense_gradient<typename S::value_type>(g));
  }
  /// One step with one gradient span per tensor.
  template <class S>
  update_report step(S& s, std::span<const std::span<const typename S::value_type>> g) const {
    return s.apply(dense_gradient<typename S::value_type>(g));
  }
  /// One step with any gradient source (dense, lazy noise, scaled ...).
  template <class S, class Source>
    requires gradient_source<Source, typename S::value_type>
  update_report step(S& s, const Source& g) const {
    return s.apply(g);
  }
};

}  // namespace stochgrad
