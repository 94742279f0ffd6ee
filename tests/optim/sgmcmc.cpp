// SPDX-License-Identifier: Apache-2.0
// SG-MCMC samplers (optim::sgld, optim::psgld, optim::sghmc; design/seeds/optimizers.md section 2):
// the worked examples of section 2.8 with the spec's numbers, the counter-based noise keys of
// section 2.5 against the philox<10> reference values of algorithms.md section 2.1, bit-identical
// save/resume and thread-count invariance, refusal of bad input with nothing changed, the
// schedules and the sample collector, and the closed-form stationary variances of section 2.6 by
// chains whose tolerances come from their standard errors.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/outcome/outcome.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/bits/stepper/stepper.hpp>

#include "optim/util.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using sg_test::first_mismatch;
using sg_test::wave;

namespace {

// ------------------------------------------------------------------------------------------------
// Section 2.8: linear regression y_i ~ N(x_i . theta, 0.5^2), prior N(0, 2^2 I), N = 6, d = 3.
const double X[6][3] = {{1.0, 0.5, -0.2}, {0.3, -1.0, 0.8}, {-0.6, 0.2, 1.5},
                        {1.2, 0.9, 0.1},  {0.0, -0.4, -0.7}, {0.8, 1.1, 0.4}};
const double Y[6] = {0.7, -0.9, 1.1, 1.6, -0.5, 1.3};

// grad U~(theta) = -((N/n) sum_{i in B} x_i (y_i - x_i.theta) / s^2 - theta / 4) / T_post
std::vector<double> grad_u(const std::vector<double>& th, const std::vector<int>& batch, double t_post = 1.0) {
  const double scale = 6.0 / static_cast<double>(batch.size());
  std::vector<double> g(3, 0.0);
  for (int i : batch) {
    const double r = Y[i] - (X[i][0] * th[0] + X[i][1] * th[1] + X[i][2] * th[2]);
    for (int j = 0; j < 3; ++j) g[static_cast<std::size_t>(j)] += X[i][j] * r / 0.25;
  }
  for (std::size_t j = 0; j < 3; ++j) g[j] = -(scale * g[j] - th[j] / 4.0) / t_post;
  return g;
}

const std::vector<double> theta0{0.2, -0.1, 0.4};
const std::vector<int> B0{0, 2, 5}, B1{1, 3, 4}, all6{0, 1, 2, 3, 4, 5};
const std::vector<double> xi0{-0.970189792709816, 0.19401885478711742, -1.235620531233685};
const std::vector<double> xi1{1.9239269611530123, -0.07318142112798447, 0.13913739229338928};

void require_close(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i])));
  }
}

template <class Opt>
update_report step_explicit(const Opt& opt, parameters<double>& p, typename Opt::template state<double>& s,
                            const std::vector<double>& g, const std::vector<double>& xi, std::uint64_t k) {
  step_context ctx;
  ctx.step = k;
  return opt.update_with_noise(p, s, dense_gradient<double>(std::span<const double>(g)),
                               dense_gradient<double>(std::span<const double>(xi)), ctx);
}

// ------------------------------------------------------------------------------------------------
// Tensors and gradients for the state / thread tests.
const std::vector<std::size_t> sizes{1000, 3, 257};

template <class T>
std::vector<std::vector<T>> grads(std::size_t k, const std::vector<std::size_t>& sz = sizes) {
  std::vector<std::vector<T>> g;
  for (std::size_t t = 0; t < sz.size(); ++t) {
    g.push_back(wave<T>(sz[t], 0.7, 0.9 * static_cast<double>(k) + static_cast<double>(t)));
  }
  return g;
}

