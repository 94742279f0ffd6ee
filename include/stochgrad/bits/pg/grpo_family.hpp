// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The GRPO-family variants of seed spec rl_zo.md §6 (included by the bits/pg/ umbrella):
/// DAPO's overlong shaping and dynamic sampling (dapo.hpp), REINFORCE++ and its baseline variant
/// with global token whitening (reinforce_pp.hpp), GPG's normalizer and ratio-free loss (gpg.hpp),
/// OPO's length-weighted baseline (opo.hpp); and of §2 and §1: CoPG with the IPO / DPO pair losses
/// (copg.hpp), MA-RLHF's macro actions, macro-level GAE and clipped value loss (macro_action.hpp).
#pragma once

#include "../config.hpp"
#include "dapo.hpp"
#include "reinforce_pp.hpp"
#include "gpg.hpp"
#include "opo.hpp"
#include "copg.hpp"
#include "macro_action.hpp"
