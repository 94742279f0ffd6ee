// SPDX-License-Identifier: Apache-2.0
// M-FAC (design/seeds/optimizers.md section 3): the dynamic inverse-Fisher product and the
// optimizer against the worked numbers of section 3.5 (computed by the spec with numpy and with the
// reference repository's own HInvFastUpMulti / MFAC code), the identities of section 3.3, the dense
// Woodbury oracle, save/resume and bad input.
#include <cmath>
#include <cstring>
#include <span>
#include <sstream>
#include <vector>

#include <stochgrad/bits/optim/mfac.hpp>
#include <stochgrad/bits/stepper/serialize.hpp>

#include "support/alloc_counter.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using vd = std::vector<double>;

namespace {

const std::vector<vd> worked_G = {{0.5, -1.0, 0.3, 0.8, -0.2}, {1.2, 0.4, -0.7, 0.1, 0.9}, {-0.3, 0.6, 1.1, -0.5, 0.2}};
const vd worked_x = {1.0, -2.0, 0.5, 0.3, 1.5};

optim::mfac_window<double> worked_window(double damp) {
  optim::mfac_window<double> w(3, 5, damp);
  for (const vd& g : worked_G) w.update(g);
  return w;
}

// Dense F^{-1} x by Gaussian elimination with partial pivoting (a test oracle independent of
// the Woodbury recursion): F = damp I + (1/m) sum g g^T.
vd dense_solve(const std::vector<vd>& G, double damp, const vd& x) {
  const std::size_t d = x.size(), m = G.size();
  std::vector<vd> A(d, vd(d + 1, 0.0));
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      double s = i == j ? damp : 0.0;
      for (const vd& g : G) s += g[i] * g[j] / static_cast<double>(m);
      A[i][j] = s;
    }
    A[i][d] = x[i];
  }
  for (std::size_t k = 0; k < d; ++k) {
    std::size_t piv = k;
    for (std::size_t i = k + 1; i < d; ++i)
      if (std::abs(A[i][k]) > std::abs(A[piv][k])) piv = i;
    std::swap(A[k], A[piv]);
    for (std::size_t i = k + 1; i < d; ++i) {
      const double l = A[i][k] / A[k][k];
      for (std::size_t j = k; j <= d; ++j) A[i][j] -= l * A[k][j];
    }
  }
  vd r(d);
  for (std::size_t i = d; i-- > 0;) {
    double s = A[i][d];
    for (std::size_t j = i + 1; j < d; ++j) s -= A[i][j] * r[j];
    r[i] = s / A[i][i];
  }
  return r;
}

void check_near(const vd& got, const vd& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i << " got " << got[i] << " want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= rel * std::abs(want[i]) + 1e-15);
  }
}

}  // namespace

TEST_CASE("mfac_window: the section 3.5 product, den, D and B (damp = 0.1)", "[mfac]") {
  const auto w = worked_window(0.1);
  vd out(5);
  w.mul(worked_x, out);
  // Dynamic values (numpy and the official HInvFastUpMulti agree); the spec prints 16-17 digits.
  check_near(out, {-2.1161457489626905, -11.549521541973899, 1.6813844418883148, -6.064333443270103, 11.81499389909203},
             1e-13);
  check_near(out, dense_solve(worked_G, 0.1, worked_x), 1e-13);
  check_near(w.den(), {23.2, 32.047844827586204, 17.31117940579145}, 1e-14);
  const auto& D = w.D();
  check_near({D[0], D[1], D[2], D[4], D[5], D[8]}, {20.2, -1.1, -8.6, 29.047844827586204, -8.007758620689655, 14.31117940579145},
             1e-14);
  CHECK(D[3] == 0.0);
  const auto& B = w.B();
  check_near({B[0], B[3], B[4], B[6], B[7], B[8]}, {10, 0.474137931034483, 10, 3.825368858522415, 2.498688652472731, 10}, 1e-13);
}

TEST_CASE("mfac_window: the ill-conditioned case (damp = 1e-4) loses about 3 digits, as the reference", "[mfac]") {
  const auto w = worked_window(1e-4);
  vd out(5);
  w.mul(worked_x, out);
  check_near(out, {-4427.047475761257, -10517.958582887253, -786.1838549683034, -7382.779383419216, 10788.516912329906}, 1e-11);
  check_near(out, {-4427.047475763644, -10517.958582891395, -786.1838549686449, -7382.779383421509, 10788.516912334924}, 1e-9);
}

