// SPDX-License-Identifier: Apache-2.0
// Catch2 v2/v3 compatibility shim: tests include this header only and use the common subset
// (TEST_CASE, TEMPLATE_TEST_CASE, SECTION, GENERATE with literals, REQUIRE/CHECK, STATIC_REQUIRE,
// REQUIRE_THAT with WithinRel/WithinAbs/WithinULP, Approx).
#pragma once

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
