// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 12: a group of identical non-dyadic rewards (sixteen copies of one continuous
// score) must get advantage exactly 0, as TRL gives, and its std must be exactly 0 (filters that
// test "std == 0" must see 0). On main the group mean sum/count of sixteen copies of 0.1 is not
// 0.1, so r - mean ~ 1e-17 and GRPO's advantage (r - mean) / (std + 1e-4) came out ~1e-13.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

// Continuous scores whose sixteen-fold sequential sum rounds (so sum / 16 != score on main).
constexpr double scores[] = {0.1, 0.7310585786300049, 0.3, 1.0 / 3.0, 0.6931471805599453};

// Batch of P groups of G: group k constant at scores[k % 5] when k is even, otherwise mixed.
template <class T>
std::vector<T> batch(std::size_t P, std::size_t G) {
  std::vector<T> r(P * G);
  for (std::size_t k = 0; k < P; ++k) {
    for (std::size_t j = 0; j < G; ++j) {
      r[k * G + j] = k % 2 == 0 ? static_cast<T>(scores[k % 5]) : static_cast<T>(0.05 * static_cast<double>(j % 3) + 0.1);
    }
  }
  return r;
}

template <class T, class B, class N>
void check_constant_groups_zero(const B& b, const N& nrm, const sg::group_layout& g, std::span<const T> r,
                                std::size_t P, std::size_t G) {
  std::vector<T> adv(r.size(), T(7));
  const sg::advantage_stats st = sg::advantages(b, nrm, r, g, std::span<T>(adv));
  std::size_t constant = 0;
  for (std::size_t k = 0; k < P; k += 2) {
    ++constant;
    for (std::size_t j = 0; j < G; ++j) {
      INFO("group " << k << " member " << j << " reward " << static_cast<double>(r[k * G + j]));
      CHECK(adv[k * G + j] == T(0));
    }
  }
  CHECK(st.constant_groups == constant);
  CHECK(st.zero_groups == constant);  // the mixed groups have non-zero advantages
}

}  // namespace

TEMPLATE_TEST_CASE("constant non-dyadic groups get exactly zero advantage", "[reliability][pg][outcome]", float, double) {
  using T = TestType;
  const std::size_t P = 11, G = 16;  // 11 groups: SIMD lanes plus a partial register
  const std::vector<T> r = batch<T>(P, G);
  const std::span<const T> rs(r);
  const sg::group_layout contiguous = sg::group_layout::contiguous(P, G);
  std::vector<std::int64_t> ids(P * G);
  for (std::size_t n = 0; n < ids.size(); ++n) ids[n] = static_cast<std::int64_t>(n / G);
  const sg::group_layout by_id = sg::group_layout::by_id(ids);
  REQUIRE_FALSE(by_id.is_contiguous());

  SECTION("GRPO, contiguous layout (SIMD kernel)") {
    check_constant_groups_zero<T>(sg::group_mean{}, sg::group_std{}, contiguous, rs, P, G);
  }
  SECTION("GRPO, layout by id (scalar path)") {
    check_constant_groups_zero<T>(sg::group_mean{}, sg::group_std{}, by_id, rs, P, G);
  }
  SECTION("GRPO, verl eps") {
    check_constant_groups_zero<T>(sg::group_mean::verl(), sg::group_std::verl(), by_id, rs, P, G);
  }
  SECTION("Dr. GRPO (no normalizer)") {
    check_constant_groups_zero<T>(sg::group_mean{}, sg::no_normalizer{}, contiguous, rs, P, G);
  }
  SECTION("batch std") {
    check_constant_groups_zero<T>(sg::group_mean{}, sg::batch_std{}, contiguous, rs, P, G);
  }
  SECTION("RLOO (leave one out)") {
    check_constant_groups_zero<T>(sg::leave_one_out{}, sg::no_normalizer{}, contiguous, rs, P, G);
  }
  SECTION("BNPO") {
    const sg::bnpo_options o{};
    check_constant_groups_zero<T>(sg::bnpo_mean{o}, sg::beta_normalizer(o), contiguous, rs, P, G);
  }
}

TEMPLATE_TEST_CASE("a constant group's mean is the value and its std is exactly 0", "[reliability][pg][outcome]", float, double) {
  using T = TestType;
  for (const double s : scores) {
    for (const std::size_t G : {std::size_t{3}, std::size_t{16}, std::size_t{64}}) {
      std::vector<T> r(G, static_cast<T>(s));
      r[1] = std::numeric_limits<T>::quiet_NaN();  // NaN outcomes are excluded, the rest still constant
      const sg::group_layout g = sg::group_layout::contiguous(1, G);
      INFO("score " << s << " G " << G);
      CHECK(sg::detail::group_nanmean(std::span<const T>(r), g, 0) == static_cast<double>(static_cast<T>(s)));
      const sg::detail::nan_moments m = sg::detail::group_moments(std::span<const T>(r), g, 0);
      CHECK(m.mean == static_cast<double>(static_cast<T>(s)));
      CHECK(m.std_u() == 0.0);
      std::vector<T> base(G);
      sg::leave_one_out{}.compute(std::span<const T>(r), g, std::span<T>(base));
      CHECK(base[0] == static_cast<T>(s));
      CHECK(base[G - 1] == static_cast<T>(s));
    }
  }
}

TEST_CASE("a GRPO step on constant non-dyadic groups has an exactly zero policy gradient", "[reliability][pg]") {
  pgtest::addition_rollouts<double> ro(4, 16);
  std::vector<double> theta = pgtest::warm_theta(ro.pol, 1.5);
  sg::grpo<double> s(sg::parameters<double>(std::span<double>(theta)), sg::optim::adam<>({.lr = 0.1}));
  ro.draw(theta, 5, 0);
  for (std::size_t n = 0; n < ro.S; ++n) ro.rewards[n] = scores[n / ro.G];
  const std::vector<double> keep = theta;
  const auto rep = s.step(ro.batch(), ro.layout, ro.vjp(theta));
  for (const double a : rep.advantages) CHECK(a == 0.0);
  for (const double c : rep.coefficients) CHECK(c == 0.0);
  bool all_zero = true;
  for (const double gv : rep.gradient[0]) all_zero = all_zero && gv == 0.0;
  CHECK(all_zero);
  CHECK(theta == keep);  // Adam with a zero gradient (zero moments) leaves the parameters exactly as they were
  CHECK(rep.stats.zero_groups == 4);
}
