// SPDX-License-Identifier: Apache-2.0
// GVM-RAFT sample allocation (data::gvm_ratios, largest_remainder_round, align_to_multiple;
// design/seeds/data.md section 4.3): the worked example of section 4.4 (official
// calc_sample_ratio and float_to_int_preserve_sum values), the variance-minimising property
// without the regulariser, rounding ties, alignment, all-zero input and bad input.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <stochgrad/bits/data/data.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::data;

namespace {
const std::vector<double> G{0.8, 1.5, 0.0, 2.2, 0.4, 1.1};
const std::vector<double> P{0.125, 0.5, 0.75, 0.25, 1.0, 0.0};
}  // namespace

TEST_CASE("gvm: worked example of section 4.4", "[data][gvm]") {
  const std::vector<double> r = gvm_ratios(G, P, 48, {.alpha = 1e-3, .beta = 2.0});
  const std::vector<double> want{0.241703007873651, 0.2332691404054008, 0.0, 0.4809763375290183, 0.044051514191929965, 0.0};
  REQUIRE(r.size() == want.size());
  for (std::size_t i = 0; i < r.size(); ++i) REQUIRE_THAT(r[i], Catch::Matchers::WithinRel(want[i], 1e-12) || Catch::Matchers::WithinAbs(want[i], 0.0));
  std::vector<std::int64_t> n = gvm_sample_sizes(G, P, 48, {.alpha = 1e-3, .beta = 2.0});
  REQUIRE(n == std::vector<std::int64_t>{12, 11, 0, 23, 2, 0});
  align_to_multiple(n, 8);  // already a multiple of 8 GPUs
  REQUIRE(n == std::vector<std::int64_t>{12, 11, 0, 23, 2, 0});

  const gvm_options f{.alpha = 1e-3, .beta = 2.0, .filter_threshold = 0.9, .filter_insufficient = 2.0};
  const std::vector<double> rf = gvm_ratios(G, P, 48, f);
  const std::vector<double> wf{0, 0.32659519396609915, 0, 0.6734048060339007, 0, 0};
  for (std::size_t i = 0; i < rf.size(); ++i) REQUIRE_THAT(rf[i], Catch::Matchers::WithinRel(wf[i], 1e-12) || Catch::Matchers::WithinAbs(wf[i], 0.0));
  REQUIRE(gvm_sample_sizes(G, P, 48, f) == std::vector<std::int64_t>{0, 16, 0, 32, 0, 0});
}

TEST_CASE("gvm: alpha = 0 gives n ∝ G / sqrt(p), the minimiser of sum G^2 / (n p)", "[data][gvm]") {
  const std::vector<double> g{1.0, 2.0, 0.5}, p{0.25, 0.64, 0.81};
  const std::vector<double> r = gvm_ratios(g, p, 100, {.alpha = 0.0});
  const double s = 1.0 / 0.5 + 2.0 / 0.8 + 0.5 / 0.9;
  REQUIRE_THAT(r[0], Catch::Matchers::WithinRel(2.0 / s, 1e-14));
  REQUIRE_THAT(r[1], Catch::Matchers::WithinRel(2.5 / s, 1e-14));
  REQUIRE_THAT(r[2], Catch::Matchers::WithinRel((0.5 / 0.9) / s, 1e-14));
  // Lagrange condition: G_i^2 / (r_i^2 p_i) is the same for every prompt.
  const double c0 = g[0] * g[0] / (r[0] * r[0] * p[0]);
  for (std::size_t i = 1; i < 3; ++i) REQUIRE_THAT(g[i] * g[i] / (r[i] * r[i] * p[i]), Catch::Matchers::WithinRel(c0, 1e-12));
}

TEST_CASE("largest_remainder_round: half-even, residual corrections, stable ties", "[data][gvm]") {
  REQUIRE(round_half_even(2.5) == 2.0);
  REQUIRE(round_half_even(3.5) == 4.0);
  REQUIRE(round_half_even(-0.5) == 0.0);
  REQUIRE(round_half_even(2.4999) == 2.0);
  // x = [2.5, 2.5, 5] (sum 10): round -> [2, 2, 5] = 9, e = +1 -> largest residual 0.5, the lower
  // index first: [3, 2, 5].
  REQUIRE(largest_remainder_round(std::vector<double>{0.25, 0.25, 0.5}, 10) == std::vector<std::int64_t>{3, 2, 5});
  // x = [1.5, 1.5, 1.5, 1.5] (sum 6): round -> [2, 2, 2, 2] = 8, e = -2 -> smallest residual -0.5,
  // lower index first: [1, 1, 2, 2].
  REQUIRE(largest_remainder_round(std::vector<double>{0.25, 0.25, 0.25, 0.25}, 6) ==
          std::vector<std::int64_t>{1, 1, 2, 2});
  REQUIRE(largest_remainder_round(std::vector<double>{0, 0}, 6) == std::vector<std::int64_t>{0, 0});
}

TEST_CASE("align_to_multiple: descending sizes, larger index first on ties, cycling", "[data][gvm]") {
  std::vector<std::int64_t> n{3, 5, 3, 0};  // total 11 -> 16: +1 to 1, then 2 (later of the 3s), 0, 3, 1
  align_to_multiple(n, 8);
  REQUIRE(n == std::vector<std::int64_t>{4, 7, 4, 1});
  std::vector<std::int64_t> z{0, 0};
  align_to_multiple(z, 8);  // an all-zero batch is skipped
  REQUIRE(z == std::vector<std::int64_t>{0, 0});
}

TEST_CASE("gvm: everything filtered gives all zeros; bad input throws", "[data][gvm]") {
  const std::vector<double> g0{0.0, 0.0}, p0{0.5, 0.5};
  REQUIRE(gvm_ratios(g0, p0, 16) == std::vector<double>{0.0, 0.0});
  REQUIRE(gvm_sample_sizes(g0, p0, 16) == std::vector<std::int64_t>{0, 0});
  REQUIRE_THROWS_AS(gvm_ratios(std::vector<double>{1.0}, std::vector<double>{0.5, 0.5}, 16), size_mismatch);
  REQUIRE_THROWS_AS(gvm_ratios(std::vector<double>{-1.0}, std::vector<double>{0.5}, 16), invalid_argument);
  REQUIRE_THROWS_AS(gvm_ratios(std::vector<double>{std::nan("")}, std::vector<double>{0.5}, 16), invalid_argument);
  REQUIRE_THROWS_AS(gvm_ratios(std::vector<double>{1.0}, std::vector<double>{1.5}, 16), invalid_argument);
  REQUIRE_THROWS_AS(gvm_ratios(std::vector<double>{1.0}, std::vector<double>{0.5}, 16, {.alpha = -1.0}), invalid_argument);
  REQUIRE_THROWS_AS(largest_remainder_round(std::vector<double>{-0.1, 1.1}, 16), invalid_argument);
  std::vector<std::int64_t> n{1, -2};
  REQUIRE_THROWS_AS(align_to_multiple(n, 4), invalid_argument);
  REQUIRE(n == std::vector<std::int64_t>{1, -2});
  REQUIRE_THROWS_AS(align_to_multiple(n, 0), invalid_argument);
}
