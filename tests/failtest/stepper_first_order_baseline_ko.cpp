// A first-order stepper with a group-mean baseline makes no sense (there are no outcomes).
// expect: first_order takes the caller's gradient, which has no outcomes to subtract a baseline from
#include <stochgrad/stochgrad.hpp>
#include <vector>
void f() {
  std::vector<float> x(8);
  stochgrad::stepper<stochgrad::first_order, stochgrad::group_mean, stochgrad::no_normalizer, stochgrad::optim::adan<>>
      s{stochgrad::parameters<float>(std::span<float>(x))};
  (void)s;
}
