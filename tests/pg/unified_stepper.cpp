// SPDX-License-Identifier: Apache-2.0
// The HPT unified estimator (algorithms.md §6) as the loss of a full policy-gradient stepper:
// PPO-mask composition vs the clipped surrogate (same coefficients, so the same update up to
// rounding), the pseudo-loss and diagnostics, SFT as the NLL, CISPO and GSPO compositions that
// train, and names that keep saved states of different compositions apart.
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using pgtest::addition_rollouts;
using pgtest::warm_theta;

namespace {

template <class Loss>
using pg_stepper = stepper<score_function<Loss>, group_mean, group_std, optim::adam<>, double>;

surrogate_options token_mean_options() {
  surrogate_options o;
  o.aggregation = loss_aggregation::token_mean;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  return o;
}

}  // namespace

TEST_CASE("unified PPO composition steps like the clipped surrogate (beta = 0)", "[pg][hpt][stepper]") {
  addition_rollouts<double> ro(8, 4);
  const std::vector<double> theta0 = warm_theta(ro.pol, 2.0);
  const surrogate_options o = token_mean_options();
  std::vector<double> ta = theta0, tb = theta0;
  grpo<double> a(parameters<double>(std::span<double>(ta)), optim::adam<>({.lr = 1e-2}), score_function<>(o, {.iterations = 2}));
  pg_stepper<ppo_estimator> b(parameters<double>(std::span<double>(tb)), optim::adam<>({.lr = 1e-2}),
                              score_function<ppo_estimator>(ppo_estimator{ppo_clip_mask{0.2, 0.28}, {}, {}, o},
                                                            {.iterations = 2}));
  // Two generation batches, two PPO iterations each (the second iteration has ratios != 1, so the
  // clip mask matters). Both read the batch drawn at a's parameters, rescored at each's own.
  for (std::uint32_t step = 0; step < 2; ++step) {
    ro.draw(ta, 5, step);
    for (int it = 0; it < 2; ++it) {
      if (it > 0) ro.rescore(ta);
      const auto ra = a.step(ro.batch(), ro.layout, ro.vjp(ta));
      if (it > 0) ro.rescore(tb);
      const auto rb = b.step(ro.batch(), ro.layout, ro.vjp(tb));
      INFO("step " << step << " iteration " << it);
      // The coefficients agree to rounding: -W m A rho vs the clipped surrogate's dl/drho * rho.
      for (std::size_t i = 0; i < ra.coefficients.size(); ++i) {
        CHECK_THAT(rb.coefficients[i], Catch::Matchers::WithinAbs(ra.coefficients[i], 1e-14));
      }
      CHECK(rb.diagnostics.clip_region_fraction == ra.diagnostics.clip_region_fraction);
      CHECK_THAT(rb.diagnostics.ratio_mean, Catch::Matchers::WithinRel(ra.diagnostics.ratio_mean, 1e-14));
    }
  }
  for (std::size_t i = 0; i < ta.size(); ++i) CHECK_THAT(tb[i], Catch::Matchers::WithinAbs(ta[i], 1e-12));
}

