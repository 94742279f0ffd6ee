// SPDX-License-Identifier: Apache-2.0
// MA-RLHF macro actions (seed spec rl_zo.md §1): the worked examples of §1.5 (numbers from the
// authors' trainer methods run in float64), the reference's quirks of §1.4 (the empty macro action
// of a duplicate boundary, reproduced only under reference_quirks), the termination rules, the
// properties of §7 (fixed_ngram{1} = token GAE and token PPO, A_k + V_k = G_k and G_0 = sum R_k at
// gamma = lam = 1, coefficients = central finite differences), padded batches, bad input (library
// exception, outputs untouched).
//
// Tolerances (algorithms.md §0.4): closed-form float64 quantities relative 1e-12 with an absolute
// floor of 1e-15 (the spec's numbers are PyTorch float64 in another summation order); central
// finite differences of piecewise-smooth losses (step 1e-7, away from clip kinks) absolute 1e-8.
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "support/near.hpp"

using namespace stochgrad;
using vd = std::vector<double>;
using vs = std::vector<std::size_t>;

namespace {

using sg_test::all_equal;
using sg_test::near;
using sg_test::rel;
using sg_test::require_all_near;

vs boundaries_of(const macro_segmentation& s, std::size_t n) {
  const auto b = s.boundaries(n);
  return vs(b.begin(), b.end());
}

// §1.5 example 1 inputs (n = 8).
const vd e1_old{-1.2, -0.4, -2.1, -0.7, -0.9, -1.5, -0.3, -0.05};
const vd e1_ref{-1.0, -0.5, -1.8, -0.9, -1.1, -1.3, -0.35, -0.1};
const vd e1_logp{-1.0, -0.45, -2.6, -0.5, -0.95, -1.2, -0.3, -0.02};
const vd e1_V{0.1, 0.2, 0.15, 0.3, 0.25, 0.4, 0.5, 0.6};
const vd e1_Vnew{0.2, 0.1, 0.3, 0.45, 0.2, 0.35, 0.75, 0.5};

// §1.5 example 3 inputs (n = 6).
const vd e3_old{-0.8, -1.1, -0.2, -2.0, -0.6, -0.1};
const vd e3_ref{-0.9, -1.0, -0.25, -1.7, -0.7, -0.12};
const vd e3_logp{-0.7, -1.3, -0.1, -2.2, -0.55, -0.1};
const vd e3_V{0.05, 0.1, 0.2, 0.1, 0.3, 0.4};
const vd e3_Vnew{0.0, 0.35, 0.1, 0.2, 0.25, 0.55};
const vd e3_ppl{2.0, 3.5, 1.2, 1.1, 4.0, 1.5};

vd first(const vd& x, std::size_t n) { return vd(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n)); }

// Everything of one row of the pipeline: macro-level and token-level outputs, both losses.
struct pipeline {
  macro_segmentation seg;
  vd rewards, adv, ret, mV, mR, mA, mG, coef, vgrad;
  double L_pi = 0.0, L_V = 0.0;
};

template <class Rule>
pipeline run_row(const Rule& rule, const vd& old, const vd& ref, const vd& logp, const vd& V, const vd& Vnew, double s,
                 macro_gae_options go = {}, macro_segmentation_options so = {}) {
  const std::size_t n = old.size();
  pipeline p;
  const vd mask(n, 1.0), scores{s};
  p.rewards.assign(n, 0.0);
  ma_rlhf_token_rewards<double, double>(old, ref, scores, mask, n, {}, p.rewards);
  segment_macro_actions(rule, 1, n, std::span<const double>(mask), p.seg, so);
  const std::size_t K = p.seg.total();
  p.adv.assign(n, 0.0);
  p.ret.assign(n, 0.0);
  p.mV.assign(K, 0.0);
  p.mR.assign(K, 0.0);
  p.mA.assign(K, 0.0);
  p.mG.assign(K, 0.0);
  macro_gae<double, double>(p.rewards, V, mask, p.seg, go, p.adv, p.ret, {p.mV, p.mR, p.mA, p.mG});
  p.coef.assign(n, 0.0);
  const token_batch<double, double> tb{1, n, logp, old, {}, mask, p.adv};
  p.L_pi = clipped_surrogate(macro_ppo_options()).evaluate(tb, std::span<double>(p.coef)).loss;
  p.vgrad.assign(n, 0.0);
  p.L_V = clipped_value_loss<double, double>(Vnew, V, p.ret, mask, n, 0.2, p.vgrad).loss;
  return p;
}

