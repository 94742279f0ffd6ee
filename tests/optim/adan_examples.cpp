// SPDX-License-Identifier: Apache-2.0
// algorithms.md §9.6 worked examples (every block) and the Adan properties of §11.
//
// The 3-element examples are replicated R times so that the same numbers go through both the SIMD
// body and the scalar tail of the fused kernel (elements never interact, except through the
// global clipping norm, which the clipping example accounts for). Tolerances are those of §0.4:
// relative 1e-12 in double, 2e-6 in float32 (absolute 1e-15 near zero in double).
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>

#include "optim/util.hpp"
#include "support/catch.hpp"

using namespace stochgrad;
using sg_test::rel_err;

namespace {

constexpr std::size_t R = 70;  // 210 elements: several SIMD chunks plus a tail for float and double

template <class T>
std::vector<T> rep(std::array<double, 3> v, std::size_t r = R) {
  std::vector<T> out(3 * r);
  for (std::size_t k = 0; k < r; ++k)
    for (std::size_t j = 0; j < 3; ++j) out[3 * k + j] = static_cast<T>(v[j]);
  return out;
}

template <class T>
double tol() {
  return std::is_same_v<T, double> ? 1e-12 : 2e-6;
}

// Checks every replica of x against the expected 3 values: |got - want| <= tol |want| + 1e-15.
template <class T>
void check3(const std::vector<T>& x, std::array<double, 3> want, const char* what) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double w = want[i % 3], got = static_cast<double>(x[i]);
    INFO(what << " element " << i << ": got " << got << ", want " << w);
    REQUIRE(std::abs(got - w) <= tol<T>() * std::abs(w) + 1e-15);
  }
}

const std::array<double, 3> theta0{1.0, -0.5, 2.0};
const std::array<std::array<double, 3>, 3> grads{{{0.4, -0.2, 1.0}, {0.1, 0.3, 0.8}, {-0.3, 0.25, 0.5}}};

template <class T>
struct run3 {
  std::vector<T> x;
  parameters<T> p;
  optim::adan<> opt;
  optim::adan_state<T> s;
  explicit run3(optim::adan_options o, std::size_t r = R) : x(rep<T>(theta0, r)), p(std::span<T>(x)), opt(o), s(opt.init(p)) {}
  update_report step(std::size_t k, std::size_t r = R) {
    const std::vector<T> g = rep<T>(grads[k], r);
    step_context ctx;
    ctx.step = k;
    return opt.update(p, s, dense_gradient<T>(std::span<const T>(g)), ctx);
  }
};

optim::adan_options base() {
  optim::adan_options o;
  o.lr = 0.01;
  o.weight_decay = 0.02;
  return o;
}

}  // namespace

TEMPLATE_TEST_CASE("adan §9.6: proximal (default) trajectory and state", "[optim][adan][worked]", float, double) {
  using T = TestType;
  run3<T> r(base());
  r.step(0);
  check3(r.s.exp_avg[0], {0.008, -0.004, 0.02}, "t=1 m");
  check3(r.s.exp_avg_diff[0], {0, 0, 0}, "t=1 v");
  check3(r.s.exp_avg_sq[0], {0.0016, 0.0004, 0.01}, "t=1 n");
  check3(r.x, {0.9898020398420316, -0.4899020200959808, 1.9896020796840632}, "t=1 theta");
  r.step(1);
  check3(r.s.exp_avg[0], {0.00984, 0.00208, 0.0356}, "t=2 m");
  check3(r.s.exp_avg_diff[0], {-0.024, 0.04, -0.016}, "t=2 v");
  check3(r.s.exp_avg_sq[0], {0.00189376, 0.006172, 0.01369456}, "t=2 n");
  check3(r.x, {0.9862096768562545, -0.49504816023884535, 1.9795244506271379}, "t=2 theta");
  r.step(2);
  check3(r.s.exp_avg[0], {0.0036432, 0.0070384, 0.044888}, "t=3 m");
  check3(r.s.exp_avg_diff[0], {-0.05408, 0.0328, -0.03872}, "t=3 v");
  check3(r.s.exp_avg_sq[0], {0.0063370624, 0.00652644, 0.0140593744}, "t=3 n");
  check3(r.x, {0.9895375830754897, -0.5004100128871141, 1.9703756532050294}, "t=3 theta");
  REQUIRE(r.s.steps == std::vector<std::uint64_t>{3});
}

