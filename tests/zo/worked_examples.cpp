// SPDX-License-Identifier: Apache-2.0
// The worked examples of algorithms.md §7.6 (MeZO), §7.7 (Sparse MeZO) and §8.5 (Spall SPSA,
// SPSA-GC, GC-SPSA, RGE/CGE), with the tolerances of §0.4: closed-form quantities (losses, gains)
// relative 1e-12 in double; difference quotients and everything computed from them relative 1e-9
// in double; in float only against the analytic value with relative 1e-2. The examples use
// explicit directions, so they are driven through the library's estimator code with a direction
// policy that returns the given vectors (zo_support.hpp).
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;
using Catch::Matchers::WithinRel;
using Catch::Matchers::WithinULP;

namespace {

// §7.6: f(theta) = 0.5 sum(h theta^2) + c.theta over two tensors (theta[0..3) and the "bias" theta[3]).
struct quad76 {
  const parameters<double>* p;
  double operator()() const {
    const double h[4] = {1, 2, 0.5, 4}, c[4] = {0.1, -0.2, 0, 0.3};
    double x[4] = {p->tensor(0)[0], p->tensor(0)[1], p->tensor(0)[2], p->tensor(1)[0]};
    double f = 0;
    for (int i = 0; i < 4; ++i) f += 0.5 * h[i] * x[i] * x[i] + c[i] * x[i];
    return f;
  }
};

using table = zo_test::table_direction<>;
using table_inv = zo_test::table_direction<true>;
using table_sphere = zo_test::table_direction<false, true>;

}  // namespace

TEST_CASE("§7.6 MeZO step with explicit z: L+, L-, g, restore, update, n-SPSA average", "[zo][worked]") {
  const std::uint64_t master = 7;
  const std::uint64_t s0 = zo::step_seed(master, 0), s1 = zo::step_seed(master, 1);
  const std::vector<double> z1 = {0.3, -1.2, 0.8, 1.5}, z2 = {-0.5, 0.4, 1.1, -0.7};
  const std::vector<std::size_t> offsets = {0, 3};
  // Call 0: the step (one direction); call 1: the n-SPSA estimate (q = 2, draws 0 and 1).
  const std::vector<table::row> rows = {{s0, 0, z1}, {s1, 0, z1}, {s1, 1, z2}};
  const table dir{&rows, &offsets};

  std::vector<double> w = {1, -2, 0.5}, b = {0.25};
  parameters<double> p;
  p.add(w);
  const std::size_t bias_group = p.add_group({.name = "bias", .decay = false});
  p.add(b, bias_group);

  using S = stepper<zo::two_point<table>, no_baseline, no_normalizer, optim::sgd<>, double>;
  S s(p, optim::sgd<>({.lr = 0.01, .weight_decay = 0.1}),
      zo::two_point<table>({.eps = 1e-3, .q = 1, .seed = master, .mode = zo::pass_mode::reference}, {}, {}, dir));
  quad76 f{&s.params()};

  const zo::step_report r = s.step(f);
  CHECK_THAT(r.loss_plus, WithinRel(5.270026144999999, 1e-12));
  CHECK_THAT(r.loss_minus, WithinRel(5.254986145, 1e-12));
  CHECK_THAT(r.projected_gradient, WithinRel(7.519999999999527, 1e-9));
  CHECK_THAT(r.projected_gradient, WithinRel(7.52, 1e-9));  // exact z.grad f
  REQUIRE(r.applied);
  REQUIRE(r.coefficients.size() == 1);
  CHECK(r.coefficients[0] == r.projected_gradient);
  CHECK(r.seed == s0);
  CHECK(r.evaluations == 2);
  const double expected[4] = {0.9764400000000014, -1.9077600000000057, 0.4393400000000038, 0.1372000000000071};
  CHECK_THAT(w[0], WithinRel(expected[0], 1e-9));
  CHECK_THAT(w[1], WithinRel(expected[1], 1e-9));
  CHECK_THAT(w[2], WithinRel(expected[2], 1e-9));
  CHECK_THAT(b[0], WithinRel(expected[3], 1e-9));  // the bias group has no weight decay

  // n-SPSA estimate at theta = [1, -2, 0.5, 0.25] (restart from the example's point, call 1).
  w = {1, -2, 0.5};
  b = {0.25};
  zo::difference_options o = s.estimator().options();
  o.q = 2;
  s.estimator().set_options(o);
  std::vector<double> g0(3), g1(1);
  const std::span<double> outs[2] = {g0, g1};
  const zo::step_report e = zo::estimate(s, f, std::span<const std::span<double>>(outs));
  CHECK(e.seed == s1);
  CHECK(e.evaluations == 4);
  CHECK_THAT(e.coefficients[1] * 2.0, WithinRel(-2.865, 1e-9));  // g2, before the 1/q average
  CHECK_THAT(g0[0], WithinRel(1.8442499999999291, 1e-9));
  CHECK_THAT(g0[1], WithinRel(-5.084999999999717, 1e-9));
  CHECK_THAT(g0[2], WithinRel(1.4322499999998106, 1e-9));
  CHECK_THAT(g1[0], WithinRel(6.642749999999645, 1e-9));
  // After +eps, -2 eps, +eps (per direction) the parameters are back within a few ulps
  // (§7.6 lists a max restore error of 1.1e-16 for this example; §11: "within a few ulps").
  CHECK_THAT(w[0], WithinULP(1.0, 2));
  CHECK_THAT(w[1], WithinULP(-2.0, 2));
  CHECK_THAT(w[2], WithinULP(0.5, 2));
  CHECK_THAT(b[0], WithinULP(0.25, 2));
}

