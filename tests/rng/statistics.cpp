// SPDX-License-Identifier: Apache-2.0
// Statistical checks of every generator policy (algorithms.md §11, PERFORMANCE.md goal 1).
//
// All seeds are fixed, so each check is deterministic; the tolerances are not tuned: each is
// derived from the standard error (SE) of the statistic under the null hypothesis and set to
// 5 SE (two-sided false-alarm probability 5.7e-7 per check; with a few hundred checks per
// generator the family-wise false-alarm rate stays below 1e-3), or to a stated critical value at
// level 1e-3 for the goodness-of-fit tests. Default runs use >= 1e6 samples; the `[.long]`
// variants repeat the distribution tests on 1e7 samples.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

// The spec reference, the default (philox_icdf<7>) and the inversion generator at the reference round
// count. (philox<7>, Box–Muller on 7 rounds, is not a default and is left out to keep the run short;
// its bits are the default generator's, and its Box–Muller mapping is philox<10>'s.)
#define SG_GENERATORS philox<10>, default_generator, philox_icdf<10>

namespace {

constexpr double k_sigmas = 5.0;  // tolerance in standard errors (see the file comment)

template <class D, class G>
std::vector<float> draw(std::size_t n, noise_key key) {
  std::vector<float> v(n);
  generate<D, G, float>(std::span<float>(v), key);
  return v;
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

struct raw_moments {
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
};
raw_moments moments_of(const std::vector<float>& v) {
  long double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (const float f : v) {
    const long double x = f, x2 = x * x;
    s1 += x;
    s2 += x2;
    s3 += x2 * x;
    s4 += x2 * x2;
  }
  const auto n = static_cast<long double>(v.size());
  return {static_cast<double>(s1 / n), static_cast<double>(s2 / n), static_cast<double>(s3 / n),
          static_cast<double>(s4 / n)};
}

// Pearson correlation of a[i] and b[i].
double correlation(const float* a, const float* b, std::size_t n) {
  long double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const long double x = a[i], y = b[i];
    sa += x;
    sb += y;
    saa += x * x;
    sbb += y * y;
    sab += x * y;
  }
  const auto nn = static_cast<long double>(n);
  const long double cov = sab / nn - (sa / nn) * (sb / nn);
  const long double va = saa / nn - (sa / nn) * (sa / nn), vb = sbb / nn - (sb / nn) * (sb / nn);
  return static_cast<double>(cov / std::sqrt(va * vb));
}

// Kolmogorov–Smirnov statistic D_n = sup |F_n(x) - F(x)| of the sample against a continuous CDF.
template <class Cdf>
double ks_statistic(std::vector<float> v, Cdf cdf) {
  std::sort(v.begin(), v.end());
  const auto n = static_cast<double>(v.size());
  double d = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double f = cdf(static_cast<double>(v[i]));
    d = std::max({d, static_cast<double>(i + 1) / n - f, f - static_cast<double>(i) / n});
  }
  return d;
}
// Asymptotic critical value of sqrt(n) D_n at level alpha = 1e-3 (Kolmogorov distribution:
// P(sqrt(n) D_n > c) ~ 2 exp(-2 c^2), so c = sqrt(-ln(alpha/2)/2) = 1.9495).
const double ks_crit_sqrt_n = std::sqrt(-std::log(1e-3 / 2) / 2);

// Pearson chi-square over `bins` equiprobable bins of N(0,1) (bin of z: floor(Phi(z) * bins)).
double chi_square_normal(const std::vector<float>& v, int bins) {
  std::vector<double> count(static_cast<std::size_t>(bins), 0.0);
  for (const float z : v) {
    const int b = std::min(bins - 1, static_cast<int>(normal_cdf(static_cast<double>(z)) * bins));
    count[static_cast<std::size_t>(b)] += 1;
  }
  const double expected = static_cast<double>(v.size()) / bins;
  double chi2 = 0;
  for (const double c : count) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}
// Upper 1e-3 critical value of chi-square with k degrees of freedom (Wilson–Hilferty:
// chi2_k ~ k (1 - 2/(9k) + z sqrt(2/(9k)))^3 with z = 3.0902, the 0.999 normal quantile).
double chi2_crit(double k) {
  const double h = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - h + 3.0902 * std::sqrt(h), 3.0);
}

