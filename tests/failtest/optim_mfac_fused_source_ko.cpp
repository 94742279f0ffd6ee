// M-FAC needs the whole gradient before any parameter moves, so it cannot take a zeroth-order
// estimator's fused source (restore + next perturbation in the same pass): refused at compile time.
// expect: optim::mfac needs the whole gradient before any parameter moves
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<double> x(4, 0.5);
  stochgrad::stepper<stochgrad::zo::two_point<stochgrad::gaussian>, stochgrad::no_baseline, stochgrad::no_normalizer,
                     stochgrad::optim::mfac<>, double>
      s(x, stochgrad::optim::mfac<>({.lr = 0.1, .ngrads = 2}), stochgrad::zo::two_point<stochgrad::gaussian>({.eps = 1e-3}));
  s.step([](std::span<const double> v) { return v[0] * v[0]; });
}
