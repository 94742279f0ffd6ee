// SPDX-License-Identifier: Apache-2.0
// Samplers: counter-based Gamma/Beta variates, the Beta/Thompson selector (algorithms.md §5.3) and
// Reinforce-Ada successive elimination with its pool baseline (§5.1, §5.2, §11).
#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using vd = std::vector<double>;

namespace {
bool near(double got, double want, double r = 1e-12) { return std::abs(got - want) <= 1e-15 + r * std::abs(want); }
double unif(std::uint64_t seed, std::uint32_t stream, std::uint32_t draw, std::uint64_t i) {
  return static_cast<double>(noise_at<uniform>(noise_key{seed, stream, draw}, i));
}
}  // namespace

TEST_CASE("Gamma and Beta variates: moments within 4 standard errors, determinism", "[pg][sampler][statistical]") {
  // Sample mean and variance against the exact moments; SE of the mean sqrt(var/N), SE of the
  // sample variance sqrt((mu4 - var^2)/N) with mu4 the exact fourth central moment.
  const std::size_t N = 100000;
  for (double k : {0.3, 1.0, 2.5, 9.0}) {
    double s = 0, s2 = 0;
    for (std::size_t i = 0; i < N; ++i) {
      const double x = gamma_variate(k, noise_key{5, 0, static_cast<std::uint32_t>(i)});
      CHECK(x >= 0.0);
      s += x;
      s2 += x * x;
    }
    const double mean = s / N, var = s2 / N - mean * mean;
    const double mu4 = 3 * k * k + 6 * k;  // fourth central moment of Gamma(k, 1)
    INFO("shape " << k << " mean " << mean << " var " << var);
    CHECK(std::abs(mean - k) < 4 * std::sqrt(k / N));
    CHECK(std::abs(var - k) < 4 * std::sqrt((mu4 - k * k) / N));
  }
  const double a = 3.9, b = 5.9;
  double s = 0, s2 = 0;
  for (std::size_t i = 0; i < N; ++i) {
    const auto d = static_cast<std::uint32_t>(i);
    const double x = beta_variate(a, b, noise_key{9, 0, d}, noise_key{9, 1, d});
    CHECK(x > 0.0);
    CHECK(x < 1.0);
    s += x;
    s2 += x * x;
  }
  const double m = a / (a + b), v = a * b / ((a + b) * (a + b) * (a + b + 1));
  const double mean = s / N, var = s2 / N - mean * mean;
  CHECK(std::abs(mean - m) < 4 * std::sqrt(v / N));
  // Beta excess-kurtosis bound: mu4 <= 3 v^2 here (platykurtic for these parameters); use 3 v^2.
  CHECK(std::abs(var - v) < 4 * std::sqrt(2 * v * v / N));
  // A draw is a pure function of its key.
  CHECK(beta_variate(a, b, noise_key{9, 0, 17}, noise_key{9, 1, 17}) ==
        beta_variate(a, b, noise_key{9, 0, 17}, noise_key{9, 1, 17}));
  CHECK_THROWS_AS(gamma_variate(0.0, noise_key{}), invalid_argument);
  CHECK_THROWS_AS(beta_variate(1.0, -1.0, noise_key{}, noise_key{}), invalid_argument);
}

TEST_CASE("§5.3 Beta/Thompson selector: posterior updates", "[pg][sampler][worked]") {
  beta_thompson bt(4);
  bt.observe(0, 3, 8);
  const auto [al, be] = bt.posterior(0);
  CHECK(near(al, 3.9));
  CHECK(near(be, 5.9));
  CHECK(near(bt.mean(0), 0.39795918367346933));
  CHECK(near(bt.expected_variance(0), 0.2174036281179138));
  // lambda = 1: posterior mean (alpha0 + k) / (alpha0 + beta0 + G) (§11).
  beta_thompson_options o;
  o.decay = 1.0;
  o.prior_alpha = 2.0;
  o.prior_beta = 3.0;
  beta_thompson b1(2, o);
  b1.observe(1, 5, 12);
  CHECK(near(b1.mean(1), (2.0 + 5) / (2.0 + 3 + 12)));
  // Second decay toward the prior for samples not seen for s steps.
  o.prior_decay = 0.5;
  beta_thompson b2(2, o);
  b2.observe(0, 6, 6);  // (8, 3)
  b2.advance();
  b2.advance();
  b2.advance();
  const auto [a3, c3] = b2.posterior(0);
  CHECK(near(a3, 2.0 + 0.125 * (8.0 - 2.0)));
  CHECK(near(c3, 3.0 + 0.125 * (3.0 - 3.0)));
  CHECK_THROWS_AS(b2.observe(0, 3, 2), invalid_argument);
  CHECK_THROWS_AS(b2.observe(5, 0, 2), invalid_argument);
  beta_thompson_options bad;
  bad.decay = 0.0;
  CHECK_THROWS_AS(beta_thompson(3, bad), invalid_argument);
}

