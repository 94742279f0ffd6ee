// SPDX-License-Identifier: Apache-2.0
// G-Shapley (data::g_shapley, g_shapley_iteration, select_one_epoch_lr; design/seeds/data.md
// section 2.4): the worked example of section 2.6 (2-class softmax regression trained by
// optim::sgd one point at a time) with both first-point conventions, telescoping of each pass,
// a converging run, the reference's learning-rate choice, and failures / bad input.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

#include <stochgrad/bits/data/data.hpp>
#include <stochgrad/bits/optim/optim.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::data;

namespace {

// Softmax regression with two features and two classes: theta = [W (2 x 2, rows = features), b (2)],
// trained by optim::sgd on one point's cross-entropy per step; score = negative mean test
// cross-entropy (the reference's 'xe' metric).
struct softmax_learner {
  std::vector<std::vector<double>> X{{1, 0.5}, {-0.5, 1}, {0.8, -0.6}, {-1.2, -0.3}};
  std::vector<int> y{0, 1, 0, 1};
  std::vector<std::vector<double>> TX{{0.9, 0.1}, {-0.7, 0.8}, {0.3, -0.9}};
  std::vector<int> Ty{0, 1, 0};
  std::vector<double> theta = std::vector<double>(6, 0.0);
  parameters<double> p{theta};
  optim::sgd<> opt;
  optim::sgd<>::state<double> st;
  std::vector<double> grad = std::vector<double>(6);
  std::vector<double> scores;  // every score() result, for the test
  std::uint32_t resets = 0;

  explicit softmax_learner(double lr) : opt(optim::sgd_options{.lr = lr}), st(opt.init(p)) {}

  void probs(const std::vector<double>& x, double out[2]) const {
    double z[2];
    for (int c = 0; c < 2; ++c)
      z[c] = x[0] * theta[static_cast<std::size_t>(c)] + x[1] * theta[static_cast<std::size_t>(2 + c)] +
             theta[static_cast<std::size_t>(4 + c)];
    const double m = std::max(z[0], z[1]);
    const double e0 = std::exp(z[0] - m), e1 = std::exp(z[1] - m);
    out[0] = e0 / (e0 + e1);
    out[1] = e1 / (e0 + e1);
  }
  void reset(std::uint32_t) {
    theta = {0.2, -0.1, -0.3, 0.4, 0.0, 0.0};  // W0 row-major, b0
    ++resets;
  }
  void step(std::uint32_t i) {
    double pr[2];
    probs(X[i], pr);
    for (std::size_t c = 0; c < 2; ++c) {
      const double d = pr[c] - (y[i] == static_cast<int>(c) ? 1.0 : 0.0);
      grad[c] = X[i][0] * d;
      grad[2 + c] = X[i][1] * d;
      grad[4 + c] = d;
    }
    opt.update(p, st, dense_gradient<double>(std::span<const double>(grad)), {});
  }
  double score() {
    double s = 0.0;
    for (std::size_t i = 0; i < TX.size(); ++i) {
      double pr[2];
      probs(TX[i], pr);
      s -= std::log(pr[Ty[i]]);
    }
    scores.push_back(-s / static_cast<double>(TX.size()));
    return scores.back();
  }
};
static_assert(one_point_learner<softmax_learner>);

void require_close(std::span<const double> got, const std::vector<double>& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    REQUIRE_THAT(got[i], Catch::Matchers::WithinRel(want[i], rel) || Catch::Matchers::WithinAbs(want[i], 1e-300));
  }
}

}  // namespace

TEST_CASE("G-Shapley worked example of section 2.6, both first-point rules", "[data][g_shapley]") {
  const std::vector<std::uint32_t> perm = {2, 0, 3, 1};
  std::vector<double> marginal(4, 99.0);
  {
    softmax_learner l(0.5);
    const std::size_t evals =
        g_shapley_iteration(std::span<const std::uint32_t>(perm), l, 0, false, std::span<double>(marginal));
    REQUIRE(evals == 4);
    require_close(l.scores, {-0.3311589652747433, -0.28063086670168175, -0.2327334072056012, -0.20819276348555357},
                  1e-13);
    require_close(marginal, {0.050528098573061564, 0.024540643720047634, 0.0, 0.04789745949608054}, 1e-12);
  }
  {
    softmax_learner l(0.5);
    const std::size_t evals =
        g_shapley_iteration(std::span<const std::uint32_t>(perm), l, 0, true, std::span<double>(marginal));
    REQUIRE(evals == 5);
    REQUIRE_THAT(l.scores[0], Catch::Matchers::WithinRel(-0.45841032363448947, 1e-14));
    require_close(marginal, {0.050528098573061564, 0.024540643720047634, 0.12725135835974616, 0.04789745949608054},
                  1e-12);
    // The paper's rule telescopes: the pass's marginals sum to v_n - V(init).
    double sum = 0.0;
    for (double m : marginal) sum += m;
    REQUIRE_THAT(sum, Catch::Matchers::WithinRel(-0.20819276348555357 + 0.45841032363448947, 1e-13));
  }
}

