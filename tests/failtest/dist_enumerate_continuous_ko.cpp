// Enumeration needs a finite support: a Gaussian has none.
// expect: enumerate needs a finite support
#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<double> mu(4), rho(4);
  stochgrad::parameters<double> p;
  p.add(mu);
  p.add(rho);
  stochgrad::stepper<stochgrad::dist::estimator<stochgrad::dist::diag_gaussian, stochgrad::dist::enumerate>,
                     stochgrad::no_baseline, stochgrad::no_normalizer, stochgrad::optim::adam<>, double>
      s{p};
  (void)s;
}
