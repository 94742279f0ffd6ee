// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The first-order preset. Every preset is a one-line alias of `stepper`; the
/// zeroth-order presets (`mezo`, `spsa`) live in bits/zo/presets.hpp and the policy-gradient ones
/// (`grpo`, `bnpo`) in bits/pg/presets.hpp.
#pragma once

#include "../optim/adan.hpp"
#include "../outcome/policies.hpp"
#include "first_order.hpp"
#include "stepper_template.hpp"

namespace stochgrad {

/// Adan on the caller's gradients (sail-sg/timm semantics, algorithms.md §9.3):
/// `stochgrad::adan<float> s(params, optim::adan<>({.lr = 1e-3, .weight_decay = 0.02}));`
/// then `s.step(gradient)` each iteration.
template <class T = float>
using adan = stepper<first_order, no_baseline, no_normalizer, optim::adan<>, T>;

}  // namespace stochgrad
