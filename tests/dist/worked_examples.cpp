// SPDX-License-Identifier: Apache-2.0
// The worked examples of shared/design/seeds/variational.md, with their explicit draws:
// section 2.3 (score function / pathwise / MVD for a scalar Gaussian), 3.4 (Bernoulli, categorical,
// full-covariance pathwise) and 8.2 (mean-field VI for logistic regression: ELBO and IWAE).
// Tolerances (section 0.3): relative 1e-12 in double; entries whose exact value is 0 absolute 1e-14.
#include <array>
#include <cmath>
#include <span>
#include <vector>

#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
namespace sd = stochgrad::dist;

namespace {

void check_rel(double got, double want, double rel = 1e-12) {
  INFO("got " << got << " want " << want);
  if (std::abs(want) < 1e-12) {
    CHECK(std::abs(got - want) <= 1e-14);
  } else {
    CHECK(std::abs(got - want) <= rel * std::abs(want));
  }
}
void check_all(std::span<const double> got, std::initializer_list<double> want, double rel = 1e-12) {
  REQUIRE(got.size() == want.size());
  std::size_t i = 0;
  for (double w : want) {
    INFO("entry " << i);
    check_rel(got[i++], w, rel);
  }
}

// A diagonal Gaussian's parameter tensors and gradient outputs.
struct gauss {
  std::vector<double> mu, rho, gmu, grho;
  std::array<std::span<const double>, 2> phi;
  std::array<std::span<double>, 2> out;
  gauss(std::vector<double> m, std::vector<double> r)
      : mu(std::move(m)), rho(std::move(r)), gmu(mu.size()), grho(mu.size()), phi{mu, rho}, out{gmu, grho} {}
  sd::param_spans<double> p() const { return phi; }
  sd::grad_spans<double> o() const { return out; }
};

}  // namespace

TEST_CASE("2.3: score function, pathwise and MVD for a scalar Gaussian, per sample and mean", "[dist][worked]") {
  gauss q({0.5}, {std::log(2.0)});
  const double sigma = 2.0;
  const std::vector<double> eps = {0.3, -1.2, 0.8, 1.5}, r = {0.4, 1.1, 2.3, 0.9};
  std::vector<double> z(4);
  for (std::size_t s = 0; s < 4; ++s) sd::diag_gaussian::sample(q.p(), std::span<const double>(eps).subspan(s, 1), std::span<double>(z).subspan(s, 1));
  check_all(z, {1.1, -1.9, 2.1, 3.5});

  struct objective {
    double (*f)(double);
    double (*df)(double);
    std::vector<double> sf_mu, sf_sigma, pw_mu, pw_sigma;
    double sf_mu_mean, sf_sigma_mean, pw_mu_mean, pw_sigma_mean;
  };
  const std::vector<double> mvd = {0.4787307364817193, 1.3165095253247283, 2.7527017347698854, 1.0771441570838682};
  const objective cases[2] = {
      {[](double x) { return 1.5 * x + 0.7; }, [](double) { return 1.5; },
       {0.3525, 1.2899999999999996, 1.5400000000000003, 4.4625},
       {-1.06925, -0.4729999999999998, -0.6929999999999998, 3.71875},
       {1.5, 1.5, 1.5, 1.5}, {0.45, -1.8, 1.2, 2.25}, 1.91125, 0.370875, 1.5, 0.525},
      {[](double x) { return (x + 0.25) * (x + 0.25); }, [](double x) { return 2.0 * (x + 0.25); },
       {0.273375, -1.6334999999999997, 2.2090000000000005, 10.546875},
       {-0.8292375, 0.59895, -0.99405, 8.7890625},
       {2.7, -3.3, 4.7, 7.5}, {0.81, 3.96, 3.76, 11.25}, 2.8489375, 1.89118125, 2.9, 4.945}};
  for (const objective& c : cases) {
    std::vector<double> f(4), g(4), fp(4), fm(4);
    for (std::size_t s = 0; s < 4; ++s) {
      f[s] = c.f(z[s]);
      g[s] = c.df(z[s]);
      std::array<double, 1> plus{}, minus{};
      sd::mvd_mean_points(q.p(), std::span<const double>(eps).subspan(s, 1), r[s], 0, std::span<double>(plus), std::span<double>(minus));
      fp[s] = c.f(plus[0]);
      fm[s] = c.f(minus[0]);
    }
    for (std::size_t s = 0; s < 4; ++s) {
      INFO("sample " << s);
      const auto e1 = std::span<const double>(eps).subspan(s, 1);
      sd::score_function_gradient<sd::diag_gaussian>(q.p(), e1, std::span<const double>(f).subspan(s, 1), q.o());
      check_rel(q.gmu[0], c.sf_mu[s]);
      check_rel(q.grho[0] / sigma, c.sf_sigma[s]);  // d/drho = sigma d/dsigma
      sd::pathwise_gradient<sd::diag_gaussian>(q.p(), e1, std::span<const double>(g).subspan(s, 1), q.o());
      check_rel(q.gmu[0], c.pw_mu[s]);
      check_rel(q.grho[0] / sigma, c.pw_sigma[s]);
      double m[1];
      sd::mvd_mean_gradient(q.p(), std::span<const double>(fp).subspan(s, 1), std::span<const double>(fm).subspan(s, 1), std::span<double>(m));
      check_rel(m[0], mvd[s]);
    }
    sd::score_function_gradient<sd::diag_gaussian>(q.p(), std::span<const double>(eps), std::span<const double>(f), q.o());
    check_rel(q.gmu[0], c.sf_mu_mean);
    check_rel(q.grho[0] / sigma, c.sf_sigma_mean);
    sd::pathwise_gradient<sd::diag_gaussian>(q.p(), std::span<const double>(eps), std::span<const double>(g), q.o());
    check_rel(q.gmu[0], c.pw_mu_mean);
    check_rel(q.grho[0] / sigma, c.pw_sigma_mean);
    double m[1];
    sd::mvd_mean_gradient(q.p(), std::span<const double>(fp), std::span<const double>(fm), std::span<double>(m));
    check_rel(m[0], 1.4062715384150504);
  }
}

