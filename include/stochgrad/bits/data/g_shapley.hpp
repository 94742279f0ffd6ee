// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief G-Shapley (Ghorbani & Zou, ICML 2019, section 2.4 of design/seeds/data.md): Data
/// Shapley values from one pass of single-point SGD steps per random permutation, over a
/// caller-supplied learner.
///
/// The reference (amiratag/DataShapley @ 303d91d988, DShap.py `_g_shap`, `_one_step_lr`;
/// Shapley.py `ShapNN`) re-initialises a softmax-regression or MLP model for every permutation,
/// takes one plain SGD step (batch size 1, weight decay 0) on each point in permutation order, and
/// credits each point with the change of the test metric its step caused. Here the model is the
/// caller's: a `one_point_learner` that re-initialises (`reset`), steps on one point (`step`,
/// e.g. an `optim::sgd` update of a `parameters` set from the point's gradient, or a
/// first-order stepper's `step`) and scores itself on the test set (`score`). Permutations and
/// the convergence statistic are those of TMC-Shapley (shapley.hpp): `shapley_permutation`,
/// `convergence_error`, checked every `check_every` passes.
///
/// First point: the code never records the metric before the first step, so the first point of
/// every permutation gets 0; the paper's algorithm credits it with \f$v_1 - V(\theta_{\text{init}})\f$.
/// **[stochgrad decision]** default: the paper's rule (`first_point_credit = true`); `false`
/// reproduces the code.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../error.hpp"
#include "shapley.hpp"

