// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Zeroth-order presets: one-line aliases of `stepper` (construct with the policies'
/// options, e.g. `mezo<float> s(params, optim::sgd<>({.lr = 1e-6}), zo::two_point<gaussian>({.eps = 1e-3}))`).
#pragma once

#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../outcome/outcome.hpp"
#include "../rng/noise.hpp"
#include "../stepper/stepper_template.hpp"
#include "coordinate.hpp"
#include "difference.hpp"
#include "directions.hpp"
#include "gc_spsa.hpp"
#include "mask.hpp"
#include "schedules.hpp"

namespace stochgrad {

/// MeZO (Malladi et al. 2023): Gaussian two-point estimate, seed trick, SGD with coupled weight
/// decay (exclude biases/norms with a parameter group `decay = false`).
template <class T = float>
using mezo = stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T>;

/// Sparse MeZO (arXiv 2402.15751): MeZO on the smallest-magnitude entries of each tensor.
template <class T = float>
using sparse_mezo = stepper<zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>, no_baseline, no_normalizer,
                            optim::sgd<>, T>;

/// Spall SPSA: Rademacher two-point estimate with c_k = c/(k+1)^gamma, SGD with a_k = a/(k+1+A)^alpha
/// (optim::sgd<spall_gain>; Nesterov momentum gives SPSA-GC's gradient correction).
template <class T = float>
using spsa = stepper<zo::two_point<rademacher, zo::spall_perturbation>, no_baseline, no_normalizer,
                     optim::sgd<spall_gain>, T>;

/// SPSA-GC (BlackVIP): segmented-uniform inverse-form SPSA; with optim::sgd Nesterov momentum beta
/// and spall_gain{A = o} it is BlackVIP's code form (algorithms.md §8.2).
template <class T = float>
using spsa_gc = stepper<zo::two_point<segmented_uniform, zo::spall_perturbation>, no_baseline, no_normalizer,
                        optim::sgd<spall_gain>, T>;

/// GC-SPSA (DREAM): Gaussian directions with the q_e / eps_e schedule and the adaptive momentum.
template <class T = float>
using gc_spsa = stepper<zo::two_point<gaussian, zo::dream_schedule>, no_baseline, no_normalizer, zo::gc_spsa_sgd<>, T>;

/// RGE (ZO-AE-DS): forward differences along q unit-sphere directions, scaled by d/q.
template <class T = float>
using rge = stepper<zo::one_sided<unit_sphere>, no_baseline, no_normalizer, optim::sgd<>, T>;

/// CGE (ZO-AE-DS): coordinate-wise central differences (2d evaluations per step).
template <class T = float>
using cge = stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, T>;

/// Antithetic evolution strategies: q Gaussian pairs, outcomes shaped by the group mean and std.
template <class T = float>
using antithetic_es = stepper<zo::two_point<gaussian>, group_mean, group_std, optim::sgd<>, T>;

}  // namespace stochgrad
