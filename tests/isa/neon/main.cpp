// SPDX-License-Identifier: Apache-2.0
// Catch2 (v2, single header) main for the AArch64 cross build of tests/isa/kat.cpp, which cannot
// link the host's prebuilt Catch2 library.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
