// SPDX-License-Identifier: Apache-2.0
// "No heap allocation per call once buffers are sized": the global operator new of this test
// binary counts allocations; after a first (sizing) call, repeated calls of the outcome policies,
// the surrogate, the unified estimator and the samplers on batches of the same size allocate nothing.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include "support/catch.hpp"

#include "support/alloc_counter.hpp"

using namespace stochgrad;

namespace {
using alloc_counter::allocations_of;
}  // namespace

TEST_CASE("no allocation per call once sized", "[pg][outcome][alloc]") {
  const std::size_t P = 64, G = 8, N = P * G, L = 16;
  std::vector<double> r(N), adv(N), rpf(2 * N);
  std::vector<std::int64_t> ids(N);
  for (std::size_t i = 0; i < N; ++i) {
    r[i] = noise_at<uniform>(noise_key{1, 0, 0}, i) < 0.4 ? 1.0 : 0.0;
    rpf[2 * i] = r[i];
    rpf[2 * i + 1] = noise_at<uniform>(noise_key{1, 1, 0}, i) < 0.7 ? 1.0 : 0.0;
    ids[i] = static_cast<std::int64_t>((i * 37) % P);
  }
  const group_layout contiguous = group_layout::contiguous(P, G);
  group_layout by_id = group_layout::by_id(ids);
  const std::span<const double> rs(r);
  const std::span<double> as(adv);
  CHECK(allocations_of([&] { advantages(group_mean{}, group_std{}, rs, contiguous, as); }) == 0);
  CHECK(allocations_of([&] { advantages(leave_one_out{}, batch_whiten{}, rs, by_id, as); }) == 0);
  CHECK(allocations_of([&] { by_id.assign_ids(ids); }) == 0);
  const beta_normalizer bn;
  // The counter works: the first call sizes the normalizer's scratch.
  CHECK(allocations_of([&] { advantages(bnpo_mean{}, bn, rs, by_id, as); }) > 0);
  CHECK(allocations_of([&] { advantages(bnpo_mean{}, bn, rs, by_id, as); }) == 0);
  multi_reward mr(group_mean{}, group_std{}, {1.0, 0.5}, reward_aggregation::normalize_then_sum);
  mr.compute<double>(rpf, contiguous, adv);
  CHECK(allocations_of([&] { mr.compute<double>(rpf, contiguous, adv); }) == 0);
  multi_reward dec(bnpo_mean{}, beta_normalizer{}, {1.0, 1.0}, reward_aggregation::decompose);
  dec.compute<double>(rpf, contiguous, adv);
  CHECK(allocations_of([&] { dec.compute<double>(rpf, contiguous, adv); }) == 0);

  std::vector<double> lp(N * L), old(N * L), ref(N * L), mask(N * L, 1.0), coef(N * L);
  for (std::size_t i = 0; i < N * L; ++i) {
    lp[i] = -1.0 - noise_at<uniform>(noise_key{2, 0, 0}, i);
    old[i] = lp[i] + 0.2 * noise_at<gaussian>(noise_key{2, 1, 0}, i);
    ref[i] = lp[i] + 0.2 * noise_at<gaussian>(noise_key{2, 2, 0}, i);
  }
  surrogate_options o;
  o.beta = 0.04;
  o.aggregation = loss_aggregation::grpo;
  const clipped_surrogate s(o);
  const token_batch<double> b{N, L, lp, old, ref, mask, adv};
  CHECK(allocations_of([&] { s.evaluate<double>(b, coef); }) == 0);
  o.level = ratio_level::sequence;
  const clipped_surrogate sq(o);
  CHECK(allocations_of([&] { sq.evaluate<double>(b, coef); }) == 0);
  CHECK(allocations_of([&] { ppo_estimator{ppo_clip_mask{}, {}, {}, o}.coefficients<double>(b, coef); }) == 0);

  std::vector<std::size_t> cand(N);
  for (std::size_t i = 0; i < N; ++i) cand[i] = i;
  beta_thompson bt(N);
  bt.select(cand, 32);
  CHECK(allocations_of([&] { bt.select(cand, 32); }) == 0);
  reinforce_ada ada;
  auto gen = [](std::size_t u, std::size_t round, std::span<double> out) {
    for (std::size_t j = 0; j < out.size(); ++j) {
      out[j] = noise_at<uniform>(noise_key{3, static_cast<std::uint32_t>(u), static_cast<std::uint32_t>(round)}, j) < 0.3
                   ? 1.0
                   : 0.0;
    }
  };
  ada.run(P, gen);
  CHECK(allocations_of([&] { ada.run(P, gen); }) == 0);

  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0), grad(pol.dimension(), 0.0), plp(N * 3), pr(N), pc(N * 3, 0.1);
  std::vector<problems::addition_prompt> prompts(N);
  std::vector<std::uint8_t> tok(N * 3);
  CHECK(allocations_of([&] {
          pol.make_prompts(noise_key{4, 0, 0}, prompts);
          pol.sample(theta, prompts, noise_key{4, 1, 0}, tok, plp, pr);
          pol.accumulate_gradient(theta, prompts, tok, pc, grad);
        }) == 0);
}
