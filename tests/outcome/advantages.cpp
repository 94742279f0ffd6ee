// SPDX-License-Identifier: Apache-2.0
// Baselines, normalizers and advantages(): the worked examples of algorithms.md §3.9, §3.10,
// §4.7 and §5.2 (tolerances of §0.4: relative 1e-12, absolute 1e-15 near zero, float32 relative
// 2e-6), the properties of §11, layouts, and bad input.
// (GCC 12.2 with AVX-512 miscompiles copies of constant arrays like {1, 1, 0, 0}: the stochgrad
// CMake target adds -fno-tree-slp-vectorize for GCC < 12.3; see CMakeLists.txt.)
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "support/near.hpp"

using namespace stochgrad;
using vd = std::vector<double>;

namespace {

using sg_test::abs0;
using sg_test::near;
using sg_test::rel;
using sg_test::require_all_near;

template <class B, class N>
vd adv_of(const B& b, const N& n, const vd& r, const group_layout& g, advantage_stats* st = nullptr) {
  vd a(r.size());
  const advantage_stats s = advantages(b, n, std::span<const double>(r), g, std::span<double>(a));
  if (st != nullptr) *st = s;
  return a;
}

const vd ex_r{1, 0, 1, 1, 0, 0, 0, 0, 0.2, 0.5, 0.9, 0.4};  // §3.9: G = 4, three prompts

}  // namespace

TEST_CASE("§3.9 GRPO advantages: group, batch, none, verl", "[outcome][worked]") {
  const group_layout g = group_layout::contiguous(3, 4);
  SECTION("group means and std_u") {
    vd base(12);
    group_mean{}.compute<double>(ex_r, g, base);
    CHECK(near(base[0], 0.75));
    CHECK(near(base[4], 0.0));
    CHECK(near(base[8], 0.5));
  }
  SECTION("TRL scale_rewards=group") {
    advantage_stats st;
    const vd a = adv_of(group_mean{}, group_std{}, ex_r, g, &st);
    require_all_near(a, {0.4999000199960008, -1.4997000599880024, 0.4999000199960008, 0.4999000199960008, 0, 0, 0, 0,
                         -1.01870329442667, 0.0, 1.3582710592355602, -0.33956776480888995});
    CHECK(st.constant_groups == 1);
    CHECK(st.zero_groups == 1);
    CHECK(st.zero_group_fraction() == Approx(1.0 / 3.0));
  }
  SECTION("TRL scale_rewards=batch") {
    const vd a = adv_of(group_mean{}, batch_std{}, ex_r, g);
    require_all_near(a, {0.5618789583568299, -1.6856368750704895, 0.5618789583568299, 0.5618789583568299, 0, 0, 0, 0,
                         -0.6742547500281958, 0.0, 0.8990063333709278, -0.2247515833427319});
  }
  SECTION("scale_rewards=none (Dr. GRPO)") {
    const vd a = adv_of(group_mean{}, no_normalizer{}, ex_r, g);
    require_all_near(a, {0.25, -0.75, 0.25, 0.25, 0, 0, 0, 0, -0.3, 0.0, 0.4, -0.1}, rel, 1e-16);
  }
  SECTION("verl eps 1e-6") {
    const vd a = adv_of(group_mean::verl(), group_std::verl(), ex_r, g);
    require_all_near(a, {0.499999000002, -1.499997000006, 0.499999000002, 0.499999000002, 0, 0, 0, 0,
                         -1.0190458692034328, 0.0, 1.3587278256045772, -0.33968195640114424});
  }
}