template <class T>
std::vector<std::vector<T>> start(const std::vector<std::size_t>& sz = sizes) {
  std::vector<std::vector<T>> x;
  for (std::size_t t = 0; t < sz.size(); ++t) x.push_back(wave<T>(sz[t], 1.0, 0.5 * static_cast<double>(t)));
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
void for_each_sampler(F&& f) {
  f(optim::sgld<>(optim::sgld_options{.lr = 0.01}));
  f(optim::sgld<polynomial_decay>(optim::sgld_options{.lr = 0.02, .temperature = 0.3}, polynomial_decay{.b = 2.0, .gamma = 0.55}));
  f(optim::psgld<>(optim::psgld_options{.lr = 0.01}));
  f(optim::psgld<cyclical_cosine, philox<10>>(optim::psgld_options{.lr = 0.01, .alpha = 0.5}, cyclical_cosine{.total = 9, .cycles = 3}));
  f(optim::sghmc<>(optim::sghmc_options{.lr = 0.01}));
  f(optim::sghmc<>(optim::sghmc_options{.lr = 0.01, .alpha = 0.2, .temperature = 0.5, .refresh_every = 3}));
}

template <class Opt, class T>
void steps(const Opt& opt, const parameters<T>& p, typename Opt::template state<T>& s, std::size_t from, std::size_t to,
           const executor& ex = {}, const std::vector<std::size_t>& sz = sizes) {
  for (std::size_t k = from; k < to; ++k) {
    const auto g = grads<T>(k, sz);
    const std::vector<std::span<const T>> sp(g.begin(), g.end());
    step_context ctx;
    ctx.step = k;
    ctx.ex = ex;
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

const double nan_v = std::numeric_limits<double>::quiet_NaN();
const double inf_v = std::numeric_limits<double>::infinity();

}  // namespace

// ================================================================================================
// Worked examples (section 2.8), explicit noise, double.

TEST_CASE("sgld: worked example of section 2.8 (T = 1, T = 0.1, tempered potential)", "[optim][sgmcmc][example]") {
  // the model's gradient at theta0 is the spec's g0 (checks the test's potential, not the sampler)
  require_close(grad_u(theta0, B0), {-8.893999999999998, -13.161000000000003, -10.06});

  const optim::sgld<> sgld(optim::sgld_options{.lr = 1e-3});
  std::vector<double> th = theta0;
  parameters<double> p(th);
  auto s = sgld.init(p);
  const auto rep = step_explicit(sgld, p, s, grad_u(th, B0), xi0, 0);
  REQUIRE(rep.applied);
  REQUIRE(rep.lr == 1e-3);
  require_close(th, {0.16550579344848845, -0.0781622130355869, 0.3548013699553416});
  const auto g1 = grad_u(th, B1);
  require_close(g1, {-10.59873690369906, -21.759137592227553, 5.750023534455617}, 1e-11);
  step_explicit(sgld, p, s, g1, xi1, 1);
  require_close(th, {0.26214515972984215, -0.0596758480900036, 0.35527375976848746});
  REQUIRE(s.steps == std::vector<std::uint64_t>{2});

  const std::vector<double> cold{0.19517344437073839, -0.08409515904203962, 0.3925856868678268};
  {
    const optim::sgld<> cold_sgld(optim::sgld_options{.lr = 1e-3, .temperature = 0.1});
    std::vector<double> t2 = theta0;
    parameters<double> q(t2);
    auto st = cold_sgld.init(q);
    step_explicit(cold_sgld, q, st, grad_u(t2, B0), xi0, 0);
    require_close(t2, cold);
  }
  {
    // T_post = 0.1 in the potential, noise T = 1, h = 1e-4: the same theta1 (section 2.2)
    const optim::sgld<> hot(optim::sgld_options{.lr = 1e-4});
    std::vector<double> t3 = theta0;
    parameters<double> q(t3);
    auto st = hot.init(q);
    step_explicit(hot, q, st, grad_u(t3, B0, 0.1), xi0, 0);
    require_close(t3, cold);
  }
}

TEST_CASE("psgld: worked example of section 2.8 (alpha 0.9, lambda 1e-5, V0 = 1)", "[optim][sgmcmc][example]") {
  const optim::psgld<> psgld(optim::psgld_options{.lr = 1e-3});
  std::vector<double> th = theta0;
  parameters<double> p(th);
  auto s = psgld.init(p);
  REQUIRE(s.square_avg[0] == std::vector<double>{1.0, 1.0, 1.0});
  step_explicit(psgld, p, s, grad_u(th, B0), xi0, 0);
  require_close(s.square_avg[0], {8.8103236, 18.2211921, 11.02036});
  // Ginv1 = 1 / (lambda + sqrt(V1)), from the state
  std::vector<double> ginv(3);
  for (std::size_t j = 0; j < 3; ++j) ginv[j] = 1.0 / (1e-5 + std::sqrt(s.square_avg[0][j]));
  require_close(ginv, {0.3369012379147287, 0.23426671580906336, 0.30123178887965935});
  require_close(th, {0.17781249867296994, -0.09271715481108793, 0.37270192092112703});
  step_explicit(psgld, p, s, grad_u(th, B1), xi1, 1);
  require_close(s.square_avg[0], {18.92133625464952, 64.69768960248017, 13.522241874685772});
  require_close(th, {0.2214766612052098, -0.09113885927660559, 0.3743142490920769});
}

TEST_CASE("sghmc: worked example of section 2.8 (eta 1e-3, alpha 0.1, full batch)", "[optim][sgmcmc][example]") {
  // Chen et al.'s order: theta1 = theta0 + v0 = theta0; v1 from the gradient at theta1;
  // theta2 = theta1 + v1; v2 from the gradient at theta2. The library's first update yields
  // (theta2, v1), its second update (with the gradient at theta2) v2.
  const optim::sghmc<> sghmc(optim::sghmc_options{.lr = 1e-3, .alpha = 0.1});
  std::vector<double> th = theta0;
  parameters<double> p(th);
  auto s = sghmc.init(p);
  step_explicit(sghmc, p, s, grad_u(th, all6), xi0, 0);
  require_close(s.momentum[0], {-0.004186555629261636, 0.020348840957960374, -0.015618313132173257});
  require_close(th, {0.1958134443707384, -0.07965115904203963, 0.38438168686782676});
  step_explicit(sghmc, p, s, grad_u(th, all6), xi1, 1);
  require_close(s.momentum[0], {0.032842411444556456, 0.03464376783366483, -0.010028724831811359});
  // and the parameters moved by v2
  require_close(th, {0.1958134443707384 + 0.032842411444556456, -0.07965115904203963 + 0.03464376783366483,
                     0.38438168686782676 - 0.010028724831811359});
}

TEST_CASE("sgld: float parameters reproduce the worked example to float precision", "[optim][sgmcmc][example]") {
  const optim::sgld<> sgld(optim::sgld_options{.lr = 1e-3});
  std::vector<float> th{0.2f, -0.1f, 0.4f};
  parameters<float> p(th);
  auto s = sgld.init(p);
  const auto gd = grad_u(theta0, B0);
  const std::vector<float> g(gd.begin(), gd.end()), xi(xi0.begin(), xi0.end());
  step_context ctx;
  sgld.update_with_noise(p, s, dense_gradient<float>(std::span<const float>(g)),
                         dense_gradient<float>(std::span<const float>(xi)), ctx);
  const std::vector<double> want{0.16550579344848845, -0.0781622130355869, 0.3548013699553416};
  for (std::size_t j = 0; j < 3; ++j) CHECK(std::abs(static_cast<double>(th[j]) - want[j]) < 2e-7);
}

// ================================================================================================
// Counter-based noise (section 2.5).

TEST_CASE("sampler noise: keys (seed, stream = tensor, draw = step) give the philox<10> reference values",
          "[optim][sgmcmc][noise]") {
  // lr = 0.5, T = 1, zero gradient: theta moves by sqrt(2 * 0.5) xi = xi exactly.
  const optim::sgld<constant_schedule, philox<10>> sgld(optim::sgld_options{.lr = 0.5, .noise_seed = 42});
  std::vector<double> a(4, 0.0), b(4, 0.0);
  parameters<double> p;
  p.add(std::span<double>(a)).add(std::span<double>(b));
  auto s = sgld.init(p);
  const std::vector<double> z0(4, 0.0), z1(4, 0.0);
  const std::vector<std::span<const double>> zs{std::span<const double>(z0), std::span<const double>(z1)};
  step_context ctx;
  sgld.update(p, s, dense_gradient<double>(std::span<const std::span<const double>>(zs)), ctx);
  // tensor 0 = stream 0, draw 0; tensor 1 = stream 1, draw 0 (algorithms.md section 2.1, float variates)
  const double s0[4] = {-0.970189792709816, 0.19401885478711742, -1.235620531233685, 1.9239269611530123};
  const double s1[4] = {2.127690458040374, 2.1613741403903965, -0.4082709037325331, -1.6597530572367774};
  for (std::size_t e = 0; e < 4; ++e) {
    CHECK(std::abs(a[e] - s0[e]) < 1e-6);
    CHECK(std::abs(b[e] - s1[e]) < 1e-6);
  }
  // step 1 = draw 1 of stream 0
  const std::vector<double> a1 = a;
  ctx.step = 1;
  sgld.update(p, s, dense_gradient<double>(std::span<const std::span<const double>>(zs)), ctx);
  const double d1[4] = {-1.6914354812537753, -1.1320296441078899, 0.3261287026776039, -1.4560036614837133};
  for (std::size_t e = 0; e < 4; ++e) CHECK(std::abs((a[e] - a1[e]) - d1[e]) < 1e-6);

  // the first worked-example step with the counter noise of seed 42 (xi0 = elements 0..2 of
  // stream 0, draw 0) gives the spec's theta1 up to the float rounding of the variates
  const optim::sgld<constant_schedule, philox<10>> ex(optim::sgld_options{.lr = 1e-3, .noise_seed = 42});
  std::vector<double> th = theta0;
  parameters<double> q(th);
  auto st = ex.init(q);
  const auto g0 = grad_u(th, B0);
  ex.update(q, st, dense_gradient<double>(std::span<const double>(g0)), step_context{});
  require_close(th, {0.16550579344848845, -0.0781622130355869, 0.3548013699553416}, 1e-8);
}

TEMPLATE_TEST_CASE("sampler noise: every element follows its per-element definition (SIMD body and tail)",
                   "[optim][sgmcmc][noise]", float, double) {
  using T = TestType;
  for (const std::uint64_t k : {std::uint64_t{0}, std::uint64_t{7}, (std::uint64_t{1} << 32) + 5}) {
    INFO("step " << k);
    auto x = start<T>();
    auto x0 = x;
    auto p = params_of(x);
    const optim::sgld<> sgld(optim::sgld_options{.lr = 0.04, .temperature = 0.7});
    auto s = sgld.init(p);
    const auto g = grads<T>(k);
    const std::vector<std::span<const T>> sp(g.begin(), g.end());
    step_context ctx;
    ctx.step = k;
    sgld.update(p, s, dense_gradient<T>(std::span<const std::span<const T>>(sp)), ctx);
    const std::uint64_t seed_s = optim::default_sampler_seed + (k >> 32) * 0x9E3779B97F4A7C15ULL;
    double worst = 0.0;
    for (std::size_t t = 0; t < x.size(); ++t) {
      const double h = 0.04 * (t == 2 ? 0.5 : 1.0);
      for (std::size_t e = 0; e < x[t].size(); ++e) {
        const double xi = static_cast<double>(
            noise_at<gaussian, default_generator>(noise_key{seed_s, static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(k)}, e));
        const double want = static_cast<double>(x0[t][e]) - h * static_cast<double>(g[t][e]) + std::sqrt(2.0 * 0.7 * h) * xi;
        worst = std::max(worst, std::abs(static_cast<double>(x[t][e]) - want));
      }
    }
    CHECK(worst < (std::is_same_v<T, float> ? 1e-6 : 1e-14));
  }
}

// ================================================================================================
// Save / resume, threads.

TEMPLATE_TEST_CASE("samplers: save -> load -> continue is bit-identical (state aggregates and stepper)",
                   "[optim][sgmcmc][state]", float, double) {
  using T = TestType;
  for_each_sampler([](const auto& opt) {
    using O = std::decay_t<decltype(opt)>;
    INFO("sampler " << opt.name);
    {
      auto x = start<T>();
      auto p = params_of(x);
      auto s = opt.init(p);
      steps(opt, p, s, 0, 4);
      const std::string bytes = save_state(s);
      auto y = x;
      steps(opt, p, s, 4, 9);
      auto q = params_of(y);
      auto r = opt.init(q);
      std::istringstream is(bytes);
      state_reader rd(is);
      r.serialize(rd);
      rd.finish();
      opt.check_state(r, q);
      steps(opt, q, r, 4, 9);
      REQUIRE(first_mismatch(x, y) == -1);
      REQUIRE(save_state(r) == save_state(s));
    }
    {
      auto x = start<T>();
      stepper_for<O, T> a(params_of(x), opt);
      stepper_steps<decltype(a), T>(a, 4);
      const std::string bytes = save_stepper(a);
      auto y = x;
      stepper_steps<decltype(a), T>(a, 5);
      const auto y_saved = y;
      stepper_for<O, T> b(params_of(y), opt);
      stepper_steps<decltype(b), T>(b, 2);  // other history, overwritten by load
      for (std::size_t t = 0; t < y.size(); ++t) std::copy(y_saved[t].begin(), y_saved[t].end(), y[t].begin());
      std::istringstream is(bytes);
      b.load(is);
      REQUIRE(b.steps() == 4);
      stepper_steps<decltype(b), T>(b, 5);
      REQUIRE(first_mismatch(x, y) == -1);
      REQUIRE(save_stepper(a) == save_stepper(b));
    }
  });
}

TEST_CASE("samplers: a saved state of another sampler or size is refused by the stepper", "[optim][sgmcmc][state]") {
  auto x = start<double>();
  using O = optim::psgld<>;
  stepper_for<O, double> a(params_of(x), O(optim::psgld_options{.lr = 0.01}));
  stepper_steps<decltype(a), double>(a, 2);
  const std::string before = save_stepper(a);
  auto z = start<double>();
  stepper_for<optim::sgld<>, double> other(params_of(z), optim::sgld<>(optim::sgld_options{.lr = 0.01}));
  std::istringstream is(save_stepper(other));
  REQUIRE_THROWS_AS(a.load(is), state_error);
  REQUIRE(save_stepper(a) == before);
  auto s = O(optim::psgld_options{.lr = 0.01}).init(params_of(z));
  s.square_avg[1].pop_back();
  auto pz = params_of(z);
  REQUIRE_THROWS_AS(s.check(pz), state_error);
}

TEMPLATE_TEST_CASE("samplers: results do not depend on the thread count or executor", "[optim][sgmcmc][threads]", float,
                   double) {
  using T = TestType;
  const std::vector<std::size_t> big{100003, 3, 257, 70000};
  for_each_sampler([&](const auto& opt) {
    INFO("sampler " << opt.name);
    auto x_ref = start<T>(big);
    auto p_ref = params_of(x_ref);
    auto s_ref = opt.init(p_ref);
    steps(opt, p_ref, s_ref, 0, 4, executor{}, big);
    for (unsigned threads : {1U, 3U, 4U}) {
      INFO("threads " << threads);
      thread_pool pool(threads);
      auto x = start<T>(big);
      auto p = params_of(x);
      auto s = opt.init(p);
      steps(opt, p, s, 0, 4, executor(pool), big);
      REQUIRE(first_mismatch(x, x_ref) == -1);
      REQUIRE(save_state(s) == save_state(s_ref));
    }
  });
}

// ================================================================================================
// Bad input.

TEST_CASE("samplers reject invalid hyper-parameters by name, value and range", "[optim][sgmcmc][validation]") {
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = 0.0}); }, {"sgld", "lr", "= 0", "> 0"});
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = nan_v}); }, {"lr", "nan", "finite"});
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = 0.1, .temperature = -0.5}); },
                                 {"temperature", "-0.5", ">= 0"});
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = 0.1, .temperature = inf_v}); },
                                 {"temperature", "inf", "finite"});
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = 0.1, .weight_decay = 0.01}); },
                                 {"weight_decay", "0.01", "prior"});
  expect_throw<invalid_argument>([] { optim::sgld<> s(optim::sgld_options{.lr = 0.1, .max_grad_norm = 1.0}); },
                                 {"max_grad_norm", "= 1", "clip"});
  expect_throw<invalid_argument>([] { optim::psgld<> s(optim::psgld_options{.lr = -1.0}); }, {"psgld", "lr", "-1"});
  expect_throw<invalid_argument>([] { optim::psgld<> s(optim::psgld_options{.alpha = 1.0}); }, {"alpha", "= 1", "[0, 1)"});
  expect_throw<invalid_argument>([] { optim::psgld<> s(optim::psgld_options{.lambda = 0.0}); }, {"lambda", "= 0", "> 0"});
  expect_throw<invalid_argument>([] { optim::psgld<> s(optim::psgld_options{.v0 = -1.0}); }, {"v0", "-1", ">= 0"});
  expect_throw<invalid_argument>([] { optim::sghmc<> s(optim::sghmc_options{.alpha = 1.5}); }, {"sghmc", "alpha", "1.5", "[0, 1]"});
  expect_throw<invalid_argument>([] { optim::sghmc<> s(optim::sghmc_options{.alpha = -0.1}); }, {"alpha", "-0.1"});
  expect_throw<invalid_argument>([] { optim::sghmc<> s(optim::sghmc_options{.temperature = -1.0}); }, {"temperature", "-1"});
  expect_throw<invalid_argument>([] { optim::sghmc<> s(optim::sghmc_options{.weight_decay = 1e-4}); }, {"weight_decay"});
  // schedules
  expect_throw<invalid_argument>([] { optim::sgld<polynomial_decay> s({}, polynomial_decay{.b = 0.0}); }, {"polynomial_decay", "b", "> 0"});
  expect_throw<invalid_argument>([] { optim::sgld<polynomial_decay> s({}, polynomial_decay{.gamma = -1.0}); }, {"gamma", "-1", ">= 0"});
  expect_throw<invalid_argument>([] { first_last_polynomial f(0.001, 0.05, 100); }, {"first_last_polynomial", "last", "<= first"});
  expect_throw<invalid_argument>([] { first_last_polynomial f(0.05, 0.001, 1); }, {"iterations", ">= 2"});
  expect_throw<invalid_argument>([] { first_last_polynomial f(0.05, 0.001, 10, 0.0); }, {"gamma", "> 0"});
  expect_throw<invalid_argument>([] { first_last_polynomial f(0.0, 0.0, 10); }, {"first", "> 0"});
  expect_throw<invalid_argument>([] { optim::sghmc<cyclical_cosine> s({}, cyclical_cosine{.total = 10, .cycles = 11}); },
                                 {"cyclical_cosine", "cycles", "11"});
  expect_throw<invalid_argument>([] { optim::sample_collector<double> c(3, {.thin = 0}); }, {"thin", "> 0"});
  REQUIRE_NOTHROW(optim::sghmc<>(optim::sghmc_options{.alpha = 1.0, .temperature = 0.0}));
  REQUIRE_NOTHROW(optim::sgld<>(optim::sgld_options{.temperature = 0.0}));
}

