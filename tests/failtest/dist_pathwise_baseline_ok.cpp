// The score-function partner of dist_pathwise_baseline_ko: leave_one_out is accepted.
#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<double> mu(4), rho(4);
  stochgrad::parameters<double> p;
  p.add(mu);
  p.add(rho);
  stochgrad::stepper<stochgrad::dist::estimator<stochgrad::dist::diag_gaussian, stochgrad::dist::score_function>,
                     stochgrad::leave_one_out, stochgrad::no_normalizer, stochgrad::optim::adam<>, double>
      s{p};
  (void)s;
}
