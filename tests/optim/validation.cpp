// SPDX-License-Identifier: Apache-2.0
// Bad input: invalid hyper-parameters are rejected at construction with invalid_argument naming
// the parameter, the value and the allowed range; size mismatches between parameters, gradients
// and state give size_mismatch / state_error and leave parameters and state untouched.
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>

#include "optim/util.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using sg_test::first_mismatch;

namespace {

const double nan_v = std::numeric_limits<double>::quiet_NaN();
const double inf_v = std::numeric_limits<double>::infinity();

// Runs f, which must throw E whose message contains every fragment.
template <class E, class F>
void expect_throw(F&& f, std::initializer_list<const char*> fragments) {
  bool thrown = false;
  try {
    f();
  } catch (const E& e) {
    thrown = true;
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const char* frag : fragments) {
      INFO("expected fragment: " << frag);
      CHECK(msg.find(frag) != std::string::npos);
    }
  }
  REQUIRE(thrown);
}

}  // namespace

TEST_CASE("sgd rejects invalid hyper-parameters by name, value and range", "[optim][validation]") {
  auto make = [](optim::sgd_options o) { return [o] { optim::sgd<> s(o); }; };
  expect_throw<invalid_argument>(make({.lr = 0.0}), {"lr", "= 0", "> 0"});
  expect_throw<invalid_argument>(make({.lr = -1.0}), {"lr", "-1", "> 0"});
  expect_throw<invalid_argument>(make({.lr = nan_v}), {"lr", "nan", "finite"});
  expect_throw<invalid_argument>(make({.lr = inf_v}), {"lr", "inf", "finite"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .momentum = -0.5}), {"momentum", "-0.5", ">= 0"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .momentum = 0.9, .dampening = 1.5}), {"dampening", "1.5", "[0, 1]"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .weight_decay = -0.01}), {"weight_decay", "-0.01", ">= 0"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .nesterov = true}), {"nesterov", "momentum", "> 0"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                                 {"nesterov", "dampening", "0.1"});
  expect_throw<invalid_argument>(make({.lr = 0.1, .max_grad_norm = -1.0}), {"max_grad_norm", "-1", ">= 0"});
  REQUIRE_NOTHROW(optim::sgd<>(optim::sgd_options{.lr = 0.1, .momentum = 0.9, .nesterov = true}));
}

TEST_CASE("adam/adamw reject invalid hyper-parameters by name, value and range", "[optim][validation]") {
  auto make = [](optim::adam_options o) { return [o] { optim::adam<> a(o); }; };
  expect_throw<invalid_argument>(make({.lr = 0.0}), {"adam", "lr", "> 0"});
  expect_throw<invalid_argument>(make({.beta1 = 1.0}), {"beta1", "= 1", "[0, 1)"});
  expect_throw<invalid_argument>(make({.beta1 = -0.1}), {"beta1", "-0.1", "[0, 1)"});
  expect_throw<invalid_argument>(make({.beta2 = 1.5}), {"beta2", "1.5", "[0, 1)"});
  expect_throw<invalid_argument>(make({.beta2 = nan_v}), {"beta2", "nan", "[0, 1)"});
  expect_throw<invalid_argument>(make({.eps = 0.0}), {"eps", "= 0", "> 0"});
  expect_throw<invalid_argument>(make({.eps = -1e-8}), {"eps", "> 0"});
  expect_throw<invalid_argument>(make({.weight_decay = -1.0}), {"weight_decay", ">= 0"});
  expect_throw<invalid_argument>([] { optim::adamw<> a(optim::adamw_options{.weight_decay = -0.5}); },
                                 {"adamw", "weight_decay", "-0.5", ">= 0"});
  REQUIRE(optim::adamw<>().options().weight_decay == 1e-2);  // torch's AdamW default
  REQUIRE(optim::adam<>().options().weight_decay == 0.0);
}

TEST_CASE("adan rejects invalid hyper-parameters by name, value and range", "[optim][validation]") {
  auto make = [](optim::adan_options o) { return [o] { optim::adan<> a(o); }; };
  expect_throw<invalid_argument>(make({.lr = -0.01}), {"adan", "lr", "-0.01", "> 0"});
  expect_throw<invalid_argument>(make({.beta1 = 1.0}), {"beta1", "[0, 1)"});
  expect_throw<invalid_argument>(make({.beta2 = -0.5}), {"beta2", "-0.5", "[0, 1)"});
  expect_throw<invalid_argument>(make({.beta3 = 1.01}), {"beta3", "1.01", "[0, 1)"});
  expect_throw<invalid_argument>(make({.eps = 0.0}), {"eps", "> 0"});
  expect_throw<invalid_argument>(make({.weight_decay = -0.02}), {"weight_decay", "-0.02", ">= 0"});
  expect_throw<invalid_argument>(make({.max_grad_norm = -1.0}), {"max_grad_norm", ">= 0"});
  expect_throw<invalid_argument>(make({.optax_compat = true, .eps_root = -1.0}), {"eps_root", ">= 0"});
  // Defaults are the reference implementation's (code-convention betas).
  const optim::adan<> d;
  REQUIRE(d.options().beta1 == 0.98);
  REQUIRE(d.options().beta2 == 0.92);
  REQUIRE(d.options().beta3 == 0.99);
  REQUIRE(d.options().eps == 1e-8);
  REQUIRE(!d.options().no_prox);
}

