// The finite-support partner of dist_enumerate_continuous_ko: a categorical is enumerated.
#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<double> l(4);
  stochgrad::stepper<stochgrad::dist::estimator<stochgrad::dist::categorical_logits, stochgrad::dist::enumerate>,
                     stochgrad::no_baseline, stochgrad::no_normalizer, stochgrad::optim::adam<>, double>
      s{stochgrad::parameters<double>(l)};
  (void)s;
}
