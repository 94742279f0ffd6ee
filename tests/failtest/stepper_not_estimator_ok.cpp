// The adan preset (first_order estimator) compiles.
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::adan<float> s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)s;
}
