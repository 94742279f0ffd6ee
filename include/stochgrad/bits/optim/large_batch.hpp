// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Large-batch training rules of Hoffer, Hubara & Soudry (2017; eladhoffer/bigBatch
/// `main_gbn.py`, `main_normal.py`, `utils.py`) and the geometric step size of Ma & Fattahi's
/// sub-gradient method (design/seeds/optimizers.md sections 6 and 7.4):
///
/// - `sqrt_batch_scaling<S>`: learning rate scaled by `sqrt(B / B_ref)` (`--lr_bb_fix`);
/// - `regime_adaptation<S>`: the regime stretched `ceil(B / B_ref)`-fold (`--regime_bb_fix`);
/// - `piecewise_constant`: a "sticky" regime dict (factor of the last boundary <= k);
/// - `geometric_schedule`: `rho^k` (SubGM, `eta_t = eta_0 rho^t`);
/// - ghost batch statistics (`ghost_batch_stats`, `ghost_batch_normalize`,
///   `ghost_update_running`): batch-norm statistics over the `torch.chunk` pieces of a batch, for
///   callers who implement batch norm in their own forward pass (the library has no layers).
///
/// The reference's gradient clipping (`clip_grad_norm(parameters, 5.0)`, factor
/// `min(5 / (||g|| + 1e-6), 1)`) is the library's global-norm clipping unchanged:
/// `optim::sgd_options::max_grad_norm = 5` (or `optim::clip_factor`). The gradient averaged over
/// ghost batches is `scaled_source(dense_gradient(sum of chunk gradients), 1 / chunks)` with
/// `chunks` the number of chunks actually produced (`ghost_layout::count`). The paper's recipe is
/// `optim::sgd<sqrt_batch_scaling<regime_adaptation<piecewise_constant>>>` with
/// `{.lr = lr0, .momentum = 0.9, .weight_decay = 1e-4, .max_grad_norm = 5}`.
///
/// Differences from the reference: the reference's regime dict is keyed by epoch and may also
/// set momentum and weight decay; `piecewise_constant` carries learning-rate factors only, in
/// whatever unit the caller's step counter counts. BatchNorm with a chunk of one row is refused
/// by torch at the forward pass; here `ghost_update_running` refuses it (the unbiased variance
/// `n/(n-1)` is undefined), while the statistics and the normalisation accept it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "schedule.hpp"

namespace stochgrad {

namespace detail {
/// Calls `s.validate()` when the schedule has one (for the wrappers below).
template <class S>
void validate_inner_schedule(const S& s) {
  if constexpr (requires { s.validate(); }) s.validate();
}
}  // namespace detail

/// Square-root learning-rate scaling for a batch of `batch` samples trained with a recipe tuned
/// at `reference_batch` (Hoffer et al. 2017, bigBatch `--lr_bb_fix`):
/// \f[ s(k) = \sqrt{B / B_\text{ref}}\; S(k). \f]
/// bigBatch's `main_gbn.py` uses `B_ref` = the ghost batch size (default 128), `main_normal.py`
/// uses 256 (the help text of both says 128). At `batch == reference_batch` it is `S` itself.
/// @tparam S the wrapped schedule (any `schedule_policy`).
template <schedule_policy S = constant_schedule>
struct sqrt_batch_scaling {
  /// Identifier in saved state.
  static constexpr detail::fixed_name name_text{"sqrt_batch_scaling<", detail::policy_name<S>(), ">"};
  static constexpr const char* name = name_text.text;  ///< part of the stepper's kind()
  std::uint64_t batch = 1;            ///< large batch size B (> 0)
  std::uint64_t reference_batch = 1;  ///< batch size B_ref the base learning rate was tuned for (> 0)
  S inner{};                          ///< the wrapped schedule S

