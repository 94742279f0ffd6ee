// SPDX-License-Identifier: Apache-2.0
// Real training runs through the policy-gradient steppers: the addition policy
// (bits/problems/addition_policy.hpp, 2-digit addition, reward 1 iff the answer is exact) learns
// from W = 0 (greedy accuracy 0.001: only 0 + 0 is right) with `grpo` and `bnpo`, and, for
// comparison, with `rloo` and `reinforce`; fixed seeds, so every run is deterministic. Then the
// variance of each method's gradient estimate across independent batches at one fixed parameter
// point. Longer comparisons (more methods, seeds, PPO iterations, SGD) are tagged [.long].
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using pgtest::addition_rollouts;

namespace {

constexpr std::size_t kP = 32, kG = 8;  // prompts per batch, completions per prompt
constexpr std::size_t kEvery = 25;       // curve resolution (generation batches)

struct curve_point {
  std::size_t batches = 0;   // generation batches so far
  double reward = 0.0;       // mean reward of the last kEvery sampled batches
  double accuracy = 0.0;     // greedy accuracy on 1000 held-out prompts
};

struct run_result {
  std::string name;
  double acc_start = 0.0;
  std::vector<curve_point> curve;
  long batches_to_target = -1;  // first curve point with accuracy >= target
  double final_accuracy() const { return curve.empty() ? acc_start : curve.back().accuracy; }
};

// Trains `s` (whose parameters are `theta`) for `batches` generation batches of kP x kG
// completions, `iterations` step calls per batch (fresh log-probs after the first).
template <class S>
run_result train(const std::string& name, S& s, std::vector<double>& theta, std::size_t batches, std::size_t iterations,
                 std::uint64_t seed, double target) {
  addition_rollouts<double> ro(kP, kG);
  std::vector<problems::addition_prompt> test(1000);
  ro.pol.make_prompts(noise_key{1234, 9, 0}, test);  // the same held-out set for every run
  run_result res;
  res.name = name;
  res.acc_start = ro.pol.greedy_accuracy(theta, test);
  double reward_sum = 0.0;
  for (std::size_t k = 0; k < batches; ++k) {
    ro.draw(theta, seed, static_cast<std::uint32_t>(k));
    reward_sum += ro.mean_reward();
    for (std::size_t it = 0; it < iterations; ++it) {
      if (it > 0) ro.rescore(theta);
      s.step(ro.batch(), ro.layout, ro.vjp(theta));
    }
    if ((k + 1) % kEvery == 0) {
      curve_point c{k + 1, reward_sum / static_cast<double>(kEvery), ro.pol.greedy_accuracy(theta, test)};
      reward_sum = 0.0;
      res.curve.push_back(c);
      if (res.batches_to_target < 0 && c.accuracy >= target) res.batches_to_target = static_cast<long>(k + 1);
    }
  }
  return res;
}

// One table: a row per curve point, "reward/accuracy" per method.
void print_curves(const char* title, const std::vector<run_result>& runs) {
  std::printf("\n%s\n  batches", title);
  for (const auto& r : runs) std::printf(" | %-15s", r.name.c_str());
  std::printf("\n        0");
  for (const auto& r : runs) std::printf(" |   -   / %5.3f ", r.acc_start);
  std::printf("\n");
  for (std::size_t i = 0; i < runs.front().curve.size(); ++i) {
    std::printf("  %7zu", runs.front().curve[i].batches);
    for (const auto& r : runs) std::printf(" | %5.3f / %5.3f ", r.curve[i].reward, r.curve[i].accuracy);
    std::printf("\n");
  }
  std::printf("  (mean reward of the last %zu batches / greedy accuracy on 1000 held-out prompts)\n  reached 0.9 at:",
              kEvery);
  for (const auto& r : runs) std::printf(" %s %ld;", r.name.c_str(), r.batches_to_target);
  std::printf("\n");
}

const optim::adam<> kAdam({.lr = 0.05});

run_result run_grpo(std::size_t batches, std::uint64_t seed, std::size_t iters = 1) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  grpo<double> s(parameters<double>(std::span<double>(theta)), kAdam, score_function<>({.iterations = iters}));
  return train(iters == 1 ? "GRPO" : "GRPO mu=" + std::to_string(iters), s, theta, batches, iters, seed, 0.9);
}
run_result run_bnpo(std::size_t batches, std::uint64_t seed, std::size_t iters = 1) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  bnpo<double> s(parameters<double>(std::span<double>(theta)), kAdam, score_function<>({.iterations = iters}));
  return train(iters == 1 ? "BNPO" : "BNPO mu=" + std::to_string(iters), s, theta, batches, iters, seed, 0.9);
}
run_result run_rloo(std::size_t batches, std::uint64_t seed) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  rloo<double> s(parameters<double>(std::span<double>(theta)), kAdam);
  return train("RLOO", s, theta, batches, 1, seed, 0.9);
}
run_result run_reinforce(std::size_t batches, std::uint64_t seed) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  reinforce<double> s(parameters<double>(std::span<double>(theta)), kAdam);
  return train("REINFORCE", s, theta, batches, 1, seed, 0.9);
}
run_result run_reinforce_mean(std::size_t batches, std::uint64_t seed) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s(
      parameters<double>(std::span<double>(theta)), kAdam);
  return train("REINFORCE+mean", s, theta, batches, 1, seed, 0.9);
}
run_result run_dr_grpo(std::size_t batches, std::uint64_t seed) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  surrogate_options so;
  so.aggregation = loss_aggregation::dr_grpo;
  stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s(
      parameters<double>(std::span<double>(theta)), kAdam, score_function<>(so));
  return train("Dr. GRPO", s, theta, batches, 1, seed, 0.9);
}
run_result run_grpo_sgd(std::size_t batches, std::uint64_t seed) {
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  // Token-mean aggregation over B L = 768 tokens makes per-parameter gradients small: plain SGD
  // needs a large step (momentum 0.9 as usual).
  stepper<score_function<>, group_mean, group_std, optim::sgd<>, double> s(parameters<double>(std::span<double>(theta)),
                                                                           optim::sgd<>({.lr = 20.0, .momentum = 0.9}));
  return train("GRPO+SGD", s, theta, batches, 1, seed, 0.9);
}

}  // namespace

