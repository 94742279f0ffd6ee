// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/privacy/: the DP-SGD gradient source (per-sample clipping +
/// counter-based Gaussian noise), Poisson subsampling, and the RDP accountant of the subsampled
/// Gaussian mechanism.
#pragma once

#include "dp_sgd.hpp"
#include "rdp.hpp"

/// @namespace stochgrad::privacy
/// Differentially private gradient estimation: `dp_gradient` (a lazy gradient source any
/// optimizer reads), `poisson_sample`, `secure_seed`, and `rdp_accountant` /
/// `noise_multiplier_for` (Opacus's accountant and calibration).