// Independent token-level GAE (one row, all tokens active).
void token_gae(const vd& r, const vd& V, double gamma, double lam, vd& A, vd& G) {
  const std::size_t n = r.size();
  A.assign(n, 0.0);
  G.assign(n, 0.0);
  double next_v = 0.0, next_a = 0.0;
  for (std::size_t t = n; t-- > 0;) {
    A[t] = r[t] + gamma * next_v - V[t] + gamma * lam * next_a;
    G[t] = A[t] + V[t];
    next_v = V[t];
    next_a = A[t];
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// §1.5 worked examples
// ---------------------------------------------------------------------------------------------

TEST_CASE("§1.5 MA-RLHF example 1: fixed N = 3, n = 8, equal aggregation", "[pg][macro][worked]") {
  for (const bool quirks : {false, true}) {  // no duplicate boundary here: both agree
    INFO("reference_quirks " << quirks);
    const pipeline p = run_row(fixed_ngram{3}, e1_old, e1_ref, e1_logp, e1_V, e1_Vnew, 1.7, {}, {quirks});
    CHECK(boundaries_of(p.seg, 0) == vs{0, 3, 6, 7});
    CHECK(p.seg.sizes(0) == vs{3, 3, 1, 1});
    require_all_near(p.mV, {0.15, 0.31666666666666665, 0.5, 0.6});
    require_all_near(p.mR, {0.006666666666666667, -0.003333333333333336, -0.0024999999999999996, 1.6975});
    require_all_near(p.mA, {1.3732961458333333, 1.26311875, 1.1401250000000003, 1.0975000000000001});
    require_all_near(p.mG, {1.5232961458333332, 1.5797854166666667, 1.6401250000000003, 1.6975000000000002});
    CHECK(near(p.L_pi, -1.2864088584294682));
    CHECK(near(p.L_V, 0.7677358993226095));
    require_all_near(p.coef, {0, -0.1632899628087613, -0.10411827716413856, 0, -0.15018946520482018, 0,
                              -0.14251562500000003, -0.14136548137674812});
    // Token-level outputs: every token of macro action k carries A_k and G_k.
    const vd wantA{p.mA[0], p.mA[0], p.mA[0], p.mA[1], p.mA[1], p.mA[1], p.mA[2], p.mA[3]};
    CHECK(p.adv == wantA);
    for (std::size_t t = 0; t < 8; ++t) CHECK(p.ret[t] == p.mG[t < 3 ? 0 : t < 6 ? 1 : t - 4]);
  }
  // The spec's ratios are the inputs' (exp(logp - old)); tokens 0, 3, 5 are clipped (A > 0, rho > 1.2).
  const vd rho{1.2214027581601699,
               0.951229424500714,
               0.6065306597126334,
               1.2214027581601699,
               0.9512294245007141,
               1.3498588075760032,
               1.0,
               1.030454533953517};
  for (std::size_t t = 0; t < 8; ++t) CHECK(near(std::exp(e1_logp[t] - e1_old[t]), rho[t], 1e-15));
}

TEST_CASE("§1.5 / §1.4 MA-RLHF example 2: the empty macro action of a duplicate boundary", "[pg][macro][worked]") {
  const vd old = first(e1_old, 7), ref = first(e1_ref, 7), logp = first(e1_logp, 7), V = first(e1_V, 7),
           Vnew = first(e1_Vnew, 7);
  SECTION("reference_quirks: the reference's numbers") {
    const pipeline p = run_row(fixed_ngram{3}, old, ref, logp, V, Vnew, 3.2, {}, {.reference_quirks = true});
    CHECK(boundaries_of(p.seg, 0) == vs{0, 3, 6, 6});
    CHECK(p.seg.sizes(0) == vs{3, 3, 0, 1});
    require_all_near(p.mV, {0.15, 0.31666666666666665, 0.0, 0.5});
    require_all_near(p.mR, {0.006666666666666667, -0.003333333333333336, 0.0, 2.4975});  // s = 3.2 clipped to 2.5
    require_all_near(p.mA, {2.0331898958333325, 1.9577437499999994, 2.3976249999999997, 1.9975});
    require_all_near(p.mG, {2.1831898958333325, 2.274410416666666, 2.3976249999999997, 2.4975});
    CHECK(near(p.L_pi, -2.0236283427124895));
    CHECK(near(p.L_V, 1.8846528668427465));
    require_all_near(p.coef,
                     {0, -0.27629000778774393, -0.17617028697726453, 0, -0.2660376372331956, 0, -0.28535714285714286});
    // A_2 belongs to no token.
    for (const double a : p.adv) CHECK(a != p.mA[2]);
    // The same from caller-given starts {0, 3, 6} (n - 1 appended, as the parse rule does).
    const vs starts{0, 3, 6};
    const pipeline q =
        run_row(explicit_boundaries{starts}, old, ref, logp, V, Vnew, 3.2, {}, {.reference_quirks = true});
    CHECK(boundaries_of(q.seg, 0) == vs{0, 3, 6, 6});
    CHECK(q.mA == p.mA);
    CHECK(q.L_pi == p.L_pi);
  }
  SECTION("default: de-duplicated, the macro action before the last bootstraps from the true next value") {
    const pipeline p = run_row(fixed_ngram{3}, old, ref, logp, V, Vnew, 3.2);
    CHECK(boundaries_of(p.seg, 0) == vs{0, 3, 6});
    CHECK(p.seg.sizes(0) == vs{3, 3, 1});
    require_all_near(p.mV, {0.15, 0.31666666666666665, 0.5});
    require_all_near(p.mR, {0.006666666666666667, -0.003333333333333336, 2.4975});
    const double a2 = 2.4975 - 0.5;
    const double a1 = -0.003333333333333336 + 0.5 - 0.31666666666666665 + 0.95 * a2;
    const double a0 = 0.006666666666666667 + 0.31666666666666665 - 0.15 + 0.95 * a1;
    require_all_near(p.mA, {a0, a1, a2});
    CHECK(std::abs(p.mA[1] - 1.9577437499999994) > 0.1);  // differs from the quirk's value
    const vs starts{0, 3, 6};
    const pipeline q = run_row(explicit_boundaries{starts}, old, ref, logp, V, Vnew, 3.2);
    CHECK(q.mA == p.mA);
  }
}

TEST_CASE("§1.5 MA-RLHF example 3: perplexity rule, position aggregation", "[pg][macro][worked]") {
  const macro_gae_options go{.gamma = 1.0, .lam = 0.95, .aggregation = macro_aggregation::position};
  const pipeline p = run_row(perplexity_rise<double>{e3_ppl}, e3_old, e3_ref, e3_logp, e3_V, e3_Vnew, -0.8, go);
  CHECK(boundaries_of(p.seg, 0) == vs{0, 3, 5});
  CHECK(p.seg.sizes(0) == vs{3, 2, 1});
  require_all_near(p.mV, {0.09090909090909093, 0.16666666666666666, 0.4});
  require_all_near(p.mR, {-0.0018181818181818164, 0.008333333333333335, -0.801});
  require_all_near(p.mA, {-0.7803797727272727, -0.8992833333333332, -1.201});
  require_all_near(p.mG, {-0.6894706818181817, -0.7326166666666666, -0.801});
  CHECK(near(p.L_pi, 0.8744147458789419));
  CHECK(near(p.L_V, 0.48663695312103367));
  require_all_near(p.coef, {0.1437421716454442, 0.10648681983530406, 0.1437421716454442, 0.12271182012174625,
                            0.15756509596433643, 0.2001666666666667});
  // The cross-entropies -log p_ref give the same boundaries as their exponentials.
  vd ce(6);
  for (std::size_t t = 0; t < 6; ++t) ce[t] = std::log(e3_ppl[t]);
  const pipeline q = run_row(perplexity_rise<double>{ce}, e3_old, e3_ref, e3_logp, e3_V, e3_Vnew, -0.8, go);
  CHECK(boundaries_of(q.seg, 0) == vs{0, 3, 5});
}

// ---------------------------------------------------------------------------------------------
// §7 properties
// ---------------------------------------------------------------------------------------------

TEST_CASE("§7 MA-RLHF: fixed_ngram{1} is token-level GAE and token PPO; the reference's quirk breaks it",
          "[pg][macro][property]") {
  std::mt19937_64 rng(241002743);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t n = 1 + rng() % 20;
    vd old(n), ref(n), logp(n), V(n), Vnew(n);
    for (std::size_t t = 0; t < n; ++t) {
      old[t] = -1.0 + 0.8 * u(rng);
      ref[t] = old[t] + 0.3 * u(rng);
      logp[t] = old[t] + 0.4 * u(rng);
      V[t] = u(rng);
      Vnew[t] = V[t] + 0.4 * u(rng);
    }
    const double s = 3.0 * u(rng), gamma = 0.9 + 0.1 * (u(rng) + 1.0) / 2.0, lam = 0.5 + 0.5 * (u(rng) + 1.0) / 2.0;
    const pipeline p = run_row(fixed_ngram{1}, old, ref, logp, V, Vnew, s, {.gamma = gamma, .lam = lam});
    CHECK(p.seg.macro_actions(0) == n);
    vd A, G;
    token_gae(p.rewards, V, gamma, lam, A, G);
    require_all_near(p.adv, A, 1e-12, 1e-14);
    require_all_near(p.ret, G, 1e-12, 1e-14);
    // Token PPO: the clipped surrogate with the token GAE advantages.
    vd coef(n);
    const vd mask(n, 1.0);
    const token_batch<double, double> tb{1, n, logp, old, {}, mask, A};
    const double L = clipped_surrogate(macro_ppo_options()).evaluate(tb, std::span<double>(coef)).loss;
    CHECK(near(p.L_pi, L, 1e-12, 1e-14));
    require_all_near(p.coef, coef, 1e-12, 1e-14);
    if (n >= 2) {
      // The reference's fixed rule with N = 1 always appends n - 1 twice: an empty macro action
      // before the last token, so token n - 2 bootstraps from V = 0 ("ngram = 1 is PPO" fails).
      const pipeline q =
          run_row(fixed_ngram{1}, old, ref, logp, V, Vnew, s, {.gamma = gamma, .lam = lam}, {.reference_quirks = true});
      CHECK(q.seg.macro_actions(0) == n + 1);
      CHECK(q.seg.sizes(0)[n - 1] == 0);
      CHECK(near(q.adv[n - 1], A[n - 1], 1e-12, 1e-14));
      // The empty macro action has V = R = 0 but its own advantage gamma V_{n-1} + gamma lam A_{n-1}.
      const double a_empty = gamma * V[n - 1] + gamma * lam * A[n - 1];
      CHECK(near(q.adv[n - 2], p.rewards[n - 2] - V[n - 2] + gamma * lam * a_empty, 1e-12, 1e-14));
      CHECK(!near(q.adv[n - 2], A[n - 2], 1e-9, 1e-12));
    }
  }
}

TEST_CASE("§7 MA-RLHF: gamma = lam = 1, equal aggregation: A_k + V_k = G_k and G_0 = sum_k R_k",
          "[pg][macro][property]") {
  std::mt19937_64 rng(77);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t n = 1 + rng() % 25, N = 1 + rng() % 6;
    vd r(n), V(n);
    for (std::size_t t = 0; t < n; ++t) {
      r[t] = u(rng);
      V[t] = u(rng);
    }
    const vd mask(n, 1.0);
    for (const bool quirks : {false, true}) {
      macro_segmentation seg;
      segment_macro_actions(fixed_ngram{N}, 1, n, std::span<const double>(mask), seg, {quirks});
      const std::size_t K = seg.total();
      vd adv(n), ret(n), mV(K), mR(K), mA(K), mG(K);
      macro_gae<double, double>(r, V, mask, seg, {.gamma = 1.0, .lam = 1.0}, adv, ret, {mV, mR, mA, mG});
      double sum_r = 0.0;
      for (std::size_t k = 0; k < K; ++k) {
        CHECK(near(mA[k] + mV[k], mG[k], 1e-12, 1e-14));
        sum_r += mR[k];
      }
      CHECK(near(mG[0], sum_r, 1e-12, 1e-13));
      // Tokens: every token of a macro action carries its A and G.
      for (std::size_t k = 0; k < K; ++k) {
        const auto [a, e] = seg.tokens(0, k);
        for (std::size_t t = a; t < e; ++t) {
          CHECK(adv[t] == mA[k]);
          CHECK(ret[t] == mG[k]);
        }
      }
    }
  }
}