TEST_CASE("addition learns through the grpo and bnpo steppers; rloo and reinforce for comparison",
          "[pg][training]") {
  // 250 generation batches of 32 prompts x 8 completions, Adam lr 0.05, seed 1234. Stated target:
  // greedy accuracy >= 0.9 within 250 batches for all four (from 0.001 at W = 0). The bound is the
  // same for each because their mean gradients point the same way (cosine >= 0.995 to REINFORCE's
  // at the mid-point, the variance test below) and Adam's step does not depend on the gradient's
  // scale, so none of them has a reason to need a longer budget; the batch at which each reaches
  // 0.9 is printed for comparison.
  const std::size_t batches = 250;
  const std::vector<run_result> runs{run_grpo(batches, 1234), run_bnpo(batches, 1234), run_rloo(batches, 1234),
                                     run_reinforce(batches, 1234)};
  print_curves("Reward curves, seed 1234, Adam lr 0.05, P = 32, G = 8:", runs);
  for (const auto& r : runs) {
    INFO(r.name << ": greedy accuracy " << r.acc_start << " -> " << r.final_accuracy());
    CHECK(r.acc_start < 0.01);
  }
  CHECK(runs[0].final_accuracy() >= 0.9);
  CHECK(runs[0].batches_to_target > 0);
  CHECK(runs[1].final_accuracy() >= 0.9);
  CHECK(runs[1].batches_to_target > 0);
  CHECK(runs[2].final_accuracy() >= 0.9);
  CHECK(runs[2].batches_to_target > 0);
  CHECK(runs[3].final_accuracy() >= 0.9);
  CHECK(runs[3].batches_to_target > 0);
}

TEST_CASE("longer comparison: methods x seeds, PPO iterations, SGD", "[pg][training][.long]") {
  const std::size_t batches = 400;
  for (std::uint64_t seed : {1234u, 99u, 2025u}) {
    const std::vector<run_result> runs{run_grpo(batches, seed),     run_bnpo(batches, seed),
                                       run_rloo(batches, seed),     run_reinforce(batches, seed),
                                       run_reinforce_mean(batches, seed), run_dr_grpo(batches, seed),
                                       run_grpo(batches, seed, 2),  run_bnpo(batches, seed, 2),
                                       run_grpo_sgd(batches, seed)};
    const std::string title = "Seed " + std::to_string(seed) + ":";
    print_curves(title.c_str(), runs);
    // Stated: every composition reaches greedy accuracy 0.9 within 400 batches on these seeds.
    for (const auto& r : runs) {
      INFO(r.name << " seed " << seed << ": final accuracy " << r.final_accuracy());
      CHECK(r.batches_to_target > 0);
      CHECK(r.final_accuracy() >= 0.9);
    }
  }
}

