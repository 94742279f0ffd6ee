// SPDX-License-Identifier: Apache-2.0
// LESS (data::adam_direction, random_projector, cosine scores, selection; design/seeds/data.md
// section 1): the two worked examples of section 1.7 with the spec's numbers, the feature's chunk
// path against its scalar path and the formula, the regenerated projection against the
// materialised matrix (bitwise entries, GEMV to rounding), thread-count independence, the
// Johnson-Lindenstrauss expectations with derived tolerances, the sign type, and bad input.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include <stochgrad/bits/data/data.hpp>
#include <stochgrad/bits/optim/optim.hpp>

#include "support/catch.hpp"

using namespace stochgrad;
using namespace stochgrad::data;

namespace {

using mat = std::vector<std::vector<double>>;

void require_close(std::span<const double> got, std::span<const double> want, double rel, double abs = 0.0) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    REQUIRE_THAT(got[i], Catch::Matchers::WithinRel(want[i], rel) || Catch::Matchers::WithinAbs(want[i], abs));
  }
}
void require_close(std::span<const double> got, const std::vector<double>& want, double rel, double abs = 0.0) {
  require_close(got, std::span<const double>(want), rel, abs);
}

std::vector<double> flat(const mat& m) {
  std::vector<double> out;
  for (const auto& r : m) out.insert(out.end(), r.begin(), r.end());
  return out;
}

// rows x d times the d x k matrix P (row-major, rows = parameter coordinates).
std::vector<double> times(const mat& x, const mat& P) {
  std::vector<double> out;
  for (const auto& r : x) {
    for (std::size_t j = 0; j < P[0].size(); ++j) {
      double s = 0.0;
      for (std::size_t e = 0; e < r.size(); ++e) s += r[e] * P[e][j];
      out.push_back(s);
    }
  }
  return out;
}

// The Adam state of one 4-element tensor with the given moments.
optim::adam_state<double> state_of(const std::vector<double>& m, const std::vector<double>& v) {
  optim::adam_state<double> s;
  s.steps = {7};
  s.exp_avg = {m};
  s.exp_avg_sq = {v};
  return s;
}

// The features of the rows of g under the state (materialised through the lazy source).
mat features(const optim::adam_state<double>& st, const mat& g) {
  mat out;
  for (const auto& row : g) {
    std::vector<double> w(row.size(), 0.0), f(row.size());
    parameters<double> p(w);
    const dense_gradient<double> gs{std::span<const double>(row)};
    const adam_direction<double, dense_gradient<double>> a(st, gs);
    const std::span<double> outs[1] = {f};
    materialize(p, a, std::span<const std::span<double>>(outs));
    out.push_back(f);
  }
  return out;
}

// Section 1.7.
const mat P1 = {{1, -1, 1}, {1, 1, -1}, {-1, 1, 1}, {1, 1, 1}};
const mat g_train = {
    {0.02, -0.01, 0.03, 0}, {-0.05, 0.04, 0.01, 0.02}, {0.01, 0.01, -0.02, 0.06}, {0, -0.03, 0.02, -0.01}};
const mat g_val = {{0.03, -0.02, 0.01, 0.01}, {-0.01, 0.02, 0, 0.04}};
const std::vector<double> m1 = {0.001, -0.002, 0.0005, 0}, v1 = {1e-5, 4e-6, 2e-6, 1e-6};
const std::vector<double> m2 = {-0.0005, 0.001, 0.002, -0.001}, v2 = {2e-6, 2e-6, 8e-6, 5e-6};

}  // namespace

