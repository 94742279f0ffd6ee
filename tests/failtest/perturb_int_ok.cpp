// The same call on float parameters compiles.
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::perturb(std::span<float>(x), 1.0f, stochgrad::noise_key{1, 0, 0});
}
