// An objective must be callable at the current parameters and return a loss.
// expect: the objective must be callable as f\(\), f\(const stochgrad::parameters<T>&\) or
#include <stochgrad/stochgrad.hpp>
#include <span>
void f(std::span<float> x) {
  stochgrad::mezo<float> s{stochgrad::parameters<float>(x)};
  s.step([](int) { return 0.0; });
}