TEST_CASE("LESS worked example 1: features, projection, cosine scores", "[data][less]") {
  const auto st = state_of(m1, v1);
  const mat feat = features(st, g_train);
  require_close(
      flat(feat),
      {0.8992518257717613, -1.381810723929189, 2.023121167212052, 0.0, -1.1596551211459376, 0.9291720427242617,
       0.9986945938777315, 1.6849014308841923, 0.5978509367511748, -0.39480306397976844, -0.9988573205637795,
       2.7947817350990265, 0.28460498941515416, -2.167092581508315, 1.578838990568555, -0.9495858335005062},
      1e-14, 1e-300);
  const auto y = times(feat, P1);
  require_close(y,
                {-2.5056800653694795, -0.25794138248889853, 4.304183716913002, 0.45572375858478487, 4.772423188632123,
                 0.5947688608917243, 3.9966869284342126, 0.8032704138043036, 2.78857841526619, -4.410912416162222,
                 -1.8224444138554206, 3.080950727991518},
                1e-14);
  const auto v = times(g_val, P1);
  const auto S = cosine_scores<double>(y, v, 3);
  require_close(S,
                {0.741321721455206, -0.23222854744877575, -0.26135856728995543, 0.8671896153747557, 0.5563514951681359,
                 0.6638349438662001, 0.5184753579502792, -0.6449882437950458},
                1e-13);
  // The scale of the projection cancels in the cosine.
  std::vector<double> y3 = y, v3 = v;
  for (double& x : y3) x *= 1.0 / std::sqrt(3.0);
  for (double& x : v3) x *= 7.5;
  require_close(cosine_scores<double>(y3, v3, 3), S, 1e-14);
}

TEST_CASE("LESS worked example 2: two checkpoints, subtasks, selection", "[data][less]") {
  const auto st1 = state_of(m1, v1);
  const auto st2 = state_of(m2, v2);
  mat g2;  // reverse row order times 0.5
  for (std::size_t r = g_train.size(); r-- > 0;) {
    std::vector<double> row = g_train[r];
    for (double& x : row) x *= 0.5;
    g2.push_back(row);
  }
  mat gv2 = g_val;  // second coordinate negated
  for (auto& r : gv2) r[1] = -r[1];
  const mat f1 = features(st1, g_train), f2 = features(st2, g2);
  require_close(f2[0], {-0.31756355827742067, -0.40151972834790417, 0.983698279760392, -0.6242291468947937}, 1e-14);
  const auto y1 = times(f1, P1), y2 = times(f2, P1), v1p = times(g_val, P1), v2p = times(gv2, P1);
  const less_checkpoint<double> ck[2] = {{y1, v1p, 1.6877e-05}, {y2, v2p, 1.2859e-05}};
  const auto S = less_score_matrix(std::span<const less_checkpoint<double>>(ck), 3);
  require_close(S,
                {0.1133492126101644, -0.10983849990862618, 0.14743925401532357, 0.7376104102657224, 0.2138031681526813,
                 0.35995772979548235, 0.22715991154280912, -0.08831507491166113},
                1e-13);
  const auto s = task_scores(S, 2, 2);
  require_close(s, {0.1133492126101644, 0.7376104102657224, 0.35995772979548235, 0.22715991154280912}, 1e-13);
  const auto sel = select_top_fraction(s, 0.5);
  REQUIRE(sel == std::vector<std::size_t>{1, 2});
  // One subtask: the mean over both validation examples.
  const auto s1 = task_scores(S, 2, 1);
  for (std::size_t i = 0; i < 4; ++i)
    REQUIRE_THAT(s1[i], Catch::Matchers::WithinRel(0.5 * (S[2 * i] + S[2 * i + 1]), 1e-15));
}

