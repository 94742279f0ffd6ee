// A callback whose hook has the wrong signature (on_step without the run_report) would never be
// called: run() refuses it.
// expect: every callback needs at least one of on_begin
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
struct cb {
  void on_step(const auto&, const auto&) {}
};
void f() {
  std::vector<double> x(8);
  stochgrad::mezo<double> s(x, {.lr = 1e-3});
  (void)stochgrad::run(s, [] { return 1.0; }, {.max_steps = 3}, cb{});
}