TEST_CASE("mfac_window: ring order does not matter; a full ring replaces the oldest row", "[mfac]") {
  // Section 3.3: the product is a sum of rank-one terms, so any ring order gives it. Fill with
  // the three rows, then push two more: the window holds rows {3, 4, 2} of the sequence.
  const std::vector<vd> extra = {{0.2, 0.1, -0.4, 0.9, 0.3}, {-0.6, 0.5, 0.2, 0.1, -1.0}};
  optim::mfac_window<double> w(3, 5, 0.1);
  for (const vd& g : worked_G) w.update(g);
  for (const vd& g : extra) w.update(g);
  CHECK(w.last() == 2);
  vd out(5);
  w.mul(worked_x, out);
  check_near(out, dense_solve({worked_G[2], extra[0], extra[1]}, 0.1, worked_x), 1e-12);
}

TEST_CASE("mfac_window: a partly filled window damps with the zero rows counted in 1/m", "[mfac]") {
  optim::mfac_window<double> w(4, 5, 0.1);
  w.update(worked_G[0]);
  vd out(5);
  w.mul(worked_x, out);
  // F = damp I + g g^T / 4 (the three zero rows still count in 1/m).
  check_near(out, dense_solve({worked_G[0], vd(5, 0.0), vd(5, 0.0), vd(5, 0.0)}, 0.1, worked_x), 1e-13);
}

TEST_CASE("optim::mfac: the section 3.5 optimizer run (3 steps)", "[mfac]") {
  // d = 4, m = 2, lr 0.1, damp 0.1, momentum 0.5, weight decay 0.01 on
  // f = sum(0.5 h theta^2 + c theta).
  const vd h = {1, 3, 0.5, 2}, c = {0.2, -0.1, 0.4, 0};
  std::vector<double> theta = {1, -1, 0.5, 2};
  parameters<double> p;
  p.add(theta);
  optim::mfac<> opt({.lr = 0.1, .damp = 0.1, .ngrads = 2, .momentum = 0.5, .weight_decay = 0.01});
  auto s = opt.init(p);
  const std::vector<vd> want = {{0.995667062062174, -0.988863275217654, 0.4976544840088628, 1.9856046194131731},
                                {0.9899325891085841, -0.9797565019545018, 0.49425373279969737, 1.970193031325293},
                                {0.983912831084526, -0.9703529559284383, 0.4904880885450953, 1.9550362473966583}};
  for (std::size_t k = 0; k < 3; ++k) {
    vd grad(4);
    for (std::size_t i = 0; i < 4; ++i) grad[i] = h[i] * theta[i] + c[i];
    const std::span<const double> gs(grad);
    opt.update(p, s, dense_gradient<double>(gs), {.step = k});
    // The spec's step-1 u is after momentum: v = 0.5 * 0 + 0.5 * F^{-1} g.
    if (k == 0) check_near(s.momentum, {0.043329379378259425, -0.11136724782345908, 0.023455159911371926, 0.1439538058682679}, 1e-13);
    INFO("step " << k + 1);
    check_near(theta, want[k], 1e-13);
  }
  CHECK(s.steps[0] == 3);
}

TEST_CASE("optim::mfac: float parameters track the official float32 run", "[mfac]") {
  const vd h = {1, 3, 0.5, 2}, c = {0.2, -0.1, 0.4, 0};
  std::vector<float> theta = {1, -1, 0.5f, 2};
  parameters<float> p;
  p.add(theta);
  optim::mfac<> opt({.lr = 0.1, .damp = 0.1, .ngrads = 2, .momentum = 0.5, .weight_decay = 0.01});
  auto s = opt.init(p);
  for (std::size_t k = 0; k < 3; ++k) {
    std::vector<float> grad(4);
    for (std::size_t i = 0; i < 4; ++i) grad[i] = static_cast<float>(h[i] * theta[i] + c[i]);
    opt.update(p, s, dense_gradient<float>(std::span<const float>(grad)), {.step = k});
  }
  // The official run keeps float32 buffers; ours keeps G in float and the m x m work in double.
  // Three steps of float rounding on O(1) values: a few float ulps (2^-23 = 1.2e-7 relative).
  const vd official = {0.9839127063751221, -0.9703528881072998, 0.49048808217048645, 1.9550360441207886};
  for (std::size_t i = 0; i < 4; ++i) CHECK(std::abs(theta[i] - official[i]) <= 1e-6 * std::abs(official[i]));
}