  /// @throws invalid_argument if batch or reference_batch is 0; and from the inner schedule's validate().
  void validate() const {
    detail::require(batch > 0, "sqrt_batch_scaling", "batch", static_cast<double>(batch), "> 0");
    detail::require(reference_batch > 0, "sqrt_batch_scaling", "reference_batch", static_cast<double>(reference_batch),
                    "> 0");
    detail::validate_inner_schedule(inner);
  }
  /// The constant factor `sqrt(batch / reference_batch)`.
  double scale() const noexcept { return std::sqrt(static_cast<double>(batch) / static_cast<double>(reference_batch)); }
  /// Factor `sqrt(batch / reference_batch) * S(k)` at step k.
  double operator()(std::uint64_t k) const { return scale() * static_cast<double>(inner(k)); }
};

/// The regime-adaptation multiplier `ceil(batch / reference_batch)` (bigBatch `--regime_bb_fix`).
/// @param batch large batch size B (> 0)
/// @param reference_batch small batch size B_ref (> 0)
/// @throws invalid_argument if either is 0.
inline std::uint64_t regime_multiplier(std::uint64_t batch, std::uint64_t reference_batch) {
  detail::require(batch > 0, "regime_multiplier", "batch", static_cast<double>(batch), "> 0");
  detail::require(reference_batch > 0, "regime_multiplier", "reference_batch", static_cast<double>(reference_batch),
                  "> 0");
  return (batch + reference_batch - 1) / reference_batch;
}

/// Regime adaptation (Hoffer et al. 2017): train `M = ceil(B / B_ref)` times as long, so that the
/// large-batch run makes as many updates as the small-batch one, every regime boundary `e` moving
/// to `e M`:
/// \f[ s(k) = S(\lfloor k / M \rfloor). \f]
/// `S` is the schedule of the run before adaptation, in the unit of the caller's counter (epochs,
/// as bigBatch's regime dicts, or steps of the unadapted run); `total_steps` and `boundary` give the
/// stretched budget and boundaries. With `multiplier == 1` it is `S` itself.
/// (The spec, section 6.3, calls `S` "written in small-batch steps"; the formula, which this
/// follows, stretches whatever counter `S` is written in.)
/// @tparam S the wrapped schedule (any `schedule_policy`).
template <schedule_policy S = constant_schedule>
struct regime_adaptation {
  /// Identifier in saved state.
  static constexpr detail::fixed_name name_text{"regime_adaptation<", detail::policy_name<S>(), ">"};
  static constexpr const char* name = name_text.text;  ///< part of the stepper's kind()
  std::uint64_t multiplier = 1;  ///< M = ceil(B / B_ref) (> 0), e.g. from regime_multiplier()
  S inner{};                     ///< the wrapped schedule S

  /// @throws invalid_argument if multiplier is 0; and from the inner schedule's validate().
  void validate() const {
    detail::require(multiplier > 0, "regime_adaptation", "multiplier", static_cast<double>(multiplier), "> 0");
    detail::validate_inner_schedule(inner);
  }
  /// Factor `S(floor(k / M))` at step k.
  double operator()(std::uint64_t k) const { return static_cast<double>(inner(k / multiplier)); }
  /// The adapted budget `M * steps` for a run of `steps` before adaptation.
  /// @param steps the unadapted number of steps (or epochs)
  std::uint64_t total_steps(std::uint64_t steps) const noexcept { return steps * multiplier; }
  /// The adapted position `M * e` of a boundary at `e` before adaptation.
  /// @param e a boundary of the unadapted regime
  std::uint64_t boundary(std::uint64_t e) const noexcept { return e * multiplier; }
};

/// A "sticky" regime: boundaries `b_0 = 0 < b_1 < ... < b_{n-1}` with factors `v_0, ..., v_{n-1}`,
/// \f[ s(k) = v_j, \qquad j = \max\{ i : b_i \le k \}, \f]
/// as bigBatch's `adjust_optimizer` applies every regime entry whose epoch is <= the current one,
/// in order (learning-rate entries only). E.g. the CIFAR ResNet regime: boundaries {0, 81, 122, 164},
/// factors {1, 0.1, 0.01, 0.001} with base lr 0.1.
struct piecewise_constant {
  static constexpr const char* name = "piecewise_constant";  ///< part of the stepper's kind()
  std::vector<std::uint64_t> boundaries{0};  ///< b_i: strictly increasing, b_0 = 0
  std::vector<double> factors{1.0};          ///< v_i: finite and > 0, one per boundary