TEST_CASE("adam_direction: float parameters, chunk path == scalar path, the formula", "[data][less]") {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n0 = 1000, n1 = 77;  // full chunks and tails
  auto run = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> w0(n0), w1(n1), g0(n0), g1(n1);
    optim::adam_state<T> st;
    st.steps = {3};
    st.exp_avg = {std::vector<T>(n0), std::vector<T>(n1)};
    st.exp_avg_sq = {std::vector<T>(n0), std::vector<T>(n1)};
    for (std::size_t t = 0; t < 2; ++t) {
      for (auto& x : st.exp_avg[t]) x = static_cast<T>(1e-3 * nd(rng));
      for (auto& x : st.exp_avg_sq[t]) x = static_cast<T>(1e-6 * std::abs(nd(rng)));
      st.exp_avg_sq[t][5] = T(0);  // v = 0, g = 0: the stale-momentum coordinate of section 1.6
    }
    for (auto& x : g0) x = static_cast<T>(1e-2 * nd(rng));
    for (auto& x : g1) x = static_cast<T>(1e-2 * nd(rng));
    g0[5] = T(0);
    g1[5] = T(0);
    parameters<T> p;
    p.add(w0).add(w1);
    const std::span<const T> gs[2] = {g0, g1};
    const dense_gradient<T> dg{std::span<const std::span<const T>>(gs)};
    const adam_direction<T, dense_gradient<T>> a(st, dg);
    std::vector<T> f0(n0), f1(n1);
    const std::span<T> outs[2] = {f0, f1};
    materialize(p, a, std::span<const std::span<T>>(outs));
    for (std::size_t t = 0; t < 2; ++t) {
      const auto& f = t == 0 ? f0 : f1;
      const auto& g = t == 0 ? g0 : g1;
      for (std::size_t i = 0; i < f.size(); ++i) {
        T th = T(0);
        REQUIRE(f[i] == a.at(t, i, th));  // bitwise: chunk path (materialize) == scalar path
        const double m = st.exp_avg[t][i], v = st.exp_avg_sq[t][i], gi = g[i];
        const double den = std::sqrt(0.999 * v + 0.001 * gi * gi + 1e-8);
        const double want = (0.9 * m + 0.1 * gi) / den;
        // A few roundings of the terms (m' may cancel): relative to (0.9 |m| + 0.1 |g|) / den.
        const double ulp = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
        REQUIRE(std::abs(static_cast<double>(f[i]) - want) <= 8 * ulp * (0.9 * std::abs(m) + 0.1 * std::abs(gi)) / den);
      }
      REQUIRE_THAT(static_cast<double>(f[5]), Catch::Matchers::WithinRel(0.9 * st.exp_avg[t][5] / 1e-4, 1e-6));
    }
  };
  run(double{});
  run(float{});
}

TEST_CASE("adam_direction: the float worked example to float precision", "[data][less]") {
  optim::adam_state<float> st;
  st.steps = {1};
  st.exp_avg = {std::vector<float>(m1.begin(), m1.end())};
  st.exp_avg_sq = {std::vector<float>(v1.begin(), v1.end())};
  const std::vector<float> g(g_train[1].begin(), g_train[1].end());
  std::vector<float> w(4, 0.0f), f(4);
  parameters<float> p(w);
  const dense_gradient<float> gs{std::span<const float>(g)};
  const std::span<float> outs[1] = {f};
  materialize(p, adam_direction<float, dense_gradient<float>>(st, gs), std::span<const std::span<float>>(outs));
  const double want[4] = {-1.1596551211459376, 0.9291720427242617, 0.9986945938777315, 1.6849014308841923};
  for (std::size_t i = 0; i < 4; ++i) REQUIRE_THAT(f[i], Catch::Matchers::WithinRel(want[i], 1e-6));
}

