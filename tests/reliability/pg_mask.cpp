// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 7: a non-finite entry in the PG completion mask is refused like a non-finite
// log-prob (nonfinite_error naming mask[row][col]) before anything changes. On main a NaN mask
// entry silently wrote NaN into every parameter.
#include <cmath>
#include <sstream>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

TEST_CASE("a NaN or Inf in the completion mask is refused with the stepper untouched", "[reliability][pg]") {
  pgtest::addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = pgtest::warm_theta(ro.pol, 2.0);
  const std::vector<double> keep = theta;
  sg::grpo<double> s(sg::parameters<double>(std::span<double>(theta)), sg::optim::adam<>{});
  ro.draw(theta, 61, 0);
  std::ostringstream before;
  s.save(before);
  for (const double bad : {std::nan(""), double(INFINITY), -double(INFINITY)}) {
    std::vector<double> mask(ro.S * ro.L, 1.0);
    mask[7] = bad;
    sg::pg_batch<double> b = ro.batch();
    b.mask = mask;
    CHECK_THROWS_AS(s.step(b, ro.layout, ro.vjp(theta)), sg::nonfinite_error);
    CHECK(theta == keep);
    CHECK(s.steps() == 0);
  }
  std::ostringstream after;
  s.save(after);
  CHECK(before.str() == after.str());
}

TEST_CASE("the surrogate refuses a non-finite mask entry", "[reliability][pg]") {
  std::vector<double> logp(6, -1.0), adv{1.0, -1.0}, mask(6, 1.0), coef(6, 3.0);
  mask[4] = std::nan("");
  sg::token_batch<double> b;
  b.sequences = 2;
  b.length = 3;
  b.logp = logp;
  b.mask = mask;
  b.advantages = adv;
  const sg::clipped_surrogate s;
  CHECK_THROWS_AS(s.evaluate(b, std::span<double>(coef)), sg::nonfinite_error);
  CHECK(coef == std::vector<double>(6, 3.0));
  mask[4] = 0.0;  // a zero is fine
  CHECK_NOTHROW(s.evaluate(b, std::span<double>(coef)));
}
