// SPDX-License-Identifier: Apache-2.0
// CoPG (seed spec rl_zo.md §2): the worked examples of §2.6 at the sequence level, through the
// token-level loss and through the stepper; the relations of §2.3 (IPO, DPO, RLOO); the
// properties of §7 (gradients sum to 0 per group, -2 beta x RLOO advantages of R^beta,
// invariances, the tabular fixed point pi_ref exp(R/beta)); the edge cases of §2.5; bad input
// (library exception, outputs and state untouched).
//
// Tolerances (algorithms.md §0.4): closed-form float64 quantities relative 1e-12 (the spec's
// numbers are numpy's, summed in another order); central finite differences (step 1e-6 on a
// quadratic) absolute 1e-9, as the spec states; the tabular run converges geometrically and is
// checked to 1e-9 in probability after a fixed number of SGD steps.
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

namespace {

using sg_test::all_equal;
using sg_test::near;
using sg_test::rel;
using sg_test::require_all_near;

// §2.6 Example 1 (k = 2) spread over tokens: the token log-probs sum to the spec's lp / lr under
// the masks [[1,1,1,0],[1,1,1,1]]; the masked token holds a value that must not be read.
const vd ex1_R{0.8, 0.1};
const vd ex1_lp{-12.5, -9.0};
const vd ex1_lr{-13.0, -8.2};
const vd ex1_mask{1, 1, 1, 0, 1, 1, 1, 1};
const vd ex1_logp{-4.0, -4.5, -4.0, -99.0, -2.0, -2.5, -2.0, -2.5};
const vd ex1_ref{-4.5, -4.5, -4.0, 55.0, -2.0, -2.2, -2.0, -2.0};

// §2.6 Example 2 (k = 4).
const vd ex2_R{1.0, 0.0, 0.5, 0.25};
const vd ex2_lp{-20.0, -15.5, -18.2, -30.1};
const vd ex2_lr{-21.0, -15.0, -18.0, -29.0};

double copg_loss_direct(double beta, const vd& R, const vd& lp, const vd& lr) {
  // 1/(k-1) sum_{i<j} (Rb_i - Rb_j)^2, literally.
  const std::size_t k = R.size();
  double s = 0.0;
  for (std::size_t i = 0; i < k; ++i) {
    for (std::size_t j = i + 1; j < k; ++j) {
      const double d = (R[i] - beta * (lp[i] - lr[i])) - (R[j] - beta * (lp[j] - lr[j]));
      s += d * d;
    }
  }
  return s / static_cast<double>(k - 1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// §2.6 worked examples
// ---------------------------------------------------------------------------------------------

TEST_CASE("§2.6 CoPG example 1 (k = 2): sequence level", "[pg][copg][worked]") {
  vd grad(2), reg(2);
  const copg_stats st =
      copg_sequence_loss<double>({.beta = 0.1}, ex1_R, ex1_lp, ex1_lr, group_layout::contiguous(1, 2), grad, reg);
  require_all_near(reg, {0.75, 0.18000000000000008});
  CHECK(near(st.loss, 0.32489999999999997));
  require_all_near(grad, {-0.11399999999999999, 0.11399999999999998});
  CHECK(st.groups == 1);
  CHECK(st.used_groups == 1);
  CHECK(st.skipped_groups == 0);
  CHECK(st.dropped == 0);
  // Pair form: L = u^2, dL/dlp_1 = -2 beta u.
  const pair_loss_value pv = copg_pair(0.1, 0.8, 0.1, -12.5, -9.0, -13.0, -8.2);
  CHECK(near(pv.loss, 0.32489999999999997));
  CHECK(near(pv.d_preferred, -0.114));
  CHECK(near(pv.d_dispreferred, 0.114));
  // Central finite difference of L in lp (the spec: agrees to 1e-9).
  for (std::size_t i = 0; i < 2; ++i) {
    vd up = ex1_lp, dn = ex1_lp;
    const double h = 1e-6;
    up[i] += h;
    dn[i] -= h;
    const double fd = (copg_loss_direct(0.1, ex1_R, up, ex1_lr) - copg_loss_direct(0.1, ex1_R, dn, ex1_lr)) / (2 * h);
    CHECK(std::abs(fd - grad[i]) < 1e-9);
  }
}

TEST_CASE("§2.6 CoPG example 1 (k = 2): per-token coefficients under the masks", "[pg][copg][worked]") {
  const token_batch<double, double> b{2, 4, ex1_logp, {}, ex1_ref, ex1_mask, ex1_R};
  vd coef(8, 7.0);
  const surrogate_result res =
      copg_loss({.beta = 0.1}).evaluate(b, group_layout::contiguous(1, 2), std::span<double>(coef));
  CHECK(near(res.loss, 0.32489999999999997));
  require_all_near(coef, {-0.114, -0.114, -0.114, 0, 0.114, 0.114, 0.114, 0.114});
  CHECK(coef[3] == 0.0);
  CHECK(res.diagnostics.active_tokens == 7.0);
  CHECK(res.diagnostics.active_sequences == 2);
  CHECK(res.diagnostics.skipped_groups == 0);
  CHECK(near(res.diagnostics.mean_kl, ((-12.5 + 13.0) + (-9.0 + 8.2)) / 2));
  CHECK(res.diagnostics.ratio_mean == 1.0);
  CHECK(res.diagnostics.clip_region_fraction == 0.0);
  // old_logp is not read (off-policy, no ratio).
  const vd junk(8, -1e300);
  const token_batch<double, double> b2{2, 4, ex1_logp, junk, ex1_ref, ex1_mask, ex1_R};
  vd coef2(8);
  copg_loss({.beta = 0.1}).evaluate(b2, group_layout::contiguous(1, 2), std::span<double>(coef2));
  CHECK(coef2 == coef);
  // Loss only.
  CHECK(near(copg_loss({.beta = 0.1}).evaluate(b, group_layout::contiguous(1, 2)).loss, 0.32489999999999997));
}

TEST_CASE("§2.6 CoPG example 2 (k = 4): R^beta, L, RLOO advantages, gradient", "[pg][copg][worked]") {
  vd grad(4), reg(4);
  const copg_stats st =
      copg_sequence_loss<double>({.beta = 0.05}, ex2_R, ex2_lp, ex2_lr, group_layout::contiguous(1, 4), grad, reg);
  require_all_near(reg, {0.95, 0.025, 0.51, 0.30500000000000005});
  CHECK(near(st.loss, 0.6069666666666665));
  CHECK(near(copg_loss_direct(0.05, ex2_R, ex2_lp, ex2_lr), 0.6069666666666665));
  // A^RLOO of R^beta from the library's leave-one-out baseline.
  vd a(4);
  advantages(leave_one_out{}, no_normalizer{}, std::span<const double>(reg), group_layout::contiguous(1, 4),
             std::span<double>(a));
  require_all_near(a, {0.6699999999999999, -0.5633333333333334, 0.08333333333333331, -0.1899999999999999});
  require_all_near(grad, {-0.06699999999999999, 0.05633333333333333, -0.008333333333333333, 0.018999999999999996});
  for (std::size_t i = 0; i < 4; ++i) CHECK(near(grad[i], -2.0 * 0.05 * a[i]));
  // The same through the token-level loss, one token per completion.
  const token_batch<double, double> b{4, 1, ex2_lp, {}, ex2_lr, {}, ex2_R};
  vd coef(4);
  const surrogate_result res =
      copg_loss({.beta = 0.05}).evaluate(b, group_layout::contiguous(1, 4), std::span<double>(coef));
  CHECK(near(res.loss, 0.6069666666666665));
  require_all_near(coef, grad);
}

TEST_CASE("§2.6 example 3 / §2.3: CoPG = beta^2 IPO for R_w - R_l = 1/2; DPO", "[pg][copg][ipo][dpo][worked]") {
  const double lp_w = -10.0, lp_l = -11.5, lr_w = -10.4, lr_l = -11.2, beta = 0.1;
  const double h = (lp_w - lr_w) - (lp_l - lr_l);
  CHECK(near(h, 0.7000000000000011));
  const pair_loss_value c = copg_pair(beta, 0.5, 0.0, lp_w, lp_l, lr_w, lr_l);
  const pair_loss_value ipo = ipo_pair(beta, lp_w, lp_l, lr_w, lr_l);
  const pair_loss_value dpo = dpo_pair(beta, lp_w, lp_l, lr_w, lr_l);
  CHECK(near(c.loss, 0.1848999999999999));
  CHECK(near(ipo.loss, 18.48999999999999));
  CHECK(near(c.loss / ipo.loss, 0.01));
  CHECK(near(c.d_preferred, -0.08599999999999998));
  CHECK(near(c.d_dispreferred, 0.08599999999999998));
  CHECK(near(ipo.d_preferred, -8.599999999999998));
  CHECK(near(ipo.d_dispreferred, 8.599999999999998));
  CHECK(near(c.d_preferred, beta * beta * ipo.d_preferred));
  CHECK(near(dpo.loss, 0.6587595555486971));
  CHECK(near(dpo.d_preferred, -0.048250714233361025));
  CHECK(near(dpo.d_dispreferred, 0.048250714233361025));
  // The k-sample loss on this pair is the pair form.
  vd grad(2);
  const vd R{0.5, 0.0}, lp{lp_w, lp_l}, lr{lr_w, lr_l};
  const copg_stats st = copg_sequence_loss<double>({.beta = beta}, R, lp, lr, group_layout::contiguous(1, 2), grad);
  CHECK(near(st.loss, 0.1848999999999999));
  CHECK(near(grad[0], -0.08599999999999998));
  // Token-level pair losses: rows (preferred, dispreferred), two tokens each, mean over pairs.
  const vd logp{-4.0, -6.0, -5.5, -6.0, -4.0, -6.0, -5.5, -6.0};
  const vd ref{-4.4, -6.0, -5.0, -6.2, -4.4, -6.0, -5.0, -6.2};
  const token_batch<double, double> b{4, 2, logp, {}, ref, {}, {}};
  vd ci(8), cd(8);
  const surrogate_result ri = ipo_pair_loss({.strength = beta}).evaluate(b, std::span<double>(ci));
  const surrogate_result rd = dpo_pair_loss({.strength = beta}).evaluate(b, std::span<double>(cd));
  CHECK(near(ri.loss, 18.48999999999999));  // two identical pairs: the mean is one pair's loss
  CHECK(near(rd.loss, 0.6587595555486971));
  for (std::size_t t = 0; t < 2; ++t) {
    CHECK(near(ci[t], -8.599999999999998 / 2));
    CHECK(near(ci[2 + t], 8.599999999999998 / 2));
    CHECK(near(cd[t], -0.048250714233361025 / 2));
    CHECK(near(cd[6 + t], 0.048250714233361025 / 2));
  }
  CHECK(ipo_pair_loss{}.options().strength == 0.1);
  CHECK(dpo_pair_loss{}.options().strength == 0.1);
  // DPO stays finite far out (softplus / sigmoid without overflow).
  const pair_loss_value far = dpo_pair(10.0, 0.0, 1000.0, 0.0, 0.0);
  CHECK(std::isfinite(far.loss));
  CHECK(near(far.loss, 10000.0));
  CHECK(near(far.d_preferred, -10.0));
}

// ---------------------------------------------------------------------------------------------
// §7 properties
// ---------------------------------------------------------------------------------------------

TEST_CASE("§7 CoPG: per group the gradients sum to 0 and equal -2 beta x RLOO advantages of R^beta",
          "[pg][copg][property]") {
  std::mt19937_64 rng(2406191);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int trial = 0; trial < 100; ++trial) {
    const std::size_t N = 2 + rng() % 30;
    std::vector<std::int64_t> ids(N);
    vd R(N), lp(N), lr(N);
    for (std::size_t n = 0; n < N; ++n) {
      ids[n] = static_cast<std::int64_t>(rng() % 5);
      R[n] = u(rng);
      lp[n] = -10.0 + 5.0 * u(rng);
      lr[n] = -10.0 + 5.0 * u(rng);
    }
    const group_layout g = group_layout::by_id(ids);
    const double beta = 0.05 + 0.5 * (u(rng) + 1.0);
    vd grad(N), reg(N), a(N);
    const copg_stats st =
        copg_sequence_loss<double>({.beta = beta, .reduction = copg_reduction::sum}, R, lp, lr, g, grad, reg);
    advantages(leave_one_out{}, no_normalizer{}, std::span<const double>(reg), g, std::span<double>(a));
    double want_loss = 0.0;
    for (std::size_t k = 0; k < g.groups(); ++k) {
      double s = 0.0;
      vd Rg, lpg, lrg;
      g.for_each_member(k, [&](std::size_t n) {
        s += grad[n];
        Rg.push_back(R[n]);
        lpg.push_back(lp[n]);
        lrg.push_back(lr[n]);
      });
      CHECK(std::abs(s) < 1e-12);
      if (Rg.size() >= 2) want_loss += copg_loss_direct(beta, Rg, lpg, lrg);
    }
    for (std::size_t n = 0; n < N; ++n) {
      INFO("trial " << trial << " n " << n);
      CHECK(near(grad[n], -2.0 * beta * a[n], 1e-10, 1e-13));  // a singleton: both 0
    }
    CHECK(near(st.loss, want_loss, 1e-12, 1e-14));
    // prompt_mean divides the loss and the gradient by the number of groups.
    vd grad2(N);
    const copg_stats st2 = copg_sequence_loss<double>({.beta = beta, .loss_scale = 3.0}, R, lp, lr, g, grad2);
    const double w = 3.0 / static_cast<double>(g.groups());
    CHECK(near(st2.loss, w * st.loss, 1e-12, 1e-15));
    for (std::size_t n = 0; n < N; ++n) CHECK(near(grad2[n], w * grad[n], 1e-12, 1e-15));
  }
}

TEST_CASE("§7 CoPG: invariant to a constant added to a group's rewards or reference log-probs",
          "[pg][copg][property]") {
  const group_layout g = group_layout::by_id(std::vector<std::int64_t>{1, 2, 1, 2, 1});
  const vd R{0.3, -0.2, 0.9, 0.4, 0.1}, lp{-5.0, -7.0, -6.5, -4.0, -8.0}, lr{-5.5, -6.0, -6.0, -4.5, -7.0};
  vd g0(5);
  const double L0 = copg_sequence_loss<double>({.beta = 0.2}, R, lp, lr, g, g0).loss;
  vd R2 = R, lr2 = lr;
  for (const std::size_t n : {0, 2, 4}) R2[n] += 3.25;  // group 1's rewards
  for (const std::size_t n : {1, 3}) lr2[n] -= 11.0;    // group 2's reference log-probs
  vd g1(5), g2(5);
  const double L1 = copg_sequence_loss<double>({.beta = 0.2}, R2, lp, lr, g, g1).loss;
  const double L2 = copg_sequence_loss<double>({.beta = 0.2}, R, lp, lr2, g, g2).loss;
  CHECK(near(L1, L0, 1e-12));
  CHECK(near(L2, L0, 1e-12));
  require_all_near(g1, g0, 1e-11, 1e-14);
  require_all_near(g2, g0, 1e-11, 1e-14);
  // Hence a group-constant baseline changes nothing in the stepper either (group_mean vs none).
  vd th1(1, 0.0), th2(1, 0.0);
  stepper<score_function<copg_loss>, no_baseline, no_normalizer, optim::sgd<>, double> s1(
      th1, optim::sgd<>({.lr = 0.1}), score_function<copg_loss>(copg_options{.beta = 0.2}));
  stepper<score_function<copg_loss>, group_mean, no_normalizer, optim::sgd<>, double> s2(
      th2, optim::sgd<>({.lr = 0.1}), score_function<copg_loss>(copg_options{.beta = 0.2}));
  const pg_batch<double> b{.rewards = R, .length = 1, .logp = lp, .ref_logp = lr};
  auto vjp = [](std::span<const double> c, std::span<double> grad) {
    for (const double x : c) grad[0] += x;
  };
  const auto r1 = s1.step(b, g, vjp);
  const auto r2 = s2.step(b, g, vjp);
  CHECK(near(r1.loss, r2.loss, 1e-12));
  for (std::size_t n = 0; n < 5; ++n) CHECK(near(r1.coefficients[n], r2.coefficients[n], 1e-11, 1e-14));
}

TEST_CASE("§2.3 / §7 CoPG on-policy = -2 beta x RLOO's gradient of R^beta (rloo_loss at ratio 1)",
          "[pg][copg][rloo][property]") {
  // One prompt, B = 4 completions of 3 tokens; rloo_loss averages over B, CoPG sums (one group).
  const vd logp{-1.0, -0.5, -2.0, -0.3, -0.7, -1.1, -2.2, -0.1, -0.4, -0.9, -0.9, -0.9};
  const vd ref{-1.2, -0.5, -1.5, -0.3, -0.9, -1.0, -2.0, -0.2, -0.4, -1.0, -0.8, -0.5};
  const vd mask{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0};
  const vd R{1.0, 0.0, 0.5, 0.2};
  const group_layout g = group_layout::contiguous(1, 4);
  const double beta = 0.3;
  const token_batch<double, double> cb{4, 3, logp, {}, ref, mask, R};
  vd cc(12);
  copg_loss({.beta = beta}).evaluate(cb, g, std::span<double>(cc));
  // R^beta and its leave-one-out advantages.
  vd reg(4);
  for (std::size_t n = 0; n < 4; ++n) {
    double a = 0.0, c = 0.0;
    for (std::size_t t = 0; t < 3; ++t) {
      a += mask[n * 3 + t] * logp[n * 3 + t];
      c += mask[n * 3 + t] * ref[n * 3 + t];
    }
    reg[n] = R[n] - beta * (a - c);
  }
  vd A(4);
  advantages(leave_one_out{}, no_normalizer{}, std::span<const double>(reg), g, std::span<double>(A));
  const token_batch<double, double> rb{4, 3, logp, {}, {}, mask, A};
  vd rc(12);
  rloo_loss{}.evaluate(rb, std::span<double>(rc));
  for (std::size_t i = 0; i < 12; ++i) {
    INFO("token " << i);
    CHECK(near(cc[i], 2.0 * beta * 4.0 * rc[i], 1e-12, 1e-16));
  }
}

TEST_CASE("§7 CoPG tabular: gradient descent from off-policy data converges to pi_ref exp(R/beta)",
          "[pg][copg][property][stepper]") {
  // A categorical policy over 4 outcomes, pi = softmax(theta); a fixed off-policy data set (all 4
  // outcomes present, drawn from a skewed behavior policy, with repeats); one-token completions.
  const vd R{1.0, 0.2, -0.5, 0.7};
  const vd pref{0.1, 0.4, 0.3, 0.2};
  const double beta = 0.5;
  const std::vector<std::size_t> data{0, 1, 1, 1, 2, 3, 3, 1, 2, 1};
  const std::size_t N = data.size();
  vd rewards(N), ref(N);
  for (std::size_t n = 0; n < N; ++n) {
    rewards[n] = R[data[n]];
    ref[n] = std::log(pref[data[n]]);
  }
  vd theta(4, 0.0);
  stepper<score_function<copg_loss>, no_baseline, no_normalizer, optim::sgd<>, double> s(
      theta, optim::sgd<>({.lr = 0.5}), score_function<copg_loss>(copg_options{.beta = beta}));
  const group_layout g = group_layout::contiguous(1, N);
  vd pi(4), logp(N);
  auto softmax = [&] {
    double mx = theta[0];
    for (const double x : theta) mx = std::max(mx, x);
    double z = 0.0;
    for (std::size_t j = 0; j < 4; ++j) z += std::exp(theta[j] - mx);
    for (std::size_t j = 0; j < 4; ++j) pi[j] = std::exp(theta[j] - mx) / z;
  };
  // d lp_n / d theta_j = [j == y_n] - pi_j.
  auto vjp = [&](std::span<const double> c, std::span<double> grad) {
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t j = 0; j < 4; ++j) grad[j] += c[n] * ((j == data[n] ? 1.0 : 0.0) - pi[j]);
    }
  };
  double loss = 0.0;
  for (int it = 0; it < 2000; ++it) {
    softmax();
    for (std::size_t n = 0; n < N; ++n) logp[n] = std::log(pi[data[n]]);
    loss = s.step(pg_batch<double>{.rewards = rewards, .length = 1, .logp = logp, .ref_logp = ref}, g, vjp).loss;
  }
  softmax();
  vd want(4);
  double z = 0.0;
  for (std::size_t j = 0; j < 4; ++j) z += want[j] = pref[j] * std::exp(R[j] / beta);
  for (std::size_t j = 0; j < 4; ++j) {
    INFO("outcome " << j << " pi " << pi[j] << " want " << want[j] / z);
    CHECK(std::abs(pi[j] - want[j] / z) < 1e-9);
  }
  CHECK(loss < 1e-18);
  CHECK(s.steps() == 2000);
}

