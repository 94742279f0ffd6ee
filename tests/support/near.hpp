// SPDX-License-Identifier: Apache-2.0
// Relative/absolute closeness checks shared by the worked-example tests of the policy-gradient
// families (tests/outcome/advantages.cpp, tests/pg/grpo_family.cpp, copg.cpp, macro_action.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "support/catch.hpp"

namespace sg_test {

/// Default tolerances: the worked numbers are given to about 15 significant digits.
inline constexpr double rel = 1e-12;
inline constexpr double abs0 = 1e-15;

/// |got - want| <= a + r |want|.
inline bool near(double got, double want, double r = rel, double a = abs0) {
  return std::abs(got - want) <= a + r * std::abs(want);
}

/// Same size, and every element near its counterpart (each failure names its index).
inline void require_all_near(const std::vector<double>& got, const std::vector<double>& want, double r = rel,
                             double a = abs0) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i << " got " << got[i] << " want " << want[i]);
    CHECK(near(got[i], want[i], r, a));
  }
}

/// Whether every element equals v exactly (false for NaN).
inline bool all_equal(const std::vector<double>& x, double v) {
  for (const double e : x) {
    if (!(e == v)) return false;
  }
  return true;
}

}  // namespace sg_test