TEST_CASE("Beta/Thompson selection prefers informative samples and is reproducible", "[pg][sampler]") {
  // 20 samples: 10 with beliefs concentrated near p = 1/2 (score p(1-p) ~ 1/4), 10 near p = 0 or 1
  // (score ~ 0.01). Selecting 10 must take the first kind (the draws would need to cross ~0.2 in
  // score: many standard deviations away for these beliefs).
  beta_thompson_options o;
  o.decay = 1.0;
  o.seed = 123;
  beta_thompson bt(20, o);
  for (std::size_t i = 0; i < 20; ++i) {
    if (i % 2 == 0) {
      bt.observe(i, 50, 100);
    } else {
      bt.observe(i, i % 4 == 1 ? 0 : 100, 100);
    }
  }
  std::vector<std::size_t> cand(20);
  for (std::size_t i = 0; i < 20; ++i) cand[i] = i;
  const std::span<const std::size_t> sel = bt.select(cand, 10);
  std::set<std::size_t> s(sel.begin(), sel.end());
  CHECK(s.size() == 10);
  for (std::size_t i : s) CHECK(i % 2 == 0);
  const std::vector<std::size_t> first(sel.begin(), sel.end());
  // Same seed, same step: same draws; next step: different draws.
  beta_thompson bt2 = bt;
  const std::span<const std::size_t> sel2 = bt2.select(cand, 10);
  CHECK(std::vector<std::size_t>(sel2.begin(), sel2.end()) == first);
  const double d0 = bt.draw(0);
  bt.advance();
  CHECK(bt.draw(0) != d0);
  CHECK_THROWS_AS(bt.select(cand, 21), invalid_argument);
}

TEST_CASE("Beta/Thompson selector: save, load, continue = uninterrupted; bad states refused", "[pg][sampler][state]") {
  const beta_thompson_options o{.prior_decay = 0.95, .seed = 17};
  const std::size_t n = 40;
  std::vector<std::size_t> all(n);
  for (std::size_t i = 0; i < n; ++i) all[i] = i;
  // One training step: select 8, observe them (k successes of 4 from a fixed rule), advance.
  auto run = [&](beta_thompson& s, std::size_t steps, std::vector<std::size_t>& picks) {
    for (std::size_t t = 0; t < steps; ++t) {
      const auto sel = s.select(all, 8);
      const std::vector<std::size_t> chosen(sel.begin(), sel.end());
      for (const std::size_t i : chosen) {
        picks.push_back(i);
        s.observe(i, (i * 7 + t) % 5 == 0 ? 4 : (i + t) % 3, 4);
      }
      s.advance();
    }
  };
  beta_thompson a(n, o), b(n, o);
  std::vector<std::size_t> pa, pb;
  run(a, 10, pa);
  std::stringstream ss;
  a.save(ss);
  const std::string saved = ss.str();
  run(a, 10, pa);  // uninterrupted
  {
    std::stringstream in(saved);
    b.load(in);
  }
  CHECK(b.step() == 10);
  run(b, 10, pb);
  CHECK(std::vector<std::size_t>(pa.begin() + 80, pa.end()) == pb);
  for (std::size_t i = 0; i < n; ++i) CHECK(a.posterior(i) == b.posterior(i));

  beta_thompson c(n, o);
  const auto keep = c.posterior(3);
  std::stringstream truncated(saved.substr(0, saved.size() / 2));
  CHECK_THROWS_AS(c.load(truncated), state_error);
  std::string corrupt = saved;
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x5a);
  std::stringstream bad(corrupt);
  CHECK_THROWS_AS(c.load(bad), state_error);
  beta_thompson other_size(n + 1, o);
  std::stringstream s1(saved);
  CHECK_THROWS_AS(other_size.load(s1), state_error);
  beta_thompson other_seed(n, beta_thompson_options{.prior_decay = 0.95, .seed = 18});
  std::stringstream s2(saved);
  CHECK_THROWS_AS(other_seed.load(s2), state_error);
  CHECK(c.posterior(3) == keep);
  CHECK(c.step() == 0);
}

