// SPDX-License-Identifier: Apache-2.0
// zo::detail::perturbation_guard on its own (issue 10 §1), driven the way two_point drives it
// (+s v_j, -s v_j for j < q), with a throw or a non-finite value at each evaluation, against a
// by-hand replay of the documented operation sequence (one multiply-add per pass term and
// element):
//   - the restored parameters are bit-identical to the hand replay (float and double),
//   - in float they are within the documented rounding bound u * sum_k |y_k| (u = 2^-24; y_k the
//     value after each term, the last one being the restored value), and so are doubles (u = 2^-53),
//   - with +-1 directions, a dyadic step and dyadic parameters every pass is exact, and the
//     restore is bit-exact: x' == x,
//   - the coordinate perturber restores exactly.
// Also: a span objective on a multi-tensor stepper is refused before anything changes (issue 11
// item 6), and stepper::estimate is the member form of zo::estimate.
#include <stochgrad/stochgrad.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;

namespace {

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

enum class fault { none, throws, nonfinite };

template <class T>
std::vector<T> start(std::size_t n) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(std::sin(0.37 * static_cast<double>(i) + 0.1) * 3.0);
  return x;
}

/// The two_point walk over q directions through guard `g`; evaluation `at` throws or is
/// non-finite. Returns the pass terms applied to the parameters, in order, including the restore.
template <class G, class T>
std::vector<std::pair<std::uint32_t, T>> walk(G& g, std::size_t q, T s, int at, fault kind) {
  std::vector<std::pair<std::uint32_t, T>> terms;
  int evals = 0;
  auto evaluate = [&] {
    const int i = evals++;
    if (i == at && kind == fault::throws) throw boom();
    return i == at ? std::numeric_limits<double>::quiet_NaN() : 1.0;
  };
  for (std::size_t j = 0; j < q; ++j) {
    const auto d = static_cast<std::uint32_t>(j);
    if (g.held()) terms.emplace_back(g.draw(), static_cast<T>(-g.displacement()));
    terms.emplace_back(d, s);
    g.move_to(d, s);
    (void)evaluate();
    terms.emplace_back(d, static_cast<T>(-s - s));  // one term of (-s) - s along the same draw
    g.move_to(d, static_cast<T>(-s));
    (void)evaluate();
  }
  terms.emplace_back(g.draw(), static_cast<T>(-g.displacement()));
  g.restore();
  return terms;
}

/// v(seed, draw) over n elements, read by perturbing zeros by 1 * v (madd(1, v, 0) = v exactly).
template <class T, class Dir>
std::vector<T> direction_values(const Dir& dir, std::size_t n, std::uint64_t seed, std::uint32_t draw) {
  std::vector<T> z(n, T(0));
  const parameters<T> p{std::span<T>(z)};
  zo::detail::direction_perturber<false, T, Dir> pert{&p, &dir};
  pert.displace(seed, draw, T(1));
  return z;
}

