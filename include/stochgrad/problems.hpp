// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Opt-in: the built-in test problems and data loaders of `stochgrad::problems` (quadratics,
/// Rosenbrock, the CSV and idx (MNIST-format) dataset loaders, logistic and softmax regression, a small MLP, the 2-digit addition
/// policy for verifiable-reward RL). Used by the examples, the tests and the harness; a trainer
/// that only needs the estimators includes `<stochgrad/stochgrad.hpp>` and not this.
#pragma once

#include "bits/problems/problems.hpp"
