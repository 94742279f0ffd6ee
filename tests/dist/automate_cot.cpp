// SPDX-License-Identifier: Apache-2.0
// Automate-CoT (shared/design/seeds/variational.md section 7): every number of the worked example
// of section 7.5 (BDPL and RLOO gradients, clipping, first Adam step, the bisection projection,
// the aliased release's shared derivative), the section-9 regression that stochgrad never returns
// the aliased zero gradient, unbiasedness of the RLOO form against enumeration, and validation.
// Tolerances (section 0.3): relative 1e-12 in double, 2e-6 in float; exact zeros absolute 1e-14.
#include <algorithm>
#include <cmath>
#include <cstddef>
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

// Section 7.5: 2 slots, 3 candidates, I = 4.
const std::vector<double> P75 = {0.5, 0.3, 0.2, 0.1, 0.6, 0.3};
const std::vector<std::size_t> draws75 = {0, 1, 2, 1, 0, 0, 1, 2};
const std::vector<double> losses75 = {2.1, 1.4, 2.6, 1.9};
constexpr std::initializer_list<double> G_bdpl = {0.9333333333333337, -0.22222222222222238, -2.0,
                                                 4.000000000000001,  -0.5555555555555557,  -0.22222222222222238};

}  // namespace

TEST_CASE("7.5: BDPL and RLOO gradients", "[dist][automate_cot][worked]") {
  std::vector<double> G(6);
  sd::automate_cot_gradient<double>(P75, 2, draws75, losses75, G);
  check_all(G, G_bdpl);
  sd::automate_cot_gradient<double>(P75, 2, draws75, losses75, G, {.bdpl_derivative = false});
  check_all(G, {0.4666666666666667, -0.1111111111111111, -1.0, 2.0, -0.2777777777777778, -0.1111111111111111});
}

TEST_CASE("7.5: float32 gradient", "[dist][automate_cot][worked]") {
  const std::vector<float> P(P75.begin(), P75.end()), L(losses75.begin(), losses75.end());
  std::vector<float> G(6);
  sd::automate_cot_gradient<float>(P, 2, draws75, L, G);
  check_all(G, G_bdpl, 2e-6);
}

TEST_CASE("7.5: clipping, first Adam step and projection", "[dist][automate_cot][worked]") {
  std::vector<double> G(6);
  sd::automate_cot_gradient<double>(P75, 2, draws75, losses75, G);
  check_rel(sd::clip_grad_norm<double>(G, 3.0, 1e-6), 4.612864459153177);
  check_all(G, {0.6069979765926277, -0.1445233277601495, -1.3007099498413446, 2.6014198996826896,
                -0.36130831940037356, -0.1445233277601495});
  // Adam's first step from zero moments: m_hat = g, v_hat = g^2, so P - lr * g / (|g| + eps).
  std::vector<double> P = P75;
  for (std::size_t k = 0; k < 6; ++k) P[k] -= 1e-3 * G[k] / (std::abs(G[k]) + 1e-8);
  check_all(P, {0.49900000001647454, 0.300999999930807, 0.2009999999923119, 0.09900000000384405,
                0.6009999999723228, 0.300999999930807});
  std::vector<sd::simplex_shift> shifts(2);
  sd::project_simplex_rows<double>(P, 2, shifts);
  check_rel(shifts[0].v, 0.0004873046875160884);
  check_rel(shifts[1].v, 0.0005869140624729715);
  CHECK(shifts[0].iterations == 10);
  CHECK(shifts[1].iterations == 10);
  check_all(P, {0.4985126953289585, 0.30051269524329094, 0.20051269530479582, 0.09841308594137109,
                0.6004130859098498, 0.30041308586833404});
  // A second clip is a no-op (norm now 3 up to eps).
  const std::vector<double> before = G;
  sd::clip_grad_norm<double>(G);
  CHECK(G == before);
}

TEST_CASE("7.4: projection of a row summing below 1 only clamps", "[dist][automate_cot]") {
  std::vector<double> P = {0.2, 0.3, 0.00001};
  std::vector<sd::simplex_shift> s(1);
  sd::project_simplex_rows<double>(P, 1, s);
  CHECK(s[0].iterations == 31);  // |s| stays near 0.5 - v: stops at itr > 30
  CHECK(s[0].v < 1e-9);
  CHECK(P[2] == 1e-4);
  CHECK(std::abs(P[0] - 0.2) < 1e-9);
}