TEST_CASE("§3.9 GDPO normalize_then_sum vs sum_then_normalize", "[outcome][worked]") {
  const vd r1{1, 0, 1, 1, 0, 0, 1, 0}, r2{0.5, 0.5, 0, 1, 1, 1, 1, 1};
  vd rpf(16);
  for (std::size_t n = 0; n < 8; ++n) {
    rpf[2 * n] = r1[n];
    rpf[2 * n + 1] = r2[n];
  }
  const group_layout g = group_layout::contiguous(2, 4);
  vd a(8);
  multi_reward gdpo(group_mean{}, group_std{}, {1.0, 0.5}, reward_aggregation::normalize_then_sum);
  gdpo.compute<double>(rpf, g, a);
  require_all_near(a, {0.509125762086952, -1.5273772862608561, -0.11439538289067551, 1.1326469070645795,
                       -0.509125762086952, -0.509125762086952, 1.5273772862608561, -0.509125762086952});
  multi_reward stn(group_mean{}, group_std{}, {1.0, 0.5});
  stn.compute<double>(rpf, g, a);
  require_all_near(a, {0.4628243514688249, -1.3884730544064747, 0.0, 0.9256487029376498, -0.4999000199960008,
                       -0.4999000199960008, 1.4997000599880024, -0.4999000199960008});
}

TEST_CASE("§3.10 RLOO advantages", "[outcome][worked]") {
  const group_layout g = group_layout::contiguous(3, 4);
  const vd a = adv_of(leave_one_out{}, no_normalizer{}, ex_r, g);
  require_all_near(a, {0.33333333333333337, -1.0, 0.33333333333333337, 0.33333333333333337, 0, 0, 0, 0,
                       -0.39999999999999997, 0.0, 0.5333333333333333, -0.1333333333333333});
  const vd w = adv_of(leave_one_out{}, batch_whiten{}, ex_r, g);
  // The "~0" entries: |x| < 1e-12 (the spec's own rule for them).
  const vd want{0.8248370957046964, -2.474511287114089, 0.8248370957046964, 0.8248370957046964, 0, 0, 0, 0,
                -0.9898045148456355, 0, 1.3197393531275141, -0.3299348382818785};
  for (std::size_t i = 0; i < 12; ++i) {
    INFO(i);
    if (want[i] == 0.0) {
      CHECK(std::abs(w[i]) < 1e-12);
    } else {
      CHECK(near(w[i], want[i]));
    }
  }
}

