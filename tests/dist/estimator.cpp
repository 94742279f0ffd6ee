// SPDX-License-Identifier: Apache-2.0
// dist::estimator in the stepper (bits/dist/estimator.hpp): regenerated noise, the loss gradient
// handed to the optimizer, state save/load, training; and input validation of the strategy
// functions and the stepper (bad sizes, non-finite values, non-positive scales): the library
// exception, and nothing written.
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <sstream>
#include <vector>

#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
namespace sd = stochgrad::dist;

namespace {
template <class Est, class B = no_baseline, class T = double>
using dist_sgd = stepper<Est, B, no_normalizer, optim::sgd<>, T>;
using gauss_pw = sd::estimator<sd::diag_gaussian, sd::pathwise>;
using gauss_sf = sd::estimator<sd::diag_gaussian, sd::score_function>;
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
}  // namespace

TEMPLATE_TEST_CASE("a pathwise step applies -lr times the objective gradient of the step's own noise", "[dist][stepper]",
                   float, double) {
  using T = TestType;
  std::vector<T> mu = {T(0.2), T(-0.4), T(1.0)}, rho = {T(-1.0), T(0.0), T(0.5)};
  parameters<T> p;
  p.add(mu);
  p.add(rho);
  dist_sgd<gauss_pw, no_baseline, T> s(p, {.lr = 0.1}, {.samples = 4, .seed = 9});
  std::vector<T> eps(12), z(12), g(12), z2(12);
  s.estimator().noise(s, std::span<T>(eps));
  s.estimator().sample(s, std::span<T>(z));
  s.estimator().sample(s, std::span<T>(z2));
  CHECK(z == z2);  // regenerated, not consumed
  for (std::size_t i = 0; i < 12; ++i) g[i] = T(-2) * (z[i] - T(1));
  // The free function on the same noise.
  std::vector<T> gm(3), gr(3);
  const std::array<std::span<const T>, 2> phi{std::span<const T>(mu), std::span<const T>(rho)};
  const std::array<std::span<T>, 2> out{std::span<T>(gm), std::span<T>(gr)};
  sd::pathwise_gradient<sd::diag_gaussian>(phi, std::span<const T>(eps), std::span<const T>(g), out);
  const std::vector<T> mu0 = mu, rho0 = rho;
  const sd::step_report r = s.step(std::span<const T>(g));
  CHECK(r.applied);
  CHECK(r.call == 0);
  CHECK(s.est_state().calls == 1);
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-12;
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(std::abs(static_cast<double>(mu[i] - (mu0[i] + T(0.1) * gm[i]))) <= tol);
    CHECK(std::abs(static_cast<double>(rho[i] - (rho0[i] + T(0.1) * gr[i]))) <= tol);
  }
  // The next call draws other noise.
  s.estimator().noise(s, std::span<T>(z2));
  CHECK(z2 != eps);
}

TEST_CASE("stepper estimate writes the objective gradient without consuming the call", "[dist][stepper]") {
  std::vector<double> eta = {0.3, -0.2};
  dist_sgd<sd::estimator<sd::bernoulli_logit, sd::score_function>, leave_one_out> s(eta, {.lr = 0.1}, {.samples = 6, .seed = 1});
  std::vector<double> v(12), u(12), f(6), g(2), g2(2);
  s.estimator().sample(s, std::span<double>(v));
  s.estimator().noise(s, std::span<double>(u));
  for (std::size_t k = 0; k < 6; ++k) f[k] = v[2 * k] + 2.0 * v[2 * k + 1] * v[2 * k];
  const std::array<std::span<double>, 1> out{g};
  const double mean = s.estimate(std::span<const std::span<double>>(out), std::span<const double>(f));
  const std::array<std::span<const double>, 1> phi{std::span<const double>(eta)};
  const std::array<std::span<double>, 1> o2{g2};
  sd::score_function_gradient<sd::bernoulli_logit>(phi, std::span<const double>(u), std::span<const double>(f), o2, leave_one_out{});
  CHECK(g == g2);
  double m = 0.0;
  for (double x : f) m += x / 6.0;
  CHECK(std::abs(mean - m) <= 1e-15);
  CHECK(s.est_state().calls == 0);
  CHECK(s.steps() == 0);
}

