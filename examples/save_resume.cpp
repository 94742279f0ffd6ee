// Checkpointing a stepper: save its state mid-run, load it into a fresh stepper over a copy of the
// parameters, and continue. The resumed run is bit-identical to the uninterrupted one.
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <span>
#include <vector>

namespace {
using adan = stochgrad::adan<float>;

void run(adan& s, std::vector<float>& x, const stochgrad::problems::rosenbrock<float>& f, int steps) {
  std::vector<float> g(x.size());
  for (int k = 0; k < steps; ++k) {
    f.value_and_gradient(x, g);
    s.step(std::span<const float>(g));
  }
}
}  // namespace

int main() {
  const stochgrad::problems::rosenbrock<float> f(10);
  const stochgrad::optim::adan<> opt({.lr = 0.01f, .weight_decay = 0.02});

  std::vector<float> a(f.dimension());
  f.initial_point(a);
  adan sa(stochgrad::parameters<float>(std::span<float>(a)), opt);
  run(sa, a, f, 200);

  // Checkpoint: the parameters are the caller's memory, the stepper state goes to a file.
  std::vector<float> b = a;
  const char* path = "stochgrad_checkpoint.bin";
  {
    std::ofstream os(path, std::ios::binary);
    sa.save(os);
  }
  run(sa, a, f, 300);  // the uninterrupted run continues

  adan sb(stochgrad::parameters<float>(std::span<float>(b)), opt);
  {
    std::ifstream is(path, std::ios::binary);
    sb.load(is);
  }
  std::remove(path);
  run(sb, b, f, 300);  // the resumed run

  const bool same = a == b;
  fmt::print("after {} steps: f = {:.6e}; resumed run bit-identical: {}\n", sb.steps(), f.value(b), same);
  return same ? 0 : 1;
}