TEST_CASE("§4.7 BNPO worked examples", "[outcome][worked][bnpo]") {
  SECTION("Example 1: fit and advantages") {
    const vd r{1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    const group_layout g = group_layout::contiguous(4, 4);
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, g);
    const beta_fit& f = bn.last_fit();
    CHECK(near(f.mean, 0.4375));
    CHECK(near(f.variance, 0.057291666666666664));
    CHECK(near(f.a, 1.4417613636363638));
    CHECK(near(f.b, 1.853693181818182));
    CHECK(near(f.alpha, 1.4805871212121213));
    CHECK(near(f.beta, 1.6178977272727275));
    const vd p{0.25, 0.25, 0.5, 0.75}, fp{1.1893866761120757, 1.1893866761120757, 1.2917778079862732, 1.0228436667366603};
    for (std::size_t i = 0; i < 4; ++i) CHECK(near(std::exp(beta_log_density(p[i], f.alpha, f.beta)), fp[i]));
    require_all_near(a, {0.6305770991580602, -0.21019236638602007, -0.21019236638602007, -0.21019236638602007,
                         0.6305770991580602, -0.21019236638602007, -0.21019236638602007, -0.21019236638602007,
                         0.38706346935889857, 0.38706346935889857, -0.38706346935889857, -0.38706346935889857,
                         0.2444166280049565, 0.2444166280049565, 0.2444166280049565, -0.7332498840148696});
  }
  SECTION("Example 2: GRPO special case alpha = beta = 3/2") {
    const vd r{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    const group_layout g = group_layout::contiguous(3, 4);
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, g);
    CHECK(near(bn.last_fit().alpha, 1.5));
    CHECK(near(bn.last_fit().beta, 1.5));
    require_all_near(a, {0.6801747615878317, -0.22672492052927726, -0.22672492052927726, -0.22672492052927726,
                         0.39269908169872414, 0.39269908169872414, -0.39269908169872414, -0.39269908169872414,
                         0.22672492052927726, 0.22672492052927726, 0.22672492052927726, -0.6801747615878317});
  }
  SECTION("Example 3: saturated groups") {
    const vd r{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0};
    const group_layout g = group_layout::contiguous(4, 4);
    const beta_normalizer bn;
    advantage_stats st;
    const vd a = adv_of(bnpo_mean{}, bn, r, g, &st);
    const beta_fit& f = bn.last_fit();
    CHECK(near(f.variance, 0.18229166666666666));
    CHECK(near(f.a, 0.15312500000000004));
    CHECK(near(f.b, 0.19687500000000005));
    CHECK(near(f.alpha, 1.0510416666666667));
    CHECK(near(f.beta, 1.065625));
    const vd p{0.25, 0.5, 1.0, 0.0}, w{0.9745399431047526, 0.9660298813346122, 1e6, 1e6};
    for (std::size_t i = 0; i < 4; ++i) {
      const double fv = std::exp(beta_log_density(p[i], f.alpha, f.beta));
      CHECK(near(fv > 0 ? std::min(1.0 / fv, 1e6) : 1e6, w[i]));
    }
    const double q = 0.24363498577618814;
    require_all_near(a, {0.7309049573285644, -q, -q, -q, 0.4830149406673061, 0.4830149406673061, -0.4830149406673061,
                         -0.4830149406673061, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(st.constant_groups == 2);
    CHECK(st.zero_groups == 2);
  }
  SECTION("Example 4: over-dispersion clamp") {
    const vd r{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0};
    const group_layout g = group_layout::contiguous(3, 4);
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, g);
    CHECK(near(bn.last_fit().mean, 0.5833333333333334));
    CHECK(near(bn.last_fit().variance, 0.27083333333333337));
    CHECK(bn.last_fit().alpha == 1.0);
    CHECK(bn.last_fit().beta == 1.0);
    require_all_near(a, {0, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.25, 0.25, -0.75});
  }
  SECTION("Example 5: advantage decomposition") {
    const vd acc{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0}, fmt{1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 0};
    const group_layout g = group_layout::contiguous(3, 4);
    beta_normalizer bn;
    const vd af = adv_of(bnpo_mean{}, bn, fmt, g);
    CHECK(near(bn.last_fit().alpha, 1.5));
    CHECK(near(bn.last_fit().beta, 1.1666666666666667));
    require_all_near(af, {0.1987468594071131, 0.1987468594071131, -0.5962405782213392, 0.1987468594071131, 0, 0, 0, 0,
                          -0.4337147917484995, 0.4337147917484995, 0.4337147917484995, -0.4337147917484995});
    vd rpf(24), a(12);
    for (std::size_t n = 0; n < 12; ++n) {
      rpf[2 * n] = acc[n];
      rpf[2 * n + 1] = fmt[n];
    }
    multi_reward mr(bnpo_mean{}, beta_normalizer{}, {1.0, 1.0}, reward_aggregation::decompose);
    mr.compute<double>(rpf, g, a);
    require_all_near(a, {0.43946081049747243, -0.013989030561082083, -0.41148274937530827, -0.013989030561082083,
                         0.19634954084936207, 0.19634954084936207, -0.19634954084936207, -0.19634954084936207,
                         -0.10349493560961111, 0.3302198561388884, 0.3302198561388884, -0.5569447766681657});
  }
  SECTION("Example 6: rewards in [0, 2]") {
    const vd r{2, 0, 1, 0, 0.5, 1.5, 2, 1, 0, 0, 1, 0};
    const group_layout g = group_layout::contiguous(3, 4);
    bnpo_options o;
    o.max_value = 2.0;
    const beta_normalizer bn(o);
    const vd a = adv_of(bnpo_mean{o}, bn, r, g);
    CHECK(near(bn.last_fit().alpha, 1.34375));
    CHECK(near(bn.last_fit().beta, 1.5729166666666665));
    require_all_near(a, {0.49095555185424017, -0.2945733311125441, 0.09819111037084803, -0.2945733311125441,
                         -0.3311568663641433, 0.1103856221213811, 0.3311568663641433, -0.1103856221213811,
                         -0.11813087352094112, -0.11813087352094112, 0.3543926205628234, -0.11813087352094112});
  }
}

TEST_CASE("§4.6 BNPO edge cases: defaults vs reference-compatible mode", "[outcome][bnpo]") {
  SECTION("all p_i equal: default falls back to alpha = beta = 1, the reference mode gives the reference's NaN") {
    const vd r{1, 0, 1, 0, 0, 1, 1, 0};  // p = 0.5, 0.5
    const group_layout g = group_layout::contiguous(2, 4);
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, g);
    CHECK(bn.last_fit().variance_guard);
    require_all_near(a, {0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, -0.5});
    bnpo_options o;
    o.reference_compatible = true;
    vd out(8);
    advantages(bnpo_mean{o}, beta_normalizer(o), std::span<const double>(r), g, std::span<double>(out));
    for (double x : out) CHECK(std::isnan(x));  // issue 11 item 14: k = +inf in the reference
    const vd ones(8, 1.0);  // p_i = 1: 0/0 in k, the reference stops with a Beta argument error
    CHECK_THROWS_AS(advantages(bnpo_mean{o}, beta_normalizer(o), std::span<const double>(ones), g, std::span<double>(out)),
                    invalid_argument);
  }
  SECTION("a component identically 0: zero advantage by default") {
    const vd r(8, 0.0);
    const vd a = adv_of(bnpo_mean{}, beta_normalizer{}, r, group_layout::contiguous(2, 4));
    for (double x : a) CHECK(x == 0.0);
  }
  SECTION("one-sample groups: advantage 0 and excluded by default; p = 0 in the reference mode") {
    const std::vector<std::int64_t> ids{7, 7, 7, 7, 9, 3, 3, 3, 3};
    const vd r{1, 0, 0, 0, 1, 1, 1, 0, 0};
    const group_layout g = group_layout::by_id(ids);
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, g);
    CHECK(a[4] == 0.0);
    CHECK(bn.last_fit().prompts == 2);
    bnpo_options o;
    o.reference_compatible = true;
    const beta_normalizer br(o);
    const vd b = adv_of(bnpo_mean{o}, br, r, g);
    CHECK(br.last_fit().prompts == 3);
    // A = w(0) * s with w(0) = 1 / f(0): alpha = 1 here (m = 0.25, v = 0.0625, k = 2, a = 0.5 ... alpha >= 1).
    const double f0 = std::exp(beta_log_density(0.0, br.last_fit().alpha, br.last_fit().beta));
    CHECK(near(b[4], std::min(1.0 / f0, 1e6) * 1.0));
  }
  SECTION("single prompt: alpha = beta = 1 (REINFORCE)") {
    const vd r{1, 0, 1, 1, 0, 1, 0, 0};
    const beta_normalizer bn;
    const vd a = adv_of(bnpo_mean{}, bn, r, group_layout::contiguous(1, 8));
    CHECK(bn.last_fit().alpha == 1.0);
    require_all_near(a, {0.5, -0.5, 0.5, 0.5, -0.5, 0.5, -0.5, -0.5});
  }
  SECTION("rewards outside [min, max] throw") {
    const vd r{1, 0, 1.5, 0};
    vd out(4);
    const group_layout g = group_layout::contiguous(1, 4);
    CHECK_THROWS_AS(advantages(bnpo_mean{}, beta_normalizer{}, std::span<const double>(r), g, std::span<double>(out)),
                    invalid_argument);
    const vd neg{1, 0, -0.1, 0};
    CHECK_THROWS_AS(advantages(group_mean{}, beta_normalizer{}, std::span<const double>(neg), g, std::span<double>(out)),
                    invalid_argument);
    bnpo_options bad;
    bad.max_value = 0.0;
    CHECK_THROWS_AS(beta_normalizer(bad), invalid_argument);
  }
}

