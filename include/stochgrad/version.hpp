// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The single source of truth for stochgrad's version (CMake parses these macros).
#pragma once

/// Major version number, the X of "X.Y.Z" in `version_string`.
#define STOCHGRAD_VERSION_MAJOR 0
/// Minor version number, the Y of "X.Y.Z".
#define STOCHGRAD_VERSION_MINOR 1
/// Patch version number, the Z of "X.Y.Z".
#define STOCHGRAD_VERSION_PATCH 0

/// Version as one integer: major * 10000 + minor * 100 + patch.
#define STOCHGRAD_VERSION (STOCHGRAD_VERSION_MAJOR * 10000 + STOCHGRAD_VERSION_MINOR * 100 + STOCHGRAD_VERSION_PATCH)

namespace stochgrad {
/// Version string "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";
}  // namespace stochgrad
