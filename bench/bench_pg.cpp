// SPDX-License-Identifier: Apache-2.0
// Policy-gradient kernels (issue 5, "Speed"): advantages (baseline x normalizer over groups) and
// the per-token coefficient of the clipped surrogate, over 1e6 samples / tokens, in ns per sample
// or token, next to in-binary references measured in the same run:
// - `exp_pass`: one std::exp per element (the coefficient kernel needs one per token, two with KL);
// - `adam_step`: a plain fused Adam update of N parameters (what one optimizer step costs per
//   element: the PG kernels run once per step over tokens, the optimizer over parameters).
//
// Argument: N (samples for advantages with G = 10, so 1e6 samples = 1e5 groups; tokens for the
// coefficient kernels with L = 64). N = 4096 is the smoke configuration (`--benchmark_filter=/4096`).
// Counter `ns_per_elem`: seconds per sample / token, printed with an SI prefix ("2.1n" = 2.1 ns).
#include <stochgrad/bits/outcome/outcome.hpp>
#include <stochgrad/bits/pg/pg.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sg = stochgrad;

namespace {

constexpr std::size_t group_size = 10;
constexpr std::size_t seq_length = 64;

void per_element(benchmark::State& state, std::size_t n) {
  state.counters["ns_per_elem"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n));
}

std::vector<double> binary_rewards(std::size_t n) {
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = sg::noise_at<sg::uniform>(sg::noise_key{1, 0, 0}, i) < 0.4f ? 1.0 : 0.0;
  return r;
}

template <class B, class N>
void run_advantages(benchmark::State& state, const B& base, const N& norm, bool by_id) {
  const std::size_t P = static_cast<std::size_t>(state.range(0)) / group_size;
  const std::size_t n = P * group_size;
  const std::vector<double> r = binary_rewards(n);
  std::vector<double> adv(n);
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int64_t>((i * 7919) % P);  // shuffled groups
  const sg::group_layout g = by_id ? sg::group_layout::by_id(ids) : sg::group_layout::contiguous(P, group_size);
  for (auto _ : state) {
    sg::advantages(base, norm, std::span<const double>(r), g, std::span<double>(adv));
    benchmark::DoNotOptimize(adv.data());
    benchmark::ClobberMemory();
  }
  per_element(state, n);
}

void BM_advantages_grpo(benchmark::State& state) { run_advantages(state, sg::group_mean{}, sg::group_std{}, false); }
void BM_advantages_grpo_by_id(benchmark::State& state) {
  run_advantages(state, sg::group_mean{}, sg::group_std{}, true);
}
void BM_advantages_rloo(benchmark::State& state) { run_advantages(state, sg::leave_one_out{}, sg::no_normalizer{}, false); }
void BM_advantages_bnpo(benchmark::State& state) {
  const sg::beta_normalizer bn;
  run_advantages(state, sg::bnpo_mean{}, bn, false);
}

struct token_data {
  std::vector<double> logp, old, ref, mask, adv, coef;
  std::size_t B = 0;
  explicit token_data(std::size_t n) : logp(n), old(n), ref(n), mask(n, 1.0), coef(n) {
    B = n / seq_length;
    adv.resize(B);
    for (std::size_t i = 0; i < n; ++i) {
      logp[i] = -0.1 - 2.0 * sg::noise_at<sg::uniform>(sg::noise_key{2, 0, 0}, i);
      old[i] = logp[i] + 0.1 * sg::noise_at<sg::gaussian>(sg::noise_key{2, 1, 0}, i);
      ref[i] = logp[i] + 0.1 * sg::noise_at<sg::gaussian>(sg::noise_key{2, 2, 0}, i);
    }
    for (std::size_t b = 0; b < B; ++b) {
      adv[b] = sg::noise_at<sg::gaussian>(sg::noise_key{2, 3, 0}, b);
      for (std::size_t t = seq_length - b % 16; t < seq_length; ++t) mask[b * seq_length + t] = 0.0;  // ragged ends
    }
  }
};

void run_coefficients(benchmark::State& state, sg::surrogate_options o, bool kl) {
  const auto n = static_cast<std::size_t>(state.range(0));
  token_data d(n);
  const sg::clipped_surrogate s(o);
  const sg::token_batch<double> bb{d.B, seq_length, d.logp, d.old,
                                   kl ? std::span<const double>(d.ref) : std::span<const double>{}, d.mask, d.adv};
  for (auto _ : state) {
    const sg::surrogate_result r = s.evaluate<double>(bb, d.coef);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  per_element(state, n);
}

void BM_coefficients_token(benchmark::State& state) {
  sg::surrogate_options o;
  o.eps_high = 0.28;
  o.aggregation = sg::loss_aggregation::grpo;
  run_coefficients(state, o, false);
}
void BM_coefficients_token_kl(benchmark::State& state) {
  sg::surrogate_options o;
  o.eps_high = 0.28;
  o.beta = 0.04;
  o.aggregation = sg::loss_aggregation::grpo;
  run_coefficients(state, o, true);
}
void BM_coefficients_sequence(benchmark::State& state) {
  sg::surrogate_options o;
  o.level = sg::ratio_level::sequence;
  o.aggregation = sg::loss_aggregation::grpo;
  run_coefficients(state, o, false);
}
void BM_coefficients_verl_dual_clip(benchmark::State& state) {
  sg::surrogate_options o = sg::surrogate_options::verl();
  o.eps_high = 0.28;
  o.dual_clip = 10.0;
  o.aggregation = sg::loss_aggregation::seq_mean_token_sum;
  run_coefficients(state, o, false);
}

// References.
void BM_ref_exp_pass(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  token_data d(n);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) d.coef[i] = std::exp(d.logp[i] - d.old[i]);
    benchmark::DoNotOptimize(d.coef.data());
    benchmark::ClobberMemory();
  }
  per_element(state, n);
}

void BM_ref_adam_step(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<double> theta(n, 0.1), g(n, 0.01), m(n, 0.0), v(n, 0.0);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, c1 = 1.0 / (1 - b1), c2 = 1.0 / (1 - b2);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      theta[i] -= lr * (m[i] * c1) / (std::sqrt(v[i] * c2) + eps);
    }
    benchmark::DoNotOptimize(theta.data());
    benchmark::ClobberMemory();
  }
  per_element(state, n);
}

}  // namespace

#define SG_PG_ARGS ->Arg(4096)->Arg(1000000)->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_advantages_grpo) SG_PG_ARGS;
BENCHMARK(BM_advantages_grpo_by_id) SG_PG_ARGS;
BENCHMARK(BM_advantages_rloo) SG_PG_ARGS;
BENCHMARK(BM_advantages_bnpo) SG_PG_ARGS;
BENCHMARK(BM_coefficients_token) SG_PG_ARGS;
BENCHMARK(BM_coefficients_token_kl) SG_PG_ARGS;
BENCHMARK(BM_coefficients_sequence) SG_PG_ARGS;
BENCHMARK(BM_coefficients_verl_dual_clip) SG_PG_ARGS;
BENCHMARK(BM_ref_exp_pass) SG_PG_ARGS;
BENCHMARK(BM_ref_adam_step) SG_PG_ARGS;

BENCHMARK_MAIN();