TEST_CASE("§5.2 global-statistics (pool) baseline", "[outcome][worked]") {
  const vd kept{1, 1, 0, 0};
  const std::vector<pool_counts> pool{{3, 13}};
  const group_layout g = group_layout::contiguous(1, 4);
  const vd a0 = adv_of(pool_mean{pool}, pool_std{pool, 1e-6, 1e-6, false}, kept, g);
  require_all_near(a0, {0.8125, 0.8125, -0.1875, -0.1875});
  const vd a1 = adv_of(pool_mean{pool}, pool_std{pool}, kept, g);
  require_all_near(a1, {2.015559437087041, 2.015559437087041, -0.4651291008662402, -0.4651291008662402});
  const vd grpo = adv_of(group_mean::verl(), group_std::verl(), kept, g);
  require_all_near(grpo, {0.8660239037870368, 0.8660239037870368, -0.8660239037870368, -0.8660239037870368});
  // A pool of one sample: mu = 0, sd = 1.
  const std::vector<pool_counts> tiny{{1, 0}};
  const vd one{1.0};
  const vd a2 = adv_of(pool_mean{tiny}, pool_std{tiny}, one, group_layout::contiguous(1, 1));
  CHECK(near(a2[0], 1.0 / (1.0 + 1e-6)));
}