TEST_CASE("schedules are validated by the optimizer that uses them", "[optim][validation]") {
  expect_throw<invalid_argument>([] { optim::adan<cosine_schedule> a({}, cosine_schedule{.total = 5, .warmup = 5}); },
                                 {"cosine_schedule", "total"});
  expect_throw<invalid_argument>([] { optim::sgd<step_decay> a({}, step_decay{.every = 0}); }, {"step_decay", "every"});
  expect_throw<invalid_argument>([] { optim::adam<spall_gain> a({}, spall_gain{.A = -1.0}); }, {"spall_gain", "A"});
}

TEST_CASE("parameter groups reject negative overrides", "[optim][validation]") {
  parameters<float> p;
  expect_throw<invalid_argument>([&] { p.add_group({.lr_scale = -1.0}); }, {"lr_scale", ">= 0"});
  expect_throw<invalid_argument>([&] { p.add_group({.lr = 0.0}); }, {"lr", "> 0"});
  expect_throw<invalid_argument>([&] { p.add_group({.weight_decay = -0.1}); }, {"weight_decay", ">= 0"});
}

TEMPLATE_TEST_CASE("size mismatches throw and leave parameters and state untouched", "[optim][validation]", float, double) {
  using T = TestType;
  std::vector<T> a(100, T(1)), b(37, T(2));
  parameters<T> p;
  p.add(std::span<T>(a)).add(std::span<T>(b));
  const auto a0 = a, b0 = b;
  const optim::adan<> opt(optim::adan_options{.lr = 0.1});
  auto s = opt.init(p);
  const auto m0 = s.exp_avg;
  std::vector<T> ga(100, T(0.5)), gb_short(36, T(0.5)), gb(37, T(0.5));
  step_context ctx;
  SECTION("gradient of the wrong length") {
    const std::span<const T> spans[2] = {ga, gb_short};
    expect_throw<size_mismatch>(
        [&] { opt.update(p, s, dense_gradient<T>(std::span<const std::span<const T>>(spans)), ctx); },
        {"parameter tensor", "37", "36"});
  }
  SECTION("wrong number of gradient tensors") {
    expect_throw<size_mismatch>([&] { opt.update(p, s, dense_gradient<T>(std::span<const T>(ga)), ctx); },
                                {"tensors", "2", "1"});
  }
  SECTION("state of other parameters") {
    std::vector<T> c(99);
    parameters<T> other;
    other.add(std::span<T>(c)).add(std::span<T>(b));
    auto wrong = opt.init(other);
    const std::span<const T> spans[2] = {ga, gb};
    expect_throw<state_error>(
        [&] { opt.update(p, wrong, dense_gradient<T>(std::span<const std::span<const T>>(spans)), ctx); },
        {"adan", "100", "99"});
    // one group more in the parameters than in the state
    parameters<T> grouped;
    grouped.add_group({.name = "extra"});
    grouped.add(std::span<T>(a)).add(std::span<T>(b));
    expect_throw<state_error>([&] { s.check(grouped); }, {"step counters", "groups"});
  }
  SECTION("sgd with momentum and a momentum-free state") {
    const optim::sgd<> plain(optim::sgd_options{.lr = 0.1});
    const optim::sgd<> heavy(optim::sgd_options{.lr = 0.1, .momentum = 0.9});
    auto st = plain.init(p);
    const std::span<const T> spans[2] = {ga, gb};
    expect_throw<state_error>(
        [&] { heavy.update(p, st, dense_gradient<T>(std::span<const std::span<const T>>(spans)), ctx); },
        {"momentum"});
  }
  REQUIRE(first_mismatch(a, a0) == -1);
  REQUIRE(first_mismatch(b, b0) == -1);
  REQUIRE(first_mismatch(s.exp_avg, m0) == -1);
  REQUIRE(s.steps == std::vector<std::uint64_t>{0});
}

TEST_CASE("every optimizer models the optimizer_policy concept for float and double", "[optim][concepts]") {
  STATIC_REQUIRE(optimizer_policy<optim::sgd<>, float>);
  STATIC_REQUIRE(optimizer_policy<optim::sgd<cosine_schedule>, double>);
  STATIC_REQUIRE(optimizer_policy<optim::adam<>, float>);
  STATIC_REQUIRE(optimizer_policy<optim::adamw<step_decay>, double>);
  STATIC_REQUIRE(optimizer_policy<optim::adan<>, float>);
  STATIC_REQUIRE(optimizer_policy<optim::adan<spall_gain>, double>);
  STATIC_REQUIRE(!optimizer_policy<int, float>);
  STATIC_REQUIRE(!optimizer_policy<optim::adan<>, int>);
  STATIC_REQUIRE(std::string_view(optim::adamw<>::name) == "adamw<constant>");
}
