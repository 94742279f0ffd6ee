// SPDX-License-Identifier: Apache-2.0
// Zeroth-order step overhead (PERFORMANCE.md goal 3): everything a MeZO step costs except the
// objective (the objective here is a no-op returning a constant), per parameter, float32,
// beside in-binary references so that ratios come from one run:
//   - in-place scale `a *= s` (what one read+write pass over memory costs),
//   - one seeded Gaussian perturbation pass (the library kernel `perturb`),
//   - the MeZO reference recipe as stochgrad runs it: 4 passes (+eps, -2 eps, +eps, update),
//   - the fused step (3 passes: +eps, -2 eps, restore+update),
//   - the steady-state fused_next step (2 passes: -2 eps, restore+update+next +eps),
//   - SPSA (Rademacher directions) fused_next, and MeZO directions into Adam (lazy source).
// Arguments are {N, threads}; N = 4096 is the CTest smoke configuration (--benchmark_filter=/4096),
// 1e7 is cache resident on the build machine, 1e8 is main memory. Counters: ns/elem (per step),
// passes (sweeps over the parameters per step), Gauss/elem (Gaussian variates generated per
// parameter per step).
//
// Memory driver for the peak-RSS measurement: `bench_zo --mezo-driver=N,steps[,mode]` allocates N
// float parameters, runs `steps` MeZO steps (mode reference|fused|fused_next, default
// fused_next) with a no-op objective and prints the time per step; run it under
// `/usr/bin/time -v` to see that the maximum resident set is the parameters plus O(1).
#include <stochgrad/stochgrad.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace sg = stochgrad;

namespace {

std::vector<float>& buffer(std::size_t n) {
  static std::vector<float> b;
  if (b.size() < n) {
    b.clear();
    b.shrink_to_fit();
    b.resize(n);
    sg::generate<sg::gaussian>(std::span<float>(b), sg::noise_key{7, 0, 0});
  }
  return b;
}

sg::executor exec_for(int threads) {
  static sg::thread_pool pool2(2);
  return threads == 2 ? sg::executor(pool2) : sg::executor();
}

void finish(benchmark::State& st, std::size_t n, double passes, double gaussians) {
  const auto items = static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n);
  st.SetItemsProcessed(items);
  st.counters["ns/elem"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.counters["passes"] = passes;
  st.counters["Gauss/elem"] = gaussians;
}

double noop_objective() { return 1.0; }

void BM_ref_inplace_scale(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int th = static_cast<int>(st.range(1));
  float* a = buffer(n).data();
  float s = 1.0000001f;
  const sg::executor ex = exec_for(th);
  for (auto _ : st) {
    const auto parts = static_cast<std::size_t>(th);
    ex.run(parts, [&](std::size_t p) {
      for (std::size_t i = p * n / parts, e = (p + 1) * n / parts; i < e; ++i) a[i] *= s;
    });
    s = 1.0f / s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 1, 0);
}

void BM_perturb_gaussian(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::span<float> x(buffer(n).data(), n);
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  float s = 1e-3f;
  for (auto _ : st) {
    sg::perturb<sg::gaussian>(x, s, sg::noise_key{1, 0, 0}, 0, ex);
    s = -s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 1, 1);
}

template <sg::zo::pass_mode Mode>
void BM_mezo_step(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::span<float> x(buffer(n).data(), n);
  sg::mezo<float> s(sg::parameters<float>(x), sg::optim::sgd<>({.lr = 1e-9, .weight_decay = 0.0}),
                    sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 1, .mode = Mode}), {}, {},
                    exec_for(static_cast<int>(st.range(1))));
  s.step(noop_objective);  // fused_next: the steady state starts with a pending perturbation
  for (auto _ : st) {
    s.step(noop_objective);
    benchmark::ClobberMemory();
  }
  sg::zo::settle(s);
  const bool ref = Mode == sg::zo::pass_mode::reference, next = Mode == sg::zo::pass_mode::fused_next;
  finish(st, n, ref ? 4 : next ? 2 : 3, ref ? 4 : 3);
}