// ---------------------------------------------------------------------------------------------
// §2.5 edge cases
// ---------------------------------------------------------------------------------------------

TEST_CASE("§2.5 CoPG edge cases: equal R^beta, NaN rewards, groups with k < 2", "[pg][copg]") {
  SECTION("all R^beta equal: L = 0, every coefficient 0") {
    const vd R{0.5, 0.6, 0.7}, lr{-3.0, -3.0, -3.0};
    const vd lp{-3.0, -2.0, -1.0};  // R - 0.1 (lp - lr) = 0.5 for all
    vd grad(3, 7.0);
    const copg_stats st = copg_sequence_loss<double>({.beta = 0.1}, R, lp, lr, group_layout::contiguous(1, 3), grad);
    CHECK(std::abs(st.loss) < 1e-30);
    for (const double x : grad) CHECK(std::abs(x) < 1e-15);
  }
  SECTION("equal rewards are not degenerate: the KL term still pulls lp - lr together") {
    const vd R{1.0, 1.0}, lp{-2.0, -3.0}, lr{-2.0, -2.0};
    vd grad(2);
    const copg_stats st = copg_sequence_loss<double>({.beta = 0.1}, R, lp, lr, group_layout::contiguous(1, 2), grad);
    CHECK(near(st.loss, 0.01));
    CHECK(near(grad[0], 0.02));  // lp_0 - lr_0 = 0 > -1: pushed down
    CHECK(near(grad[1], -0.02));
  }
  SECTION("a NaN reward drops its completion (k shrinks)") {
    const vd R{1.0, NAN, 0.5, 0.25};
    vd grad(4, 7.0), reg(4);
    const copg_stats st =
        copg_sequence_loss<double>({.beta = 0.05}, R, ex2_lp, ex2_lr, group_layout::contiguous(1, 4), grad, reg);
    CHECK(st.dropped == 1);
    CHECK(grad[1] == 0.0);
    CHECK(std::isnan(reg[1]));
    const vd R3{1.0, 0.5, 0.25}, lp3{-20.0, -18.2, -30.1}, lr3{-21.0, -18.0, -29.0};
    vd g3(3);
    const copg_stats s3 = copg_sequence_loss<double>({.beta = 0.05}, R3, lp3, lr3, group_layout::contiguous(1, 3), g3);
    CHECK(near(st.loss, s3.loss));
    CHECK(near(grad[0], g3[0]));
    CHECK(near(grad[2], g3[1]));
    CHECK(near(grad[3], g3[2]));
    // A dropped completion's log-probs are not read.
    vd lpn = ex2_lp;
    lpn[1] = NAN;
    CHECK_NOTHROW(copg_sequence_loss<double>({.beta = 0.05}, R, lpn, ex2_lr, group_layout::contiguous(1, 4), grad));
  }
  SECTION("k < 2: zero coefficients, counted; prompt_mean still divides by every group") {
    const group_layout g = group_layout::by_id(std::vector<std::int64_t>{4, 5, 5, 6, 6});
    const vd R{0.3, 1.0, 0.0, NAN, 0.2};
    const vd lp{-1.0, -2.0, -2.5, -1.0, -1.0}, lr{-1.0, -2.0, -2.0, -1.0, -1.5};
    vd grad(5, 7.0);
    const copg_stats st = copg_sequence_loss<double>({.beta = 0.1}, R, lp, lr, g, grad);
    CHECK(st.groups == 3);
    CHECK(st.used_groups == 1);
    CHECK(st.skipped_groups == 2);  // the singleton, and the group left with one scorable completion
    CHECK(st.dropped == 1);
    CHECK(grad[0] == 0.0);
    CHECK(grad[3] == 0.0);
    CHECK(grad[4] == 0.0);
    const double u = (1.0 - 0.0) - 0.1 * (0.0 - (-0.5));  // 0.95
    CHECK(near(st.loss, u * u / 3.0));
    CHECK(near(grad[1], -2.0 * 0.1 * u / 3.0));
    // Token level: skipped_groups in the diagnostics.
    const token_batch<double, double> b{5, 1, lp, {}, lr, {}, R};
    vd coef(5);
    const surrogate_result res = copg_loss{}.evaluate(b, g, std::span<double>(coef));
    CHECK(res.diagnostics.skipped_groups == 2);
    CHECK(near(coef[1], grad[1]));
    CHECK(near(res.diagnostics.mean_kl, (0.0 + -0.5) / 2));
  }
}

