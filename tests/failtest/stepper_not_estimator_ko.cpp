// Putting an optimizer where the estimator goes is caught with a sentence, not template noise.
// expect: the first template argument must be an estimator policy
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::stepper<stochgrad::optim::adan<>, stochgrad::no_baseline, stochgrad::no_normalizer, stochgrad::optim::adan<>>
      s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)s;
}