TEST_CASE("save and load restore the call counter (the same noise afterwards)", "[dist][stepper]") {
  std::vector<double> mu = {0.0, 0.0}, rho = {0.0, 0.0};
  parameters<double> p;
  p.add(mu);
  p.add(rho);
  dist_sgd<gauss_pw> s(p, {.lr = 0.01}, {.samples = 2, .seed = 5});
  std::vector<double> g(4, 0.5), a(4), b(4);
  s.step(std::span<const double>(g));
  std::stringstream ss;
  s.save(ss);
  s.estimator().noise(s, std::span<double>(a));
  s.step(std::span<const double>(g));
  s.load(ss);
  s.estimator().noise(s, std::span<double>(b));
  CHECK(a == b);
  // Another strategy is another kind: its saved state is refused.
  CHECK(dist_sgd<gauss_pw>::kind() == "dist<diag_gaussian,pathwise,expectation,philox_icdf<7>>/no_baseline/no_normalizer/sgd<constant>/float64");
  CHECK(dist_sgd<sd::estimator<sd::gaussian_mixture, sd::composed<sd::enumerate, sd::pathwise>>>::kind().rfind(
            "dist<gaussian_mixture,composed<enumerate,pathwise>,", 0) == 0);
  dist_sgd<gauss_sf> other(p, {.lr = 0.01}, {.samples = 2, .seed = 5});
  std::stringstream s2;
  s.save(s2);
  CHECK_THROWS_AS(other.load(s2), state_error);
}

TEST_CASE("training: pathwise and score-function steppers move q towards the optimum", "[dist][stepper]") {
  // Maximise E[-(z - 1)^2 - (z + 2)^2 ...]: f(z) = -sum_i (z_i - t_i)^2, optimum mu = t, sigma -> 0.
  const std::vector<double> t = {1.0, -2.0};
  auto run = [&](auto& s, bool pathwise, std::vector<double>& mu) {
    std::vector<double> z(16), vals(16), f(8);
    for (int k = 0; k < 400; ++k) {
      s.estimator().sample(s, std::span<double>(z));
      for (std::size_t n = 0; n < 8; ++n) {
        f[n] = 0.0;
        for (std::size_t i = 0; i < 2; ++i) {
          vals[2 * n + i] = -2.0 * (z[2 * n + i] - t[i]);
          f[n] -= (z[2 * n + i] - t[i]) * (z[2 * n + i] - t[i]);
        }
      }
      if (pathwise) {
        s.step(std::span<const double>(vals));
      } else {
        s.step(std::span<const double>(f));
      }
    }
    for (std::size_t i = 0; i < 2; ++i) CHECK(std::abs(mu[i] - t[i]) < 0.2);
  };
  std::vector<double> mu = {0.0, 0.0}, rho = {0.0, 0.0};
  parameters<double> p;
  p.add(mu);
  p.add(rho);
  stepper<gauss_pw, no_baseline, no_normalizer, optim::adam<>, double> a(p, {.lr = 0.05}, {.samples = 8, .seed = 3});
  run(a, true, mu);
  CHECK(rho[0] < -1.0);
  std::vector<double> mu2 = {0.0, 0.0}, rho2 = {0.0, 0.0};
  parameters<double> p2;
  p2.add(mu2);
  p2.add(rho2);
  stepper<gauss_sf, leave_one_out, no_normalizer, optim::adam<>, double> b(p2, {.lr = 0.05}, {.samples = 8, .seed = 3});
  run(b, false, mu2);
}

