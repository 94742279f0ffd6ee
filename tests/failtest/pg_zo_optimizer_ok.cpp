// GRPO advantages with plain SGD compile (partner of pg_zo_optimizer_ko.cpp).
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::score_function<>, stochgrad::group_mean, stochgrad::group_std,
                             stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
