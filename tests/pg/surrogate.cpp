// SPDX-License-Identifier: Apache-2.0
// The clipped surrogate, its coefficients and diagnostics: the worked examples of algorithms.md
// §3.9 and §3.10 (tolerances of §0.4), the coefficient against a central finite difference of the
// loss over a grid of options (§3.6, §11), the k3 KL identity, the unified (HPT) view of §6, and
// bad input.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using vd = std::vector<double>;

namespace {

bool near(double got, double want, double r = 1e-12, double a = 1e-15) {
  return std::abs(got - want) <= a + r * std::abs(want);
}

// §3.9 surrogate example.
const vd ex_logp{-1.0, -0.5, -2.0, 0.0, -0.3, -1.2, -0.7, -0.9};
const vd ex_old{-1.1, -0.5, -1.5, 0.0, -0.3, -1.0, -0.9, -0.2};
const vd ex_ref{-1.2, -0.4, -2.0, 0.0, -0.5, -1.2, -0.6, -1.0};
const vd ex_mask{1, 1, 1, 0, 1, 1, 1, 1};
const vd ex_adv{1.5, -0.5};

surrogate_options ex_options(loss_aggregation agg) {
  surrogate_options o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.beta = 0.04;
  o.aggregation = agg;
  return o;
}

token_batch<double> ex_batch() { return {2, 4, ex_logp, ex_old, ex_ref, ex_mask, ex_adv}; }

// Deterministic pseudo-random values from the library's counter-based generator.
double gauss(std::uint64_t seed, std::uint32_t stream, std::uint64_t i) {
  return static_cast<double>(noise_at<gaussian>(noise_key{seed, stream, 0}, i));
}
double unif(std::uint64_t seed, std::uint32_t stream, std::uint64_t i) {
  return static_cast<double>(noise_at<uniform>(noise_key{seed, stream, 0}, i));
}

}  // namespace

TEST_CASE("§3.9 surrogate: per-token ratio, policy loss and k3 KL", "[pg][worked]") {
  const vd rho{1.1051709180756477, 1.0, 0.6065306597126334, 1.0, 1.0, 0.8187307530779819, 1.2214027581601699,
               0.4965853037914096};
  const vd pl{-1.6577563771134716, -1.5, -0.9097959895689501, -1.5, 0.5, 0.40936537653899097, 0.6107013790800849, 0.4};
  const vd kl{0.018730753077981888, 0.005170918075647624, 0.0, 0.0, 0.018730753077981888, 0.0, 0.005170918075647624,
              0.004837418035959606};
  surrogate_options o = ex_options(loss_aggregation::token_mean);
  o.beta = 0.0;
  const clipped_surrogate s(o);
  for (std::size_t i = 0; i < 8; ++i) {
    // One token at a time: with token_mean over one token the loss is that token's policy loss.
    const vd lp{ex_logp[i]}, old{ex_old[i]}, m{1.0}, a{ex_adv[i / 4]};
    const surrogate_result r = s.evaluate<double>(token_batch<double>{1, 1, lp, old, {}, m, a});
    INFO("token " << i);
    CHECK(near(r.diagnostics.ratio_mean, rho[i]));
    CHECK(near(r.loss, pl[i]));
  }
  vd k3(8);
  kl_penalty<double>(kl_estimator::k3, ex_logp, ex_ref, k3, {}, std::numeric_limits<double>::infinity());
  for (std::size_t i = 0; i < 8; ++i) CHECK(near(k3[i], kl[i], 1e-12, 1e-17));
}