TEST_CASE("3.4: Bernoulli REINFORCE (with and without a baseline), enumeration and MVD", "[dist][worked]") {
  const std::vector<double> eta = {std::log(0.3 / 0.7)};
  const std::array<std::span<const double>, 1> phi{eta};
  std::vector<double> g(1);
  const std::array<std::span<double>, 1> out{g};
  const double dpdeta = 0.21;
  check_rel(sd::bernoulli_logit::probability<double>(phi, 0), 0.3);
  const double fT = 2.5, fF = -1.0;
  // u = 0.1 draws v = T (u < p), u = 0.9 draws v = F.
  const std::vector<double> uT = {0.1}, uF = {0.9};
  std::vector<double> v(1);
  sd::bernoulli_logit::sample<double>(phi, uT, v);
  CHECK(v[0] == 1.0);
  sd::bernoulli_logit::sample<double>(phi, uF, v);
  CHECK(v[0] == 0.0);

  const std::vector<double> fTv = {fT}, fFv = {fF};
  sd::score_function_gradient<sd::bernoulli_logit>(phi, std::span<const double>(uT), std::span<const double>(fTv), out);
  check_rel(g[0], 1.75);
  check_rel(g[0] / dpdeta, 8.333333333333334);
  sd::score_function_gradient<sd::bernoulli_logit>(phi, std::span<const double>(uT), std::span<const double>(fTv), out,
                                                   sd::fixed_baseline{0.5});
  check_rel(g[0], 1.4);
  check_rel(g[0] / dpdeta, 6.666666666666667);
  sd::score_function_gradient<sd::bernoulli_logit>(phi, std::span<const double>(uF), std::span<const double>(fFv), out);
  check_rel(g[0], 0.3);
  check_rel(g[0] / dpdeta, 1.4285714285714286);
  sd::score_function_gradient<sd::bernoulli_logit>(phi, std::span<const double>(uF), std::span<const double>(fFv), out,
                                                   sd::fixed_baseline{0.5});
  check_rel(g[0], 0.45);
  check_rel(g[0] / dpdeta, 2.142857142857143);

  sd::enumerate_gradient(sd::bernoulli_logit{}, std::span<const std::span<const double>>(phi), std::span<const double>(fTv),
                         std::span<const double>(fFv), std::span<const std::span<double>>(out));
  check_rel(g[0], 0.735);
  check_rel(g[0] / dpdeta, 3.5);
  // MVD: f at the draw and at the flipped draw; the dp part is exact whatever is drawn.
  sd::mvd_gradient(sd::bernoulli_logit{}, std::span<const std::span<const double>>(phi), std::span<const double>(uT),
                   std::span<const double>(fTv), std::span<const double>(fFv), std::span<const std::span<double>>(out));
  check_rel(g[0], 0.735);
  sd::mvd_gradient(sd::bernoulli_logit{}, std::span<const std::span<const double>>(phi), std::span<const double>(uF),
                   std::span<const double>(fFv), std::span<const double>(fTv), std::span<const std::span<double>>(out));
  check_rel(g[0], 0.735);
  check_rel(g[0] / dpdeta, 3.5);
}

