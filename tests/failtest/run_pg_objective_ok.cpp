// A policy-gradient stepper runs with a step function and a monitor (partner of run_pg_objective_ko.cpp).
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::grpo<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)stochgrad::run(s, [](stochgrad::grpo<float>&) {}, [] { return 1.0; }, {.max_steps = 3});
}
