// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Counter-based Gamma and Beta variates. They come from the library's Philox streams
/// (`noise_at`), never from std:: engines, so a draw is a pure function of (seed, stream, draw) and
/// is the same on every platform and thread.
#pragma once

#include <cmath>
#include <cstdint>

#include "../error.hpp"
#include "noise.hpp"

namespace stochgrad {

/// Gamma(shape, 1) variate from the counter-based stream `key` (Marsaglia & Tsang 2000, "A simple
/// method for generating gamma variables", ACM TOMS 26(3)). Attempt j uses the normal at element
/// 4j and the acceptance uniform at element 4j+2 of the stream (words 0-1 and 2 of Philox block j,
/// so they are independent for every generator policy); for shape < 1 the boost `U^(1/shape)`
/// uses the uniform at element 3 (word 3 of block 0).
/// @throws invalid_argument unless shape > 0 and finite
template <noise_generator Gen = default_generator>
double gamma_variate(double shape, const noise_key& key) {
  detail::require(shape > 0.0 && std::isfinite(shape), "gamma_variate", "shape", shape, "finite and > 0");
  const double a = shape < 1.0 ? shape + 1.0 : shape;
  const double d = a - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  double result = d;
  for (std::uint64_t j = 0; j < (std::uint64_t{1} << 40); ++j) {
    const double x = static_cast<double>(noise_at<gaussian, Gen>(key, 4 * j));
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = static_cast<double>(noise_at<uniform, Gen>(key, 4 * j + 2));
    if (u < 1.0 - 0.0331 * (x * x) * (x * x) || std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) {
      result = d * v;
      break;
    }
  }
  if (shape < 1.0) {
    const double u = static_cast<double>(noise_at<uniform, Gen>(key, 3));
    result *= std::pow(u, 1.0 / shape);
  }
  return result;
}

/// Beta(a, b) variate `X / (X + Y)` with `X ~ Gamma(a)` from `key_a` and `Y ~ Gamma(b)` from
/// `key_b` (two different streams). @throws invalid_argument unless a, b > 0 and finite
template <noise_generator Gen = default_generator>
double beta_variate(double a, double b, const noise_key& key_a, const noise_key& key_b) {
  detail::require(a > 0.0 && std::isfinite(a), "beta_variate", "a", a, "finite and > 0");
  detail::require(b > 0.0 && std::isfinite(b), "beta_variate", "b", b, "finite and > 0");
  const double x = gamma_variate<Gen>(a, key_a);
  const double y = gamma_variate<Gen>(b, key_b);
  const double s = x + y;
  return s > 0.0 ? x / s : 0.5;  // both underflowed (tiny shapes): a coin at the middle
}

}  // namespace stochgrad
