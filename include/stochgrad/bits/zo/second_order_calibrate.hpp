// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::calibrate_spsa2`: gains for the diagonal `zo::spsa2` without hand-set values, from
/// the measurement of `zo::calibrated` (zo/calibrated.hpp, unchanged) at the starting point.
///
/// The calibration of `zo::calibrated<two_point<rademacher, spall_perturbation>>` runs on the same
/// parameters and objective (noise sigma, c from it, the first-step magnitude rule, the
/// sufficient-decrease check, A = stability_fraction * planned_steps; the parameters are restored
/// bit for bit) and gives c, A and the SPSA first gain a_0^SPSA. The 2SPSA gains then are
/// ```
///   c     = the calibrated c                     (eps of spsa2_options)
///   A     = the calibrated A                     (spall_gain::A)
///   a     = (1 + A)^alpha                        (the 2SPSA gain a_k = a / (k + 1 + A)^alpha starts at 1,
///                                                 Spall's natural gain for a Newton-like step)
///   delta = 1 / a_0^SPSA                         (while |Hbar| << delta the first 2SPSA step
///                                                 a_0 G / (|Hbar| + delta) is the calibrated SPSA step)
/// ```
/// Measured on f = 1/2 sum_i 10^(3i/99) x_i^2 (d = 100, condition 1e3, x0 = 1), 2000 steps, seeds
/// 1-3: f0 = 7411.9 -> 176.9 (tests/zo/second_order_calibrate.cpp). With |Hbar| well below delta
/// the steps stay close to calibrated SPSA's; the rule makes no claim that 2SPSA beats SPSA.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../stepper/stepper.hpp"
#include "calibrated.hpp"
#include "difference.hpp"
#include "directions.hpp"
#include "schedules.hpp"

namespace stochgrad::zo {

/// Gains for `zo::spsa2` set by `calibrate_spsa2` (see the file comment).
struct spsa2_gains {
  double a = 0.0;                  ///< gain numerator: a_k = a / (k + 1 + A)^alpha, a = (1 + A)^alpha
  double A = 0.0;                  ///< stability constant (spall_gain::A)
  double c = 0.0;                  ///< perturbation size (spsa2_options::eps)
  double delta = 0.0;              ///< the mapping's delta = 1 / a_0^SPSA (spsa2_options::delta)
  calibration_report calibration;  ///< the SPSA calibration it came from
};

/// Calibrates spsa2's a, A, c (and delta) at the current parameters `p` with the rules of
/// `zo::calibrated` (file comment); `p` is left bit for bit as it was.
/// @param p     the parameters the spsa2 stepper will train (views; not changed)
/// @param f     the objective (as for a stepper's step)
/// @param o     calibration options (planned_steps, stability_fraction, seed, ...; blocking unused)
/// @param alpha the exponent of the spall_gain the spsa2 stepper will use
/// @throws as `zo::calibrated::calibrate`.
template <class T, class F>
spsa2_gains calibrate_spsa2(const parameters<T>& p, F&& f, calibration_options o = {}, double alpha = 0.602) {
  using cal = calibrated<two_point<rademacher, spall_perturbation>>;
  parameters<T> q;  // the same tensors (views, in order; all in group 0: the calibration ignores groups)
  for (std::size_t t = 0; t < p.tensors(); ++t) q.add(p.tensor(t));
  stepper<cal, no_baseline, no_normalizer, optim::sgd<spall_gain>, T> s(
      std::move(q), optim::sgd<spall_gain>(optim::sgd_options{.lr = 1.0}, spall_gain{0.0, alpha}), cal(o));
  const calibration_report rep = s.estimator().calibrate(s, std::forward<F>(f));
  spsa2_gains g;
  g.calibration = rep;
  g.c = rep.c;
  g.A = rep.A;
  g.a = std::pow(1.0 + rep.A, alpha);
  g.delta = 1.0 / rep.first_gain;
  return g;
}

}  // namespace stochgrad::zo
