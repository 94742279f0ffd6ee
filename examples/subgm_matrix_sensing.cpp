// The `subgm` preset: Ma & Fattahi's sub-gradient method (small initialisation, geometric step
// sizes) recovers a rank-2 10 x 10 PSD matrix from 300 l1-loss measurements, 10 % of them gross
// outliers, with the factor over-parameterised (r' = 5); a constant step stalls at O(eta_0).
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <span>
#include <vector>

namespace {

// Relative error ||U U^T - X*||_F / ||X*||_F after `steps` SubGM steps with eta_t = 0.1 rho^t.
double run(const stochgrad::problems::robust_matrix_sensing<double>& prob, double rho, int steps, bool print) {
  std::vector<double> U(prob.dimension()), g(prob.dimension());
  prob.initial_point(U);  // U_0 = 1e-3 B0, B0 ~ N(0, 1/d)
  stochgrad::subgm<double> s(stochgrad::parameters<double>(std::span<double>(U)),
                             stochgrad::optim::sgd<stochgrad::geometric_schedule>({.lr = 0.1}, {.rho = rho}));
  for (int t = 0; t < steps; ++t) {
    const double f = prob.subgradient(U, g);
    if (print && t % 500 == 0) fmt::print("t = {:4d}  f = {:.4f}  relative error = {:.3e}\n", t, f, prob.relative_error(U));
    s.step(std::span<const double>(g));
  }
  return prob.relative_error(U);
}

}  // namespace

int main() {
  const stochgrad::problems::robust_matrix_sensing<double> prob(
      {.d = 10, .rank = 2, .rank_bound = 5, .measurements = 300, .outlier_fraction = 0.1, .outlier_scale = 10.0,
       .seed = 1});
  const double geometric = run(prob, 0.9975, 2000, true);
  const double constant = run(prob, 1.0, 2000, false);
  fmt::print("after 2000 steps: geometric steps {:.3e}, constant step {:.3e}\n", geometric, constant);
  return geometric < 5e-3 && constant > 1e-2 ? 0 : 1;
}
