// SPDX-License-Identifier: Apache-2.0
// Optimizer step throughput (PERFORMANCE.md goals 4, 5 and 7), float32, next to in-binary
// references so that ratios come from one run:
//   - BM_ref_inplace_scale: `a *= s` (8 bytes/element), the in-place bandwidth reference;
//   - BM_{adam,adamw,adan,sgd_momentum}_fused: stochgrad's one-pass kernels (28, 28, 44, 20 B/elem);
//   - BM_adan_lazy_mezo: Adan fed a MeZO direction `scale * z(seed)` regenerated in registers
//     (no gradient buffer: 40 B/elem + one Gaussian regeneration); BM_regen_gaussian is that
//     regeneration alone (written to a buffer), for the "dense Adan + one regeneration" reference;
//   - BM_{adam,adan}_scalar: the plain per-element loop a user would write (-O3, no -ffast-math:
//     std::sqrt sets errno, so GCC does not vectorise it);
//   - BM_{adam,adan}_eigen: Eigen array expressions (one loop per statement).
// Arguments are {N, threads}: N = 4096 is the smoke configuration (`--benchmark_filter=/4096`),
// 1e7 (40 MB per array: cache resident on the build machine) and 1e8 (main memory). Counters:
// bytes_per_second (bytes read + written per element, as listed), items_per_second, ns/elem
// (printed with an SI prefix: "1.02n" = 1.02 ns). STOCHGRAD_BENCH_MAX_N caps N.
//
// Arrays are shared by all benchmarks (seven float arrays of the largest N: 2.8 GB at 1e8) and the
// optimizer states are assembled from them (a state is a plain aggregate), so no benchmark
// allocates its own copy.
#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <utility>
#include <vector>

namespace sg = stochgrad;
namespace opt = stochgrad::optim;

