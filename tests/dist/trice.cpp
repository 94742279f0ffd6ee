// SPDX-License-Identifier: Apache-2.0
// TRICE (shared/design/seeds/variational.md section 6): every number of the worked examples of
// section 6.3 (weights, CV and no-CV gradients, subsampling; the softmax toy with a known target),
// the zero-variance limit of section 9.4, unbiasedness at stationarity (section 9.1) and
// validation. Tolerances (section 0.3): relative 1e-12 in double, 2e-6 in float; exact zeros
// absolute 1e-14.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <stochgrad/bits/dist/dist.hpp>
#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "support/near.hpp"

using namespace stochgrad;
namespace sd = stochgrad::dist;

namespace {

using sg_test::check_all;
using sg_test::check_rel;

// Section 6.3 example 1.
const std::vector<std::uint8_t> c1 = {1, 0, 1, 1};
const std::vector<double> mem1 = {0.5, -0.2, 0.1, 1.0, 0.3, -0.4, -0.3, 0.8, 0.2, 0.0, -0.6, 0.9};
const std::vector<double> prop1 = {0.2, 0.4, -0.1, -0.7, 0.1, 0.5, 0.6, -0.3, 0.3, 0.1, 0.2, -0.8};

// Section 6.3 example 2: p = softmax(theta), score e_z - p.
const std::vector<double> theta2 = {0.5, -0.3, 0.2, 1.0, -1.0};
std::vector<double> softmax(const std::vector<double>& t) {
  std::vector<double> p(t.size());
  double s = 0.0;
  for (std::size_t k = 0; k < t.size(); ++k) s += (p[k] = std::exp(t[k]));
  for (double& x : p) x /= s;
  return p;
}
void put_score(const std::vector<double>& p, std::size_t z, double* row) {
  for (std::size_t k = 0; k < p.size(); ++k) row[k] = (k == z ? 1.0 : 0.0) - p[k];
}

}  // namespace

TEST_CASE("6.3 example 1: weights and gradients", "[dist][trice][worked]") {
  std::vector<double> beta(4), wm(4), wp(4), g(3);
  sd::trice_weights<double>(c1, true, beta, wm, wp);
  check_all(beta, {0.6666666666666666, 1.0, 0.6666666666666666, 0.6666666666666666});
  check_all(wm, {0, 0.25, 0, 0});
  check_all(wp, {0.08333333333333334, -0.25, 0.08333333333333334, 0.08333333333333334});
  sd::trice_gradient<double>(c1, mem1, prop1, true, g);
  check_all(g, {0.5, 0.07500000000000001, -0.275});
  sd::trice_gradient<double>(c1, mem1, prop1, false, g);
  check_all(g, {0.475, 0.15000000000000002, -0.25});
}

TEST_CASE("6.3 example 1: float32", "[dist][trice][worked]") {
  const std::vector<float> m(mem1.begin(), mem1.end()), p(prop1.begin(), prop1.end());
  std::vector<float> g(3);
  sd::trice_gradient<float>(c1, m, p, true, g);
  check_all(g, {0.5, 0.07500000000000001, -0.275}, 2e-6);
}

TEST_CASE("6.3 example 1: subsampling L = 3", "[dist][trice][worked]") {
  std::vector<double> beta(4), wm(4), wp(4), g(3), sign(3);
  sd::trice_weights<double>(c1, true, beta, wm, wp);
  const std::vector<double> u = {0.15, 0.62, 0.91};
  std::vector<std::size_t> picked(3);
  check_rel(sd::trice_subsample<double>(wm, wp, u, picked, sign) * 3.0, 0.75);  // scale = sum|w| / L
  CHECK(picked == std::vector<std::size_t>{1, 5, 7});
  CHECK(sign == std::vector<double>{1.0, -1.0, 1.0});
  sd::trice_subsampled_gradient<double>(wm, wp, u, mem1, prop1, picked, g);
  CHECK(picked == std::vector<std::size_t>{1, 5, 7});
  check_all(g, {0.45, 0.1, -0.42500000000000004});
}

