// Mean-field Gaussian variational inference for Bayesian logistic regression with the
// distribution estimators of stochgrad::dist (spec shared/design/seeds/variational.md section 8):
// q(w) = N(mu, diag(exp(rho)^2)) maximises the ELBO E_q[log p(y, w) - log q(w)], with pathwise
// (reparameterisation) gradients and with score-function gradients + the leave-one-out baseline.
//
// Part 1 (section 8.3): the 3-point data of section 8.2, S = 8, Philox seed 7, Adam lr 0.05, 500
//   steps from mu = 0, rho = -1; prints the final ELBO of both (tensor Gauss-Hermite quadrature)
//   and the ratio of the gradient variances at the initial point (> 1 in favour of pathwise).
// Part 2: the breast-cancer data (30 standardised features + bias), ELBO estimates along the run
//   and the posterior predictive accuracy on a held-out split.
#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/problems.hpp>
#include <stochgrad/stochgrad.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <numbers>
#include <span>
#include <string>
#include <vector>

namespace sg = stochgrad;
namespace sd = stochgrad::dist;

namespace {

// Logistic regression with prior N(0, I): log p(y, w) and its gradient (section 8.1).
struct model {
  std::vector<double> x, y;  // rows x d (first column 1), labels in {0, 1}
  std::size_t d = 0;
  double log_p(std::span<const double> w, std::span<double> grad) const {
    const std::size_t n = y.size();
    double lp = -0.5 * static_cast<double>(d) * std::log(2.0 * std::numbers::pi);
    for (std::size_t j = 0; j < d; ++j) {
      grad[j] = -w[j];
      lp -= 0.5 * w[j] * w[j];
    }
    for (std::size_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (std::size_t j = 0; j < d; ++j) s += x[i * d + j] * w[j];
      lp += y[i] * s - (s > 0 ? s + std::log1p(std::exp(-s)) : std::log1p(std::exp(s)));
      const double r = y[i] - 1.0 / (1.0 + std::exp(-s));
      for (std::size_t j = 0; j < d; ++j) grad[j] += x[i * d + j] * r;
    }
    return lp;
  }
};

// Nodes and weights of the n-point Gauss-Hermite rule for E_{N(0,1)}[g] (probabilists' form):
// roots of the Hermite polynomial H_n by Newton's method on the three-term recurrence.
void gauss_hermite(int n, std::vector<double>& x, std::vector<double>& w) {
  x.assign(static_cast<std::size_t>(n), 0.0);
  w.assign(static_cast<std::size_t>(n), 0.0);
  double z = 0.0;
  for (int i = 0; i < (n + 1) / 2; ++i) {
    // Initial guesses for the largest roots, then each from the previous ones.
    if (i == 0) z = std::sqrt(2.0 * n + 1) - 1.85575 * std::pow(2.0 * n + 1, -1.0 / 6);
    else if (i == 1) z -= 1.14 * std::pow(n, 0.426) / z;
    else if (i == 2) z = 1.86 * z - 0.86 * x[0];
    else if (i == 3) z = 1.91 * z - 0.91 * x[1];
    else z = 2.0 * z - x[static_cast<std::size_t>(i - 2)];
    double pp = 0.0;
    for (int it = 0; it < 100; ++it) {
      // Orthonormal Hermite recurrence (physicists' weight exp(-z^2)).
      double p1 = std::pow(std::numbers::pi, -0.25), p2 = 0.0;
      for (int j = 1; j <= n; ++j) {
        const double p3 = p2;
        p2 = p1;
        p1 = z * std::sqrt(2.0 / j) * p2 - std::sqrt((j - 1.0) / j) * p3;
      }
      pp = std::sqrt(2.0 * n) * p2;
      const double dz = p1 / pp;
      z -= dz;
      if (std::abs(dz) < 1e-15) break;
    }
    x[static_cast<std::size_t>(i)] = z;
    x[static_cast<std::size_t>(n - 1 - i)] = -z;
    w[static_cast<std::size_t>(i)] = w[static_cast<std::size_t>(n - 1 - i)] = 2.0 / (pp * pp);
  }
  // Physicists' (weight exp(-z^2)) to probabilists' (N(0, 1)) form.
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] *= std::numbers::sqrt2;
    w[i] /= std::sqrt(std::numbers::pi);
  }
}

