// The `spsa` preset: Spall's simultaneous perturbation with gain sequences a_k = a/(k+1+A)^0.602 and
// c_k = c/(k+1)^0.101, minimising a black-box function whose every measurement is noisy.
#include <stochgrad/stochgrad.hpp>

#include <fmt/format.h>

#include <cmath>
#include <span>
#include <vector>

int main() {
  // A 20-dimensional ill-conditioned quadratic; the caller only sees noisy loss values.
  const std::size_t d = 20;
  auto clean = [&](std::span<const double> x) {
    double f = 0;
    for (std::size_t i = 0; i < d; ++i) f += 0.5 * (0.5 + 1.5 * static_cast<double>(i) / (d - 1)) * x[i] * x[i];
    return f;
  };
  std::uint64_t measurement = 0;
  auto noisy = [&](std::span<const double> x) {  // additive N(0, 0.01^2) measurement noise
    return clean(x) + 0.01 * stochgrad::noise_at<stochgrad::gaussian>({99, 0, 0}, measurement++);
  };

  std::vector<double> x(d, 1.0);
  const double f0 = clean(x);
  stochgrad::spall_spsa<double> spsa(
      stochgrad::parameters<double>(std::span<double>(x)),
      stochgrad::optim::sgd<stochgrad::spall_gain>({.lr = 0.5}, {.A = 200, .alpha = 0.602}),         // a, A, alpha
      stochgrad::zo::two_point<stochgrad::rademacher, stochgrad::zo::spall_perturbation>({.eps = 0.01, .seed = 1},
                                                                                       {.gamma = 0.101}));  // c, gamma
  for (int k = 0; k < 3000; ++k) spsa.step(noisy);
  fmt::print("SPSA, 3000 steps (6000 noisy measurements): f/f0 = {:.4f}\n", clean(x) / f0);
  return clean(x) / f0 < 0.05 ? 0 : 1;
}
