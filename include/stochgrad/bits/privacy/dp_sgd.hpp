// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief DP-SGD (Abadi et al. 2016) in Opacus's form: per-sample clipping, Gaussian noise on the
/// sum, division by the expected batch size, as a lazy gradient source that any optimizer reads;
/// Poisson subsampling; a seed from the OS entropy source.
///
/// The privatised gradient (design/seeds/data.md section 5.1; opacus/optimizers/optimizer.py
/// `clip_and_accumulate`, `add_noise`, `scale_grad`) is
/// \f[ n_i = \Big\lVert \big(\lVert g_{i,t}\rVert_2\big)_t \Big\rVert_2, \quad
///     c_i = \min\!\Big(\frac{C}{n_i + 10^{-6}}, 1\Big), \quad
///     \tilde g = \frac{\sum_i c_i\, g_i + z\,C\,\xi}{B_{\exp}}, \f]
/// with C = `max_grad_norm`, z = `noise_multiplier`, \f$\xi \sim N(0, I)\f$ and
/// \f$B_{\exp} = q \cdot N\f$ the expected batch size (times the accumulation steps). The noise
/// \f$\xi\f$ of tensor t at step k is regenerated from the counter-based generator under
/// `dp_noise_key(seed, stream_offset + t, k)`: it is never stored, and a run is reproducible.
///
/// **Privacy caveat.** Reproducible noise is not a privacy guarantee: an adversary who knows or
/// can guess the seed can subtract the noise. For a private run, draw the seed with
/// `secure_seed()` (the OS entropy source) and keep it secret. The library's Gaussians also
/// truncate their tails (|z| <= 6.34 for the default inversion generator, 5.887 for Box-Muller),
/// which adds a tiny delta term the accountant (rdp.hpp) does not cover. Opacus's `secure_mode`
/// (a CSPRNG for every draw) has no equivalent here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../rng/noise.hpp"
#include "../rng/philox.hpp"

namespace stochgrad::privacy {

/// The noise key of tensor stream `stream` at step k:
/// \f[ \{\,\text{seed} + \lfloor k / 2^{32}\rfloor \cdot \text{0x9E3779B97F4A7C15},\ \text{stream},\ k \bmod 2^{32}\,\} \f]
/// (the seed moves every 2^32 steps so a key never repeats; the sampler noise of optim/sgmcmc.hpp
/// uses the same rule).
constexpr noise_key dp_noise_key(std::uint64_t seed, std::uint32_t stream, std::uint64_t k) noexcept {
  return noise_key{seed + (k >> 32) * 0x9E3779B97F4A7C15ULL, stream, static_cast<std::uint32_t>(k)};
}

/// A 64-bit seed from the operating system's entropy source (`std::random_device`, which reads
/// the kernel's generator on Linux). Use it, and keep it secret, for a run whose noise must be
/// unpredictable; a fixed seed gives reproducible research runs only.
inline std::uint64_t secure_seed() {
  std::random_device rd;
  const std::uint64_t hi = rd(), lo = rd();
  return (hi << 32) ^ lo;
}

/// Per-sample gradients in Opacus's `grad_sample` layout: for each parameter tensor t, one span of
/// `batch * n_t` values, sample b at `[b n_t, (b + 1) n_t)` (n_t = the tensor's length). The
/// spans are owned by the caller.
template <real_scalar T>
struct per_sample_gradients {
  std::size_t batch = 0;                            ///< number of samples B in this (Poisson) batch; 0 is allowed
  std::span<const std::span<const T>> tensors{};    ///< one span per parameter tensor, sample-major
};

/// Hyper-parameters of the DP-SGD gradient.
struct dp_options {
  double max_grad_norm = 1.0;        ///< per-sample clipping norm C, finite and > 0
  double noise_multiplier = 1.0;     ///< z: noise std z C on the sum, finite and >= 0 (0: clipping only, not private)
  double expected_batch_size = 0.0;  ///< B_exp = q * dataset size (times accumulation steps), finite and > 0
  std::uint64_t seed = 0;            ///< noise seed (use secure_seed() for a private run)
  std::uint32_t stream_offset = 0;   ///< tensor t draws from stream `stream_offset + t`
};

namespace detail {

/// Validates the options (names the offending one).
inline void check_dp_options(const dp_options& o) {
  stochgrad::detail::require(std::isfinite(o.max_grad_norm) && o.max_grad_norm > 0.0, "dp_gradient", "max_grad_norm",
                             o.max_grad_norm, "finite and > 0");
  stochgrad::detail::require(std::isfinite(o.noise_multiplier) && o.noise_multiplier >= 0.0, "dp_gradient",
                             "noise_multiplier", o.noise_multiplier, "finite and >= 0");
  stochgrad::detail::require(std::isfinite(o.expected_batch_size) && o.expected_batch_size > 0.0, "dp_gradient",
                             "expected_batch_size", o.expected_batch_size, "finite and > 0");
}

/// Checks the per-sample layout against the parameters.
template <real_scalar T>
void check_per_sample(const parameters<T>& p, const per_sample_gradients<T>& g) {
  stochgrad::detail::require_same_size("dp_gradient", "parameter tensors", p.tensors(), "per-sample gradient tensors",
                                       g.tensors.size());
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const std::size_t want = stochgrad::detail::checked_product("dp_gradient", "batch", g.batch, "tensor length",
                                                                p.tensor(t).size());
    stochgrad::detail::require_same_size("dp_gradient", "batch x parameter tensor", want, "its per-sample gradients",
                                         g.tensors[t].size());
    stochgrad::detail::require_data("dp_gradient", "per-sample gradient", g.tensors[t].data(), g.tensors[t].size());
  }
}

}  // namespace detail

