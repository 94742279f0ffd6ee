// A ready-made gradient goes through stepper.apply (partner of pg_gradient_step_ko.cpp).
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8), g(8);
  stochgrad::grpo<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  s.apply(stochgrad::dense_gradient<float>(std::span<const float>(g)));
}