TEST_CASE("§3.9 surrogate: aggregated losses, coefficient, GSPO ratios", "[pg][worked]") {
  const token_batch<double> b = ex_batch();
  CHECK(near(clipped_surrogate(ex_options(loss_aggregation::grpo)).evaluate(b).loss, -0.4376140100743803));
  CHECK(near(clipped_surrogate(ex_options(loss_aggregation::token_mean)).evaluate(b).loss, -0.3064828543785167));
  surrogate_options dr = ex_options(loss_aggregation::dr_grpo);
  dr.max_completion_length = 4;
  CHECK(near(clipped_surrogate(dr).evaluate(b).loss, -0.2681724975812021));
  // dapo with one process and no accumulation equals bnpo (token_mean), exactly.
  vd c1(8), c2(8);
  const surrogate_result r1 = clipped_surrogate(ex_options(loss_aggregation::dapo)).evaluate<double>(b, c1);
  const surrogate_result r2 = clipped_surrogate(ex_options(loss_aggregation::token_mean)).evaluate<double>(b, c2);
  CHECK(r1.loss == r2.loss);
  CHECK(c1 == c2);
  const vd want{-0.23578651531951297, -0.21488669096043228, -0.12997085565270716, 0.0,
                0.07246439569669726,  0.05848076807699871,  0.08664207747957986,  0.0005437861826516593};
  for (std::size_t i = 0; i < 8; ++i) {
    INFO("token " << i);
    CHECK(near(c2[i], want[i], 1e-12, 1e-17));
  }
  // The last token of sequence 2 is clipped: only the KL term remains.
  const double kl_only = 0.04 * (1.0 - std::exp(ex_ref[7] - ex_logp[7])) / 7.0;
  CHECK(near(c2[7], kl_only));
  // GSPO sequence log-ratios and ratios.
  surrogate_options g = ex_options(loss_aggregation::grpo);
  g.level = ratio_level::sequence;
  const surrogate_result rg = clipped_surrogate(g).evaluate(b);
  CHECK(near(rg.diagnostics.ratio_max, 0.8751733190429475));
  CHECK(near(rg.diagnostics.ratio_min, 0.8394570207692074));
  CHECK(near(std::log(rg.diagnostics.ratio_max), -0.1333333333333333, 1e-12));
  CHECK(near(std::log(rg.diagnostics.ratio_min), -0.175, 1e-12));
}

TEST_CASE("§3.10 RLOO sequence-level loss", "[pg][worked]") {
  vd old_seq(2, 0.0);
  for (std::size_t n = 0; n < 2; ++n) {
    for (std::size_t t = 0; t < 4; ++t) old_seq[n] += ex_mask[n * 4 + t] * ex_old[n * 4 + t];
  }
  const token_batch<double> b{2, 4, ex_logp, {}, {}, ex_mask, ex_adv};
  vd coef(8);
  const surrogate_result r = rloo_surrogate<double>(rloo_options{0.2, 0.28}, b, old_seq, coef);
  CHECK(near(r.loss, -0.30274003452672943));
  CHECK(near(r.diagnostics.ratio_max, 0.6703200460356393));
  CHECK(near(r.diagnostics.ratio_min, 0.4965853037914097));
  // Coefficient = central finite difference.
  for (std::size_t i = 0; i < 8; ++i) {
    if (ex_mask[i] == 0.0) {
      CHECK(coef[i] == 0.0);
      continue;
    }
    vd lp = ex_logp;
    const double h = 1e-5;
    lp[i] += h;
    const double up = rloo_surrogate<double>(rloo_options{0.2, 0.28}, token_batch<double>{2, 4, lp, {}, {}, ex_mask, ex_adv},
                                             old_seq).loss;
    lp[i] -= 2 * h;
    const double dn = rloo_surrogate<double>(rloo_options{0.2, 0.28}, token_batch<double>{2, 4, lp, {}, {}, ex_mask, ex_adv},
                                             old_seq).loss;
    CHECK(std::abs(coef[i] - (up - dn) / (2 * h)) < 1e-8);
  }
}