/// The per-sample norms and clipping factors of section 5.1: `norms[i]` = the norm over all
/// tensors of sample i (per-tensor norms first, then the norm of those, in double) and
/// `factors[i] = min(C / (norms[i] + 1e-6), 1)`.
/// @param p        the parameters (for the tensor lengths)
/// @param g        per-sample gradients
/// @param max_grad_norm  C, finite and > 0
/// @param norms    output, `g.batch` values
/// @param factors  output, `g.batch` values
/// @throws size_mismatch for a layout that does not fit `p` or outputs of the wrong length;
///         invalid_argument for a bad C; nonfinite_error when a sample's norm is not finite
///         (the outputs are then unspecified; nothing else is touched).
template <real_scalar T>
void clip_factors(const parameters<T>& p, const per_sample_gradients<T>& g, double max_grad_norm,
                  std::span<double> norms, std::span<double> factors) {
  stochgrad::detail::require(std::isfinite(max_grad_norm) && max_grad_norm > 0.0, "clip_factors", "max_grad_norm",
                             max_grad_norm, "finite and > 0");
  detail::check_per_sample(p, g);
  stochgrad::detail::require_same_size("clip_factors", "batch", g.batch, "norms", norms.size());
  stochgrad::detail::require_same_size("clip_factors", "batch", g.batch, "factors", factors.size());
  for (std::size_t b = 0; b < g.batch; ++b) {
    double sq = 0.0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const std::size_t n = p.tensor(t).size();
      const T* x = g.tensors[t].data() + b * n;
      double s = 0.0;
      for (std::size_t e = 0; e < n; ++e) s += static_cast<double>(x[e]) * static_cast<double>(x[e]);
      const double nt = std::sqrt(s);
      sq += nt * nt;
    }
    const double nb = std::sqrt(sq);
    if (!std::isfinite(nb)) {
      throw nonfinite_error("dp_gradient: per-sample gradient " + std::to_string(b) + " has a non-finite norm");
    }
    norms[b] = nb;
    factors[b] = std::min(max_grad_norm / (nb + 1e-6), 1.0);
  }
}