namespace {

// For every element of a two-tensor parameter set, the projection of the unit vector there equals
// the entry of the materialised matrix exactly (one non-zero term: the sums are exact).
template <class D, class G, class T>
void check_unit_vectors() {
  const std::size_t n0 = 1500, n1 = 77, k = 5;  // two leaves + a chunk tail; a short tensor
  std::vector<T> w0(n0, T(0)), w1(n1, T(0));
  parameters<T> p;
  p.add(w0).add(w1);
  const std::size_t d = n0 + n1;
  std::vector<T> e0(n0 * d, T(0)), e1(n1 * d, T(0));
  std::vector<std::array<std::span<const T>, 2>> spans(d);
  std::vector<dense_gradient<T>> units;
  units.reserve(d);
  for (std::size_t i = 0; i < d; ++i) {
    if (i < n0) {
      e0[i * n0 + i] = T(1);
    } else {
      e1[i * n1 + (i - n0)] = T(1);
    }
    spans[i] = {std::span<const T>(e0.data() + i * n0, n0), std::span<const T>(e1.data() + i * n1, n1)};
    units.emplace_back(std::span<const std::span<const T>>(spans[i]));
  }
  for (auto scale : {projection_scale::trak, projection_scale::jl}) {
    const random_projector<D, G> proj(k, {.seed = 0x5eedULL, .stream_offset = 3, .scale = scale});
    std::vector<double> out(d * k);
    proj.project_batch(p, std::span<const dense_gradient<T>>(units), std::span<double>(out));
    for (std::size_t i = 0; i < d; ++i) {
      const std::size_t t = i < n0 ? 0 : 1, e = i < n0 ? i : i - n0;
      for (std::size_t j = 0; j < k; ++j) {
        const float z = proj.entry(t, e, j);
        REQUIRE(z == noise_at<D, G>(
                         noise_key{0x5eedULL, static_cast<std::uint32_t>(3 + t), static_cast<std::uint32_t>(j)}, e));
        const double want = proj.scale() * static_cast<double>(z);
        if (out[i * k + j] != want) {
          INFO("element " << i << " column " << j);
          REQUIRE(out[i * k + j] == want);
        }
      }
    }
  }
}

// y = s f P with P materialised from entry() in double, against the projector.
template <class D, class G, class T>
void check_gemv(double rel) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n0 = 2100, n1 = 33, k = 17;
  std::vector<T> w0(n0), w1(n1), f0(n0), f1(n1);
  for (auto& x : w0) x = static_cast<T>(nd(rng));
  for (auto& x : f0) x = static_cast<T>(nd(rng));
  for (auto& x : f1) x = static_cast<T>(nd(rng));
  parameters<T> p;
  p.add(w0).add(w1);
  const std::span<const T> fs[2] = {f0, f1};
  const dense_gradient<T> src{std::span<const std::span<const T>>(fs)};
  const random_projector<D, G> proj(k, {.seed = 99});
  std::vector<double> got(k);
  proj.project(p, src, std::span<double>(got));
  double fnorm = 0.0;
  for (auto x : f0) fnorm += static_cast<double>(x) * x;
  for (auto x : f1) fnorm += static_cast<double>(x) * x;
  fnorm = std::sqrt(fnorm);
  for (std::size_t j = 0; j < k; ++j) {
    long double s = 0;
    for (std::size_t e = 0; e < n0; ++e) s += static_cast<long double>(f0[e]) * proj.entry(0, e, j);
    for (std::size_t e = 0; e < n1; ++e) s += static_cast<long double>(f1[e]) * proj.entry(1, e, j);
    const double want = proj.scale() * static_cast<double>(s);
    // Relative to the typical size s ||f|| of an output (cancellation makes single outputs small).
    REQUIRE(std::abs(got[j] - want) <= rel * proj.scale() * fnorm);
  }
  // Float outputs: the same double sums, rounded once.
  std::vector<float> gf(k);
  proj.project(p, src, std::span<float>(gf));
  for (std::size_t j = 0; j < k; ++j) REQUIRE(gf[j] == static_cast<float>(got[j]));
  // The parameters are not modified.
  for (std::size_t e = 0; e < n1; ++e) REQUIRE(w1[e] == T(0));
}

}  // namespace

TEST_CASE("random_projector: regenerated entries equal the materialised matrix", "[data][less]") {
  check_unit_vectors<rademacher, philox_icdf<7>, double>();
  check_unit_vectors<rademacher, philox_icdf<7>, float>();
  check_unit_vectors<rademacher, philox<10>, float>();
  check_unit_vectors<gaussian, philox_icdf<7>, double>();
  check_unit_vectors<gaussian, philox<10>, float>();
}

