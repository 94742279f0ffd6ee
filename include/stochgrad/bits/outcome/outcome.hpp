// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/outcome/ (includes every header of that folder): group layouts,
/// baseline and normalizer policies over spans of outcomes, `advantages()`, multiple reward
/// functions, BNPO's Beta normalization and Reinforce-Ada's pool statistics.
#pragma once

#include "../config.hpp"
#include "group_layout.hpp"
#include "policies.hpp"
#include "pool.hpp"
#include "beta.hpp"
#include "multi_reward.hpp"
