// A zeroth-order estimator's outcomes are losses, not bounded rewards: BNPO's baseline is rejected.
// expect: outcomes are losses at perturbed parameters, not bounded rewards
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::two_point<stochgrad::gaussian>, stochgrad::bnpo_mean,
                             stochgrad::no_normalizer, stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
