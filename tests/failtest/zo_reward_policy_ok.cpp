// Antithetic evolution strategies: Gaussian pairs shaped by the group mean and std compile
// (partner of zo_reward_policy_ko.cpp).
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::two_point<stochgrad::gaussian>, stochgrad::group_mean,
                             stochgrad::group_std, stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
