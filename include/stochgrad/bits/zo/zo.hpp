// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/zo/: zeroth-order estimators (two_point, one_sided,
/// coordinate_wise), directions, masks, perturbation schedules, GC-SPSA's optimizer, replay, and
/// the presets mezo, sparse_mezo, spsa, spsa_gc, gc_spsa, rge, cge, antithetic_es.
#pragma once

#include "../config.hpp"
#include "coordinate.hpp"
#include "difference.hpp"
#include "directions.hpp"
#include "gc_spsa.hpp"
#include "helpers.hpp"
#include "kernels.hpp"
#include "mask.hpp"
#include "objective.hpp"
#include "presets.hpp"
#include "replay_log.hpp"
#include "schedules.hpp"