TEST_CASE("coefficient = central finite difference of the loss, over a grid of options", "[pg][fd]") {
  // Central difference with h = 1e-5: truncation h^2/6 |L'''| <= ~2e-10 (|L'''| <= ~10 for these
  // O(1) inputs) plus rounding ~eps |L| / h <= ~2e-10, so the bound 1e-8 has a margin of 25x and
  // still catches a wrong branch (coefficients here are >= 1e-3 when not 0). Tokens within h of
  // a kink (clip bound, delta, dual-clip value, a tie) are detected by a second difference far
  // above h^2 |L''| and skipped; at most 10% of tokens may be skipped.
  const std::size_t B = 4, L = 6;
  const double h = 1e-5;
  std::size_t checked = 0, skipped = 0, configs = 0;
  const loss_aggregation aggs[] = {loss_aggregation::seq_mean_token_mean, loss_aggregation::token_mean,
                                   loss_aggregation::dr_grpo,             loss_aggregation::dapo,
                                   loss_aggregation::seq_mean_token_sum,  loss_aggregation::seq_mean_token_sum_norm};
  const loss_convention convs[] = {loss_convention::trl, loss_convention::verl, loss_convention::verl_upstream};
  std::uint64_t seed = 100;
  for (loss_aggregation agg : aggs) {
    for (loss_convention conv : convs) {
      for (int level = 0; level < 2; ++level) {
        for (double delta : {0.0, 1.1, 1.5}) {
          for (double dual : {0.0, 3.0}) {
            for (int kl = 0; kl < 3; ++kl) {
              for (int variant = 0; variant < 3; ++variant) {  // 0: per-seq A, 1: per-token A, 2: on-policy
                ++seed;
                ++configs;
                surrogate_options o;
                o.aggregation = agg;
                o.convention = conv;
                o.level = level ? ratio_level::sequence : ratio_level::token;
                o.delta = delta;
                o.dual_clip = dual;
                o.eps_low = 0.2;
                o.eps_high = 0.28;
                o.beta = kl == 0 ? 0.0 : 0.04;
                o.kl_bias_correction = kl == 2;
                o.max_completion_length = 8;
                o.gradient_accumulation_steps = 1 + (seed % 2);
                o.global_active_tokens = agg == loss_aggregation::dapo ? 30.0 : 0.0;
                o.num_processes = 2;
                if (conv == loss_convention::verl_upstream) o.log_ratio_clamp = 0.6;  // exercise the clamp
                vd lp(B * L), old(B * L), ref(B * L), m(B * L), adv;
                for (std::size_t i = 0; i < B * L; ++i) {
                  lp[i] = -0.2 - 1.5 * unif(seed, 0, i);
                  old[i] = lp[i] + 0.5 * gauss(seed, 1, i);
                  ref[i] = lp[i] + 0.4 * gauss(seed, 2, i);
                  // Row 2 has one masked tail; never a fully masked row (verl seq-mean-token-mean).
                  m[i] = (i / L == 2 && i % L >= 3) ? 0.0 : 1.0;
                }
                if (variant == 1) {
                  adv.resize(B * L);
                  for (std::size_t i = 0; i < B * L; ++i) adv[i] = gauss(seed, 3, i / L) * m[i];
                } else {
                  adv.resize(B);
                  for (std::size_t n = 0; n < B; ++n) adv[n] = gauss(seed, 3, n);
                }
                const bool on_policy = variant == 2;
                const clipped_surrogate s(o);
                auto loss_at = [&](const vd& x) {
                  return s.evaluate(token_batch<double>{B, L, x, on_policy ? vd{} : old, o.beta > 0 ? ref : vd{}, m, adv})
                      .loss;
                };
                vd coef(B * L);
                s.evaluate<double>(token_batch<double>{B, L, lp, on_policy ? vd{} : old, o.beta > 0 ? ref : vd{}, m, adv},
                                   coef);
                const double l0 = loss_at(lp);
                for (std::size_t i = 0; i < B * L; ++i) {
                  if (m[i] == 0.0) {
                    CHECK(coef[i] == 0.0);
                    continue;
                  }
                  if (on_policy) {
                    // On-policy means old = logp *detached*: the finite difference must keep old fixed.
                    break;
                  }
                  vd x = lp;
                  x[i] += h;
                  const double up = loss_at(x);
                  x[i] -= 2 * h;
                  const double dn = loss_at(x);
                  if (std::abs(up - 2 * l0 + dn) > 1e-8) {
                    ++skipped;
                    continue;
                  }
                  ++checked;
                  const double fd = (up - dn) / (2 * h);
                  if (std::abs(coef[i] - fd) >= 1e-8) {
                    INFO("config " << configs << " agg " << static_cast<int>(agg) << " conv " << static_cast<int>(conv)
                                   << " level " << level << " delta " << delta << " dual " << dual << " kl " << kl
                                   << " variant " << variant << " token " << i << " coef " << coef[i] << " fd " << fd);
                    CHECK(std::abs(coef[i] - fd) < 1e-8);
                  }
                }
                if (on_policy) {
                  // Against the same batch with old_logp = logp given explicitly (a constant).
                  vd coef2(B * L);
                  const surrogate_result r1 =
                      s.evaluate<double>(token_batch<double>{B, L, lp, lp, o.beta > 0 ? ref : vd{}, m, adv}, coef2);
                  CHECK(r1.loss == l0);
                  CHECK(coef2 == coef);
                }
              }
            }
          }
        }
      }
    }
  }
  INFO("checked " << checked << " skipped " << skipped << " configs " << configs);
  CHECK(checked > 5000);
  CHECK(skipped * 10 < checked);
}

