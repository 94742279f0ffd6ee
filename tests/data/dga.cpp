// SPDX-License-Identifier: Apache-2.0
// DGA (data::domain_mixture, alignment, adam_diag; design/seeds/data.md section 3): the worked
// examples of section 3.3 (plain and Adam-preconditioned alignments, both step settings), the
// overflow and underflow guards, bit-identical save/resume (own format and inside a larger
// archive), float alignments and thread-count independence, a small mixture that finds the
// aligned domain, and refusal of bad input with nothing changed.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/bits/data/data.hpp>
#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/stepper/serialize.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::data;

namespace {

void require_close(std::span<const double> got, const std::vector<double>& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    REQUIRE_THAT(got[i], Catch::Matchers::WithinRel(want[i], rel));
  }
}

// Section 3.3.
const std::vector<double> alpha0 = {0.5, 0.3, 0.2};
const std::vector<std::vector<double>> g_dom = {{0.2, -0.1, 0.4, 0}, {-0.3, 0.5, 0.1, 0.2}, {0.1, 0.1, -0.2, 0.3}};
const std::vector<double> g_spe = {0.25, -0.05, 0.3, 0.1};
const std::vector<double> v_hat = {4e-2, 1e-2, 9e-2, 2.5e-3};

std::vector<double> worked_alignments(const adam_diag<double>* pre) {
  std::vector<double> w(4, 0.0);
  parameters<double> p(w);
  const dense_gradient<double> spe{std::span<const double>(g_spe)};
  std::vector<double> W;
  for (const auto& g : g_dom) {
    const dense_gradient<double> gi{std::span<const double>(g)};
    W.push_back(pre ? alignment(p, gi, spe, *pre) : alignment(p, gi, spe));
  }
  return W;
}

std::string save_to_string(const domain_mixture& m) {
  std::ostringstream os;
  m.save(os);
  return os.str();
}

}  // namespace

TEST_CASE("DGA worked examples of section 3.3", "[data][dga]") {
  const auto W = worked_alignments(nullptr);
  require_close(W, {0.175, -0.05, -0.009999999999999995}, 1e-14);

  domain_mixture a(alpha0, {.eta = 1.0, .beta = 0.0});
  a.update(W);
  require_close(a.weights(), {0.5520130288722481, 0.264474813912587, 0.183512157215165}, 1e-14);
  REQUIRE(a.updates() == 1);

  domain_mixture hat(alpha0, {.eta = 5.0, .beta = 0.0});
  hat.update(W);
  require_close(hat.weights(), {0.7388776481380418, 0.14392707092636986, 0.11719528093558841}, 1e-14);
  domain_mixture ema(alpha0, {.eta = 5.0, .beta = 0.5});
  ema.update(W);
  require_close(ema.weights(), {0.619438824069021, 0.22196353546318492, 0.1585976404677942}, 1e-14);

  // adam_diag: v_hat given directly (beta2 = 0: no bias correction, v_hat = v exactly), and
  // through a realistic beta2 with the moment stored un-corrected (v = v_hat (1 - beta2^t)).
  const std::vector<double> Wa = {0.6999999691666683, -0.12500003958332057, 0.47499988541669014};
  optim::adam_state<double> st;
  st.steps = {1};
  st.exp_avg = {std::vector<double>(4, 0.0)};
  st.exp_avg_sq = {v_hat};
  const adam_diag<double> pre0(st, 0.0, 1e-8);
  require_close(worked_alignments(&pre0), Wa, 1e-14);
  optim::adam_state<double> st10 = st;
  st10.steps = {10};
  const double bc2 = 1.0 - std::pow(0.999, 10.0);
  for (double& x : st10.exp_avg_sq[0]) x *= bc2;
  const adam_diag<double> pre10(st10, 0.999, 1e-8);
  const auto W10 = worked_alignments(&pre10);
  require_close(W10, Wa, 1e-13);
  domain_mixture ad(alpha0, {.eta = 1.0, .beta = 0.0});
  ad.update(W10);
  require_close(ad.weights(), {0.6319724517616351, 0.16617146412749087, 0.2018560841108741}, 1e-13);

  // The weights always sum to 1 and reset() returns to alpha0.
  double sum = 0.0;
  for (double x : ema.weights()) sum += x;
  REQUIRE_THAT(sum, Catch::Matchers::WithinAbs(1.0, 1e-15));
  ema.reset();
  REQUIRE(std::vector<double>(ema.weights().begin(), ema.weights().end()) == alpha0);
  REQUIRE(ema.updates() == 0);
}

TEST_CASE("domain_mixture: natural sizes are normalised; uniform constructor; due()", "[data][dga]") {
  const std::vector<double> sizes = {200.0, 100.0, 100.0};
  const domain_mixture m(sizes);
  require_close(m.weights(), {0.5, 0.25, 0.25}, 1e-16);
  const domain_mixture u(4, {.period = 3});
  require_close(u.weights(), {0.25, 0.25, 0.25, 0.25}, 1e-16);
  REQUIRE(u.due(0));
  REQUIRE(!u.due(1));
  REQUIRE(!u.due(2));
  REQUIRE(u.due(3));
}

