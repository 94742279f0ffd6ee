// SPDX-License-Identifier: Apache-2.0
// The policy-gradient steppers (bits/pg/score_function.hpp, bits/pg/presets.hpp): every step is
// compared bit for bit with the same computation composed by hand from the phase-1 pieces
// (advantages(), clipped_surrogate / rloo_surrogate, the addition policy's VJP) and the optimizer
// applied through a first_order stepper; then PPO iterations, several reward functions, save/load,
// bad input, constant groups, exceptions from the callback, multi-tensor parameters, estimate().
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using pgtest::addition_rollouts;
using pgtest::warm_theta;

namespace {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
bool same_bits(std::span<const T> a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The hand-composed reference of one on-policy step: advantages, coefficients, gradient.
template <class T>
struct by_hand {
  std::vector<T> adv, coef, grad;
  surrogate_result sur;
  advantage_stats stats;
};

template <class T, class B, class N>
by_hand<T> hand_step(addition_rollouts<T>& ro, const std::vector<T>& theta, const B& base, const N& norm,
                     const surrogate_options& so) {
  by_hand<T> h;
  h.adv.resize(ro.S);
  h.coef.resize(ro.S * ro.L);
  h.grad.assign(theta.size(), T(0));
  std::vector<double> r(ro.rewards.begin(), ro.rewards.end()), a(ro.S);
  h.stats = advantages(base, norm, std::span<const double>(r), ro.layout, std::span<double>(a));
  for (std::size_t i = 0; i < ro.S; ++i) h.adv[i] = static_cast<T>(a[i]);
  const clipped_surrogate sur(so);
  h.sur = sur.evaluate(token_batch<T>{ro.S, ro.L, ro.logp, {}, {}, {}, h.adv}, std::span<T>(h.coef));
  ro.pol.accumulate_gradient(theta, ro.per_sample, ro.tokens, h.coef, h.grad);
  return h;
}

// Applies one step of a fresh `opt` to `theta` with gradient `g` through a first_order stepper
// (the optimizer's own path).
template <class O, class T>
void apply_first_order(const O& opt, std::vector<T>& theta, const std::vector<T>& g) {
  stepper<first_order, no_baseline, no_normalizer, O, T> fo(parameters<T>(std::span<T>(theta)), opt);
  fo.step(std::span<const T>(g));
}

}  // namespace

TEST_CASE("grpo: a step is advantages x clipped-surrogate coefficients x VJP x Adam, bit for bit", "[pg][stepper]") {
  addition_rollouts<double> ro(8, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0), ref = theta;
  const optim::adam<> opt({.lr = 0.01});
  grpo<double> s(parameters<double>(std::span<double>(theta)), opt);
  stepper<first_order, no_baseline, no_normalizer, optim::adam<>, double> fo(parameters<double>(std::span<double>(ref)),
                                                                             opt);
  for (std::uint32_t k = 0; k < 3; ++k) {
    ro.draw(theta, 11, k);
    REQUIRE(same_bits(theta, ref));
    const by_hand<double> h = hand_step(ro, ref, group_mean{}, group_std{}, surrogate_options{});
    const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
    fo.step(std::span<const double>(h.grad));
    CHECK(same_bits(theta, ref));
    CHECK(rep.step == k);
    CHECK(rep.generation == k);
    CHECK(rep.iteration == 0);
    CHECK(rep.applied);
    CHECK(rep.loss == h.sur.loss);
    CHECK(same_bits(rep.advantages, h.adv));
    CHECK(same_bits(rep.coefficients, h.coef));
    CHECK(same_bits(rep.gradient[0], h.grad));
    CHECK(rep.stats.constant_groups == h.stats.constant_groups);
    CHECK(rep.stats.zero_groups == h.stats.zero_groups);
    CHECK(rep.reward_mean == ro.mean_reward());
    CHECK(rep.diagnostics.ratio_mean == 1.0);  // on-policy
  }
  CHECK(s.steps() == 3);
  // The warm start mixes right and wrong completions, so the test sees non-trivial groups.
  CHECK(ro.mean_reward() > 0.0);
  CHECK(ro.mean_reward() < 1.0);
}

TEST_CASE("compositions: BNPO, Dr. GRPO, REINFORCE, batch-std GRPO, GRPO + SGD, RLOO", "[pg][stepper]") {
  addition_rollouts<double> ro(8, 4);
  const std::vector<double> theta0 = warm_theta(ro.pol, 2.0);
  ro.draw(theta0, 21, 0);
  const optim::adam<> adam({.lr = 0.02});

  SECTION("bnpo preset") {
    std::vector<double> theta = theta0, ref = theta0;
    bnpo<double> s(parameters<double>(std::span<double>(theta)), adam);
    // The preset's loss is BNPO's own (its run.sh on verl: clip 0.2/0.28, dual clip 10, seq-mean-token-sum).
    const auto h = hand_step(ro, ref, bnpo_mean{}, beta_normalizer{}, paper::bnpo_loss::options());
    const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
    apply_first_order(adam, ref, h.grad);
    CHECK(same_bits(theta, ref));
    CHECK(same_bits(rep.advantages, h.adv));
    CHECK(s.normalizer().last_fit().prompts == 8);
  }
  SECTION("Dr. GRPO: group mean, no normalizer, dr_grpo aggregation") {
    surrogate_options so;
    so.aggregation = loss_aggregation::dr_grpo;
    so.max_completion_length = 5;
    std::vector<double> theta = theta0, ref = theta0;
    stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s(
        parameters<double>(std::span<double>(theta)), adam, score_function<>(so));
    const auto h = hand_step(ro, ref, group_mean{}, no_normalizer{}, so);
    const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
    apply_first_order(adam, ref, h.grad);
    CHECK(same_bits(theta, ref));
    CHECK(rep.loss == h.sur.loss);
    // dr_grpo: every active token of row n has coefficient -A_n / (B * L_max).
    CHECK_THAT(rep.coefficients[0], Catch::Matchers::WithinRel(-rep.advantages[0] / (8.0 * 4.0 * 5.0), 1e-15));
  }
  SECTION("REINFORCE without and with a baseline") {
    std::vector<double> theta = theta0, ref = theta0;
    reinforce<double> s(parameters<double>(std::span<double>(theta)), adam);
    const auto h = hand_step(ro, ref, no_baseline{}, no_normalizer{}, surrogate_options{});
    s.step(ro.batch(), ro.layout, ro.vjp(theta));
    apply_first_order(adam, ref, h.grad);
    CHECK(same_bits(theta, ref));
    std::vector<double> theta2 = theta0, ref2 = theta0;
    stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s2(
        parameters<double>(std::span<double>(theta2)), adam);
    const auto h2 = hand_step(ro, ref2, group_mean{}, no_normalizer{}, surrogate_options{});
    s2.step(ro.batch(), ro.layout, ro.vjp(theta2));
    apply_first_order(adam, ref2, h2.grad);
    CHECK(same_bits(theta2, ref2));
  }
  SECTION("GRPO with batch-std scaling, and verl's group std") {
    std::vector<double> theta = theta0, ref = theta0;
    stepper<score_function<>, group_mean, batch_std, optim::adam<>, double> s(parameters<double>(std::span<double>(theta)),
                                                                              adam);
    const auto h = hand_step(ro, ref, group_mean{}, batch_std{}, surrogate_options{});
    s.step(ro.batch(), ro.layout, ro.vjp(theta));
    apply_first_order(adam, ref, h.grad);
    CHECK(same_bits(theta, ref));
    std::vector<double> theta2 = theta0, ref2 = theta0;
    grpo<double> s2(parameters<double>(std::span<double>(theta2)), adam, score_function<>{}, group_mean::verl(),
                    group_std::verl());
    const auto h2 = hand_step(ro, ref2, group_mean::verl(), group_std::verl(), surrogate_options{});
    s2.step(ro.batch(), ro.layout, ro.vjp(theta2));
    apply_first_order(adam, ref2, h2.grad);
    CHECK(same_bits(theta2, ref2));
  }
  SECTION("GRPO advantages + SGD: theta - lr g exactly") {
    std::vector<double> theta = theta0;
    stepper<score_function<>, group_mean, group_std, optim::sgd<>, double> s(parameters<double>(std::span<double>(theta)),
                                                                             optim::sgd<>({.lr = 0.5}));
    const auto h = hand_step(ro, theta0, group_mean{}, group_std{}, surrogate_options{});
    s.step(ro.batch(), ro.layout, ro.vjp(theta));
    std::size_t moved = 0;
    for (std::size_t i = 0; i < theta.size(); ++i) {
      CHECK(theta[i] == theta0[i] - 0.5 * h.grad[i]);
      moved += theta[i] != theta0[i] ? 1 : 0;
    }
    CHECK(moved > 10);
  }
  SECTION("RLOO preset: TRL's RLOO loss, and the identity A_RLOO = G/(G-1) (r - mean)") {
    std::vector<double> theta = theta0, ref = theta0;
    rloo<double> s(parameters<double>(std::span<double>(theta)), adam);
    // By hand: leave-one-out advantages and rloo_surrogate with old sequence log-probs = current.
    std::vector<double> r(ro.rewards.begin(), ro.rewards.end()), a(ro.S), old(ro.S, 0.0), coef(ro.S * ro.L),
        grad(theta.size(), 0.0);
    advantages(leave_one_out{}, no_normalizer{}, std::span<const double>(r), ro.layout, std::span<double>(a));
    for (std::size_t n = 0; n < ro.S; ++n) {
      for (std::size_t t = 0; t < ro.L; ++t) old[n] += ro.logp[n * ro.L + t];
    }
    const auto sr = rloo_surrogate(rloo_options{}, token_batch<double>{ro.S, ro.L, ro.logp, {}, {}, {}, a},
                                   std::span<const double>(old), std::span<double>(coef));
    ro.pol.accumulate_gradient(ref, ro.per_sample, ro.tokens, coef, grad);
    const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
    apply_first_order(adam, ref, grad);
    CHECK(same_bits(theta, ref));
    CHECK(rep.loss == sr.loss);
    // RLOO's coefficient is -A_RLOO / B per token; REINFORCE with the group mean and the default
    // token-mean aggregation has -(r - mean) / (B L): RLOO = L G/(G-1) x it (algorithms.md §11).
    std::vector<double> th2 = theta0;
    stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s2(
        parameters<double>(std::span<double>(th2)), adam);
    const auto e = s2.estimator().estimate(s2, ro.batch(), ro.layout, ro.vjp(th2));
    const double factor = 3.0 * 4.0 / 3.0;
    for (std::size_t i = 0; i < ro.S * ro.L; ++i) {
      CHECK_THAT(rep.coefficients[i], Catch::Matchers::WithinRel(factor * e.coefficients[i], 1e-12) ||
                                          Catch::Matchers::WithinAbs(0.0, 1e-300));
    }
  }
  SECTION("RLOO with batch whitening (normalize_advantages)") {
    std::vector<double> theta = theta0;
    stepper<score_function<rloo_loss>, leave_one_out, batch_whiten, optim::adam<>, double> s(
        parameters<double>(std::span<double>(theta)), adam);
    const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
    std::vector<double> r(ro.rewards.begin(), ro.rewards.end()), a(ro.S);
    advantages(leave_one_out{}, batch_whiten{}, std::span<const double>(r), ro.layout, std::span<double>(a));
    CHECK(same_bits(rep.advantages, a));
  }
}

TEST_CASE("several reward functions with weights use the stepper's policies", "[pg][stepper][multi_reward]") {
  addition_rollouts<double> ro(8, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  ro.draw(theta, 31, 0);
  // Reward 0: exact answer; reward 1: "format" = the last digit right; NaN for two completions.
  std::vector<double> rpf(2 * ro.S);
  std::uint8_t ans[3];
  for (std::size_t n = 0; n < ro.S; ++n) {
    ro.pol.answer(ro.per_sample[n], ans);
    rpf[2 * n] = static_cast<double>(ro.rewards[n]);
    rpf[2 * n + 1] = ro.tokens[n * 3 + 2] == ans[2] ? 1.0 : 0.0;
  }
  rpf[1] = std::nan("");
  rpf[6] = std::nan("");
  const std::vector<double> w{1.0, 0.5};
  const auto mode = GENERATE(reward_aggregation::sum_then_normalize, reward_aggregation::normalize_then_sum,
                             reward_aggregation::decompose);
  std::vector<double> th = theta;
  grpo<double> s(parameters<double>(std::span<double>(th)), optim::adam<>{}, score_function<>({.reward_mode = mode}));
  pg_batch<double, double, double> b;
  b.rewards = rpf;
  b.reward_weights = w;
  b.length = ro.L;
  b.logp = ro.logp;
  const auto rep = s.step(b, ro.layout, ro.vjp(th));
  multi_reward<group_mean, group_std> mr(group_mean{}, group_std{}, w, mode);
  std::vector<double> a(ro.S);
  const advantage_stats st = mr.compute(std::span<const double>(rpf), ro.layout, std::span<double>(a));
  CHECK(same_bits(rep.advantages, a));
  CHECK(rep.stats.nan_outcomes == st.nan_outcomes);
  CHECK(rep.stats.constant_groups == st.constant_groups);
  // Mean of the weighted sums over scorable rows (all rows here have at least one reward).
  double sum = 0.0;
  for (std::size_t n = 0; n < ro.S; ++n) {
    double r = 0.0;
    for (std::size_t k = 0; k < 2; ++k) r += std::isnan(rpf[2 * n + k]) ? 0.0 : w[k] * rpf[2 * n + k];
    sum += r;
  }
  CHECK_THAT(rep.reward_mean, Catch::Matchers::WithinRel(sum / static_cast<double>(ro.S), 1e-14));
  // BNPO decomposition through the bnpo preset: each function gets its own Beta fit.
  if (mode == reward_aggregation::decompose) {
    std::vector<double> th2 = theta;
    bnpo<double> s2(parameters<double>(std::span<double>(th2)), optim::adam<>{}, score_function<>({.reward_mode = mode}));
    const auto rep2 = s2.step(b, ro.layout, ro.vjp(th2));
    multi_reward<bnpo_mean, beta_normalizer> mb(bnpo_mean{}, beta_normalizer{}, w, mode);
    mb.compute(std::span<const double>(rpf), ro.layout, std::span<double>(a));
    CHECK(same_bits(rep2.advantages, a));
  }
}

TEST_CASE("PPO iterations: stored old log-probs and advantages, importance ratios, clipping", "[pg][stepper][ppo]") {
  addition_rollouts<double> ro(8, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  surrogate_options so;
  so.eps_low = 0.2;
  so.eps_high = 0.28;
  grpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>({.lr = 0.2}),
                 score_function<>(so, {.iterations = 3}));
  ro.draw(theta, 41, 0);
  const std::vector<double> old0 = ro.logp;
  const auto r0 = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(r0.iteration == 0);
  CHECK(r0.generation == 0);
  CHECK(r0.diagnostics.ratio_min == 1.0);
  CHECK(r0.diagnostics.ratio_max == 1.0);
  const std::vector<double> adv0(r0.advantages.begin(), r0.advantages.end());
  CHECK(s.est_state().iteration == 1);
  CHECK(same_bits(std::span<const double>(s.est_state().old_logp), old0));

  // Iteration 1: fresh log-probs under the updated parameters; rewards are not read.
  ro.rescore(theta);
  pg_batch<double> b1 = ro.batch();
  b1.rewards = {};
  const std::vector<double> th_before = theta;
  const auto r1 = s.step(b1, ro.layout, ro.vjp(theta));
  CHECK(r1.iteration == 1);
  CHECK(r1.generation == 0);
  CHECK(same_bits(r1.advantages, adv0));
  std::vector<double> coef(ro.S * ro.L);
  const auto sr = clipped_surrogate(so).evaluate(token_batch<double>{ro.S, ro.L, ro.logp, old0, {}, {}, adv0},
                                                 std::span<double>(coef));
  CHECK(same_bits(r1.coefficients, coef));
  CHECK(r1.loss == sr.loss);
  CHECK(r1.diagnostics.ratio_max > 1.0);  // the first update moved the policy
  CHECK(r1.diagnostics.ratio_min < 1.0);
  CHECK(r1.diagnostics.clip_region_fraction > 0.0);  // lr 0.2 pushes some ratios out of [0.8, 1.28]
  CHECK(theta != th_before);

  // A batch of another size in the middle of a generation batch: size_mismatch, nothing changes.
  addition_rollouts<double> other(4, 4);
  other.draw(theta, 41, 9);
  const std::vector<double> th_keep = theta;
  CHECK_THROWS_AS(s.step(other.batch(), other.layout, other.vjp(theta)), size_mismatch);
  CHECK(s.est_state().iteration == 2);
  CHECK(theta == th_keep);

  // Iteration 2 with an explicit old_logp: the supplied one wins (here = logp: ratio 1).
  ro.rescore(theta);
  pg_batch<double> b2 = ro.batch();
  b2.rewards = {};
  b2.old_logp = ro.logp;
  const auto r2 = s.step(b2, ro.layout, ro.vjp(theta));
  CHECK(r2.iteration == 2);
  CHECK(r2.diagnostics.ratio_min == 1.0);
  CHECK(r2.diagnostics.ratio_max == 1.0);
  CHECK(s.est_state().iteration == 0);

  // The next call starts generation 1 and needs rewards again.
  ro.draw(theta, 41, 1);
  const auto r3 = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(r3.generation == 1);
  CHECK(r3.iteration == 0);
  pg_batch<double> no_rewards = ro.batch();
  no_rewards.rewards = {};
  ro.rescore(theta);
  CHECK(s.step(no_rewards, ro.layout, ro.vjp(theta)).iteration == 1);
  CHECK(s.step(no_rewards, ro.layout, ro.vjp(theta)).iteration == 2);
  CHECK_THROWS_AS(s.step(no_rewards, ro.layout, ro.vjp(theta)), size_mismatch);  // generation 2 needs rewards
  CHECK(s.est_state().iteration == 0);
  CHECK(s.steps() == 6);
}

namespace {

// Runs `calls` step calls: a new generation batch every `iters` calls, fresh log-probs in between.
template <class S>
void run_calls(S& s, std::vector<double>& theta, addition_rollouts<double>& ro, std::uint32_t first, std::uint32_t calls,
               std::uint32_t iters) {
  for (std::uint32_t c = first; c < first + calls; ++c) {
    if (c % iters == 0) {
      ro.draw(theta, 51, c / iters);
    } else {
      ro.rescore(theta);
    }
    s.step(ro.batch(), ro.layout, ro.vjp(theta));
  }
}

}  // namespace

TEST_CASE("save/load through the stepper resumes bit-identically, also between PPO iterations", "[pg][stepper][state]") {
  const std::uint32_t iters = GENERATE(1u, 3u);
  addition_rollouts<double> ro(8, 4), ro2(8, 4);
  std::vector<double> theta = warm_theta(ro.pol, 1.0);
  const optim::adam<> opt({.lr = 0.05});
  const score_function<> est(surrogate_options{}, {.iterations = iters});
  bnpo<double> a(parameters<double>(std::span<double>(theta)), opt, est);
  run_calls(a, theta, ro, 0, 7, iters);  // with 3 iterations: saved after iteration 0 of batch 2
  std::stringstream ss;
  a.save(ss);
  std::vector<double> copy = theta;
  ro2 = ro;
  run_calls(a, theta, ro, 7, 8, iters);

  bnpo<double> b(parameters<double>(std::span<double>(copy)), opt, est);
  b.load(ss);
  CHECK(b.steps() == 7);
  CHECK(b.est_state().iteration == (iters == 1 ? 0u : 1u));
  run_calls(b, copy, ro2, 7, 8, iters);
  CHECK(same_bits(theta, copy));
  CHECK(b.steps() == a.steps());

  // Another composition refuses the state; a stepper with other PPO options refuses to continue
  // a generation batch it cannot finish.
  std::stringstream ss2;
  a.save(ss2);
  const std::string bytes = ss2.str();
  std::vector<double> t3 = copy;
  rloo<double> r(parameters<double>(std::span<double>(t3)), opt);
  std::stringstream in1(bytes);
  CHECK_THROWS_AS(r.load(in1), state_error);
  if (iters == 3) {
    // a is now after 15 calls: iteration 0 of batch 5 is next, so save one call later (mid-batch).
    ro.draw(theta, 51, 5);
    a.step(ro.batch(), ro.layout, ro.vjp(theta));
    std::stringstream mid;
    a.save(mid);
    bnpo<double> c(parameters<double>(std::span<double>(t3)), opt);  // iterations = 1
    c.load(mid);
    ro.rescore(t3);
    CHECK_THROWS_AS(c.step(ro.batch(), ro.layout, ro.vjp(t3)), state_error);
  }
}

TEST_CASE("bad input: clear exceptions, nothing changes", "[pg][stepper][errors]") {
  addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  const std::vector<double> keep = theta;
  bnpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{});
  ro.draw(theta, 61, 0);
  auto vjp = ro.vjp(theta);
  auto unchanged = [&] {
    CHECK(theta == keep);
    CHECK(s.steps() == 0);
    CHECK(s.est_state().iteration == 0);
    CHECK(s.est_state().generations == 0);
  };
  SECTION("G < 1 and an empty batch") {
    CHECK_THROWS_AS(group_layout::contiguous(4, 0), invalid_argument);
    CHECK_THROWS_AS(group_layout::contiguous(0, 4), invalid_argument);
    const group_layout empty;
    CHECK_THROWS_AS(s.step(ro.batch(), empty, vjp), invalid_argument);
    unchanged();
  }
  SECTION("mismatched lengths") {
    pg_batch<double> b = ro.batch();
    b.logp = std::span<const double>(ro.logp).first(ro.S * ro.L - 1);
    CHECK_THROWS_AS(s.step(b, ro.layout, vjp), size_mismatch);
    b = ro.batch();
    b.rewards = std::span<const double>(ro.rewards).first(ro.S - 1);
    CHECK_THROWS_AS(s.step(b, ro.layout, vjp), size_mismatch);
    b = ro.batch();
    const std::vector<double> mask(ro.S * ro.L + 1, 1.0);
    b.mask = mask;
    CHECK_THROWS_AS(s.step(b, ro.layout, vjp), size_mismatch);
    b = ro.batch();
    b.old_logp = std::span<const double>(ro.logp).first(3);
    CHECK_THROWS_AS(s.step(b, ro.layout, vjp), size_mismatch);
    b = ro.batch();
    b.length = 0;
    CHECK_THROWS_AS(s.step(b, ro.layout, vjp), invalid_argument);
    unchanged();
  }
  SECTION("BNPO rewards outside [min, max]") {
    ro.rewards[5] = 1.5;
    CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, vjp), invalid_argument);
    ro.rewards[5] = -0.25;
    CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, vjp), invalid_argument);
    unchanged();
  }
  SECTION("bnpo_mean and beta_normalizer built from different options") {
    bnpo_options wide;
    wide.max_value = 2.0;
    std::vector<double> th2 = keep;
    bnpo<double> s2(parameters<double>(std::span<double>(th2)), optim::adam<>{}, score_function<>{}, bnpo_mean{},
                    beta_normalizer(wide));
    CHECK_THROWS_AS(s2.step(ro.batch(), ro.layout, ro.vjp(th2)), invalid_argument);
    CHECK(th2 == keep);
  }
  SECTION("non-finite log-probabilities and rewards") {
    ro.logp[7] = std::nan("");
    CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, vjp), nonfinite_error);
    ro.logp[7] = -INFINITY;
    CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, vjp), nonfinite_error);
    ro.logp[7] = -1.0;
    ro.rewards[2] = INFINITY;
    grpo<double> g(parameters<double>(std::span<double>(theta)), optim::adam<>{});
    CHECK_THROWS_AS(g.step(ro.batch(), ro.layout, vjp), nonfinite_error);
    CHECK(g.steps() == 0);
    unchanged();
  }
  SECTION("a masked non-finite log-prob is not read") {
    ro.logp[7] = std::nan("");
    std::vector<double> mask(ro.S * ro.L, 1.0);
    mask[7] = 0.0;
    pg_batch<double> b = ro.batch();
    b.mask = mask;
    const auto rep = s.step(b, ro.layout, vjp);
    CHECK(rep.applied);
    CHECK(rep.coefficients[7] == 0.0);
  }
  SECTION("a KL term without reference log-probs") {
    surrogate_options so;
    so.beta = 0.04;
    grpo<double> g(parameters<double>(std::span<double>(theta)), optim::adam<>{}, score_function<>(so));
    CHECK_THROWS_AS(g.step(ro.batch(), ro.layout, vjp), invalid_argument);
    pg_batch<double> b = ro.batch();
    b.ref_logp = ro.logp;  // reference = current: k3 KL 0, gradient term 0
    const auto rep = g.step(b, ro.layout, vjp);
    CHECK(rep.diagnostics.mean_kl == 0.0);
  }
  SECTION("invalid options") {
    CHECK_THROWS_AS(score_function<>(score_function_options{.iterations = 0}), invalid_argument);
    CHECK_THROWS_AS(score_function<>(surrogate_options{.eps_low = 1.5}), invalid_argument);
    CHECK_THROWS_AS(score_function<rloo_loss>(rloo_options{.eps_low = -0.1}), invalid_argument);
    CHECK_THROWS_AS(score_function<>(score_function_options{.final_eps = -1.0}), invalid_argument);
  }
  SECTION("a single-span callback for a parameter set of two tensors") {
    std::vector<double> t2 = keep;
    parameters<double> p;
    p.add(std::span<double>(t2).first(100)).add(std::span<double>(t2).subspan(100));
    grpo<double> g(std::move(p), optim::adam<>{});
    CHECK_THROWS_AS(g.step(ro.batch(), ro.layout, ro.vjp(t2)), invalid_argument);
    CHECK(t2 == keep);
  }
}