/// The privatised DP-SGD gradient as a lazy gradient source (section 5.1):
/// \f[ \tilde g_{t,e} = \Big(\sum_i c_i\, g_{i,t,e} + z C\, \xi_{t,e}\Big) / B_{\exp}, \f]
/// evaluated a SIMD chunk at a time inside the optimizer's fused pass (nothing parameter-sized is
/// written). The clipping factors are computed when the source is built (one read of the
/// per-sample gradients); the update reads them again once. Feed it to any optimizer
/// (`opt.update(p, state, g, ctx)`) or to a first-order stepper (`s.step(g)`).
///
/// @tparam T     parameter type
/// @tparam Noise the noise source \f$\xi\f$ (any gradient source); by default the counter-based
///               Gaussian of `dp_noise_key`. A test or a caller with its own noise may pass any
///               source (e.g. a `dense_gradient` of given standard-normal draws).
///
/// Order of operations (equal in the chunk and the scalar path): `acc = c_0 g_0`,
/// `acc = madd(c_i, g_i, acc)`, `acc = madd(zC, xi, acc)`, `out = acc / B_exp` (a division, as
/// Opacus's `grad / expected_batch_size`). An empty batch gives `zC xi / B_exp` (Opacus keeps the
/// noise). Holds a copy of the per-sample view and B factors (allocated at construction); the
/// per-sample memory and the array of per-tensor spans must outlive the source.
template <real_scalar T, class Noise = noise_gradient<gaussian, default_generator, T>>
class dp_gradient {
 public:
  /// Builds the source for step `k` with the counter-based noise of `dp_noise_key(o.seed, o.stream_offset + t, k)`.
  /// @param p    the parameters the gradient is for
  /// @param g    per-sample gradients (memory owned by the caller)
  /// @param o    options
  /// @param step the optimizer step k (selects the noise)
  /// @throws invalid_argument for bad options; size_mismatch for a layout that does not fit `p`;
  ///         nonfinite_error for a non-finite per-sample gradient.
  dp_gradient(const parameters<T>& p, const per_sample_gradients<T>& g, const dp_options& o, std::uint64_t step)
    requires std::is_same_v<Noise, noise_gradient<gaussian, default_generator, T>>
      : dp_gradient(p, g, o, make_noise(o, step)) {}

