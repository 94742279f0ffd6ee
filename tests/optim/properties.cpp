// SPDX-License-Identifier: Apache-2.0
// Algebraic properties of the optimizers: the Adan properties of algorithms.md §11, the closed
// forms of the first SGD/Adam steps (torch semantics), parameter-group overrides and schedules.
// Expected values are closed forms derived in the comments, never our own optimizer's output
// (except where a property is an identity between two runs of the optimizer).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
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

constexpr std::size_t N = 203;  // SIMD chunks plus a scalar tail in float and double

template <class T>
constexpr double eps_of() {
  return static_cast<double>(std::numeric_limits<T>::epsilon());
}

template <class Opt, class T>
update_report step(const Opt& o, const parameters<T>& p, typename Opt::template state<T>& s, const std::vector<T>& g,
                   std::uint64_t k = 0) {
  step_context ctx;
  ctx.step = k;
  return o.update(p, s, dense_gradient<T>(std::span<const T>(g)), ctx);
}

optim::adan_options adan_opts(double lr, double wd, bool no_prox = false) {
  optim::adan_options o;
  o.lr = lr;
  o.weight_decay = wd;
  o.no_prox = no_prox;
  return o;
}

}  // namespace

TEMPLATE_TEST_CASE("adan §11: first step is (theta - lr g/(|g| + eps)) / (1 + lr wd)", "[optim][adan]", float, double) {
  using T = TestType;
  for (bool no_prox : {false, true}) {
    auto x = wave<T>(N, 1.5, 0.3);
    const auto x0 = x;
    auto g = wave<T>(N, 2.0, 1.1);
    g[5] = T(0);  // a zero gradient entry: no movement except decay
    const double lr = 0.01, wd = 0.05;
    const optim::adan<> opt(adan_opts(lr, wd, no_prox));
    parameters<T> p{std::span<T>(x)};
    auto s = opt.init(p);
    step(opt, p, s, g);
    // At t = 1 the difference is 0, so m_hat = g and n_hat = g^2 up to rounding (a few ulps), and
    // the step is lr g/(|g| + eps): relative error a few eps_T in the step, ~eps_T in theta.
    for (std::size_t i = 0; i < N; ++i) {
      const double gi = static_cast<double>(g[i]), xi = static_cast<double>(x0[i]);
      const double upd = lr * gi / (std::abs(gi) + 1e-8);
      const double want = no_prox ? xi * (1 - lr * wd) - upd : (xi - upd) / (1 + lr * wd);
      INFO("no_prox " << no_prox << " i " << i);
      REQUIRE(std::abs(static_cast<double>(x[i]) - want) <= 8 * eps_of<T>() * (std::abs(want) + lr));
    }
  }
}

TEMPLATE_TEST_CASE("adan §11: constant gradient with wd = 0 moves theta by T lr g/(|g| + eps)", "[optim][adan]", float,
                   double) {
  using T = TestType;
  auto x = wave<T>(N, 1.0, 0.2);
  const auto x0 = x;
  const auto g = wave<T>(N, 0.7, 2.0);
  const double lr = 0.003;
  const std::size_t steps = 50;
  const optim::adan<> opt(adan_opts(lr, 0.0));
  parameters<T> p{std::span<T>(x)};
  auto s = opt.init(p);
  for (std::size_t k = 0; k < steps; ++k) step(opt, p, s, g, k);
  // v stays exactly 0 (every difference is g - g = 0).
  for (auto vi : s.exp_avg_diff[0]) REQUIRE(vi == T(0));
  // m_hat = g, n_hat = g^2 up to rounding: each step adds at most ~4 roundings relative to
  // max(|theta|, 1), so the accumulated error is below 4 steps eps_T max(|theta|, 1).
  for (std::size_t i = 0; i < N; ++i) {
    const double gi = static_cast<double>(g[i]);
    const double want = static_cast<double>(x0[i]) - static_cast<double>(steps) * lr * gi / (std::abs(gi) + 1e-8);
    REQUIRE(std::abs(static_cast<double>(x[i]) - want) <=
            4.0 * static_cast<double>(steps) * eps_of<T>() * std::max(std::abs(want), 1.0));
  }
}