TEST_CASE("3.4: categorical over logits: enumeration and REINFORCE with three baselines", "[dist][worked]") {
  const std::vector<double> l = {0.2, -0.5, 1.0, 0.0}, f = {1.0, 3.0, -2.0, 0.5};
  const std::array<std::span<const double>, 1> phi{l};
  std::vector<double> g(4), p(4);
  const std::array<std::span<double>, 1> out{g};
  sd::categorical_logits::probabilities<double>(phi, p);
  check_all(p, {0.22022274720909546, 0.10935937982460744, 0.4901147372988923, 0.18030313566740477});
  const double value = sd::enumerate_gradient(sd::categorical_logits{}, std::span<const std::span<const double>>(phi),
                                              std::span<const double>(f), std::span<const std::span<double>>(out));
  check_rel(value, -0.3417770200811645);
  check_all(g, {0.2954898215043077, 0.3654546624282009, -0.8127195201859064, 0.15177503625339792});

  // Draws j = [2, 0, 2, 3] from uniforms inside the inverse-CDF intervals (cumulative sums
  // 0.220, 0.330, 0.820, 1).
  const std::vector<double> u = {0.5, 0.1, 0.7, 0.9};
  std::vector<double> fj(4);
  const std::size_t want_j[4] = {2, 0, 2, 3};
  for (std::size_t s = 0; s < 4; ++s) {
    double j[1];
    sd::categorical_logits::sample<double>(phi, std::span<const double>(u).subspan(s, 1), std::span<double>(j));
    CHECK(j[0] == static_cast<double>(want_j[s]));
    CHECK(sd::categorical_logits::index(p, u[s]) == want_j[s]);
    fj[s] = f[want_j[s]];
  }
  check_all(fj, {-2.0, 1.0, -2.0, 0.5});
  std::vector<double> b(4);
  const group_layout layout = group_layout::contiguous(1, 4);
  leave_one_out{}.compute<double>(fj, layout, b);
  check_all(b, {-0.16666666666666666, -1.1666666666666667, -0.16666666666666666, -1.0});
  sd::score_function_gradient<sd::categorical_logits>(phi, std::span<const double>(u), std::span<const double>(fj), out,
                                                      leave_one_out{});
  check_all(g, {0.5416666666666667, 0.0, -0.9166666666666666, 0.375});
  group_mean{}.compute<double>(fj, layout, b);
  check_rel(b[0], -0.625);
  sd::score_function_gradient<sd::categorical_logits>(phi, std::span<const double>(u), std::span<const double>(fj), out,
                                                      group_mean{});
  check_all(g, {0.40625, 0.0, -0.6875, 0.28125});
  sd::score_function_gradient<sd::categorical_logits>(phi, std::span<const double>(u), std::span<const double>(fj), out);
  check_all(g, {0.38763921700568466, 0.06834961239037966, -0.6936782891881923, 0.237689459792128});
}

