// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Global-norm gradient clipping, the non-finite gradient guard, and the pieces every
/// optimizer policy of bits/optim/ shares (per-group hyper-parameters, state checks).
///
/// Clipping rescales the whole gradient (every tensor of every group) by
/// \f[ c = \min\left(\frac{\text{max\_norm}}{\lVert g\rVert_2 + \epsilon}, 1\right), \qquad
///     \lVert g\rVert_2 = \sqrt{\textstyle\sum_t \sum_i g_{t,i}^2}, \f]
/// the rule of `torch.nn.utils.clip_grad_norm_` (epsilon 1e-6) and of sail-sg Adan's
/// `max_grad_norm` (epsilon = the optimizer's eps, sail-sg/Adan `adan.py` `step`). The norm needs one extra
/// read (or regeneration, for a lazy noise source) of the gradient before the fused update; the
/// factor itself is applied inside the update kernel, so the gradient is never written.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "parameters.hpp"
#include "source.hpp"

namespace stochgrad::optim {

/// The clipping factor `min(max_norm / (norm + eps), 1)`; 1 when `max_norm <= 0` (clipping off).
/// A non-finite norm gives 0 for +inf and NaN for NaN (the reference's behaviour).
inline double clip_coefficient(double norm, double max_norm, double eps) noexcept {
  if (!(max_norm > 0.0)) return 1.0;
  return std::min(max_norm / (norm + eps), 1.0);
}

/// Global L2 norm of a gradient source over all tensors of `p` (one read/regeneration pass,
/// thread-count independent).
/// @throws size_mismatch / invalid_argument from the source's check.
template <real_scalar T, class Source>
  requires gradient_source<Source, T>
double global_norm(const parameters<T>& p, const Source& g, const executor& ex = {}) {
  return std::sqrt(global_squared_norm(p, g, ex));
}

/// The factor global-norm clipping applies to `g`: `clip_coefficient(global_norm(p, g), max_norm, eps)`.
/// @throws invalid_argument for max_norm < 0 or eps < 0; size_mismatch from the source's check.
template <real_scalar T, class Source>
  requires gradient_source<Source, T>
double clip_factor(const parameters<T>& p, const Source& g, double max_norm, double eps = 1e-6,
                   const executor& ex = {}) {
  stochgrad::detail::require(max_norm >= 0.0, "clip_factor", "max_norm", max_norm, ">= 0 (0: no clipping)");
  stochgrad::detail::require(eps >= 0.0, "clip_factor", "eps", eps, ">= 0");
  if (max_norm == 0.0) return 1.0;
  return clip_coefficient(global_norm(p, g, ex), max_norm, eps);
}

/// The source `factor * g`, evaluated lazily (nothing is written): e.g.
/// `clipped(g, clip_factor(p, g, 1.0))` for an optimizer that does not clip by itself.
template <class Source>
scaled_source<Source> clipped(const Source& g, double factor) noexcept {
  return scaled_source<Source>(g, factor);
}

namespace detail {

/// What the optimizers decide before their fused pass.
struct prepass_result {
  bool skip = false;      ///< non-finite gradient and the skip guard is on
  double norm = -1.0;     ///< global gradient norm (-1 when not computed)
  double clip = 1.0;      ///< clipping factor to apply (1: none)
};

/// Computes the global norm when clipping (`max_norm > 0`) or the non-finite guard needs it, and
/// decides skip / clip factor. A non-finite squared norm is re-checked element by element (it can
/// also come from overflow of finite values, which is not a reason to skip).
template <real_scalar T, class Source>
prepass_result gradient_prepass(const parameters<T>& p, const Source& g, const executor& ex, double max_norm,
                                double clip_eps, bool skip_nonfinite) {
  prepass_result r;
  if (!(max_norm > 0.0) && !skip_nonfinite) return r;
  const double sq = global_squared_norm(p, g, ex);
  r.norm = std::sqrt(sq);
  if (skip_nonfinite && !std::isfinite(sq)) {
    for (std::size_t t = 0; t < p.tensors() && !r.skip; ++t) {
      const T* theta = p.tensor(t).data();
      for (std::size_t i = 0; i < p.tensor(t).size(); ++i) {
        T th = theta[i];
        if (!std::isfinite(g.at(t, i, th))) {
          r.skip = true;
          break;
        }
      }
    }
    if (r.skip) return r;
  }
  r.clip = clip_coefficient(r.norm, max_norm, clip_eps);
  return r;
}

/// Effective learning rate and weight decay of one group.
struct group_rates {
  double lr = 0.0;  ///< base (or group) lr * lr_scale * schedule factor * context factor
  double wd = 0.0;  ///< group weight decay (0 when the group is excluded from decay)
};

/// Resolves a group's overrides: `lr` replaces the base rate, `lr_scale` multiplies it,
/// `weight_decay` replaces the base decay, `decay = false` switches decay off.
inline group_rates resolve_group(const group_options& g, double base_lr, double base_wd, double factor) noexcept {
  group_rates r;
  r.lr = (g.lr ? *g.lr : base_lr) * g.lr_scale * factor;
  r.wd = g.decay ? (g.weight_decay ? *g.weight_decay : base_wd) : 0.0;
  return r;
}

/// Calls `s.validate()` when the schedule has one.
template <class S>
void validate_schedule(const S& s) {
  if constexpr (requires { s.validate(); }) s.validate();
}

/// invalid_argument unless `v` is finite and > 0.
inline void require_positive(const char* what, const char* name, double v) {
  stochgrad::detail::require(std::isfinite(v) && v > 0.0, what, name, v, "finite and > 0");
}
/// invalid_argument unless `v` is finite and >= 0.
inline void require_nonnegative(const char* what, const char* name, double v, const char* rule = "finite and >= 0") {
  stochgrad::detail::require(std::isfinite(v) && v >= 0.0, what, name, v, rule);
}
/// invalid_argument unless `v` is in [0, 1).
inline void require_beta(const char* what, const char* name, double v) {
  stochgrad::detail::require(v >= 0.0 && v < 1.0, what, name, v, "in [0, 1)");
}

/// state_error unless there is one counter per group.
template <real_scalar T>
void check_group_steps(const char* what, const std::vector<std::uint64_t>& steps, const parameters<T>& p) {
  if (steps.size() != p.groups()) {
    throw state_error(std::string(what) + ": the state has step counters for " + std::to_string(steps.size()) +
                      " parameter groups but the parameters have " + std::to_string(p.groups()));
  }
}

/// state_error unless `buf` holds one buffer per tensor of the tensor's length.
template <real_scalar T>
void check_tensor_buffers(const char* what, const char* field, const std::vector<std::vector<T>>& buf,
                          const parameters<T>& p) {
  if (buf.size() != p.tensors()) {
    throw state_error(std::string(what) + ": state field '" + field + "' has " + std::to_string(buf.size()) +
                      " tensors but the parameters have " + std::to_string(p.tensors()));
  }
  for (std::size_t t = 0; t < buf.size(); ++t) {
    if (buf[t].size() != p.tensor(t).size()) {
      throw state_error(std::string(what) + ": state field '" + field + "' tensor " + std::to_string(t) + " has " +
                        std::to_string(buf[t].size()) + " elements but the parameter tensor has " +
                        std::to_string(p.tensor(t).size()));
    }
  }
}

/// Square root of a scalar or of a register (correctly rounded in both cases, so the scalar tail
/// and the SIMD body of a kernel agree bitwise; no -ffast-math needed to vectorise it).
template <class V>
STOCHGRAD_ALWAYS_INLINE V vsqrt(const V& x) noexcept {
  if constexpr (std::is_floating_point_v<V>) {
    return std::sqrt(x);
  } else {
    return xsimd::sqrt(x);
  }
}

/// One zero-filled buffer per tensor.
template <real_scalar T>
std::vector<std::vector<T>> zero_buffers(const parameters<T>& p) {
  std::vector<std::vector<T>> b(p.tensors());
  for (std::size_t t = 0; t < p.tensors(); ++t) b[t].assign(p.tensor(t).size(), T(0));
  return b;
}


/// The argument checks shared by every optimizer's `update`: readable static_asserts for a state
/// of another optimizer or element type and for a gradient that is not a gradient source of T.
/// Returns whether the arguments are usable (callers dispatch on it with `if constexpr`, so a
/// failed check gives these messages and no cascade).
template <class Expected, class State, class Source, class T>
consteval bool update_arguments_ok() {
  static_assert(std::is_same_v<State, Expected>,
                "stochgrad::optim: the optimizer state does not belong to these parameters: it must be the "
                "state that this optimizer's init(p) returned for parameters of the same element type T "
                "(e.g. a float state cannot update double parameters)");
  static_assert(gradient_source<Source, T>,
                "stochgrad::optim: the gradient must be a gradient source of the parameters' element type "
                "(dense_gradient<T>, noise_gradient<D, G, T>, scaled_source, ...)");
  return std::is_same_v<State, Expected> && gradient_source<Source, T>;
}

}  // namespace detail
}  // namespace stochgrad::optim