// Exact ELBO of a 2-D q by tensor Gauss-Hermite quadrature (60 nodes per dimension):
// E_q[log p] + sum rho + (d/2)(1 + log 2 pi).
double elbo_quadrature(const model& m, std::span<const double> mu, std::span<const double> rho) {
  std::vector<double> x, w;
  gauss_hermite(60, x, w);
  double e = 0.0;
  std::array<double, 2> z{}, g{};
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (std::size_t j = 0; j < x.size(); ++j) {
      z = {mu[0] + std::exp(rho[0]) * x[i], mu[1] + std::exp(rho[1]) * x[j]};
      e += w[i] * w[j] * m.log_p(z, g);
    }
  }
  return e + rho[0] + rho[1] + (1.0 + std::log(2.0 * std::numbers::pi));
}

// One VI run: S samples a step, Adam, `steps` steps; the stepper's own noise (seed 7).
// Returns the parameters through mu / rho; calls `report(step, elbo_estimate)` every `every` steps.
template <class Est, class Base, class Report>
void run_vi(const model& m, std::vector<double>& mu, std::vector<double>& rho, int steps, int every, Report report) {
  constexpr std::size_t S = 8;
  sg::parameters<double> p;
  p.add(mu);
  p.add(rho);
  sg::stepper<Est, Base, sg::no_normalizer, sg::optim::adam<>, double> s(p, {.lr = 0.05}, {.samples = S, .seed = 7});
  const std::size_t d = m.d;
  std::vector<double> z(S * d), eps(S * d), glp(S * d), lp(S);
  const std::array<std::span<const double>, 2> phi{std::span<const double>(mu), std::span<const double>(rho)};
  for (int k = 1; k <= steps; ++k) {
    s.estimator().sample(s, std::span<double>(z));
    s.estimator().noise(s, std::span<double>(eps));
    double elbo = 0.0;
    for (std::size_t n = 0; n < S; ++n) {
      lp[n] = m.log_p(std::span<const double>(z).subspan(n * d, d), std::span<double>(glp).subspan(n * d, d));
      elbo += (lp[n] - sd::diag_gaussian::log_density<double>(phi, std::span<const double>(eps).subspan(n * d, d))) / S;
    }
    if constexpr (std::is_same_v<typename Est::strategy_type, sd::pathwise>) {
      s.step(std::span<const double>(glp));
    } else {
      s.step(std::span<const double>(lp));
    }
    if (k % every == 0) report(k, elbo);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using pathwise_elbo = sd::estimator<sd::diag_gaussian, sd::pathwise, sd::elbo>;
  using score_elbo = sd::estimator<sd::diag_gaussian, sd::score_function, sd::elbo>;
  int failures = 0;

  // ---- Part 1: section 8.3 ----
  model small{{1, -1.0, 1, 0.5, 1, 2.0}, {0, 1, 1}, 2};
  std::vector<double> mu_pw(2, 0.0), rho_pw(2, -1.0), mu_sf(2, 0.0), rho_sf(2, -1.0);
  const double elbo0 = elbo_quadrature(small, mu_pw, rho_pw);
  // The quadrature reproduces section 8.2's exact ELBO at mu = [0.2, 0.5], rho = [-1, -0.7].
  const double check82 = elbo_quadrature(small, std::vector<double>{0.2, 0.5}, std::vector<double>{-1.0, -0.7});
  if (std::abs(check82 + 2.5111192080680533) > 1e-9 * 2.5111192080680533) ++failures;
  run_vi<pathwise_elbo, sg::no_baseline>(small, mu_pw, rho_pw, 500, 500, [](int, double) {});
  run_vi<score_elbo, sg::leave_one_out>(small, mu_sf, rho_sf, 500, 500, [](int, double) {});
  const double elbo_pw = elbo_quadrature(small, mu_pw, rho_pw), elbo_sf = elbo_quadrature(small, mu_sf, rho_sf);
  fmt::print("3-point data: ELBO at the start {:.6f}; after 500 steps: pathwise {:.6f}, score + LOO {:.6f}\n", elbo0,
             elbo_pw, elbo_sf);
  fmt::print("  pathwise q: mu = [{:+.4f}, {:+.4f}], sigma = [{:.4f}, {:.4f}]\n", mu_pw[0], mu_pw[1], std::exp(rho_pw[0]),
             std::exp(rho_pw[1]));
  // Empirical variance of the S = 8 gradient estimates at the initial point, 2000 draws each.
  {
    const std::vector<double> mu0(2, 0.0), rho0(2, -1.0);
    const std::array<std::span<const double>, 2> phi{std::span<const double>(mu0), std::span<const double>(rho0)};
    constexpr std::size_t S = 8, R = 2000;
    std::vector<double> eps(S * 2), z(S * 2), glp(S * 2), lp(S), gm(2), gr(2);
    const std::array<std::span<double>, 2> out{std::span<double>(gm), std::span<double>(gr)};
    double sum[2][4] = {}, sq[2][4] = {};
    for (std::size_t r = 0; r < R; ++r) {
      sd::fill_noise<sg::gaussian>(sd::step_seed(7, r), 2, std::span<double>(eps));
      for (std::size_t n = 0; n < S; ++n) {
        sd::diag_gaussian::sample<double>(phi, std::span<const double>(eps).subspan(2 * n, 2), std::span<double>(z).subspan(2 * n, 2));
        lp[n] = small.log_p(std::span<const double>(z).subspan(2 * n, 2), std::span<double>(glp).subspan(2 * n, 2));
      }
      for (int which = 0; which < 2; ++which) {
        if (which == 0) {
          sd::elbo_pathwise_gradient<double>(phi, eps, glp, out);
        } else {
          sd::elbo_score_gradient<sd::diag_gaussian>(phi, std::span<const double>(eps), std::span<const double>(lp), out,
                                                     sg::leave_one_out{});
        }
        const double v[4] = {gm[0], gm[1], gr[0], gr[1]};
        for (int c = 0; c < 4; ++c) {
          sum[which][c] += v[c];
          sq[which][c] += v[c] * v[c];
        }
      }
    }
    double var[2] = {0.0, 0.0};
    for (int which = 0; which < 2; ++which) {
      for (int c = 0; c < 4; ++c) var[which] += sq[which][c] / R - (sum[which][c] / R) * (sum[which][c] / R);
    }
    fmt::print("  gradient variance at the start (trace, S = 8): score + LOO / pathwise = {:.1f}\n", var[1] / var[0]);
    if (!(var[1] / var[0] > 1.0)) ++failures;
  }
  if (!(elbo_pw > elbo0 && elbo_sf > elbo0)) ++failures;

  // ---- Part 2: breast cancer ----
  namespace sp = sg::problems;
  const std::string data = argc > 1 ? argv[1] : STOCHGRAD_DATA_DIR;
  auto split = sp::standardized_split(sp::load_breast_cancer<double>(data + "/breast_cancer.csv"), 0.2, 1);
  auto with_bias = [](const sp::dataset<double>& ds, model& m) {
    m.d = ds.features + 1;
    for (std::size_t i = 0; i < ds.rows; ++i) {
      m.x.push_back(1.0);
      for (double v : ds.row(i)) m.x.push_back(v);
      m.y.push_back(ds.y[i] == 1 ? 1.0 : 0.0);
    }
  };
  model train, test;
  with_bias(split.train, train);
  with_bias(split.test, test);
  // Posterior predictive accuracy: p(y = 1 | x) = mean over 200 draws of sigmoid(x . w).
  auto accuracy = [&](const std::vector<double>& mu, const std::vector<double>& rho) {
    std::vector<double> eps(200 * test.d);
    sd::fill_noise<sg::gaussian>(99, test.d, std::span<double>(eps));
    std::size_t right = 0;
    for (std::size_t i = 0; i < test.y.size(); ++i) {
      double pr = 0.0;
      for (std::size_t k = 0; k < 200; ++k) {
        double s = 0.0;
        for (std::size_t j = 0; j < test.d; ++j) s += test.x[i * test.d + j] * (mu[j] + std::exp(rho[j]) * eps[k * test.d + j]);
        pr += 1.0 / (1.0 + std::exp(-s)) / 200.0;
      }
      right += (pr > 0.5) == (test.y[i] == 1.0) ? 1 : 0;
    }
    return static_cast<double>(right) / static_cast<double>(test.y.size());
  };
  for (int which = 0; which < 2; ++which) {
    std::vector<double> mu(train.d, 0.0), rho(train.d, -1.0);
    auto report = [&](int k, double e) { fmt::print("    step {:4d}  ELBO estimate {:10.3f}\n", k, e); };
    fmt::print("breast cancer ({} train, {} test, d = {}), {}:\n", train.y.size(), test.y.size(), train.d,
               which == 0 ? "pathwise" : "score function + leave-one-out");
    if (which == 0) {
      run_vi<pathwise_elbo, sg::no_baseline>(train, mu, rho, 600, 200, report);
    } else {
      run_vi<score_elbo, sg::leave_one_out>(train, mu, rho, 600, 200, report);
    }
    const double acc = accuracy(mu, rho);
    fmt::print("    posterior predictive test accuracy {:.3f} (prior mean: {:.3f})\n", acc,
               accuracy(std::vector<double>(train.d, 0.0), std::vector<double>(train.d, -30.0)));
    if (which == 0 && !(acc > 0.9)) ++failures;
  }
  return failures == 0 ? 0 : 1;
}