  /// @throws invalid_argument unless there is at least one boundary, the sizes agree, b_0 = 0,
  /// the boundaries increase strictly and every factor is finite and > 0.
  void validate() const {
    const char* w = "piecewise_constant";
    detail::require(!boundaries.empty(), w, "boundaries.size()", 0.0, ">= 1");
    if (boundaries.size() != factors.size()) {
      throw invalid_argument(std::string(w) + ": " + std::to_string(boundaries.size()) + " boundaries but " +
                             std::to_string(factors.size()) + " factors (one factor per boundary)");
    }
    detail::require(boundaries[0] == 0, w, "boundaries[0]", static_cast<double>(boundaries[0]), "0");
    for (std::size_t i = 1; i < boundaries.size(); ++i) {
      detail::require(boundaries[i] > boundaries[i - 1], w, "boundaries[i]", static_cast<double>(boundaries[i]),
                      "> boundaries[i - 1] (strictly increasing)");
    }
    for (double v : factors) detail::require(std::isfinite(v) && v > 0.0, w, "factor", v, "finite and > 0");
  }
  /// Factor `v_j` of the last boundary `b_j <= k`.
  double operator()(std::uint64_t k) const noexcept {
    std::size_t j = 0;
    while (j + 1 < boundaries.size() && boundaries[j + 1] <= k) ++j;
    return factors[j];
  }
};

/// Geometric decay \f[ s(k) = \rho^k, \qquad 0 < \rho \le 1, \f]
/// the step sizes `eta_t = eta_0 rho^t` of Ma & Fattahi's sub-gradient method (SubGM) with the
/// base learning rate `eta_0` (`optim::sgd<geometric_schedule>({.lr = eta_0}, {.rho = rho})`).
/// `rho = 1` is the constant step.
struct geometric_schedule {
  static constexpr const char* name = "geometric";  ///< part of the stepper's kind()
  double rho = 1.0;  ///< decay per step, in (0, 1]
  /// @throws invalid_argument unless 0 < rho <= 1.
  void validate() const { detail::require(rho > 0.0 && rho <= 1.0, "geometric_schedule", "rho", rho, "in (0, 1]"); }
  /// Factor `rho^k` at step k.
  double operator()(std::uint64_t k) const noexcept { return std::pow(rho, static_cast<double>(k)); }
};

/// How `torch.chunk(input, chunks)` splits `rows` rows: pieces of `size = ceil(rows / chunks)`
/// rows, `count = ceil(rows / size)` of them (possibly fewer than requested), the last one
/// `rows - (count - 1) size` rows long.
struct ghost_layout {
  std::size_t rows = 0;   ///< rows of the batch
  std::size_t size = 0;   ///< rows per chunk (all but the last)
  std::size_t count = 0;  ///< chunks actually produced
  /// First row of chunk c.
  /// @param c chunk index, < count
  std::size_t begin(std::size_t c) const noexcept { return c * size; }
  /// Rows of chunk c: `min(size, rows - c size)`.
  /// @param c chunk index, < count
  std::size_t rows_of(std::size_t c) const noexcept { return std::min(size, rows - c * size); }
};

/// The `torch.chunk` layout of `rows` rows into `chunks` requested pieces (bigBatch requests
/// `B // B_ghost` chunks: the CONFIGURED batch and ghost sizes, whatever the actual batch).
/// @param rows rows of the batch (> 0)
/// @param chunks requested number of chunks (> 0)
/// @throws invalid_argument if rows or chunks is 0.
inline ghost_layout ghost_chunk_layout(std::size_t rows, std::size_t chunks) {
  detail::require(rows > 0, "ghost_chunk_layout", "rows", 0.0, "> 0");
  detail::require(chunks > 0, "ghost_chunk_layout", "chunks", 0.0, "> 0");
  ghost_layout l;
  l.rows = rows;
  l.size = (rows + chunks - 1) / chunks;
  l.count = (rows + l.size - 1) / l.size;
  return l;
}

namespace detail {
inline void check_ghost_buffer(const char* what, const char* name, std::size_t have, std::size_t need) {
  if (have != need) {
    throw size_mismatch(std::string(what) + ": " + name + " has " + std::to_string(have) + " elements but needs " +
                        std::to_string(need));
  }
}
}  // namespace detail

/// Ghost batch statistics: per `torch.chunk` piece c of the row-major `rows x cols` batch `x`
/// (samples in rows, features in columns), the mean and the biased variance of every feature j,
/// \f[ \mu_{c,j} = \frac{1}{n_c}\sum_{i \in c} x_{ij}, \qquad
///     \sigma^2_{c,j} = \frac{1}{n_c}\sum_{i \in c} (x_{ij} - \mu_{c,j})^2 \f]
/// (two passes, accumulated in double), written row-major `count x cols` to `out_mean` and
/// `out_var`, which must have exactly `ghost_chunk_layout(rows, chunks).count * cols` elements.
/// @param x the batch, rows * cols elements
/// @param rows samples in the batch (> 0)
/// @param cols features (> 0)
/// @param chunks requested number of ghost batches (> 0; torch.chunk sizing)
/// @param out_mean per-chunk means (count * cols)
/// @param out_var per-chunk biased variances (count * cols)
/// @return the layout (the number of chunks actually produced is `count`)
/// @throws invalid_argument for rows, cols or chunks 0; size_mismatch for a buffer of the wrong
/// size. Nothing is written when it throws.
template <real_scalar T>
ghost_layout ghost_batch_stats(std::span<const T> x, std::size_t rows, std::size_t cols, std::size_t chunks,
                               std::span<T> out_mean, std::span<T> out_var) {
  const char* w = "ghost_batch_stats";
  detail::require(cols > 0, w, "cols", 0.0, "> 0");
  const ghost_layout l = ghost_chunk_layout(rows, chunks);
  detail::check_ghost_buffer(w, "x", x.size(), detail::checked_product(w, "rows", rows, "cols", cols));
  detail::check_ghost_buffer(w, "out_mean", out_mean.size(), l.count * cols);
  detail::check_ghost_buffer(w, "out_var", out_var.size(), l.count * cols);
  for (std::size_t c = 0; c < l.count; ++c) {
    const std::size_t b = l.begin(c), n = l.rows_of(c);
    for (std::size_t j = 0; j < cols; ++j) {
      double s = 0.0;
      for (std::size_t i = b; i < b + n; ++i) s += static_cast<double>(x[i * cols + j]);
      const double mu = s / static_cast<double>(n);
      double q = 0.0;
      for (std::size_t i = b; i < b + n; ++i) {
        const double e = static_cast<double>(x[i * cols + j]) - mu;
        q += e * e;
      }
      out_mean[c * cols + j] = static_cast<T>(mu);
      out_var[c * cols + j] = static_cast<T>(q / static_cast<double>(n));
    }
  }
  return l;
}

/// Ghost batch normalisation of `x` with the statistics of `ghost_batch_stats` (torch BatchNorm,
/// training mode, per chunk c): \f[ y_{ij} = \gamma_j \frac{x_{ij} - \mu_{c,j}}{\sqrt{\sigma^2_{c,j} + \epsilon}}
/// + \beta_j, \qquad i \in c. \f] `y` may alias `x`.
/// @param x the batch, layout.rows * cols elements (row-major)
/// @param layout the layout returned by ghost_batch_stats
/// @param cols features
/// @param mean per-chunk means (layout.count * cols)
/// @param var per-chunk biased variances (layout.count * cols)
/// @param gamma scale per feature (cols)
/// @param beta shift per feature (cols)
/// @param eps variance offset (finite, >= 0; torch's default 1e-5)
/// @param y output, layout.rows * cols elements
/// @throws size_mismatch for a buffer of the wrong size; invalid_argument for a bad eps. Nothing
/// is written when it throws.
template <real_scalar T>
void ghost_batch_normalize(std::span<const T> x, const ghost_layout& layout, std::size_t cols, std::span<const T> mean,
                           std::span<const T> var, std::span<const T> gamma, std::span<const T> beta, double eps,
                           std::span<T> y) {
  const char* w = "ghost_batch_normalize";
  detail::require(std::isfinite(eps) && eps >= 0.0, w, "eps", eps, "finite and >= 0");
  const std::size_t n = detail::checked_product(w, "rows", layout.rows, "cols", cols);
  detail::check_ghost_buffer(w, "x", x.size(), n);
  detail::check_ghost_buffer(w, "y", y.size(), n);
  detail::check_ghost_buffer(w, "mean", mean.size(), layout.count * cols);
  detail::check_ghost_buffer(w, "var", var.size(), layout.count * cols);
  detail::check_ghost_buffer(w, "gamma", gamma.size(), cols);
  detail::check_ghost_buffer(w, "beta", beta.size(), cols);
  for (std::size_t c = 0; c < layout.count; ++c) {
    for (std::size_t j = 0; j < cols; ++j) {
      const double mu = static_cast<double>(mean[c * cols + j]);
      const double inv = 1.0 / std::sqrt(static_cast<double>(var[c * cols + j]) + eps);
      for (std::size_t i = layout.begin(c); i < layout.begin(c) + layout.rows_of(c); ++i) {
        const double z = (static_cast<double>(x[i * cols + j]) - mu) * inv;
        y[i * cols + j] = static_cast<T>(static_cast<double>(gamma[j]) * z + static_cast<double>(beta[j]));
      }
    }
  }
}

/// The running-statistics updates of torch BatchNorm, once per ghost batch in chunk order:
/// \f[ r_m \leftarrow (1 - m)\, r_m + m\, \mu_c, \qquad
///     r_v \leftarrow (1 - m)\, r_v + m\, \sigma^2_c \frac{n_c}{n_c - 1}, \qquad c = 0, \dots, \text{count} - 1 \f]
/// (`m` the momentum, torch's default 0.1; `n_c` the rows of chunk c).
/// @param running_mean r_m per feature (cols), updated in place
/// @param running_var r_v per feature (cols), updated in place
/// @param layout the layout returned by ghost_batch_stats
/// @param mean per-chunk means (layout.count * cols)
/// @param var per-chunk biased variances (layout.count * cols)
/// @param momentum m in [0, 1]
/// @throws invalid_argument for momentum outside [0, 1] or a chunk of one row (torch refuses
/// one value per channel in training); size_mismatch for a buffer of the wrong size. Nothing is
/// changed when it throws.
template <real_scalar T>
void ghost_update_running(std::span<T> running_mean, std::span<T> running_var, const ghost_layout& layout,
                          std::span<const T> mean, std::span<const T> var, double momentum = 0.1) {
  const char* w = "ghost_update_running";
  detail::require(momentum >= 0.0 && momentum <= 1.0, w, "momentum", momentum, "in [0, 1]");
  const std::size_t cols = running_mean.size();
  detail::check_ghost_buffer(w, "running_var", running_var.size(), cols);
  detail::check_ghost_buffer(w, "mean", mean.size(), layout.count * cols);
  detail::check_ghost_buffer(w, "var", var.size(), layout.count * cols);
  for (std::size_t c = 0; c < layout.count; ++c) {
    detail::require(layout.rows_of(c) >= 2, w, "rows of a ghost batch", static_cast<double>(layout.rows_of(c)),
                    ">= 2 (the unbiased variance needs two rows)");
  }
  for (std::size_t c = 0; c < layout.count; ++c) {
    const double n = static_cast<double>(layout.rows_of(c));
    for (std::size_t j = 0; j < cols; ++j) {
      const double rm = static_cast<double>(running_mean[j]), rv = static_cast<double>(running_var[j]);
      running_mean[j] = static_cast<T>((1.0 - momentum) * rm + momentum * static_cast<double>(mean[c * cols + j]));
      running_var[j] =
          static_cast<T>((1.0 - momentum) * rv + momentum * static_cast<double>(var[c * cols + j]) * n / (n - 1.0));
    }
  }
}

}  // namespace stochgrad
