// The same stepper with no_baseline (the `adan` preset) compiles.
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer, stochgrad::optim::adan<>>
      s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)s;
}
