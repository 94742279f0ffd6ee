// Uniform (0, 1) entries have mean 1/2: not a perturbation direction.
// expect: uniform \(0, 1\) noise is not a perturbation direction
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::two_point<stochgrad::uniform>, stochgrad::no_baseline,
                             stochgrad::no_normalizer, stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