/// Runs the walk with a fault at `at` and checks the restore against the hand replay and the
/// rounding bound. Returns the restored parameters.
template <class T, class Dir>
std::vector<T> check_walk(const std::vector<T>& x0, std::size_t q, T s, int at, fault kind, bool separate) {
  const Dir dir{};
  const std::uint64_t seed = 0x5eed;
  std::vector<T> x = x0;
  const parameters<T> p{std::span<T>(x)};
  zo::detail::direction_perturber<false, T, Dir> pert{&p, &dir, {}, {}, separate};
  std::vector<std::pair<std::uint32_t, T>> terms;
  bool threw = false;
  {
    zo::detail::perturbation_guard g(pert, seed);
    try {
      terms = walk(g, q, s, at, kind);
    } catch (const boom&) {
      threw = true;
    }
    if (threw) CHECK(g.held());  // the throw left walk with the perturbation held; ~g restores
  }
  CHECK(threw == (kind == fault::throws && at >= 0));
  if (threw) {
    // The terms up to the throw (walk's list was lost with the exception), then the restore.
    std::vector<std::pair<std::uint32_t, T>> t2;
    // the same walk, recording terms through a copy of walk's logic, stopped at the throw
    int evals = 0;
    for (std::size_t j = 0; j < q && evals <= at; ++j) {
      const auto d = static_cast<std::uint32_t>(j);
      if (j > 0) t2.emplace_back(d - 1, s);
      t2.emplace_back(d, s);
      if (evals++ == at) break;
      t2.emplace_back(d, static_cast<T>(-s - s));
      if (evals++ == at) break;
    }
    // the restore: held draw and displacement at the throw
    const std::uint32_t held = static_cast<std::uint32_t>(at / 2);
    t2.emplace_back(held, at % 2 == 0 ? static_cast<T>(-s) : s);
    terms = t2;
  }
  // Hand replay: y <- madd(scale, v_draw, y) per term and element.
  std::vector<std::vector<T>> v(q);
  for (std::size_t j = 0; j < q; ++j) v[j] = direction_values<T>(dir, x0.size(), seed, static_cast<std::uint32_t>(j));
  const double u = std::ldexp(1.0, -std::numeric_limits<T>::digits);
  bool same = true, bounded = true;
  for (std::size_t i = 0; i < x0.size(); ++i) {
    T y = x0[i];
    double sum = 0.0;
    for (const auto& [d, sc] : terms) {
      y = simd::madd(sc, v[d][i], y);
      sum += std::fabs(static_cast<double>(y));
    }
    same = same && zo_test::bits(y) == zo_test::bits(x[i]);
    bounded = bounded && std::fabs(static_cast<double>(x[i]) - static_cast<double>(x0[i])) <= u * sum;
  }
  CHECK(same);
  CHECK(bounded);
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("perturbation_guard: throw or non-finite at each evaluation, restore as documented", "[zo][guard]",
                   float, double) {
  using T = TestType;
  const std::vector<T> x0 = start<T>(203);  // not a multiple of the chunk: scalar tail too
  for (std::size_t q : {1u, 2u, 4u}) {
    for (int at = 0; at < static_cast<int>(2 * q); ++at) {
      for (fault kind : {fault::throws, fault::nonfinite}) {
        for (bool separate : {false, true}) {
          CAPTURE(q, at, kind == fault::throws, separate);
          check_walk<T, zo::direction_t<gaussian>>(x0, q, static_cast<T>(1e-2), at, kind, separate);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("perturbation_guard: on a common binary grid every pass is exact and the restore bit-exact",
                   "[zo][guard]", float, double) {
  using T = TestType;
  // x_i = k_i / 64 with |k_i| < 2^10, s = 2^-6, v = +-1: every x +- s, x +- 2s is a multiple of
  // 2^-6 below 2^5, representable in 11 bits, so every multiply-add is exact.
  std::vector<T> x0(131);
  for (std::size_t i = 0; i < x0.size(); ++i) x0[i] = static_cast<T>((static_cast<int>(i * 37 % 512) - 256) / 64.0);
  for (std::size_t q : {1u, 2u, 4u}) {
    for (int at = 0; at < static_cast<int>(2 * q); ++at) {
      for (fault kind : {fault::throws, fault::nonfinite}) {
        CAPTURE(q, at);
        const auto x = check_walk<T, zo::direction_t<rademacher>>(x0, q, static_cast<T>(1.0 / 64), at, kind, false);
        CHECK(zo_test::same_bits<T>(x, x0));
      }
    }
  }
}

TEST_CASE("perturbation_guard: adopt, dismiss, restore once", "[zo][guard]") {
  using T = double;
  const zo::direction_t<gaussian> dir{};
  std::vector<T> x = start<T>(40);
  const std::vector<T> x0 = x;
  const parameters<T> p{std::span<T>(x)};
  zo::detail::direction_perturber<false, T, zo::direction_t<gaussian>> pert{&p, &dir};
  {
    zo::detail::perturbation_guard g(pert, 9);
    CHECK_FALSE(g.held());
    g.move_to(0, 0.5);
    CHECK(g.held());
    CHECK_FALSE(zo_test::same_bits<T>(x, x0));
    const auto t = g.restore_term();
    CHECK(t.seed == 9);
    CHECK(t.draw == 0);
    CHECK(t.scale == -0.5);
    g.restore();
    CHECK_FALSE(g.held());
    const std::vector<T> once = x;
    g.restore();  // no second pass
    CHECK(zo_test::same_bits<T>(x, once));
    g.move_to(1, 0.25);
    g.dismiss();  // the caller took over the perturbation: the destructor leaves it
  }
  const std::vector<T> held = x;
  {
    zo::detail::perturbation_guard g(pert, 9);
    g.adopt(1, 0.25);  // the parameters already hold +0.25 v(9, 1)
  }                    // destructor removes it
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::fabs(x[i] - x0[i]) <= 1e-15 * 4.0);
  CHECK_FALSE(zo_test::same_bits<T>(x, held));
}

TEST_CASE("perturbation_guard over one coordinate: the restore is exact at every fault", "[zo][guard]") {
  using T = float;
  std::vector<T> a = start<T>(7), b = start<T>(5);
  const std::vector<T> a0 = a, b0 = b;
  parameters<T> p;
  p.add(std::span<T>(a));
  p.add(std::span<T>(b));
  for (int at = 0; at < 24; ++at) {
    zo::detail::coordinate_perturber<T> pert{&p};
    try {
      zo::detail::perturbation_guard g(pert, 0);
      int evals = 0;
      for (std::size_t t = 0; t < 2; ++t) {
        for (std::size_t e = 0; e < p.tensor(t).size(); ++e) {
          g.move_to({t, e}, T(0.1f));
          if (evals++ == at) throw boom();
          g.move_to({t, e}, T(-0.1f));
          if (evals++ == at) throw boom();
        }
      }
    } catch (const boom&) {
    }
    CHECK(zo_test::same_bits<T>(a, a0));
    CHECK(zo_test::same_bits<T>(b, b0));
  }
}

TEMPLATE_TEST_CASE("a span objective on a multi-tensor stepper is refused before anything changes", "[zo][guard]",
                   float, double) {
  using T = TestType;
  std::vector<T> a = start<T>(64), b = start<T>(9);
  parameters<T> p;
  p.add(std::span<T>(a));
  p.add(std::span<T>(b));
  int calls = 0;
  auto span_f = [&](std::span<const T> x) {
    ++calls;
    return static_cast<double>(x[0]);
  };
  auto whole_f = [](const parameters<T>& x) { return static_cast<double>(x.tensor(0)[0]); };
  for (auto mode : {zo::pass_mode::fused, zo::pass_mode::fused_next}) {
    mezo<T> s(p, {.lr = 1e-3}, {.eps = 1e-3, .seed = 3, .mode = mode});
    s.step(whole_f);  // fused_next: a perturbation is now pending
    const std::vector<T> a1 = a, b1 = b;
    std::ostringstream before;
    s.save(before);
    const bool pending = s.est_state().pending;
    CHECK(pending == (mode == zo::pass_mode::fused_next));
    CHECK_THROWS_AS(s.step(span_f), invalid_argument);
    std::vector<T> g0(64), g1(9);
    const std::span<T> outs[2] = {std::span<T>(g0), std::span<T>(g1)};
    CHECK_THROWS_AS(s.estimate(span_f, std::span<const std::span<T>>(outs)), invalid_argument);
    CHECK(calls == 0);
    CHECK(zo_test::same_bits<T>(a, a1));  // not even the pending perturbation was settled
    CHECK(zo_test::same_bits<T>(b, b1));
    CHECK(s.est_state().pending == pending);
    std::ostringstream after;
    s.save(after);
    CHECK(after.str() == before.str());  // same call counter (no seed used), same step count
  }
  std::vector<T> c = start<T>(3), d = start<T>(2);
  parameters<T> pc;
  pc.add(std::span<T>(c));
  pc.add(std::span<T>(d));
  stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, T> cw{pc};
  CHECK_THROWS_AS(cw.step(span_f), invalid_argument);
  CHECK(cw.est_state().calls == 0);
  CHECK(calls == 0);
}

TEMPLATE_TEST_CASE("stepper::estimate is zo::estimate as a member", "[zo][guard]", float, double) {
  using T = TestType;
  std::vector<T> x = start<T>(50), y = x;
  mezo<T> a(std::span<T>(x), {.lr = 1e-3}, {.eps = 1e-3, .q = 2, .seed = 11});
  mezo<T> b(std::span<T>(y), {.lr = 1e-3}, {.eps = 1e-3, .q = 2, .seed = 11});
  auto f = [](std::span<const T> v) {
    double s = 0;
    for (T e : v) s += static_cast<double>(e) * static_cast<double>(e);
    return s;
  };
  std::vector<T> ga(50), gb(50);
  const auto ra = a.estimate(f, std::span<T>(ga));
  const auto rb = zo::estimate(b, f, std::span<T>(gb));
  CHECK(ra.evaluations == 4);
  CHECK(rb.evaluations == 4);
  CHECK(zo_test::same_bits<T>(ga, gb));
  CHECK(zo_test::same_bits<T>(x, y));
  CHECK(a.steps() == 0);
  CHECK(a.est_state().calls == 1);
  // The estimate is not zero: |g| > 0 for this non-constant objective.
  double norm = 0;
  for (T e : ga) norm += std::fabs(static_cast<double>(e));
  CHECK(norm > 0.0);
}