TEST_CASE("random_projector: equals a materialised GEMV to rounding", "[data][less]") {
  // Double: the leaf sums are exact to a few ulps of the partial sums (d ~ 2e3 terms).
  check_gemv<rademacher, philox_icdf<7>, double>(1e-14);
  check_gemv<gaussian, philox_icdf<7>, double>(1e-14);
  check_gemv<gaussian, philox<10>, double>(1e-14);
  // Float: per-leaf accumulation in float (~ 1024/(4 W) sequential terms per accumulator).
  check_gemv<rademacher, philox_icdf<7>, float>(2e-6);
  check_gemv<gaussian, philox<10>, float>(2e-6);
}

TEST_CASE("random_projector: results do not depend on the thread count; batch == one by one", "[data][less]") {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::size_t n = 5000, k = 37, nb = 3;
  std::vector<float> w(n), f(nb * n);
  for (auto& x : f) x = nd(rng);
  parameters<float> p(w);
  std::vector<dense_gradient<float>> src;
  for (std::size_t b = 0; b < nb; ++b) src.emplace_back(std::span<const float>(f.data() + b * n, n));
  const random_projector<gaussian, default_generator> proj(k, {.seed = 1});
  std::vector<double> one(nb * k), many(nb * k), single(k);
  proj.project_batch(p, std::span<const dense_gradient<float>>(src), std::span<double>(one));
  for (unsigned threads : {2u, 3u, 8u}) {
    thread_pool pool(threads);
    proj.project_batch(p, std::span<const dense_gradient<float>>(src), std::span<double>(many), executor(pool));
    REQUIRE(many == one);
  }
  for (std::size_t b = 0; b < nb; ++b) {
    proj.project(p, src[b], std::span<double>(single));
    for (std::size_t j = 0; j < k; ++j) REQUIRE(single[j] == one[b * k + j]);
  }
}

TEST_CASE("random_projector + adam_direction: lazy feature == materialised feature, bitwise", "[data][less]") {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n = 3000;
  std::vector<float> w(n), g(n);
  optim::adam_state<float> st;
  st.steps = {10};
  st.exp_avg = {std::vector<float>(n)};
  st.exp_avg_sq = {std::vector<float>(n)};
  for (std::size_t i = 0; i < n; ++i) {
    g[i] = static_cast<float>(1e-2 * nd(rng));
    st.exp_avg[0][i] = static_cast<float>(1e-3 * nd(rng));
    st.exp_avg_sq[0][i] = static_cast<float>(1e-6 * std::abs(nd(rng)));
  }
  parameters<float> p(w);
  const dense_gradient<float> gs{std::span<const float>(g)};
  const adam_direction<float, dense_gradient<float>> a(st, gs);
  std::vector<float> f(n);
  const std::span<float> outs[1] = {f};
  materialize(p, a, std::span<const std::span<float>>(outs));
  const random_projector<rademacher, philox_icdf<7>> proj(64);
  std::vector<double> lazy(64), dense(64);
  proj.project(p, a, std::span<double>(lazy));
  proj.project(p, dense_gradient<float>(std::span<const float>(f)), std::span<double>(dense));
  REQUIRE(lazy == dense);
}