TEST_CASE("enumerate, mvd and elbo estimators in the stepper", "[dist][stepper]") {
  // Categorical enumeration: exact gradient, so the argmax category gains probability.
  std::vector<double> l = {0.0, 0.0, 0.0};
  dist_sgd<sd::estimator<sd::categorical_logits, sd::enumerate>> c(l, {.lr = 0.5}, {.samples = 1});
  const std::vector<double> f = {0.0, 1.0, 0.5};
  for (int k = 0; k < 50; ++k) c.step(std::span<const double>(f));
  CHECK(l[1] > l[2]);
  CHECK(l[2] > l[0]);
  // Bernoulli MVD: f(v) = v, so d/deta = p (1 - p) > 0 whatever is drawn.
  std::vector<double> eta = {0.0};
  dist_sgd<sd::estimator<sd::bernoulli_logit, sd::mvd>> m(eta, {.lr = 1.0}, {.samples = 3});
  std::vector<double> v(3), fd(3), ff(3);
  m.estimator().sample(m, std::span<double>(v));
  for (std::size_t k = 0; k < 3; ++k) {
    fd[k] = v[k];
    ff[k] = 1.0 - v[k];
  }
  m.step(std::span<const double>(fd), std::span<const double>(ff));
  CHECK(std::abs(eta[0] - 0.25) <= 1e-15);
  // ELBO + pathwise: the objective gradient of q = N(mu, sigma^2) against log p = N(z; 0, 1) is
  // g_mu = -mean z, g_rho = -mean z eps sigma + 1; at mu = 0, sigma = 1 the step moves rho by lr * (1 - mean eps^2).
  std::vector<double> mu = {0.0}, rho = {0.0};
  parameters<double> p;
  p.add(mu);
  p.add(rho);
  dist_sgd<sd::estimator<sd::diag_gaussian, sd::pathwise, sd::elbo>> e(p, {.lr = 0.1}, {.samples = 4, .seed = 2});
  std::vector<double> z(4), eps(4), gl(4);
  e.estimator().sample(e, std::span<double>(z));
  e.estimator().noise(e, std::span<double>(eps));
  double m2 = 0.0, m1 = 0.0;
  for (std::size_t k = 0; k < 4; ++k) {
    gl[k] = -z[k];
    m1 += z[k] / 4.0;
    m2 += eps[k] * eps[k] / 4.0;
  }
  e.step(std::span<const double>(gl));
  CHECK(std::abs(mu[0] - 0.1 * -m1) <= 1e-12);
  CHECK(std::abs(rho[0] - 0.1 * (1.0 - m2)) <= 1e-12);
  // IWAE in the stepper gives the free function's result.
  std::vector<double> mu3 = {0.1}, rho3 = {-0.2};
  parameters<double> p3;
  p3.add(mu3);
  p3.add(rho3);
  dist_sgd<sd::estimator<sd::diag_gaussian, sd::pathwise, sd::iwae>> w(p3, {.lr = 0.1}, {.samples = 4, .seed = 4});
  std::vector<double> lp(4), g3(2), h(2);
  w.estimator().sample(w, std::span<double>(z));
  w.estimator().noise(w, std::span<double>(eps));
  for (std::size_t k = 0; k < 4; ++k) {
    lp[k] = -0.5 * z[k] * z[k];
    gl[k] = -z[k];
  }
  const std::array<std::span<double>, 2> o3{std::span<double>(g3).subspan(0, 1), std::span<double>(g3).subspan(1, 1)};
  const double iw = w.estimate(std::span<const std::span<double>>(o3), std::span<const double>(lp), std::span<const double>(gl));
  const std::array<std::span<const double>, 2> phi3{std::span<const double>(mu3), std::span<const double>(rho3)};
  const std::array<std::span<double>, 2> o4{std::span<double>(h).subspan(0, 1), std::span<double>(h).subspan(1, 1)};
  CHECK(iw == sd::iwae_pathwise_gradient<double>(phi3, eps, lp, gl, o4));
  CHECK(g3 == h);
}