TEST_CASE("7.3 / 9.6: the aliased release gives 0, stochgrad gives BDPL's independent copies", "[dist][automate_cot]") {
  // The release's shared derivative: every sample's flips land on one tensor, starting at -1/P.
  std::vector<double> D(6);
  for (std::size_t k = 0; k < 6; ++k) D[k] = -1.0 / P75[k];
  for (std::size_t q = 0; q < 4; ++q) {
    for (std::size_t i = 0; i < 2; ++i) D[i * 3 + draws75[q * 2 + i]] *= -1.0;
  }
  check_all(D, {-2.0, 3.3333333333333335, 5.0, 10.0, -1.6666666666666667, 3.3333333333333335});
  double centred = 0.0;
  for (double l : losses75) centred += l - 2.0;
  for (double d : D) CHECK(std::abs(centred / 3.0 * d) <= 1e-14);  // G_aliased = 0
  // BDPL's independent copies, sample by sample with the full +-1/P derivative.
  std::vector<double> lit(6, 0.0), G(6);
  for (std::size_t q = 0; q < 4; ++q) {
    sd::categorical_probs::add_bdpl_derivative<double>(P75, std::span(draws75).subspan(q * 2, 2),
                                                       (losses75[q] - 2.0) / 3.0, lit);
  }
  sd::automate_cot_gradient<double>(P75, 2, draws75, losses75, G);
  for (std::size_t k = 0; k < 6; ++k) {
    CHECK(std::abs(G[k] - lit[k]) <= 1e-14);
    CHECK(std::abs(G[k]) > 0.2);  // not the aliased zero
  }
}

TEST_CASE("sampling, argmax and log-density", "[dist][automate_cot]") {
  const std::vector<double> u = {0.1, 0.05, 0.6, 0.2, 0.9, 0.95};
  std::vector<std::size_t> j(6);
  sd::sample_exemplars<double>(P75, 2, u, j);
  CHECK(j == std::vector<std::size_t>{0, 0, 1, 1, 2, 2});
  // Unnormalised row: [1, 1] renormalised, u = 0.49 -> 0, u = 0.51 -> 1.
  const std::vector<double> Q = {1.0, 1.0}, uq = {0.49, 0.51};
  std::vector<std::size_t> jq(2);
  sd::sample_exemplars<double>(Q, 1, uq, jq);
  CHECK(jq == std::vector<std::size_t>{0, 1});
  const std::vector<double> R = {0.2, 0.4, 0.4, 0.7, 0.2, 0.1};
  std::vector<std::size_t> c(2);
  sd::exemplar_argmax<double>(R, 2, c);
  CHECK(c == std::vector<std::size_t>{1, 0});  // first maximum
  const std::vector<std::size_t> pick = {2, 1};
  check_rel(sd::categorical_probs::log_density<double>(P75, pick), std::log(0.2) + std::log(0.6));
}

TEST_CASE("validation: bad input throws, nothing changes", "[dist][automate_cot][validation]") {
  std::vector<double> G(6, 7.0);
  const std::vector<double> sentinel = G;
  auto grad = [&](std::vector<double> P, std::size_t slots, std::vector<std::size_t> d, std::vector<double> L,
                  std::size_t out = 6) {
    sd::automate_cot_gradient<double>(P, slots, d, L, std::span(G).first(out));
  };
  CHECK_THROWS_AS(grad({0.5, 0.3, 0.2, 0.1, 0.0, 0.3}, 2, draws75, losses75), invalid_argument);  // P = 0
  CHECK_THROWS_AS(grad({0.5, 0.3, 0.2, 0.1, NAN, 0.3}, 2, draws75, losses75), invalid_argument);
  CHECK_THROWS_AS(grad(P75, 4, draws75, losses75), invalid_argument);                        // 6 % 4
  CHECK_THROWS_AS(grad(P75, 0, draws75, losses75), invalid_argument);
  CHECK_THROWS_AS(grad(P75, 2, {0, 1}, {2.1}), invalid_argument);                           // I = 1
  CHECK_THROWS_AS(grad(P75, 2, {0, 1, 2, 3, 0, 0, 1, 2}, losses75), invalid_argument);      // index 3 >= n
  CHECK_THROWS_AS(grad(P75, 2, {0, 1, 2}, losses75), size_mismatch);
  CHECK_THROWS_AS(grad(P75, 2, draws75, {2.1, INFINITY, 2.6, 1.9}), nonfinite_error);
  CHECK_THROWS_AS(grad(P75, 2, draws75, losses75, 5), size_mismatch);
  CHECK(G == sentinel);

  std::vector<double> P = {0.5, NAN, 0.2};
  CHECK_THROWS_AS(sd::project_simplex_rows<double>(P, 1), invalid_argument);
  std::vector<double> P2 = {0.5, 0.3, 0.2, 0.9};
  const std::vector<double> P2s = P2;
  CHECK_THROWS_AS(sd::project_simplex_rows<double>(P2, 3), invalid_argument);
  CHECK_THROWS_AS(sd::project_simplex_rows<double>(P2, 2, {}, {.lower = 1.0, .upper = 0.5}), invalid_argument);
  CHECK_THROWS_AS(sd::project_simplex_rows<double>(P2, 2, {}, {.tolerance = 0.0}), invalid_argument);
  std::vector<sd::simplex_shift> s3(3);
  CHECK_THROWS_AS(sd::project_simplex_rows<double>(P2, 2, s3), size_mismatch);
  CHECK(P2 == P2s);

  std::vector<double> g = {1.0, NAN, 5.0};
  CHECK_THROWS_AS(sd::clip_grad_norm<double>(g), nonfinite_error);
  std::vector<double> g2 = {3.0, 4.0};
  CHECK_THROWS_AS(sd::clip_grad_norm<double>(g2, 0.0), invalid_argument);
  CHECK_THROWS_AS(sd::clip_grad_norm<double>(g2, 1.0, -1.0), invalid_argument);
  CHECK(g2 == std::vector<double>{3.0, 4.0});

  std::vector<std::size_t> j(6, 9);
  CHECK_THROWS_AS(sd::sample_exemplars<double>(P75, 2, std::vector<double>{0.1, 1.0, 0.2, 0.3, 0.4, 0.5}, j),
                  invalid_argument);
  CHECK_THROWS_AS(sd::sample_exemplars<double>(P75, 2, std::vector<double>{0.1, 0.2, 0.3}, j), invalid_argument);
  CHECK_THROWS_AS(sd::sample_exemplars<double>(P75, 2, std::vector<double>{0.1, 0.2}, j), size_mismatch);
  std::vector<std::size_t> c(3, 9);
  CHECK_THROWS_AS(sd::exemplar_argmax<double>(P75, 2, c), size_mismatch);
  CHECK(j == std::vector<std::size_t>(6, 9));
  CHECK(c == std::vector<std::size_t>(3, 9));
}