TEST_CASE("optim::mfac: save and resume give the same bits", "[mfac]") {
  auto run = [](bool resume) {
    std::vector<double> theta = {1, -1, 0.5, 2, 0.3};
    parameters<double> p;
    p.add(theta);
    optim::mfac<> opt({.lr = 0.05, .damp = 0.1, .ngrads = 3, .momentum = 0.5, .weight_decay = 0.01});
    auto s = opt.init(p);
    for (std::size_t k = 0; k < 6; ++k) {
      if (resume && k == 3) {
        state_writer w;
        s.serialize(w);
        std::stringstream bytes;
        w.finish(bytes);
        auto fresh = opt.init(p);
        state_reader r(bytes);
        fresh.serialize(r);
        r.finish();
        opt.check_state(fresh, p);
        s = std::move(fresh);
      }
      vd grad(5);
      for (std::size_t i = 0; i < 5; ++i) grad[i] = (1.0 + static_cast<double>(i)) * theta[i] - 0.1;
      opt.update(p, s, dense_gradient<double>(std::span<const double>(grad)), {.step = k});
    }
    return theta;
  };
  const vd a = run(false), b = run(true);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

TEST_CASE("optim::mfac: bad input is refused before anything changes", "[mfac]") {
  CHECK_THROWS_AS(optim::mfac<>({.lr = 0.0}), invalid_argument);
  CHECK_THROWS_AS(optim::mfac<>({.damp = -1.0}), invalid_argument);
  CHECK_THROWS_AS(optim::mfac<>({.ngrads = 0}), invalid_argument);
  CHECK_THROWS_AS(optim::mfac<>({.momentum = 1.0}), invalid_argument);
  CHECK_THROWS_AS(optim::mfac_window<double>(2, 0, 0.1), invalid_argument);

  std::vector<double> theta = {1, -1, 0.5};
  parameters<double> p;
  p.add(theta);
  optim::mfac<> opt({.lr = 0.1, .damp = 0.1, .ngrads = 2, .momentum = 0.5});
  auto s = opt.init(p);
  vd good = {0.1, 0.2, 0.3};
  opt.update(p, s, dense_gradient<double>(std::span<const double>(good)), {});
  const vd theta0 = theta, v0 = s.momentum;
  const std::size_t last0 = s.window.last();
  vd bad = {0.1, std::nan(""), 0.3};
  CHECK_THROWS_AS(opt.update(p, s, dense_gradient<double>(std::span<const double>(bad)), {.step = 1}), nonfinite_error);
  vd shortg = {0.1, 0.2};
  CHECK_THROWS_AS(opt.update(p, s, dense_gradient<double>(std::span<const double>(shortg)), {.step = 1}), size_mismatch);
  CHECK(theta == theta0);
  CHECK(s.momentum == v0);
  CHECK(s.window.last() == last0);
  CHECK(s.steps[0] == 1);
  // A state of another window size is refused.
  optim::mfac<> other({.lr = 0.1, .damp = 0.1, .ngrads = 3, .momentum = 0.5});
  CHECK_THROWS_AS(other.update(p, s, dense_gradient<double>(std::span<const double>(good)), {}), state_error);
  CHECK(theta == theta0);
}

TEST_CASE("optim::mfac: no heap allocation per step once the state exists", "[mfac]") {
  // The window, its m x m workspace and the flat gradient/direction buffers are sized by init.
  std::vector<double> theta(300, 0.5);
  std::vector<double> grad(300);
  parameters<double> p;
  p.add(theta);
  optim::mfac<> opt({.lr = 0.01, .damp = 0.1, .ngrads = 8, .momentum = 0.9, .weight_decay = 0.01});
  auto s = opt.init(p);
  long during = 0;
  for (std::size_t k = 0; k < 12; ++k) {  // past a full ring
    for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = theta[i] * static_cast<double>(1 + i % 7) - 0.01;
    const dense_gradient<double> g{std::span<const double>(grad)};
    during += alloc_counter::allocations_of([&] { opt.update(p, s, g, {.step = k}); });
  }
  CHECK(during == 0);
}