namespace {

// ---------------------------------------------------------------------------------------------
// Shared arrays: x (parameters), g (gradient), and four state arrays.

struct arrays {
  std::vector<float> x, g, g2, a, b, c, d;
  // The gradient of iteration k: g and g2 alternate, so that gradient differences are not 0 (with a
  // constant gradient Adan's v decays geometrically into denormals and the step becomes a
  // denormal-arithmetic benchmark).
  const std::vector<float>& grad(std::uint64_t k) const { return (k & 1) ? g2 : g; }
};

// Sizes every array to n (no reallocation once the largest n was seen) and resets the contents:
// x = 1, g and g2 = 0.1 z (two Gaussian vectors), state arrays 0.
arrays& arrays_for(std::size_t n) {
  static arrays A;
  for (auto* v : {&A.x, &A.g, &A.g2, &A.a, &A.b, &A.c, &A.d}) {
    v->resize(n);
    std::fill(v->begin(), v->end(), 0.0f);
  }
  std::fill(A.x.begin(), A.x.end(), 1.0f);
  sg::generate<sg::gaussian>(std::span<float>(A.g), sg::noise_key{42, 0, 0});
  sg::scale(std::span<float>(A.g), 0.1f);
  sg::generate<sg::gaussian>(std::span<float>(A.g2), sg::noise_key{43, 0, 0});
  sg::scale(std::span<float>(A.g2), 0.1f);
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

// Moves shared arrays into a one-tensor state (and back when done).
void lend(std::vector<float>& from, std::vector<std::vector<float>>& to) {
  to.resize(1);
  to[0].swap(from);
}

// ---------------------------------------------------------------------------------------------
// References.

void BM_ref_inplace_scale(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  const sg::executor ex = exec_for(st.range(1));
  const auto parts = static_cast<std::size_t>(st.range(1));
  float s = 1.0000001f;
  float* p = A.x.data();
  for (auto _ : st) {
    ex.run(parts, [&](std::size_t k) {
      for (std::size_t i = k * n / parts, e = (k + 1) * n / parts; i < e; ++i) p[i] *= s;
    });
    s = 1.0f / s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 8);
}

void BM_regen_gaussian(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  const sg::executor ex = exec_for(st.range(1));
  std::uint64_t seed = 1;
  for (auto _ : st) {
    sg::generate<sg::gaussian>(std::span<float>(A.g), sg::noise_key{seed++, 0, 0}, 0, ex);
    benchmark::ClobberMemory();
  }
  finish(st, n, 4);
}

// ---------------------------------------------------------------------------------------------
// stochgrad's fused kernels.

template <bool W>
void BM_adam_fused(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  sg::parameters<float> p{std::span<float>(A.x)};
  const opt::basic_adam<sg::constant_schedule, W> o(opt::basic_adam_options<W>{.lr = 1e-4, .weight_decay = 0.01});
  opt::adam_state<float> s;
  s.steps = {0};
  s.scratch.resize(1);
  lend(A.a, s.exp_avg);
  lend(A.b, s.exp_avg_sq);
  const sg::dense_gradient<float> g1{std::span<const float>(A.g)}, g2{std::span<const float>(A.g2)};
  sg::step_context ctx;
  ctx.ex = exec_for(st.range(1));
  for (auto _ : st) {
    o.update(p, s, (ctx.step & 1) ? g2 : g1, ctx);
    ++ctx.step;
    benchmark::ClobberMemory();
  }
  A.a.swap(s.exp_avg[0]);
  A.b.swap(s.exp_avg_sq[0]);
  finish(st, n, 28);
}

void run_adan(benchmark::State& st, arrays& A, std::size_t n, double bytes, bool lazy) {
  sg::parameters<float> p{std::span<float>(A.x)};
  const opt::adan<> o(opt::adan_options{.lr = 1e-4, .weight_decay = 0.02});
  opt::adan_state<float> s;
  s.steps = {0};
  s.scratch.resize(1);
  lend(A.a, s.exp_avg);
  lend(A.b, s.exp_avg_diff);
  lend(A.c, s.exp_avg_sq);
  lend(A.d, s.prev_grad);
  sg::step_context ctx;
  ctx.ex = exec_for(st.range(1));
  const sg::dense_gradient<float> g1{std::span<const float>(A.g)}, g2{std::span<const float>(A.g2)};
  for (auto _ : st) {
    if (lazy) {
      // MeZO: the projected gradient times the step's direction z(seed), never stored.
      const sg::noise_gradient<sg::gaussian, sg::default_generator, float> z(ctx.step + 1, 0, 0.05);
      o.update(p, s, z, ctx);
    } else {
      o.update(p, s, (ctx.step & 1) ? g2 : g1, ctx);
    }
    ++ctx.step;
    benchmark::ClobberMemory();
  }
  A.a.swap(s.exp_avg[0]);
  A.b.swap(s.exp_avg_diff[0]);
  A.c.swap(s.exp_avg_sq[0]);
  A.d.swap(s.prev_grad[0]);
  finish(st, n, bytes);
}

void BM_adan_fused(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  run_adan(st, arrays_for(n), n, 44, false);
}

void BM_adan_lazy_mezo(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  run_adan(st, arrays_for(n), n, 40, true);
}

void BM_sgd_momentum_fused(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  sg::parameters<float> p{std::span<float>(A.x)};
  const opt::sgd<> o(opt::sgd_options{.lr = 1e-4, .momentum = 0.9});
  opt::sgd_state<float> s;
  s.steps = {0};
  s.scratch.resize(1);
  lend(A.a, s.momentum_buffer);
  const sg::dense_gradient<float> g1{std::span<const float>(A.g)}, g2{std::span<const float>(A.g2)};
  sg::step_context ctx;
  ctx.ex = exec_for(st.range(1));
  for (auto _ : st) {
    o.update(p, s, (ctx.step & 1) ? g2 : g1, ctx);
    ++ctx.step;
    benchmark::ClobberMemory();
  }
  A.a.swap(s.momentum_buffer[0]);
  finish(st, n, 20);
}

// ---------------------------------------------------------------------------------------------
// What a user would write instead: a plain loop and Eigen array expressions (1 thread).

struct adam_coeffs {
  float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = 1e-4f, wd = 0.01f;
  float step = 0, ibc2 = 0, decay = 0;
  void at(std::uint64_t t) {
    const double k = static_cast<double>(t + 1);
    step = static_cast<float>(1e-4 / (1 - std::pow(0.9, k)));
    ibc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(0.999, k)));
    decay = 1.0f - lr * wd;
  }
};