TEMPLATE_TEST_CASE("adan §9.6: no_prox after t=3", "[optim][adan][worked]", float, double) {
  auto o = base();
  o.no_prox = true;
  run3<TestType> r(o);
  for (std::size_t k = 0; k < 3; ++k) r.step(k);
  check3(r.x, {0.9895354915515544, -0.5004100954916034, 1.9703697295705263}, "no_prox t=3");
}

TEMPLATE_TEST_CASE("adan §9.6: wd = 0, both modes, after t=3", "[optim][adan][worked]", float, double) {
  for (bool no_prox : {false, true}) {
    auto o = base();
    o.weight_decay = 0.0;
    o.no_prox = no_prox;
    run3<TestType> r(o);
    for (std::size_t k = 0; k < 3; ++k) r.step(k);
    INFO("no_prox = " << no_prox);
    check3(r.x, {0.9901306929354443, -0.5007070849257583, 1.9715635536417326}, "wd=0 t=3");
  }
}

TEMPLATE_TEST_CASE("adan §9.6: max_grad_norm = 0.5 (proximal), clip factors and trajectory",
                   "[optim][adan][worked]", float, double) {
  // The clip factor depends on the global norm, so this example runs on exactly the 3 elements
  // of §9.6 (scalar path) ...
  using T = TestType;
  auto o = base();
  o.max_grad_norm = 0.5;
  const std::array<double, 3> clip{0.4564354604209719, 0.5812381869623396, 0.7881103938167406};
  const std::array<std::array<double, 3>, 3> want{{{0.9898020401396946, -0.4899020206913067, 1.9896020798031284},
                                                   {0.9851485079613578, -0.495405238290052, 1.9792042308363944},
                                                   {0.9893242642422843, -0.5019320377725447, 1.9689704558732815}}};
  {
    run3<T> r(o, 1);
    for (std::size_t k = 0; k < 3; ++k) {
      const update_report rep = r.step(k, 1);
      INFO("t = " << k + 1);
      REQUIRE(rel_err(rep.clip_factor, clip[k]) <= tol<T>());
      check3(r.x, want[k], "clipped theta");
    }
  }
  // ... and on R replicas with max_grad_norm scaled by sqrt(R), which gives the same factors
  // (the norm of R copies is sqrt(R) times the norm of one) up to the eps in the denominator:
  // max*sqrt(R)/(sqrt(R)*|g| + eps) vs max/(|g| + eps), a relative difference below eps/|g| ~ 1e-8,
  // so this check uses the float tolerance for both types.
  {
    o.max_grad_norm = 0.5 * std::sqrt(static_cast<double>(R));
    run3<T> r(o);
    for (std::size_t k = 0; k < 3; ++k) {
      const update_report rep = r.step(k);
      REQUIRE(rel_err(rep.clip_factor, clip[k]) <= 2e-6);
      for (std::size_t i = 0; i < r.x.size(); ++i) REQUIRE(rel_err(static_cast<double>(r.x[i]), want[k][i % 3]) <= 2e-6);
    }
  }
}

TEMPLATE_TEST_CASE("adan §9.6: optax.adan variant (optax_compat)", "[optim][adan][worked]", float, double) {
  auto o = base();
  o.optax_compat = true;
  run3<TestType> r(o);
  const std::array<std::array<double, 3>, 3> want{{{0.9898000005625, -0.4899000017499996, 1.98960000015},
                                                   {0.9813861285150749, -0.4924288494487939, 1.9792835839276193},
                                                   {0.9797906451576468, -0.4972289782013978, 1.9693029653251497}}};
  for (std::size_t k = 0; k < 3; ++k) {
    r.step(k);
    INFO("t = " << k + 1);
    check3(r.x, want[k], "optax theta");
  }
}