TEMPLATE_TEST_CASE("samplers: bad updates throw before anything changes", "[optim][sgmcmc][validation]", float, double) {
  using T = TestType;
  for_each_sampler([](const auto& opt) {
    INFO("sampler " << opt.name);
    auto x = start<T>();
    auto p = params_of(x);
    auto s = opt.init(p);
    steps(opt, p, s, 0, 2);
    const auto x_before = x;
    const std::string s_before = save_state(s);
    auto unchanged = [&] {
      REQUIRE(first_mismatch(x, x_before) == -1);
      REQUIRE(save_state(s) == s_before);
    };
    step_context ctx;
    ctx.step = 2;
    // a gradient tensor one element short
    auto g = grads<T>(2);
    g[2].pop_back();
    {
      const std::vector<std::span<const T>> sp(g.begin(), g.end());
      REQUIRE_THROWS_AS(opt.update(p, s, dense_gradient<T>(std::span<const std::span<const T>>(sp)), ctx), size_mismatch);
      unchanged();
    }
    // explicit noise of the wrong shape
    const auto good = grads<T>(2);
    const std::vector<std::span<const T>> gs(good.begin(), good.end());
    const dense_gradient<T> gsrc{std::span<const std::span<const T>>(gs)};
    {
      const std::vector<std::span<const T>> ns(good.begin(), good.end() - 1);
      REQUIRE_THROWS_AS(opt.update_with_noise(p, s, gsrc, dense_gradient<T>(std::span<const std::span<const T>>(ns)), ctx),
                        size_mismatch);
      unchanged();
    }
    // a state of the wrong size
    {
      auto bad = s;
      bad.steps.push_back(0);
      REQUIRE_THROWS_AS(opt.update(p, bad, gsrc, ctx), state_error);
      unchanged();
    }
    // a group that sets weight decay
    {
      auto q = params_of(x);
      q.add_group({.name = "decayed", .weight_decay = 0.01});
      auto sq = opt.init(q);
      const std::string sq_before = save_state(sq);
      expect_throw<invalid_argument>([&] { opt.update(q, sq, gsrc, ctx); }, {"weight_decay", "0.01"});
      REQUIRE(save_state(sq) == sq_before);
      unchanged();
    }
  });
}