TEST_CASE("§5.1/§5.2 Reinforce-Ada: scripted pool of 3 positives and 13 negatives", "[pg][sampler][worked]") {
  reinforce_ada ada;  // R = 8, T = 4, n = 4, tau = 0.7, balanced
  const vd round1{1, 0, 0, 0, 0, 0, 0, 0}, round2{0, 1, 0, 1, 0, 0, 0, 0};
  ada.run(1, [&](std::size_t, std::size_t round, std::span<double> r) {
    const vd& src = round == 0 ? round1 : round2;
    std::copy(src.begin(), src.end(), r.begin());
  });
  CHECK(ada.finished(0));
  CHECK(ada.rounds_sampled(0) == 2);
  const std::span<const double> kept = ada.selected_rewards(0);
  CHECK(vd(kept.begin(), kept.end()) == vd{1, 1, 0, 0});
  const std::span<const std::size_t> ids = ada.selected(0);
  CHECK(std::vector<std::size_t>(ids.begin(), ids.end()) == std::vector<std::size_t>{0, 9, 1, 2});
  CHECK(ada.pool()[0].positives == 3);
  CHECK(ada.pool()[0].negatives == 13);
  // Global-statistics advantages of the kept samples (§5.2 example).
  const vd r(kept.begin(), kept.end());
  vd a(4);
  const group_layout g = group_layout::contiguous(1, 4);
  advantages(pool_mean{ada.pool()}, pool_std{ada.pool(), 1e-6, 1e-6, false}, std::span<const double>(r), g,
             std::span<double>(a));
  CHECK(near(a[0], 0.8125));
  CHECK(near(a[3], -0.1875));
  advantages(pool_mean{ada.pool()}, pool_std{ada.pool()}, std::span<const double>(r), g, std::span<double>(a));
  CHECK(near(a[0], 2.015559437087041));
  CHECK(near(a[2], -0.4651291008662402));
}

TEST_CASE("Reinforce-Ada on simulated prompts (§11 properties)", "[pg][sampler]") {
  // 64 prompts with success probabilities u/63; Bernoulli rewards from counter-based uniforms.
  const std::size_t P = 64;
  auto prob = [](std::size_t u) { return static_cast<double>(u) / 63.0; };
  for (ada_exit rule : {ada_exit::balanced, ada_exit::positive_focused}) {
    reinforce_ada_options o;
    o.exit = rule;
    reinforce_ada ada(o);
    ada.run(P, [&](std::size_t u, std::size_t round, std::span<double> r) {
      for (std::size_t j = 0; j < r.size(); ++j) {
        r[j] = unif(31, static_cast<std::uint32_t>(u), static_cast<std::uint32_t>(round), j) < prob(u) ? 1.0 : 0.0;
      }
    });
    REQUIRE(ada.done());
    double rounds_mid = 0, rounds_edge = 0;
    for (std::size_t u = 0; u < P; ++u) {
      INFO("prompt " << u);
      const std::span<const double> kept = ada.selected_rewards(u);
      const pool_counts c = ada.pool()[u];
      CHECK(c.total() == 8 * ada.rounds_sampled(u));
      std::size_t pos = 0;
      for (double x : kept) pos += x > 0.7 ? 1 : 0;
      if (ada.finished(u)) {
        CHECK(kept.size() == 4);
        if (rule == ada_exit::balanced) {
          CHECK(pos == 2);  // exactly floor(n/2) positives and n - floor(n/2) negatives
        } else {
          CHECK(pos >= 1);
          if (c.negatives >= 1) CHECK(pos <= 3);  // target take - 1; a pool without negatives tops up with positives
        }
      } else {
        CHECK(ada.rounds_sampled(u) == 4);
        CHECK(kept.size() == std::min<std::size_t>(4, c.total()));
      }
      if (u == 0) CHECK(pos == 0);
      if (u == P - 1) CHECK(pos == kept.size());
      if (u >= 24 && u < 40) rounds_mid += static_cast<double>(ada.rounds_sampled(u)) / 16.0;
      if (u < 4 || u >= 60) rounds_edge += static_cast<double>(ada.rounds_sampled(u)) / 8.0;
      // The pool baseline is the pool's positive fraction, not the kept subset's.
      vd r(kept.begin(), kept.end()), base(kept.size());
      if (!r.empty()) {
        pool_mean{std::span<const pool_counts>(&ada.pool()[u], 1)}.compute<double>(
            r, group_layout::contiguous(1, r.size()), base);
        CHECK(near(base[0], static_cast<double>(c.positives) / static_cast<double>(c.total())));
      }
    }
    // Edge prompts (p near 0 or 1) keep being sampled; mid prompts finish early.
    CHECK(rounds_mid < rounds_edge);
  }
}

