// A pathwise distribution estimator with a leave-one-out baseline makes no sense (no outcomes).
// expect: pathwise, enumerate and mvd gradients have no outcomes to subtract a baseline from
#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<double> mu(4), rho(4);
  stochgrad::parameters<double> p;
  p.add(mu);
  p.add(rho);
  stochgrad::stepper<stochgrad::dist::estimator<stochgrad::dist::diag_gaussian, stochgrad::dist::pathwise>,
                     stochgrad::leave_one_out, stochgrad::no_normalizer, stochgrad::optim::adam<>, double>
      s{p};
  (void)s;
}