TEST_CASE("clipped regions give exactly zero policy gradient; asymmetry below 1 - eps_low", "[pg]") {
  surrogate_options o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.aggregation = loss_aggregation::token_mean;
  const clipped_surrogate s(o);
  // Token 0: A > 0, rho = e^0.5 > 1.28 (clipped). Token 1: A < 0, rho = e^-0.5 < 0.8 (clipped).
  // Token 2: A > 0 with rho = e^-0.5 below 1 - eps_low: still gets gradient (§3.6 asymmetry).
  // Token 3: A < 0 with rho = e^0.5: unclipped branch.
  const vd lp{0.0, 0.0, 0.0, 0.0}, old{-0.5, 0.5, 0.5, -0.5}, m{1, 1, 1, 1}, a{1.0, -1.0, 1.0, -1.0};
  vd c(4);
  const surrogate_result r = s.evaluate<double>(token_batch<double>{4, 1, lp, old, {}, m, a}, c);
  CHECK(c[0] == 0.0);
  CHECK(c[1] == 0.0);
  CHECK(near(c[2], -std::exp(-0.5) / 4.0));
  CHECK(near(c[3], std::exp(0.5) / 4.0));
  CHECK(r.diagnostics.clip_high_fraction == 0.25);
  CHECK(r.diagnostics.clip_low_fraction == 0.25);
  CHECK(r.diagnostics.clip_region_fraction == 0.5);
  // Dual clip: A < 0 and rho = e^1.5 > c = 3 -> constant -A c, zero gradient.
  o.dual_clip = 3.0;
  const vd old2{-1.5};
  vd c2(1);
  const vd lp1{0.0}, m1{1.0}, a1{-1.0};
  const surrogate_result r2 = clipped_surrogate(o).evaluate<double>(token_batch<double>{1, 1, lp1, old2, {}, m1, a1}, c2);
  CHECK(c2[0] == 0.0);
  CHECK(r2.loss == 3.0);
  CHECK(r2.diagnostics.dual_clip_fraction == 1.0);
  // Delta below 1 + eps_high (§0.5.3): A > 0, rho = 1.2 in (delta, 1 + eps_high): the upper branch is
  // min(rho, delta) * A = 1.1 A < 1.2 A, so -min(...) is constant: zero gradient although rho < 1 + eps_high.
  o.dual_clip = 0.0;
  o.delta = 1.1;
  const vd old3{-std::log(1.2)}, a3{1.0};
  vd c3(1);
  const surrogate_result r3 = clipped_surrogate(o).evaluate<double>(token_batch<double>{1, 1, lp1, old3, {}, m1, a3}, c3);
  CHECK(c3[0] == 0.0);
  CHECK(near(r3.loss, -1.1));
}

TEST_CASE("aggregation relations", "[pg]") {
  const token_batch<double> b = ex_batch();
  surrogate_options dr = ex_options(loss_aggregation::dr_grpo);
  surrogate_options sn = ex_options(loss_aggregation::seq_mean_token_sum_norm);
  sn.convention = loss_convention::verl;
  vd c1(8), c2(8);
  const double l1 = clipped_surrogate(dr).evaluate<double>(b, c1).loss;
  const double l2 = clipped_surrogate(sn).evaluate<double>(b, c2).loss;
  CHECK(near(l2, 2.0 * l1));  // seq-mean-token-sum-norm = B x dr_grpo (L_max = L)
  for (std::size_t i = 0; i < 8; ++i) CHECK(near(c2[i], 2.0 * c1[i], 1e-12, 1e-17));
  // Gradient accumulation divides every mode but dapo.
  surrogate_options g2 = ex_options(loss_aggregation::grpo);
  g2.gradient_accumulation_steps = 2;
  CHECK(near(clipped_surrogate(g2).evaluate(b).loss, -0.4376140100743803 / 2.0));
  surrogate_options d2 = ex_options(loss_aggregation::dapo);
  d2.gradient_accumulation_steps = 2;
  CHECK(near(clipped_surrogate(d2).evaluate(b).loss, -0.3064828543785167));
}

