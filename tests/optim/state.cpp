// SPDX-License-Identifier: Apache-2.0
// Saved optimizer state: save -> load -> continue is bit-identical to an uninterrupted run, for
// every optimizer and both element types, through the state aggregates and through the stepper;
// truncated, corrupt or mismatched state gives state_error and leaves the stepper untouched.
#include <algorithm>
#include <cstddef>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/outcome/outcome.hpp>
#include <stochgrad/bits/stepper/stepper.hpp>

#include "optim/util.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using sg_test::first_mismatch;
using sg_test::wave;

namespace {

const std::vector<std::size_t> sizes{1000, 3, 257};

template <class T>
std::vector<std::vector<T>> grads(std::size_t k) {
  std::vector<std::vector<T>> g;
  for (std::size_t t = 0; t < sizes.size(); ++t) g.push_back(wave<T>(sizes[t], 0.7, 0.9 * static_cast<double>(k) + static_cast<double>(t)));
  return g;
}

template <class T>
std::vector<std::vector<T>> start() {
  std::vector<std::vector<T>> x;
  for (std::size_t t = 0; t < sizes.size(); ++t) x.push_back(wave<T>(sizes[t], 1.0, 0.5 * static_cast<double>(t)));
  return x;
}

template <class T>
parameters<T> params_of(std::vector<std::vector<T>>& x) {
  parameters<T> p;
  const std::size_t g1 = p.add_group({.name = "second", .lr_scale = 0.5});
  for (std::size_t t = 0; t < x.size(); ++t) p.add(std::span<T>(x[t]), t == 2 ? g1 : 0);
  return p;
}

template <class F>
void for_each_optimizer(F&& f) {
  f(optim::sgd<>(optim::sgd_options{.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}));
  f(optim::sgd<cosine_schedule>(optim::sgd_options{.lr = 0.05}, cosine_schedule{.total = 10, .warmup = 2}));
  f(optim::adam<>(optim::adam_options{.lr = 0.01, .weight_decay = 0.01}));
  f(optim::adamw<linear_warmup>(optim::adamw_options{.lr = 0.01}, linear_warmup{.warmup = 3}));
  f(optim::adan<>(optim::adan_options{.lr = 0.01, .weight_decay = 0.02, .max_grad_norm = 4.0}));
  f(optim::adan<>(optim::adan_options{.lr = 0.01, .weight_decay = 0.02, .optax_compat = true}));
}

template <class Opt, class T>
void steps(const Opt& opt, const parameters<T>& p, typename Opt::template state<T>& s, std::size_t from, std::size_t to) {
  for (std::size_t k = from; k < to; ++k) {
    const auto g = grads<T>(k);
    const std::vector<std::span<const T>> sp(g.begin(), g.end());
    step_context ctx;
    ctx.step = k;
    opt.update(p, s, dense_gradient<T>(std::span<const std::span<const T>>(sp)), ctx);
  }
}

template <class S>
std::string save_state(S& s) {
  state_writer w;
  s.serialize(w);
  std::ostringstream os;
  w.finish(os);
  return os.str();
}

template <class S>
void load_state(S& s, const std::string& bytes) {
  std::istringstream is(bytes);
  state_reader r(is);
  s.serialize(r);
  r.finish();
}

template <class Opt, class T>
using stepper_for = stepper<first_order, no_baseline, no_normalizer, Opt, T>;

template <class St, class T>
void stepper_steps(St& st, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k) {
    const auto g = grads<T>(st.steps());
    const std::vector<std::span<const T>> sp(g.begin(), g.end());
    st.step(std::span<const std::span<const T>>(sp));
  }
}

template <class St>
std::string save_stepper(const St& st) {
  std::ostringstream os;
  st.save(os);
  return os.str();
}

}  // namespace

TEMPLATE_TEST_CASE("state aggregates: save -> load -> continue is bit-identical to an uninterrupted run", "[optim][state]",
                   float, double) {
  using T = TestType;
  for_each_optimizer([](const auto& opt) {
    INFO("optimizer " << opt.name);
    auto x = start<T>();
    auto p = params_of(x);
    auto s = opt.init(p);
    steps(opt, p, s, 0, 4);
    const std::string bytes = save_state(s);
    auto y = x;  // the parameters at save time (they are the caller's memory, not part of the state)
    steps(opt, p, s, 4, 9);

    auto q = params_of(y);
    auto r = opt.init(q);
    load_state(r, bytes);
    r.check(q);
    steps(opt, q, r, 4, 9);
    REQUIRE(first_mismatch(x, y) == -1);
    REQUIRE(r.steps == s.steps);
    REQUIRE(save_state(r) == save_state(s));
  });
}

