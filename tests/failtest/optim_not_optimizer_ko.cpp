// A stepper whose fourth policy is not an optimizer is refused with a sentence, not template noise.
// expect: fourth template argument must be an optimizer policy
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
struct not_an_optimizer {
  double lr = 0.1;
};
void f() {
  std::vector<float> x(8);
  stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer, not_an_optimizer, float> s{
      stochgrad::parameters<float>(std::span<float>(x))};
}
