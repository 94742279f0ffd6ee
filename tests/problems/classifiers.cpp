// SPDX-License-Identifier: Apache-2.0
// Logistic regression (breast cancer) and the MLP classifier (digits): exact values at zero,
// gradients against central finite differences, float against double, training by gradient
// descent reaches a stated accuracy, bad options.
#include "support/catch.hpp"

#include <stochgrad/bits/problems/problems.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace sp = stochgrad::problems;

namespace {

const std::string data_dir = STOCHGRAD_DATA_DIR;
constexpr double u64 = std::numeric_limits<double>::epsilon() / 2;

template <stochgrad::real_scalar T>
sp::train_test<T> cancer() {
  return sp::standardized_split(sp::load_breast_cancer<T>(data_dir + "/breast_cancer.csv"), 0.2, 1);
}
template <stochgrad::real_scalar T>
sp::train_test<T> digits() {
  return sp::standardized_split(sp::load_digits<T>(data_dir + "/digits.csv"), 0.2, 1);
}

// The first `rows` rows of a dataset.
template <class T>
sp::dataset<T> head(const sp::dataset<T>& d, std::size_t rows) {
  sp::dataset<T> h = d;
  h.rows = rows;
  h.x.resize(rows * d.features);
  h.y.resize(rows);
  return h;
}

// Central difference of p at x along coordinate k with step h.
template <class P>
double cd(const P& p, std::vector<double>& x, std::size_t k, double h) {
  const double xk = x[k];
  x[k] = xk + h;
  const double fp = p.value(std::span<const double>(x));
  x[k] = xk - h;
  const double fm = p.value(std::span<const double>(x));
  x[k] = xk;
  return (fp - fm) / (2 * h);
}

// Checks g[k] against the central difference for every k in `coords`. Tolerance, derived:
// - truncation of the central difference is (h^2/6) f'''(xi); it is estimated from the data by
//   Richardson: FD(2h) - FD(h) = (3 h^2 / 6) f''' + O(h^4), so trunc(h) ~ |FD(2h) - FD(h)| / 3;
// - rounding: f is a sum of `terms` double operations, relative error <= terms * u, so the
//   difference quotient is off by at most terms * u * |f| / h.
// We allow 10 times (truncation estimate + rounding bound) plus 1e-12 absolute.
template <class P>
void check_gradient(const P& p, std::vector<double> x, const std::vector<std::size_t>& coords, double terms) {
  std::vector<double> g(p.dimension());
  const double f = p.value_and_gradient(std::span<const double>(x), std::span<double>(g));
  REQUIRE(f == p.value(std::span<const double>(x)));
  const double h = 1e-4;
  for (std::size_t k : coords) {
    const double fd1 = cd(p, x, k, h);
    const double fd2 = cd(p, x, k, 2 * h);
    const double bound = 10 * (std::abs(fd2 - fd1) / 3 + terms * u64 * std::abs(f) / h) + 1e-12;
    INFO("k = " << k << " g = " << g[k] << " fd = " << fd1 << " bound = " << bound);
    REQUIRE(std::abs(g[k] - fd1) <= bound);
  }
}

template <class T>
double relative_error(const std::vector<T>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("logistic regression: loss log 2 at zero, accuracy of the constant prediction", "[problems][logistic]") {
  auto s = cancer<double>();
  const sp::logistic_regression<double> lr(s.train, s.test, {.l2 = 1e-3});
  REQUIRE(lr.dimension() == 31);
  std::vector<double> x(31, 1.0);
  lr.initial_point(std::span<double>(x));
  for (double v : x) REQUIRE(v == 0.0);
  // z = 0 for every row: softplus(0) - y * 0 = log 2 exactly per row; mean of equal terms.
  REQUIRE_THAT(lr.value(std::span<const double>(x)), Catch::Matchers::WithinRel(std::log(2.0), 4 * u64 * 455));
  REQUIRE_THAT(lr.test_loss(std::span<const double>(x)), Catch::Matchers::WithinRel(std::log(2.0), 4 * u64 * 114));
  // z = 0 predicts class 0 (z > 0 predicts 1): accuracy = share of class 0.
  const auto ct = s.test.class_counts();
  REQUIRE(lr.test_accuracy(std::span<const double>(x)) == static_cast<double>(ct[0]) / 114.0);
}

TEST_CASE("logistic regression: gradient equals central finite differences", "[problems][logistic]") {
  auto s = cancer<double>();
  const double l2 = GENERATE(0.0, 0.1);
  const sp::logistic_regression<double> lr(s.train, s.test, {.l2 = l2});
  std::vector<double> x(31);
  for (std::size_t i = 0; i < 31; ++i) x[i] = 0.3 * static_cast<double>(stochgrad::noise_at<stochgrad::gaussian>({5, 0, 0}, i));
  std::vector<std::size_t> all(31);
  for (std::size_t i = 0; i < 31; ++i) all[i] = i;
  check_gradient(lr, x, all, 455.0 * 62.0);  // rows x (2 per feature) operations
}

TEST_CASE("logistic regression: float agrees with double", "[problems][logistic]") {
  auto sd = cancer<double>();
  auto sf = cancer<float>();
  const sp::logistic_regression<double> ld(sd.train, sd.test);
  const sp::logistic_regression<float> lf(sf.train, sf.test);
  std::vector<float> xf(31);
  std::vector<double> xd(31);
  for (std::size_t i = 0; i < 31; ++i) {
    xf[i] = 0.3f * stochgrad::noise_at<stochgrad::gaussian>({6, 0, 0}, i);
    xd[i] = static_cast<double>(xf[i]);
  }
  std::vector<float> gf(31);
  std::vector<double> gd(31);
  // The float problem differs only by the float rounding of the standardised data (relative
  // 2^-24 per entry); everything else is in double. Loss and gradient therefore agree to a
  // few u_f times the condition of the sums: allow 1e-5 relative.
  REQUIRE_THAT(lf.value_and_gradient(std::span<const float>(xf), std::span<float>(gf)),
               Catch::Matchers::WithinRel(ld.value_and_gradient(std::span<const double>(xd), std::span<double>(gd)), 1e-5));
  REQUIRE(relative_error(gf, gd) <= 1e-5);
}

TEST_CASE("logistic regression: gradient descent reaches 95% test accuracy", "[problems][logistic]") {
  // Linear models reach 95-98% test accuracy on Wisconsin diagnostic data (Street, Wolberg,
  // Mangasarian 1993 report ~97% with a linear separator). Step size: the log-loss Hessian is at
  // most (1/4) A^T A / n + l2 I; standardised features have A^T A / n = correlation matrix
  // (plus the bias), whose largest eigenvalue is < 31, so L < 7.8 and lr = 0.25 < 2/L is stable.
  auto s = cancer<double>();
  const sp::logistic_regression<double> lr(s.train, s.test, {.l2 = 1e-3});
  std::vector<double> x(31, 0.0), g(31);
  double f_prev = lr.value(std::span<const double>(x));
  for (int step = 0; step < 1000; ++step) {
    const double f = lr.value_and_gradient(std::span<const double>(x), std::span<double>(g));
    REQUIRE(f <= f_prev + 1e-15);  // descent with lr < 2/L never increases the loss
    f_prev = f;
    for (std::size_t i = 0; i < 31; ++i) x[i] -= 0.25 * g[i];
  }
  INFO("train loss " << f_prev << " test accuracy " << lr.test_accuracy(std::span<const double>(x)));
  REQUIRE(lr.test_accuracy(std::span<const double>(x)) >= 0.95);
  REQUIRE(lr.train_accuracy(std::span<const double>(x)) >= 0.95);
}

TEST_CASE("MLP: layout, Glorot initial point, loss log(10) at zero", "[problems][mlp]") {
  auto s = digits<double>();
  const sp::mlp_classifier<double> m(s.train, s.test);
  const auto& l = m.layout();
  REQUIRE(m.dimension() == 64 * 32 + 32 + 32 * 10 + 10);
  REQUIRE(l.b1 == 2048);
  REQUIRE(l.w2 == 2080);
  REQUIRE(l.b2 == 2400);
  std::vector<double> x(m.dimension()), y(m.dimension());
  m.initial_point(std::span<double>(x), 1);
  m.initial_point(std::span<double>(y), 1);
  REQUIRE(x == y);
  m.initial_point(std::span<double>(y), 2);
  REQUIRE(x != y);
  const double a1 = std::sqrt(6.0 / 96.0), a2 = std::sqrt(6.0 / 42.0);
  for (std::size_t k = 0; k < 2048; ++k) REQUIRE(std::abs(x[k]) < a1);
  for (std::size_t k = 2080; k < 2400; ++k) REQUIRE(std::abs(x[k]) < a2);
  for (std::size_t k = 2048; k < 2080; ++k) REQUIRE(x[k] == 0.0);
  std::vector<double> zero(m.dimension(), 0.0);
  // Zero weights: all logits 0, loss = log 10 per row exactly.
  REQUIRE_THAT(m.value(std::span<const double>(zero)), Catch::Matchers::WithinRel(std::log(10.0), 1e-13));
}

TEST_CASE("MLP: backprop gradient equals central finite differences", "[problems][mlp]") {
  auto s = digits<double>();
  const auto act = GENERATE(sp::activation::tanh, sp::activation::relu);
  const double l2 = GENERATE(0.0, 0.01);
  // 60 training rows keep the 2 x 3 evaluations per coordinate cheap.
  const sp::mlp_classifier<double> m(head(s.train, 60), s.test, {.hidden = 32, .act = act, .l2 = l2});
  std::vector<double> x(m.dimension());
  m.initial_point(std::span<double>(x), 3);
  for (std::size_t k = 2048; k < 2080; ++k) x[k] = 0.1 * std::sin(static_cast<double>(k));  // non-zero biases
  for (std::size_t k = 2400; k < 2410; ++k) x[k] = 0.1 * std::cos(static_cast<double>(k));
  std::vector<std::size_t> coords;
  for (std::size_t k = 0; k < m.dimension(); k += 13) coords.push_back(k);  // every tensor, many rows/cols
  for (std::size_t k = 2048; k < 2080; ++k) coords.push_back(k);            // all of b1
  for (std::size_t k = 2400; k < 2410; ++k) coords.push_back(k);            // all of b2
  check_gradient(m, x, coords, 60.0 * (64 + 32 + 10) * 2);
}

TEST_CASE("MLP: float agrees with double", "[problems][mlp]") {
  auto sd = digits<double>();
  auto sf = digits<float>();
  const sp::mlp_classifier<double> md(sd.train, sd.test);
  const sp::mlp_classifier<float> mf(sf.train, sf.test);
  std::vector<double> xd(md.dimension());
  md.initial_point(std::span<double>(xd), 4);
  std::vector<float> xf(xd.begin(), xd.end());
  for (std::size_t i = 0; i < xd.size(); ++i) xd[i] = static_cast<double>(xf[i]);
  std::vector<float> gf(xf.size());
  std::vector<double> gd(xd.size());
  // Float: products accumulate over at most 1437 rows in float (relative <= 1437 u_f = 8.6e-5
  // worst case per dot product) through three chained products; allow 1e-3 relative in norm.
  const double ff = mf.value_and_gradient(std::span<const float>(xf), std::span<float>(gf));
  const double fdv = md.value_and_gradient(std::span<const double>(xd), std::span<double>(gd));
  REQUIRE_THAT(ff, Catch::Matchers::WithinRel(fdv, 1e-4));
  REQUIRE(relative_error(gf, gd) <= 1e-3);
  // Predictions agree except possibly for rows whose two largest logits are within rounding.
  REQUIRE(std::abs(mf.test_accuracy(std::span<const float>(xf)) - md.test_accuracy(std::span<const double>(xd))) <=
          2.0 / 359.0);
}

TEST_CASE("MLP: full-batch gradient descent learns the digits", "[problems][mlp]") {
  // A 64-32-10 network separates the digits well: > 90% test accuracy is the usual outcome of
  // a few hundred full-batch steps (a linear softmax model alone reaches ~95% on this data).
  auto s = digits<float>();
  const sp::mlp_classifier<float> m(s.train, s.test);
  std::vector<float> x(m.dimension()), g(m.dimension());
  m.initial_point(std::span<float>(x), 1);
  const double acc0 = m.test_accuracy(std::span<const float>(x));
  double f_prev = m.value(std::span<const float>(x));
  const double f0 = f_prev;
  for (int step = 0; step < 300; ++step) {
    f_prev = m.value_and_gradient(std::span<const float>(x), std::span<float>(g));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] -= 0.5f * g[i];
  }
  const double acc = m.test_accuracy(std::span<const float>(x));
  INFO("loss " << f0 << " -> " << f_prev << ", test accuracy " << acc0 << " -> " << acc);
  REQUIRE(f_prev < 0.5 * f0);
  REQUIRE(acc >= 0.90);
  REQUIRE(m.train_accuracy(std::span<const float>(x)) >= 0.90);
}

TEST_CASE("classifiers: bad options are rejected", "[problems][logistic][mlp]") {
  auto c = cancer<double>();
  auto d = digits<double>();
  REQUIRE_THROWS_AS(sp::logistic_regression<double>(c.train, c.test, {.l2 = -1.0}), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::logistic_regression<double>(d.train, d.test), stochgrad::invalid_argument);  // 10 classes
  auto narrow = c.test;
  narrow.features = 29;
  narrow.x.resize(narrow.rows * 29);
  REQUIRE_THROWS_AS(sp::logistic_regression<double>(c.train, narrow), stochgrad::size_mismatch);
  REQUIRE_THROWS_AS(sp::mlp_classifier<double>(d.train, d.test, {.hidden = 0}), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::mlp_classifier<double>(d.train, d.test, {.l2 = std::nan("")}), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::mlp_classifier<double>(sp::dataset<double>{}, d.test), stochgrad::invalid_argument);
  const sp::mlp_classifier<double> m(d.train, d.test);
  std::vector<double> x(5), g(m.dimension());
  REQUIRE_THROWS_AS(m.value(std::span<const double>(x)), stochgrad::size_mismatch);
  REQUIRE_THROWS_AS(m.test_accuracy(std::span<const double>(x)), stochgrad::size_mismatch);
  STATIC_REQUIRE(sp::differentiable_problem<sp::mlp_classifier<float>>);
  STATIC_REQUIRE(sp::differentiable_problem<sp::logistic_regression<double>>);
}

TEST_CASE("MLP: results do not depend on the alignment of the caller's buffers", "[problems][mlp]") {
  auto s = digits<float>();
  const sp::mlp_classifier<float> m(head(s.train, 100), s.test);
  const std::size_t d = m.dimension();
  std::vector<float> x0(d), buf(d + 16), gbuf(d + 16), ref_g;
  m.initial_point(std::span<float>(x0), 5);
  double ref_f = 0.0;
  for (std::size_t off = 0; off < 16; ++off) {
    std::copy(x0.begin(), x0.end(), buf.begin() + static_cast<std::ptrdiff_t>(off));
    const std::span<const float> x(buf.data() + off, d);
    const std::span<float> g(gbuf.data() + (15 - off), d);
    const double f = m.value_and_gradient(x, g);
    if (off == 0) {
      ref_f = f;
      ref_g.assign(g.begin(), g.end());
    }
    REQUIRE(f == ref_f);
    REQUIRE(std::equal(g.begin(), g.end(), ref_g.begin()));
  }
}
