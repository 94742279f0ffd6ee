// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 14: BNPO's reference_compatible mode reproduces the BNPO reference when every
// prompt's mean p_i is the same value m in (0, 1) (e.g. 0.5): the reference's method of moments
// divides by v = 0, k = m (1 - m) / 0 - 1 = +inf, alpha = beta = +inf, the Beta log-density is
// (inf) log p + (inf) log(1 - p) - lbeta(inf, inf) = -inf - (inf - inf) = NaN, so every advantage
// is NaN (algorithms.md §0.5.4, §4.6). On main this mode threw invalid_argument instead. Every
// p_i = 0 or 1 (0/0 in k) still throws: the reference stops there with a Beta argument error. The
// default mode keeps its guard (alpha = beta = 1).
#include <cmath>
#include <limits>
#include <span>
#include <sstream>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

sg::bnpo_options reference() {
  sg::bnpo_options o;
  o.reference_compatible = true;
  return o;
}

}  // namespace

TEST_CASE("BNPO reference mode: every p_i = 0.5 gives NaN advantages as the reference", "[reliability][bnpo]") {
  const std::vector<double> r{1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0};  // p = 0.5, 0.5, 0.5
  const sg::group_layout g = sg::group_layout::contiguous(3, 4);
  const sg::beta_normalizer bn(reference());
  std::vector<double> adv(r.size(), 7.0);
  const sg::advantage_stats st =
      sg::advantages(sg::bnpo_mean{reference()}, bn, std::span<const double>(r), g, std::span<double>(adv));
  for (const double a : adv) CHECK(std::isnan(a));
  CHECK(st.zeroed == 0);  // left NaN, as the reference returns them
  CHECK(st.zero_groups == 0);
  const sg::beta_fit& f = bn.last_fit();
  CHECK(f.reference_nan);
  CHECK(f.mean == 0.5);
  CHECK(f.variance == 0.0);
  CHECK(std::isinf(f.alpha));
  CHECK(std::isinf(f.beta));
  CHECK_FALSE(f.variance_guard);
}

TEST_CASE("BNPO reference mode: any common interior p_i gives NaN; 0 or 1 still throws", "[reliability][bnpo]") {
  const sg::group_layout g = sg::group_layout::contiguous(2, 4);
  const std::vector<double> quarter{1, 0, 0, 0, 0, 0, 1, 0};  // p = 0.25, 0.25
  std::vector<double> adv(8);
  sg::advantages(sg::bnpo_mean{reference()}, sg::beta_normalizer(reference()), std::span<const double>(quarter), g,
                 std::span<double>(adv));
  for (const double a : adv) CHECK(std::isnan(a));
  for (const double v : {0.0, 1.0}) {
    const std::vector<double> sat(8, v);
    CHECK_THROWS_AS(sg::advantages(sg::bnpo_mean{reference()}, sg::beta_normalizer(reference()),
                                   std::span<const double>(sat), g, std::span<double>(adv)),
                    sg::invalid_argument);
  }
  // One-sample groups are p_i = 0 in the reference and enter the fit: p = 0.5, 0.5, 0 is not constant.
  const std::vector<std::int64_t> ids{1, 1, 2, 2, 3};
  const std::vector<double> r5{1, 0, 0, 1, 1};
  std::vector<double> a5(5);
  sg::advantages(sg::bnpo_mean{reference()}, sg::beta_normalizer(reference()), std::span<const double>(r5),
                 sg::group_layout::by_id(ids), std::span<double>(a5));
  for (const double a : a5) CHECK(std::isfinite(a));
}

TEST_CASE("BNPO default mode keeps its guard when every p_i = 0.5", "[reliability][bnpo]") {
  const std::vector<double> r{1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0};
  const sg::beta_normalizer bn;
  std::vector<double> adv(r.size());
  sg::advantages(sg::bnpo_mean{}, bn, std::span<const double>(r), sg::group_layout::contiguous(3, 4), std::span<double>(adv));
  CHECK(bn.last_fit().variance_guard);
  CHECK_FALSE(bn.last_fit().reference_nan);
  for (std::size_t n = 0; n < r.size(); ++n) CHECK(adv[n] == r[n] - 0.5);
}

TEST_CASE("a BNPO reference-mode step on NaN advantages is refused before anything changes", "[reliability][bnpo][pg]") {
  pgtest::addition_rollouts<double> ro(4, 4);
  std::vector<double> theta = pgtest::warm_theta(ro.pol, 1.5);
  const std::vector<double> keep = theta;
  sg::bnpo<double> s(sg::parameters<double>(std::span<double>(theta)), sg::optim::adam<>{}, sg::score_function<>{},
                     sg::bnpo_mean{reference()}, sg::beta_normalizer(reference()));
  ro.draw(theta, 9, 0);
  for (std::size_t n = 0; n < ro.S; ++n) ro.rewards[n] = (n % 2 == 0) ? 1.0 : 0.0;  // p_i = 0.5 everywhere
  std::ostringstream before;
  s.save(before);
  CHECK_THROWS_AS(s.step(ro.batch(), ro.layout, ro.vjp(theta)), sg::nonfinite_error);
  CHECK(theta == keep);
  CHECK(s.steps() == 0);
  std::ostringstream after;
  s.save(after);
  CHECK(before.str() == after.str());
}