TEST_CASE("3.4: full-covariance pathwise with the Cholesky factor as parameter", "[dist][worked]") {
  const std::vector<double> mu = {0.3, -0.2, 0.5};
  const std::vector<double> L = {0.8, 0, 0, 0.3, 0.6, 0, -0.2, 0.1, 0.5};
  const std::vector<double> A = {2, 0.5, 0, 0.5, 1, -0.3, 0, -0.3, 1.5}, c = {0.1, -0.4, 0.25};
  const std::vector<double> eps = {0.5, -1.0, 0.7};
  const std::array<std::span<const double>, 2> phi{mu, L};
  std::vector<double> z(3), g(3), gmu(3), gL(9);
  sd::gaussian_tril::sample<double>(phi, eps, z);
  check_all(z, {0.7, -0.65, 0.65});
  double f = 0.0;
  for (std::size_t i = 0; i < 3; ++i) {
    g[i] = c[i];
    for (std::size_t j = 0; j < 3; ++j) {
      g[i] += A[i * 3 + j] * z[j];
      f += 0.5 * z[i] * A[i * 3 + j] * z[j];
    }
    f += c[i] * z[i];
  }
  check_rel(f, 1.4098749999999998);
  const std::array<std::span<double>, 2> out{gmu, gL};
  sd::pathwise_gradient<sd::gaussian_tril>(std::span<const std::span<const double>>(phi), std::span<const double>(eps),
                                           std::span<const double>(g), std::span<const std::span<double>>(out));
  check_all(gmu, {1.175, -0.895, 1.42});
  check_all(gL, {0.5875, 0, 0, -0.4475, 0.895, 0, 0.71, -1.42, 0.994});
}

namespace {
// Section 8.2's model: log p(y, w) and its gradient for the 3-point logistic regression.
struct logistic_model {
  std::vector<double> X = {1, -1.0, 1, 0.5, 1, 2.0}, y = {0, 1, 1};
  double log_p(std::span<const double> w, std::span<double> grad) const {
    double lp = 0.0;
    for (std::size_t j = 0; j < 2; ++j) grad[j] = -w[j];
    for (std::size_t n = 0; n < 3; ++n) {
      const double s = X[2 * n] * w[0] + X[2 * n + 1] * w[1];
      lp += y[n] * s - std::log1p(std::exp(s));
      const double r = y[n] - 1.0 / (1.0 + std::exp(-s));
      for (std::size_t j = 0; j < 2; ++j) grad[j] += X[2 * n + j] * r;
    }
    return lp - 0.5 * (w[0] * w[0] + w[1] * w[1]) - std::log(2.0 * 3.14159265358979323846);
  }
};
}  // namespace

TEST_CASE("8.2: mean-field VI for logistic regression: ELBO (pathwise, score, LOO, direct term) and IWAE",
          "[dist][worked]") {
  gauss q({0.2, 0.5}, {-1.0, -0.7});
  const std::vector<double> eps = {0.3, -1.2, -0.8, 0.5, 1.5, 0.9, -0.2, -0.6};
  const logistic_model m;
  std::vector<double> w(8), lp(4), lq(4), f(4), glp(8);
  for (std::size_t s = 0; s < 4; ++s) {
    const auto e = std::span<const double>(eps).subspan(2 * s, 2);
    sd::diag_gaussian::sample(q.p(), e, std::span<double>(w).subspan(2 * s, 2));
    lp[s] = m.log_p(std::span<const double>(w).subspan(2 * s, 2), std::span<double>(glp).subspan(2 * s, 2));
    lq[s] = sd::diag_gaussian::log_density(q.p(), e);
    f[s] = lp[s] - lq[s];
  }
  check_all(w, {0.3103638323514327, -0.09590236454969137, -0.09430355293715387, 0.7482926518957047, 0.7518191617571635,
                0.9469267734122686, 0.12642411176571156, 0.20204881772515432});
  check_all(lp, {-4.013557469540482, -3.263331827318153, -3.4952124557722173, -3.570868603084158});
  check_all(lq, {-0.9028770664093454, -0.5828770664093454, -1.6678770664093454, -0.33787706640934534});
  check_all(f, {-3.1106804031311364, -2.6804547609088076, -1.8273353893628719, -3.2329915366748128});

  sd::elbo_pathwise_gradient(q.p(), std::span<const double>(eps), std::span<const double>(glp), q.o());
  check_all(q.gmu, {-0.0719526498472262, 0.75228059835041});
  check_all(q.grho, {0.8395333156885665, 0.6135077296965242});

  std::vector<double> b(4);
  leave_one_out{}.compute<double>(f, group_layout::contiguous(1, 4), b);
  check_all(b, {-2.5802605623154977, -2.7236691097229406, -3.0080422335715853, -2.539490184467605});
  for (std::size_t s = 0; s < 4; ++s) b[s] = f[s] - b[s];
  check_all(b, {-0.5304198408156386, 0.043214348814133, 1.1807068442087134, -0.6935013522072078}, 1e-11);

  const double est = sd::elbo_score_gradient<sd::diag_gaussian>(q.p(), std::span<const double>(eps), std::span<const double>(lp),
                                                                q.o(), leave_one_out{}, no_normalizer{}, false);
  check_rel(est, -2.712865522519407);
  check_all(q.gmu, {1.166185789014219, 1.075770838455774});
  check_all(q.grho, {0.6521924357372386, -0.011572231639130806});
  sd::elbo_score_gradient<sd::diag_gaussian>(q.p(), std::span<const double>(eps), std::span<const double>(lp), q.o(),
                                             leave_one_out{}, no_normalizer{}, true);
  check_all(q.gmu, {0.62252942332241, 1.2771461092028216});
  check_all(q.grho, {0.8971924357372385, 0.27342776836086924});
  sd::elbo_score_gradient<sd::diag_gaussian>(q.p(), std::span<const double>(eps), std::span<const double>(lp), q.o(),
                                             no_baseline{}, no_normalizer{}, false);
  check_all(q.gmu, {-0.6002272688228467, 1.3531321579395068});
  check_all(q.grho, {1.1537963798201836, 0.7644875001886828});

  std::vector<double> omega(4);
  const double iw = sd::iwae_pathwise_gradient(q.p(), std::span<const double>(eps), std::span<const double>(lp),
                                               std::span<const double>(glp), q.o(), std::span<double>(omega));
  check_rel(iw, -2.5466219095123446);
  check_all(omega, {0.14222387836214195, 0.21868406583235397, 0.5132419841819263, 0.12585007162357773});
  check_all(q.gmu, {-0.3497021320503218, 0.32751070165496493});
  check_all(q.grho, {0.7131854060021215, 0.7478978163861155});
}

