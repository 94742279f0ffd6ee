// The same first-order-only optimizer is fine in a first_order stepper (partner of
// pg_first_order_policy_ko.cpp).
#include <stochgrad/stochgrad.hpp>
struct exact_gradient_adam : stochgrad::optim::adam<> {
  static constexpr stochgrad::estimator_family only_for_family = stochgrad::estimator_family::first_order;
};
using S = stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer,
                             exact_gradient_adam, float>;
int f() { return static_cast<int>(sizeof(S)); }
