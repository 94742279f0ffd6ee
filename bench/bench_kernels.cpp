// SPDX-License-Identifier: Apache-2.0
// Kernel throughput (PERFORMANCE.md): every stochgrad kernel beside in-binary reference kernels
// (in-place scale `a *= s`, STREAM scale `b = s*c`, a simple vectorised sum) and beside
// `std::mt19937 + std::normal_distribution`, so that ratios come from one run.
//
// Arguments are {N, threads} (names: BM_kernel<...>/N/threads). N = 4096 is the smoke configuration
// (`--benchmark_filter=/4096`),
// N = 1e4 is cache resident, 1e7 is L3 resident on the build machine, 1e8 is main memory.
// Counters: bytes_per_second (bytes read + written per element, below), items_per_second and
// ns/elem (seconds per element, printed with an SI prefix: "1.02n" = 1.02 ns).
//
// Buffers are shared between benchmarks and grown lazily to the largest N seen (1e8 floats are
// 400 MB; at most two float and two double buffers exist). Set STOCHGRAD_BENCH_MAX_N to cap N.
#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/kernels/reduce.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <vector>

namespace sg = stochgrad;

namespace {

// ---------------------------------------------------------------------------------------------
// Shared buffers and executors.

template <class T>
struct buffers {
  std::vector<T> a, b;
};

template <class T>
buffers<T>& bufs() {
  static buffers<T> b;
  return b;
}

// Returns spans of n elements of the two buffers, growing (and first-touching) them if needed.
template <class T>
std::pair<std::span<T>, std::span<T>> get(std::size_t n) {
  buffers<T>& b = bufs<T>();
  if (b.a.size() < n) {
    b.a.clear();
    b.a.shrink_to_fit();
    b.b.clear();
    b.b.shrink_to_fit();
    b.a.resize(n);
    b.b.resize(n);
    sg::generate<sg::gaussian>(std::span<T>(b.a), sg::noise_key{1, 0, 0});
    sg::generate<sg::gaussian>(std::span<T>(b.b), sg::noise_key{2, 0, 0});
  }
  return {std::span<T>(b.a.data(), n), std::span<T>(b.b.data(), n)};
}

sg::executor exec_for(int threads) {
  static sg::thread_pool pool2(2);
  static sg::thread_pool pool4(4);
  if (threads == 2) return sg::executor(pool2);
  if (threads == 4) return sg::executor(pool4);
  return sg::executor();
}

void finish(benchmark::State& st, std::size_t n, double bytes_per_elem) {
  const auto items = static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n);
  st.SetItemsProcessed(items);
  st.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(items) * bytes_per_elem));
  st.counters["ns/elem"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------------------------
// Reference kernels (what the hardware can do; plain loops the compiler vectorises at -O3).

template <class T>
void ref_inplace_scale(T* a, std::size_t b, std::size_t e, T s) {
  for (std::size_t i = b; i < e; ++i) a[i] *= s;
}

template <class T>
void ref_stream_scale(T* STOCHGRAD_RESTRICT out, const T* STOCHGRAD_RESTRICT in, std::size_t b, std::size_t e, T s) {
  for (std::size_t i = b; i < e; ++i) out[i] = s * in[i];
}

template <class T>
T ref_sum(const T* p, std::size_t b, std::size_t e) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
  std::size_t i = b;
  for (; i + 4 * W <= e; i += 4 * W) {
    a0 += B::load_unaligned(p + i);
    a1 += B::load_unaligned(p + i + W);
    a2 += B::load_unaligned(p + i + 2 * W);
    a3 += B::load_unaligned(p + i + 3 * W);
  }
  T t = sg::simd::reduce_add((a0 + a1) + (a2 + a3));
  for (; i < e; ++i) t += p[i];
  return t;
}

// Splits [0, n) in `threads` contiguous parts (references only; the library uses fixed tasks).
template <class F>
void ref_parallel(int threads, std::size_t n, F&& f) {
  sg::executor ex = exec_for(threads);
  const auto parts = static_cast<std::size_t>(threads);
  ex.run(parts, [&](std::size_t p) { f(p * n / parts, (p + 1) * n / parts); });
}