TEST_CASE("4.3: Gaussian mixture, the five strategy compositions", "[dist][worked][mixture]") {
  const std::vector<double> l = {0.2, -0.1, 0.4}, mu = {-1.0, 0.5, 2.0};
  const std::vector<double> rho = {std::log(0.5), std::log(1.0), std::log(0.3)};
  const std::vector<double> eps = {0.3, -1.1, 0.6}, u = {0.5}, gu = {0.25, 0.7, 0.4};
  const std::array<std::span<const double>, 3> phi{std::span<const double>(l), std::span<const double>(mu),
                                                   std::span<const double>(rho)};
  const sd::param_spans<double> p(phi);
  auto f = [](double z) { return (z - 0.8) * (z - 0.8); };
  auto df = [](double z) { return 2.0 * (z - 0.8); };
  std::vector<double> w(3), z(3), fk(3), gk(3);
  sd::gaussian_mixture::weights<double>(p, w);
  check_all(w, {0.3375845377987164, 0.2500887766217052, 0.41232668557957836});
  sd::gaussian_mixture::component_samples<double>(p, eps, z);
  check_all(z, {-0.85, -0.6, 2.18});
  for (std::size_t k = 0; k < 3; ++k) {
    fk[k] = f(z[k]);
    gk[k] = df(z[k]);
  }
  check_all(fk, {2.7225, 1.96, 1.9044});
  CHECK(sd::categorical_logits::index(w, u[0]) == 1);  // the component draw k = 1
  std::vector<double> gl(3), gm(3), gr(3);
  const std::array<std::span<double>, 3> out{std::span<double>(gl), std::span<double>(gm), std::span<double>(gr)};
  const sd::grad_spans<double> o(out);

  sd::mixture_enum_pathwise_gradient<double>(p, eps, fk, gk, o);  // (a)
  check_all(gl, {0.17825042676361608, -0.05864152818327111, -0.11960889858034474});
  check_all(gm, {-1.1140289747357641, -0.7002485745407746, 1.1380216521996362});
  check_all(gr, {-0.1671043462103646, 0.7702734319948521, 0.2048438973959345});

  const std::vector<double> f1 = {fk[1]}, g1 = {gk[1]};
  sd::mixture_score_pathwise_gradient<double>(p, eps, u, f1, g1, o);  // (b)
  check_all(gl, {-0.6616656940854843, 1.469825997821458, -0.8081603037359737});
  check_all(gm, {0, -2.8000000000000003, 0});
  check_all(gr, {0, 3.0800000000000005, 0});

  std::vector<double> resp(3);
  sd::mixture_density_score_gradient<double>(p, eps, u, f1, o, no_baseline{}, no_normalizer{}, std::span<double>(resp));  // (c)
  check_all(resp, {0.7821342205139044, 0.21786577948609573, 1.07e-16});
  check_rel(resp[2], 1.07e-16, 1e-2);  // quoted to 3 digits
  check_all(gl, {0.8713173781217686, -0.06315707438579457, -0.8081603037359735});
  check_all(gm, {2.452772915531604, -0.4697186205720225, 0});
  check_rel(gr[0], -0.5518739059946115);
  check_rel(gr[1], 0.0896735548364771);
  // The spec quotes "0 (abs)" for d/drho_2, but its exact value is f resp_2 (t^2 - 1) with
  // t = (-0.6 - 2)/0.3: 1.96 * 1.07e-16 * 74.1 = 1.55e-14, just above section 0.3's absolute 1e-14;
  // asserted against that value to the 3 digits the spec gives resp_2.
  const double t2 = (-0.6 - 2.0) / 0.3;
  check_rel(gr[2], 1.96 * 1.07e-16 * (t2 * t2 - 1.0), 1e-2);

  // (d) for the loss f minimised: q = -f, g = -grad f; the spec's rows are loss gradients (negated here).
  std::vector<double> q(3), gq(3);
  for (std::size_t k = 0; k < 3; ++k) {
    q[k] = -fk[k];
    gq[k] = -gk[k];
  }
  const double Lw = sd::mixture_frequency_gradient<double>(p, eps, q, gq, o);
  check_rel(Lw, 0.17395588027826592);
  for (double& x : gl) x = -x;
  for (double& x : gm) x = -x;
  for (double& x : gr) x = -x;
  check_all(gl, {0.09078553204180596, 0.052667771062624706, -0.14345330310443066});
  check_all(gm, {0, 0, 2.76});
  check_all(gr, {0, 0, 0.4968});

  std::vector<double> zr(1), y(3);
  sd::mixture_gumbel_point<double>(p, eps, gu, 0.5, zr, y);  // (e)
  check_all(y, {0.07870648353829601, 0.6525285684188151, 0.268764948042889});
  check_rel(zr[0], 0.1274899346746572);
  check_rel(f(zr[0]), 0.4522697879638969);
  const std::vector<double> gz = {df(zr[0])};
  sd::mixture_gumbel_gradient<double>(p, eps, gu, 0.5, gz, o);
  check_all(gl, {0.20695769726172902, 1.2769835398576925, -1.4839412371194216});
  check_all(gm, {-0.10586180477173494, -0.8776640603479796, -0.3614942655309713});
  check_all(gr, {-0.01587927071576024, 0.9654304663827776, -0.06506896779557483});
}