TEST_CASE("constant groups: zero advantage, counted, no gradient", "[pg][stepper][edge]") {
  addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  ro.draw(theta, 71, 0);
  // Groups: all right, all wrong, mixed, all NaN but one.
  const double nan = std::nan("");
  const std::vector<double> r{1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, nan, nan, nan, 1};
  std::copy(r.begin(), r.end(), ro.rewards.begin());
  grpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{});
  const auto rep = s.estimator().estimate(s, ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(rep.stats.constant_groups == 3);  // the last group has one valid reward
  CHECK(rep.stats.zero_groups == 3);
  CHECK(rep.stats.nan_outcomes == 3);
  for (std::size_t n = 0; n < 16; ++n) {
    const bool mixed = n >= 8 && n < 12;
    CHECK((rep.advantages[n] != 0.0) == mixed);
  }
  for (std::size_t i = 0; i < 16 * 3; ++i) {
    if (i < 24 || i >= 36) CHECK(rep.coefficients[i] == 0.0);
  }
  // All groups constant: the policy gradient is exactly 0 (Adam still takes its step: with m = 0
  // and v = 0 the update is 0 too).
  const std::vector<double> all_wrong(16, 0.0);
  std::copy(all_wrong.begin(), all_wrong.end(), ro.rewards.begin());
  const std::vector<double> before = theta;
  const auto r2 = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(r2.stats.constant_groups == 4);
  CHECK(r2.stats.zero_group_fraction() == 1.0);
  for (double g : r2.gradient[0]) CHECK(g == 0.0);
  CHECK(theta == before);
  CHECK(r2.applied);
  // REINFORCE without a baseline still learns from an all-right group.
  std::fill(ro.rewards.begin(), ro.rewards.begin() + 4, 1.0);
  reinforce<double> rf(parameters<double>(std::span<double>(theta)), optim::adam<>{});
  const auto r3 = rf.estimator().estimate(rf, ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(r3.advantages[0] == 1.0);
  CHECK(r3.stats.constant_groups == 4);
  CHECK(r3.stats.zero_groups == 3);
}

TEST_CASE("a throwing callback leaves parameters and state unchanged", "[pg][stepper][errors]") {
  addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  grpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{}, score_function<>({.iterations = 2}));
  ro.draw(theta, 81, 0);
  s.step(ro.batch(), ro.layout, ro.vjp(theta));
  const std::vector<double> keep = theta;
  const std::vector<double> old = s.est_state().old_logp;
  ro.rescore(theta);
  auto boom = [](std::span<const double>, std::span<double>) { throw std::runtime_error("backward failed"); };
  CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, boom), std::runtime_error);
  CHECK(theta == keep);
  CHECK(s.steps() == 1);
  CHECK(s.est_state().iteration == 1);
  CHECK(s.est_state().old_logp == old);
  const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(rep.iteration == 1);
}