TEST_CASE("k3 KL: exact KL over a categorical distribution, non-negative, zero iff equal", "[pg][property]") {
  // sum_x pi(x) (rho - log rho - 1), rho = pi_ref / pi, equals KL(pi || pi_ref).
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const std::size_t K = 7;
    vd lp(K), lr(K);
    double z1 = 0, z2 = 0;
    for (std::size_t k = 0; k < K; ++k) {
      lp[k] = gauss(seed, 0, k);
      lr[k] = gauss(seed, 1, k);
      z1 += std::exp(lp[k]);
      z2 += std::exp(lr[k]);
    }
    for (std::size_t k = 0; k < K; ++k) {
      lp[k] -= std::log(z1);
      lr[k] -= std::log(z2);
    }
    vd k3(K);
    kl_penalty<double>(kl_estimator::k3, lp, lr, k3, {}, std::numeric_limits<double>::infinity());
    double est = 0, kl = 0;
    for (std::size_t k = 0; k < K; ++k) {
      CHECK(k3[k] >= 0.0);
      est += std::exp(lp[k]) * k3[k];
      kl += std::exp(lp[k]) * (lp[k] - lr[k]);
    }
    CHECK(near(est, kl, 1e-12, 1e-15));
  }
  const vd same{-0.3, -1.7}, z(2);
  vd v(2);
  kl_penalty<double>(kl_estimator::k3, same, same, v, {});
  CHECK(v[0] == 0.0);
  CHECK(v[1] == 0.0);
}

TEST_CASE("float evaluation agrees with double", "[pg]") {
  const token_batch<double> b = ex_batch();
  vd cd(8);
  const clipped_surrogate s(ex_options(loss_aggregation::grpo));
  const double ld = s.evaluate<double>(b, cd).loss;
  const std::vector<float> lp(ex_logp.begin(), ex_logp.end()), old(ex_old.begin(), ex_old.end()),
      ref(ex_ref.begin(), ex_ref.end()), a(ex_adv.begin(), ex_adv.end());
  const std::vector<unsigned char> m{1, 1, 1, 0, 1, 1, 1, 1};
  std::vector<float> cf(8);
  const double lf =
      s.evaluate<float, unsigned char>(token_batch<float, unsigned char>{2, 4, lp, old, ref, m, a}, cf).loss;
  CHECK(near(lf, ld, 2e-6, 1e-7));
  for (std::size_t i = 0; i < 8; ++i) CHECK(near(static_cast<double>(cf[i]), cd[i], 2e-6, 1e-7));
}

TEST_CASE("unified estimator (HPT §6): compositions", "[pg][hpt]") {
  const std::size_t B = 3, L = 5;
  vd lp(B * L), old(B * L), m(B * L, 1.0), adv{0.8, -1.3, 0.4};
  for (std::size_t i = 0; i < B * L; ++i) {
    lp[i] = -0.3 - unif(7, 0, i);
    old[i] = lp[i] + 0.4 * gauss(7, 1, i);
  }
  m[14] = 0.0;
  for (loss_aggregation agg : {loss_aggregation::grpo, loss_aggregation::token_mean, loss_aggregation::dr_grpo}) {
    surrogate_options o;
    o.eps_low = 0.2;
    o.eps_high = 0.28;
    o.aggregation = agg;
    const token_batch<double> b{B, L, lp, old, {}, m, adv};
    SECTION("PPO/GRPO = clipped surrogate coefficient (beta = 0), token and sequence level") {
      vd cs(B * L), cu(B * L);
      clipped_surrogate(o).evaluate<double>(b, cs);
      ppo_estimator{ppo_clip_mask{0.2, 0.28}, {}, {}, o}.coefficients<double>(b, cu);
      for (std::size_t i = 0; i < B * L; ++i) CHECK(near(cu[i], cs[i], 1e-14, 1e-17));
      o.level = ratio_level::sequence;
      clipped_surrogate(o).evaluate<double>(b, cs);
      gspo_estimator{ppo_clip_mask{0.2, 0.28}, {}, {}, o}.coefficients<double>(b, cu);
      for (std::size_t i = 0; i < B * L; ++i) CHECK(near(cu[i], cs[i], 1e-14, 1e-17));
    }
    SECTION("SFT, REINFORCE, CISPO, LUFFY") {
      vd c(B * L), w(B * L);
      const vd ones(B, 1.0);
      // Aggregation weights W: the coefficient of SFT with A = 1 is -W.
      sft_estimator{{}, {}, {}, o}.coefficients<double>(token_batch<double>{B, L, lp, old, {}, m, ones}, w);
      for (std::size_t i = 0; i < B * L; ++i) CHECK(w[i] <= 0.0);
      reinforce_estimator{{}, {}, {}, o}.coefficients<double>(b, c);
      for (std::size_t i = 0; i < B * L; ++i) CHECK(near(c[i], w[i] * adv[i / L]));
      cispo_estimator{cispo_mask{1.0, 0.28}, {}, {}, o}.coefficients<double>(b, c);
      for (std::size_t i = 0; i < B * L; ++i) {
        const double rho = std::exp(lp[i] - old[i]);
        CHECK(near(c[i], w[i] * std::min(rho, 1.28) * adv[i / L]));
      }
      // LUFFY (pi_ref = 1, f(pi) = pi / (pi + 0.1)): coefficient of L = -sum W A f(exp(logp)).
      luffy_offline_estimator{{}, {}, luffy_shaping{0.1}, o}.coefficients<double>(b, c);
      for (std::size_t i = 0; i < B * L; ++i) {
        if (m[i] == 0.0) continue;
        auto f = [](double x) { return std::exp(x) / (std::exp(x) + 0.1); };
        const double h = 1e-6;
        const double fd = w[i] * adv[i / L] * (f(lp[i] + h) - f(lp[i] - h)) / (2 * h);
        CHECK(std::abs(c[i] - fd) < 1e-9);
      }
    }
  }
}