template <class G>
void check_gaussian_distribution(std::size_t n, std::uint64_t seed) {
  const std::vector<float> z = draw<gaussian, G>(n, {seed, 3, 0});
  const double nd = static_cast<double>(n);
  const raw_moments m = moments_of(z);
  // Under N(0,1): E z = 0, E z^2 = 1, E z^3 = 0, E z^4 = 3, and the sample means of z^k have
  // SE sqrt(Var(z^k)/n) with Var z = 1, Var z^2 = E z^4 - 1 = 2, Var z^3 = E z^6 = 15,
  // Var z^4 = E z^8 - 9 = 105 - 9 = 96. (Box–Muller's cut at |z| = 5.887 changes these moments
  // by < 1e-6, far below the SE.)
  INFO("n=" << n << " mean=" << m.m1 << " E z^2=" << m.m2 << " E z^3=" << m.m3 << " E z^4=" << m.m4);
  CHECK(std::abs(m.m1) < k_sigmas * std::sqrt(1.0 / nd));
  CHECK(std::abs(m.m2 - 1.0) < k_sigmas * std::sqrt(2.0 / nd));
  CHECK(std::abs(m.m3) < k_sigmas * std::sqrt(15.0 / nd));
  CHECK(std::abs(m.m4 - 3.0) < k_sigmas * std::sqrt(96.0 / nd));
  // algorithms.md §11's fixed bound on 1e6 draws.
  if (n >= 1000000) CHECK(std::abs(m.m1) < 5e-3);
  // Kolmogorov–Smirnov against Phi at level 1e-3.
  const double d = ks_statistic(z, normal_cdf);
  INFO("KS sqrt(n) D = " << d * std::sqrt(nd) << " (critical " << ks_crit_sqrt_n << ")");
  CHECK(d * std::sqrt(nd) < ks_crit_sqrt_n);
  // Chi-square on 1000 equiprobable bins (resolves the shape at the 1e-3 quantile scale) at 1e-3.
  const double chi2 = chi_square_normal(z, 1000);
  INFO("chi2(999) = " << chi2 << " (critical " << chi2_crit(999) << ")");
  CHECK(chi2 < chi2_crit(999));
  // Tails: counts beyond |z| > 3 and > 4 are Binomial(n, p) with p = 2 (1 - Phi(t)); 5 SE bounds.
  for (const double t : {3.0, 4.0}) {
    const double p = std::erfc(t / std::sqrt(2.0));
    const auto c = static_cast<double>(std::count_if(z.begin(), z.end(), [t](float x) { return std::abs(x) > t; }));
    INFO("tail |z| > " << t << ": " << c << " expected " << nd * p);
    CHECK(std::abs(c - nd * p) < k_sigmas * std::sqrt(nd * p * (1 - p)));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("gaussian: moments to 4th order, KS and chi-square against N(0,1) on 1e6 draws",
                   "[rng][stats]", SG_GENERATORS) {
  check_gaussian_distribution<TestType>(1000000, 20240601);
}

TEMPLATE_TEST_CASE("gaussian: moments, KS and chi-square on 1e7 draws", "[rng][stats][.long]", SG_GENERATORS) {
  check_gaussian_distribution<TestType>(10000000, 777);
  check_gaussian_distribution<TestType>(10000000, 0xfeedfacecafebeefULL);
}

TEMPLATE_TEST_CASE("gaussian: no correlation between streams, draws, seeds, neighbours or squares",
                   "[rng][stats]", SG_GENERATORS) {
  using G = TestType;
  constexpr std::size_t n = 1000000;
  // Sample correlation of independent series: approximately N(0, 1/n); bound 5/sqrt(n) = 0.005.
  const double tol = k_sigmas / std::sqrt(static_cast<double>(n));
  const noise_key base{11, 2, 3};
  const std::vector<float> z = draw<gaussian, G>(n, base);
  const std::vector<float> other_stream = draw<gaussian, G>(n, {11, 3, 3});
  const std::vector<float> other_draw = draw<gaussian, G>(n, {11, 2, 4});
  const std::vector<float> other_seed = draw<gaussian, G>(n, {12, 2, 3});
  const std::vector<float> other_seed_hi = draw<gaussian, G>(n, {11 + (std::uint64_t{1} << 32), 2, 3});
  CHECK(std::abs(correlation(z.data(), other_stream.data(), n)) < tol);
  CHECK(std::abs(correlation(z.data(), other_draw.data(), n)) < tol);
  CHECK(std::abs(correlation(z.data(), other_seed.data(), n)) < tol);
  CHECK(std::abs(correlation(z.data(), other_seed_hi.data(), n)) < tol);
  // Lags 1..8 inside one vector: lag 1 pairs the two outputs of one Box–Muller pair, lags 2..3
  // pair words of one Philox block, lag 4+ pairs neighbouring blocks.
  for (std::size_t lag = 1; lag <= 8; ++lag) {
    INFO("lag " << lag);
    CHECK(std::abs(correlation(z.data(), z.data() + lag, n - lag)) < tol);
  }
  // Independence beyond correlation: squares of neighbours (for Box–Muller pairs, z_even^2 and
  // z_odd^2 share the radius; they are independent only if the transform is right). Under
  // independence the correlation of z_i^2 and z_{i+lag}^2 has SE 1/sqrt(n) as well.
  std::vector<float> sq(n);
  for (std::size_t i = 0; i < n; ++i) sq[i] = z[i] * z[i];
  for (std::size_t lag = 1; lag <= 4; ++lag) {
    INFO("squares, lag " << lag);
    CHECK(std::abs(correlation(sq.data(), sq.data() + lag, n - lag)) < tol);
  }
}

TEMPLATE_TEST_CASE("gaussian: empirical E[z z^T] over draws is close to the identity", "[rng][stats]",
                   SG_GENERATORS) {
  using G = TestType;
  // N directions z_k = noise(seed, stream, draw = k) of dimension d (as MeZO with q = N queries).
  // (1/N) sum z_k z_k^T: diagonal entries have SE sqrt(2/N), off-diagonal ones sqrt(1/N).
  constexpr std::size_t d = 16, N = 100000;
  std::vector<double> c(d * d, 0.0);
  std::vector<float> z(d);
  for (std::uint32_t k = 0; k < N; ++k) {
    generate<gaussian, G, float>(std::span<float>(z), {5, 0, k});
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t j = 0; j < d; ++j) c[i * d + j] += static_cast<double>(z[i]) * static_cast<double>(z[j]);
  }
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      const double v = c[i * d + j] / N;
      INFO("E[z_" << i << " z_" << j << "] = " << v);
      if (i == j) {
        CHECK(std::abs(v - 1.0) < k_sigmas * std::sqrt(2.0 / N));
      } else {
        CHECK(std::abs(v) < k_sigmas * std::sqrt(1.0 / N));
      }
    }
  }
}