namespace {

// Per-coordinate sums of a stream of gradient vectors. (Plain sums: the variances here are
// within a factor ~20 of the squared means, so the cancellation in sum x^2 - n mean^2 costs no
// more than a few digits of double precision.)
struct vector_moments {
  std::size_t n = 0;
  std::vector<double> sum, sumsq, mean;
  explicit vector_moments(std::size_t d) : sum(d, 0.0), sumsq(d, 0.0), mean(d, 0.0) {}
  void add(std::span<const double> g) {
    ++n;
    for (std::size_t i = 0; i < g.size(); ++i) {
      sum[i] += g[i];
      sumsq[i] += g[i] * g[i];
    }
  }
  void finish() {
    for (std::size_t i = 0; i < sum.size(); ++i) mean[i] = sum[i] / static_cast<double>(n);
  }
  // Trace of the sample covariance: sum_i var_i (unbiased).
  double trace_cov() const {
    double s = 0.0;
    for (std::size_t i = 0; i < sum.size(); ++i) s += sumsq[i] - sum[i] * mean[i];
    return s / static_cast<double>(n - 1);
  }
  double mean_sq() const {
    double s = 0.0;
    for (double x : mean) s += x * x;
    return s;
  }
};

// The relative variance rho = tr Cov(g) / |E g|^2 of one method's estimates g_1..g_R (a scale-free
// noise-to-signal ratio: GRPO's and BNPO's normalisations rescale the gradient) and, for paired
// comparisons, its per-batch influence values: with T = mean_r |g_r - gbar|^2 and M = |gbar|^2,
// rho_hat = T / M and (delta method) rho_hat - rho ~ mean_r IF_r with
// IF_r = (|g_r - gbar|^2 - T) / M - 2 T gbar.(g_r - gbar) / M^2. For two methods on the SAME
// batches, rho_a - rho_b has standard error sd_r(IF_a,r - IF_b,r) / sqrt(R).
struct relative_variance {
  double rho = 0.0;
  std::vector<double> influence;
};
relative_variance relative_variance_of(const std::vector<std::vector<double>>& g) {
  const std::size_t R = g.size(), d = g.front().size();
  std::vector<double> mean(d, 0.0);
  for (const auto& v : g)
    for (std::size_t i = 0; i < d; ++i) mean[i] += v[i] / static_cast<double>(R);
  double M = 0.0;
  for (double x : mean) M += x * x;
  std::vector<double> sq(R, 0.0), proj(R, 0.0);
  double T = 0.0;
  for (std::size_t r = 0; r < R; ++r) {
    for (std::size_t i = 0; i < d; ++i) {
      const double dev = g[r][i] - mean[i];
      sq[r] += dev * dev;
      proj[r] += mean[i] * dev;
    }
    T += sq[r] / static_cast<double>(R);
  }
  relative_variance out;
  out.rho = T / M;
  out.influence.resize(R);
  for (std::size_t r = 0; r < R; ++r) out.influence[r] = (sq[r] - T) / M - 2.0 * T * proj[r] / (M * M);
  return out;
}
// z = (rho_a - rho_b) / SE for paired estimates.
double paired_z(const relative_variance& a, const relative_variance& b) {
  const std::size_t R = a.influence.size();
  double m = 0.0, ss = 0.0;
  for (std::size_t r = 0; r < R; ++r) m += (a.influence[r] - b.influence[r]) / static_cast<double>(R);
  for (std::size_t r = 0; r < R; ++r) {
    const double e = a.influence[r] - b.influence[r] - m;
    ss += e * e;
  }
  const double se = std::sqrt(ss / static_cast<double>(R - 1) / static_cast<double>(R));
  return (a.rho - b.rho) / se;
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST_CASE("gradient variance per method at a fixed parameter point", "[pg][training][variance]") {
  // The point: GRPO trained for 150 batches from W = 0 (seed 1234), mid-way to the solution (mean
  // reward ~0.5).
  const problems::addition_policy<double> pol;
  std::vector<double> theta(pol.dimension(), 0.0);
  {
    grpo<double> s(parameters<double>(std::span<double>(theta)), kAdam);
    train("warmup", s, theta, 150, 1, 1234, 2.0);
  }
  const std::size_t d = theta.size(), R = 300;
  // Every method estimates from the SAME R independent batches (seed 777, batch r): their
  // estimates are paired, so differences between methods are not sampling noise of the batches.
  reinforce<double> s_nb(parameters<double>(std::span<double>(theta)), kAdam);
  stepper<score_function<>, group_mean, no_normalizer, optim::adam<>, double> s_gm(
      parameters<double>(std::span<double>(theta)), kAdam);
  rloo<double> s_rloo(parameters<double>(std::span<double>(theta)), kAdam);
  grpo<double> s_grpo(parameters<double>(std::span<double>(theta)), kAdam);
  // TRL's loss options for every method (BNPO's preset would sum over tokens), so the variances compare the
  // advantages alone.
  bnpo<double> s_bnpo(parameters<double>(std::span<double>(theta)), kAdam, score_function<>{});
  stepper<score_function<>, group_mean, batch_std, optim::adam<>, double> s_bstd(
      parameters<double>(std::span<double>(theta)), kAdam);
  const char* names[] = {"REINFORCE (no baseline)", "REINFORCE (group mean)", "RLOO", "GRPO (group std)",
                         "BNPO", "GRPO (batch std)"};
  std::vector<vector_moments> mom(6, vector_moments(d));
  std::vector<std::vector<std::vector<double>>> per_batch(6);
  const auto record = [&](std::size_t m, std::span<const double> g) {
    mom[m].add(g);
    per_batch[m].emplace_back(g.begin(), g.end());
  };
  addition_rollouts<double> ro(kP, kG);
  double reward = 0.0;
  std::size_t zero_groups = 0;
  const std::vector<double> keep = theta;
  for (std::size_t r = 0; r < R; ++r) {
    ro.draw(theta, 777, static_cast<std::uint32_t>(r));
    reward += ro.mean_reward();
    const auto vjp = ro.vjp(theta);
    record(0, s_nb.estimator().estimate(s_nb, ro.batch(), ro.layout, vjp).gradient[0]);
    const auto e1 = s_gm.estimator().estimate(s_gm, ro.batch(), ro.layout, vjp);
    record(1, e1.gradient[0]);
    zero_groups += e1.stats.zero_groups;
    record(2, s_rloo.estimator().estimate(s_rloo, ro.batch(), ro.layout, vjp).gradient[0]);
    record(3, s_grpo.estimator().estimate(s_grpo, ro.batch(), ro.layout, vjp).gradient[0]);
    record(4, s_bnpo.estimator().estimate(s_bnpo, ro.batch(), ro.layout, vjp).gradient[0]);
    record(5, s_bstd.estimator().estimate(s_bstd, ro.batch(), ro.layout, vjp).gradient[0]);
  }
  // E[(r_j - mean) grad log p_j] = (1 - 1/G) E[r_j grad log p_j]: the no-baseline estimate minus
  // G/(G-1) times the group-mean one has mean 0 (paired on the same batches, seed 778); without
  // the factor it has mean E[g_nb]/G. Pairs (G = 2, 128 prompts per batch) make that control bias
  // half the mean gradient, so Ru = 500 batches give the test ample power.
  const std::size_t Ru = 500, Pu = 128, Gu = 2;
  const double G = static_cast<double>(Gu);
  addition_rollouts<double> pairs(Pu, Gu);
  vector_moments paired(d), control(d);
  std::vector<double> g_nb(d), diff(d);
  for (std::size_t r = 0; r < Ru; ++r) {
    pairs.draw(theta, 778, static_cast<std::uint32_t>(r));
    const auto vjp = pairs.vjp(theta);
    const auto e0 = s_nb.estimator().estimate(s_nb, pairs.batch(), pairs.layout, vjp);
    std::copy(e0.gradient[0].begin(), e0.gradient[0].end(), g_nb.begin());
    const auto e1 = s_gm.estimator().estimate(s_gm, pairs.batch(), pairs.layout, vjp);
    for (std::size_t i = 0; i < d; ++i) diff[i] = g_nb[i] - G / (G - 1.0) * e1.gradient[0][i];
    paired.add(diff);
    for (std::size_t i = 0; i < d; ++i) diff[i] = g_nb[i] - e1.gradient[0][i];
    control.add(diff);
  }
  REQUIRE(theta == keep);  // estimate() never updates
  for (auto& m : mom) m.finish();
  paired.finish();
  control.finish();
  std::printf("\nGradient estimates at GRPO's batch-150 parameters: %zu batches of %zu x %zu, mean reward %.3f, "
              "%.1f%% zero-advantage groups\n",
              R, kP, kG, reward / static_cast<double>(R),
              100.0 * static_cast<double>(zero_groups) / static_cast<double>(R * kP));
  std::printf("  %-24s | %12s | %12s | %10s | %s\n", "method", "tr Cov", "|E g|^2", "tr Cov/|E g|^2",
              "cos(E g, E g_REINFORCE)");
  for (std::size_t m = 0; m < 6; ++m) {
    std::printf("  %-24s | %12.4e | %12.4e | %14.3f | %.4f\n", names[m], mom[m].trace_cov(), mom[m].mean_sq(),
                mom[m].trace_cov() / mom[m].mean_sq(), cosine(mom[m].mean, mom[0].mean));
  }
  // The comparison the table names: each method's noise-to-signal ratio rho = tr Cov / |E g|^2,
  // compared with the group-mean baseline's on the same batches (paired z, delta-method standard
  // error; see relative_variance_of). |z| > 4 has probability < 1e-4 under the normal
  // approximation, so the two outcomes asserted below are each decided at that level:
  // - the group-mean baseline does NOT lower rho here: with 0/1 rewards at ~50 % success a
  //   completion with reward 0 contributes nothing without a baseline, while the baseline gives
  //   every completion a coefficient (no-baseline rho is ~30 % lower, z about -12);
  // - the normalisations (group std, batch std, BNPO's Beta density) change rho by less than
  //   4 standard errors (a few per cent): they reweight groups, they do not remove noise.
  std::vector<relative_variance> rv;
  for (const auto& g : per_batch) rv.push_back(relative_variance_of(g));
  const double z_nb = paired_z(rv[0], rv[1]), z_grpo = paired_z(rv[3], rv[1]), z_bnpo = paired_z(rv[4], rv[1]),
               z_bstd = paired_z(rv[5], rv[1]);
  std::printf("  rho vs the group-mean baseline's (%.3f), paired z: no baseline %.3f (z %.1f), GRPO %.3f (z %.1f), "
              "BNPO %.3f (z %.1f), batch std %.3f (z %.1f)\n",
              rv[1].rho, rv[0].rho, z_nb, rv[3].rho, z_grpo, rv[4].rho, z_bnpo, rv[5].rho, z_bstd);
  CHECK(z_nb < -4.0);
  CHECK(std::abs(z_grpo) < 4.0);
  CHECK(std::abs(z_bnpo) < 4.0);
  CHECK(std::abs(z_bstd) < 4.0);
  // Unbiasedness, paired test: Q = Ru |mean d|^2 / tr Cov(d) has expectation 1 when E d = 0. With
  // mean d approximately Gaussian (CLT over Ru batches), Q = sum_i l_i z_i^2 / sum_i l_i with
  // Var Q = 2 sum l_i^2 / (sum l_i)^2 <= 2, so by Chebyshev P(Q > 1 + 5 sqrt 2 = 8.07) <= 1/25.
  // Under a bias b, E Q = 1 + Ru |b|^2 / tr Cov(d).
  const double Q = static_cast<double>(Ru) * paired.mean_sq() / paired.trace_cov();
  const double Qc = static_cast<double>(Ru) * control.mean_sq() / control.trace_cov();
  std::printf("  paired unbiasedness statistic over %zu batches: Q = %.3f (bound 8.07); control without the G/(G-1) "
              "factor: Q = %.1f\n",
              Ru, Q, Qc);
  CHECK(Q < 1.0 + 5.0 * std::sqrt(2.0));
  CHECK(Qc > 1.0 + 5.0 * std::sqrt(2.0));  // the test has power: a bias of half the mean is detected
  // RLOO is L G/(G-1) times REINFORCE with the group mean, batch by batch (up to rounding).
  const double f = 3.0 * static_cast<double>(kG) / static_cast<double>(kG - 1);
  CHECK_THAT(mom[2].trace_cov(), Catch::Matchers::WithinRel(f * f * mom[1].trace_cov(), 1e-9));
  CHECK_THAT(cosine(mom[2].mean, mom[1].mean), Catch::Matchers::WithinAbs(1.0, 1e-12));
  for (const auto& m : mom) {
    CHECK(std::isfinite(m.trace_cov()));
    CHECK(m.mean_sq() > 0.0);
  }
}
