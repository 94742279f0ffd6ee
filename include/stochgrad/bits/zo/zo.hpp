// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/zo/: zeroth-order estimators (two_point, one_sided,
/// coordinate_wise), directions, masks, perturbation schedules, GC-SPSA's optimizer, replay, and
/// HiZOO, diagonal 2SPSA, and the presets mezo, sparse_mezo, spsa, spsa_gc, gc_spsa, rge, cge,
/// antithetic_es, hizoo, spsa2.
///
/// A MeZO step (the objective is evaluated at parameters the stepper perturbs in place):
/// @code
/// std::vector<float> w(1000, 0.5f);   // the model's weights (any contiguous memory)
/// auto model_loss = [&] { double l = 0; for (float v : w) l += double(v) * v; return l; };
/// stochgrad::mezo<float> s(w, {.lr = 1e-3}, {.eps = 1e-3, .seed = 42});
/// auto r = s.step(model_loss);
/// std::printf("L+ = %g, g = %g\n", double(r.loss_plus), double(r.projected_gradient));
/// @endcode
/// Biases and norms without weight decay: put them in a group `p.add_group({.decay = false})`.
/// Two passes per step instead of three: `.mode = zo::pass_mode::fused_next` (then call
/// `zo::settle(s)` before using the weights elsewhere). Keep `zo::replay_log log; log.record(r);`
/// to reconstruct the run from its seeds and scalars with `zo::replay`.
///
/// Spall SPSA with gains a_k = a/(k+1+A)^0.602 and c_k = c/(k+1)^0.101 (Nesterov momentum
/// `{.momentum = 0.9, .nesterov = true}` gives SPSA-GC's gradient correction):
/// @code
/// std::vector<double> x(10, 1.0);
/// auto f = [&] { double l = 0; for (double v : x) l += v * v; return l; };
/// const double a = 0.05, A = 100, c = 0.01;
/// stochgrad::spall_spsa<double> s(x, stochgrad::optim::sgd<stochgrad::spall_gain>({.lr = a}, {A, 0.602}),
///                           stochgrad::zo::two_point<stochgrad::rademacher, stochgrad::zo::spall_perturbation>(
///                               {.eps = c, .seed = 1}, {0.101}));
/// for (int k = 0; k < 2000; ++k) s.step(f);
/// @endcode
/// Antithetic evolution strategies (q pairs shaped by the group mean and std), with Adam:
/// @code
/// std::vector<float> w(100, 1.0f);
/// stochgrad::stepper<stochgrad::zo::two_point<stochgrad::gaussian>, stochgrad::group_mean,
///                    stochgrad::group_std, stochgrad::optim::adam<>, float>
///     es(w, stochgrad::optim::adam<>({.lr = 1e-2}), stochgrad::zo::two_point<stochgrad::gaussian>({.eps = 0.05, .q = 16}));
/// es.step([&] { double l = 0; for (float v : w) l += double(v) * v; return l; });
/// @endcode
#pragma once

#include "../config.hpp"
#include "calibrated.hpp"
#include "coordinate.hpp"
#include "difference.hpp"
#include "directions.hpp"
#include "gc_spsa.hpp"
#include "helpers.hpp"
#include "hizoo.hpp"
#include "kernels.hpp"
#include "mask.hpp"
#include "objective.hpp"
#include "perturbation_guard.hpp"
#include "replay_log.hpp"
#include "schedules.hpp"
#include "second_order.hpp"
#include "second_order_full.hpp"

/// @namespace stochgrad::zo
/// Zeroth-order gradient estimation: estimators from objective values at perturbed parameters
/// (finite differences along counter-based random directions), their directions, masks,
/// perturbation schedules, replay logs and GC-SPSA's optimizer.