TEST_CASE("multi-tensor parameters: one gradient span per tensor", "[pg][stepper]") {
  addition_rollouts<double> ro(8, 4);
  std::vector<double> a = warm_theta(ro.pol, 2.0), b = a;
  ro.draw(a, 91, 0);
  const optim::adam<> opt({.lr = 0.03});
  grpo<double> one(parameters<double>(std::span<double>(a)), opt);
  one.step(ro.batch(), ro.layout, ro.vjp(a));
  parameters<double> p;
  const std::size_t cut = 1000;
  p.add(std::span<double>(b).first(cut)).add(std::span<double>(b).subspan(cut));
  grpo<double> two(std::move(p), opt);
  std::vector<double> full(b.size());
  two.step(ro.batch(), ro.layout, [&](std::span<const double> coef, std::span<const std::span<double>> g) {
    REQUIRE(g.size() == 2);
    std::fill(full.begin(), full.end(), 0.0);
    ro.pol.accumulate_gradient(b, ro.per_sample, ro.tokens, coef, full);
    for (std::size_t i = 0; i < cut; ++i) g[0][i] += full[i];
    for (std::size_t i = cut; i < full.size(); ++i) g[1][i - cut] += full[i];
  });
  CHECK(same_bits(a, b));
}

TEST_CASE("estimate: the gradient without an update, the PPO bookkeeping untouched", "[pg][stepper]") {
  addition_rollouts<double> ro(8, 4);
  std::vector<double> theta = warm_theta(ro.pol, 2.0);
  grpo<double> s(parameters<double>(std::span<double>(theta)), optim::adam<>{}, score_function<>({.iterations = 2}));
  ro.draw(theta, 101, 0);
  const std::vector<double> keep = theta;
  const auto e = s.estimator().estimate(s, ro.batch(), ro.layout, ro.vjp(theta));
  CHECK(theta == keep);
  CHECK(s.steps() == 0);
  CHECK(s.est_state().iteration == 0);
  CHECK(!e.applied);
  const std::vector<double> g(e.gradient[0].begin(), e.gradient[0].end());
  const auto h = hand_step(ro, theta, group_mean{}, group_std{}, surrogate_options{});
  CHECK(same_bits(g, h.grad));
  // In the middle of a generation batch, estimate does not disturb the stored data.
  s.step(ro.batch(), ro.layout, ro.vjp(theta));
  const std::vector<double> adv = s.est_state().advantages;
  addition_rollouts<double> other(4, 4);
  other.draw(theta, 101, 1);
  s.estimator().estimate(s, other.batch(), other.layout, other.vjp(theta));
  CHECK(s.est_state().advantages == adv);
  CHECK(s.est_state().iteration == 1);
}