TEST_CASE("§11 advantage properties", "[outcome][property]") {
  // Deterministic pseudo-random rewards from the library's counter-based uniform.
  const std::size_t P = 50, G = 6;
  vd r(P * G);
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = std::floor(noise_at<uniform>(noise_key{11, 0, 0}, i) * 5.0) / 4.0;
  const group_layout g = group_layout::contiguous(P, G);
  SECTION("group sums are zero (group std, none, RLOO, BNPO)") {
    const vd a1 = adv_of(group_mean{}, group_std{}, r, g);
    const vd a2 = adv_of(group_mean{}, no_normalizer{}, r, g);
    const vd a3 = adv_of(leave_one_out{}, no_normalizer{}, r, g);
    vd rb(r.size());
    for (std::size_t i = 0; i < r.size(); ++i) rb[i] = r[i] >= 0.5 ? 1.0 : 0.0;
    const vd a4 = adv_of(bnpo_mean{}, beta_normalizer{}, rb, g);
    for (std::size_t k = 0; k < P; ++k) {
      double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
      for (std::size_t j = 0; j < G; ++j) {
        s1 += a1[k * G + j];
        s2 += a2[k * G + j];
        s3 += a3[k * G + j];
        s4 += a4[k * G + j];
      }
      CHECK(std::abs(s1) < 1e-13);
      CHECK(std::abs(s2) < 1e-14);
      CHECK(std::abs(s3) < 1e-14);
      CHECK(std::abs(s4) < 1e-12);
    }
  }
  SECTION("sum of squares (G-1) s^2 / (s + eps)^2 for non-constant groups") {
    const vd a = adv_of(group_mean{}, group_std{}, r, g);
    for (std::size_t k = 0; k < P; ++k) {
      double mu = 0, ss = 0, sa = 0;
      for (std::size_t j = 0; j < G; ++j) mu += r[k * G + j] / static_cast<double>(G);
      for (std::size_t j = 0; j < G; ++j) {
        ss += (r[k * G + j] - mu) * (r[k * G + j] - mu);
        sa += a[k * G + j] * a[k * G + j];
      }
      const double s = std::sqrt(ss / static_cast<double>(G - 1));
      if (s == 0.0) {
        CHECK(sa == 0.0);
      } else {
        CHECK(near(sa, static_cast<double>(G - 1) * s * s / ((s + 1e-4) * (s + 1e-4)), 1e-12, 1e-14));
      }
    }
  }
  SECTION("affine invariance r -> 3 r + 7 (exact without eps)") {
    vd r2(r.size());
    for (std::size_t i = 0; i < r.size(); ++i) r2[i] = 3.0 * r[i] + 7.0;
    const vd a = adv_of(group_mean{}, group_std{0.0}, r, g), b = adv_of(group_mean{}, group_std{0.0}, r2, g);
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (std::isnan(a[i])) continue;
      CHECK(near(b[i], a[i], 1e-12, 1e-13));
    }
    // With eps the difference is of the order eps / s.
    const vd c = adv_of(group_mean{}, group_std{}, r, g), d = adv_of(group_mean{}, group_std{}, r2, g);
    for (std::size_t i = 0; i < r.size(); ++i) CHECK(std::abs(c[i] - d[i]) < 1e-3);
  }
  SECTION("RLOO identity A = G/(G-1) (r - mean)") {
    const vd a = adv_of(leave_one_out{}, no_normalizer{}, r, g), m = adv_of(group_mean{}, no_normalizer{}, r, g);
    for (std::size_t i = 0; i < r.size(); ++i) {
      CHECK(near(a[i], static_cast<double>(G) / static_cast<double>(G - 1) * m[i], 1e-12, 1e-15));
    }
  }
  SECTION("constant groups give exactly 0 and are counted") {
    vd rc = r;
    for (std::size_t j = 0; j < G; ++j) rc[j] = 0.25;
    advantage_stats st;
    const vd a = adv_of(group_mean{}, group_std{}, rc, g, &st);
    for (std::size_t j = 0; j < G; ++j) CHECK(a[j] == 0.0);
    CHECK(st.constant_groups >= 1);
    CHECK(st.zero_groups == st.constant_groups);
    const vd b = adv_of(group_mean{}, batch_std{}, rc, g);
    for (std::size_t j = 0; j < G; ++j) CHECK(b[j] == 0.0);
  }
  SECTION("BNPO = REINFORCE at (1,1) and (pi/8)-scaled GRPO at (3/2,3/2)") {
    // alpha = beta = 1 through the over-dispersion clamp: A = r - p.
    const vd r1{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1};  // p = 1, 0, 1, 3/4: v > m(1-m)
    const beta_normalizer b1;
    const vd a1 = adv_of(bnpo_mean{}, b1, r1, group_layout::contiguous(4, 4));
    REQUIRE(b1.last_fit().alpha == 1.0);
    REQUIRE(b1.last_fit().beta == 1.0);
    const vd reinforce = adv_of(group_mean{}, no_normalizer{}, r1, group_layout::contiguous(4, 4));
    require_all_near(a1, reinforce);
    // p = {0.25, 0.75, 0.25, 0.75, 0.5}: m = 1/2, v = 1/16, k = 3, a = b = 3/2.
    const vd r2{1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0};
    const beta_normalizer b2;
    const group_layout g2 = group_layout::contiguous(5, 4);
    const vd a2 = adv_of(bnpo_mean{}, b2, r2, g2);
    REQUIRE(near(b2.last_fit().alpha, 1.5));
    REQUIRE(near(b2.last_fit().beta, 1.5));
    for (std::size_t k = 0; k < 5; ++k) {
      double p = 0;
      for (std::size_t j = 0; j < 4; ++j) p += r2[k * 4 + j] / 4.0;
      const double std_b = std::sqrt(p * (1 - p));
      for (std::size_t j = 0; j < 4; ++j) {
        CHECK(near(a2[k * 4 + j], std::numbers::pi / 8.0 * (r2[k * 4 + j] - p) / std_b, 1e-12, 1e-15));
      }
    }
    // The density identities behind both, on a grid of p.
    for (int i = 1; i < 100; ++i) {
      const double p = i / 100.0;
      CHECK(beta_log_density(p, 1.0, 1.0) == 0.0);
      CHECK(near(std::exp(beta_log_density(p, 1.5, 1.5)), 8.0 / std::numbers::pi * std::sqrt(p * (1 - p))));
    }
  }
}