TEST_CASE("6.3 example 2: softmax toy with a known target", "[dist][trice][worked]") {
  const std::vector<double> p = softmax(theta2);
  check_all(p, {0.24618422964198777, 0.11061770488703056, 0.1823777629632768, 0.40588917592167023,
                0.05493112658603456});
  std::vector<std::size_t> memory = {1, 3, 3, 1};
  const std::vector<std::size_t> proposals = {3, 0, 1, 4};
  std::vector<std::uint8_t> c(4);
  for (std::size_t m = 0; m < 4; ++m) c[m] = (proposals[m] == 1 || proposals[m] == 3) ? 1 : 0;
  CHECK(c == std::vector<std::uint8_t>{1, 0, 1, 0});
  std::vector<double> mg(20), pg(20);  // scores of the OLD memory and of the proposals
  for (std::size_t m = 0; m < 4; ++m) {
    put_score(p, memory[m], &mg[m * 5]);
    put_score(p, proposals[m], &pg[m * 5]);
  }
  sd::trice_accept<std::size_t>(c, memory, proposals);
  CHECK(memory == std::vector<std::size_t>{3, 3, 1, 1});
  std::vector<double> beta(4), wm(4), wp(4), g(5);
  sd::trice_weights<double>(c, true, beta, wm, wp);
  check_all(beta, {1.0 / 3, 2.0 / 3, 1.0 / 3, 2.0 / 3});
  check_all(wm, {0, 0.25, 0, 0.25});
  check_all(wp, {0.16666666666666669, -0.16666666666666666, 0.16666666666666669, -0.16666666666666666});
  sd::trice_gradient<double>(c, mg, pg, true, g);
  check_all(g, {-0.28975878148766054, 0.3613578142231514, -0.09118888148163841, 0.2137220787058315,
                -0.19413222995968393});
  sd::trice_gradient<double>(c, mg, pg, false, g);
  check_all(g, {-0.24618422964198777, 0.3893822951129694, -0.1823777629632768, 0.09411082407832974,
                -0.05493112658603456});
  // The target: grad log P(correct) = posterior - p, P(correct) = p_1 + p_3.
  const double pc = p[1] + p[3];
  check_rel(std::log(pc), -0.6606666685195045);
  std::vector<double> target(5);
  for (std::size_t k = 0; k < 5; ++k) target[k] = ((k == 1 || k == 3) ? p[k] / pc : 0.0) - p[k];
  check_all(target, {-0.24618422964198777, 0.10354731207041083, -0.1823777629632768, 0.3799458071208884,
                     -0.05493112658603456});
}

TEST_CASE("9.4: every proposal correct gives beta = 1 and g = 0 exactly", "[dist][trice]") {
  const std::vector<std::uint8_t> all = {1, 1, 1};
  std::vector<double> beta(3), wm(3), wp(3), g(3, 9.0), sign(2);
  sd::trice_weights<double>(all, true, beta, wm, wp);
  CHECK(beta == std::vector<double>(3, 1.0));
  sd::trice_gradient<double>(all, std::span(mem1).first(9), std::span(prop1).first(9), true, g);
  CHECK(g == std::vector<double>(3, 0.0));
  std::vector<std::size_t> picked(2);
  const std::vector<double> u = {0.3, 0.7};
  CHECK(sd::trice_subsample<double>(wm, wp, u, picked, sign) == 0.0);
  CHECK(picked == std::vector<std::size_t>{6, 6});
  sd::trice_subsampled_gradient<double>(wm, wp, u, std::span(mem1).first(9), std::span(prop1).first(9), picked, g);
  CHECK(g == std::vector<double>(3, 0.0));
}