// ---------------------------------------------------------------------------------------------
// The stepper
// ---------------------------------------------------------------------------------------------

TEST_CASE("CoPG preset: example 2 through the stepper, NaN rewards, PPO iterations, save/load", "[pg][copg][stepper]") {
  auto vjp = [](std::span<const double> c, std::span<double> grad) {
    for (std::size_t i = 0; i < c.size(); ++i) grad[i % grad.size()] += c[i];
  };
  SECTION("example 2, default options of the preset") {
    vd theta(2, 0.0);
    copg<double> s(theta, optim::adam<>({.lr = 1e-3}), score_function<copg_loss>(copg_options{.beta = 0.05}));
    CHECK(std::string(score_function<copg_loss>::name) == "score_function_copg");
    const pg_batch<double> b{.rewards = ex2_R, .length = 1, .logp = ex2_lp, .ref_logp = ex2_lr};
    const auto rep = s.step(b, group_layout::contiguous(1, 4), vjp);
    CHECK(near(rep.loss, 0.6069666666666665));
    CHECK(near(rep.coefficients[0], -0.06699999999999999));
    CHECK(near(rep.coefficients[3], 0.018999999999999996));
    CHECK(rep.advantages[1] == 0.0);  // no_baseline, no_normalizer: the rewards themselves
    CHECK(rep.applied);
    CHECK(near(rep.gradient[0][0], -0.06699999999999999 - 0.008333333333333333));
    copg<double> d(theta);
    CHECK(d.estimator().loss().options().beta == 0.1);
    CHECK(d.estimator().loss().options().loss_scale == 1.0);
    CHECK(d.estimator().loss().options().reduction == copg_reduction::prompt_mean);
  }
  SECTION("a NaN reward reaches the loss as NaN and is dropped") {
    vd theta(2, 0.0);
    copg<double> s(theta, optim::adam<>({.lr = 1e-3}), score_function<copg_loss>(copg_options{.beta = 0.05}));
    const vd R{1.0, NAN, 0.5, 0.25};
    const auto rep = s.step(pg_batch<double>{.rewards = R, .length = 1, .logp = ex2_lp, .ref_logp = ex2_lr},
                            group_layout::contiguous(1, 4), vjp);
    CHECK(std::isnan(rep.advantages[1]));
    CHECK(rep.stats.nan_outcomes == 1);
    CHECK(rep.coefficients[1] == 0.0);
    vd g(4);
    const copg_stats st =
        copg_sequence_loss<double>({.beta = 0.05}, R, ex2_lp, ex2_lr, group_layout::contiguous(1, 4), g);
    CHECK(near(rep.loss, st.loss));
    CHECK(near(rep.coefficients[0], g[0]));
    // Two reward functions: unscorable only when both are NaN.
    vd th2(2, 0.0);
    copg<double> s2(th2, optim::adam<>({.lr = 1e-3}), score_function<copg_loss>(copg_options{.beta = 0.05}));
    const vd RK{1.0, NAN, NAN, NAN, 0.5, 0.0, 0.25, NAN};
    const vd w{1.0, 1.0};
    const auto r2 =
        s2.step(pg_batch<double>{.rewards = RK, .reward_weights = w, .length = 1, .logp = ex2_lp, .ref_logp = ex2_lr},
                group_layout::contiguous(1, 4), vjp);
    CHECK(!std::isnan(r2.advantages[0]));
    CHECK(std::isnan(r2.advantages[1]));
    CHECK(r2.coefficients[1] == 0.0);
  }
  SECTION("PPO iterations re-evaluate lp with the stored rewards; state saved in between") {
    vd theta(2, 0.0);
    copg<double> s(theta, optim::adam<>({.lr = 1e-3}),
                   score_function<copg_loss>(copg_options{.beta = 0.05}, {.iterations = 2}));
    s.step(pg_batch<double>{.rewards = ex2_R, .length = 1, .logp = ex2_lp, .ref_logp = ex2_lr},
           group_layout::contiguous(1, 4), vjp);
    std::stringstream saved;
    s.save(saved);
    const vd lp2{-19.0, -15.0, -18.0, -31.0};
    const vd none(4, -123.0);  // rewards of a later iteration are not read
    const auto rep = s.step(pg_batch<double>{.rewards = none, .length = 1, .logp = lp2, .ref_logp = ex2_lr},
                            group_layout::contiguous(1, 4), vjp);
    CHECK(rep.iteration == 1);
    vd g(4);
    const copg_stats st =
        copg_sequence_loss<double>({.beta = 0.05}, ex2_R, lp2, ex2_lr, group_layout::contiguous(1, 4), g);
    CHECK(near(rep.loss, st.loss));
    for (std::size_t n = 0; n < 4; ++n) CHECK(near(rep.coefficients[n], g[n]));
    // Resume from the saved state: the second iteration is reproduced.
    vd th2(2, 0.0);
    copg<double> r(th2, optim::adam<>({.lr = 1e-3}),
                   score_function<copg_loss>(copg_options{.beta = 0.05}, {.iterations = 2}));
    r.load(saved);
    const auto rep2 = r.step(pg_batch<double>{.rewards = none, .length = 1, .logp = lp2, .ref_logp = ex2_lr},
                             group_layout::contiguous(1, 4), vjp);
    CHECK(rep2.iteration == 1);
    CHECK(rep2.loss == rep.loss);
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

TEST_CASE("CoPG: bad input throws, nothing written or changed", "[pg][copg][validation]") {
  const group_layout g2 = group_layout::contiguous(1, 2);
  SECTION("options") {
    CHECK_THROWS_AS(copg_loss({.beta = 0.0}), invalid_argument);
    CHECK_THROWS_AS(copg_loss({.beta = -0.1}), invalid_argument);
    CHECK_THROWS_AS(copg_loss({.beta = NAN}), invalid_argument);
    CHECK_THROWS_AS(copg_loss({.beta = 0.1, .loss_scale = 0.0}), invalid_argument);
    CHECK_THROWS_AS(copg_loss({.beta = 0.1, .loss_scale = INFINITY}), invalid_argument);
    CHECK_THROWS_AS(ipo_pair_loss({.strength = 0.0}), invalid_argument);
    CHECK_THROWS_AS(dpo_pair_loss({.strength = -1.0}), invalid_argument);
    CHECK_THROWS_AS(ipo_pair(0.0, 0, 0, 0, 0), invalid_argument);
    CHECK_THROWS_AS(dpo_pair(NAN, 0, 0, 0, 0), invalid_argument);
    CHECK_THROWS_AS(copg_pair(0.1, 1.0, NAN, 0, 0, 0, 0), nonfinite_error);
    CHECK_THROWS_AS(ipo_pair(0.1, 0, INFINITY, 0, 0), nonfinite_error);
    vd grad(2, 7.0);
    CHECK_THROWS_AS(copg_sequence_loss<double>({.beta = 0.0}, ex1_R, ex1_lp, ex1_lr, g2, grad), invalid_argument);
    CHECK(all_equal(grad, 7.0));
    try {
      copg_loss({.beta = -0.1});
    } catch (const invalid_argument& e) {
      CHECK(std::string(e.what()).find("beta") != std::string::npos);
    }
  }
  SECTION("sequence level: sizes and non-finite values") {
    vd grad(2, 7.0), reg(2, 7.0);
    const vd three{1, 2, 3};
    CHECK_THROWS_AS(copg_sequence_loss<double>({}, three, ex1_lp, ex1_lr, g2, grad), size_mismatch);
    CHECK_THROWS_AS(copg_sequence_loss<double>({}, ex1_R, three, ex1_lr, g2, grad), size_mismatch);
    vd short_grad(1, 7.0);
    CHECK_THROWS_AS(copg_sequence_loss<double>({}, ex1_R, ex1_lp, ex1_lr, g2, short_grad), size_mismatch);
    const vd inf_r{INFINITY, 0.0};
    CHECK_THROWS_AS(copg_sequence_loss<double>({}, inf_r, ex1_lp, ex1_lr, g2, grad, reg), nonfinite_error);
    const vd nan_lr{-1.0, NAN};
    CHECK_THROWS_AS(copg_sequence_loss<double>({}, ex1_R, ex1_lp, nan_lr, g2, grad, reg), nonfinite_error);
    CHECK(all_equal(grad, 7.0));
    CHECK(all_equal(reg, 7.0));
    CHECK(all_equal(short_grad, 7.0));
  }
  SECTION("token level: ref_logp, layout, per-token rewards, non-finite values") {
    vd coef(8, 7.0);
    const copg_loss l;
    const token_batch<double, double> no_ref{2, 4, ex1_logp, {}, {}, ex1_mask, ex1_R};
    CHECK_THROWS_AS(l.evaluate(no_ref, g2, std::span<double>(coef)), invalid_argument);
    const token_batch<double, double> b{2, 4, ex1_logp, {}, ex1_ref, ex1_mask, ex1_R};
    CHECK_THROWS_AS(l.evaluate(b, group_layout::contiguous(1, 3), std::span<double>(coef)), size_mismatch);
    const vd per_token(8, 0.5);
    const token_batch<double, double> pt{2, 4, ex1_logp, {}, ex1_ref, ex1_mask, per_token};
    CHECK_THROWS_AS(l.evaluate(pt, g2, std::span<double>(coef)), size_mismatch);
    vd bad = ex1_logp;
    bad[5] = NAN;
    const token_batch<double, double> bl{2, 4, bad, {}, ex1_ref, ex1_mask, ex1_R};
    CHECK_THROWS_AS(l.evaluate(bl, g2, std::span<double>(coef)), nonfinite_error);
    vd badr = ex1_ref;
    badr[0] = -INFINITY;
    const token_batch<double, double> br{2, 4, ex1_logp, {}, badr, ex1_mask, ex1_R};
    CHECK_THROWS_AS(l.evaluate(br, g2, std::span<double>(coef)), nonfinite_error);
    const vd inf_r{0.8, -INFINITY};
    const token_batch<double, double> bi{2, 4, ex1_logp, {}, ex1_ref, ex1_mask, inf_r};
    CHECK_THROWS_AS(l.evaluate(bi, g2, std::span<double>(coef)), nonfinite_error);
    vd short_coef(7, 7.0);
    CHECK_THROWS_AS(l.evaluate(b, g2, std::span<double>(short_coef)), size_mismatch);
    CHECK(all_equal(coef, 7.0));
    CHECK(all_equal(short_coef, 7.0));
    // Non-finite values at masked tokens are not read.
    vd masked_nan = ex1_logp;
    masked_nan[3] = NAN;
    const token_batch<double, double> bm{2, 4, masked_nan, {}, ex1_ref, ex1_mask, ex1_R};
    CHECK_NOTHROW(l.evaluate(bm, g2, std::span<double>(coef)));
  }
  SECTION("pair losses: odd row count, missing ref") {
    const vd lp3{-1, -2, -3}, ref3{-1, -2, -3};
    vd c(3, 7.0);
    const token_batch<double, double> odd{3, 1, lp3, {}, ref3, {}, {}};
    CHECK_THROWS_AS(ipo_pair_loss{}.evaluate(odd, std::span<double>(c)), invalid_argument);
    const token_batch<double, double> noref{2, 1, std::span<const double>(lp3).subspan(0, 2), {}, {}, {}, {}};
    vd c2(2, 7.0);
    CHECK_THROWS_AS(dpo_pair_loss{}.evaluate(noref, std::span<double>(c2)), invalid_argument);
    vd lpn{-1.0, NAN};
    const token_batch<double, double> nanb{2, 1, lpn, {}, std::span<const double>(ref3).subspan(0, 2), {}, {}};
    CHECK_THROWS_AS(dpo_pair_loss{}.evaluate(nanb, std::span<double>(c2)), nonfinite_error);
    CHECK(all_equal(c, 7.0));
    CHECK(all_equal(c2, 7.0));
  }
  SECTION("stepper: missing ref_logp or an infinite reward changes nothing") {
    vd theta(2, 0.5);
    copg<double> s(theta, {.lr = 1e-2});
    auto vjp = [](std::span<const double> c, std::span<double> grad) {
      for (std::size_t i = 0; i < c.size(); ++i) grad[i % grad.size()] += c[i];
    };
    CHECK_THROWS_AS(
        s.step(pg_batch<double>{.rewards = ex2_R, .length = 1, .logp = ex2_lp}, group_layout::contiguous(1, 4), vjp),
        invalid_argument);
    const vd inf_r{1.0, INFINITY, 0.0, 0.0};
    CHECK_THROWS_AS(s.step(pg_batch<double>{.rewards = inf_r, .length = 1, .logp = ex2_lp, .ref_logp = ex2_lr},
                           group_layout::contiguous(1, 4), vjp),
                    nonfinite_error);
    CHECK(theta == vd{0.5, 0.5});
    CHECK(s.steps() == 0);
    CHECK(s.estimator().options().iterations == 1);
  }
}

TEST_CASE("CoPG in float32: the worked numbers to float tolerance", "[pg][copg][float]") {
  const std::vector<float> R{0.8f, 0.1f}, logp(ex1_logp.begin(), ex1_logp.end()), ref(ex1_ref.begin(), ex1_ref.end()),
      mask(ex1_mask.begin(), ex1_mask.end());
  const token_batch<float, float> b{2, 4, logp, {}, ref, mask, R};
  std::vector<float> coef(8);
  const surrogate_result res = copg_loss{}.evaluate(b, group_layout::contiguous(1, 2), std::span<float>(coef));
  CHECK(near(res.loss, 0.32489999999999997, 2e-6));
  CHECK(near(coef[0], -0.114, 2e-6));
  CHECK(coef[3] == 0.0f);
  std::vector<float> theta(2, 0.0f);
  copg<float> s(theta, {.lr = 1e-3f});
  const std::vector<float> R2(ex2_R.begin(), ex2_R.end()), lp2(ex2_lp.begin(), ex2_lp.end()),
      lr2(ex2_lr.begin(), ex2_lr.end());
  std::vector<float> grad(4);
  copg_sequence_loss<float>({.beta = 0.05}, R2, lp2, lr2, group_layout::contiguous(1, 4), grad);
  CHECK(near(grad[0], -0.06699999999999999, 1e-5));
  const auto rep = s.step(pg_batch<float>{.rewards = R2, .length = 1, .logp = lp2, .ref_logp = lr2},
                          group_layout::contiguous(1, 4), [](std::span<const float> c, std::span<float> g) {
                            for (std::size_t i = 0; i < c.size(); ++i) g[i % g.size()] += c[i];
                          });
  CHECK(std::isfinite(rep.loss));
}