TEST_CASE("§7.6 in float: the projected gradient against the analytic z.grad f", "[zo][worked]") {
  const std::uint64_t master = 3;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {{zo::step_seed(master, 0), 0, {0.3, -1.2, 0.8, 1.5}}};
  std::vector<float> x = {1, -2, 0.5f, 0.25f};
  using S = stepper<zo::two_point<table>, no_baseline, no_normalizer, optim::sgd<>, float>;
  S s(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 0.01}),
      zo::two_point<table>({.eps = 1e-3, .seed = master}, {}, {}, table{&rows, &offsets}));
  auto f = [](std::span<const float> v) {
    const double h[4] = {1, 2, 0.5, 4}, c[4] = {0.1, -0.2, 0, 0.3};
    double r = 0;
    for (int i = 0; i < 4; ++i) r += 0.5 * h[i] * v[i] * v[i] + c[i] * v[i];
    return r;
  };
  const auto r = s.step(f);
  CHECK_THAT(r.projected_gradient, WithinRel(7.52, 1e-2));
}

TEST_CASE("§7.7 Sparse MeZO: mask from the unperturbed weights, L+, L-, g, update", "[zo][worked][sparse]") {
  const std::uint64_t master = 11;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table::row> rows = {{zo::step_seed(master, 0), 0, {0.7, -1.1, 0.3, 1.6, -0.2, 0.9, -0.5, 1.3}}};
  std::vector<double> x = {0.05, -0.8, 0.3, -0.02, 1.2, 0.1, -0.4, 0.6};
  const std::vector<double> x0 = x;
  using E = zo::two_point<table, constant_schedule, zo::magnitude_mask>;
  using S = stepper<E, no_baseline, no_normalizer, optim::sgd<>, double>;
  S s(parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.05}),
      E({.eps = 1e-3, .seed = master}, {}, zo::magnitude_mask{.sparsity = 0.75}, table{&rows, &offsets}));
  CHECK(s.estimator().mask().kept(8) == 2);
  auto f = [](std::span<const double> v) {
    double r = 0;
    for (double e : v) r += 0.5 * e * e + e * e * e / 3.0;
    return r;
  };
  const auto r = s.step(f);
  CHECK(s.est_state().mask.thresholds[0] == 0.05);
  CHECK(s.est_state().mask.words[0] == 0b1001u);  // m = [1,0,0,1,0,0,0,0]
  CHECK(s.est_state().mask.selected == 2);
  CHECK_THAT(r.loss_plus, WithinRel(1.8168292231129999, 1e-12));
  CHECK_THAT(r.loss_minus, WithinRel(1.8168184401536664, 1e-12));
  CHECK_THAT(r.projected_gradient, WithinRel(0.005391479666716492, 1e-9));
  const double expected[8] = {0.049811298211664926, -0.8, 0.3, -0.02043131837333732, 1.2, 0.1, -0.4, 0.6};
  for (int i : {0, 3}) CHECK_THAT(x[static_cast<std::size_t>(i)], WithinRel(expected[i], 1e-9));
  for (int i : {1, 2, 4, 5, 6, 7}) CHECK(x[static_cast<std::size_t>(i)] == x0[static_cast<std::size_t>(i)]);  // untouched, bitwise
}

