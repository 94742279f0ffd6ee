// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Default standard noise of the distribution estimators, from the counter-based Philox
/// streams (regenerated on demand, never stored; spec section 1.2 "Noise").
///
/// Sample `s` of a step with seed `seed` uses the noise vector `noise_key{seed, stream, s}`:
/// stream 0 holds the distribution's standard noise (N(0,1) for Gaussians, U(0,1) for Bernoulli
/// and categorical), element `i` of the vector is entry `i` of the sample's noise row; stream 1
/// holds the uniforms of the Rayleigh draws `r = sqrt(-2 ln u)` of the Gaussian measure-valued
/// estimator. The seed of step call `k` under master seed `m` is `step_seed(m, k)`.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"
#include "../rng/philox.hpp"

namespace stochgrad::dist {

/// Counter word 2 of the step-seed derivation (distinct from the zeroth-order estimators' domain).
inline constexpr std::uint32_t step_seed_domain = 0x44495354u;  // "DIST"

/// The noise seed of step call `call` under master seed `master`: Philox4x32-10 of the counter
/// `(call mod 2^32, call >> 32, 0x44495354, 0)` keyed by the master seed, words 0 and 1 as the
/// low and high halves.
/// @param master the estimator's master seed
/// @param call the step call number
constexpr std::uint64_t step_seed(std::uint64_t master, std::uint64_t call) noexcept {
  const philox_block o =
      philox4x32<10>({static_cast<std::uint32_t>(call), static_cast<std::uint32_t>(call >> 32), step_seed_domain, 0u},
                     {static_cast<std::uint32_t>(master), static_cast<std::uint32_t>(master >> 32)});
  return (static_cast<std::uint64_t>(o[1]) << 32) | o[0];
}

/// Writes `S = out.size() / per_sample` rows of standard noise of distribution tag `Noise`
/// (gaussian or uniform): `out[s * per_sample + i] = noise_value<Noise, Gen>({seed, stream, s}, i)`.
/// @param seed       the step's seed
/// @param per_sample noise entries per sample (>= 1)
/// @param out        S rows, row-major
/// @param stream     the noise stream (0: the distribution's noise; 1: the Rayleigh uniforms)
/// @throws invalid_argument unless `per_sample >= 1` divides `out.size()`
template <noise_distribution Noise, noise_generator Gen = default_generator, real_scalar T>
void fill_noise(std::uint64_t seed, std::size_t per_sample, std::span<T> out, std::uint32_t stream = 0) {
  stochgrad::detail::require(per_sample >= 1 && out.size() % per_sample == 0, "dist::fill_noise", "per_sample",
                             static_cast<double>(per_sample), ">= 1 and a divisor of out.size()");
  const std::size_t S = out.size() / per_sample;
  for (std::size_t s = 0; s < S; ++s) {
    const noise_key key{seed, stream, static_cast<std::uint32_t>(s)};
    for (std::size_t i = 0; i < per_sample; ++i) out[s * per_sample + i] = noise_value<Noise, Gen, T>(key, i);
  }
}

/// Writes Rayleigh(1) draws `r = sqrt(-2 ln u)`, `u` the uniforms of stream 1 laid out as in
/// `fill_noise` (the coupled draws of the Gaussian measure-valued estimator, section 2.1).
/// @param seed the step's seed
/// @param per_sample draws per sample
/// @param out S rows, row-major
/// @throws invalid_argument as fill_noise
template <noise_generator Gen = default_generator, real_scalar T>
void fill_rayleigh(std::uint64_t seed, std::size_t per_sample, std::span<T> out) {
  fill_noise<uniform, Gen>(seed, per_sample, out, 1u);
  for (T& x : out) x = static_cast<T>(std::sqrt(-2.0 * std::log(static_cast<double>(x))));
}

}  // namespace stochgrad::dist
