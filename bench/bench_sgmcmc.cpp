// SPDX-License-Identifier: Apache-2.0
// SG-MCMC sampler step throughput, float32, next to the fused Adam step at equal N (one run, so
// ratios are comparable):
//   - BM_adam_fused: optim::adam's one-pass kernel (28 bytes/element);
//   - BM_sgld: theta - h g + sqrt(2 T h) xi, xi regenerated in registers (12 B/elem + one Gaussian);
//   - BM_psgld: RMSprop-preconditioned SGLD (20 B/elem + one Gaussian, two sqrt and a division);
//   - BM_sghmc: momentum v and theta (20 B/elem + one Gaussian).
// Arguments are {N, threads}: N = 4096 is the smoke configuration (`--benchmark_filter=/4096`),
// 1e7 and 1e8 (capped by STOCHGRAD_BENCH_MAX_N). Counters: bytes_per_second (bytes read + written
// per element, as listed), items_per_second, ns/elem.
#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace sg = stochgrad;
namespace opt = stochgrad::optim;

namespace {

// x = 1 and two alternating gradients 0.1 z (nonzero differences, no denormal drift).
struct arrays {
  std::vector<float> x, g, g2;
};

arrays& arrays_for(std::size_t n) {
  static arrays A;
  for (auto* v : {&A.x, &A.g, &A.g2}) v->resize(n);
  std::fill(A.x.begin(), A.x.end(), 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    A.g[i] = 0.1f * sg::noise_at<sg::gaussian>(sg::noise_key{42, 0, 0}, i);
    A.g2[i] = 0.1f * sg::noise_at<sg::gaussian>(sg::noise_key{43, 0, 0}, i);
  }
  return A;
}

sg::executor exec_for(std::int64_t threads) {
  static sg::thread_pool pool2(2);
  return threads == 2 ? sg::executor(pool2) : sg::executor();
}

void finish(benchmark::State& st, std::size_t n, double bytes_per_elem) {
  const auto items = static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n);
  st.SetItemsProcessed(items);
  st.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(items) * bytes_per_elem));
  st.counters["ns/elem"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate |
                                                                          benchmark::Counter::kInvert);
}

template <class Opt>
void run(benchmark::State& st, const Opt& o, double bytes_per_elem) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  sg::parameters<float> p{std::span<float>(A.x)};
  auto s = o.init(p);
  const sg::dense_gradient<float> g1{std::span<const float>(A.g)}, g2{std::span<const float>(A.g2)};
  sg::step_context ctx;
  ctx.ex = exec_for(st.range(1));
  for (auto _ : st) {
    o.update(p, s, (ctx.step & 1) ? g2 : g1, ctx);
    ++ctx.step;
    benchmark::ClobberMemory();
  }
  finish(st, n, bytes_per_elem);
}

void BM_adam_fused(benchmark::State& st) { run(st, opt::adam<>(opt::adam_options{.lr = 1e-4}), 28); }
void BM_sgld(benchmark::State& st) { run(st, opt::sgld<>(opt::sgld_options{.lr = 1e-6}), 12); }
void BM_psgld(benchmark::State& st) { run(st, opt::psgld<>(opt::psgld_options{.lr = 1e-6}), 20); }
void BM_sghmc(benchmark::State& st) { run(st, opt::sghmc<>(opt::sghmc_options{.lr = 1e-6}), 20); }

std::int64_t max_n() {
  const char* v = std::getenv("STOCHGRAD_BENCH_MAX_N");
  return v ? std::atoll(v) : std::int64_t{100'000'000};
}

void threaded_args(benchmark::internal::Benchmark* b) {
  b->Args({4096, 1});
  for (const std::int64_t n : {std::int64_t{10'000'000}, std::int64_t{100'000'000}}) {
    if (n > max_n()) continue;
    for (const std::int64_t t : {1, 2}) b->Args({n, t});
  }
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_adam_fused)->Apply(threaded_args);
BENCHMARK(BM_sgld)->Apply(threaded_args);
BENCHMARK(BM_psgld)->Apply(threaded_args);
BENCHMARK(BM_sghmc)->Apply(threaded_args);

BENCHMARK_MAIN();