TEST_CASE("domain_mixture: log-space step does not overflow; the floor keeps weights positive", "[data][dga]") {
  domain_mixture m(3, {.eta = 1.0});
  // exp(1e5) overflows; the log-space step does not.
  m.update(std::vector<double>{1e5, 0.0, 0.0});
  const auto w = m.weights();
  REQUIRE(w[0] == 1.0);  // 1 - 2e-300 rounds to 1
  REQUIRE(w[1] == 1e-300);
  REQUIRE(w[2] == 1e-300);
  // The dominated domains can still come back.
  for (int i = 0; i < 3; ++i) m.update(std::vector<double>{0.0, 400.0, 0.0});
  REQUIRE(m.weights()[1] > 0.99);
  // eta W overflowing to infinity is refused, nothing changed.
  const std::vector<double> before(m.weights().begin(), m.weights().end());
  domain_mixture big(3, {.eta = 10.0});
  REQUIRE_THROWS_AS(big.update(std::vector<double>{1e308, 0.0, 0.0}), nonfinite_error);
  require_close(big.weights(), {1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-16);
  REQUIRE(big.updates() == 0);
}

TEST_CASE("domain_mixture: save/resume is bit-identical", "[data][dga]") {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<std::vector<double>> ws(12, std::vector<double>(5));
  for (auto& w : ws)
    for (double& x : w) x = nd(rng);
  const domain_mixture_options o{.eta = 0.7, .beta = 0.3, .period = 2};
  const std::vector<double> a0 = {1, 2, 3, 4, 5};
  domain_mixture ref(a0, o);
  for (const auto& w : ws) ref.update(w);

  domain_mixture first(a0, o);
  for (std::size_t i = 0; i < 5; ++i) first.update(ws[i]);
  const std::string bytes = save_to_string(first);
  domain_mixture resumed(a0, o);
  resumed.update(ws[0]);  // some other history, overwritten by load
  std::istringstream is(bytes);
  resumed.load(is);
  REQUIRE(resumed.updates() == 5);
  for (std::size_t i = 5; i < ws.size(); ++i) resumed.update(ws[i]);
  REQUIRE(resumed.updates() == ref.updates());
  for (std::size_t i = 0; i < 5; ++i) REQUIRE(resumed.weights()[i] == ref.weights()[i]);
  REQUIRE(save_to_string(resumed) == save_to_string(ref));

  SECTION("inside a larger archive") {
    state_writer w;
    std::uint64_t model_step = 77;
    w.field("outer.step", model_step);
    first.serialize(w);
    std::ostringstream os;
    w.finish(os);
    domain_mixture again(a0, o);
    std::istringstream in(os.str());
    state_reader r(in);
    std::uint64_t got_step = 0;
    r.field("outer.step", got_step);
    again.serialize(r);
    r.finish();
    REQUIRE(got_step == 77);
    REQUIRE(save_to_string(again) == bytes);
  }

  SECTION("refusals leave the mixture unchanged") {
    domain_mixture other(a0, {.eta = 0.7, .beta = 0.4, .period = 2});  // another beta
    const std::string before = save_to_string(other);
    std::istringstream i1(bytes);
    REQUIRE_THROWS_AS(other.load(i1), state_error);
    REQUIRE(save_to_string(other) == before);
    domain_mixture four(4, o);  // another number of domains
    const std::string before4 = save_to_string(four);
    std::istringstream i2(bytes);
    REQUIRE_THROWS_AS(four.load(i2), state_error);
    REQUIRE(save_to_string(four) == before4);
    std::string corrupt = bytes;
    corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x5a);
    domain_mixture m(a0, o);
    const std::string before_m = save_to_string(m);
    std::istringstream i3(corrupt);
    REQUIRE_THROWS_AS(m.load(i3), state_error);
    std::istringstream i4(bytes.substr(0, bytes.size() - 9));
    REQUIRE_THROWS_AS(m.load(i4), state_error);
    REQUIRE(save_to_string(m) == before_m);
  }
}

