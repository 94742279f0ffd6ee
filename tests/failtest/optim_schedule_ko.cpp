// A learning-rate schedule must map a step number to a factor; an int is not a schedule.
// expect: schedule_policy
#include <stochgrad/stochgrad.hpp>
void f() {
  stochgrad::optim::sgd<int> opt;
  (void)opt;
}