TEST_CASE("unified estimator: pseudo-loss, SFT = NLL, diagnostics", "[pg][hpt]") {
  const std::size_t B = 3, L = 4;
  std::vector<double> lp(B * L), old(B * L), m(B * L, 1.0), adv{1.0, -0.5, 2.0}, ones(B, 1.0);
  for (std::size_t i = 0; i < B * L; ++i) {
    lp[i] = -0.3 - 0.1 * static_cast<double>(i % 5);
    old[i] = lp[i] + (i % 3 == 0 ? 0.4 : (i % 3 == 1 ? -0.4 : -0.05));  // ratios 0.67, 1.49, 1.05
  }
  m[B * L - 1] = 0.0;
  const surrogate_options o = token_mean_options();
  SECTION("SFT with unit advantages: coefficient -1/M, loss = mean NLL") {
    const sft_estimator sft{{}, {}, {}, o};
    std::vector<double> c(B * L);
    const surrogate_result r = sft.evaluate<double>(token_batch<double>{B, L, lp, {}, {}, m, ones}, c);
    double nll = 0.0;
    for (std::size_t i = 0; i + 1 < B * L; ++i) nll -= lp[i];
    const double M = static_cast<double>(B * L - 1);
    CHECK_THAT(r.loss, Catch::Matchers::WithinRel(nll / M, 1e-15));
    for (std::size_t i = 0; i + 1 < B * L; ++i) CHECK_THAT(c[i], Catch::Matchers::WithinRel(-1.0 / M, 1e-15));
    CHECK(c[B * L - 1] == 0.0);
    CHECK(r.diagnostics.active_tokens == M);
    CHECK(r.diagnostics.clip_region_fraction == 0.0);
    CHECK(r.diagnostics.ratio_mean == 1.0);
  }
  SECTION("PPO: loss = sum coef * logp; clip fraction = tokens the mask dropped") {
    const ppo_estimator ppo{ppo_clip_mask{0.2, 0.28}, {}, {}, o};
    std::vector<double> c(B * L);
    const token_batch<double> b{B, L, lp, old, {}, m, adv};
    const surrogate_result r = ppo.evaluate<double>(b, c);
    double pseudo = 0.0, dropped = 0.0, akl = 0.0;
    for (std::size_t i = 0; i < B * L; ++i) {
      pseudo += c[i] * lp[i];
      if (m[i] == 0.0) continue;
      const double rho = std::exp(lp[i] - old[i]), a = adv[i / L];
      dropped += ((a > 0 && rho > 1.28) || (a < 0 && rho < 0.8)) ? 1.0 : 0.0;
      akl += old[i] - lp[i];
    }
    CHECK_THAT(r.loss, Catch::Matchers::WithinRel(pseudo, 1e-14));
    CHECK(dropped > 0.0);  // the data above puts some tokens in the clip region
    CHECK(r.diagnostics.clip_region_fraction == dropped / 11.0);
    CHECK(ppo.coefficients<double>(b, c) == dropped / 11.0);
    CHECK_THAT(r.diagnostics.approx_kl, Catch::Matchers::WithinRel(akl / 11.0, 1e-14));
    // Loss only (empty coefficient span) gives the same loss.
    CHECK(ppo.evaluate<double>(b).loss == r.loss);
  }
  SECTION("CISPO: clipped weights change the ratio but drop no token") {
    const cispo_estimator cispo{cispo_mask{1.0, 0.28}, {}, {}, o};
    std::vector<double> c(B * L);
    const surrogate_result r = cispo.evaluate<double>(token_batch<double>{B, L, lp, old, {}, m, adv}, c);
    CHECK(r.diagnostics.clip_region_fraction > 0.0);
    for (std::size_t i = 0; i + 1 < B * L; ++i) CHECK(c[i] != 0.0);
  }
}

TEST_CASE("unified compositions train the addition policy and keep their states apart", "[pg][hpt][stepper]") {
  addition_rollouts<double> ro(16, 8);
  std::vector<double> th1 = warm_theta(ro.pol, 2.0), th2 = th1;
  pg_stepper<cispo_estimator> s1(parameters<double>(std::span<double>(th1)), optim::adam<>({.lr = 0.05}),
                                 score_function<cispo_estimator>(cispo_estimator{cispo_mask{1.0, 0.28}, {}, {}, {}},
                                                                 {.iterations = 2}));
  pg_stepper<gspo_estimator> s2(parameters<double>(std::span<double>(th2)), optim::adam<>({.lr = 0.05}),
                                score_function<gspo_estimator>(gspo_estimator{}, {.iterations = 2}));
  // Two PPO iterations per batch, so the ratios of the second differ from 1 and the two
  // compositions follow different paths. Mean reward (exact answers) over the first and the last 5 of 40 batches of 128 completions.
  double first1 = 0.0, first2 = 0.0, last1 = 0.0, last2 = 0.0;
  for (std::uint32_t step = 0; step < 40; ++step) {
    ro.draw(th1, 9, step);
    (step < 5 ? first1 : last1) += step < 5 || step >= 35 ? ro.mean_reward() / 5 : 0.0;
    s1.step(ro.batch(), ro.layout, ro.vjp(th1));
    ro.rescore(th1);
    s1.step(ro.batch(), ro.layout, ro.vjp(th1));
    ro.draw(th2, 9, step);
    (step < 5 ? first2 : last2) += step < 5 || step >= 35 ? ro.mean_reward() / 5 : 0.0;
    s2.step(ro.batch(), ro.layout, ro.vjp(th2));
    ro.rescore(th2);
    s2.step(ro.batch(), ro.layout, ro.vjp(th2));
  }
  CHECK(th1 != th2);
  // Warm start: each digit right with probability e^2/(e^2 + 9) = 0.45, so about 9 % of answers are
  // exact. A mean over 5 x 128 completions has a standard error below 0.02 (binomial, p <= 0.5);
  // requiring a gain of 0.15 (more than 5 standard errors of the difference) checks that both
  // compositions climb, with the rates printed on failure.
  INFO("cispo " << first1 << " -> " << last1 << ", gspo " << first2 << " -> " << last2);
  CHECK(last1 > first1 + 0.15);
  CHECK(last2 > first2 + 0.15);
  // Names differ per composition, so a state saved by one does not load into the other.
  CHECK(std::string(score_function<cispo_estimator>::name) ==
        "score_function_unified<cispo_mask,old_policy_reference,identity_likelihood>");
  CHECK(std::string(score_function<gspo_estimator>::name) ==
        "score_function_unified<ppo_clip_mask,sequence_reference,identity_likelihood>");
  std::stringstream ss;
  s1.save(ss);
  const std::vector<double> keep = th2;
  CHECK_THROWS_AS(s2.load(ss), state_error);
  CHECK(th2 == keep);
}
