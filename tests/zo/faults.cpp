// SPDX-License-Identifier: Apache-2.0
// Faults and bad input (ARCHITECTURE.md §7, algorithms.md §7.5): an objective that throws or
// returns NaN/Inf/invalid while the parameters are perturbed; optimizer skips; invalid
// hyper-parameters and arguments.
//
// Restore accuracy: between the unperturbed x and the restored value there are at most three
// additions x + s v (+s, -2s, +s), each rounded once (fused multiply-add; without FMA the product
// rounding cancels exactly, see passes.cpp) with an error of at most half an ulp of its result,
// i.e. at most u |result| with u = epsilon/2 of T and |result| <= |x| + 2 |s v|. The Gaussian
// variates are bounded by 6.34 (default inversion generator; 5.887 for Box-Muller, §2.1), so
// after k roundings |x_restored - x| <= k u (|x| + 2 eps 6.4): the bound of `restored` below
// (k = 3 per direction of a step). Inside one binade the error is 0 or 1 ulp; crossing to a
// larger binade makes the ulp coarser, which the absolute bound covers.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;

namespace {

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

template <class T>
std::vector<T> start(std::size_t n) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(std::cos(0.37 * static_cast<double>(i)));
  return x;
}

template <class T>
bool restored(const std::vector<T>& x, const std::vector<T>& x0, double eps, int roundings = 3) {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double bound = roundings * u * (std::abs(static_cast<double>(x0[i])) + 2 * eps * 6.4);
    if (std::abs(static_cast<double>(x[i]) - static_cast<double>(x0[i])) > bound) return false;
  }
  return true;
}

