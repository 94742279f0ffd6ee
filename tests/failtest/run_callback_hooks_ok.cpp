// A callback's on_step takes the stepper, the step's report and the run so far (partner of
// run_callback_hooks_ko.cpp).
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
struct cb {
  void on_step(const auto&, const auto&, const stochgrad::run_report&) {}
};
void f() {
  std::vector<double> x(8);
  stochgrad::mezo<double> s(x, {.lr = 1e-3});
  (void)stochgrad::run(s, [] { return 1.0; }, {.max_steps = 3}, cb{});
}