TEST_CASE("Gumbel-softmax over categorical logits: section 4.3 (e)'s weight gradient with g_k = df(z_relaxed) z_k",
          "[dist][worked]") {
  // With l the mixture's log-weights (softmax-invariant) and g_k = df(z_relaxed) z_k, the
  // categorical relaxation's d/dl is 4.3 (e)'s d/dl, and y is (e)'s y.
  const std::vector<double> l = {0.2, -0.1, 0.4}, gu = {0.25, 0.7, 0.4};
  const std::array<std::span<const double>, 1> phi{std::span<const double>(l)};
  std::vector<double> y(3), g(3), out_l(3);
  sd::gumbel_softmax_point<double>(phi, gu, 0.5, y);
  check_all(y, {0.07870648353829601, 0.6525285684188151, 0.268764948042889});
  const double z[3] = {-0.85, -0.6, 2.18}, dfz = 2.0 * (0.1274899346746572 - 0.8);
  for (std::size_t k = 0; k < 3; ++k) g[k] = dfz * z[k];
  const std::array<std::span<double>, 1> out{std::span<double>(out_l)};
  sd::gumbel_softmax_gradient<double>(phi, gu, 0.5, g, out);
  check_all(out_l, {0.20695769726172902, 1.2769835398576925, -1.4839412371194216});
  CHECK_THROWS_AS(sd::gumbel_softmax_gradient<double>(phi, gu, 0.0, g, out), invalid_argument);
  CHECK_THROWS_AS(sd::gumbel_softmax_gradient<double>(phi, std::span<const double>(gu).subspan(1), 0.5, g, out),
                  invalid_argument);
}