void BM_spsa_step_fused_next(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::span<float> x(buffer(n).data(), n);
  sg::spall_spsa<float> s(sg::parameters<float>(x), sg::optim::sgd<sg::spall_gain>({.lr = 1e-9}, sg::spall_gain{10, 0.602}),
                    sg::zo::two_point<sg::rademacher, sg::zo::spall_perturbation>(
                        {.eps = 1e-3, .seed = 2, .mode = sg::zo::pass_mode::fused_next}),
                    {}, {}, exec_for(static_cast<int>(st.range(1))));
  s.step(noop_objective);
  for (auto _ : st) {
    s.step(noop_objective);
    benchmark::ClobberMemory();
  }
  sg::zo::settle(s);
  finish(st, n, 2, 0);
}

void BM_mezo_adam_step_fused_next(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::span<float> x(buffer(n).data(), n);
  sg::stepper<sg::zo::two_point<sg::gaussian>, sg::no_baseline, sg::no_normalizer, sg::optim::adam<>, float> s(
      sg::parameters<float>(x), sg::optim::adam<>({.lr = 1e-9}),
      sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 3, .mode = sg::zo::pass_mode::fused_next}), {}, {},
      exec_for(static_cast<int>(st.range(1))));
  s.step(noop_objective);
  for (auto _ : st) {
    s.step(noop_objective);
    benchmark::ClobberMemory();
  }
  sg::zo::settle(s);
  finish(st, n, 2, 3);
}

void args(benchmark::internal::Benchmark* b) {
  b->Args({4096, 1});
  const char* cap = std::getenv("STOCHGRAD_BENCH_MAX_N");
  const std::int64_t max_n = cap != nullptr ? std::atoll(cap) : 100000000;
  for (std::int64_t n : {10000000LL, 100000000LL}) {
    if (n > max_n) continue;
    b->Args({n, 1});
    b->Args({n, 2});
  }
  b->UseRealTime();
  b->Unit(benchmark::kMillisecond);
}

// Runs the memory driver; returns the process exit status.
int mezo_driver(const char* spec) {
  std::size_t n = 0;
  int steps = 0;
  char mode[32] = "fused_next";
  if (std::sscanf(spec, "%zu,%d,%31s", &n, &steps, mode) < 2 || n == 0 || steps < 1) {
    std::fprintf(stderr, "usage: bench_zo --mezo-driver=N,steps[,reference|fused|fused_next]\n");
    return 2;
  }
  const std::string m(mode);
  const sg::zo::pass_mode pm = m == "reference" ? sg::zo::pass_mode::reference
                               : m == "fused"   ? sg::zo::pass_mode::fused
                                                : sg::zo::pass_mode::fused_next;
  std::vector<float> x(n);
  sg::generate<sg::gaussian>(std::span<float>(x), sg::noise_key{9, 0, 0});
  sg::mezo<float> s(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<>({.lr = 1e-9}),
                    sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 1, .mode = pm}));
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < steps; ++k) s.step(noop_objective);
  sg::zo::settle(s);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("mezo driver: N = %zu float parameters (%.1f MiB), %d steps (%s), %.3f ns/elem/step, x[0] = %g\n", n,
              static_cast<double>(n) * 4.0 / 1048576.0, steps, m.c_str(),
              sec * 1e9 / (static_cast<double>(n) * steps), static_cast<double>(x[0]));
  return 0;
}

}  // namespace

BENCHMARK(BM_ref_inplace_scale)->Apply(args);
BENCHMARK(BM_perturb_gaussian)->Apply(args);
BENCHMARK(BM_mezo_step<sg::zo::pass_mode::reference>)->Apply(args);
BENCHMARK(BM_mezo_step<sg::zo::pass_mode::fused>)->Apply(args);
BENCHMARK(BM_mezo_step<sg::zo::pass_mode::fused_next>)->Apply(args);
BENCHMARK(BM_spsa_step_fused_next)->Apply(args);
BENCHMARK(BM_mezo_adam_step_fused_next)->Apply(args);

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mezo-driver=", 14) == 0) return mezo_driver(argv[i] + 14);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
