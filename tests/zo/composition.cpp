// SPDX-License-Identifier: Apache-2.0
// Compositions: the ZO estimate is an outcome-weighted sum of directions shaped by the stepper's
// baseline and normalizer (antithetic ES = two_point<gaussian> + group_mean + group_std); the
// lazy estimate inside Adam/Adan equals the materialised one (no gradient buffer, same bits);
// GC-SPSA reads q from the source; objective call forms; names in saved state.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;
using Catch::Matchers::WithinRel;

namespace {

double sphere_loss(std::span<const double> x) {
  double r = 0;
  for (std::size_t i = 0; i < x.size(); ++i) r += (x[i] - 0.1 * static_cast<double>(i % 3)) * (x[i] - 0.1 * static_cast<double>(i % 3)) + std::sin(x[i]);
  return r;
}

struct reward_policy {
  static constexpr bool rewards_only = true;
};

std::vector<double> start(std::size_t n) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::cos(static_cast<double>(i));
  return x;
}

}  // namespace

TEST_CASE("antithetic ES is a composition: weights = normalizer(baseline(losses))", "[zo][composition]") {
  std::vector<double> x = start(50);
  const std::size_t q = 4;
  const double eps = 0.05;
  antithetic_es<double> s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 1e-2}),
                          zo::two_point<gaussian>({.eps = eps, .q = q, .seed = 3}), group_mean{}, group_std{.eps = 1e-4});
  for (int k = 0; k < 5; ++k) {
    const zo::step_report r = s.step(sphere_loss);
    REQUIRE(r.losses.size() == 2 * q);
    // Shape the same outcomes with the policies directly (one group of 2q samples).
    std::vector<double> base(2 * q), adv(2 * q);
    const group_layout layout = group_layout::contiguous(1, 2 * q);
    group_mean{}.compute(r.losses, layout, std::span<double>(base));
    group_std{.eps = 1e-4}.apply(r.losses, std::span<const double>(base), layout, std::span<double>(adv));
    for (std::size_t j = 0; j < q; ++j) {
      CHECK(r.coefficients[j] == (adv[2 * j] - adv[2 * j + 1]) / (2 * eps * static_cast<double>(q)));
    }
  }
}

TEST_CASE("a constant baseline cancels in central differences", "[zo][composition]") {
  std::vector<double> x = start(40), y = x;
  stepper<zo::two_point<gaussian>, group_mean, no_normalizer, optim::sgd<>, double> a(
      parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 1e-2}), zo::two_point<gaussian>({.q = 3, .seed = 4}));
  mezo<double> b(parameters<double>(std::span<double>(y)), optim::sgd<>({.lr = 1e-2}), zo::two_point<gaussian>({.q = 3, .seed = 4}));
  const auto ra = a.step(sphere_loss);
  const auto rb = b.step(sphere_loss);
  for (std::size_t j = 0; j < 3; ++j) CHECK_THAT(ra.coefficients[j], WithinRel(rb.coefficients[j], 1e-9));
}

TEMPLATE_TEST_CASE("Gaussian directions into Adam / Adan: the lazy source equals the materialised estimate bitwise",
                   "[zo][composition]", float, double) {
  using T = TestType;
  auto f = [](std::span<const T> v) {
    double r = 0;
    for (T e : v) r += static_cast<double>(e) * static_cast<double>(e) * 0.5 + std::cos(static_cast<double>(e));
    return r;
  };
  auto check = [&](auto make) {
    const std::size_t n = 3 * simd::chunk + 7;
    std::vector<T> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = y[i] = static_cast<T>(std::sin(static_cast<double>(i)));
    auto a = make(std::span<T>(x));  // lazy: the optimizer kernel regenerates z
    auto b = make(std::span<T>(y));  // materialised: estimate into a buffer, then a dense step
    std::vector<T> g(n);
    for (int k = 0; k < 6; ++k) {
      a.step(f);
      zo::estimate(b, f, std::span<T>(g));
      b.apply(dense_gradient<T>(std::span<const T>(g)));
    }
    CHECK(zo_test::same_bits<T>(x, y));
  };
  check([](std::span<T> x) {
    return stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::adam<>, T>(
        parameters<T>(x), optim::adam<>({.lr = 1e-2}), zo::two_point<gaussian>({.q = 2, .seed = 5}));
  });
  check([](std::span<T> x) {
    return stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::adan<>, T>(
        parameters<T>(x), optim::adan<>({.lr = 1e-2, .weight_decay = 0.02}), zo::two_point<gaussian>({.seed = 6}));
  });
  check([](std::span<T> x) {
    return stepper<zo::two_point<segmented_uniform>, no_baseline, no_normalizer, optim::adamw<>, T>(
        parameters<T>(x), optim::adamw<>({.lr = 1e-2, .weight_decay = 0.1}), zo::two_point<segmented_uniform>({.seed = 7}));
  });
}