template <class T>
void BM_ref_inplace_scale(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int th = static_cast<int>(st.range(1));
  auto [a, b] = get<T>(n);
  T s = T(1.0000001);
  for (auto _ : st) {
    ref_parallel(th, n, [&, p = a.data()](std::size_t lo, std::size_t hi) { ref_inplace_scale(p, lo, hi, s); });
    s = T(1) / s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 2.0 * sizeof(T));
}

template <class T>
void BM_ref_stream_scale(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int th = static_cast<int>(st.range(1));
  auto [a, b] = get<T>(n);
  for (auto _ : st) {
    ref_parallel(th, n, [&, o = b.data(), in = a.data()](std::size_t lo, std::size_t hi) {
      ref_stream_scale(o, in, lo, hi, T(0.5));
    });
    benchmark::ClobberMemory();
  }
  finish(st, n, 2.0 * sizeof(T));
}

template <class T>
void BM_ref_sum(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const int th = static_cast<int>(st.range(1));
  auto [a, b] = get<T>(n);
  for (auto _ : st) {
    T parts[8] = {};
    ref_parallel(th, n, [&, p = a.data()](std::size_t lo, std::size_t hi) {
      parts[lo * static_cast<std::size_t>(th) / n] = ref_sum(p, lo, hi);
    });
    T s = 0;
    for (int i = 0; i < th; ++i) s += parts[i];
    benchmark::DoNotOptimize(s);
  }
  finish(st, n, sizeof(T));
}

void BM_ref_mt19937_normal(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  auto [a, b] = get<float>(n);
  std::mt19937 gen(42);
  std::normal_distribution<float> nd;
  for (auto _ : st) {
    float* p = a.data();
    for (std::size_t i = 0; i < n; ++i) p[i] = nd(gen);
    benchmark::ClobberMemory();
  }
  finish(st, n, sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// stochgrad kernels.

template <class D, class G, class T>
void BM_perturb(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  T s = T(1e-3);
  for (auto _ : st) {
    sg::perturb<D, G, T>(a, s, sg::noise_key{42, 0, 0}, 0, ex);
    s = -s;  // keeps the data bounded
    benchmark::ClobberMemory();
  }
  finish(st, n, 2.0 * sizeof(T));
}

// Group form: the buffer cut into 8 tensors (streams key.stream + j).
template <class D, class G, class T>
void BM_perturb_group(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  std::span<T> parts[8];
  for (std::size_t j = 0; j < 8; ++j) parts[j] = a.subspan(j * n / 8, (j + 1) * n / 8 - j * n / 8);
  T s = T(1e-3);
  for (auto _ : st) {
    sg::perturb<D, G, T>(std::span<const std::span<T>>(parts), s, sg::noise_key{42, 0, 0}, ex);
    s = -s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 2.0 * sizeof(T));
}

template <class D, class G, class T>
void BM_generate(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) {
    sg::generate<D, G, T>(b, sg::noise_key{42, 0, 0}, 0, ex);
    benchmark::ClobberMemory();
  }
  finish(st, n, sizeof(T));
}

template <class T>
void BM_axpy(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  T s = T(1e-3);
  for (auto _ : st) {
    sg::axpy<T>(s, std::span<const T>(a), b, ex);
    s = -s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 3.0 * sizeof(T));
}

template <class T>
void BM_scale(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  T s = T(1.0000001);
  for (auto _ : st) {
    sg::scale<T>(a, s, ex);
    s = T(1) / s;
    benchmark::ClobberMemory();
  }
  finish(st, n, 2.0 * sizeof(T));
}

template <class T>
void BM_sum(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) benchmark::DoNotOptimize(sg::sum<T>(std::span<const T>(a), ex));
  finish(st, n, sizeof(T));
}

template <class T>
void BM_sum_squares(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) benchmark::DoNotOptimize(sg::sum_squares<T>(std::span<const T>(a), ex));
  finish(st, n, sizeof(T));
}

template <class T>
void BM_norm(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) benchmark::DoNotOptimize(sg::norm<T>(std::span<const T>(a), ex));
  finish(st, n, sizeof(T));
}