TEST_CASE("NaN-aware advantages (unscorable rows get 0)", "[outcome]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const vd r{1, nan, 0, 1, nan, nan, nan, 2, 0.5, 0.5, 0.5, 0.5};
  const group_layout g = group_layout::contiguous(3, 4);
  advantage_stats st;
  const vd a = adv_of(group_mean{}, group_std{}, r, g, &st);
  CHECK(a[1] == 0.0);
  CHECK(st.nan_outcomes == 4);
  // Group 2 (one valid of four): std undefined -> NaN -> 0.
  for (std::size_t j = 4; j < 8; ++j) CHECK(a[j] == 0.0);
  // Group 1 uses only its three valid rewards: mean 2/3, std_u sqrt(1/3).
  const double mu = 2.0 / 3.0, s = std::sqrt(1.0 / 3.0);
  CHECK(near(a[0], (1 - mu) / (s + 1e-4)));
  CHECK(near(a[2], (0 - mu) / (s + 1e-4)));
  CHECK(st.constant_groups == 2);  // group 2 (one valid) and group 3
}

TEST_CASE("group_layout: contiguous and by-id layouts agree; variable sizes; permutation invariance",
          "[outcome][layout]") {
  const std::vector<std::int64_t> ids{40, 10, 40, 20, 10, 40, 20, 99};
  const group_layout g = group_layout::by_id(ids);
  REQUIRE(g.groups() == 4);
  REQUIRE(g.samples() == 8);
  CHECK(g.group_of(0) == 0);  // first appearance order: 40, 10, 20, 99
  CHECK(g.group_of(1) == 1);
  CHECK(g.group_of(3) == 2);
  CHECK(g.group_of(7) == 3);
  CHECK(g.size_of(0) == 3);
  CHECK(g.size_of(3) == 1);
  CHECK(g.member(0, 2) == 5);
  // Same rewards laid out contiguously vs shuffled with ids give the same per-sample advantages.
  const vd rc{0.1, 0.7, 0.3, 0.9, 0.2, 0.2, 0.8, 0.5, 0.4};
  const vd ac = adv_of(group_mean{}, group_std{}, rc, group_layout::contiguous(3, 3));
  const std::vector<std::size_t> perm{4, 0, 8, 2, 6, 1, 5, 3, 7};
  vd rs(9);
  std::vector<std::int64_t> is(9);
  for (std::size_t i = 0; i < 9; ++i) {
    rs[i] = rc[perm[i]];
    is[i] = static_cast<std::int64_t>(perm[i] / 3) * 1000 - 5;
  }
  const vd as = adv_of(group_mean{}, group_std{}, rs, group_layout::by_id(is));
  // Summation order differs between the layouts (members in sample order): a few ulp.
  for (std::size_t i = 0; i < 9; ++i) CHECK(near(as[i], ac[perm[i]], 1e-14, 1e-15));
  // Reassigning a layout reuses it.
  group_layout h;
  h.assign_ids(ids);
  h.assign_contiguous(2, 4);
  CHECK(h.is_contiguous());
  CHECK(h.group_of(5) == 1);
}