TEST_CASE("gc_spsa: q follows the DREAM schedule and the optimizer reads it from the source", "[zo][composition]") {
  std::vector<double> x = start(30);
  gc_spsa<double> s(parameters<double>(std::span<double>(x)), zo::gc_spsa_sgd<>({.lr = 1e-3, .gamma = 1.2}),
                    zo::two_point<gaussian, zo::dream_schedule>({.eps = 1e-3, .q = 4, .seed = 8},
                                                                zo::dream_schedule{.steps_per_epoch = 2}));
  std::vector<std::size_t> qs;
  double n_past = 0;
  for (int k = 0; k < 12; ++k) {
    const auto r = s.step(sphere_loss);
    qs.push_back(r.queries);
    CHECK(r.evaluations == 2 * r.queries);
    CHECK_THAT(r.eps, WithinRel(1e-3 / std::pow(1.0 + static_cast<double>(k) / 2.0 / 100.0, 0.2), 1e-12));
    const double q = static_cast<double>(r.queries);
    if (k == 0) {
      n_past = q;
    } else {
      CHECK_THAT(s.opt_state().last_b, WithinRel(n_past / (n_past + q) * 1.2, 1e-12));
      n_past = 0.1 * q + 0.9 * n_past;
    }
    CHECK_THAT(s.opt_state().n_past, WithinRel(n_past, 1e-12));
  }
  // e = k/2: q = 4 for e < 2 (k < 4), 2 for e < 4 (k < 8), then 1.
  CHECK(qs == std::vector<std::size_t>{4, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1});
}

TEST_CASE("objective call forms and results", "[zo][composition]") {
  std::vector<float> x(10, 0.5f);
  mezo<float> s{parameters<float>(std::span<float>(x))};
  int calls = 0;
  CHECK(s.step([&] { ++calls; return 1.0; }).evaluations == 2);
  CHECK(s.step([&](const parameters<float>& p) { ++calls; return static_cast<double>(p.tensor(0)[0]); }).applied);
  CHECK(s.step([&](std::span<const float> v) { ++calls; return v[0]; }).applied);          // float result
  CHECK(s.step([&] { ++calls; return 3; }).applied);                                        // int result
  CHECK(s.step([&] { ++calls; return zo::evaluation{2.0, true}; }).applied);                // struct
  struct mine {
    float loss;
    bool valid;
  };
  CHECK(s.step([&] { ++calls; return mine{1.0f, true}; }).applied);
  CHECK(s.step([&] { ++calls; return mine{1.0f, false}; }).nonfinite);
  CHECK(calls == 14);
  STATIC_REQUIRE(zo::objective<double (*)(), float>);
  STATIC_REQUIRE_FALSE(zo::objective<int (*)(int), float>);
}

TEST_CASE("names identify the composition in saved state", "[zo][composition]") {
  CHECK(mezo<float>::kind() ==
        "two_point<gaussian,constant,no_mask,philox_icdf<7>>/no_baseline/no_normalizer/sgd<constant>/float32");
  CHECK(spall_spsa<double>::kind() ==
        "two_point<rademacher,spall_perturbation,no_mask,philox_icdf<7>>/no_baseline/no_normalizer/sgd<spall_gain>/float64");
  CHECK(sparse_mezo<float>::kind() ==
        "two_point<gaussian,constant,magnitude_mask,philox_icdf<7>>/no_baseline/no_normalizer/sgd<constant>/float32");
  CHECK(rge<float>::kind() ==
        "one_sided<unit_sphere,constant,no_mask,philox_icdf<7>>/no_baseline/no_normalizer/sgd<constant>/float32");
  CHECK(cge<float>::kind() == "coordinate_wise/no_baseline/no_normalizer/sgd<constant>/float32");
  CHECK(gc_spsa<float>::kind() ==
        "two_point<gaussian,dream_schedule,no_mask,philox_icdf<7>>/no_baseline/no_normalizer/gc_spsa<constant>/float32");
  CHECK(spsa_gc<float>::kind() == "two_point<segmented_uniform,spall_perturbation,no_mask,philox_icdf<7>>/no_baseline/"
                                  "no_normalizer/sgd<spall_gain>/float32");
  STATIC_REQUIRE(zo::detail::rewards_only<reward_policy>);
  STATIC_REQUIRE_FALSE(zo::detail::rewards_only<group_mean>);
}

TEST_CASE("reward-only outcome policies are recognised", "[zo][composition]") {
  STATIC_REQUIRE(zo::detail::rewards_only<bnpo_mean>);
  STATIC_REQUIRE(zo::detail::rewards_only<beta_normalizer>);
  STATIC_REQUIRE(zo::detail::rewards_only<pool_mean>);
  STATIC_REQUIRE(zo::detail::rewards_only<pool_std>);
  STATIC_REQUIRE_FALSE(zo::detail::rewards_only<group_std>);
  STATIC_REQUIRE_FALSE(zo::detail::rewards_only<leave_one_out>);
}
