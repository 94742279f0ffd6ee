// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/stepper/: the stepper template, saved-state format, the
/// first-order estimator and the presets.
#pragma once

#include "first_order.hpp"
#include "serialize.hpp"
#include "stepper_template.hpp"