TEST_CASE("§8.5 Spall gains a_k and c_k", "[zo][worked][spsa]") {
  const spall_gain a{10.0, 0.602};
  const zo::spall_perturbation c{0.101};
  const double ak[4][2] = {{0, 0.03777474890475857}, {1, 0.03584700467895594}, {9, 0.02635723964415068},
                           {99, 0.009444991821326045}};
  const double ck[4][2] = {{0, 0.1}, {1, 0.09323864864368325}, {9, 0.07925013304804718}, {99, 0.06280583588133179}};
  for (auto& v : ak) CHECK_THAT(0.16 * a(static_cast<std::uint64_t>(v[0])), WithinRel(v[1], 1e-12));
  for (auto& v : ck) CHECK_THAT(0.1 * c(static_cast<std::uint64_t>(v[0])), WithinRel(v[1], 1e-12));
  // Strictly decreasing, and 2 (alpha - gamma) = 1.002 > 1 (convergence condition of §8.1).
  for (std::uint64_t k = 0; k < 1000; ++k) {
    CHECK(a(k + 1) < a(k));
    CHECK(c(k + 1) < c(k));
  }
  CHECK(2.0 * (0.602 - 0.101) > 1.0);
}

TEST_CASE("§8.5 Spall SPSA: two-sided, one-sided and q = 2 estimates and the first step", "[zo][worked][spsa]") {
  const std::uint64_t master = 5;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<double> d1 = {1, -1, -1, 1}, d2 = {-1, -1, 1, 1};
  std::vector<table::row> rows;
  for (std::uint64_t call = 0; call < 3; ++call) {
    rows.push_back({zo::step_seed(master, call), 0, d1});
    rows.push_back({zo::step_seed(master, call), 1, d2});
  }
  const table dir{&rows, &offsets};
  auto f = [](std::span<const double> v) {
    const double h[4] = {1, 2, 0.5, 4}, c[4] = {0.1, -0.2, 0, 0.3};
    double r = 0;
    for (int i = 0; i < 4; ++i) r += 0.5 * h[i] * v[i] * v[i] + c[i] * v[i];
    return r;
  };
  const std::vector<double> theta0 = {1, -2, 0.5, 0.25};
  using E2 = zo::two_point<table, zo::spall_perturbation>;
  using S2 = stepper<E2, no_baseline, no_normalizer, optim::sgd<spall_gain>, double>;
  std::vector<double> g(4);

  SECTION("two-sided estimate and theta_1") {
    std::vector<double> x = theta0;
    S2 s(parameters<double>(std::span<double>(x)), optim::sgd<spall_gain>({.lr = 0.16}, spall_gain{10.0, 0.602}),
         E2({.eps = 0.1, .seed = master}, zo::spall_perturbation{0.101}, {}, dir));
    const auto r = s.step(f);
    CHECK_THAT(r.loss_plus, WithinRel(5.9350000000000005, 1e-12));
    CHECK_THAT(r.loss_minus, WithinRel(4.664999999999999, 1e-12));
    CHECK(r.eps == 0.1);
    CHECK_THAT(r.update.lr, WithinRel(0.03777474890475857, 1e-12));
    const double t1[4] = {0.7601303444547829, -1.760130344454783, 0.7398696555452171, 0.010130344454782836};
    for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(x[i], WithinRel(t1[i], 1e-9));
    // ghat = 6.35 * Delta (1/Delta = Delta for +-1): the estimate at theta0 on a fresh stepper.
    std::vector<double> y = theta0;
    S2 s2(parameters<double>(std::span<double>(y)), optim::sgd<spall_gain>({.lr = 0.16}, spall_gain{10.0, 0.602}),
          E2({.eps = 0.1, .seed = master}, zo::spall_perturbation{0.101}, {}, dir));
    zo::estimate(s2, f, std::span<double>(g));
    for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(g[i], WithinRel(6.350000000000007 * d1[i], 1e-9));
  }
  SECTION("one-sided estimate") {
    using E1 = zo::one_sided<table, zo::spall_perturbation>;
    std::vector<double> x = theta0;
    stepper<E1, no_baseline, no_normalizer, optim::sgd<spall_gain>, double> s(
        parameters<double>(std::span<double>(x)), optim::sgd<spall_gain>({.lr = 0.16}, spall_gain{10.0, 0.602}),
        E1({.eps = 0.1, .seed = master}, zo::spall_perturbation{0.101}, {}, dir));
    const auto r = zo::estimate(s, f, std::span<double>(g));
    CHECK_THAT(r.loss_minus, WithinRel(5.2625, 1e-12));  // y0 = f(theta0)
    for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(g[i], WithinRel(6.725000000000003 * d1[i], 1e-9));
  }
  SECTION("q = 2 average") {
    std::vector<double> x = theta0;
    S2 s(parameters<double>(std::span<double>(x)), optim::sgd<spall_gain>({.lr = 0.16}, spall_gain{10.0, 0.602}),
         E2({.eps = 0.1, .q = 2, .seed = master}, zo::spall_perturbation{0.101}, {}, dir));
    zo::estimate(s, f, std::span<double>(g));
    const double avg[4] = {0.8500000000000019, -5.500000000000005, -0.8500000000000019, 5.500000000000005};
    for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(g[i], WithinRel(avg[i], 1e-9));
  }
}

