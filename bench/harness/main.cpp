// SPDX-License-Identifier: Apache-2.0
// stochgrad shoot-out harness (main job). This first version prints the kernel throughput table;
// the estimator shoot-out grows here as steppers land.
#include <stochgrad/stochgrad.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace {

double best_ns_per_elem(std::size_t n, int reps, const std::function<void()>& fn) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 10'000'000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      fmt::print("usage: shootout [--quick] [--n N]\n  Prints stochgrad's kernel throughput table.\n");
      return 0;
    } else if (!std::strcmp(argv[i], "--quick")) {
      n = 10'000'000;
    } else if (!std::strcmp(argv[i], "--n") && i + 1 < argc) {
      n = std::strtoull(argv[++i], nullptr, 10);
    } else {
      fmt::print(stderr, "shootout: unknown option '{}' (try --help)\n", argv[i]);
      return 2;
    }
  }
  std::vector<float> a(n, 1.0f), b(n, 2.0f);
  std::span<float> x(a);
  const stochgrad::noise_key key{42, 0, 0};
  fmt::print("stochgrad {} kernel throughput, N = {}, float32, 1 thread, SIMD {}\n", stochgrad::version_string, n,
             stochgrad::simd::arch_name());
  const double inplace = best_ns_per_elem(n, 5, [&] { stochgrad::scale(x, 1.0000001f); });
  const double gauss = best_ns_per_elem(n, 5, [&] { stochgrad::perturb<stochgrad::gaussian>(x, 1e-3f, key); });
  const double radem = best_ns_per_elem(n, 5, [&] { stochgrad::perturb<stochgrad::rademacher>(x, 1e-3f, key); });
  volatile double sink = 0;
  const double sum = best_ns_per_elem(n, 5, [&] { sink = sink + stochgrad::sum<float>(x); });
  fmt::print("{:<34}{:>10}{:>16}\n", "kernel", "ns/elem", "x in-place");
  fmt::print("{:<34}{:>10.3f}{:>16.2f}\n", "in-place scale (reference)", inplace, 1.0);
  fmt::print("{:<34}{:>10.3f}{:>16.2f}\n", "perturb gaussian (philox-10)", gauss, gauss / inplace);
  fmt::print("{:<34}{:>10.3f}{:>16.2f}\n", "perturb rademacher", radem, radem / inplace);
  fmt::print("{:<34}{:>10.3f}{:>16.2f}\n", "sum", sum, sum / inplace);
  return 0;
}