TEST_CASE("§7 MA-RLHF: policy and value coefficients match central finite differences", "[pg][macro][property]") {
  const pipeline p = run_row(fixed_ngram{3}, e1_old, e1_ref, e1_logp, e1_V, e1_Vnew, 1.7);
  const vd mask(8, 1.0);
  const clipped_surrogate sur(macro_ppo_options());
  const double h = 1e-7;
  for (std::size_t t = 0; t < 8; ++t) {
    vd up = e1_logp, dn = e1_logp;
    up[t] += h;
    dn[t] -= h;
    const token_batch<double, double> bu{1, 8, up, e1_old, {}, mask, p.adv}, bd{1, 8, dn, e1_old, {}, mask, p.adv};
    const double fd = (sur.evaluate(bu).loss - sur.evaluate(bd).loss) / (2 * h);
    INFO("token " << t);
    CHECK(std::abs(fd - p.coef[t]) < 1e-8);
    vd vu = e1_Vnew, vdn = e1_Vnew;
    vu[t] += h;
    vdn[t] -= h;
    const double fv = (clipped_value_loss<double, double>(vu, e1_V, p.ret, mask, 8).loss -
                       clipped_value_loss<double, double>(vdn, e1_V, p.ret, mask, 8).loss) /
                      (2 * h);
    CHECK(std::abs(fv - p.vgrad[t]) < 1e-8);
  }
  // Token 6 is on the clipped value branch (Vnew = 0.75 > V + 0.2 = 0.7, the clipped square larger): gradient 0.
  CHECK(p.vgrad[6] == 0.0);
  const value_loss_result vl = clipped_value_loss<double, double>(e1_Vnew, e1_V, p.ret, mask, 8);
  CHECK(vl.clip_fraction == 1.0 / 8.0);
  CHECK(vl.active_tokens == 8.0);
}

