// The vector-Jacobian callback receives spans (coefficients, gradient buffer), not vectors.
// expect: the vector-Jacobian callback must be callable as
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8), lp(8), r(4);
  stochgrad::grpo<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  const auto layout = stochgrad::group_layout::contiguous(2, 2);
  s.step(stochgrad::pg_batch<float>{.rewards = r, .length = 2, .logp = lp}, layout,
         [](const std::vector<float>&, std::vector<float>&) {});
}
