// Partner of optim_mfac_fused_source_ko.cpp: the same zeroth-order stepper with SGD compiles.
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<double> x(4, 0.5);
  stochgrad::stepper<stochgrad::zo::two_point<stochgrad::gaussian>, stochgrad::no_baseline, stochgrad::no_normalizer,
                     stochgrad::optim::sgd<>, double>
      s(x, stochgrad::optim::sgd<>({.lr = 0.1}), stochgrad::zo::two_point<stochgrad::gaussian>({.eps = 1e-3}));
  s.step([](std::span<const double> v) { return v[0] * v[0]; });
}
