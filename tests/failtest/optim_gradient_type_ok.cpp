// Float parameters with a float gradient (dense or lazy) are accepted.
#include <stochgrad/stochgrad.hpp>
#include <span>
#include <vector>
void f() {
  std::vector<float> x(8), g(8);
  stochgrad::parameters<float> p{std::span<float>(x)};
  const stochgrad::optim::adam<> opt;
  auto state = opt.init(p);
  opt.update(p, state, stochgrad::dense_gradient<float>(std::span<const float>(g)), stochgrad::step_context{});
  opt.update(p, state, stochgrad::noise_gradient<stochgrad::gaussian, stochgrad::default_generator, float>(1, 0, 0.5),
             stochgrad::step_context{});
}