TEMPLATE_TEST_CASE("gaussian: values are finite and within the generator's range", "[rng][stats]", SG_GENERATORS) {
  const std::vector<float> z = draw<gaussian, TestType>(1000000, {99, 0, 0});
  // Box–Muller on 24-bit uniforms: |z| <= sqrt(-2 ln 2^-25) = 5.887 (algorithms.md §2.1); an
  // inversion-based generator on 32-bit words: |z| <= Phi^-1(1 - 2^-33) = 6.34.
  const auto bad = std::count_if(z.begin(), z.end(), [](float x) { return !(std::isfinite(x) && std::abs(x) < 6.4f); });
  CHECK(bad == 0);
}

TEMPLATE_TEST_CASE("rademacher: exactly +-1, balanced signs, no correlation", "[rng][stats]", SG_GENERATORS) {
  using G = TestType;
  constexpr std::size_t n = 1000000;
  const std::vector<float> z = draw<rademacher, G>(n, {2024, 1, 0});
  std::size_t plus = 0, bad = 0;
  for (const float x : z) {
    bad += !(x == 1.0f || x == -1.0f);
    plus += (x > 0);
  }
  CHECK(bad == 0);
  // #(+1) ~ Binomial(n, 1/2): SE sqrt(n)/2.
  CHECK(std::abs(static_cast<double>(plus) - n / 2.0) < k_sigmas * std::sqrt(static_cast<double>(n)) / 2);
  const double tol = k_sigmas / std::sqrt(static_cast<double>(n));
  for (std::size_t lag = 1; lag <= 8; ++lag) CHECK(std::abs(correlation(z.data(), z.data() + lag, n - lag)) < tol);
  const std::vector<float> other_stream = draw<rademacher, G>(n, {2024, 2, 0});
  const std::vector<float> other_draw = draw<rademacher, G>(n, {2024, 1, 1});
  CHECK(std::abs(correlation(z.data(), other_stream.data(), n)) < tol);
  CHECK(std::abs(correlation(z.data(), other_draw.data(), n)) < tol);
}

