// SPDX-License-Identifier: Apache-2.0
// Second-order zeroth-order steps (issue 15) beside the plain fused first-order steps, float32,
// one thread, objective a no-op returning a constant (so only the passes are timed), same run:
//   - MeZO fused step (3 passes: +eps, -2 eps, restore+update) and SPSA fused step (Rademacher),
//   - HiZOO step (3 evaluations; +eps sqrt(H) z, -2 eps sqrt(H) z, then restore + H + update:
//     3 passes, reading and writing the extra buffer H in each),
//   - diagonal 2SPSA step (4 evaluations: 4 perturbation passes with one or two directions, the
//     feedback reduction S, then restore + Hbar + update).
// Arguments {N}: 4096 is the CTest smoke size (--benchmark_filter=/4096); 1e6 the size.
// Counter ns/elem is per step.
#include <stochgrad/stochgrad.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sg = stochgrad;

namespace {

double noop_objective() { return 1.0; }

std::vector<float> fresh(std::size_t n) {
  std::vector<float> b(n);
  sg::generate<sg::gaussian>(std::span<float>(b), sg::noise_key{7, 0, 0});
  return b;
}

void finish(benchmark::State& st, std::size_t n) {
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n));
  st.counters["ns/elem"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

template <class S>
void run(benchmark::State& st, S& s, std::size_t n) {
  s.step(noop_objective);
  for (auto _ : st) {
    s.step(noop_objective);
    benchmark::ClobberMemory();
  }
  finish(st, n);
}

void BM_mezo_step_fused(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::vector<float> x = fresh(n);
  sg::mezo<float> s(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<>({.lr = 1e-9}),
                    sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 1}));
  run(st, s, n);
}

void BM_spsa_step_fused(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::vector<float> x = fresh(n);
  sg::spall_spsa<float> s(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<sg::spall_gain>({.lr = 1e-9}, {10.0, 0.602}),
                    sg::zo::two_point<sg::rademacher, sg::zo::spall_perturbation>({.eps = 1e-3, .seed = 1}));
  run(st, s, n);
}

void BM_hizoo_step(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::vector<float> x = fresh(n);
  sg::hizoo<float> s(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<>({.lr = 1e-9}),
                     sg::zo::hizoo<>({.eps = 1e-3, .smooth = 1e-8, .seed = 1}));
  run(st, s, n);
}

template <bool Feedback>
void BM_spsa2_diag_step(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::vector<float> x = fresh(n);
  sg::spsa2<float> s(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<sg::spall_gain>({.lr = 1e-9}, {10.0, 0.602}),
                     sg::zo::spsa2<>({.eps = 1e-3, .delta = 1.0, .feedback = Feedback, .seed = 1}));
  run(st, s, n);
}

void args(benchmark::internal::Benchmark* b) {
  b->Arg(4096)->Arg(1000000);
  b->UseRealTime();
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_mezo_step_fused)->Apply(args);
BENCHMARK(BM_spsa_step_fused)->Apply(args);
BENCHMARK(BM_hizoo_step)->Apply(args);
BENCHMARK(BM_spsa2_diag_step<false>)->Apply(args);
BENCHMARK(BM_spsa2_diag_step<true>)->Apply(args);

BENCHMARK_MAIN();