TEST_CASE("float outcomes agree with double (float32 tolerance)", "[outcome]") {
  const group_layout g = group_layout::contiguous(3, 4);
  const vd ad = adv_of(group_mean{}, group_std{}, ex_r, g);
  std::vector<float> rf(ex_r.begin(), ex_r.end()), af(12);
  advantages(group_mean{}, group_std{}, std::span<const float>(rf), g, std::span<float>(af));
  for (std::size_t i = 0; i < 12; ++i) CHECK(near(static_cast<double>(af[i]), ad[i], 2e-6, 1e-7));
}

TEST_CASE("bad input: sizes, G < 1, empty batch, parameters", "[outcome][errors]") {
  vd out(12), small(11);
  const group_layout g = group_layout::contiguous(3, 4);
  CHECK_THROWS_AS(advantages(group_mean{}, group_std{}, std::span<const double>(ex_r), g, std::span<double>(small)),
                  size_mismatch);
  CHECK_THROWS_AS(advantages(group_mean{}, group_std{}, std::span<const double>(small), g, std::span<double>(out)),
                  size_mismatch);
  CHECK_THROWS_AS(group_layout::contiguous(3, 0), invalid_argument);
  CHECK_THROWS_AS(group_layout::contiguous(0, 4), invalid_argument);
  CHECK_THROWS_AS(group_layout::by_id(std::span<const std::int64_t>()), invalid_argument);
  const vd empty;
  vd eo;
  CHECK_THROWS_AS(advantages(group_mean{}, group_std{}, std::span<const double>(empty), group_layout{},
                             std::span<double>(eo)),
                  invalid_argument);
  CHECK_THROWS_AS(advantages(group_mean{}, group_std{-1.0}, std::span<const double>(ex_r), g, std::span<double>(out)),
                  invalid_argument);
  const std::vector<pool_counts> pool{{1, 1}};
  CHECK_THROWS_AS(advantages(pool_mean{pool}, no_normalizer{}, std::span<const double>(ex_r), g, std::span<double>(out)),
                  size_mismatch);
  // The exception message names the parameter, the value and the allowed range.
  try {
    group_layout::contiguous(2, 0);
    FAIL("no exception");
  } catch (const invalid_argument& e) {
    const std::string m = e.what();
    CHECK(m.find("group_size") != std::string::npos);
    CHECK(m.find(">= 1") != std::string::npos);
  }
  STATIC_REQUIRE(baseline_policy<group_mean>);
  STATIC_REQUIRE(baseline_policy<leave_one_out>);
  STATIC_REQUIRE(baseline_policy<bnpo_mean>);
  STATIC_REQUIRE(baseline_policy<pool_mean>);
  STATIC_REQUIRE(baseline_policy<no_baseline>);
  STATIC_REQUIRE(normalizer_policy<group_std>);
  STATIC_REQUIRE(normalizer_policy<batch_std>);
  STATIC_REQUIRE(normalizer_policy<batch_whiten>);
  STATIC_REQUIRE(normalizer_policy<beta_normalizer>);
  STATIC_REQUIRE(normalizer_policy<pool_std>);
  STATIC_REQUIRE(normalizer_policy<no_normalizer>);
  STATIC_REQUIRE(!baseline_policy<group_std>);
  STATIC_REQUIRE(!normalizer_policy<group_mean>);
}

