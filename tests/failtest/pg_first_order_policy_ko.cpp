// A policy declared for first-order steppers only (here an optimizer that assumes exact gradients)
// is rejected by the score-function estimator, whose gradient is a sampled estimate.
// expect: this policy is meant for first-order steppers
#include <stochgrad/stochgrad.hpp>
struct exact_gradient_adam : stochgrad::optim::adam<> {
  static constexpr stochgrad::estimator_family only_for_family = stochgrad::estimator_family::first_order;
};
using S = stochgrad::stepper<stochgrad::score_function<>, stochgrad::group_mean, stochgrad::group_std,
                             exact_gradient_adam, float>;
int f() { return static_cast<int>(sizeof(S)); }
