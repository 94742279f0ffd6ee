// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/data/: data-centric estimators — Data Shapley (exact and
/// TMC-Shapley) and GVM-RAFT's per-prompt sample allocation.
#pragma once

#include "allocation.hpp"
#include "shapley.hpp"

/// @namespace stochgrad::data
/// Estimators of which data matter: `exact_shapley`, `tmc_shapley` (Data Shapley, Ghorbani & Zou
/// 2019) and `gvm_ratios` / `gvm_sample_sizes` / `align_to_multiple` (GVM-RAFT).