void BM_adam_scalar(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  float *x = A.x.data(), *m = A.a.data(), *v = A.b.data();
  adam_coeffs c;
  std::uint64_t t = 0;
  for (auto _ : st) {
    const float* g = A.grad(t).data();
    c.at(t++);
    for (std::size_t i = 0; i < n; ++i) {
      m[i] = c.b1 * m[i] + (1 - c.b1) * g[i];
      v[i] = c.b2 * v[i] + (1 - c.b2) * g[i] * g[i];
      x[i] = x[i] * c.decay - c.step * m[i] / (std::sqrt(v[i]) * c.ibc2 + c.eps);
    }
    benchmark::ClobberMemory();
  }
  finish(st, n, 28);
}

void BM_adam_eigen(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  const auto ni = static_cast<Eigen::Index>(n);
  Eigen::Map<Eigen::ArrayXf> x(A.x.data(), ni), m(A.a.data(), ni), v(A.b.data(), ni);
  adam_coeffs c;
  std::uint64_t t = 0;
  for (auto _ : st) {
    Eigen::Map<const Eigen::ArrayXf> g(A.grad(t).data(), ni);
    c.at(t++);
    m = c.b1 * m + (1 - c.b1) * g;
    v = c.b2 * v + (1 - c.b2) * g.square();
    x = x * c.decay - c.step * m / (v.sqrt() * c.ibc2 + c.eps);
    benchmark::ClobberMemory();
  }
  finish(st, n, 28);
}

struct adan_coeffs {
  float b1 = 0.98f, b2 = 0.92f, b3 = 0.99f, eps = 1e-8f;
  float s1 = 0, s2 = 0, ibc3 = 0, shrink = 0;
  void at(std::uint64_t t) {
    const double k = static_cast<double>(t + 1), lr = 1e-4;
    s1 = static_cast<float>(lr / (1 - std::pow(0.98, k)));
    s2 = static_cast<float>(lr * 0.92 / (1 - std::pow(0.92, k)));
    ibc3 = static_cast<float>(1 / std::sqrt(1 - std::pow(0.99, k)));
    shrink = static_cast<float>(1 / (1 + lr * 0.02));
  }
};

void BM_adan_scalar(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  float *x = A.x.data(), *m = A.a.data(), *v = A.b.data(), *nn = A.c.data(), *gp = A.d.data();
  adan_coeffs c;
  std::uint64_t t = 0;
  for (auto _ : st) {
    const float* g = A.grad(t).data();
    c.at(t++);
    for (std::size_t i = 0; i < n; ++i) {
      const float d = g[i] - gp[i];
      m[i] = c.b1 * m[i] + (1 - c.b1) * g[i];
      v[i] = c.b2 * v[i] + (1 - c.b2) * d;
      const float u = g[i] + c.b2 * d;
      nn[i] = c.b3 * nn[i] + (1 - c.b3) * u * u;
      const float den = std::sqrt(nn[i]) * c.ibc3 + c.eps;
      x[i] = (x[i] - c.s1 * m[i] / den - c.s2 * v[i] / den) * c.shrink;
      gp[i] = g[i];
    }
    benchmark::ClobberMemory();
  }
  finish(st, n, 44);
}

