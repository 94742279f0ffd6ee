// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief stochgrad: header-only stochastic gradient estimators. Include this header.
///
/// Policies `estimator x baseline x normalizer x optimizer` compose at compile time into steppers
/// (`grpo`, `bnpo`, `mezo`, `spsa`, `adan` are aliases of one template). Zeroth-order directions
/// come from a counter-based generator and are regenerated, never stored. See README.md.
#pragma once

#include "version.hpp"
#include "bits/config.hpp"
#include "bits/error.hpp"
#include "bits/parallel/thread_pool.hpp"
#include "bits/rng/philox.hpp"
#include "bits/rng/noise.hpp"
#include "bits/kernels/elementwise.hpp"
#include "bits/kernels/reduce.hpp"
#include "bits/outcome/outcome.hpp"
#include "bits/optim/optim.hpp"
#include "bits/privacy/privacy.hpp"
#include "bits/data/data.hpp"
#include "bits/stepper/stepper.hpp"
#include "bits/zo/zo.hpp"
#include "bits/pg/pg.hpp"
#include "bits/stepper/run.hpp"
#include "presets.hpp"
#include "bits/dist/dist.hpp"