TEST_CASE("random_projector: Johnson-Lindenstrauss expectations (derived tolerance)", "[data][less]") {
  // For s = 1/sqrt(k) and i.i.d. entries of mean 0, variance 1, E<y(a), y(b)> = <a, b>, and over
  // one projection Var<y(a), y(b)> = (|a|^2 |b|^2 + <a,b>^2 + (mu4 - 3) sum_e a_e^2 b_e^2) / k with
  // mu4 = 1 (Rademacher) or 3 (Gaussian). The mean over R independent seeds is then within
  // 5 sqrt(Var / R) of <a, b> (a 5-sigma bound; the seeds are fixed, so the test is deterministic).
  const std::size_t d = 300, k = 32, R = 400;
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> w(d), a(d), b(d);
  for (std::size_t e = 0; e < d; ++e) {
    a[e] = nd(rng);
    b[e] = 0.6 * a[e] + 0.8 * nd(rng);  // correlated: <a, b> clearly non-zero
  }
  double ab = 0, aa = 0, bb = 0, a2b2 = 0;
  for (std::size_t e = 0; e < d; ++e) {
    ab += a[e] * b[e];
    aa += a[e] * a[e];
    bb += b[e] * b[e];
    a2b2 += a[e] * a[e] * b[e] * b[e];
  }
  parameters<double> p(w);
  auto run = [&](auto dist, double mu4) {
    using D = decltype(dist);
    double mean_ab = 0, mean_aa = 0;
    std::vector<double> ya(k), yb(k);
    for (std::size_t r = 0; r < R; ++r) {
      const random_projector<D, default_generator> proj(k, {.seed = 1000 + r});
      proj.project(p, dense_gradient<double>(std::span<const double>(a)), std::span<double>(ya));
      proj.project(p, dense_gradient<double>(std::span<const double>(b)), std::span<double>(yb));
      double s = 0, q = 0;
      for (std::size_t j = 0; j < k; ++j) {
        s += ya[j] * yb[j];
        q += ya[j] * ya[j];
      }
      mean_ab += s / R;
      mean_aa += q / R;
    }
    const double var_ab = (aa * bb + ab * ab + (mu4 - 3.0) * a2b2) / k;
    double a4 = 0;
    for (double x : a) a4 += x * x * x * x;
    const double var_aa = (2.0 * aa * aa + (mu4 - 3.0) * a4) / k;
    REQUIRE(std::abs(mean_ab - ab) <= 5.0 * std::sqrt(var_ab / R));
    REQUIRE(std::abs(mean_aa - aa) <= 5.0 * std::sqrt(var_aa / R));
  };
  run(rademacher{}, 1.0);
  run(gaussian{}, 3.0);
}

TEST_CASE("sign_direction: torch.sign of the inner source", "[data][less]") {
  std::vector<double> w(70), g(70);
  for (std::size_t i = 0; i < g.size(); ++i)
    g[i] = (i % 3 == 0) ? 0.0 : (i % 3 == 1 ? 0.25 * static_cast<double>(i) : -1e-9 * static_cast<double>(i));
  g[4] = std::numeric_limits<double>::quiet_NaN();
  parameters<double> p(w);
  const dense_gradient<double> dg{std::span<const double>(g)};
  const sign_direction<dense_gradient<double>> s(dg);
  std::vector<double> out(70);
  const std::span<double> outs[1] = {out};
  materialize(p, s, std::span<const std::span<double>>(outs));
  for (std::size_t i = 0; i < g.size(); ++i) {
    double th = 0;
    if (i == 4) {
      REQUIRE(std::isnan(out[i]));
      REQUIRE(std::isnan(s.at(0, i, th)));
      continue;
    }
    const double want = i % 3 == 0 ? 0.0 : (i % 3 == 1 ? 1.0 : -1.0);
    REQUIRE(out[i] == want);
    REQUIRE(s.at(0, i, th) == want);
  }
}

TEST_CASE("select_top_fraction: truncation of K, stable ties", "[data][less]") {
  const std::vector<double> s = {0.5, 0.9, 0.5, 0.1, 0.9, 0.5, 0.0, -1.0, 0.3, 0.5};
  REQUIRE(select_top_fraction(s, 0.05).empty());  // int(0.05 * 10) = 0
  REQUIRE(select_top_fraction(s, 0.25) == std::vector<std::size_t>{1, 4});
  REQUIRE(select_top_fraction(s, 0.5) == std::vector<std::size_t>{1, 4, 0, 2, 5});
  REQUIRE(select_top_fraction(s, 1.0) == std::vector<std::size_t>{1, 4, 0, 2, 5, 9, 8, 3, 6, 7});
  REQUIRE(select_top_fraction(std::vector<double>{}, 1.0).empty());
  // 0.29 * 10 = 2.9 -> 2.
  REQUIRE(select_top_fraction(s, 0.29).size() == 2);
}

