// CGE with no baseline and no normalizer compiles (partner of zo_cge_baseline_ko.cpp).
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::coordinate_wise, stochgrad::no_baseline, stochgrad::no_normalizer,
                             stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