TEST_CASE("validation: bad sizes, non-finite values and non-positive scales throw and write nothing", "[dist][validation]") {
  std::vector<double> mu = {0.1, 0.2}, rho = {0.0, -0.5};
  std::vector<double> gm = {42.0, 42.0}, gr = {42.0, 42.0};
  const std::array<std::span<double>, 2> out{gm, gr};
  auto untouched = [&] { return gm == std::vector<double>{42.0, 42.0} && gr == std::vector<double>{42.0, 42.0}; };
  auto phi = [&] { return std::array<std::span<const double>, 2>{std::span<const double>(mu), std::span<const double>(rho)}; };
  const std::vector<double> eps = {0.1, 0.2, 0.3, 0.4}, f2 = {1.0, 2.0}, f3 = {1.0, 2.0, 3.0};
  const auto e = std::span<const double>(eps);
  // Sizes.
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(f3), out), size_mismatch);
  CHECK_THROWS_AS(sd::pathwise_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(f3), out), size_mismatch);
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e.subspan(0, 3), std::span<const double>(f2), out),
                  invalid_argument);
  std::vector<double> short_out(1);
  const std::array<std::span<double>, 2> bad_out{std::span<double>(short_out), std::span<double>(gr)};
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(f2), bad_out), size_mismatch);
  // Leave-one-out needs two samples.
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e.subspan(0, 2), std::span<const double>(f2).subspan(0, 1),
                                                                 out, leave_one_out{}),
                  invalid_argument);
  // Non-finite objective values and gradients.
  const std::vector<double> fn = {1.0, qnan}, fi = {std::numeric_limits<double>::infinity(), 0.0};
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(fn), out), nonfinite_error);
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(fi), out), nonfinite_error);
  const std::vector<double> gnan = {0.0, 0.0, qnan, 0.0};
  CHECK_THROWS_AS(sd::pathwise_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(gnan), out), nonfinite_error);
  // Non-finite parameters; sigma = exp(rho) outside (0, inf).
  for (double bad : {qnan, -1000.0, 1000.0, -std::numeric_limits<double>::infinity()}) {
    rho[1] = bad;
    CHECK_THROWS_AS(sd::pathwise_gradient<sd::diag_gaussian>(phi(), e, e, out), invalid_argument);
  }
  rho[1] = -0.5;
  mu[0] = qnan;
  CHECK_THROWS_AS(sd::score_function_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(f2), out), invalid_argument);
  mu[0] = 0.1;
  CHECK(untouched());
  // Discrete distributions.
  std::vector<double> l = {0.0, qnan}, gl = {42.0, 42.0};
  const std::array<std::span<const double>, 1> pl{std::span<const double>(l)};
  const std::array<std::span<double>, 1> ol{std::span<double>(gl)};
  CHECK_THROWS_AS(sd::enumerate_gradient(sd::categorical_logits{}, pl, std::span<const double>(f2), ol), invalid_argument);
  l[1] = 0.0;
  CHECK_THROWS_AS(sd::enumerate_gradient(sd::categorical_logits{}, pl, std::span<const double>(f3), ol), size_mismatch);
  CHECK_THROWS_AS(sd::enumerate_gradient(sd::bernoulli_logit{}, pl, std::span<const double>(f2), std::span<const double>(f3), ol),
                  size_mismatch);
  CHECK_THROWS_AS(sd::mvd_gradient(sd::bernoulli_logit{}, pl, e, std::span<const double>(fn), std::span<const double>(f2), ol),
                  size_mismatch);
  CHECK(gl == std::vector<double>{42.0, 42.0});
  // Gaussian MVD, full covariance, objectives.
  std::vector<double> om = {42.0, 42.0};
  CHECK_THROWS_AS(sd::mvd_mean_gradient<double>(phi(), f2, fn, std::span<double>(om)), nonfinite_error);
  const std::vector<double> L = {1.0, 0.0, 0.5};
  const std::array<std::span<const double>, 2> pt{std::span<const double>(mu), std::span<const double>(L)};
  CHECK_THROWS_AS(sd::pathwise_gradient<sd::gaussian_tril>(pt, e, e, out), size_mismatch);
  CHECK_THROWS_AS(sd::elbo_score_gradient<sd::diag_gaussian>(phi(), e, std::span<const double>(fn), out), nonfinite_error);
  CHECK_THROWS_AS(sd::iwae_pathwise_gradient<double>(phi(), e, f2, gnan, out), nonfinite_error);
  CHECK(om == std::vector<double>{42.0, 42.0});
  CHECK(untouched());
}

