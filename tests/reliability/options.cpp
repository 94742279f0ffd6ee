// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 8: group overrides and Spall's gain refuse infinity and NaN with the parameter's
// name and range. On main lr_scale / lr / weight_decay = inf gave NaN parameters after one step and
// spall_gain with A or alpha = inf silently made the learning rate 0.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const sg::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}
}  // namespace

TEST_CASE("group overrides must be finite", "[reliability][options]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (const double bad : {inf, std::nan("")}) {
    sg::parameters<float> p;
    CHECK_THROWS_AS(p.add_group({.lr_scale = bad}), sg::invalid_argument);
    CHECK_THROWS_AS(p.add_group({.lr = bad}), sg::invalid_argument);
    CHECK_THROWS_AS(p.add_group({.weight_decay = bad}), sg::invalid_argument);
    CHECK_THROWS_AS(p.set_group(0, {.lr = bad}), sg::invalid_argument);
    CHECK(p.groups() == 1);  // nothing was added
  }
  sg::parameters<float> p;
  CHECK(message_of([&] { p.add_group({.lr_scale = inf}); }).find("lr_scale") != std::string::npos);
  CHECK(message_of([&] { p.add_group({.weight_decay = inf}); }).find("weight_decay") != std::string::npos);
  CHECK(p.add_group({.lr_scale = 0.5, .lr = 1e-3, .weight_decay = 0.0}) == 1);  // finite values still pass
}

TEST_CASE("spall_gain refuses infinite A and alpha", "[reliability][options]") {
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS((sg::spall_gain{.A = inf, .alpha = 0.602}.validate()), sg::invalid_argument);
  CHECK_THROWS_AS((sg::spall_gain{.A = 0.0, .alpha = inf}.validate()), sg::invalid_argument);
  CHECK_THROWS_AS((sg::spall_gain{.A = std::nan(""), .alpha = 0.602}.validate()), sg::invalid_argument);
  CHECK(message_of([&] { sg::spall_gain{.A = inf}.validate(); }).find("A = inf") != std::string::npos);
  CHECK_NOTHROW((sg::spall_gain{.A = 10.0, .alpha = 0.602}.validate()));
}
