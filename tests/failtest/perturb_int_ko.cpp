// Perturbing integer parameters is rejected by the real_scalar concept.
// expect: real_scalar
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<int> x(8);
  stochgrad::perturb(std::span<int>(x), 1, stochgrad::noise_key{1, 0, 0});
}