TEST_CASE("validation in the stepper: refused construction, and a throwing step changes nothing", "[dist][validation]") {
  std::vector<double> mu = {0.1, 0.2}, rho = {0.0, -2000.0};
  parameters<double> p;
  p.add(mu);
  p.add(rho);
  CHECK_THROWS_AS((dist_sgd<gauss_pw>(p, {.lr = 0.1}, {.samples = 4})), invalid_argument);  // sigma underflows to 0
  rho[1] = 0.0;
  CHECK_THROWS_AS((dist_sgd<gauss_pw>(p, {.lr = 0.1}, {.samples = 0})), invalid_argument);
  std::vector<double> only_mu = {0.0, 0.0};
  CHECK_THROWS_AS((dist_sgd<gauss_pw>(only_mu, {.lr = 0.1}, {.samples = 2})), size_mismatch);
  std::vector<double> big(5000, 0.0);
  CHECK_THROWS_AS((dist_sgd<sd::estimator<sd::categorical_logits, sd::enumerate>>(big, {.lr = 0.1}, {})), invalid_argument);

  dist_sgd<gauss_sf, leave_one_out> s(p, {.lr = 0.1}, {.samples = 3, .seed = 8});
  const std::vector<double> mu0 = mu, rho0 = rho;
  const std::vector<double> bad = {1.0, qnan, 2.0}, short_f = {1.0, 2.0};
  CHECK_THROWS_AS(s.step(std::span<const double>(bad)), nonfinite_error);
  CHECK_THROWS_AS(s.step(std::span<const double>(short_f)), size_mismatch);
  CHECK(mu == mu0);
  CHECK(rho == rho0);
  CHECK(s.est_state().calls == 0);
  CHECK(s.steps() == 0);
  std::vector<double> z(5);
  CHECK_THROWS_AS(s.estimator().sample(s, std::span<double>(z)), size_mismatch);
}