TEST_CASE("float steppers: grpo<float> matches the hand-composed float step", "[pg][stepper][float]") {
  addition_rollouts<float> ro(8, 4);
  std::vector<float> theta = warm_theta(ro.pol, 2.0), ref = theta;
  const optim::adam<> opt({.lr = 0.01});
  grpo<float> s(parameters<float>(std::span<float>(theta)), opt);
  ro.draw(theta, 111, 0);
  const auto h = hand_step(ro, ref, group_mean{}, group_std{}, surrogate_options{});
  const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  apply_first_order(opt, ref, h.grad);
  CHECK(same_bits(theta, ref));
  CHECK(same_bits(rep.coefficients, h.coef));
  // Boolean masks and double rewards with float log-probs.
  std::vector<unsigned char> mask(ro.S * ro.L);
  for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<unsigned char>(i != 4);
  std::vector<double> rd(ro.rewards.begin(), ro.rewards.end());
  pg_batch<float, unsigned char, double> b;
  b.rewards = rd;
  b.length = ro.L;
  b.logp = ro.logp;
  b.mask = mask;
  const auto r2 = s.step(b, ro.layout, ro.vjp(theta));
  CHECK(r2.coefficients[4] == 0.0f);
  CHECK(r2.diagnostics.active_tokens == static_cast<double>(ro.S * ro.L - 1));
}

TEST_CASE("presets are aliases of the one stepper template", "[pg][stepper]") {
  STATIC_REQUIRE(std::is_same_v<grpo<float>, stepper<score_function<>, group_mean, group_std, optim::adam<>, float>>);
  STATIC_REQUIRE(std::is_same_v<bnpo<double>, stepper<with_defaults<score_function<>, paper::bnpo_loss>, bnpo_mean,
                                                      beta_normalizer, optim::adam<>, double>>);
  STATIC_REQUIRE(std::is_same_v<rloo<>, stepper<score_function<rloo_loss>, leave_one_out, no_normalizer, optim::adam<>, float>>);
  STATIC_REQUIRE(score_function<>::family == estimator_family::policy_gradient);
  CHECK(grpo<float>::kind() == "score_function/group_mean/group_std/adam<constant>/float32");
  CHECK(rloo<double>::kind() == "score_function_rloo/leave_one_out/no_normalizer/adam<constant>/float64");
}