namespace stochgrad::data {

/// The model G-Shapley drives. For `L& l`:
/// - `l.reset(iteration)`: a fresh initialisation for permutation `iteration` (the reference draws
///   a new random init every time; seed it from `iteration` for reproducible runs);
/// - `l.step(point)`: one optimizer step on training point `point` alone (the reference: plain SGD
///   on that point's mean cross-entropy with the learning rate of `select_one_epoch_lr`);
/// - `l.score()`: the test metric of the current model (reference: accuracy, or 'xe', the
///   negative mean test cross-entropy).
/// Any of them may throw; the exception passes through.
template <class L>
concept one_point_learner = requires(L& l, std::uint32_t point, std::uint32_t iteration) {
  l.reset(iteration);
  l.step(point);
  { l.score() } -> std::convertible_to<double>;
};

/// Options of g_shapley.
struct g_shapley_options {
  bool first_point_credit = true;       ///< credit the first point with v_1 - V(init) (paper; default) or 0 (code)
  std::size_t window = 100;             ///< rows of the convergence statistic (reference 100), > 0
  double err = 0.1;                     ///< stop once convergence_error < err (reference 0.1), in (0, 1]
  std::size_t check_every = 100;        ///< passes between convergence checks (`save_every`), > 0
  std::size_t max_iterations = 100000;  ///< hard cap on passes (in [1, 2^32]); not converged when reached
  std::uint64_t seed = 0;               ///< permutation seed (shapley_permutation)
};

/// One G-Shapley pass (DShap.py `_g_shap`, one iteration): `l.reset(iteration)`, then for each
/// point \f$\pi_j\f$ in order `l.step(pi_j)` and \f$v_j\f$ = `l.score()`;
/// \f$ \text{marginal}[\pi_j] = v_j - v_{j-1} \f$ for j >= 2 (1-based) and
/// \f$ \text{marginal}[\pi_1] = v_1 - V(\text{init}) \f$ (`first_point_credit`, with
/// \f$V(\text{init})\f$ = `l.score()` right after the reset) or 0 (the code).
/// @param perm       a permutation of the n points
/// @param l          the learner
/// @param iteration  passed to `l.reset`
/// @param first_point_credit see above
/// @param marginal   n outputs (overwritten)
/// @returns the number of `score()` calls.
/// @throws size_mismatch when perm and marginal differ in length; nonfinite_error when a score is
///         not finite (e.g. a diverging step; the learning rate is too large), naming the pass
///         and position; whatever the learner throws (marginal is then partly written).
template <one_point_learner L>
std::size_t g_shapley_iteration(std::span<const std::uint32_t> perm, L& l, std::uint32_t iteration,
                                bool first_point_credit, std::span<double> marginal) {
  stochgrad::detail::require_same_size("g_shapley_iteration", "permutation", perm.size(), "marginal", marginal.size());
  for (double& x : marginal) x = 0.0;
  auto scored = [&](std::size_t pos) {
    const double v = static_cast<double>(l.score());
    if (!std::isfinite(v)) {
      throw nonfinite_error("g_shapley: the score " +
                            (pos == 0 ? std::string("at the initialisation")
                                      : "after the step on point " + std::to_string(perm[pos - 1])) +
                            " of pass " + std::to_string(iteration) + " is not finite");
    }
    return v;
  };
  l.reset(iteration);
  std::size_t evals = 0;
  double prev = 0.0;
  if (first_point_credit && !perm.empty()) {
    prev = scored(0);
    ++evals;
  }
  for (std::size_t j = 0; j < perm.size(); ++j) {
    l.step(perm[j]);
    const double v = scored(j + 1);
    ++evals;
    marginal[perm[j]] = (j == 0 && !first_point_credit) ? 0.0 : v - prev;
    prev = v;
  }
  return evals;
}

/// Result of g_shapley: the fields of tmc_result, with `evaluations` counting `score()` calls and
/// `failures` always 0 (a non-finite score throws).
using g_shapley_result = tmc_result;

/// G-Shapley (DShap.py `run` / `_g_shap`): blocks of `check_every` passes over the permutations of
/// `shapley_permutation(seed, iteration)` until `convergence_error < err` (checked before each
/// block, as the reference) or `max_iterations` passes; the values are the column means of the
/// marginals.
/// @param n number of points, > 0
/// @param l the learner
/// @param o options
/// @throws invalid_argument for n = 0 or bad options; what g_shapley_iteration throws.
template <one_point_learner L>
g_shapley_result g_shapley(std::uint32_t n, L& l, const g_shapley_options& o = {}) {
  stochgrad::detail::require(n > 0, "g_shapley", "n", 0.0, "> 0");
  stochgrad::detail::require(o.window > 0, "g_shapley", "window", 0.0, "> 0");
  stochgrad::detail::require(o.err > 0.0 && o.err <= 1.0, "g_shapley", "err", o.err, "in (0, 1]");
  stochgrad::detail::require(o.check_every > 0, "g_shapley", "check_every", 0.0, "> 0");
  stochgrad::detail::require(o.max_iterations >= 1 && o.max_iterations <= (std::size_t{1} << 32), "g_shapley",
                             "max_iterations", static_cast<double>(o.max_iterations), "in [1, 2^32]");
  g_shapley_result r;
  detail::run_permutation_passes(n, o, r, [&](std::span<const std::uint32_t> perm, std::uint32_t it, std::span<double> row) {
    r.evaluations += g_shapley_iteration(perm, l, it, o.first_point_credit, row);
  });
  return r;
}

/// The reference's learning-rate choice for G-Shapley (DShap.py `_one_step_lr`): for each
/// candidate lr, `runs` scores \f$ u_{r} \f$ = `trial(lr, r)` (the reference: the test metric
/// after one epoch of batch-size-1 SGD from a fresh random init); the lr maximising
/// \f$ \text{mean}(u) - \text{std}(u) \f$ (population std, as numpy) is returned, the first
/// among equals.
/// @param trial      `double trial(double lr, std::uint32_t run)`
/// @param candidates learning rates to try (default: \f$10^{-1}, 10^{-1.5}, \ldots, 10^{-4.5}\f$)
/// @param runs       runs per candidate (reference 10), >= 1
/// @throws invalid_argument for no candidates, runs = 0 or a candidate that is not finite and
///         > 0; nonfinite_error when no candidate gives finite scores in every run (a candidate
///         with a non-finite score is skipped); whatever `trial` throws.
template <class Trial>
requires requires(const Trial& f, double lr, std::uint32_t run) {
  { f(lr, run) } -> std::convertible_to<double>;
}
double select_one_epoch_lr(const Trial& trial, std::span<const double> candidates = {}, std::uint32_t runs = 10) {
  static const double defaults[8] = {1e-1, 3.1622776601683794e-2, 1e-2, 3.1622776601683794e-3,
                                     1e-3, 3.1622776601683794e-4, 1e-4, 3.1622776601683794e-5};
  if (candidates.empty()) candidates = std::span<const double>(defaults);
  stochgrad::detail::require(runs >= 1, "select_one_epoch_lr", "runs", 0.0, ">= 1");
  for (double lr : candidates) {
    stochgrad::detail::require(std::isfinite(lr) && lr > 0.0, "select_one_epoch_lr", "lr", lr, "finite and > 0");
  }
  double best = 0.0, best_lr = 0.0;
  bool any = false;
  std::vector<double> u(runs);
  for (double lr : candidates) {
    bool ok = true;
    double mean = 0.0;
    for (std::uint32_t r = 0; r < runs; ++r) {
      u[r] = static_cast<double>(trial(lr, r));
      ok = ok && std::isfinite(u[r]);
      mean += u[r];
    }
    if (!ok) continue;
    mean /= runs;
    double var = 0.0;
    for (double x : u) var += (x - mean) * (x - mean);
    const double crit = mean - std::sqrt(var / runs);
    if (!any || crit > best) {
      best = crit;
      best_lr = lr;
      any = true;
    }
  }
  if (!any) throw nonfinite_error("select_one_epoch_lr: every candidate learning rate gave a non-finite score");
  return best_lr;
}

}  // namespace stochgrad::data