  /// Builds the source with a caller-supplied standard-normal noise source `xi`.
  /// @param p     the parameters the gradient is for
  /// @param g     per-sample gradients (memory owned by the caller)
  /// @param o     options (seed and stream_offset are not used)
  /// @param xi    the noise source (copied; its memory must outlive this source)
  /// @throws as the other constructor, plus what `xi.check(p)` throws.
  dp_gradient(const parameters<T>& p, const per_sample_gradients<T>& g, const dp_options& o, const Noise& xi)
      : g_(g), noise_(xi), sigma_c_(o.noise_multiplier * o.max_grad_norm), bexp_(o.expected_batch_size) {
    detail::check_dp_options(o);
    noise_.check(p);
    std::vector<double> norms(g.batch), f(g.batch);
    clip_factors(p, g, o.max_grad_norm, norms, f);
    factors_.resize(g.batch);
    for (std::size_t b = 0; b < g.batch; ++b) factors_[b] = static_cast<T>(f[b]);
    norms_ = std::move(norms);
    lengths_.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) lengths_[t] = p.tensor(t).size();
  }

  /// Registers of tensor t at [i, i + chunk): the formula above.
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = simd::width<T>;
    const std::size_t n = lengths_[t];
    const T* base = g_.tensors[t].data() + i;
    for (std::size_t r = 0; r < NB; ++r) out[r] = B(T(0));
    for (std::size_t b = 0; b < g_.batch; ++b) {
      const B c(factors_[b]);
      const T* x = base + b * n;
      if (b == 0) {
        for (std::size_t r = 0; r < NB; ++r) out[r] = c * B::load_unaligned(x + r * W);
      } else {
        for (std::size_t r = 0; r < NB; ++r) out[r] = simd::madd(c, B::load_unaligned(x + r * W), out[r]);
      }
    }
    B z[NB];
    noise_.load_chunk(t, i, theta, z);
    const B sc(static_cast<T>(sigma_c_)), d(static_cast<T>(bexp_));
    for (std::size_t r = 0; r < NB; ++r) out[r] = simd::madd(sc, z[r], out[r]) / d;
  }
  /// Element i of tensor t (bitwise equal to `load_chunk`).
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const std::size_t n = lengths_[t];
    const T* x = g_.tensors[t].data() + i;
    T acc = T(0);
    for (std::size_t b = 0; b < g_.batch; ++b) acc = b == 0 ? factors_[b] * x[0] : simd::madd(factors_[b], x[b * n], acc);
    const T z = noise_.at(t, i, th);
    return simd::madd(static_cast<T>(sigma_c_), z, acc) / static_cast<T>(bexp_);
  }
  /// @throws size_mismatch unless `p` has the tensor lengths the source was built for.
  void check(const parameters<T>& p) const {
    stochgrad::detail::require_same_size("dp_gradient", "parameter tensors", p.tensors(), "source tensors",
                                         lengths_.size());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      stochgrad::detail::require_same_size("dp_gradient", "parameter tensor", p.tensor(t).size(), "source tensor",
                                           lengths_[t]);
    }
  }

  /// Per-sample norms n_i (before clipping).
  std::span<const double> norms() const noexcept { return norms_; }
  /// Clipping factors c_i, in the parameter type.
  std::span<const T> factors() const noexcept { return factors_; }
  /// The noise std on the sum, z C.
  double noise_std() const noexcept { return sigma_c_; }

 private:
  static Noise make_noise(const dp_options& o, std::uint64_t step) noexcept {
    const noise_key k = dp_noise_key(o.seed, 0, step);
    return Noise(k.seed, k.draw, 1.0, o.stream_offset);
  }

  per_sample_gradients<T> g_;
  Noise noise_;
  double sigma_c_;
  double bexp_;
  std::vector<T> factors_;
  std::vector<double> norms_;
  std::vector<std::size_t> lengths_;
};

/// Poisson subsampling (section 5.1): sample i of a dataset of n joins the batch of step k
/// independently with probability q, decided by the Philox4x32-10 word
/// \f$w_i\f$ of counter `(i/4, 0, stream, k mod 2^32)`, key = the two halves of
/// `seed + (k / 2^32) 0x9E3779B97F4A7C15`, lane `i mod 4`: i is kept iff
/// \f$(w_i + 1/2)\,2^{-32} < q\f$ (so q = 0 keeps nothing and q = 1 everything; resolution 2^-32).
/// @param n      dataset size
/// @param q      sampling rate in [0, 1]
/// @param seed   sampling seed (use a different one from the noise seed)
/// @param step   step k
/// @param stream counter word 2 (e.g. to separate data sets)
/// @returns the indices of the batch, ascending.
/// @throws invalid_argument for q outside [0, 1].
inline std::vector<std::uint32_t> poisson_sample(std::uint32_t n, double q, std::uint64_t seed, std::uint64_t step,
                                                 std::uint32_t stream = 0) {
  stochgrad::detail::require(q >= 0.0 && q <= 1.0, "poisson_sample", "q", q, "in [0, 1]");
  const noise_key k = dp_noise_key(seed, stream, step);
  const philox_key key{static_cast<std::uint32_t>(k.seed), static_cast<std::uint32_t>(k.seed >> 32)};
  std::vector<std::uint32_t> out;
  out.reserve(static_cast<std::size_t>(static_cast<double>(n) * q * 1.1) + 16);
  philox_block w{};
  for (std::uint32_t i = 0; i < n; ++i) {
    if ((i & 3u) == 0) {
      const std::uint64_t blk = i >> 2;
      w = philox4x32<10>({static_cast<std::uint32_t>(blk), static_cast<std::uint32_t>(blk >> 32), k.stream, k.draw}, key);
    }
    if ((static_cast<double>(w[i & 3u]) + 0.5) * 0x1p-32 < q) out.push_back(i);
  }
  return out;
}

}  // namespace stochgrad::privacy