TEMPLATE_TEST_CASE("adan §11: scale invariance of the trajectory up to eps", "[optim][adan]", float, double) {
  using T = TestType;
  // Slowly varying gradients of one sign, |g| in [0.2, 0.8] and per-step changes <= 0.03, so
  // u = g + b2 (g - g_prev) stays in [0.17, 0.83] and sqrt(n_hat) >= 0.17.
  auto grads = [](std::size_t k) {
    std::vector<T> g(N);
    for (std::size_t i = 0; i < N; ++i)
      g[i] = static_cast<T>(0.5 + 0.3 * std::sin(0.7 * static_cast<double>(i) + 0.1 * static_cast<double>(k)));
    return g;
  };
  const std::size_t steps = 30;
  const double lr = 0.01;
  auto run = [&](double scale, double eps) {
    auto x = wave<T>(N, 1.0, 0.4);
    auto o = adan_opts(lr, 0.0);
    o.eps = eps;
    const optim::adan<> opt(o);
    parameters<T> p{std::span<T>(x)};
    auto s = opt.init(p);
    for (std::size_t k = 0; k < steps; ++k) {
      auto g = grads(k);
      for (auto& gi : g) gi = static_cast<T>(gi * scale);
      step(opt, p, s, g, k);
    }
    return x;
  };
  // A power-of-two scale is exact in every moment; with an eps far below the rounding unit of
  // sqrt(n_hat) the trajectories are bitwise identical.
  REQUIRE(first_mismatch(run(1.0, 1e-30), run(128.0, 1e-30)) == -1);
  // Any scale with the default eps: the step is lr (m_hat + b2 v_hat)/(sqrt(n_hat) + eps) with
  // |m_hat + b2 v_hat| <= 0.83 and sqrt(n_hat) >= 0.17, i.e. at most 5 lr; eps changes it by a
  // relative eps/0.17 (for scale 1; less for scale 1000) and the inexact scale by ~20 roundings,
  // so |x_1 - x_1000| <= steps 5 lr (2 eps/0.17 + 20 eps_T).
  const auto a = run(1.0, 1e-8), b = run(1000.0, 1e-8);
  const double bound = static_cast<double>(steps) * 5 * lr * (2e-8 / 0.17 + 20 * eps_of<T>());
  double worst = 0.0;
  for (std::size_t i = 0; i < N; ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  INFO("max |x_1 - x_1000| = " << worst << ", bound " << bound);
  REQUIRE(worst <= bound);
  REQUIRE(worst > 0.0);  // eps does matter a little: the check is not vacuous
}

TEMPLATE_TEST_CASE("adan §11: with wd = 0 the proximal and no_prox variants are identical", "[optim][adan]", float,
                   double) {
  using T = TestType;
  std::vector<T> xa = wave<T>(N, 1.0, 0.0), xb = xa;
  const optim::adan<> pa(adan_opts(0.02, 0.0, false)), pb(adan_opts(0.02, 0.0, true));
  parameters<T> p1{std::span<T>(xa)}, p2{std::span<T>(xb)};
  auto sa = pa.init(p1);
  auto sb = pb.init(p2);
  for (std::size_t k = 0; k < 10; ++k) {
    const auto g = wave<T>(N, 1.0, 0.3 * static_cast<double>(k));
    step(pa, p1, sa, g, k);
    step(pb, p2, sb, g, k);
  }
  REQUIRE(first_mismatch(xa, xb) == -1);
  REQUIRE(first_mismatch(sa.exp_avg_sq, sb.exp_avg_sq) == -1);
}

TEMPLATE_TEST_CASE("adan §11: after restart the next step equals a fresh optimizer's first step", "[optim][adan]", float,
                   double) {
  using T = TestType;
  const optim::adan<> opt(adan_opts(0.01, 0.02));
  std::vector<T> x = wave<T>(N, 1.0, 0.0);
  parameters<T> p{std::span<T>(x)};
  auto s = opt.init(p);
  for (std::size_t k = 0; k < 7; ++k) step(opt, p, s, wave<T>(N, 1.0, 0.5 * static_cast<double>(k)), k);
  optim::adan<>::restart(s);
  REQUIRE(s.steps == std::vector<std::uint64_t>{0});
  std::vector<T> y = x;  // a fresh optimizer from the current parameters
  parameters<T> q{std::span<T>(y)};
  auto fresh = opt.init(q);
  const auto g = wave<T>(N, 0.8, 2.5);
  step(opt, p, s, g, 7);
  step(opt, q, fresh, g, 0);
  REQUIRE(first_mismatch(x, y) == -1);
  REQUIRE(first_mismatch(s.exp_avg, fresh.exp_avg) == -1);
  REQUIRE(first_mismatch(s.exp_avg_diff, fresh.exp_avg_diff) == -1);
  REQUIRE(first_mismatch(s.exp_avg_sq, fresh.exp_avg_sq) == -1);
  REQUIRE(first_mismatch(s.prev_grad, fresh.prev_grad) == -1);
  REQUIRE(s.steps == fresh.steps);
}

TEMPLATE_TEST_CASE("adan §11: the clipped gradient norm never exceeds max_grad_norm", "[optim][adan]", float, double) {
  using T = TestType;
  const double max_norm = 0.75;
  for (double scale : {1e-3, 0.01, 0.05, 0.1, 1.0, 10.0, 1e4}) {
    std::vector<T> x = wave<T>(N, 1.0, 0.0);
    auto g = wave<T>(N, scale, 0.9);
    auto o = adan_opts(0.01, 0.0);
    o.max_grad_norm = max_norm;
    const optim::adan<> opt(o);
    parameters<T> p{std::span<T>(x)};
    auto s = opt.init(p);
    const update_report r = step(opt, p, s, g);
    double norm = 0.0;
    for (auto gi : g) norm += static_cast<double>(gi) * static_cast<double>(gi);
    norm = std::sqrt(norm);
    INFO("scale " << scale << " norm " << norm << " reported " << r.grad_norm << " factor " << r.clip_factor);
    REQUIRE(std::abs(r.grad_norm - norm) <= 1e-5 * norm);
    REQUIRE(r.clip_factor <= 1.0);
    REQUIRE(r.clip_factor * r.grad_norm <= max_norm * (1 + 1e-15));
    if (norm + 1e-8 <= max_norm) REQUIRE(r.clip_factor == 1.0);
    // The state saw the clipped gradient: g_prev = c g and m = (1 - b1) c g.
    double stored = 0.0;
    for (auto gi : s.prev_grad[0]) stored += static_cast<double>(gi) * static_cast<double>(gi);
    REQUIRE(std::sqrt(stored) <= max_norm * (1 + 4 * eps_of<T>()));
  }
}

TEMPLATE_TEST_CASE("sgd: torch semantics of the momentum buffer, dampening, Nesterov and coupled decay", "[optim][sgd]",
                   float, double) {
  using T = TestType;
  const double lr = 0.1, mu = 0.9, tau = 0.25, wd = 0.01;
  const auto x0 = wave<T>(N, 1.0, 0.1);
  const auto g1 = wave<T>(N, 0.5, 0.7), g2 = wave<T>(N, 0.4, 1.9);
  for (bool nesterov : {false, true}) {
    optim::sgd_options o;
    o.lr = lr, o.momentum = mu, o.dampening = nesterov ? 0.0 : tau, o.nesterov = nesterov, o.weight_decay = wd;
    const optim::sgd<> opt(o);
    auto x = x0;
    parameters<T> p{std::span<T>(x)};
    auto s = opt.init(p);
    step(opt, p, s, g1, 0);
    step(opt, p, s, g2, 1);
    const double damp = nesterov ? 0.0 : tau;
    for (std::size_t i = 0; i < N; ++i) {
      // torch: d = g + wd x; b_1 = d_1 (no dampening on creation); b_2 = mu b_1 + (1 - tau) d_2;
      // step direction b (or d + mu b with Nesterov); x -= lr * direction.
      double x_ = static_cast<double>(x0[i]);
      const double d1 = static_cast<double>(g1[i]) + wd * x_;
      const double b1 = d1;
      x_ -= lr * (nesterov ? d1 + mu * b1 : b1);
      const double d2 = static_cast<double>(g2[i]) + wd * x_;
      const double b2 = mu * b1 + (1 - damp) * d2;
      x_ -= lr * (nesterov ? d2 + mu * b2 : b2);
      INFO("nesterov " << nesterov << " i " << i);
      REQUIRE(std::abs(static_cast<double>(x[i]) - x_) <= 16 * eps_of<T>() * std::max(std::abs(x_), 1.0));
      REQUIRE(std::abs(static_cast<double>(s.momentum_buffer[0][i]) - b2) <= 16 * eps_of<T>() * std::max(std::abs(b2), 1.0));
    }
  }
  // Without momentum there is no buffer at all (MeZO-SGD memory = parameters + O(1)).
  const optim::sgd<> plain(optim::sgd_options{.lr = 0.1});
  auto x = x0;
  parameters<T> p{std::span<T>(x)};
  REQUIRE(plain.init(p).momentum_buffer.empty());
}

TEMPLATE_TEST_CASE("adam/adamw: the first step is lr g/(|g| + eps), with coupled or decoupled decay", "[optim][adam]",
                   float, double) {
  using T = TestType;
  const double lr = 0.01, wd = 0.1;
  const auto x0 = wave<T>(N, 1.0, 0.1);
  const auto g = wave<T>(N, 0.5, 0.7);
  for (bool decoupled : {false, true}) {
    auto x = x0;
    parameters<T> p{std::span<T>(x)};
    if (decoupled) {
      const optim::adamw<> opt(optim::adamw_options{.lr = lr, .weight_decay = wd});
      auto s = opt.init(p);
      step(opt, p, s, g);
    } else {
      const optim::adam<> opt(optim::adam_options{.lr = lr, .weight_decay = wd});
      auto s = opt.init(p);
      step(opt, p, s, g);
    }
    for (std::size_t i = 0; i < N; ++i) {
      // m_hat = g', v_hat = g'^2 at t = 1, so the step is lr g'/(|g'| + eps); Adam: g' = g + wd x,
      // AdamW: g' = g and x is first multiplied by (1 - lr wd).
      const double xi = static_cast<double>(x0[i]);
      const double gp = static_cast<double>(g[i]) + (decoupled ? 0.0 : wd * xi);
      const double want = (decoupled ? xi * (1 - lr * wd) : xi) - lr * gp / (std::abs(gp) + 1e-8);
      INFO("decoupled " << decoupled << " i " << i);
      REQUIRE(std::abs(static_cast<double>(x[i]) - want) <= 8 * eps_of<T>() * (std::abs(want) + lr));
    }
  }
}

TEMPLATE_TEST_CASE("parameter groups: lr, lr_scale, weight_decay overrides and decay exclusion", "[optim][groups]", float,
                   double) {
  using T = TestType;
  // One optimizer over three groups == three optimizers with the resolved hyper-parameters.
  const auto a0 = wave<T>(N, 1.0, 0.1), b0 = wave<T>(77, 1.0, 0.2), c0 = wave<T>(130, 1.0, 0.3);
  auto ga = [](std::size_t k) { return wave<T>(N, 0.5, 0.7 + 0.2 * static_cast<double>(k)); };
  auto gb = [](std::size_t k) { return wave<T>(77, 0.5, 1.7 + 0.2 * static_cast<double>(k)); };
  auto gc = [](std::size_t k) { return wave<T>(130, 0.5, 2.7 + 0.2 * static_cast<double>(k)); };

  auto check = [&](auto make, auto make_opts) {
    std::vector<T> a = a0, b = b0, c = c0;
    parameters<T> p;
    const std::size_t g1 = p.add_group({.name = "scaled", .lr_scale = 0.5, .weight_decay = 0.2});
    const std::size_t g2 = p.add_group({.name = "bias", .lr = 0.05, .decay = false});
    p.add(std::span<T>(a));
    p.add(std::span<T>(b), g1);
    p.add(std::span<T>(c), g2);
    const auto opt = make(make_opts(0.01, 0.1));
    auto s = opt.init(p);
    // references: one optimizer per group with resolved rates
    std::vector<T> ra = a0, rb = b0, rc = c0;
    parameters<T> pa{std::span<T>(ra)}, pb{std::span<T>(rb)}, pc{std::span<T>(rc)};
    const auto oa = make(make_opts(0.01, 0.1)), ob = make(make_opts(0.01 * 0.5, 0.2)), oc = make(make_opts(0.05, 0.0));
    auto sa = oa.init(pa);
    auto sb = ob.init(pb);
    auto sc = oc.init(pc);
    for (std::size_t k = 0; k < 5; ++k) {
      const auto xa = ga(k), xb = gb(k), xc = gc(k);
      const std::span<const T> spans[3] = {xa, xb, xc};
      step_context ctx;
      ctx.step = k;
      opt.update(p, s, dense_gradient<T>(std::span<const std::span<const T>>(spans)), ctx);
      step(oa, pa, sa, xa, k);
      step(ob, pb, sb, xb, k);
      step(oc, pc, sc, xc, k);
    }
    REQUIRE(first_mismatch(a, ra) == -1);
    REQUIRE(first_mismatch(b, rb) == -1);
    REQUIRE(first_mismatch(c, rc) == -1);
    REQUIRE(s.steps == std::vector<std::uint64_t>{5, 5, 5});
  };
  SECTION("adan") {
    check([](optim::adan_options o) { return optim::adan<>(o); },
          [](double lr, double wd) { return optim::adan_options{.lr = lr, .weight_decay = wd}; });
  }
  SECTION("adamw") {
    check([](optim::adamw_options o) { return optim::adamw<>(o); },
          [](double lr, double wd) { return optim::adamw_options{.lr = lr, .weight_decay = wd}; });
  }
  SECTION("adam") {
    check([](optim::adam_options o) { return optim::adam<>(o); },
          [](double lr, double wd) { return optim::adam_options{.lr = lr, .weight_decay = wd}; });
  }
  SECTION("sgd") {
    check([](optim::sgd_options o) { return optim::sgd<>(o); },
          [](double lr, double wd) { return optim::sgd_options{.lr = lr, .momentum = 0.9, .weight_decay = wd}; });
  }
}

TEMPLATE_TEST_CASE("schedules: the learning rate at stepper step k is lr * s(k) * lr_factor", "[optim][schedule]",
                   float, double) {
  using T = TestType;
  const cosine_schedule cos{.total = 20, .warmup = 5, .min_factor = 0.1};
  const optim::adan<cosine_schedule> scheduled(optim::adan_options{.lr = 0.02}, cos);
  const optim::adan<> plain(optim::adan_options{.lr = 0.02});
  std::vector<T> x = wave<T>(N, 1.0, 0.0), y = x;
  parameters<T> p{std::span<T>(x)}, q{std::span<T>(y)};
  auto s1 = scheduled.init(p);
  auto s2 = plain.init(q);
  for (std::uint64_t k = 0; k < 25; ++k) {
    const auto g = wave<T>(N, 1.0, 0.37 * static_cast<double>(k));
    step_context c1;
    c1.step = k;
    c1.lr_factor = 0.5;
    const auto r1 = scheduled.update(p, s1, dense_gradient<T>(std::span<const T>(g)), c1);
    step_context c2;
    c2.step = k;
    c2.lr_factor = cos(k) * 0.5;  // the same factor supplied by the caller instead
    const auto r2 = plain.update(q, s2, dense_gradient<T>(std::span<const T>(g)), c2);
    REQUIRE(r1.lr == 0.02 * cos(k) * 0.5);
    REQUIRE(r1.lr == r2.lr);
  }
  REQUIRE(first_mismatch(x, y) == -1);
}

TEMPLATE_TEST_CASE("clip helpers: an optimizer fed clipped(g, clip_factor(...)) equals its own max_grad_norm",
                   "[optim][clip]", float, double) {
  using T = TestType;
  const double max_norm = 0.3;
  std::vector<T> x = wave<T>(N, 1.0, 0.0), y = x;
  parameters<T> p{std::span<T>(x)}, q{std::span<T>(y)};
  const optim::sgd<> own(optim::sgd_options{.lr = 0.1, .momentum = 0.9, .max_grad_norm = max_norm});
  const optim::sgd<> plain(optim::sgd_options{.lr = 0.1, .momentum = 0.9});
  auto s1 = own.init(p);
  auto s2 = plain.init(q);
  for (std::uint64_t k = 0; k < 5; ++k) {
    const auto g = wave<T>(N, 1.0, 0.3 * static_cast<double>(k));
    const dense_gradient<T> dg{std::span<const T>(g)};
    step_context ctx;
    ctx.step = k;
    const update_report r = own.update(p, s1, dg, ctx);
    const double c = optim::clip_factor(q, dg, max_norm);  // torch's clip_grad_norm_ rule, eps 1e-6
    REQUIRE(c == r.clip_factor);
    REQUIRE(c < 1.0);
    REQUIRE(c == std::min(max_norm / (optim::global_norm(q, dg) + 1e-6), 1.0));
    plain.update(q, s2, optim::clipped(dg, c), ctx);
  }
  REQUIRE(first_mismatch(x, y) == -1);
  REQUIRE(optim::clip_coefficient(0.1, 0.0, 1e-6) == 1.0);  // max_norm 0: clipping off
  REQUIRE(optim::clip_coefficient(0.1, 1.0, 1e-6) == 1.0);  // below the threshold
  REQUIRE_THROWS_AS(optim::clip_factor(q, dense_gradient<T>(std::span<const T>(y)), -1.0), invalid_argument);
}

TEMPLATE_TEST_CASE("a skipped update does not advance the optimizer's counters; the stepper's step does",
                   "[optim][nonfinite]", float, double) {
  using T = TestType;
  std::vector<T> x = wave<T>(N, 1.0, 0.0);
  parameters<T> p{std::span<T>(x)};
  const optim::adam<linear_warmup> opt(optim::adam_options{.lr = 0.01, .skip_nonfinite = true}, linear_warmup{.warmup = 4});
  auto s = opt.init(p);
  auto g = wave<T>(N, 1.0, 0.5);
  step(opt, p, s, g, 0);
  g[7] = std::numeric_limits<T>::quiet_NaN();
  const update_report r = step(opt, p, s, g, 1);
  REQUIRE(!r.applied);
  REQUIRE(r.lr == 0.01 * 2.0 / 4.0);  // the schedule follows the caller's step number
  REQUIRE(s.steps == std::vector<std::uint64_t>{1});
  // Through a stepper: its step counter (which drives schedules) advances, the optimizer's does not.
  std::vector<T> y = wave<T>(N, 1.0, 0.0);
  stepper<first_order, no_baseline, no_normalizer, optim::adam<linear_warmup>, T> st{parameters<T>(std::span<T>(y)), opt};
  REQUIRE(st.step(std::span<const T>(g)).applied == false);
  REQUIRE(st.steps() == 1);
  REQUIRE(st.opt_state().steps == std::vector<std::uint64_t>{0});
  REQUIRE(first_mismatch(y, wave<T>(N, 1.0, 0.0)) == -1);
}
