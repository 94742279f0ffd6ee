// A policy-gradient stepper with the zeroth-order GC-SPSA momentum (its weight counts the random
// directions averaged into a finite-difference estimate) makes no sense.
// expect: this optimizer is a zeroth-order policy
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::score_function<>, stochgrad::group_mean, stochgrad::group_std,
                             stochgrad::zo::gc_spsa_sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
