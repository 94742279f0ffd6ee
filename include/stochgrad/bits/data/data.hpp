// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/data/: data-centric estimators — LESS data selection, DGA
/// domain-mixture weights, Data Shapley (exact, TMC-Shapley, G-Shapley), GVM-RAFT's per-prompt sample
/// allocation.
#pragma once

#include "allocation.hpp"
#include "g_shapley.hpp"
#include "less.hpp"
#include "mixture.hpp"
#include "shapley.hpp"

/// @namespace stochgrad::data
/// Estimators of which data matter: `adam_direction`, `random_projector`, `less_score_matrix`,
/// `task_scores`, `select_top_fraction` (LESS, Xia et al. 2024), `domain_mixture`, `alignment`,
/// `adam_diag` (DGA, Fan et al. 2024), `exact_shapley`, `tmc_shapley`, `g_shapley` (Data Shapley,
/// Ghorbani & Zou 2019) and `gvm_ratios` / `gvm_sample_sizes` / `align_to_multiple` (GVM-RAFT).