TEST_CASE("§8.5 SPSA-GC (BlackVIP code form) equals Nesterov optim::sgd with inverse directions", "[zo][worked][spsa]") {
  const std::uint64_t master = 9;
  const std::vector<std::size_t> offsets = {0};
  const std::vector<table_inv::row> rows = {{zo::step_seed(master, 0), 0, {0.6, -0.9, 0.75, -0.5}},
                                            {zo::step_seed(master, 1), 0, {-0.8, 0.55, 1.0, 0.95}}};
  std::vector<double> w = {1, -2, 0.5, 0.25};
  using E = zo::two_point<table_inv, zo::spall_perturbation>;
  // BlackVIP: a_k = a / (k + o)^alpha with k from 1 is spall_gain{A = o}; c_k = c / k^gamma.
  stepper<E, no_baseline, no_normalizer, optim::sgd<spall_gain>, double> s(
      parameters<double>(std::span<double>(w)),
      optim::sgd<spall_gain>({.lr = 0.01, .momentum = 0.9, .nesterov = true}, spall_gain{1.0, 0.4}),
      E({.eps = 0.01, .seed = master}, zo::spall_perturbation{0.1}, {}, table_inv{&rows, &offsets}));
  auto f = [](std::span<const double> v) {
    const double h[4] = {1, 2, 0.5, 4}, c[4] = {0.1, -0.2, 0, 0.3};
    double r = 0;
    for (int i = 0; i < 4; ++i) r += 0.5 * h[i] * v[i] * v[i] + c[i] * v[i];
    return r;
  };
  const auto r1 = s.step(f);
  CHECK_THAT(r1.update.lr, WithinRel(0.007578582832551991, 1e-12));
  CHECK(r1.eps == 0.01);
  const double m1[4] = {6.629166666666538, -4.419444444444358, 5.303333333333231, -7.9549999999998455};
  const double w1[4] = {0.9045445914811626, -1.9363630609874418, 0.4236356731849301, 0.3645464902226049};
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK_THAT(s.opt_state().momentum_buffer[0][i], WithinRel(m1[i], 1e-9));  // m = ghat at k = 1
    CHECK_THAT(w[i], WithinRel(w1[i], 1e-9));
  }
  const auto r2 = s.step(f);
  CHECK_THAT(r2.update.lr, WithinRel(0.006443940149772542, 1e-12));
  CHECK_THAT(r2.eps, WithinRel(0.009330329915368075, 1e-12));
  const double m2[4] = {7.4181756760407245, -6.089391892422963, 3.611459459167235, -8.382174253507937};
  const double w2[4] = {0.852166417253623, -1.8874384468169225, 0.4101757451642071, 0.42103813622799124};
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK_THAT(s.opt_state().momentum_buffer[0][i], WithinRel(m2[i], 1e-9));
    CHECK_THAT(w[i], WithinRel(w2[i], 1e-9));
  }
}

