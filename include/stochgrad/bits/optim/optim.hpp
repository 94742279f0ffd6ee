// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/optim/: parameter sets, gradient sources, schedules and the
/// optimizer policies.
#pragma once

#include "adam.hpp"
#include "adan.hpp"
#include "mfac.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "parameters.hpp"
#include "schedule.hpp"
#include "sgd.hpp"
#include "sgmcmc.hpp"
#include "sgmcmc_samples.hpp"
#include "sgmcmc_schedule.hpp"
#include "source.hpp"
#include "large_batch.hpp"

/// @namespace stochgrad::optim
/// Optimizer policies (`sgd`, `adam`/`adamw`, `adan`, and the SG-MCMC samplers `sgld`, `psgld`,
/// `sghmc`) that turn a gradient source into an in-place
/// parameter update, with their per-run state and gradient clipping.