TEMPLATE_TEST_CASE("segmented uniform: |D| in [0.5, 1), E[D^2] = 7/12, E[1/D^2] = 2, balanced signs",
                   "[rng][stats]", SG_GENERATORS) {
  using G = TestType;
  constexpr std::size_t n = 1000000;
  const double nd = n;
  const std::vector<float> z = draw<segmented_uniform, G>(n, {31337, 0, 0});
  long double s_abs = 0, s2 = 0, s_inv2 = 0;
  std::size_t plus = 0, bad = 0;
  for (const float x : z) {
    const float a = std::abs(x);
    bad += !(a >= 0.5f && a < 1.0f);
    plus += (x > 0);
    s_abs += a;
    s2 += static_cast<long double>(a) * a;
    s_inv2 += 1.0L / (static_cast<long double>(a) * a);
  }
  // |D| ~ U[0.5, 1): E|D| = 3/4, Var|D| = 1/48; E D^2 = 7/12, E D^4 = 31/80, Var D^2 = 31/80 - 49/144;
  // E D^-2 = 2, E D^-4 = 14/3, Var D^-2 = 2/3.
  CHECK(bad == 0);
  CHECK(std::abs(static_cast<double>(s_abs) / nd - 0.75) < k_sigmas * std::sqrt(1.0 / 48 / nd));
  CHECK(std::abs(static_cast<double>(s2) / nd - 7.0 / 12) < k_sigmas * std::sqrt((31.0 / 80 - 49.0 / 144) / nd));
  CHECK(std::abs(static_cast<double>(s_inv2) / nd - 2.0) < k_sigmas * std::sqrt((2.0 / 3) / nd));
  CHECK(std::abs(static_cast<double>(plus) - nd / 2) < k_sigmas * std::sqrt(nd) / 2);
  // |D| is uniform: KS against U[0.5, 1) at level 1e-3.
  std::vector<float> mag(n);
  for (std::size_t i = 0; i < n; ++i) mag[i] = std::abs(z[i]);
  const double d = ks_statistic(mag, [](double x) { return std::clamp(2 * x - 1, 0.0, 1.0); });
  CHECK(d * std::sqrt(nd) < ks_crit_sqrt_n);
  const double tol = k_sigmas / std::sqrt(nd);
  for (std::size_t lag = 1; lag <= 4; ++lag) CHECK(std::abs(correlation(z.data(), z.data() + lag, n - lag)) < tol);
}

TEMPLATE_TEST_CASE("uniform: strictly inside (0, 1), mean 1/2, variance 1/12, KS against U(0,1)", "[rng][stats]",
                   SG_GENERATORS) {
  using G = TestType;
  constexpr std::size_t n = 1000000;
  const double nd = n;
  const std::vector<float> u = draw<uniform, G>(n, {8, 8, 8});
  long double s1 = 0, s2 = 0;
  std::size_t bad = 0;
  for (const float x : u) {
    bad += !(x > 0.0f && x < 1.0f);
    s1 += x;
    s2 += static_cast<long double>(x) * x;
  }
  CHECK(bad == 0);
  // E u = 1/2 (Var 1/12), E u^2 = 1/3 (Var u^2 = 1/5 - 1/9 = 4/45).
  CHECK(std::abs(static_cast<double>(s1) / nd - 0.5) < k_sigmas * std::sqrt(1.0 / 12 / nd));
  CHECK(std::abs(static_cast<double>(s2) / nd - 1.0 / 3) < k_sigmas * std::sqrt(4.0 / 45 / nd));
  const double d = ks_statistic(u, [](double x) { return std::clamp(x, 0.0, 1.0); });
  CHECK(d * std::sqrt(nd) < ks_crit_sqrt_n);
  const double tol = k_sigmas / std::sqrt(nd);
  for (std::size_t lag = 1; lag <= 4; ++lag) CHECK(std::abs(correlation(u.data(), u.data() + lag, n - lag)) < tol);
}

TEST_CASE("uniform: extreme words map strictly inside (0, 1), scalar and SIMD", "[rng]") {
  // u(x) = ((x >> 8) + 0.5) 2^-24 is not representable in float for x >> 8 >= 2^23; the float value
  // must still stay strictly below 1 for the largest word and above 0 for the smallest.
  CHECK(detail::uniform01(std::uint32_t{0xffffffffu}) < 1.0f);
  CHECK(detail::uniform01(std::uint32_t{0xffffff00u}) < 1.0f);
  CHECK(detail::uniform01(std::uint32_t{0u}) > 0.0f);
  CHECK(detail::uniform01(std::uint32_t{0u}) == 0x1p-25f);
  const auto top = detail::uniform01(detail::u32b(0xffffffffu));
  const auto bottom = detail::uniform01(detail::u32b(0u));
  CHECK(xsimd::all(top < detail::f32b(1.0f)));
  CHECK(xsimd::all(bottom > detail::f32b(0.0f)));
  CHECK(detail::uniform01(std::uint32_t{0xffffffffu}) == top.get(0));
}
