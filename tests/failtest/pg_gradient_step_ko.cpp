// A policy-gradient stepper is stepped with a generation batch, not with a ready-made gradient.
// expect: a policy-gradient step takes \(pg_batch
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8), g(8);
  stochgrad::grpo<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  s.step(std::span<const float>(g));
}