TEST_CASE("9.1: the RLOO form averages to the exact gradient of E[L] (enumeration)", "[dist][automate_cot][statistics]") {
  // 2 slots x 3 candidates: E[L] = sum_{a,b} P0[a] P1[b] L(a, b), dE/dP0[a] = sum_b P1[b] L(a, b),
  // dE/dP1[b] = sum_a P0[a] L(a, b). The direct-probability score e_j / P has mean 1 (a vector of
  // ones per row), not 0, so with the leave-one-out baseline (independent of sample q, mean E[L])
  // the estimator's mean is grad_P E[L] - E[L] * 1: exact in every direction tangent to the
  // simplex (the ones part is the row constant the projection removes).
  // Each step draws I = 4 prompts; N = 20000 steps.
  // Tolerance: 5 standard errors, the standard error estimated from the per-step estimates'
  // sample variance (sqrt(var / N)) per entry.
  const double Ltab[3][3] = {{2.0, 0.5, 1.0}, {3.0, -1.0, 0.0}, {1.5, 2.5, -0.5}};
  std::vector<double> exact(6, 0.0);
  for (std::size_t a = 0; a < 3; ++a) {
    for (std::size_t b = 0; b < 3; ++b) {
      exact[a] += P75[3 + b] * Ltab[a][b];
      exact[3 + b] += P75[a] * Ltab[a][b];
    }
  }
  double EL = 0.0;
  for (std::size_t a = 0; a < 3; ++a) {
    for (std::size_t b = 0; b < 3; ++b) EL += P75[a] * P75[3 + b] * Ltab[a][b];
  }
  for (double& e : exact) e -= EL;
  std::mt19937_64 rng(0);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  const std::size_t N = 20000, I = 4;
  std::vector<double> sum(6, 0.0), sq(6, 0.0), G(6), u(I * 2), L(I);
  std::vector<std::size_t> d(I * 2);
  for (std::size_t t = 0; t < N; ++t) {
    for (double& x : u) x = unif(rng);
    sd::sample_exemplars<double>(P75, 2, u, d);
    for (std::size_t q = 0; q < I; ++q) L[q] = Ltab[d[q * 2]][d[q * 2 + 1]];
    sd::automate_cot_gradient<double>(P75, 2, d, L, G, {.bdpl_derivative = false});
    for (std::size_t k = 0; k < 6; ++k) {
      sum[k] += G[k];
      sq[k] += G[k] * G[k];
    }
  }
  for (std::size_t k = 0; k < 6; ++k) {
    const double mean = sum[k] / N, var = std::max(sq[k] / N - mean * mean, 0.0);
    INFO("entry " << k << " mean " << mean << " exact " << exact[k]);
    CHECK(std::abs(mean - exact[k]) <= 5.0 * std::sqrt(var / N) + 1e-12);  // + rounding, for constant entries
  }
}