TEMPLATE_TEST_CASE("stepper: save -> load -> continue is bit-identical for every optimizer", "[optim][state][stepper]", float,
                   double) {
  using T = TestType;
  for_each_optimizer([](const auto& opt) {
    using O = std::decay_t<decltype(opt)>;
    INFO("optimizer " << opt.name);
    auto x = start<T>();
    stepper_for<O, T> a(params_of(x), opt);
    stepper_steps<decltype(a), T>(a, 4);
    const std::string bytes = save_stepper(a);
    auto y = x;
    stepper_steps<decltype(a), T>(a, 5);

    const auto y_saved = y;
    stepper_for<O, T> b(params_of(y), opt);
    stepper_steps<decltype(b), T>(b, 2);  // some other history, overwritten by load ...
    for (std::size_t t = 0; t < y.size(); ++t) std::copy(y_saved[t].begin(), y_saved[t].end(), y[t].begin());
    std::istringstream is(bytes);  // ... and the caller restores its parameters of that time
    b.load(is);
    REQUIRE(b.steps() == 4);
    stepper_steps<decltype(b), T>(b, 5);
    REQUIRE(first_mismatch(x, y) == -1);
    REQUIRE(save_stepper(a) == save_stepper(b));
  });
}

TEMPLATE_TEST_CASE("stepper: truncated, corrupt or mismatched state gives state_error and changes nothing",
                   "[optim][state][stepper]", float, double) {
  using T = TestType;
  using O = optim::adan<>;
  auto x = start<T>();
  stepper_for<O, T> a(params_of(x), O(optim::adan_options{.lr = 0.01}));
  stepper_steps<decltype(a), T>(a, 3);
  const std::string good = save_stepper(a);

  auto y = start<T>();
  stepper_for<O, T> b(params_of(y), O(optim::adan_options{.lr = 0.01}));
  stepper_steps<decltype(b), T>(b, 2);
  const std::string before = save_stepper(b);
  const auto y_before = y;
  auto expect_refused = [&](const std::string& bytes, const char* what) {
    INFO(what);
    std::istringstream is(bytes);
    REQUIRE_THROWS_AS(b.load(is), state_error);
    REQUIRE(save_stepper(b) == before);
    REQUIRE(b.steps() == 2);
    REQUIRE(first_mismatch(y, y_before) == -1);
  };
  // every truncation point
  for (std::size_t n = 0; n < good.size(); n += (n < 64 ? 1 : 97)) expect_refused(good.substr(0, n), "truncated");
  // a flipped bit anywhere
  for (std::size_t i = 0; i < good.size(); i += 13) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    expect_refused(bad, "corrupt");
  }
  // another optimizer's state, another element type, other tensor sizes
  {
    auto z = start<T>();
    stepper_for<optim::adam<>, T> other(params_of(z));
    expect_refused(save_stepper(other), "adam state into an adan stepper");
  }
  {
    using U = std::conditional_t<std::is_same_v<T, float>, double, float>;
    auto z = start<U>();
    stepper_for<O, U> other(params_of(z));
    expect_refused(save_stepper(other), "state of the other element type");
  }
  {
    std::vector<T> big(5000);
    stepper_for<O, T> other{parameters<T>(std::span<T>(big))};
    expect_refused(save_stepper(other), "other tensor sizes");
  }
  // and the good state still loads
  std::istringstream is(good);
  b.load(is);
  REQUIRE(b.steps() == 3);
}

TEST_CASE("state aggregates: a state that does not fit the parameters is refused by check()", "[optim][state]") {
  std::vector<float> a(10), b(20);
  parameters<float> p;
  p.add(std::span<float>(a)).add(std::span<float>(b));
  const optim::adan<> opt;
  auto s = opt.init(p);
  s.exp_avg_sq[1].resize(19);
  REQUIRE_THROWS_AS(s.check(p), state_error);
  auto t = opt.init(p);
  t.steps.push_back(0);
  REQUIRE_THROWS_AS(t.check(p), state_error);
  const optim::adam<> adam;
  auto u = adam.init(p);
  u.exp_avg.pop_back();
  REQUIRE_THROWS_AS(u.check(p), state_error);
  const optim::sgd<> sgd(optim::sgd_options{.lr = 0.1, .momentum = 0.5});
  auto v = sgd.init(p);
  v.momentum_buffer[0].clear();
  REQUIRE_THROWS_AS(v.check(p), state_error);
}