TEST_CASE("samplers: skip_nonfinite leaves the chain in place and draws no noise", "[optim][sgmcmc][validation]") {
  auto x = start<double>();
  auto p = params_of(x);
  const optim::sghmc<> opt(optim::sghmc_options{.lr = 0.01, .skip_nonfinite = true});
  auto s = opt.init(p);
  steps(opt, p, s, 0, 2);
  const auto x_before = x;
  const std::string s_before = save_state(s);
  auto g = grads<double>(2);
  g[1][1] = nan_v;
  const std::vector<std::span<const double>> sp(g.begin(), g.end());
  step_context ctx;
  ctx.step = 2;
  const auto rep = opt.update(p, s, dense_gradient<double>(std::span<const std::span<const double>>(sp)), ctx);
  REQUIRE_FALSE(rep.applied);
  REQUIRE(first_mismatch(x, x_before) == -1);
  REQUIRE(save_state(s) == s_before);
  // without the guard the NaN propagates
  const optim::sghmc<> raw(optim::sghmc_options{.lr = 0.01});
  auto r = raw.init(p);
  raw.update(p, r, dense_gradient<double>(std::span<const std::span<const double>>(sp)), ctx);
  REQUIRE(std::isnan(x[1][1]));
}

// ================================================================================================
// Properties.

