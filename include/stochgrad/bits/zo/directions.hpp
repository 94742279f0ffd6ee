// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Perturbation directions of the zeroth-order estimators, and the per-step seeds.
///
/// A direction policy says how the random vector `v` of one query is produced (from the
/// counter-based generator: never stored, regenerated in every pass) and how the gradient estimate
/// uses it:
///
/// | tag                 | v (per entry)                    | gradient direction | used by            |
/// |---------------------|----------------------------------|--------------------|--------------------|
/// | `gaussian`          | N(0, 1)                          | v                  | MeZO, ES           |
/// | `rademacher`        | +-1                              | v (= 1/v)          | Spall SPSA         |
/// | `segmented_uniform` | +-U[0.5, 1) (BlackVIP)           | 1/v (inverse form) | SPSA-GC (BlackVIP) |
/// | `unit_sphere`       | N(0, I) / norm (over all tensors) | d * v / norm        | RGE (ZO-AE-DS)     |
///
/// (MeZO `zo_perturb_parameters`; Spall 1998; BlackVIP `spsa_grad_estimate_bi`; ZO-AE-DS). SPSA's inverse-perturbation estimate
/// `ghat_i = (y+ - y-) / (2 c Delta_i)` needs a distribution with finite inverse moments, which
/// is why Gaussian and uniform entries are not offered in the inverse form; for Rademacher the
/// inverse and the multiplicative form coincide and the cheaper one is used.
///
/// Tensor t of the parameter set uses noise stream t; query j of a step uses draw j; the step
/// uses the seed `step_seed(master, call)`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"
#include "../rng/noise.hpp"
#include "../rng/philox.hpp"

namespace stochgrad {

/// Direction tag: uniform on the unit sphere of the whole parameter vector (RGE,
/// ZO-AE-DS `AE_DS_train.py`): Gaussian entries divided by their Euclidean norm over all tensors. The estimate is
/// scaled by the dimension d, which makes it unbiased for the smoothed function (E[u u^T] = I/d).
struct unit_sphere {};

namespace zo {

/// A direction policy object P for parameters of type T:
/// - `P::inverse`: the gradient direction is `1/v` element-wise (SPSA inverse-perturbation form);
/// - `P::normalized`: `v` is divided by its norm over all tensors and the estimate multiplied by
///   the dimension (unit-sphere directions);
/// - `p.template chunk<T>(key, e0, out)`: `simd::chunk_batches<T>` registers of v at elements
///   [e0, e0 + simd::chunk) (e0 a multiple of simd::chunk);
/// - `p.template value<T>(key, e)`: element e of v, bitwise equal to the chunk path.
template <class P, class T>
concept direction_policy = real_scalar<T> && requires(const P& p, const noise_key& k, std::uint64_t e,
                                                      xsimd::batch<T>* out) {
  { P::inverse } -> std::convertible_to<bool>;
  { P::normalized } -> std::convertible_to<bool>;
  p.template chunk<T>(k, e, out);
  { p.template value<T>(k, e) } -> std::same_as<T>;
};

namespace detail {

template <class D>
struct tag_traits {
  static_assert(!std::is_same_v<D, uniform>,
                "stochgrad::zo: uniform (0, 1) noise is not a perturbation direction (its mean is 1/2, so the "
                "difference quotient is biased): use gaussian, rademacher, segmented_uniform or unit_sphere");
  static_assert(std::is_same_v<D, gaussian> || std::is_same_v<D, rademacher> ||
                    std::is_same_v<D, segmented_uniform> || std::is_same_v<D, unit_sphere>,
                "stochgrad::zo: the direction must be gaussian, rademacher, segmented_uniform, unit_sphere, or a "
                "direction policy object (see zo::direction_policy)");
  using noise = std::conditional_t<std::is_same_v<D, unit_sphere>, gaussian, D>;
  static constexpr bool inverse = std::is_same_v<D, segmented_uniform>;
  static constexpr bool normalized = std::is_same_v<D, unit_sphere>;
};

}  // namespace detail

/// The direction policy of a distribution tag (gaussian, rademacher, segmented_uniform,
/// unit_sphere) with generator G: v is regenerated from the counter-based generator.
template <class D, noise_generator G = default_generator>
struct noise_direction {
  using noise = typename detail::tag_traits<D>::noise;  ///< distribution of the raw entries
  /// True for `segmented_uniform`: the gradient direction is 1/v element-wise (SPSA inverse form).
  static constexpr bool inverse = detail::tag_traits<D>::inverse;
  /// True for `unit_sphere`: v is divided by its norm over all tensors and the estimate scaled by d.
  static constexpr bool normalized = detail::tag_traits<D>::normalized;

  /// `simd::chunk_batches<T>` registers of the raw entries of v at [e0, e0 + simd::chunk) (`noise_chunk`).
  template <real_scalar T>
  STOCHGRAD_ALWAYS_INLINE void chunk(const noise_key& k, std::uint64_t e0, xsimd::batch<T>* out) const noexcept {
    noise_chunk<noise, G>(k, e0, out);
  }
  /// Raw entry e of v (`noise_value`), bitwise equal to the chunk path.
  template <real_scalar T>
  STOCHGRAD_ALWAYS_INLINE T value(const noise_key& k, std::uint64_t e) const noexcept {
    return noise_value<noise, G, T>(k, e);
  }
};

namespace detail {
template <class D, class G, class = void>
struct direction_of {
  using type = noise_direction<D, G>;
};
template <class D, class G>
struct direction_of<D, G, std::void_t<decltype(D::inverse), decltype(D::normalized)>> {
  using type = D;
};
}  // namespace detail

/// The direction policy used for template argument D: D itself when it is a policy object (has
/// `inverse` and `normalized`), otherwise `noise_direction<D, G>`.
template <class D, class G = default_generator>
using direction_t = typename detail::direction_of<D, G>::type;

/// Word 2 of the Philox counter used for seed derivation ("ZOSE").
inline constexpr std::uint32_t step_seed_domain = 0x5A4F5345u;

/// The noise seed of step call number `call` under master seed `master`: Philox4x32-10 of the
/// counter `(call mod 2^32, call >> 32, 0x5A4F5345, 0)` keyed by the master seed, words 0 and 1 as
/// the low and high halves. Counter-based: any step's seed is computed directly, so runs are
/// reproducible and the next step's seed is known in advance (fused next perturbation).
constexpr std::uint64_t step_seed(std::uint64_t master, std::uint64_t call) noexcept {
  const philox_block o = philox4x32<10>(
      {static_cast<std::uint32_t>(call), static_cast<std::uint32_t>(call >> 32), step_seed_domain, 0u},
      {static_cast<std::uint32_t>(master), static_cast<std::uint32_t>(master >> 32)});
  return (static_cast<std::uint64_t>(o[1]) << 32) | o[0];
}

}  // namespace zo
}  // namespace stochgrad
