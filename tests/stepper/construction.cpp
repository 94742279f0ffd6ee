// SPDX-License-Identifier: Apache-2.0
// Construction without re-spelling: a contiguous range is accepted where parameters<T> is expected
// (lvalues only), and a stepper is built from its optimizer's and estimator's options. Each short
// form must step exactly like the long form it abbreviates.
#include <array>
#include <span>
#include <type_traits>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/bitwise.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

// The conversions that are meant to exist, and the trap that must not compile.
static_assert(std::is_convertible_v<std::vector<float>&, sg::parameters<float>>);
static_assert(std::is_convertible_v<std::array<double, 4>&, sg::parameters<double>>);
static_assert(std::is_convertible_v<std::span<float>, sg::parameters<float>>);
static_assert(!std::is_constructible_v<sg::parameters<float>, std::vector<float>&&>,
              "a temporary vector would be destroyed before the first step");
static_assert(!std::is_constructible_v<sg::parameters<float>, const std::vector<float>&>, "read-only memory");
static_assert(!std::is_constructible_v<sg::parameters<float>, std::vector<double>&>, "element type must match");

namespace {

using sgtest::same_bits;

double sphere(std::span<const float> v) {
  double s = 0;
  for (float e : v) s += 0.5 * static_cast<double>(e) * static_cast<double>(e);
  return s;
}
double sphere_d(std::span<const double> v) {
  double s = 0;
  for (double e : v) s += e * e;
  return s;
}

}  // namespace

TEST_CASE("short construction steps exactly like the long form", "[stepper][construction]") {
  SECTION("mezo from a vector and two option lists") {
    std::vector<float> w(300, 1.0f), v = w;
    sg::mezo<float> m(w, {.lr = 1e-3}, {.eps = 1e-3});
    sg::mezo<float> l(sg::parameters<float>(std::span<float>(v)), sg::optim::sgd<>({.lr = 1e-3}),
                      sg::zo::two_point<sg::gaussian>({.eps = 1e-3}));
    for (int k = 0; k < 5; ++k) {
      m.step(sphere);
      l.step(sphere);
    }
    CHECK(same_bits(w, v));
    CHECK(w[0] != 1.0f);  // it did step
  }
  SECTION("spsa") {
    std::vector<double> x(50, 1.0), y = x;
    sg::spall_spsa<double> s(x, {.lr = 0.2}, {.eps = 0.01});
    sg::spall_spsa<double> l(sg::parameters<double>(std::span<double>(y)), sg::optim::sgd<sg::spall_gain>({.lr = 0.2}),
                       sg::zo::two_point<sg::rademacher, sg::zo::spall_perturbation>({.eps = 0.01}));
    for (int k = 0; k < 5; ++k) {
      s.step(sphere_d);
      l.step(sphere_d);
    }
    CHECK(same_bits(x, y));
  }
  SECTION("grpo and adan from optimizer options only") {
    std::vector<float> theta(10, 0.0f);
    sg::grpo<float> g(theta, {.lr = 1e-6});
    CHECK(g.optimizer().options().lr == 1e-6);
    sg::adan<float> a(theta, {.lr = 0.02, .weight_decay = 0.0});
    CHECK(a.optimizer().options().lr == 0.02);
  }
  SECTION("bad options throw from the short form too") {
    std::vector<float> w(8, 1.0f);
    CHECK_THROWS_AS(sg::mezo<float>(w, {.lr = -1.0}, {.eps = 1e-3}), sg::invalid_argument);
    CHECK_THROWS_AS(sg::mezo<float>(w, {.lr = 1e-3}, {.eps = 0.0}), sg::invalid_argument);
  }
}