TEST_CASE("bad input: sizes, missing reference, non-finite log-probs, options", "[pg][errors]") {
  const token_batch<double> b = ex_batch();
  const clipped_surrogate s(ex_options(loss_aggregation::grpo));
  vd small(7);
  CHECK_THROWS_AS(s.evaluate<double>(b, small), size_mismatch);
  token_batch<double> bad = b;
  bad.sequences = 3;
  CHECK_THROWS_AS(s.evaluate(bad), size_mismatch);
  bad = b;
  bad.ref_logp = {};
  CHECK_THROWS_AS(s.evaluate(bad), invalid_argument);
  bad = b;
  bad.sequences = 0;
  CHECK_THROWS_AS(s.evaluate(bad), invalid_argument);
  const vd adv3{1.0, 2.0, 3.0};
  bad = b;
  bad.advantages = adv3;
  CHECK_THROWS_AS(s.evaluate(bad), size_mismatch);
  // Non-finite log-probs at active tokens throw; at masked tokens they are ignored.
  vd lp = ex_logp;
  lp[1] = std::numeric_limits<double>::quiet_NaN();
  bad = b;
  bad.logp = lp;
  CHECK_THROWS_AS(s.evaluate(bad), nonfinite_error);
  lp = ex_logp;
  lp[3] = -std::numeric_limits<double>::infinity();  // masked position
  bad.logp = lp;
  CHECK_NOTHROW(s.evaluate(bad));
  vd ref = ex_ref;
  ref[0] = std::numeric_limits<double>::infinity();
  bad = b;
  bad.ref_logp = ref;
  CHECK_THROWS_AS(s.evaluate(bad), nonfinite_error);
  vd adv = ex_adv;
  adv[1] = std::numeric_limits<double>::quiet_NaN();
  bad = b;
  bad.advantages = adv;
  CHECK_THROWS_AS(s.evaluate(bad), nonfinite_error);
  // verl's seq-mean-token-mean with a fully masked row: the reference's loss is NaN -> we throw.
  surrogate_options v = surrogate_options::verl();
  v.aggregation = loss_aggregation::seq_mean_token_mean;
  const vd m0{1, 1, 1, 1, 0, 0, 0, 0};
  bad = b;
  bad.mask = m0;
  CHECK_THROWS_AS(clipped_surrogate(v).evaluate(bad), invalid_argument);
  surrogate_options up = surrogate_options::verl_upstream();
  up.aggregation = loss_aggregation::seq_mean_token_mean;
  CHECK_NOTHROW(clipped_surrogate(up).evaluate(bad));
  // Options.
  auto opt = [](auto f) {
    surrogate_options o;
    f(o);
    return o;
  };
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.eps_low = 1.0; })), invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.eps_high = -0.1; })), invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.dual_clip = 0.5; })), invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.delta = -1.0; })), invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.beta = -0.1; })), invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.gradient_accumulation_steps = 0; })),
                  invalid_argument);
  CHECK_THROWS_AS(clipped_surrogate(opt([](surrogate_options& o) { o.num_processes = 0; })), invalid_argument);
  try {
    clipped_surrogate(opt([](surrogate_options& o) { o.dual_clip = 0.5; }));
  } catch (const invalid_argument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("dual_clip") != std::string::npos);
    CHECK(msg.find("0.5") != std::string::npos);
  }
}