void BM_adan_eigen(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  arrays& A = arrays_for(n);
  const auto ni = static_cast<Eigen::Index>(n);
  Eigen::Map<Eigen::ArrayXf> x(A.x.data(), ni), m(A.a.data(), ni), v(A.b.data(), ni), nn(A.c.data(), ni),
      gp(A.d.data(), ni);
  adan_coeffs c;
  std::uint64_t t = 0;
  for (auto _ : st) {
    Eigen::Map<const Eigen::ArrayXf> g(A.grad(t).data(), ni);
    c.at(t++);
    m = c.b1 * m + (1 - c.b1) * g;
    v = c.b2 * v + (1 - c.b2) * (g - gp);
    nn = c.b3 * nn + (1 - c.b3) * (g + c.b2 * (g - gp)).square();
    x = (x - (c.s1 * m + c.s2 * v) / (nn.sqrt() * c.ibc3 + c.eps)) * c.shrink;
    gp = g;
    benchmark::ClobberMemory();
  }
  finish(st, n, 44);
}

// ---------------------------------------------------------------------------------------------
// Registration: {N, threads}.

std::int64_t max_n() {
  const char* v = std::getenv("STOCHGRAD_BENCH_MAX_N");
  return v ? std::atoll(v) : std::int64_t{100'000'000};
}

// M-FAC step (issue 17 §3): cost against the window size m at d = 1e6 floats, one thread. The
// step is O(m d) (two passes over the m x d window: the dots with the new gradient and the
// product), so ns/elem should grow linearly in m; compare with one fused Adam step (28 B/elem).
void BM_mfac(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto m = static_cast<std::size_t>(st.range(1));
  arrays& A = arrays_for(n);
  sg::parameters<float> p{std::span<float>(A.x)};
  const opt::mfac<> o(opt::mfac_options{.lr = 1e-4, .damp = 1e-5, .ngrads = m});
  auto s = o.init(p);
  const sg::dense_gradient<float> g1{std::span<const float>(A.g)}, g2{std::span<const float>(A.g2)};
  sg::step_context ctx;
  for (auto _ : st) {
    o.update(p, s, (ctx.step & 1) ? g2 : g1, ctx);
    ++ctx.step;
    benchmark::ClobberMemory();
  }
  finish(st, n, static_cast<double>(2 * m + 3) * 4.0);
}

void threaded_args(benchmark::internal::Benchmark* b) {
  b->Args({4096, 1});
  for (const std::int64_t n : {std::int64_t{10'000'000}, std::int64_t{100'000'000}}) {
    if (n > max_n()) continue;
    for (const std::int64_t t : {1, 2}) b->Args({n, t});
  }
  b->UseRealTime();
}
void single_args(benchmark::internal::Benchmark* b) {
  b->Args({4096, 1});
  for (const std::int64_t n : {std::int64_t{10'000'000}, std::int64_t{100'000'000}}) {
    if (n <= max_n()) b->Args({n, 1});
  }
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_ref_inplace_scale)->Apply(threaded_args);
BENCHMARK(BM_regen_gaussian)->Apply(threaded_args);
BENCHMARK(BM_adam_fused<false>)->Name("BM_adam_fused")->Apply(threaded_args);
BENCHMARK(BM_adam_fused<true>)->Name("BM_adamw_fused")->Apply(threaded_args);
BENCHMARK(BM_adam_scalar)->Apply(single_args);
BENCHMARK(BM_adam_eigen)->Apply(single_args);
BENCHMARK(BM_adan_fused)->Apply(threaded_args);
BENCHMARK(BM_adan_lazy_mezo)->Apply(threaded_args);
BENCHMARK(BM_adan_scalar)->Apply(single_args);
BENCHMARK(BM_adan_eigen)->Apply(single_args);
BENCHMARK(BM_mfac)->Args({4096, 8})->Args({1'000'000, 4})->Args({1'000'000, 16})->Args({1'000'000, 64})->UseRealTime();
BENCHMARK(BM_sgd_momentum_fused)->Apply(threaded_args);

BENCHMARK_MAIN();
