// A downstream program: perturbs a buffer with seeded Gaussian noise and restores it.
#include <stochgrad/stochgrad.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  std::vector<float> theta(1000, 1.0f);
  const stochgrad::noise_key key{42, 0, 0};
  stochgrad::perturb(std::span<float>(theta), 1e-3f, key);
  stochgrad::perturb(std::span<float>(theta), -1e-3f, key);
  double err = 0;
  for (float v : theta) err += (v - 1.0f) * (v - 1.0f);
  std::printf("stochgrad %s: restore error %g\n", stochgrad::version_string, err);
  return err < 1e-9 ? 0 : 1;
}
