// A double gradient for float parameters is not a gradient source of the parameters' type.
// expect: gradient must be a gradient source of the parameters' element type
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8);
  std::vector<double> g(8);
  stochgrad::parameters<float> p{std::span<float>(x)};
  const stochgrad::optim::adam<> opt;
  auto state = opt.init(p);
  opt.update(p, state, stochgrad::dense_gradient<double>(std::span<const double>(g)), stochgrad::step_context{});
}