TEST_CASE("9.1: at stationarity both estimators average to the target", "[dist][trice][statistics]") {
  // Toy of 6.3 example 2 with M = 4: memory z_m ~ posterior on {1, 3}, proposals ~ p. N = 20000
  // steps; tolerance 5 standard errors per entry, the standard error from the per-step estimates'
  // sample variance (sqrt(var / N)).
  const std::vector<double> p = softmax(theta2);
  const double pc = p[1] + p[3];
  std::vector<double> target(5);
  for (std::size_t k = 0; k < 5; ++k) target[k] = ((k == 1 || k == 3) ? p[k] / pc : 0.0) - p[k];
  std::mt19937_64 rng(0);
  std::discrete_distribution<std::size_t> prop(p.begin(), p.end());
  std::bernoulli_distribution post1(p[1] / pc);
  const std::size_t N = 20000, M = 4;
  double trace[2] = {0.0, 0.0};  // trace of the estimator's covariance, [no CV, CV]
  for (bool cv : {true, false}) {
    std::vector<double> sum(5, 0.0), sq(5, 0.0), g(5), mg(M * 5), pg(M * 5);
    std::vector<std::uint8_t> c(M);
    for (std::size_t t = 0; t < N; ++t) {
      for (std::size_t m = 0; m < M; ++m) {
        const std::size_t z = post1(rng) ? 1 : 3, zt = prop(rng);
        c[m] = (zt == 1 || zt == 3) ? 1 : 0;
        put_score(p, z, &mg[m * 5]);
        put_score(p, zt, &pg[m * 5]);
      }
      sd::trice_gradient<double>(c, mg, pg, cv, g);
      for (std::size_t k = 0; k < 5; ++k) {
        sum[k] += g[k];
        sq[k] += g[k] * g[k];
      }
    }
    for (std::size_t k = 0; k < 5; ++k) {
      const double mean = sum[k] / N, var = std::max(sq[k] / N - mean * mean, 0.0);
      INFO("cv " << cv << " entry " << k << " mean " << mean << " target " << target[k]);
      CHECK(std::abs(mean - target[k]) <= 5.0 * std::sqrt(var / N) + 1e-12);  // + rounding, for constant entries
      trace[cv ? 1 : 0] += var;
    }
  }
  // Section 9.4 says the CV lowers the covariance trace for acceptance rates >= 0.5 in this toy;
  // at this toy's rate p_1 + p_3 = 0.5165 it does NOT (trace about 0.108 with the CV vs 0.085
  // without, reported to the spec's authors), so the claim is checked at a high rate below.
  INFO("trace no CV " << trace[0] << " CV " << trace[1]);
}

TEST_CASE("9.4: at a high acceptance rate the CV lowers the variance", "[dist][trice][statistics]") {
  // theta with p_1 + p_3 = 0.88; same stationary sampling as above, M = 4, N = 20000.
  // Compared: the traces of the two sample covariances (each within a few % of its value at this N;
  // the CV one is expected well below, the check only asks for strictly below).
  const std::vector<double> p = softmax({0.0, 1.5, -1.0, 2.0, -1.5});
  const double pc = p[1] + p[3];
  REQUIRE(pc > 0.85);
  std::mt19937_64 rng(1);
  std::discrete_distribution<std::size_t> prop(p.begin(), p.end());
  std::bernoulli_distribution post1(p[1] / pc);
  const std::size_t N = 20000, M = 4;
  double trace[2] = {0.0, 0.0};
  for (bool cv : {false, true}) {
    std::vector<double> sum(5, 0.0), sq(5, 0.0), g(5), mg(M * 5), pg(M * 5);
    std::vector<std::uint8_t> c(M);
    for (std::size_t t = 0; t < N; ++t) {
      for (std::size_t m = 0; m < M; ++m) {
        const std::size_t z = post1(rng) ? 1 : 3, zt = prop(rng);
        c[m] = (zt == 1 || zt == 3) ? 1 : 0;
        put_score(p, z, &mg[m * 5]);
        put_score(p, zt, &pg[m * 5]);
      }
      sd::trice_gradient<double>(c, mg, pg, cv, g);
      for (std::size_t k = 0; k < 5; ++k) {
        sum[k] += g[k];
        sq[k] += g[k] * g[k];
      }
    }
    for (std::size_t k = 0; k < 5; ++k) trace[cv ? 1 : 0] += sq[k] / N - (sum[k] / N) * (sum[k] / N);
  }
  INFO("acceptance " << pc << " trace no CV " << trace[0] << " CV " << trace[1]);
  CHECK(trace[1] < trace[0]);
}