TEST_CASE("LESS: bad input is refused with nothing changed", "[data][less]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // k = 0.
  REQUIRE_THROWS_AS((random_projector<rademacher, default_generator>(0)), invalid_argument);
  REQUIRE_THROWS_AS(cosine_scores<double>(std::vector<double>{1, 2}, std::vector<double>{1, 2}, 0), invalid_argument);
  // Fractions outside (0, 1].
  const std::vector<double> s = {0.1, 0.2};
  for (double f : {0.0, -0.1, 1.0000001, nan}) REQUIRE_THROWS_AS(select_top_fraction(s, f), invalid_argument);
  REQUIRE_THROWS_AS(select_top_fraction(std::vector<double>{0.1, nan}, 0.5), nonfinite_error);
  // Empty validation set; shapes that do not fit; non-finite features: scores untouched.
  const std::vector<double> y = {1, 0, 0, 0, 1, 0}, v = {1, 1, 0};
  std::vector<double> S(2, 42.0);
  REQUIRE_THROWS_AS(add_cosine_scores<double>(y, std::vector<double>{}, 3, 1.0, S), invalid_argument);
  REQUIRE_THROWS_AS(add_cosine_scores<double>(y, std::vector<double>{1, 1}, 3, 1.0, S), size_mismatch);
  REQUIRE_THROWS_AS(add_cosine_scores<double>(y, v, 3, 1.0, std::span<double>(S.data(), 1)), size_mismatch);
  REQUIRE_THROWS_AS(add_cosine_scores<double>(y, v, 3, nan, S), invalid_argument);
  std::vector<double> ybad = y;
  ybad[5] = nan;
  REQUIRE_THROWS_AS(add_cosine_scores<double>(ybad, v, 3, 1.0, S), nonfinite_error);
  REQUIRE(S == std::vector<double>(2, 42.0));
  add_cosine_scores<double>(y, v, 3, 1.0, S);
  require_close(S, {42.0 + 1 / std::sqrt(2.0), 42.0 + 1 / std::sqrt(2.0)}, 1e-15);
  // A zero row scores 0 (division by the 1e-12 guard).
  REQUIRE(cosine_scores<double>(std::vector<double>{0, 0, 0}, v, 3) == std::vector<double>{0.0});
  // Checkpoint weights: sum 0, negative, non-finite, none.
  REQUIRE_THROWS_AS(checkpoint_weights(std::vector<double>{0.0, 0.0}), invalid_argument);
  REQUIRE_THROWS_AS(checkpoint_weights(std::vector<double>{1.0, -0.5}), invalid_argument);
  REQUIRE_THROWS_AS(checkpoint_weights(std::vector<double>{1.0, nan}), invalid_argument);
  REQUIRE_THROWS_AS(checkpoint_weights(std::vector<double>{}), invalid_argument);
  require_close(checkpoint_weights(std::vector<double>{1.0, 3.0}), {0.25, 0.75}, 1e-16);
  {
    const less_checkpoint<double> ck[2] = {{y, v, 1.0}, {y, std::span<const double>(v.data(), 0), 1.0}};
    REQUIRE_THROWS_AS(less_score_matrix(std::span<const less_checkpoint<double>>(ck), 3), size_mismatch);
    const less_checkpoint<double> z[2] = {{y, v, 0.0}, {y, v, 0.0}};
    REQUIRE_THROWS_AS(less_score_matrix(std::span<const less_checkpoint<double>>(z), 3), invalid_argument);
    REQUIRE_THROWS_AS(less_score_matrix(std::span<const less_checkpoint<double>>(), 3), invalid_argument);
  }
  // task_scores: subtasks not dividing m, m = 0.
  const std::vector<double> S6 = {1, 2, 3, 4, 5, 6};
  REQUIRE_THROWS_AS(task_scores(S6, 3, 2), invalid_argument);
  REQUIRE_THROWS_AS(task_scores(S6, 0, 1), invalid_argument);
  REQUIRE_THROWS_AS(task_scores(S6, 4, 1), size_mismatch);
  require_close(task_scores(S6, 3, 3), {3.0, 6.0}, 1e-16);
  // normalize_rows: non-finite input leaves the matrix untouched.
  std::vector<double> xr = {3, 4, nan, 1};
  REQUIRE_THROWS_AS(normalize_rows(std::span<double>(xr), 2), nonfinite_error);
  REQUIRE(xr[0] == 3.0);
  xr[2] = 0.0;
  normalize_rows(std::span<double>(xr), 2);
  require_close(xr, {0.6, 0.8, 0.0, 1.0}, 1e-16);
  REQUIRE_THROWS_AS(normalize_rows(std::span<double>(xr), 3), size_mismatch);
  // adam_direction: bad constants; a state that does not fit the parameters -> the projector
  // throws and leaves its output untouched.
  std::vector<double> w(4, 0.0), g(4, 0.1);
  parameters<double> p(w);
  const dense_gradient<double> dg{std::span<const double>(g)};
  auto st = state_of(m1, v1);
  REQUIRE_THROWS_AS((adam_direction<double, dense_gradient<double>>(st, dg, {.beta1 = 1.0})), invalid_argument);
  REQUIRE_THROWS_AS((adam_direction<double, dense_gradient<double>>(st, dg, {.beta2 = -0.1})), invalid_argument);
  REQUIRE_THROWS_AS((adam_direction<double, dense_gradient<double>>(st, dg, {.eps = 0.0})), invalid_argument);
  st.exp_avg_sq[0].pop_back();
  const adam_direction<double, dense_gradient<double>> bad(st, dg);
  const random_projector<rademacher, default_generator> proj(3);
  std::vector<double> out(3, 7.0);
  REQUIRE_THROWS_AS(proj.project(p, bad, std::span<double>(out)), state_error);
  REQUIRE(out == std::vector<double>(3, 7.0));
  // A gradient of the wrong length; an output of the wrong length.
  const std::vector<double> g3(3, 0.1);
  REQUIRE_THROWS_AS(proj.project(p, dense_gradient<double>(std::span<const double>(g3)), std::span<double>(out)),
                    size_mismatch);
  std::vector<double> out2(2);
  REQUIRE_THROWS_AS(proj.project(p, dg, std::span<double>(out2)), size_mismatch);
  REQUIRE(out == std::vector<double>(3, 7.0));
}