// ---------------------------------------------------------------------------------------------
// Termination rules
// ---------------------------------------------------------------------------------------------

TEST_CASE("MA-RLHF termination rules: short sequences, holes, schedules, n = 1", "[pg][macro]") {
  const vd ones(10, 1.0);
  macro_segmentation seg;
  SECTION("fixed: a sequence shorter than N + 1 tokens is one macro action plus the last token") {
    segment_macro_actions(fixed_ngram{5}, 1, 4, std::span<const double>(ones).subspan(0, 4), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 3});
    CHECK(seg.sizes(0) == vs{3, 1});
    segment_macro_actions(fixed_ngram{5}, 1, 6, std::span<const double>(ones).subspan(0, 6), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 5});  // (n-1) mod N == 0: the duplicate is removed
    segment_macro_actions(fixed_ngram{5}, 1, 6, std::span<const double>(ones).subspan(0, 6), seg, {true});
    CHECK(boundaries_of(seg, 0) == vs{0, 5, 5});
    CHECK(seg.sizes(0) == vs{5, 0, 1});
  }
  SECTION("n = 1: one macro action (the reference's split would start with an empty one)") {
    segment_macro_actions(fixed_ngram{3}, 1, 1, std::span<const double>(ones).subspan(0, 1), seg);
    CHECK(boundaries_of(seg, 0) == vs{0});
    CHECK(seg.sizes(0) == vs{1});
    segment_macro_actions(fixed_ngram{3}, 1, 1, std::span<const double>(ones).subspan(0, 1), seg, {true});
    CHECK(seg.sizes(0) == vs{0, 1});
    const vd p1{1.0};
    segment_macro_actions(perplexity_rise<double>{p1}, 1, 1, std::span<const double>(ones).subspan(0, 1), seg);
    CHECK(seg.sizes(0) == vs{1});
  }
  SECTION("fixed: masked tokens (holes) are not counted; padding ends the row") {
    const vd mask{1, 1, 0, 1, 1, 1, 0, 1, 0, 0};
    segment_macro_actions(fixed_ngram{2}, 1, 10, std::span<const double>(mask), seg);
    CHECK(seg.valid_length(0) == 8);
    CHECK(boundaries_of(seg, 0) == vs{0, 2, 5, 7});
    CHECK(seg.sizes(0) == vs{2, 3, 2, 1});
  }
  SECTION("ngram_schedule: the j-th macro action has lengths[j] tokens, then the rest") {
    const vs lengths{2, 1, 3};
    segment_macro_actions(ngram_schedule{lengths}, 1, 10, std::span<const double>(ones), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 2, 3, 6, 9});
    CHECK(seg.sizes(0) == vs{2, 1, 3, 3, 1});
    segment_macro_actions(ngram_schedule{lengths}, 1, 4, std::span<const double>(ones).subspan(0, 4), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 2, 3});
    // With a schedule of ones it is fixed_ngram{1} up to its length.
    const vs all_ones(20, 1);
    macro_segmentation a;
    segment_macro_actions(ngram_schedule{all_ones}, 1, 10, std::span<const double>(ones), seg);
    segment_macro_actions(fixed_ngram{1}, 1, 10, std::span<const double>(ones), a);
    CHECK(boundaries_of(seg, 0) == boundaries_of(a, 0));
  }
  SECTION("randomized_ngram_lengths: a permutation of [1,2,3,5,10] x R, reproducible from the seed") {
    vs l1, l2, l3;
    randomized_ngram_lengths(3, 42, l1);
    randomized_ngram_lengths(3, 42, l2);
    randomized_ngram_lengths(3, 43, l3);
    CHECK(l1 == l2);
    CHECK(l1 != l3);
    REQUIRE(l1.size() == 15);
    vs sorted = l1;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == vs{1, 1, 1, 2, 2, 2, 3, 3, 3, 5, 5, 5, 10, 10, 10});
    CHECK_THROWS_AS(randomized_ngram_lengths(0, 1, l1), invalid_argument);
  }
  SECTION("perplexity: non-increasing perplexities give one macro action plus the last token") {
    const vd ppl{5.0, 4.0, 4.0, 3.0, 1.0};
    segment_macro_actions(perplexity_rise<double>{ppl}, 1, 5, std::span<const double>(ones).subspan(0, 5), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 4});
    const vd rising{1.0, 2.0, 3.0, 4.0};
    segment_macro_actions(perplexity_rise<double>{rising}, 1, 4, std::span<const double>(ones).subspan(0, 4), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 1, 2, 3});
  }
  SECTION("explicit boundaries for several rows") {
    const vs starts{0, 2, 0, 1, 3};
    const vs offsets{0, 2, 5};
    const vd mask{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    segment_macro_actions(explicit_boundaries{starts, offsets}, 2, 8, std::span<const double>(mask), seg);
    CHECK(boundaries_of(seg, 0) == vs{0, 2, 7});
    CHECK(boundaries_of(seg, 1) == vs{0, 1, 3, 6});
    CHECK(seg.offset(1) == 3);
    CHECK(seg.total() == 7);
  }
}

