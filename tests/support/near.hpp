// SPDX-License-Identifier: Apache-2.0
// Relative/absolute closeness checks shared by the worked-example tests of the policy-gradient
// families (tests/outcome/advantages.cpp, tests/pg/grpo_family.cpp, copg.cpp, macro_action.cpp),
// the distribution family (tests/dist/automate_cot.cpp, trice.cpp) and the optimizer/problem
// worked examples (tests/optim/large_batch.cpp, tests/problems/robust_matrix_sensing.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <span>
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

/// |got - want| <= tol |want|, or, for |want| < 1e-12, an absolute bound (1e-14, or 1e-6 for a
/// loose tol > 1e-9, e.g. float checks). Used by the distribution-family tests.
inline void check_rel(double got, double want, double tol = 1e-12) {
  INFO("got " << got << " want " << want);
  if (std::abs(want) < 1e-12) {
    CHECK(std::abs(got - want) <= (tol > 1e-9 ? 1e-6 : 1e-14));
  } else {
    CHECK(std::abs(got - want) <= tol * std::abs(want));
  }
}

/// check_rel on every entry (same count required).
template <class T>
void check_all(const std::vector<T>& got, std::initializer_list<double> want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  std::size_t i = 0;
  for (double w : want) {
    INFO("entry " << i);
    check_rel(static_cast<double>(got[i++]), w, tol);
  }
}

/// Relative closeness per element, or absolute 1e-15 where |want| < 1e-12 (Catch2 matchers, so a
/// failure prints both values).
inline void check_close(std::span<const double> got, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    if (std::abs(want[i]) < 1e-12) {
      CHECK_THAT(got[i], Catch::Matchers::WithinAbs(want[i], 1e-15));
    } else {
      CHECK_THAT(got[i], Catch::Matchers::WithinRel(want[i], tol));
    }
  }
}

}  // namespace sg_test