TEST_CASE("gaussian_mixture in the stepper: each composition gives the free function's gradient on the step's noise",
          "[dist][stepper][mixture]") {
  std::vector<double> l = {0.2, -0.1, 0.4}, mu = {-1.0, 0.5, 2.0, 0.0, 1.0, -1.0}, rho = {-0.5, 0.0, -1.0, 0.2, 0.1, -0.3};
  parameters<double> p;
  p.add(l);
  p.add(mu);
  p.add(rho);
  const std::size_t S = 4, K = 3, d = 2;
  const std::array<std::span<const double>, 3> phi{std::span<const double>(l), std::span<const double>(mu), std::span<const double>(rho)};
  std::vector<double> noise(sd::mixture_noise_size(K, d, S));
  const auto eps = std::span<const double>(noise).subspan(0, S * K * d), u = std::span<const double>(noise).subspan(S * K * d, S);
  const auto gu = std::span<const double>(noise).subspan(S * K * d + S, S * K);
  auto f = [](const double* z) { return -(z[0] - 1.0) * (z[0] - 1.0) - 0.5 * (z[1] + 0.5) * (z[1] + 0.5); };
  auto df = [](const double* z, double* g) {
    g[0] = -2.0 * (z[0] - 1.0);
    g[1] = -(z[1] + 0.5);
  };
  std::vector<double> a(15), b(15);
  auto split = [](std::vector<double>& v) {
    return std::array<std::span<double>, 3>{std::span<double>(v).subspan(0, 3), std::span<double>(v).subspan(3, 6),
                                            std::span<double>(v).subspan(9, 6)};
  };
  auto oa = split(a), ob = split(b);
  SECTION("composed<enumerate, pathwise>") {
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::composed<sd::enumerate, sd::pathwise>>> s(p, {.lr = 0.1}, {.samples = S, .seed = 1});
    std::vector<double> z(S * K * d), fv(S * K), gv(S * K * d);
    s.estimator().sample(s, std::span<double>(z));
    s.estimator().noise(s, std::span<double>(noise));
    for (std::size_t i = 0; i < S * K; ++i) {
      fv[i] = f(&z[i * d]);
      df(&z[i * d], &gv[i * d]);
    }
    s.estimate(std::span<const std::span<double>>(oa), std::span<const double>(fv), std::span<const double>(gv));
    sd::mixture_enum_pathwise_gradient<double>(phi, eps, fv, gv, ob);
    CHECK(a == b);
  }
  SECTION("composed<score_function, pathwise> with leave-one-out, and the mixture-density score") {
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::composed<sd::score_function, sd::pathwise>>, leave_one_out> s(
        p, {.lr = 0.1}, {.samples = S, .seed = 2});
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::score_function>, leave_one_out> s2(p, {.lr = 0.1}, {.samples = S, .seed = 2});
    std::vector<double> z(S * d), fv(S), gv(S * d);
    s.estimator().sample(s, std::span<double>(z));
    s.estimator().noise(s, std::span<double>(noise));
    for (std::size_t i = 0; i < S; ++i) {
      fv[i] = f(&z[i * d]);
      df(&z[i * d], &gv[i * d]);
    }
    s.estimate(std::span<const std::span<double>>(oa), std::span<const double>(fv), std::span<const double>(gv));
    sd::mixture_score_pathwise_gradient<double>(phi, eps, u, fv, gv, ob, leave_one_out{});
    CHECK(a == b);
    s2.estimate(std::span<const std::span<double>>(oa), std::span<const double>(fv));
    sd::mixture_density_score_gradient<double>(phi, eps, u, fv, ob, leave_one_out{});
    CHECK(a == b);
  }
  SECTION("frequency and gumbel_softmax") {
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::frequency>> s(p, {.lr = 0.1}, {.samples = S, .seed = 3});
    std::vector<double> z(S * K * d), q(S * K), gq(S * K * d);
    s.estimator().sample(s, std::span<double>(z));
    s.estimator().noise(s, std::span<double>(noise));
    for (std::size_t i = 0; i < S * K; ++i) {
      q[i] = f(&z[i * d]);
      df(&z[i * d], &gq[i * d]);
    }
    s.estimate(std::span<const std::span<double>>(oa), std::span<const double>(q), std::span<const double>(gq));
    sd::mixture_frequency_gradient<double>(phi, eps, q, gq, ob);
    CHECK(a == b);
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::gumbel_softmax>> g(p, {.lr = 0.1}, {.samples = S, .seed = 4, .temperature = 0.5});
    std::vector<double> zr(S * d), gz(S * d), y(K), zr2(d);
    g.estimator().sample(g, std::span<double>(zr));
    g.estimator().noise(g, std::span<double>(noise));
    for (std::size_t i = 0; i < S; ++i) {
      sd::mixture_gumbel_point<double>(phi, eps.subspan(i * K * d, K * d), gu.subspan(i * K, K), 0.5, zr2, y);
      CHECK(zr2[0] == zr[i * d]);
      df(&zr[i * d], &gz[i * d]);
    }
    g.estimate(std::span<const std::span<double>>(oa), std::span<const double>(gz));
    sd::mixture_gumbel_gradient<double>(phi, eps, gu, 0.5, gz, ob);
    CHECK(a == b);
    CHECK_THROWS_AS((dist_sgd<sd::estimator<sd::gaussian_mixture, sd::gumbel_softmax>>(p, {.lr = 0.1}, {.temperature = 0.0})),
                    invalid_argument);
  }
  SECTION("training with enumerate x pathwise moves the mixture onto the optimum") {
    dist_sgd<sd::estimator<sd::gaussian_mixture, sd::composed<sd::enumerate, sd::pathwise>>> s(p, {.lr = 0.05}, {.samples = S, .seed = 5});
    std::vector<double> z(S * K * d), fv(S * K), gv(S * K * d);
    const std::vector<double> mu0 = mu;
    for (int k = 0; k < 300; ++k) {
      s.estimator().sample(s, std::span<double>(z));
      for (std::size_t i = 0; i < S * K; ++i) {
        fv[i] = f(&z[i * d]);
        df(&z[i * d], &gv[i * d]);
      }
      s.step(std::span<const double>(fv), std::span<const double>(gv));
    }
    // Every component's mean moved towards (1, -0.5) (each gets gradient w_k df).
    auto dist2 = [](const std::vector<double>& m, std::size_t k) {
      return (m[2 * k] - 1.0) * (m[2 * k] - 1.0) + (m[2 * k + 1] + 0.5) * (m[2 * k + 1] + 0.5);
    };
    for (std::size_t k = 0; k < K; ++k) CHECK(dist2(mu, k) < dist2(mu0, k));
  }
  // Bad input through the stepper: nothing changes.
  dist_sgd<sd::estimator<sd::gaussian_mixture, sd::composed<sd::enumerate, sd::pathwise>>> s(p, {.lr = 0.1}, {.samples = S});
  const std::vector<double> l0 = l;
  std::vector<double> fv(S * K, qnan), gv(S * K * d, 0.0);
  CHECK_THROWS_AS(s.step(std::span<const double>(fv), std::span<const double>(gv)), nonfinite_error);
  CHECK_THROWS_AS(s.step(std::span<const double>(fv).subspan(1), std::span<const double>(gv)), size_mismatch);
  CHECK(l == l0);
  rho[0] = -1e4;
  CHECK_THROWS_AS((dist_sgd<sd::estimator<sd::gaussian_mixture, sd::frequency>>(p, {.lr = 0.1}, {})), invalid_argument);
}

