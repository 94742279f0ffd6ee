// A policy-gradient stepper has no objective for run() to call: it needs a step function.
// expect: a policy-gradient stepper has no objective to call
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::grpo<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)stochgrad::run(s, [] { return 1.0; }, {.max_steps = 3});
}
