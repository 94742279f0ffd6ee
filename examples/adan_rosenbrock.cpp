// The `adan` preset: Adan (sail-sg semantics) on exact gradients of the 10-d Rosenbrock function.
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <span>
#include <vector>

int main() {
  const stochgrad::problems::rosenbrock<double> f(10);
  std::vector<double> x(f.dimension()), g(f.dimension());
  f.initial_point(x);

  // The preset with a cosine learning-rate schedule swapped in: still one alias of `stepper`.
  using adan_cosine = stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer,
                                         stochgrad::optim::adan<stochgrad::cosine_schedule>, double>;
  adan_cosine step(stochgrad::parameters<double>(std::span<double>(x)),
                   stochgrad::optim::adan<stochgrad::cosine_schedule>({.lr = 0.02}, {.total = 5000}));
  double loss = 0;
  for (int k = 0; k < 5000; ++k) {
    loss = f.value_and_gradient(x, g);
    step.step(std::span<const double>(g));
    if (k % 1000 == 0) fmt::print("step {:5d}  f = {:.6e}\n", k, loss);
  }
  fmt::print("final f = {:.3e} at x[0] = {:.6f} (minimum 0 at all ones)\n", f.value(x), x[0]);
  return f.value(x) < 1e-6 ? 0 : 1;
}