TEST_CASE("random_projector: tensor by tensor with stream_offset sums to the whole projection", "[data][less]") {
  std::mt19937_64 rng(8);
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n0 = 1300, n1 = 250, k = 9;
  std::vector<double> w0(n0), w1(n1), f0(n0), f1(n1);
  for (auto& x : f0) x = nd(rng);
  for (auto& x : f1) x = nd(rng);
  parameters<double> p;
  p.add(w0).add(w1);
  const std::span<const double> fs[2] = {f0, f1};
  const random_projector<rademacher, default_generator> whole(k, {.seed = 4, .stream_offset = 10});
  std::vector<double> y(k), y0(k), y1(k);
  whole.project(p, dense_gradient<double>(std::span<const std::span<const double>>(fs)), std::span<double>(y));
  const random_projector<rademacher, default_generator> t0(k, {.seed = 4, .stream_offset = 10});
  const random_projector<rademacher, default_generator> t1(k, {.seed = 4, .stream_offset = 11});
  t0.project(parameters<double>(w0), dense_gradient<double>(std::span<const double>(f0)), std::span<double>(y0));
  t1.project(parameters<double>(w1), dense_gradient<double>(std::span<const double>(f1)), std::span<double>(y1));
  for (std::size_t j = 0; j < k; ++j) REQUIRE_THAT(y0[j] + y1[j], Catch::Matchers::WithinAbs(y[j], 1e-13));
}
