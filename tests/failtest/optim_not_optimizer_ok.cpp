// The same stepper with an optimizer policy compiles.
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8), g(8);
  stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer,
                     stochgrad::optim::adan<>, float>
      s{stochgrad::parameters<float>(std::span<float>(x))};
  s.step(std::span<const float>(g));
}