TEST_CASE("MA-RLHF: last aggregation, and a padded batch equals its rows computed alone", "[pg][macro]") {
  SECTION("last") {
    const vd r{1, 2, 3, 4, 5}, V{0.5, 0.4, 0.3, 0.2, 0.1}, mask{1, 1, 0, 1, 1};
    const vs starts{0, 3};
    macro_segmentation seg;
    segment_macro_actions(explicit_boundaries{starts}, 1, 5, std::span<const double>(mask), seg);
    vd adv(5), mV(3), mR(3);
    macro_gae<double, double>(r, V, mask, seg, {.aggregation = macro_aggregation::last}, adv, {}, {mV, mR, {}, {}});
    require_all_near(mV, {0.4, 0.2, 0.1});  // segment [0, 3) without its inactive token 2: last active is token 1
    require_all_near(mR, {2, 4, 5});
    macro_gae<double, double>(r, V, mask, seg, {.aggregation = macro_aggregation::mean}, adv, {}, {mV, mR, {}, {}});
    require_all_near(mV, {0.45, 0.2, 0.1});
  }
  SECTION("padded batch") {
    // Row 0: example 1 (8 tokens); row 1: example 3 right-padded from 6 to 8 tokens.
    const std::size_t L = 8;
    vd old = e1_old, ref = e1_ref, logp = e1_logp, V = e1_V, Vnew = e1_Vnew, mask(16, 1.0), ppl(16, 1.0);
    for (std::size_t t = 0; t < 8; ++t) {
      const bool in = t < 6;
      old.push_back(in ? e3_old[t] : 0.0);
      ref.push_back(in ? e3_ref[t] : 0.0);
      logp.push_back(in ? e3_logp[t] : 0.0);
      V.push_back(in ? e3_V[t] : 99.0);
      Vnew.push_back(in ? e3_Vnew[t] : 99.0);
      mask[8 + t] = in ? 1.0 : 0.0;
      ppl[8 + t] = in ? e3_ppl[t] : NAN;  // not read past the valid length
    }
    for (std::size_t t = 0; t < 8; ++t) ppl[t] = 1.0 + static_cast<double>(t % 3 == 0);
    const vd scores{1.7, -0.8};
    vd rewards(16, 7.0), adv(16, 7.0), ret(16, 7.0);
    ma_rlhf_token_rewards<double, double>(old, ref, scores, mask, L, {}, rewards);
    CHECK(rewards[13] == -0.05 * (-0.1 - -0.12) + -0.8);  // the score on the last valid token
    CHECK(rewards[14] == 0.0);
    macro_segmentation seg;
    segment_macro_actions(perplexity_rise<double>{ppl}, 2, L, std::span<const double>(mask), seg);
    CHECK(seg.valid_length(1) == 6);
    CHECK(boundaries_of(seg, 1) == vs{0, 3, 5});
    const macro_gae_options go{.aggregation = macro_aggregation::position};
    macro_gae<double, double>(rewards, V, mask, seg, go, adv, ret);
    const pipeline p = run_row(perplexity_rise<double>{e3_ppl}, e3_old, e3_ref, e3_logp, e3_V, e3_Vnew, -0.8, go);
    for (std::size_t t = 0; t < 6; ++t) {
      CHECK(near(adv[8 + t], p.adv[t]));
      CHECK(near(ret[8 + t], p.ret[t]));
    }
    CHECK(adv[14] == 0.0);
    CHECK(ret[15] == 0.0);
    // The policy loss of the padded row alone: token mean over its 6 tokens.
    vd coef(16);
    const std::span<const double> row1(logp.data() + 8, 8), old1(old.data() + 8, 8), m1(mask.data() + 8, 8),
        a1(adv.data() + 8, 8);
    const token_batch<double, double> tb{1, 8, row1, old1, {}, m1, a1};
    const double L1 = clipped_surrogate(macro_ppo_options()).evaluate(tb, std::span<double>(coef).subspan(0, 8)).loss;
    CHECK(near(L1, 0.8744147458789419));
    const vd r1(ret.begin() + 8, ret.end()), v1(V.begin() + 8, V.end()), vn1(Vnew.begin() + 8, Vnew.end());
    CHECK(near(clipped_value_loss<double, double>(vn1, v1, r1, m1, 8).loss, 0.48663695312103367));
    // In place: advantages over the rewards, returns over the values.
    vd r2 = rewards, v2 = V;
    macro_gae<double, double>(r2, v2, mask, seg, go, r2, v2);
    CHECK(r2 == adv);
    CHECK(v2 == ret);
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

TEST_CASE("MA-RLHF: bad input throws, nothing written", "[pg][macro][validation]") {
  const vd ones(8, 1.0);
  macro_segmentation seg;
  segment_macro_actions(fixed_ngram{3}, 1, 8, std::span<const double>(ones), seg);
  const vs before = boundaries_of(seg, 0);
  auto unchanged = [&] {
    CHECK(seg.sequences() == 1);
    CHECK(boundaries_of(seg, 0) == before);
  };
  SECTION("segmentation") {
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{0}, 1, 8, std::span<const double>(ones), seg), invalid_argument);
    const vs empty_l;
    CHECK_THROWS_AS(segment_macro_actions(ngram_schedule{empty_l}, 1, 8, std::span<const double>(ones), seg),
                    invalid_argument);
    const vs zero_l{2, 0};
    CHECK_THROWS_AS(segment_macro_actions(ngram_schedule{zero_l}, 1, 8, std::span<const double>(ones), seg),
                    invalid_argument);
    // A row without an active token (an empty response).
    const vd mask{1, 1, 1, 1, 0, 0, 0, 0};
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{3}, 2, 4, std::span<const double>(mask), seg), invalid_argument);
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{3}, 0, 4, std::span<const double>(), seg), invalid_argument);
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{3}, 1, 0, std::span<const double>(), seg), invalid_argument);
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{3}, 3, 4, std::span<const double>(mask), seg), size_mismatch);
    vd nan_mask = ones;
    nan_mask[2] = NAN;
    CHECK_THROWS_AS(segment_macro_actions(fixed_ngram{3}, 1, 8, std::span<const double>(nan_mask), seg),
                    nonfinite_error);
    // Perplexities: size, non-finite among the valid tokens.
    const vd ppl_short(7, 1.0);
    CHECK_THROWS_AS(segment_macro_actions(perplexity_rise<double>{ppl_short}, 1, 8, std::span<const double>(ones), seg),
                    size_mismatch);
    vd ppl(8, 1.0);
    ppl[3] = NAN;
    CHECK_THROWS_AS(segment_macro_actions(perplexity_rise<double>{ppl}, 1, 8, std::span<const double>(ones), seg),
                    nonfinite_error);
    // Explicit starts: empty (no macro action), not from 0, repeated (an empty macro action), past the end.
    for (const vs& bad : {vs{}, vs{1, 3}, vs{0, 3, 3}, vs{0, 5, 4}, vs{0, 8}}) {
      INFO("starts size " << bad.size());
      CHECK_THROWS_AS(segment_macro_actions(explicit_boundaries{bad}, 1, 8, std::span<const double>(ones), seg),
                      invalid_argument);
    }
    const vs starts{0, 2, 0};
    const vs bad_offsets{0, 2};
    CHECK_THROWS_AS(
        segment_macro_actions(explicit_boundaries{starts, bad_offsets}, 2, 4, std::span<const double>(ones), seg),
        size_mismatch);
    CHECK_THROWS_AS(segment_macro_actions(explicit_boundaries{starts}, 2, 4, std::span<const double>(ones), seg),
                    size_mismatch);
    const vs wrong_end{0, 2, 2};
    CHECK_THROWS_AS(
        segment_macro_actions(explicit_boundaries{starts, wrong_end}, 2, 4, std::span<const double>(ones), seg),
        size_mismatch);
    try {
      segment_macro_actions(explicit_boundaries{vs{0, 3, 3}}, 1, 8, std::span<const double>(ones), seg);
    } catch (const invalid_argument& e) {
      CHECK(std::string(e.what()).find("empty macro action") != std::string::npos);
    }
    unchanged();
  }
  SECTION("token rewards") {
    vd out(8, 7.0);
    const vd s{1.0}, nan_s{NAN};
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, nan_s, ones, 8, {}, out)), nonfinite_error);
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, s, ones, 8, {.kl_coef = -0.1}, out)),
                    invalid_argument);
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, s, ones, 8, {.reward_clip = 0.0}, out)),
                    invalid_argument);
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, s, ones, 8, {.reward_clip = NAN}, out)),
                    invalid_argument);
    vd bad_old = e1_old;
    bad_old[4] = INFINITY;
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(bad_old, e1_ref, s, ones, 8, {}, out)), nonfinite_error);
    const vd zero_mask(8, 0.0);
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, s, zero_mask, 8, {}, out)),
                    invalid_argument);
    const vd two{1.0, 2.0};
    CHECK_THROWS_AS((ma_rlhf_token_rewards<double, double>(e1_old, e1_ref, two, ones, 8, {}, out)), size_mismatch);
    CHECK(all_equal(out, 7.0));
  }
  SECTION("macro GAE") {
    vd adv(8, 7.0), ret(8, 7.0);
    const vd r(8, 0.1);
    CHECK_THROWS_AS((macro_gae<double, double>(r, e1_V, ones, seg, {.gamma = 1.5}, adv, ret)), invalid_argument);
    CHECK_THROWS_AS((macro_gae<double, double>(r, e1_V, ones, seg, {.lam = -0.1}, adv, ret)), invalid_argument);
    vd other_mask = ones;
    other_mask[7] = 0.0;  // valid length 7, the segmentation says 8
    CHECK_THROWS_AS((macro_gae<double, double>(r, e1_V, other_mask, seg, {}, adv, ret)), invalid_argument);
    vd bad_v = e1_V;
    bad_v[2] = NAN;
    CHECK_THROWS_AS((macro_gae<double, double>(r, bad_v, ones, seg, {}, adv, ret)), nonfinite_error);
    const vd short_r(7, 0.1);
    CHECK_THROWS_AS((macro_gae<double, double>(short_r, e1_V, ones, seg, {}, adv, ret)), size_mismatch);
    vd short_macro(2);
    CHECK_THROWS_AS((macro_gae<double, double>(r, e1_V, ones, seg, {}, adv, ret, {short_macro, {}, {}, {}})),
                    size_mismatch);
    const macro_segmentation empty;
    CHECK_THROWS_AS((macro_gae<double, double>(r, e1_V, ones, empty, {}, adv, ret)), invalid_argument);
    CHECK(all_equal(adv, 7.0));
    CHECK(all_equal(ret, 7.0));
    // A non-finite value at an inactive token is not read.
    vd masked = ones, v2 = e1_V;
    masked[3] = 0.0;
    v2[3] = NAN;
    macro_segmentation s2;
    segment_macro_actions(fixed_ngram{3}, 1, 8, std::span<const double>(masked), s2);
    CHECK_NOTHROW(macro_gae<double, double>(r, v2, masked, s2, {}, adv, ret));
    CHECK(std::isfinite(adv[3]));
  }
  SECTION("value loss") {
    vd grad(8, 7.0);
    const vd G(8, 1.0);
    CHECK_THROWS_AS((clipped_value_loss<double, double>(e1_Vnew, e1_V, G, ones, 8, 0.0, grad)), invalid_argument);
    CHECK_THROWS_AS((clipped_value_loss<double, double>(e1_Vnew, e1_V, G, ones, 8, NAN, grad)), invalid_argument);
    vd bad = e1_Vnew;
    bad[1] = -INFINITY;
    CHECK_THROWS_AS((clipped_value_loss<double, double>(bad, e1_V, G, ones, 8, 0.2, grad)), nonfinite_error);
    const vd G7(7, 1.0);
    CHECK_THROWS_AS((clipped_value_loss<double, double>(e1_Vnew, e1_V, G7, ones, 8, 0.2, grad)), size_mismatch);
    CHECK_THROWS_AS((clipped_value_loss<double, double>(e1_Vnew, e1_V, G, ones, 3, 0.2, grad)), invalid_argument);
    CHECK(all_equal(grad, 7.0));
    // Unclipped with an infinite range: the plain 0.5 (Vnew - G)^2 token mean.
    const value_loss_result r = clipped_value_loss<double, double>(e1_Vnew, e1_V, G, ones, 8, INFINITY, grad);
    double want = 0.0;
    for (std::size_t t = 0; t < 8; ++t) want += 0.5 * (e1_Vnew[t] - 1.0) * (e1_Vnew[t] - 1.0) / 8.0;
    CHECK(near(r.loss, want));
    CHECK(near(grad[0], (0.2 - 1.0) / 8.0));
  }
}

