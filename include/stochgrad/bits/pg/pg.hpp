// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/pg/ (includes every header of that folder): the score-function
/// estimator with the clipped surrogate (GRPO family, RLOO), KL estimators, the unified
/// policy-gradient view (HPT), adaptive samplers (Reinforce-Ada, Beta/Thompson), and the stepper
/// estimator `score_function` with its presets (`grpo`, `bnpo`, `rloo`, `reinforce`).
#pragma once

#include "../config.hpp"
#include "token_batch.hpp"
#include "surrogate.hpp"
#include "kl.hpp"
#include "unified.hpp"
#include "beta_thompson.hpp"
#include "reinforce_ada.hpp"
#include "rloo_loss.hpp"
#include "score_function.hpp"
#include "grpo_family.hpp"