TEST_CASE("Reinforce-Ada: fallbacks, positive-focused targets, misuse", "[pg][sampler]") {
  reinforce_ada_options o;
  o.round_repeat = 4;
  o.max_rounds = 2;
  o.keep = 6;
  reinforce_ada ada(o);
  ada.begin(2);
  // Prompt 0: one positive in 8 -> balanced fallback: 1 positive + 5 negatives (top-up from negatives).
  // Prompt 1: finishes in round 1? needs 3 positives and 3 negatives of 4 samples: impossible -> round 2.
  ada.observe(0, vd{0, 0, 1, 0});
  ada.observe(1, vd{1, 1, 0, 1});
  ada.end_round();
  CHECK(ada.active().size() == 2);
  CHECK_THROWS_AS(ada.observe(0, vd{0, 0, 0}), size_mismatch);
  ada.observe(0, vd{0, 0, 0, 0});
  CHECK_THROWS_AS(ada.observe(0, vd{0, 0, 0, 0}), state_error);
  CHECK_THROWS_AS(ada.end_round(), state_error);  // prompt 1 not observed
  ada.observe(1, vd{0, 1, 0, 0});
  ada.end_round();
  CHECK(ada.done());
  CHECK_FALSE(ada.finished(0));
  CHECK(ada.finished(1));
  const auto k0 = ada.selected_rewards(0);
  CHECK(vd(k0.begin(), k0.end()) == vd{1, 0, 0, 0, 0, 0});
  const auto k1 = ada.selected_rewards(1);
  CHECK(vd(k1.begin(), k1.end()) == vd{1, 1, 1, 0, 0, 0});
  CHECK_THROWS_AS(ada.observe(0, vd{0, 0, 0, 0}), state_error);
  // Positive-focused fallback: target_pos = clip(ceil(pos/(pos+neg) n), 1, take - 1).
  o.exit = ada_exit::positive_focused;
  o.max_rounds = 1;
  reinforce_ada pf(o);
  pf.begin(1);
  pf.observe(0, vd{0, 0, 0, 0});
  pf.end_round();
  CHECK_FALSE(pf.finished(0));
  CHECK(pf.selected(0).size() == 4);
  reinforce_ada pf2(o);
  pf2.begin(1);
  pf2.observe(0, vd{1, 1, 1, 0});  // finished: ceil(3/4 * 6) = 5 -> clip to take - 1 = 3 positives, 1 negative
  pf2.end_round();
  CHECK(pf2.finished(0));
  const auto k2 = pf2.selected_rewards(0);
  CHECK(vd(k2.begin(), k2.end()) == vd{1, 1, 1, 0});
  reinforce_ada_options bad;
  bad.keep = 0;
  CHECK_THROWS_AS(reinforce_ada(bad), invalid_argument);
  CHECK_THROWS_AS(ada.begin(0), invalid_argument);
}
