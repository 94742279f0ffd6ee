// SPDX-License-Identifier: Apache-2.0
// "No heap allocation per step once sized": the global operator new of this binary counts
// allocations; after the first step on a batch size (which sizes the estimator's scratch, the BNPO
// normalizer's and the reward-combination buffers), steps of every preset, PPO iterations, several
// reward functions, id layouts and estimate() allocate nothing.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

#include "support/alloc_counter.hpp"

using namespace stochgrad;
using pgtest::addition_rollouts;

namespace {
using alloc_counter::allocations_of;

// First step sizes the buffers (allocations expected); the next steps on batches of the same or a
// smaller size must not allocate.
template <class S>
void check_steps(S& s, std::vector<double>& theta, addition_rollouts<double>& ro, addition_rollouts<double>& small,
                 std::uint32_t iterations) {
  ro.draw(theta, 5, 0);
  CHECK(allocations_of([&] { s.step(ro.batch(), ro.layout, ro.vjp(theta)); }) > 0);  // the counter works
  for (std::uint32_t c = 1; c < 3 * iterations; ++c) {
    if (c % iterations == 0) {
      ro.draw(theta, 5, c);
    } else {
      ro.rescore(theta);
    }
    CHECK(allocations_of([&] { s.step(ro.batch(), ro.layout, ro.vjp(theta)); }) == 0);
  }
  small.draw(theta, 6, 0);
  CHECK(allocations_of([&] { s.estimator().estimate(s, small.batch(), small.layout, small.vjp(theta)); }) <= 1);
  CHECK(allocations_of([&] { s.estimator().estimate(s, small.batch(), small.layout, small.vjp(theta)); }) == 0);
  CHECK(allocations_of([&] { s.estimator().estimate(s, ro.batch(), ro.layout, ro.vjp(theta)); }) <= 1);
  CHECK(allocations_of([&] { s.estimator().estimate(s, ro.batch(), ro.layout, ro.vjp(theta)); }) == 0);
}
}  // namespace

TEST_CASE("policy-gradient steps do not allocate once sized", "[pg][stepper][alloc]") {
  addition_rollouts<double> ro(16, 8), small(4, 8);
  const std::vector<double> theta0 = pgtest::warm_theta(ro.pol, 2.0);
  SECTION("grpo") {
    std::vector<double> theta = theta0;
    grpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{});
    check_steps(s, theta, ro, small, 1);
  }
  SECTION("bnpo with 3 PPO iterations") {
    std::vector<double> theta = theta0;
    bnpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{}, score_function<>({.iterations = 3}));
    check_steps(s, theta, ro, small, 3);
  }
  SECTION("rloo") {
    std::vector<double> theta = theta0;
    rloo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{});
    check_steps(s, theta, ro, small, 1);
  }
  SECTION("copg (reference log-probs) and ma_rlhf (per-token advantages)") {
    std::vector<double> theta = theta0;
    copg<double> c(parameters<double>(std::span<double>(theta)), optim::adam<>{});
    ma_rlhf<double> m(parameters<double>(std::span<double>(theta)), optim::adam<>{},
                      score_function<>(macro_ppo_options(), {.iterations = 2}));
    const std::vector<double> ref(ro.S * ro.L, -2.302585092994046);
    std::vector<double> adv(ro.S * ro.L);
    for (std::uint32_t k = 0; k < 4; ++k) {
      ro.draw(theta, 8, k);
      pg_batch<double> b = ro.batch();
      b.ref_logp = ref;
      const std::size_t a = allocations_of([&] { c.step(b, ro.layout, ro.vjp(theta)); });
      for (std::size_t i = 0; i < adv.size(); ++i) adv[i] = ro.rewards[i / ro.L] - 0.25 * static_cast<double>(i % ro.L);
      pg_batch<double> bm = ro.batch();
      bm.advantages = adv;
      const std::size_t a2 = allocations_of([&] {
        m.step(bm, ro.layout, ro.vjp(theta));
        m.step(bm, ro.layout, ro.vjp(theta));  // the second PPO iteration
      });
      if (k == 0) {
        CHECK(a > 0);
        CHECK(a2 > 0);
      } else {
        CHECK(a == 0);
        CHECK(a2 == 0);
      }
    }
  }
  SECTION("several reward functions, id layout") {
    std::vector<double> theta = theta0;
    bnpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{},
                   score_function<>({.reward_mode = reward_aggregation::decompose}));
    std::vector<double> rpf(2 * ro.S);
    const std::vector<double> w{1.0, 0.5};
    std::vector<std::int64_t> ids(ro.S);
    for (std::size_t n = 0; n < ro.S; ++n) ids[n] = static_cast<std::int64_t>((n % ro.P) * 7 + 3);
    group_layout by_id = group_layout::by_id(ids);  // sample n belongs to prompt n % P
    for (std::uint32_t k = 0; k < 3; ++k) {
      ro.draw(theta, 7, k);
      for (std::size_t n = 0; n < ro.S; ++n) {
        rpf[2 * n] = ro.rewards[n];
        rpf[2 * n + 1] = ro.tokens[3 * n] % 2 == 0 ? 1.0 : 0.0;
      }
      pg_batch<double, double, double> b;
      b.rewards = rpf;
      b.reward_weights = w;
      b.length = ro.L;
      b.logp = ro.logp;
      const std::size_t a = allocations_of([&] {
        by_id.assign_ids(ids);
        s.step(b, by_id, ro.vjp(theta));
      });
      if (k == 0) {
        CHECK(a > 0);
      } else {
        CHECK(a == 0);
      }
    }
  }
}