// Throws at evaluation number `at` (0-based) of the objective, else returns a quadratic.
struct thrower {
  int at;
  int* count;
  template <class T>
  double operator()(std::span<const T> x) const {
    if ((*count)++ == at) throw boom();
    double f = 0;
    for (T v : x) f += 0.5 * static_cast<double>(v) * static_cast<double>(v);
    return f;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("an objective that throws: parameters restored before the exception leaves step", "[zo][faults]",
                   float, double) {
  using T = TestType;
  const std::size_t n = 333;
  for (auto mode : {zo::pass_mode::reference, zo::pass_mode::fused, zo::pass_mode::fused_next}) {
    for (int at : {0, 1, 2, 3}) {  // L+ / L- of direction 0, L+ / L- of direction 1 (q = 2)
      std::vector<T> x = start<T>(n);
      const std::vector<T> x0 = x;
      stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T> s(
          parameters<T>(std::span<T>(x)), optim::sgd<>({.lr = 1e-2}),
          zo::two_point<gaussian>({.eps = 1e-2, .q = 2, .seed = 4, .mode = mode}));
      int count = 0;
      REQUIRE_THROWS_AS(s.step(thrower{at, &count}), boom);
      CHECK(restored(x, x0, 1e-2, 6));  // two directions: at most 6 roundings
      CHECK(s.steps() == 0);
      CHECK(s.est_state().calls == 1);  // the call consumed its seed
      CHECK_FALSE(s.est_state().pending);
      // The stepper is usable afterwards.
      count = 0;
      const auto r = s.step(thrower{-1, &count});
      CHECK(r.applied);
      CHECK(s.steps() == 1);
    }
  }
}

TEMPLATE_TEST_CASE("a throw while the next step's perturbation is pending restores the current iterate",
                   "[zo][faults]", float, double) {
  using T = TestType;
  std::vector<T> x = start<T>(200), y = start<T>(200);
  auto est = [](zo::pass_mode m) { return zo::two_point<gaussian>({.eps = 1e-2, .seed = 6, .mode = m}); };
  stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T> a(
      parameters<T>(std::span<T>(x)), optim::sgd<>({.lr = 1e-2}), est(zo::pass_mode::fused_next));
  stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T> b(
      parameters<T>(std::span<T>(y)), optim::sgd<>({.lr = 1e-2}), est(zo::pass_mode::reference));
  int count = 0;
  a.step(thrower{-1, &count});
  b.step(thrower{-1, &count});
  REQUIRE(a.est_state().pending);
  count = 0;
  REQUIRE_THROWS_AS(a.step(thrower{0, &count}), boom);
  CHECK_FALSE(a.est_state().pending);
  CHECK(restored(x, y, 1e-2));  // theta_1 + s v - s v vs theta_1 (reference)
}

TEST_CASE("coordinate_wise: a throw restores the coordinate exactly", "[zo][faults]") {
  std::vector<double> x = start<double>(5);
  const std::vector<double> x0 = x;
  stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, double> s{parameters<double>(std::span<double>(x))};
  int count = 0;
  REQUIRE_THROWS_AS(s.step(thrower{7, &count}), boom);
  CHECK(zo_test::same_bits<double>(x, x0));
}

TEMPLATE_TEST_CASE("NaN, Inf or an invalid evaluation: step skipped, parameters restored, reported", "[zo][faults]",
                   float, double) {
  using T = TestType;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (int which : {0, 1, 2}) {
    for (auto mode : {zo::pass_mode::reference, zo::pass_mode::fused, zo::pass_mode::fused_next}) {
      std::vector<T> x = start<T>(150);
      const std::vector<T> x0 = x;
      stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T> s(
          parameters<T>(std::span<T>(x)), optim::sgd<>({.lr = 1e-2, .momentum = 0.9}),
          zo::two_point<gaussian>({.eps = 1e-2, .seed = 4, .mode = mode}));
      int count = 0;
      auto f = [&]() -> zo::evaluation {
        ++count;
        if (count == 2) {
          if (which == 0) return {nan, true};
          if (which == 1) return {-inf, true};
          return {1.0, false};
        }
        return {1.0, true};
      };
      const auto r = s.step(f);
      CHECK(r.nonfinite);
      CHECK_FALSE(r.applied);
      CHECK(r.coefficients.empty());
      CHECK(restored(x, x0, 1e-2));
      CHECK(s.steps() == 0);                          // no optimizer update
      CHECK(s.opt_state().steps[0] == 0);             // optimizer state untouched
      CHECK(s.est_state().calls == 1);                // a fresh seed next time
      CHECK_FALSE(s.est_state().pending);
    }
  }
}

TEST_CASE("on_nonfinite = throw_error: nonfinite_error after the restore", "[zo][faults]") {
  std::vector<float> x = start<float>(100);
  const std::vector<float> x0 = x;
  stepper<zo::two_point<rademacher>, no_baseline, no_normalizer, optim::sgd<>, float> s(
      parameters<float>(std::span<float>(x)), {},
      zo::two_point<rademacher>({.eps = 1e-2, .seed = 1, .on_nonfinite = zo::nonfinite_policy::throw_error}));
  int count = 0;
  auto f = [&] { return ++count == 1 ? std::numeric_limits<double>::quiet_NaN() : 0.0; };
  REQUIRE_THROWS_AS(s.step(f), nonfinite_error);
  CHECK(restored(x, x0, 1e-2));
  CHECK(s.steps() == 0);

  stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, float> c(
      parameters<float>(std::span<float>(x)), {}, zo::coordinate_wise({.on_nonfinite = zo::nonfinite_policy::throw_error}));
  count = 0;
  REQUIRE_THROWS_AS(c.step(f), nonfinite_error);
}

TEST_CASE("an optimizer that skips a non-finite gradient: the fused restore still happens", "[zo][faults]") {
  // L+- = +-1e300 give a finite double coefficient 1e303 / eps that overflows to inf in float:
  // optim::sgd with skip_nonfinite skips its pass, so the fused restore did not run; the
  // estimator must restore by itself.
  for (auto mode : {zo::pass_mode::fused, zo::pass_mode::fused_next}) {
    std::vector<float> x = start<float>(300);
    const std::vector<float> x0 = x;
    stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, float> s(
        parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 1e-3, .skip_nonfinite = true}),
        zo::two_point<gaussian>({.eps = 1e-3, .seed = 2, .mode = mode}));
    int count = 0;
    auto f = [&] { return ++count % 2 == 1 ? 1e300 : -1e300; };
    const auto r = s.step(f);
    CHECK_FALSE(r.nonfinite);
    CHECK_FALSE(r.applied);
    CHECK(restored(x, x0, 1e-3));
    CHECK_FALSE(s.est_state().pending);
  }
}