TEST_CASE("MA-RLHF in float32: example 1 to float tolerance", "[pg][macro][float]") {
  auto f = [](const vd& x) { return std::vector<float>(x.begin(), x.end()); };
  const std::vector<float> old = f(e1_old), ref = f(e1_ref), logp = f(e1_logp), V = f(e1_V), Vnew = f(e1_Vnew);
  const std::vector<float> mask(8, 1.0f), scores{1.7f};
  std::vector<float> r(8), adv(8), ret(8), coef(8), grad(8);
  ma_rlhf_token_rewards<float, float>(old, ref, scores, mask, 8, {}, r);
  macro_segmentation seg;
  segment_macro_actions(fixed_ngram{3}, 1, 8, std::span<const float>(mask), seg);
  macro_gae<float, float>(r, V, mask, seg, {}, adv, ret);
  CHECK(near(adv[0], 1.3732961458333333, 2e-6));
  CHECK(near(ret[7], 1.6975000000000002, 2e-6));
  const token_batch<float, float> tb{1, 8, logp, old, {}, mask, adv};
  const double L = clipped_surrogate(macro_ppo_options()).evaluate(tb, std::span<float>(coef)).loss;
  CHECK(near(L, -1.2864088584294682, 2e-6));
  CHECK(near(clipped_value_loss<float, float>(Vnew, V, ret, mask, 8, 0.2, grad).loss, 0.7677358993226095, 2e-6));
}

