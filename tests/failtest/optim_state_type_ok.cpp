// The state made for the same (double) parameters is accepted.
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<double> xd(8), g(8);
  stochgrad::parameters<double> pd{std::span<double>(xd)};
  const stochgrad::optim::adan<> opt;
  auto state = opt.init(pd);
  opt.update(pd, state, stochgrad::dense_gradient<double>(std::span<const double>(g)), stochgrad::step_context{});
}
