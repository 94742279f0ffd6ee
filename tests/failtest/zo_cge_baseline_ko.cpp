// CGE differences each coordinate's own pair of evaluations: a shared baseline is rejected.
// expect: coordinate_wise \(CGE\) differences each coordinate's own pair of evaluations
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::coordinate_wise, stochgrad::group_mean, stochgrad::no_normalizer,
                             stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