TEMPLATE_TEST_CASE("sgld with T = 0 is plain SGD, bitwise; sghmc with alpha = 1 is SGLD", "[optim][sgmcmc][property]",
                   float, double) {
  using T = TestType;
  {
    auto x = start<T>();
    auto y = start<T>();
    auto p = params_of(x);
    auto q = params_of(y);
    const optim::sgld<polynomial_decay> sgld(optim::sgld_options{.lr = 0.05, .temperature = 0.0}, polynomial_decay{});
    const optim::sgd<polynomial_decay> sgd(optim::sgd_options{.lr = 0.05}, polynomial_decay{});
    auto s = sgld.init(p);
    auto r = sgd.init(q);
    steps(sgld, p, s, 0, 5);
    steps(sgd, q, r, 0, 5);
    REQUIRE(first_mismatch(x, y) == -1);
  }
  {
    // v = (1 - 1) v - h g + sqrt(2 h T) xi; theta += v: the SGLD update with the same noise key
    auto x = start<T>();
    auto y = start<T>();
    auto p = params_of(x);
    auto q = params_of(y);
    const optim::sghmc<> hmc(optim::sghmc_options{.lr = 0.02, .alpha = 1.0, .temperature = 0.4});
    const optim::sgld<> sgld(optim::sgld_options{.lr = 0.02, .temperature = 0.4});
    auto s = hmc.init(p);
    auto r = sgld.init(q);
    steps(hmc, p, s, 0, 3);
    steps(sgld, q, r, 0, 3);
    double worst = 0.0;
    for (std::size_t t = 0; t < x.size(); ++t) {
      for (std::size_t e = 0; e < x[t].size(); ++e) {
        worst = std::max(worst, std::abs(static_cast<double>(x[t][e]) - static_cast<double>(y[t][e])));
      }
    }
    CHECK(worst < (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    CHECK(worst >= 0.0);
  }
}

TEST_CASE("sghmc: momentum refresh resamples v = sqrt(eta) zeta from stream 0x80000000 | t", "[optim][sgmcmc][property]") {
  // lr = 0.25, alpha = 0 (no friction, no noise), zero gradient: at a refresh step v = 0.5 zeta
  // and theta moves by v; between refreshes v is carried unchanged.
  const optim::sghmc<constant_schedule, philox<10>> opt(
      optim::sghmc_options{.lr = 0.25, .alpha = 0.0, .refresh_every = 2, .noise_seed = 42});
  std::vector<double> a(4, 0.0);
  parameters<double> p(a);
  auto s = opt.init(p);
  const std::vector<double> z(4, 0.0);
  step_context ctx;
  for (std::uint64_t k = 0; k < 3; ++k) {
    ctx.step = k;
    opt.update(p, s, dense_gradient<double>(std::span<const double>(z)), ctx);
    for (std::size_t e = 0; e < 4; ++e) {
      const double zeta = static_cast<double>(noise_at<gaussian, philox<10>>(
          optim::sampler_noise_key(42, optim::sampler_refresh_stream, k / 2), e));
      CHECK(s.momentum[0][e] == 0.5 * zeta);
    }
  }
  // three updates: refresh at 0 (draw 0), carry at 1, refresh at 2 (draw 1)
  for (std::size_t e = 0; e < 4; ++e) {
    const double z0 = static_cast<double>(noise_at<gaussian, philox<10>>(optim::sampler_noise_key(42, optim::sampler_refresh_stream, 0), e));
    const double z1 = static_cast<double>(noise_at<gaussian, philox<10>>(optim::sampler_noise_key(42, optim::sampler_refresh_stream, 1), e));
    CHECK(std::abs(a[e] - (z0 + 0.5 * z1)) < 1e-15);
    CHECK(z0 != z1);
  }
}

TEST_CASE("SG-MCMC schedules: polynomial decay, first/last fit, cyclical cosine", "[optim][sgmcmc][schedule]") {
  const polynomial_decay pd{.b = 1.0, .gamma = 0.33};
  CHECK(pd(0) == 1.0);
  CHECK(std::abs(pd(9) - std::pow(10.0, -0.33)) < 1e-15);
  // jax-sgmc alias.sgld defaults over K = 1000 iterations: first and last step sizes hit exactly
  const first_last_polynomial fl(1000);
  CHECK(std::abs(fl(0) - 0.05) < 1e-15);
  CHECK(std::abs(fl(999) - 0.001) < 1e-15);
  CHECK(fl(500) < fl(499));
  CHECK(fl(500) > 0.001);
  // a, b from the closed form
  const double a = std::pow((std::pow(0.001, -1.0 / 0.33) - std::pow(0.05, -1.0 / 0.33)) / 999.0, -0.33);
  CHECK(std::abs(fl.a() - a) <= 1e-12 * a);
  CHECK(std::abs(fl.b() - std::pow(0.05 / a, -1.0 / 0.33)) <= 1e-9 * fl.b());
  const first_last_polynomial flat(0.01, 0.01, 1);
  CHECK(flat(0) == 0.01);
  CHECK(flat(12345) == 0.01);
  // cyclical cosine: K = 10, M = 3 -> cycle length 4
  const cyclical_cosine cc{.total = 10, .cycles = 3};
  CHECK(cc.cycle_length() == 4);
  CHECK(cc(0) == 1.0);
  CHECK(std::abs(cc(1) - 0.5 * (std::cos(std::numbers::pi / 4.0) + 1.0)) < 1e-15);
  CHECK(std::abs(cc(2) - 0.5) < 1e-15);
  CHECK(cc(4) == 1.0);
  CHECK(cc(8) == 1.0);
  // the sampler applies the schedule: h_k = lr * s(k)
  const optim::sgld<first_last_polynomial> sgld(optim::sgld_options{.lr = 1.0}, first_last_polynomial(0.05, 0.001, 100));
  std::vector<double> w(5, 0.0);
  parameters<double> p(w);
  auto s = sgld.init(p);
  const std::vector<double> z(5, 0.0);
  step_context ctx;
  ctx.step = 99;
  const auto rep = sgld.update(p, s, dense_gradient<double>(std::span<const double>(z)), ctx);
  CHECK(std::abs(rep.lr - 0.001) < 1e-15);
}

TEST_CASE("sample_collector: burn-in, thinning, weighted running mean and variance", "[optim][sgmcmc][samples]") {
  optim::sample_collector<double> c(2, {.burn_in = 3, .thin = 2});
  std::vector<std::vector<double>> kept;
  for (std::uint64_t k = 0; k < 12; ++k) {
    const std::vector<double> x{std::sin(static_cast<double>(k)), 1.0 + 0.5 * static_cast<double>(k * k % 7)};
    const bool took = c.offer(k, std::span<const double>(x));
    CHECK(took == (k >= 3 && (k - 3) % 2 == 0));
    if (took) kept.push_back(x);
  }
  REQUIRE(c.count() == 5);  // k = 3, 5, 7, 9, 11
  for (std::size_t i = 0; i < 2; ++i) {
    double m = 0.0, v = 0.0;
    for (const auto& x : kept) m += x[i];
    m /= 5.0;
    for (const auto& x : kept) v += (x[i] - m) * (x[i] - m);
    CHECK(std::abs(c.mean()[i] - m) < 1e-14);
    CHECK(std::abs(c.variance(i) - v / 5.0) < 1e-13);
    CHECK(std::abs(c.sample_variance(i) - v / 4.0) < 1e-13);
  }
  // weights: mean = sum w x / sum w
  optim::sample_collector<float> w(1);
  const float a = 1.0f, b = 4.0f;
  w.add(std::span<const float>(&a, 1), 1.0);
  w.add(std::span<const float>(&b, 1), 3.0);
  CHECK(std::abs(w.mean()[0] - 3.25) < 1e-15);
  CHECK(std::abs(w.variance(0) - (1.0 * 2.25 * 2.25 + 3.0 * 0.75 * 0.75) / 4.0) < 1e-14);
  CHECK(w.weight_sum() == 4.0);
  REQUIRE_THROWS_AS(w.add(std::span<const float>(&a, 1), 0.0), invalid_argument);
  REQUIRE_THROWS_AS(w.add(std::span<const float>(), 1.0), size_mismatch);
  CHECK(w.count() == 2);
  // over parameters (tensors concatenated)
  std::vector<double> t0{1.0, 2.0}, t1{3.0};
  parameters<double> p;
  p.add(std::span<double>(t0)).add(std::span<double>(t1));
  optim::sample_collector<double> pc(p);
  pc.add(p);
  t1[0] = 5.0;
  pc.add(p);
  CHECK(pc.mean()[2] == 4.0);
  CHECK(pc.mean()[0] == 1.0);
  pc.reset();
  CHECK(pc.count() == 0);
}

TEST_CASE("step_weighted_thinning: accepts about `selections` steps, more where the step is larger",
          "[optim][sgmcmc][samples]") {
  const polynomial_decay sched{.b = 1.0, .gamma = 0.55};
  const std::uint64_t K = 20000, burn = 1000;
  const double sum = optim::eligible_step_sum(0.1, sched, burn, K);
  const optim::step_weighted_thinning<> thin{.seed = 7, .selections = 500.0, .eligible_sum = sum};
  REQUIRE_NOTHROW(thin.validate());
  double count = 0.0, var = 0.0, early = 0.0, late = 0.0;
  for (std::uint64_t k = burn; k < K; ++k) {
    const double h = 0.1 * sched(k);
    const double pk = 500.0 * h / sum;
    var += pk * (1.0 - pk);
    if (thin.accept(k, h)) {
      count += 1.0;
      (k < (burn + K) / 2 ? early : late) += 1.0;
    }
  }
  // the count is a sum of independent Bernoullis with mean 500: 5 standard deviations
  CHECK(std::abs(count - 500.0) < 5.0 * std::sqrt(var));
  CHECK(early > late);  // decaying step sizes make late samples rarer
  REQUIRE_THROWS_AS((optim::step_weighted_thinning<>{.selections = 0.0}.validate()), invalid_argument);
}

// ================================================================================================
// Stationary variances (section 2.6).
//
// Target U(theta) = theta^2 / (2 sigma^2); every element of the parameter tensor is an
// independent chain (the noise of element e is a function of e). SGLD with an exact or noisy
// gradient is an AR(1) process theta' = rho theta + eta with rho = 1 - h g / sigma^2 (g: the
// group's lr_scale acting as a constant preconditioner) and i.i.d. Gaussian innovations. The
// estimate of Var_inf is the mean of theta^2 over chains and post-burn-in steps (the mean is
// known to be 0). For a stationary Gaussian AR(1) chain, y = theta^2 has variance 2 Var^2 and
// lag-l autocorrelation rho^(2 l), so its integrated autocorrelation time is
// tau = (1 + rho^2) / (1 - rho^2) and the effective sample size of n draws is n / tau. rho is
// estimated from the chain itself (pooled lag-1 autocorrelation), so the standard error
// SE = sqrt(2) Var / sqrt(n_chains * n_steps / tau) is derived from the chain, and the test
// allows 5 SE (a false failure has probability < 1e-6). SGHMC's (theta, v) is a VAR(1) process,
// not AR(1); there the standard error comes from the spread of the per-chain estimates across the
// independent chains (exact by the CLT over chains).

namespace {

struct ar1_estimate {
  double var = 0.0;  // mean theta^2
  double se = 0.0;   // its standard error
  double rho = 0.0;  // pooled lag-1 autocorrelation
};

// SGLD chain on U = theta^2 / (2 sigma2); gradient theta / sigma2 + sqrt(s2) zeta (zeta from a
// seeded std engine, independent of the sampler noise); preconditioner g via the group lr_scale.
ar1_estimate sgld_chain(double h, double g_pre, double temperature, double sigma2, double s2, std::size_t chains,
                        std::size_t n_steps, std::size_t burn, std::uint64_t seed) {
  std::vector<double> th(chains, 0.0), grad(chains), prev(chains);
  parameters<double> p;
  const std::size_t grp = p.add_group({.name = "preconditioned", .lr_scale = g_pre});
  p.add(std::span<double>(th), grp);
  const optim::sgld<> sgld(optim::sgld_options{.lr = h, .temperature = temperature, .noise_seed = seed});
  auto s = sgld.init(p);
  std::mt19937_64 eng(seed);
  std::normal_distribution<double> nd;
  const double sd = std::sqrt(s2);
  double sum_sq = 0.0, sum_lag = 0.0, sum_prev_sq = 0.0;
  step_context ctx;
  for (std::size_t k = 0; k < burn + n_steps; ++k) {
    for (std::size_t e = 0; e < chains; ++e) grad[e] = th[e] / sigma2 + (s2 > 0.0 ? sd * nd(eng) : 0.0);
    prev = th;
    ctx.step = k;
    sgld.update(p, s, dense_gradient<double>(std::span<const double>(grad)), ctx);
    if (k >= burn) {
      for (std::size_t e = 0; e < chains; ++e) {
        sum_sq += th[e] * th[e];
        sum_lag += th[e] * prev[e];
        sum_prev_sq += prev[e] * prev[e];
      }
    }
  }
  ar1_estimate r;
  const double n = static_cast<double>(chains * n_steps);
  r.var = sum_sq / n;
  r.rho = sum_lag / sum_prev_sq;
  const double tau = (1.0 + r.rho * r.rho) / (1.0 - r.rho * r.rho);
  r.se = std::sqrt(2.0) * r.var / std::sqrt(n / tau);
  return r;
}

void check_sgld_variance(double h, double g_pre, double temperature, double sigma2, double s2, double spec_value,
                         std::size_t chains, std::size_t n_steps, std::uint64_t seed) {
  INFO("h " << h << " g " << g_pre << " T " << temperature << " sigma^2 " << sigma2 << " s^2 " << s2);
  // the closed form of section 2.6 gives the spec's number
  const double hg = h * g_pre;
  const double closed = sigma2 * (temperature + hg * s2 / 2.0) / (1.0 - hg / (2.0 * sigma2));
  REQUIRE(std::abs(closed - spec_value) < 1e-15 * spec_value + 1e-16);
  const auto est = sgld_chain(h, g_pre, temperature, sigma2, s2, chains, n_steps, 200, seed);
  INFO("estimate " << est.var << " +- " << est.se << ", rho " << est.rho);
  CHECK(std::abs(est.var - spec_value) < 5.0 * est.se);
  // the lag-1 autocorrelation is 1 - h g / sigma^2 (its estimate's SE is about sqrt((1 - rho^2) / n))
  CHECK(std::abs(est.rho - (1.0 - hg / sigma2)) < 0.01);
  // the test can tell the discretisation bias apart: the h -> 0 value T sigma^2 is excluded
  CHECK(std::abs(est.var - temperature * sigma2) > 5.0 * est.se);
}

struct hmc_estimate {
  double var_theta = 0.0, var_v = 0.0, cov = 0.0;
  double se_theta = 0.0, se_v = 0.0, se_cov = 0.0;
};

hmc_estimate sghmc_chain(double eta, double alpha, double temperature, double sigma2, std::size_t chains,
                         std::size_t n_steps, std::size_t burn, std::uint64_t seed) {
  std::vector<double> th(chains, 0.0), grad(chains);
  parameters<double> p(th);
  const optim::sghmc<> hmc(optim::sghmc_options{.lr = eta, .alpha = alpha, .temperature = temperature, .noise_seed = seed});
  auto s = hmc.init(p);
  std::vector<double> st(chains, 0.0), sv(chains, 0.0), sc(chains, 0.0);
  step_context ctx;
  for (std::size_t k = 0; k < burn + n_steps; ++k) {
    for (std::size_t e = 0; e < chains; ++e) grad[e] = th[e] / sigma2;
    ctx.step = k;
    hmc.update(p, s, dense_gradient<double>(std::span<const double>(grad)), ctx);
    if (k >= burn) {
      const auto& v = s.momentum[0];
      for (std::size_t e = 0; e < chains; ++e) {
        st[e] += th[e] * th[e];
        sv[e] += v[e] * v[e];
        sc[e] += th[e] * v[e];
      }
    }
  }
  auto mean_se = [&](std::vector<double>& x, double& mean, double& se) {
    const double n = static_cast<double>(chains);
    double m = 0.0, q = 0.0;
    for (auto& xi : x) {
      xi /= static_cast<double>(n_steps);
      m += xi;
    }
    m /= n;
    for (const double xi : x) q += (xi - m) * (xi - m);
    mean = m;
    se = std::sqrt(q / (n - 1.0) / n);
  };
  hmc_estimate r;
  mean_se(st, r.var_theta, r.se_theta);
  mean_se(sv, r.var_v, r.se_v);
  mean_se(sc, r.cov, r.se_cov);
  return r;
}

void check_sghmc_moments(std::size_t chains, std::size_t n_steps) {
  const double eta = 0.01, alpha = 0.1, sigma2 = 1.0, T = 1.0;
  const double c = 1.0 / (1.0 - eta / (2.0 * sigma2 * (2.0 - alpha)));
  REQUIRE(std::abs(T * sigma2 * c - 1.0026385224274406) < 1e-15);
  REQUIRE(std::abs(2.0 * eta * T * c / (2.0 - alpha) - 0.010554089709762534) < 1e-17);
  REQUIRE(std::abs(-eta * T * c / (2.0 - alpha) - -0.005277044854881267) < 1e-17);
  const auto est = sghmc_chain(eta, alpha, T, sigma2, chains, n_steps, 500, 11);
  INFO("Var(theta) " << est.var_theta << " +- " << est.se_theta << ", Var(v) " << est.var_v << " +- " << est.se_v
                     << ", Cov " << est.cov << " +- " << est.se_cov);
  CHECK(std::abs(est.var_theta - 1.0026385224274406) < 5.0 * est.se_theta);
  CHECK(std::abs(est.var_v - 0.010554089709762534) < 5.0 * est.se_v);
  // Section 2.6's covariance is that of Chen's state (theta_{k+1}, v_{k+1}); the library's state
  // after an update is (theta_{k+2}, v_{k+1}) = (theta_{k+1} + v_{k+1}, v_{k+1}) (section 2.9), so
  // Cov(theta, v) = Cov_2.6 + Var(v) = +eta T c / (2 - alpha) and Var(theta) = Var_2.6 + 2 Cov_2.6
  // + Var(v) = Var_2.6 (the discrete Lyapunov equation of the shifted map gives the same).
  const double cov_lib = -0.005277044854881267 + 0.010554089709762534;
  CHECK(std::abs(est.cov - cov_lib) < 5.0 * est.se_cov);
  // power: Var(v) differs from the continuous-time eta T, and Cov from Chen's-order value, by more than 5 SE
  CHECK(std::abs(est.var_v - eta * T) > 5.0 * est.se_v);
  CHECK(std::abs(est.cov - -0.005277044854881267) > 5.0 * est.se_cov);
}

}  // namespace

TEST_CASE("sgld: stationary variance on a 1-d Gaussian matches section 2.6 (SE-derived tolerance)",
          "[optim][sgmcmc][stationary]") {
  check_sgld_variance(0.1, 1.0, 1.0, 1.0, 0.0, 1.0526315789473684, 512, 20000, 1);
  check_sgld_variance(0.1, 2.0, 0.5, 1.0, 0.0, 0.5555555555555556, 512, 20000, 2);
  check_sgld_variance(0.05, 1.0, 1.0, 2.0, 4.0, 2.2278481012658227, 512, 20000, 3);
}

TEST_CASE("sghmc: stationary moments of (theta, v) match section 2.6 (SE across independent chains)",
          "[optim][sgmcmc][stationary]") {
  check_sghmc_moments(512, 20000);
}

TEST_CASE("SG-MCMC stationary moments, long chains", "[optim][sgmcmc][stationary][.long]") {
  check_sgld_variance(0.1, 1.0, 1.0, 1.0, 0.0, 1.0526315789473684, 4096, 100000, 21);
  check_sgld_variance(0.1, 2.0, 0.5, 1.0, 0.0, 0.5555555555555556, 4096, 100000, 22);
  check_sgld_variance(0.05, 1.0, 1.0, 2.0, 4.0, 2.2278481012658227, 4096, 100000, 23);
  check_sghmc_moments(4096, 100000);
}
