// BlackVIP's segmented uniform (inverse form) is a valid SPSA direction (partner of
// zo_uniform_direction_ko.cpp).
#include <stochgrad/stochgrad.hpp>
using S = stochgrad::stepper<stochgrad::zo::two_point<stochgrad::segmented_uniform>, stochgrad::no_baseline,
                             stochgrad::no_normalizer, stochgrad::optim::sgd<>, float>;
int f() { return static_cast<int>(sizeof(S)); }