// ---------------------------------------------------------------------------------------------
// The actor as a stepper: per-token advantages in pg_batch
// ---------------------------------------------------------------------------------------------

TEST_CASE("MA-RLHF preset: example 1's actor step from per-token advantages; PPO iterations; bad input",
          "[pg][macro][stepper]") {
  const pipeline p = run_row(fixed_ngram{3}, e1_old, e1_ref, e1_logp, e1_V, e1_Vnew, 1.7);
  const vd mask(8, 1.0);
  auto vjp = [](std::span<const double> c, std::span<double> grad) {
    for (std::size_t i = 0; i < c.size(); ++i) grad[i % grad.size()] += c[i];
  };
  const group_layout g = group_layout::contiguous(1, 1);
  SECTION("one step: the loss and coefficients of example 1") {
    vd theta(2, 0.0);
    ma_rlhf<double> s(theta, {.lr = 1e-3});
    CHECK(s.estimator().loss().options().eps_high == 0.2);
    CHECK(s.estimator().loss().options().aggregation == loss_aggregation::token_mean);
    const auto rep = s.step(
        pg_batch<double>{.length = 8, .logp = e1_logp, .old_logp = e1_old, .mask = mask, .advantages = p.adv}, g, vjp);
    CHECK(near(rep.loss, -1.2864088584294682));
    REQUIRE(rep.coefficients.size() == 8);
    for (std::size_t t = 0; t < 8; ++t) CHECK(near(rep.coefficients[t], p.coef[t]));
    REQUIRE(rep.advantages.size() == 8);
    CHECK(rep.advantages[7] == p.adv[7]);
    CHECK(std::isnan(rep.reward_mean));  // no rewards given
    CHECK(rep.stats.samples == 1);
    CHECK(rep.applied);
    // With the rewards given too, they only feed reward_mean.
    const vd r{0.25};
    const auto rep2 = s.step(
        pg_batch<double>{
            .rewards = r, .length = 8, .logp = e1_logp, .old_logp = e1_old, .mask = mask, .advantages = p.adv},
        g, vjp);
    CHECK(rep2.reward_mean == 0.25);
    CHECK(near(rep2.loss, -1.2864088584294682));
  }
  SECTION("PPO iterations reuse the stored per-token advantages (also across save/load)") {
    vd theta(2, 0.0);
    ma_rlhf<double> s(theta, optim::adam<>({.lr = 1e-3}), score_function<>(macro_ppo_options(), {.iterations = 2}));
    s.step(pg_batch<double>{.length = 8, .logp = e1_old, .old_logp = e1_old, .mask = mask, .advantages = p.adv}, g,
           vjp);
    std::stringstream saved;
    s.save(saved);
    const vd other(8, 123.0);  // a later iteration's advantages are not read
    const auto rep = s.step(pg_batch<double>{.length = 8, .logp = e1_logp, .mask = mask, .advantages = other}, g, vjp);
    CHECK(rep.iteration == 1);
    CHECK(near(rep.loss, -1.2864088584294682));  // stored old_logp = the first call's, stored advantages
    vd th2(2, 0.0);
    ma_rlhf<double> r(th2, optim::adam<>({.lr = 1e-3}), score_function<>(macro_ppo_options(), {.iterations = 2}));
    r.load(saved);
    const auto rep2 = r.step(pg_batch<double>{.length = 8, .logp = e1_logp, .mask = mask}, g, vjp);
    CHECK(rep2.loss == rep.loss);
  }
  SECTION("bad input: nothing changes") {
    vd theta(2, 0.5);
    ma_rlhf<double> s(theta, {.lr = 1e-3});
    const vd seven(7, 0.1);
    CHECK_THROWS_AS(s.step(pg_batch<double>{.length = 8, .logp = e1_logp, .mask = mask, .advantages = seven}, g, vjp),
                    size_mismatch);
    const vd w{1.0};
    const vd r{1.0};
    CHECK_THROWS_AS(
        s.step(
            pg_batch<double>{
                .rewards = r, .reward_weights = w, .length = 8, .logp = e1_logp, .mask = mask, .advantages = p.adv},
            g, vjp),
        invalid_argument);
    const vd r2{1.0, 2.0};
    CHECK_THROWS_AS(
        s.step(pg_batch<double>{.rewards = r2, .length = 8, .logp = e1_logp, .mask = mask, .advantages = p.adv}, g,
               vjp),
        size_mismatch);
    vd bad = p.adv;
    bad[2] = NAN;
    CHECK_THROWS_AS(s.step(pg_batch<double>{.length = 8, .logp = e1_logp, .mask = mask, .advantages = bad}, g, vjp),
                    nonfinite_error);
    CHECK(theta == vd{0.5, 0.5});
    CHECK(s.steps() == 0);
    // Per-sequence losses refuse per-token advantages.
    vd th2(2, 0.5);
    rloo<double> rl(th2, {.lr = 1e-3});
    CHECK_THROWS_AS(rl.step(pg_batch<double>{.length = 8, .logp = e1_logp, .mask = mask, .advantages = p.adv}, g, vjp),
                    size_mismatch);
    CHECK(th2 == vd{0.5, 0.5});
  }
}
