// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 13: with TRL's two-sided clipping (delta) the clip-ratio diagnostics are TRL's.
// TRL GRPOTrainer._compute_loss clamps the unclipped ratio, `coef_1 = torch.clamp(coef_1,
// max=delta)`, before it logs
//     is_low_clipped  = (coef_1 < 1 - epsilon_low)  & (A < 0)
//     is_high_clipped = (coef_1 > 1 + epsilon_high) & (A > 0)
// so the metrics read min(rho, delta), not rho. On main high_mean, region_mean and high_max counted
// rho > 1 + eps_high although delta <= 1 + eps_high makes TRL's high clip impossible (and a delta
// below 1 - eps_low makes every A < 0 token low-clipped in TRL). The numbers below are computed by
// hand from that formula.
#include <cmath>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

struct expected {
  double low, high, region, low_min, high_max;
};

// Two sequences of four tokens, all active; old_logp = 0 so rho = exp(logp).
// Row 0: A = +1, rho = [0.5, 1.2, 1.5, 3.0]; row 1: A = -1, rho = [0.5, 0.9, 1.2, 3.0].
sg::surrogate_diagnostics token_level(double delta) {
  static const std::vector<double> logp{std::log(0.5), std::log(1.2), std::log(1.5), std::log(3.0),
                                        std::log(0.5), std::log(0.9), std::log(1.2), std::log(3.0)};
  static const std::vector<double> old(8, 0.0), adv{1.0, -1.0};
  sg::token_batch<double> b;
  b.sequences = 2;
  b.length = 4;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  sg::surrogate_options o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;  // 1 - eps_low = 0.8, 1 + eps_high = 1.28
  o.delta = delta;
  o.aggregation = sg::loss_aggregation::seq_mean_token_mean;
  std::vector<double> coef(8);
  return sg::clipped_surrogate(o).evaluate(b, std::span<double>(coef)).diagnostics;
}

void check(const sg::surrogate_diagnostics& d, const expected& e) {
  CHECK(d.clip_low_fraction == e.low);
  CHECK(d.clip_high_fraction == e.high);
  CHECK(d.clip_region_fraction == e.region);
  CHECK(d.clip_low_min == e.low_min);
  CHECK(d.clip_high_max == e.high_max);
}

}  // namespace

TEST_CASE("TRL clip-ratio metrics with two-sided clipping, token level", "[reliability][pg][surrogate]") {
  SECTION("delta off: rho itself") {
    // high: row 0 tokens 2, 3 (1.5, 3.0 > 1.28); low: row 1 token 0 (0.5 < 0.8).
    check(token_level(0.0), {1.0 / 8, 2.0 / 8, 3.0 / 8, 0.0, 2.0 / 4});
  }
  SECTION("delta = 2 > 1 + eps_high: min(rho, 2) = [0.5, 1.2, 1.5, 2] | [0.5, 0.9, 1.2, 2], same counts") {
    check(token_level(2.0), {1.0 / 8, 2.0 / 8, 3.0 / 8, 0.0, 2.0 / 4});
  }
  SECTION("delta = 1.1 <= 1 + eps_high: min(rho, 1.1) never exceeds 1.28, no high clip") {
    // coef_1 = [0.5, 1.1, 1.1, 1.1] | [0.5, 0.9, 1.1, 1.1]: low = row 1 token 0 only.
    check(token_level(1.1), {1.0 / 8, 0.0, 1.0 / 8, 0.0, 0.0});
  }
  SECTION("delta = 0.6 < 1 - eps_low: every A < 0 token is low-clipped") {
    // coef_1 = [0.5, 0.6, 0.6, 0.6] | [0.5, 0.6, 0.6, 0.6]: low = all of row 1 (4 tokens), high none.
    check(token_level(0.6), {4.0 / 8, 0.0, 4.0 / 8, 0.0, 0.0});
  }
}

TEST_CASE("TRL clip-ratio metrics with two-sided clipping, sequence level (GSPO)", "[reliability][pg][surrogate]") {
  // Row 0: A = +1, mean log-ratio log 1.5 (rho_seq = 1.5); row 1: A = -1, rho_seq = 0.7.
  // TRL (importance_sampling_level = "sequence"): coef_1 has one value per row, the metrics are
  // plain means over the rows.
  const std::vector<double> logp{std::log(1.5), std::log(1.5), std::log(0.7), std::log(0.7)}, old(4, 0.0), adv{1.0, -1.0};
  sg::token_batch<double> b;
  b.sequences = 2;
  b.length = 2;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  sg::surrogate_options o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.level = sg::ratio_level::sequence;
  std::vector<double> coef(4);
  // delta off: row 0 high (1.5 > 1.28), row 1 low (0.7 < 0.8).
  check(sg::clipped_surrogate(o).evaluate(b, std::span<double>(coef)).diagnostics, {0.5, 0.5, 1.0, 0.0, 1.0});
  // delta = 1.2: min(1.5, 1.2) = 1.2 is not > 1.28: row 0 not high; row 1 still low.
  o.delta = 1.2;
  check(sg::clipped_surrogate(o).evaluate(b, std::span<double>(coef)).diagnostics, {0.5, 0.0, 0.5, 0.0, 0.0});
}

TEST_CASE("two-sided clipping: the loss is TRL's -min(min(rho, delta) A, clip(rho) A), unchanged by the metric fix", "[reliability][pg][surrogate]") {
  // Row-mean of -min(min(rho, 1.1) A, clip(rho, 0.8, 1.28) A), then mean over rows (loss_type "grpo").
  const double rho0[] = {0.5, 1.2, 1.5, 3.0}, rho1[] = {0.5, 0.9, 1.2, 3.0};
  auto term = [](double rho, double a) {
    const double u = std::min(rho, 1.1), c = std::min(std::max(rho, 0.8), 1.28);
    return -std::min(u * a, c * a);
  };
  double l0 = 0.0, l1 = 0.0;
  for (int t = 0; t < 4; ++t) {
    l0 += term(rho0[t], 1.0);
    l1 += term(rho1[t], -1.0);
  }
  const double want = (l0 / 4 + l1 / 4) / 2;
  const std::vector<double> logp{std::log(0.5), std::log(1.2), std::log(1.5), std::log(3.0),
                                 std::log(0.5), std::log(0.9), std::log(1.2), std::log(3.0)};
  const std::vector<double> old(8, 0.0), adv{1.0, -1.0};
  sg::token_batch<double> b;
  b.sequences = 2;
  b.length = 4;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  sg::surrogate_options o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.delta = 1.1;
  o.aggregation = sg::loss_aggregation::seq_mean_token_mean;
  std::vector<double> coef(8);
  CHECK(sg::clipped_surrogate(o).evaluate(b, std::span<double>(coef)).loss == Approx(want).epsilon(1e-12));
}
