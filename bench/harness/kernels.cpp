// SPDX-License-Identifier: Apache-2.0
// The `--kernels` section: throughput of the streaming kernels against an in-place scale pass
// (the memory-bandwidth reference), at 1 thread and, with --threads N > 1, at N threads.
#include <stochgrad/bits/config.hpp>
#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/kernels/reduce.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/version.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <span>
#include <vector>

namespace harness {
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

struct kernel_times {
  double inplace, gauss, radem, sum;
};

kernel_times measure(std::span<float> x, const stochgrad::executor& ex) {
  const std::size_t n = x.size();
  const stochgrad::noise_key key{42, 0, 0};
  kernel_times t{};
  t.inplace = best_ns_per_elem(n, 5, [&] { stochgrad::scale(x, 1.0000001f, ex); });
  t.gauss = best_ns_per_elem(n, 5, [&] { stochgrad::perturb<stochgrad::gaussian>(x, 1e-3f, key, 0, ex); });
  t.radem = best_ns_per_elem(n, 5, [&] { stochgrad::perturb<stochgrad::rademacher>(x, 1e-3f, key, 0, ex); });
  volatile double sink = 0;
  t.sum = best_ns_per_elem(n, 5, [&] { sink = sink + stochgrad::sum<float>(x, ex); });
  return t;
}

}  // namespace

void run_kernel_table(std::size_t n, unsigned threads) {
  std::vector<float> a(n, 1.0f);
  std::span<float> x(a);
  fmt::print("stochgrad {} kernel throughput, N = {}, float32, SIMD {}\n", stochgrad::version_string, n,
             stochgrad::simd::arch_name());
  const kernel_times one = measure(x, {});
  kernel_times many{};
  if (threads > 1) {
    stochgrad::thread_pool pool(threads);
    many = measure(x, stochgrad::executor(pool));
    fmt::print("{:<34}{:>10}{:>16}{:>16}\n", "kernel", "ns/elem", "x in-place", fmt::format("ns/elem {}thr", threads));
  } else {
    fmt::print("{:<34}{:>10}{:>16}\n", "kernel", "ns/elem", "x in-place");
  }
  auto row = [&](const char* name, double t1, double tn) {
    if (threads > 1) {
      fmt::print("{:<34}{:>10.3f}{:>16.2f}{:>16.3f}\n", name, t1, t1 / one.inplace, tn);
    } else {
      fmt::print("{:<34}{:>10.3f}{:>16.2f}\n", name, t1, t1 / one.inplace);
    }
  };
  row("in-place scale (reference)", one.inplace, many.inplace);
  row("perturb gaussian (philox-10)", one.gauss, many.gauss);
  row("perturb rademacher", one.radem, many.radem);
  row("sum", one.sum, many.sum);
}

}  // namespace harness
