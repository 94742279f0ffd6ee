// A float optimizer state cannot update double parameters: a readable static_assert says so.
// expect: optimizer state does not belong to these parameters
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> xf(8);
  std::vector<double> xd(8), g(8);
  stochgrad::parameters<float> pf{std::span<float>(xf)};
  stochgrad::parameters<double> pd{std::span<double>(xd)};
  const stochgrad::optim::adan<> opt;
  auto state = opt.init(pf);  // float state
  opt.update(pd, state, stochgrad::dense_gradient<double>(std::span<const double>(g)), stochgrad::step_context{});
}