// The contiguous GRPO kernel (lanes = groups) against the generic per-group path, which the same
// groups given by id (members in the same order) take: every operation is the same per group, so
// the advantages and the statistics must agree bit for bit. Rewards include NaN (unscorable),
// constant groups, all-NaN groups and groups with one valid outcome; group counts around the
// SIMD width exercise the partial last register.
TEMPLATE_TEST_CASE("contiguous GRPO kernel == generic path, bit for bit", "[outcome][layout]", float, double) {
  using T = TestType;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const std::size_t G : {std::size_t{2}, std::size_t{3}, std::size_t{10}, std::size_t{16}}) {
    for (const std::size_t P : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9}, std::size_t{101}}) {
      const std::size_t n = P * G;
      std::vector<T> r(n);
      std::vector<std::int64_t> ids(n);
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t grp = i / G;
        const double u = static_cast<double>(noise_at<uniform>(noise_key{G, static_cast<std::uint32_t>(P), 0}, i));
        double v = grp % 5 == 1 ? 1.0 : 0.37 + 3.0 * u;  // every fifth group constant
        if (grp % 7 == 3) v = nan;                        // an all-NaN group
        if (grp % 7 == 5 && i % G != 0) v = nan;          // one valid outcome
        if (grp % 3 == 0 && i % 4 == 1) v = nan;          // scattered NaN
        r[i] = static_cast<T>(v);
        ids[i] = static_cast<std::int64_t>(grp);
      }
      for (const group_std nrm : {group_std::trl(), group_std::verl(), group_std{0.0, false}}) {
        std::vector<T> a_fast(n), a_gen(n);
        const advantage_stats s_fast = advantages(group_mean{}, nrm, std::span<const T>(r),
                                                  group_layout::contiguous(P, G), std::span<T>(a_fast));
        const advantage_stats s_gen =
            advantages(group_mean{}, nrm, std::span<const T>(r), group_layout::by_id(ids), std::span<T>(a_gen));
        INFO("G=" << G << " P=" << P << " eps=" << nrm.eps);
        CHECK(std::memcmp(a_fast.data(), a_gen.data(), n * sizeof(T)) == 0);
        CHECK(s_fast.nan_outcomes == s_gen.nan_outcomes);
        CHECK(s_fast.zeroed == s_gen.zeroed);
        CHECK(s_fast.constant_groups == s_gen.constant_groups);
        CHECK(s_fast.zero_groups == s_gen.zero_groups);
        CHECK(s_fast.samples == s_gen.samples);
        CHECK(s_fast.groups == s_gen.groups);
      }
    }
  }
}
