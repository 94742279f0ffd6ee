// Every schedule policy of schedule.hpp is accepted.
#include <stochgrad/stochgrad.hpp>
void f() {
  stochgrad::optim::sgd<stochgrad::cosine_schedule> a({}, stochgrad::cosine_schedule{.total = 10});
  stochgrad::optim::adam<stochgrad::step_decay> b;
  stochgrad::optim::adan<stochgrad::spall_gain> c;
  stochgrad::optim::adamw<stochgrad::linear_warmup> d;
  (void)a, (void)b, (void)c, (void)d;
}