TEST_CASE("float parameters: discrete and mixture estimators compile and agree with double to float precision",
          "[dist][stepper]") {
  std::vector<float> lf = {0.2f, -0.5f, 1.0f, 0.0f};
  std::vector<double> ld = {0.2, -0.5, 1.0, 0.0};
  dist_sgd<sd::estimator<sd::categorical_logits, sd::score_function>, leave_one_out, float> sf(lf, {.lr = 0.1}, {.samples = 4, .seed = 1});
  dist_sgd<sd::estimator<sd::categorical_logits, sd::score_function>, leave_one_out, double> sdb(ld, {.lr = 0.1}, {.samples = 4, .seed = 1});
  std::vector<float> jf(4);
  std::vector<double> jd(4), f(4);
  sf.estimator().sample(sf, std::span<float>(jf));
  sdb.estimator().sample(sdb, std::span<double>(jd));
  for (std::size_t k = 0; k < 4; ++k) {
    CHECK(static_cast<double>(jf[k]) == jd[k]);  // the same float uniforms, widened exactly
    f[k] = jd[k] * jd[k] - 1.0;
  }
  sf.step(std::span<const double>(f));
  sdb.step(std::span<const double>(f));
  for (std::size_t k = 0; k < 4; ++k) CHECK(std::abs(static_cast<double>(lf[k]) - ld[k]) <= 2e-6 * (1.0 + std::abs(ld[k])));
  std::vector<float> l = {0.2f, -0.1f}, mu = {-1.0f, 0.5f}, rho = {-0.5f, 0.0f};
  parameters<float> p;
  p.add(l);
  p.add(mu);
  p.add(rho);
  dist_sgd<sd::estimator<sd::gaussian_mixture, sd::gumbel_softmax>, no_baseline, float> g(p, {.lr = 0.1}, {.samples = 2, .temperature = 0.5});
  std::vector<float> z(2);
  g.estimator().sample(g, std::span<float>(z));
  const std::vector<double> gz = {1.0, -1.0};
  CHECK(g.step(std::span<const double>(gz)).applied);
}

TEST_CASE("presets: vi_pathwise, vi_score, mix_exact", "[dist][presets]") {
  std::vector<double> mu = {0.0}, rho = {0.0};
  parameters<double> p;
  p.add(mu);
  p.add(rho);
  vi_pathwise<double> a(p, {.lr = 0.01}, {.samples = 2});
  vi_score<double> b(p, {.lr = 0.01}, {.samples = 2});
  CHECK(a.kind().rfind("dist<diag_gaussian,pathwise,elbo,", 0) == 0);
  CHECK(b.kind().find("/leave_one_out/") != std::string::npos);
  std::vector<double> l = {0.0, 0.0}, m2 = {-1.0, 1.0}, r2 = {0.0, 0.0};
  parameters<double> q;
  q.add(l);
  q.add(m2);
  q.add(r2);
  mix_exact<double> c(q, {.lr = 0.01}, {.samples = 2});
  CHECK(c.kind().rfind("dist<gaussian_mixture,composed<enumerate,pathwise>,", 0) == 0);
}
