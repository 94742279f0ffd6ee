// SPDX-License-Identifier: Apache-2.0
// simd::exp for double registers against long double std::exp, in ulp of the double result.
//
// Bound. With |r| <= ln2/2 the Taylor truncation after r^13/13! is < 3e-18 relative; the
// Cody–Waite reduction carries about 2^-53 |k ln2_lo| (< 1.5e-16 absolute in r for |k| <= 1022,
// i.e. < 1.5e-16 relative in the result); Horner's 13 fused steps add well under 1 ulp because the
// terms decrease geometrically (|r| < 0.35); the final product by 2^k is exact. So the result is
// within 2 ulp; 3 is asserted to leave room for the reference (long double exp, 64-bit mantissa).
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <stochgrad/bits/config.hpp>
#include <stochgrad/bits/kernels/exp.hpp>

#include "support/catch.hpp"

namespace {

using V = xsimd::batch<double>;
constexpr std::size_t W = V::size;

double ulp_distance(double got, long double want) {
  const double w = static_cast<double>(want);
  const double ulp = std::nextafter(std::abs(w), std::numeric_limits<double>::infinity()) - std::abs(w);
  return static_cast<double>(std::abs(static_cast<long double>(got) - want) / static_cast<long double>(ulp));
}

std::vector<double> exp_of(const std::vector<double>& x) {
  std::vector<double> out(x.size());
  for (std::size_t i = 0; i + W <= x.size(); i += W) {
    stochgrad::simd::exp(V::load_unaligned(x.data() + i)).store_unaligned(out.data() + i);
  }
  return out;
}

}  // namespace

TEST_CASE("simd::exp: within 3 ulp of exp over [-708, 708] and on the PPO ratio range", "[kernels][exp]") {
  std::vector<double> x;
  // A dense grid on [-20, 20] (log-ratios and KL differences) and a coarse one over the full range.
  for (int i = -200000; i < 200000; ++i) x.push_back(i * 1e-4 + 1.234567e-5);
  for (int i = -70800; i < 70800; ++i) x.push_back(i * 0.01 + 3.3e-3);
  for (double v : {0.0, -0.0, 1e-300, -1e-300, 0.5 * std::log(2.0), -0.5 * std::log(2.0), 708.0, -708.0}) x.push_back(v);
  while (x.size() % W != 0) x.push_back(1.0);
  const std::vector<double> y = exp_of(x);
  double worst = 0.0, at = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = ulp_distance(y[i], std::exp(static_cast<long double>(x[i])));
    if (d > worst) {
      worst = d;
      at = x[i];
    }
  }
  INFO("worst ulp distance " << worst << " at x = " << at);
  CHECK(worst <= 3.0);
  CHECK(exp_of(std::vector<double>(W, 0.0))[0] == 1.0);
}

TEST_CASE("simd::exp: overflow, underflow and special values as std::exp", "[kernels][exp]") {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x = {710.0, -746.0, inf, -inf, 709.0, -740.0};
  while (x.size() % W != 0) x.push_back(0.0);
  const std::vector<double> y = exp_of(x);
  CHECK(std::isinf(y[0]));
  CHECK(y[1] == 0.0);
  CHECK(std::isinf(y[2]));
  CHECK(y[3] == 0.0);
  CHECK(y[4] == Approx(std::exp(709.0)).epsilon(1e-15));
  CHECK(y[5] == Approx(std::exp(-740.0)).margin(1e-320));
  std::vector<double> n(W, std::numeric_limits<double>::quiet_NaN());
  CHECK(std::isnan(exp_of(n)[0]));
}