TEST_CASE("validation: bad input throws, nothing changes", "[dist][trice][validation]") {
  std::vector<double> beta(4, 9.0), wm(4, 9.0), wp(4, 9.0), g(3, 9.0);
  const std::vector<double> s4(4, 9.0), s3(3, 9.0);
  const std::vector<std::uint8_t> bad = {1, 2, 0, 1}, one = {1}, none = {};
  CHECK_THROWS_AS(sd::trice_weights<double>(bad, true, beta, wm, wp), invalid_argument);
  CHECK_THROWS_AS(sd::trice_weights<double>(none, false, std::span(beta).first(0), std::span(wm).first(0),
                                            std::span(wp).first(0)),
                  invalid_argument);
  CHECK_THROWS_AS(sd::trice_weights<double>(one, true, std::span(beta).first(1), std::span(wm).first(1),
                                            std::span(wp).first(1)),
                  invalid_argument);  // M = 1 with the CV
  CHECK_THROWS_AS(sd::trice_weights<double>(c1, true, std::span(beta).first(3), wm, wp), size_mismatch);
  CHECK(beta == s4);
  CHECK(wm == s4);
  CHECK(wp == s4);
  // M = 1 without the CV is fine: w_memory = 1 - c, w_proposal = c.
  sd::trice_weights<double>(one, false, std::span(beta).first(1), std::span(wm).first(1), std::span(wp).first(1));
  CHECK((beta[0] == 0.0 && wm[0] == 0.0 && wp[0] == 1.0));

  std::vector<double> nanmem = mem1;
  nanmem[4] = NAN;
  CHECK_THROWS_AS(sd::trice_gradient<double>(c1, nanmem, prop1, true, g), nonfinite_error);
  CHECK_THROWS_AS(sd::trice_gradient<double>(c1, std::span(mem1).first(11), prop1, true, g), size_mismatch);
  CHECK_THROWS_AS(sd::trice_gradient<double>(bad, mem1, prop1, true, g), invalid_argument);
  CHECK_THROWS_AS(sd::trice_gradient<double>(c1, mem1, prop1, true, std::span(g).first(0)), invalid_argument);
  CHECK(g == s3);

  std::vector<std::size_t> memory = {1, 2, 3, 4};
  const std::vector<std::size_t> proposals = {5, 6, 7};
  CHECK_THROWS_AS(sd::trice_accept<std::size_t>(c1, memory, proposals), size_mismatch);
  CHECK_THROWS_AS(sd::trice_accept<std::size_t>(bad, memory, std::vector<std::size_t>{5, 6, 7, 8}),
                  invalid_argument);
  CHECK(memory == std::vector<std::size_t>{1, 2, 3, 4});

  const std::vector<double> w = {0.0, 0.25, 0.0, 0.0}, wq = {0.1, -0.25, 0.1, 0.1};
  std::vector<std::size_t> picked(2, 99);
  std::vector<double> sign(2, 9.0);
  CHECK_THROWS_AS(sd::trice_subsample<double>(w, wq, std::vector<double>{0.2, 1.0}, picked, sign), invalid_argument);
  CHECK_THROWS_AS(sd::trice_subsample<double>(w, std::vector<double>{0.1, NAN, 0.1, 0.1}, std::vector<double>{0.2, 0.3},
                                              picked, sign),
                  nonfinite_error);
  CHECK_THROWS_AS(sd::trice_subsample<double>(w, wq, std::vector<double>{0.2}, picked, sign), size_mismatch);
  CHECK_THROWS_AS(sd::trice_subsampled_gradient<double>(w, wq, std::vector<double>{0.2, 0.3}, mem1,
                                                        std::span(prop1).first(9), picked, g),
                  size_mismatch);
  CHECK(picked == std::vector<std::size_t>(2, 99));
  CHECK(sign == std::vector<double>(2, 9.0));
  CHECK(g == s3);
}
