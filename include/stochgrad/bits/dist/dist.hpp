// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The distribution-parameter estimator family `stochgrad::dist` (gradients of
/// `E_{z ~ q_phi}[f(z)]` with respect to `phi`; spec shared/design/seeds/variational.md): the
/// distributions, the strategies (score function, pathwise, enumeration, measure-valued), the
/// objectives (expectation, ELBO, IWAE), Gaussian mixtures with their per-choice
/// strategy compositions, and the stepper's estimator policy.
#pragma once

#include "distributions.hpp"
#include "estimator.hpp"
#include "mixture.hpp"
#include "noise.hpp"
#include "objectives.hpp"
#include "strategies.hpp"
#include "automate_cot.hpp"
#include "trice.hpp"
