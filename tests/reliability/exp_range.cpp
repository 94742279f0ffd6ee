// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 11: simd::exp must not hand |x| > 708 lanes to xsimd::exp unclamped: xsimd's
// double -> int64 conversion of x log2(e) is undefined behaviour for huge |x| (and NaN). GCC's
// -fsanitize=undefined does not include float-cast-overflow (clang's does), so tests/CMakeLists.txt
// adds -fsanitize=float-cast-overflow to this test in sanitizer builds (marker below); on main the
// asan preset aborted here with "1.4427e+30 is outside the range of representable values of type
// 'long int'". In release the values are checked against std::exp.
// stochgrad-test: float-cast-overflow
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace {

using V = xsimd::batch<double>;
constexpr std::size_t W = V::size;
constexpr double inf = std::numeric_limits<double>::infinity();

std::vector<double> exp_of(const std::vector<double>& x) {
  std::vector<double> out(x.size());
  for (std::size_t i = 0; i + W <= x.size(); i += W) {
    stochgrad::simd::exp(V::load_unaligned(x.data() + i)).store_unaligned(out.data() + i);
  }
  return out;
}

}  // namespace

TEST_CASE("simd::exp of huge, infinite and NaN lanes: std::exp's values, no undefined conversion", "[reliability][kernels][exp]") {
  const double big[] = {1e30, -1e30, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308, 5e18, -5e18,
                        1e4, -1e4, 750.0, -750.0, 710.0, -746.0, inf, -inf};
  const double normal[] = {0.0, 1.0, -2.5, 700.0};
  // Every huge value in every lane position, next to ordinary values and a NaN.
  for (const double b : big) {
    for (std::size_t lane = 0; lane < W; ++lane) {
      std::vector<double> x(W);
      for (std::size_t j = 0; j < W; ++j) x[j] = normal[j % 4];
      x[lane] = b;
      if (W > 1) x[(lane + 1) % W] = std::numeric_limits<double>::quiet_NaN();
      const std::vector<double> y = exp_of(x);
      for (std::size_t j = 0; j < W; ++j) {
        INFO("x = " << x[j] << " lane " << j);
        if (std::isnan(x[j])) {
          CHECK(std::isnan(y[j]));
        } else {
          const double e = std::exp(x[j]);
          if (e == 0.0 || std::isinf(e)) {
            CHECK(y[j] == e);
          } else {
            CHECK(y[j] == Approx(e).epsilon(1e-14));
          }
        }
      }
    }
  }
}

TEST_CASE("simd::exp between 708 and the overflow/underflow thresholds: xsimd's values, bit for bit", "[reliability][kernels][exp]") {
  // These lanes go to xsimd::exp unclamped (the clamp bounds lie beyond them), so the results are
  // xsimd's (whose subnormal results are not within a few ulp; not what is tested here).
  const double edge[] = {708.5, 709.0, 709.5, 709.78, -708.5, -709.5, -720.0, -745.0, -745.13};
  for (const double e : edge) {
    const V x(e);
    const V y = stochgrad::simd::exp(x), want = xsimd::exp(x);
    alignas(64) double a[W], b[W];
    y.store_aligned(a);
    want.store_aligned(b);
    INFO("x = " << e);
    CHECK(std::memcmp(a, b, sizeof a) == 0);
  }
}

TEST_CASE("the clipped surrogate with log-ratios near 1e30", "[reliability][pg][exp]") {
  // Eight tokens (two SIMD registers on AVX-512, four on AVX2), finite log-probs whose differences
  // are +-1e30: the ratio overflows to inf or underflows to 0 as std::exp says.
  std::vector<double> logp{1e30, 0.0, -1e30, 0.5, 1e30, -1e30, 0.0, 0.0}, old(8, 0.0), adv{1.0, -1.0}, coef(8);
  stochgrad::token_batch<double> b;
  b.sequences = 2;
  b.length = 4;
  b.logp = logp;
  b.old_logp = old;
  b.advantages = adv;
  const stochgrad::surrogate_result r = stochgrad::clipped_surrogate{}.evaluate(b, std::span<double>(coef));
  CHECK(r.diagnostics.ratio_max == inf);
  CHECK(r.diagnostics.ratio_min == 0.0);
  // With the KL term, exp(ref - logp) sees the same huge arguments.
  std::vector<double> ref(8, 0.0);
  b.ref_logp = ref;
  stochgrad::surrogate_options o;
  o.beta = 0.04;
  const stochgrad::surrogate_result k = stochgrad::clipped_surrogate(o).evaluate(b, std::span<double>(coef));
  CHECK(k.diagnostics.ratio_max == inf);
}
