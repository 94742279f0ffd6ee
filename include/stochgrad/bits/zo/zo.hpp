// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/zo/ (includes every header of that folder).
#pragma once

#include "../config.hpp"