TEST_CASE("bad input: a clear exception naming the parameter", "[zo][faults][validation]") {
  auto message_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  for (double eps : {0.0, -1e-3, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    const std::string m = message_of([&] { zo::two_point<gaussian>({.eps = eps}); });
    CHECK(m.find("eps") != std::string::npos);
    CHECK(m.find("> 0") != std::string::npos);
    CHECK_THROWS_AS(zo::one_sided<unit_sphere>({.eps = eps}), invalid_argument);
    CHECK_THROWS_AS(zo::coordinate_wise({.mu = eps}), invalid_argument);
  }
  CHECK(message_of([] { zo::two_point<gaussian>({.q = 0}); }).find("q = 0") != std::string::npos);
  CHECK_THROWS_AS(zo::one_sided<gaussian>({.q = 0}), invalid_argument);
  for (double sp : {-0.1, 1.0, 1.5}) {
    const std::string m = message_of([&] { zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>({}, {}, {.sparsity = sp}); });
    CHECK(m.find("sparsity") != std::string::npos);
    CHECK(m.find("[0, 1)") != std::string::npos);
  }
  CHECK_NOTHROW(zo::magnitude_mask{.sparsity = 0.0}.validate());
  CHECK_THROWS_AS(zo::spall_perturbation{-0.1}.validate(), invalid_argument);
  using dream_est = zo::two_point<gaussian, zo::dream_schedule>;
  CHECK_THROWS_AS(dream_est({}, zo::dream_schedule{.steps_per_epoch = 0}), invalid_argument);
  CHECK_THROWS_AS(zo::gc_spsa_sgd<>({.lr = 0.0}), invalid_argument);
  CHECK_THROWS_AS(zo::gc_spsa_sgd<>({.gamma = -1.0}), invalid_argument);
  zo::two_point<gaussian> est;
  CHECK_THROWS_AS(est.set_options({.eps = 0.0}), invalid_argument);
  CHECK_THROWS_AS(est.set_options({.q = 0}), invalid_argument);

  // Empty parameter set.
  const std::string m = message_of([] { mezo<float> s{parameters<float>{}}; });
  CHECK(m.find("empty") != std::string::npos);
  std::vector<float> none;
  CHECK_THROWS_AS(mezo<float>(parameters<float>(std::span<float>(none))), invalid_argument);

  // A span objective on a multi-tensor set.
  std::vector<float> a(4, 1.0f), b(3, 1.0f);
  parameters<float> p;
  p.add(a).add(b);
  mezo<float> s(p);
  CHECK(message_of([&] { s.step([](std::span<const float>) { return 0.0; }); }).find("single-tensor") != std::string::npos);
  CHECK(s.est_state().calls == 0);  // refused before anything changes: no seed used (issue 11 item 6)

  // A schedule that makes eps 0 at some step: rejected at that step.
  struct zero_after_one {
    double operator()(std::uint64_t k) const { return k == 0 ? 1.0 : 0.0; }
  };
  stepper<zo::two_point<gaussian, zero_after_one>, no_baseline, no_normalizer, optim::sgd<>, float> z{
      parameters<float>(std::span<float>(a))};
  auto f = [] { return 0.0; };
  CHECK_NOTHROW(z.step(f));
  CHECK(message_of([&] { z.step(f); }).find("eps at this step") != std::string::npos);
}