template <class T>
void BM_dot(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) benchmark::DoNotOptimize(sg::dot<T>(std::span<const T>(a), std::span<const T>(b), ex));
  finish(st, n, 2.0 * sizeof(T));
}

template <class T>
void BM_mean_variance(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const sg::executor ex = exec_for(static_cast<int>(st.range(1)));
  auto [a, b] = get<T>(n);
  for (auto _ : st) benchmark::DoNotOptimize(sg::mean_variance<T>(std::span<const T>(a), ex).m2);
  finish(st, n, sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// Registration: {N, threads}.

std::int64_t max_n() {
  const char* v = std::getenv("STOCHGRAD_BENCH_MAX_N");
  return v ? std::atoll(v) : std::int64_t{100'000'000};
}

void float_args(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {std::int64_t{4096}, std::int64_t{10'000}, std::int64_t{10'000'000}, std::int64_t{100'000'000}}) {
    if (n > max_n()) continue;
    for (const std::int64_t t : {1, 2}) b->Args({n, t});
  }
  b->UseRealTime();
}
void double_args(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {std::int64_t{4096}, std::int64_t{10'000}, std::int64_t{10'000'000}}) {
    if (n > max_n()) continue;
    for (const std::int64_t t : {1, 2}) b->Args({n, t});
  }
  b->UseRealTime();
}
void single_thread_args(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {std::int64_t{4096}, std::int64_t{10'000}, std::int64_t{10'000'000}, std::int64_t{100'000'000}}) {
    if (n <= max_n()) b->Args({n, 1});
  }
  b->UseRealTime();
}

using ref10 = sg::philox<10>;  // the spec's reference generator (Philox4x32-10 + Box–Muller)
using dflt = sg::default_generator;

}  // namespace

// References first, so each kernel's ratio can be read against them.
BENCHMARK(BM_ref_inplace_scale<float>)->Apply(float_args);
BENCHMARK(BM_ref_stream_scale<float>)->Apply(float_args);
BENCHMARK(BM_ref_sum<float>)->Apply(float_args);
BENCHMARK(BM_ref_mt19937_normal)->Apply(single_thread_args);

BENCHMARK(BM_perturb<sg::gaussian, dflt, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::gaussian, ref10, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::gaussian, sg::philox<7>, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::gaussian, sg::philox_icdf<10>, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::rademacher, dflt, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::rademacher, ref10, float>)->Apply(float_args);
BENCHMARK(BM_perturb_group<sg::gaussian, dflt, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::segmented_uniform, dflt, float>)->Apply(float_args);
BENCHMARK(BM_perturb<sg::uniform, dflt, float>)->Apply(float_args);
BENCHMARK(BM_generate<sg::gaussian, dflt, float>)->Apply(float_args);
BENCHMARK(BM_generate<sg::gaussian, ref10, float>)->Apply(float_args);
BENCHMARK(BM_scale<float>)->Apply(float_args);
BENCHMARK(BM_axpy<float>)->Apply(float_args);
BENCHMARK(BM_sum<float>)->Apply(float_args);
BENCHMARK(BM_sum_squares<float>)->Apply(float_args);
BENCHMARK(BM_norm<float>)->Apply(float_args);
BENCHMARK(BM_dot<float>)->Apply(float_args);
BENCHMARK(BM_mean_variance<float>)->Apply(float_args);

// Double for a few kernels (1e8 doubles would be 800 MB per buffer: up to 1e7 here).
BENCHMARK(BM_ref_inplace_scale<double>)->Apply(double_args);
BENCHMARK(BM_ref_stream_scale<double>)->Apply(double_args);
BENCHMARK(BM_ref_sum<double>)->Apply(double_args);
BENCHMARK(BM_perturb<sg::gaussian, dflt, double>)->Apply(double_args);
BENCHMARK(BM_perturb<sg::rademacher, dflt, double>)->Apply(double_args);
BENCHMARK(BM_sum<double>)->Apply(double_args);
BENCHMARK(BM_dot<double>)->Apply(double_args);

BENCHMARK_MAIN();