TEST_CASE("§8.5 GC-SPSA momentum and the DREAM schedule", "[zo][worked][gc_spsa]") {
  std::vector<double> x = {0, 0, 0, 0};
  const parameters<double> p{std::span<double>(x)};
  const zo::gc_spsa_sgd<> opt({.lr = 1e-3, .gamma = 1.2});
  auto st = opt.init(p);
  const std::vector<double> G1 = {0.5, -1, 0.25, 0}, G2 = {1, 0.5, -0.5, 2}, G3 = {-0.2, 0.4, 0.6, -0.8};
  step_context ctx;
  auto update = [&](const std::vector<double>& G, std::size_t q) {
    const dense_gradient<double> dg{std::span<const double>(G)};
    opt.update(p, st, zo::with_queries(dg, q), ctx);
    ++ctx.step;
  };
  update(G1, 2);
  for (std::size_t i = 0; i < 4; ++i) CHECK(st.momentum[0][i] == G1[i]);
  CHECK(st.n_past == 2.0);
  update(G2, 2);
  CHECK_THAT(st.last_b, WithinRel(0.6, 1e-12));
  const double m2[4] = {1.3, -0.1, -0.35, 2.0};
  for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(st.momentum[0][i], WithinRel(m2[i], 1e-12));
  CHECK(st.n_past == 2.0);
  update(G3, 1);
  CHECK_THAT(st.last_b, WithinRel(0.7999999999999999, 1e-12));
  const double m3[4] = {0.84, 0.32, 0.32, 0.8};
  for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(st.momentum[0][i], WithinRel(m3[i], 1e-12));
  CHECK_THAT(st.n_past, WithinRel(1.9, 1e-12));
  // theta = theta - lr (m + wd theta) from 0 with wd = 0: -lr * (m1 + m2 + m3).
  for (std::size_t i = 0; i < 4; ++i) CHECK_THAT(x[i], WithinRel(-1e-3 * (G1[i] + m2[i] + m3[i]), 1e-12));

  const zo::dream_schedule d{.steps_per_epoch = 10};
  const double eps_e[6] = {0.001, 0.0009980119126981372, 0.0009960473070779877, 0.0009941056796233907,
                           0.0009921865423712195, 0.0009902894222868625};
  for (std::uint64_t e = 0; e < 6; ++e) CHECK_THAT(0.001 * d(10 * e), WithinRel(eps_e[e], 1e-12));
  // q_e = max(1, floor(4 / 2^floor(e/2))): 4 while e < 2, 2 while e < 4, then 1.
  CHECK(d.queries(0, 4) == 4);
  CHECK(d.queries(19, 4) == 4);
  CHECK(d.queries(20, 4) == 2);
  CHECK(d.queries(39, 4) == 2);
  CHECK(d.queries(40, 4) == 1);
  CHECK(d.queries(100000, 4) == 1);
}

TEST_CASE("§8.5 RGE and CGE on sum(sin x) + x0 x1", "[zo][worked][rge]") {
  auto F = [](std::span<const double> x) { return std::sin(x[0]) + std::sin(x[1]) + std::sin(x[2]) + x[0] * x[1]; };
  const std::vector<double> x0 = {0.2, -0.1, 0.4};
  std::vector<double> g(3);
  SECTION("RGE, q = 2 given unit directions") {
    const std::uint64_t master = 2;
    const std::vector<std::size_t> offsets = {0};
    const double r2 = 1.0 / std::sqrt(2.0);
    const std::vector<table_sphere::row> rows = {{zo::step_seed(master, 0), 0, {0.6, 0.8, 0}},
                                                 {zo::step_seed(master, 0), 1, {0, -r2, r2}}};
    std::vector<double> x = x0;
    using E = zo::one_sided<table_sphere>;
    stepper<E, no_baseline, no_normalizer, optim::sgd<>, double> s(parameters<double>(std::span<double>(x)), {},
                                                                  E({.eps = 0.005, .q = 2, .seed = master}, {}, {},
                                                                    table_sphere{&rows, &offsets}));
    zo::estimate(s, F, std::span<double>(g));
    const double rge[3] = {1.3377790846654567, 1.9895466477371166, -0.20584120151650723};
    for (std::size_t i = 0; i < 3; ++i) CHECK_THAT(g[i], WithinRel(rge[i], 1e-9));
  }
  SECTION("CGE") {
    std::vector<double> x = x0;
    stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, double> s(
        parameters<double>(std::span<double>(x)), {}, zo::coordinate_wise({.mu = 0.005}));
    const auto r = zo::estimate(s, F, std::span<double>(g));
    CHECK(r.evaluations == 6);
    const double cge[3] = {0.8800624942356061, 1.1950000194325183, 0.9210571562535408};
    const double truth[3] = {0.8800665778412418, 1.1950041652780257, 0.921060994002885};
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK_THAT(g[i], WithinRel(cge[i], 1e-9));
      CHECK_THAT(g[i], WithinRel(truth[i], 1e-5));  // O(mu^2) bias
      CHECK(x[i] == x0[i]);                         // exact restore
    }
  }
}
