// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The estimator family tag, below every policy folder: policies declare the family they
/// belong to (`E::family`) or the one they are restricted to (`P::only_for_family`).
#pragma once

namespace stochgrad {

/// What kind of samples an estimator draws.
enum class estimator_family {
  first_order,      ///< the caller's gradient
  zeroth_order,     ///< losses at perturbed points, directions regenerated from seeds
  policy_gradient,  ///< rewards of sampled completions, score-function directions
};

}  // namespace stochgrad
