// Objectives f(), f(params), f(span) returning a number (partner of zo_objective_ko.cpp).
#include <stochgrad/stochgrad.hpp>
#include <span>
void f(std::span<float> x) {
  stochgrad::mezo<float> s{stochgrad::parameters<float>(x)};
  s.step([] { return 0.0; });
  s.step([](const stochgrad::parameters<float>&) { return 0.0f; });
  s.step([](std::span<const float>) { return stochgrad::zo::evaluation{0.0, true}; });
}
