// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/optim/: parameter sets, gradient sources, schedules and the
/// optimizer policies.
#pragma once

#include "optimizer.hpp"
#include "parameters.hpp"
#include "schedule.hpp"
#include "source.hpp"