TEST_CASE("g_shapley: converging run; each row telescopes; the code rule's rows lose the first step",
          "[data][g_shapley]") {
  for (bool credit : {true, false}) {
    softmax_learner l(0.5);
    const auto r = g_shapley(4, l,
                             {.first_point_credit = credit,
                              .window = 20,
                              .err = 0.05,
                              .check_every = 20,
                              .max_iterations = 2000,
                              .seed = 3});
    REQUIRE(r.converged);
    REQUIRE(r.error < 0.05);
    REQUIRE(r.iterations % 20 == 0);
    REQUIRE(l.resets == r.iterations);
    REQUIRE(r.evaluations == r.iterations * (credit ? 5 : 4));
    REQUIRE(r.marginals.size() == 4 * r.iterations);
    // Row t: scores[t*(4 + credit) ...]; sum of marginals = last - (init or first).
    const std::size_t per = credit ? 5 : 4;
    double mean_row = 0.0;
    for (std::size_t t = 0; t < r.iterations; ++t) {
      double s = 0.0;
      for (std::size_t i = 0; i < 4; ++i) s += r.marginals[t * 4 + i];
      const double want = l.scores[t * per + per - 1] - l.scores[t * per];
      REQUIRE_THAT(s, Catch::Matchers::WithinAbs(want, 1e-14));
      mean_row += s / static_cast<double>(r.iterations);
    }
    double sum_values = 0.0;
    for (double v : r.values) sum_values += v;
    REQUIRE_THAT(sum_values, Catch::Matchers::WithinAbs(mean_row, 1e-14));
    // Permutations are those of shapley_permutation(seed, t): the first pass starts its steps
    // with the permutation's first point.
    std::vector<std::uint32_t> perm(4);
    shapley_permutation(3, 0, perm);
    if (!credit) REQUIRE(r.marginals[perm[0]] == 0.0);
  }
}

TEST_CASE("select_one_epoch_lr: mean - std, the first among equals, skipped non-finite candidates",
          "[data][g_shapley]") {
  // Score = 0.8 - |log10(lr) + 2.5| / 10 with a spread growing with lr.
  auto trial = [](double lr, std::uint32_t run) {
    const double centre = 0.8 - std::abs(std::log10(lr) + 2.5) / 10.0;
    const double spread = lr;  // larger lr: noisier
    return centre + ((run % 2) ? spread : -spread);
  };
  // 10^-2 and 10^-3 have equal centres; 10^-3 has the smaller spread.
  const double lr = select_one_epoch_lr(trial);
  REQUIRE_THAT(lr, Catch::Matchers::WithinRel(3.1622776601683794e-3, 1e-15));
  const std::vector<double> equal = {1e-3, 2e-3};
  auto flat = [](double, std::uint32_t) { return 0.5; };
  REQUIRE(select_one_epoch_lr(flat, equal, 3) == 1e-3);
  auto nan_big = [](double l, std::uint32_t r) { return l > 1e-2 && r == 4 ? std::nan("") : 1.0 - l; };
  REQUIRE(select_one_epoch_lr(nan_big, std::vector<double>{1e-1, 5e-2, 1e-2, 1e-3}) == 1e-3);
  auto nan_all = [](double, std::uint32_t) { return std::nan(""); };
  REQUIRE_THROWS_AS(select_one_epoch_lr(nan_all), nonfinite_error);
  REQUIRE_THROWS_AS(select_one_epoch_lr(flat, equal, 0), invalid_argument);
  REQUIRE_THROWS_AS(select_one_epoch_lr(flat, std::vector<double>{1e-3, 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(select_one_epoch_lr(flat, std::vector<double>{1e-3, std::nan("")}), invalid_argument);
}

namespace {
struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};
struct throwing_learner {
  int steps = 0;
  void reset(std::uint32_t) {}
  void step(std::uint32_t) {
    if (++steps == 3) throw boom();
  }
  double score() const { return 0.0; }
};
struct diverging_learner {
  int steps = 0;
  void reset(std::uint32_t) { steps = 0; }
  void step(std::uint32_t) { ++steps; }
  double score() const { return steps >= 2 ? std::numeric_limits<double>::infinity() : 0.5; }
};
}  // namespace

TEST_CASE("G-Shapley: failing learners and bad input", "[data][g_shapley]") {
  throwing_learner t;
  REQUIRE_THROWS_AS(g_shapley(4, t), boom);
  diverging_learner d;
  REQUIRE_THROWS_AS(g_shapley(4, d), nonfinite_error);
  softmax_learner l(0.5);
  REQUIRE_THROWS_AS(g_shapley(0, l), invalid_argument);
  REQUIRE_THROWS_AS(g_shapley(4, l, {.window = 0}), invalid_argument);
  REQUIRE_THROWS_AS(g_shapley(4, l, {.err = 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(g_shapley(4, l, {.err = 1.5}), invalid_argument);
  REQUIRE_THROWS_AS(g_shapley(4, l, {.check_every = 0}), invalid_argument);
  REQUIRE_THROWS_AS(g_shapley(4, l, {.max_iterations = 0}), invalid_argument);
  REQUIRE(l.resets == 0);  // refused before any pass
  std::vector<std::uint32_t> perm = {0, 1, 2};
  std::vector<double> m(4);
  REQUIRE_THROWS_AS(g_shapley_iteration(std::span<const std::uint32_t>(perm), l, 0, true, std::span<double>(m)),
                    size_mismatch);
}
