// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 9: the free advantages() and the policy-gradient step share one validation path.
// On main advantages() accepted +-Inf rewards (RLOO and REINFORCE gave infinite advantages, GRPO a
// silently zeroed group) where step() refuses them with nonfinite_error, and it accepted a
// bnpo_mean and a beta_normalizer built from different options, which step() refuses.
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// advantages() must refuse the batch with nonfinite_error naming the entry, leaving `adv` as it was.
template <class B, class N>
void expect_infinity_refused(const B& b, const N& nrm, double bad, std::size_t at) {
  std::vector<double> r{1.0, 0.0, 0.25, 1.0, 0.5, 0.0, 1.0, 0.75};
  r[at] = bad;
  const sg::group_layout g = sg::group_layout::contiguous(2, 4);
  std::vector<double> adv(r.size(), 7.0);
  try {
    sg::advantages(b, nrm, std::span<const double>(r), g, std::span<double>(adv));
    FAIL("advantages() accepted reward[" << at << "] = " << bad);
  } catch (const sg::nonfinite_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("reward[" + std::to_string(at) + "]") != std::string::npos);
    CHECK(msg.find("infinite") != std::string::npos);
  }
  CHECK(adv == std::vector<double>(r.size(), 7.0));
}

}  // namespace

TEST_CASE("advantages() refuses infinite rewards as step() does", "[reliability][outcome]") {
  for (const double bad : {inf, -inf}) {
    for (const std::size_t at : {std::size_t{0}, std::size_t{5}}) {
      INFO("reward " << bad << " at " << at);
      expect_infinity_refused(sg::group_mean{}, sg::group_std{}, bad, at);            // GRPO (SIMD kernel)
      expect_infinity_refused(sg::group_mean::verl(), sg::group_std::verl(), bad, at);  // generic path
      expect_infinity_refused(sg::leave_one_out{}, sg::no_normalizer{}, bad, at);     // RLOO
      expect_infinity_refused(sg::no_baseline{}, sg::no_normalizer{}, bad, at);       // REINFORCE
      expect_infinity_refused(sg::group_mean{}, sg::batch_std{}, bad, at);
      expect_infinity_refused(sg::no_baseline{}, sg::batch_whiten{}, bad, at);
    }
  }
  // NaN stays an unscorable completion (advantage 0), not an error.
  std::vector<double> r{1.0, std::nan(""), 0.0, 1.0}, adv(4);
  const sg::advantage_stats st = sg::advantages(sg::leave_one_out{}, sg::no_normalizer{}, std::span<const double>(r),
                                                sg::group_layout::contiguous(1, 4), std::span<double>(adv));
  CHECK(st.nan_outcomes == 1);
  CHECK(adv[1] == 0.0);
}

TEST_CASE("combined_advantages refuses an infinite entry of the reward matrix", "[reliability][outcome]") {
  // Two reward functions; entry [2][1] infinite.
  std::vector<double> r{1, 0, 0, 1, 1, inf, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0};
  const std::vector<double> w{1.0, 0.5};
  const sg::group_layout g = sg::group_layout::contiguous(2, 4);
  for (const auto mode : {sg::reward_aggregation::sum_then_normalize, sg::reward_aggregation::normalize_then_sum,
                          sg::reward_aggregation::decompose}) {
    std::vector<double> adv(8, 7.0);
    sg::multi_reward_scratch scratch;
    CHECK_THROWS_AS(sg::combined_advantages(sg::group_mean{}, sg::group_std{}, std::span<const double>(w), mode, 1e-4,
                                            std::span<const double>(r), g, std::span<double>(adv), scratch),
                    sg::nonfinite_error);
    CHECK(adv == std::vector<double>(8, 7.0));
  }
}

TEST_CASE("advantages() refuses BNPO baseline and normalizer options that disagree, as step() does", "[reliability][outcome][bnpo]") {
  const std::vector<double> r{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
  const sg::group_layout g = sg::group_layout::contiguous(3, 4);
  sg::bnpo_options wide;
  wide.max_value = 2.0;
  sg::bnpo_options ref;
  ref.reference_compatible = true;
  sg::bnpo_options low;
  low.min_value = -1.0;
  for (const auto& [bo, no] : {std::pair{wide, sg::bnpo_options{}}, std::pair{sg::bnpo_options{}, wide},
                               std::pair{ref, sg::bnpo_options{}}, std::pair{sg::bnpo_options{}, ref},
                               std::pair{low, sg::bnpo_options{}}}) {
    std::vector<double> adv(r.size(), 7.0);
    try {
      sg::advantages(sg::bnpo_mean{bo}, sg::beta_normalizer(no), std::span<const double>(r), g, std::span<double>(adv));
      FAIL("advantages() accepted bnpo_mean and beta_normalizer with different options");
    } catch (const sg::invalid_argument& e) {
      CHECK(std::string(e.what()).find("different options") != std::string::npos);
    }
    CHECK(adv == std::vector<double>(r.size(), 7.0));
  }
  // The same options are fine, in the free function and in the stepper.
  std::vector<double> adv(r.size());
  CHECK_NOTHROW(sg::advantages(sg::bnpo_mean{wide}, sg::beta_normalizer(wide), std::span<const double>(r), g,
                               std::span<double>(adv)));
}

TEST_CASE("step() and advantages() give the same refusal for the same rewards", "[reliability][pg]") {
  pgtest::addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = pgtest::warm_theta(ro.pol, 1.5);
  const std::vector<double> keep = theta;
  sg::rloo<double> s(sg::parameters<double>(std::span<double>(theta)), sg::optim::adam<>{});
  ro.draw(theta, 3, 0);
  ro.rewards[6] = -inf;
  std::string from_step, from_free;
  try {
    s.step(ro.batch(), ro.layout, ro.vjp(theta));
  } catch (const sg::nonfinite_error& e) {
    from_step = e.what();
  }
  std::vector<double> adv(ro.S);
  try {
    sg::advantages(s.baseline(), s.normalizer(), std::span<const double>(ro.rewards), ro.layout, std::span<double>(adv));
  } catch (const sg::nonfinite_error& e) {
    from_free = e.what();
  }
  CHECK(from_step.find("reward[6]") != std::string::npos);
  CHECK(from_free.find("reward[6]") != std::string::npos);
  CHECK(theta == keep);
  CHECK(s.steps() == 0);
}