TEST_CASE("alignment: float parameters, several tensors, thread-count independence", "[data][dga]") {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n0 = 300000, n1 = 1001;
  std::vector<float> w0(n0), w1(n1), a0(n0), a1(n1), b0(n0), b1(n1), v0(n0), v1(n1);
  for (auto* v : {&a0, &a1, &b0, &b1})
    for (auto& x : *v) x = static_cast<float>(nd(rng));
  for (auto* v : {&v0, &v1})
    for (auto& x : *v) x = static_cast<float>(1e-2 * std::abs(nd(rng)));
  parameters<float> p;
  p.add(w0).add(w1);
  const std::span<const float> as[2] = {a0, a1}, bs[2] = {b0, b1};
  const dense_gradient<float> ga{std::span<const std::span<const float>>(as)},
      gb{std::span<const std::span<const float>>(bs)};
  optim::adam_state<float> st;
  st.steps = {4};
  st.exp_avg = {std::vector<float>(n0), std::vector<float>(n1)};
  st.exp_avg_sq = {v0, v1};
  const adam_diag<float> pre(st);
  const double plain = alignment(p, ga, gb), precond = alignment(p, ga, gb, pre);
  // Double references.
  long double rp = 0, rq = 0;
  const double ib = 1.0 / std::sqrt(1.0 - std::pow(0.999, 4.0));
  for (std::size_t t = 0; t < 2; ++t) {
    const auto& a = t ? a1 : a0;
    const auto& b = t ? b1 : b0;
    const auto& v = t ? v1 : v0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double prod = static_cast<double>(a[i]) * b[i];
      rp += prod;
      rq += prod / (std::sqrt(static_cast<double>(v[i])) * ib + 1e-8);
    }
  }
  // Float products (relative 2^-24 each) summed in double: |error| <= ~1e-7 sum |a b|.
  REQUIRE(std::abs(plain - static_cast<double>(rp)) < 1e-7 * static_cast<double>(n0 + n1) * 1.0);
  REQUIRE_THAT(precond, Catch::Matchers::WithinRel(static_cast<double>(rq), 1e-4));
  for (unsigned threads : {2u, 3u}) {
    thread_pool pool(threads);
    REQUIRE(alignment(p, ga, gb, executor(pool)) == plain);
    REQUIRE(alignment(p, ga, gb, pre, executor(pool)) == precond);
  }
}

TEST_CASE("domain_mixture: the mixture moves to the domain aligned with the specific set", "[data][dga]") {
  // Three domains with quadratic losses 0.5 |x - c_i|^2; the specific set's optimum is near c_0.
  // Model steps use the alpha-weighted gradient; DGA updates every step.
  const std::vector<std::vector<double>> c = {{1, 0}, {-1, 0.5}, {0, -1}};
  const std::vector<double> c_spe = {1.2, 0.1};
  std::vector<double> x = {0, 0};
  parameters<double> p(x);
  domain_mixture mix(3, {.eta = 2.0, .beta = 0.2});
  for (int step = 0; step < 200; ++step) {
    std::vector<std::vector<double>> g(3, std::vector<double>(2));
    std::vector<double> gs(2);
    for (std::size_t d = 0; d < 2; ++d) {
      for (std::size_t i = 0; i < 3; ++i) g[i][d] = x[d] - c[i][d];
      gs[d] = x[d] - c_spe[d];
    }
    std::vector<double> W(3);
    const dense_gradient<double> spe{std::span<const double>(gs)};
    for (std::size_t i = 0; i < 3; ++i) W[i] = alignment(p, dense_gradient<double>(std::span<const double>(g[i])), spe);
    mix.update(W);
    for (std::size_t d = 0; d < 2; ++d) {
      double gm = 0;
      for (std::size_t i = 0; i < 3; ++i) gm += mix.weights()[i] * g[i][d];
      x[d] -= 0.1 * gm;
    }
  }
  REQUIRE(mix.weights()[0] > 0.9);
}

TEST_CASE("DGA: bad input is refused with nothing changed", "[data][dga]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_AS(domain_mixture(std::vector<double>{}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(std::size_t{0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(std::vector<double>{1.0, 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(std::vector<double>{1.0, -1.0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(std::vector<double>{1.0, nan}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.eta = 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.eta = nan}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.beta = 1.0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.beta = -0.1}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.period = 0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.floor = 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(domain_mixture(2, {.floor = 0.6}), invalid_argument);

  domain_mixture m(alpha0, {.eta = 1.0});
  m.update(worked_alignments(nullptr));
  const std::vector<double> before(m.weights().begin(), m.weights().end());
  REQUIRE_THROWS_AS(m.update(std::vector<double>{0.1, 0.2}), size_mismatch);
  REQUIRE_THROWS_AS(m.update(std::vector<double>{0.1, nan, 0.2}), nonfinite_error);
  REQUIRE_THROWS_AS(m.update(std::vector<double>{0.1, std::numeric_limits<double>::infinity(), 0.2}), nonfinite_error);
  REQUIRE(std::vector<double>(m.weights().begin(), m.weights().end()) == before);
  REQUIRE(m.updates() == 1);

  // Alignments: sources that do not fit; an Adam state without steps or of another shape.
  std::vector<double> w(4, 0.0);
  parameters<double> p(w);
  const dense_gradient<double> spe{std::span<const double>(g_spe)};
  const std::vector<double> g3 = {1, 2, 3};
  REQUIRE_THROWS_AS(alignment(p, dense_gradient<double>(std::span<const double>(g3)), spe), size_mismatch);
  optim::adam_state<double> st;
  st.steps = {0};
  st.exp_avg = {std::vector<double>(4, 0.0)};
  st.exp_avg_sq = {v_hat};
  REQUIRE_THROWS_AS(alignment(p, spe, spe, adam_diag<double>(st)), state_error);
  st.steps = {3};
  st.exp_avg_sq[0].pop_back();
  REQUIRE_THROWS_AS(alignment(p, spe, spe, adam_diag<double>(st)), state_error);
  REQUIRE_THROWS_AS(adam_diag<double>(st, 1.0), invalid_argument);
  REQUIRE_THROWS_AS(adam_diag<double>(st, 0.9, 0.0), invalid_argument);
}
