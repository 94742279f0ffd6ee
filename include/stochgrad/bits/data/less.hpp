// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief LESS (Xia et al., ICML 2024): Adam-preconditioned gradient features, a random
/// projection that is regenerated and never stored, cosine influence scores aggregated over
/// checkpoints, and top-fraction selection.
///
/// The pipeline of design/seeds/data.md section 1 (reference: princeton-nlp/LESS @ 8abf9628b9,
/// less/data_selection/collect_grad_reps.py, matching.py, write_selected_data.py; projector:
/// MadryLab/trak @ 35f8446f05):
///
/// 1. Training example i at checkpoint c: `adam_direction` turns its gradient g and the
///    checkpoint's Adam moments (m, v) into the feature
///    \f$ f = m' / \sqrt{v' + \epsilon},\ m' = \beta_1 m + (1-\beta_1) g,\ v' = \beta_2 v + (1-\beta_2) g^2 \f$
///    (section 1.2). Validation examples use the raw gradient (`dense_gradient`), or its sign
///    (`sign_direction`).
/// 2. `random_projector` maps a feature of any length to k numbers,
///    \f$ y_j = s \sum_t \sum_e f_{t,e}\, z(\{\text{seed}, \text{offset} + t, j\}, e) \f$,
///    regenerating the projection entries from the counter-based generator as it streams over
///    the feature (section 1.3); \f$ s = 1/\sqrt{k} \f$ or 1 (the reference's unscaled "trak" mode).
/// 3. `less_score_matrix` sums the cosine similarities over checkpoints with the renormalised
///    learning-rate weights, \f$ S = \sum_c w_c\, \hat Y_c \hat V_c^\top \f$; `task_scores` takes
///    the mean over each subtask's validation examples and the max over subtasks;
///    `select_top_fraction` keeps the first \f$ K = \lfloor \text{fraction} \cdot N \rfloor \f$
///    indices by descending score (section 1.4).
///
/// Differences from the reference: the projection matrix is the library's own (section 1.3
/// **[stochgrad decision]**), so projected features are not those of TRAK's projectors (which
/// also differ from each other); only the cosine scores' structure is comparable. The reference
/// casts gradients to float16 before projecting; the library projects the feature in the
/// parameter type and accumulates in double across leaves of 1024 elements.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/adam.hpp"
#include "../optim/clip.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"

namespace stochgrad::data {

// ---------------------------------------------------------------------------------------------
// Section 1.2: gradient features

/// Constants of the Adam-preconditioned feature. The reference hard-codes these values in
/// `obtain_gradients_with_adam` (they are not read from the optimizer state); they coincide with
/// torch AdamW's defaults, which the warm-up run used.
struct adam_direction_options {
  double beta1 = 0.9;    ///< first-moment decay, in [0, 1)
  double beta2 = 0.999;  ///< second-moment decay, in [0, 1)
  double eps = 1e-8;     ///< added to v' inside the square root, finite and > 0
};

/// LESS's Adam-preconditioned direction of one example, as a lazy gradient source
/// (design/seeds/data.md section 1.2, `obtain_gradients_with_adam`):
/// \f[ m' = \beta_1 m + (1-\beta_1) g, \quad v' = \beta_2 v + (1-\beta_2)\, g \odot g, \quad
///     f = \frac{m'}{\sqrt{v' + \epsilon}}, \f]
/// with (m, v) = (`exp_avg`, `exp_avg_sq`) of an `optim::adam_state` (read, never written) and g
/// the example's gradient from the `Inner` source. Unlike the Adam step, \f$\epsilon\f$ is inside
/// the square root and there is no bias correction (the state's step counts are ignored): this
/// is the reference's formula. Where v = 0 and g = 0 the feature is \f$0.9\,m/10^{-4}\f$, up to
/// 1e4 times the stale momentum (reference behaviour, section 1.6).
///
/// Computed in registers inside whatever consumes it (a `random_projector`, `materialize`):
/// `mp = madd(1 - b1, g, b1 m)`, `vp = madd((1 - b2) g, g, b2 v)`, `f = mp / sqrt(vp + eps)`, in the
/// parameter type; the chunk and scalar paths agree bitwise. The state and the inner source must
/// outlive this source.
template <real_scalar T, class Inner>
class adam_direction {
 public:
  /// @param state the checkpoint's Adam moments (not copied)
  /// @param g     the example's gradient (not copied)
  /// @param o     the constants (defaults: the reference's)
  /// @throws invalid_argument for beta1 or beta2 outside [0, 1) or eps not finite and > 0.
  adam_direction(const optim::adam_state<T>& state, const Inner& g, const adam_direction_options& o = {})
      : s_(state),
        g_(g),
        b1_(static_cast<T>(o.beta1)),
        w1_(static_cast<T>(1.0 - o.beta1)),
        b2_(static_cast<T>(o.beta2)),
        w2_(static_cast<T>(1.0 - o.beta2)),
        eps_(static_cast<T>(o.eps)) {
    stochgrad::detail::require(o.beta1 >= 0.0 && o.beta1 < 1.0, "adam_direction", "beta1", o.beta1, "in [0, 1)");
    stochgrad::detail::require(o.beta2 >= 0.0 && o.beta2 < 1.0, "adam_direction", "beta2", o.beta2, "in [0, 1)");
    stochgrad::detail::require(std::isfinite(o.eps) && o.eps > 0.0, "adam_direction", "eps", o.eps, "finite and > 0");
  }

  /// Registers of tensor t at [i, i + chunk): the formula above.
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = simd::width<T>;
    g_.load_chunk(t, i, theta, out);
    const T* mp = s_.exp_avg[t].data() + i;
    const T* vp = s_.exp_avg_sq[t].data() + i;
    for (std::size_t r = 0; r < NB; ++r)
      out[r] = apply(B::load_unaligned(mp + r * W), B::load_unaligned(vp + r * W), out[r]);
  }
  /// Element i of tensor t (bitwise equal to `load_chunk`).
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    return apply(s_.exp_avg[t][i], s_.exp_avg_sq[t][i], static_cast<T>(g_.at(t, i, th)));
  }
  /// @throws size_mismatch from the inner source; state_error unless the Adam state fits `p`.
  void check(const parameters<T>& p) const {
    g_.check(p);
    s_.check(p);
  }

 private:
  template <class V>
  STOCHGRAD_ALWAYS_INLINE V apply(V m, V v, V g) const noexcept {
    const V mp = simd::madd(V(w1_), g, V(b1_) * m);
    const V vq = simd::madd(V(w2_) * g, g, V(b2_) * v);
    return mp / optim::detail::vsqrt(vq + V(eps_));
  }

  const optim::adam_state<T>& s_;
  const Inner& g_;
  T b1_, w1_, b2_, w2_, eps_;
};

/// `sign(g)` of the `Inner` source, as torch.sign: +1, -1, and zeros and NaNs passed through
/// (LESS's third gradient type "sign", section 1.2). The inner source must outlive this one.
template <class Inner>
class sign_direction : public stochgrad::detail::source_adaptor<Inner> {
 public:
  /// Wraps `inner` (not owned).
  explicit sign_direction(const Inner& inner) noexcept : stochgrad::detail::source_adaptor<Inner>(inner) {}
  /// The inner chunk mapped to its signs.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    this->inner_.load_chunk(t, i, theta, out);
    for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) {
      out[r] = xsimd::select(out[r] > B(T(0)), B(T(1)), xsimd::select(out[r] < B(T(0)), B(T(-1)), out[r]));
    }
  }
  /// The sign of the inner element.
  template <class T>
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const T g = this->inner_.at(t, i, th);
    return g > T(0) ? T(1) : (g < T(0) ? T(-1) : g);
  }
};

// ---------------------------------------------------------------------------------------------
// Section 1.3: the regenerated random projection

/// Output scaling of `random_projector`.
enum class projection_scale {
  jl,    ///< \f$ s = 1/\sqrt{k} \f$: \f$ E\lVert y\rVert^2 = \lVert f\rVert^2 \f$ (the Johnson-Lindenstrauss
         ///< normalisation; default)
  trak,  ///< \f$ s = 1 \f$: the reference projectors (TRAK's BasicProjector and CudaProjector) do not scale
};

/// Options of `random_projector`.
struct projection_options {
  std::uint64_t seed = 0;                         ///< projection seed (the reference uses 0)
  std::uint32_t stream_offset = 0;                ///< tensor t uses noise stream `stream_offset + t`
  projection_scale scale = projection_scale::jl;  ///< output scaling (cancels in the cosine scores)
};

/// A k-dimensional random projection whose matrix is never materialised (design/seeds/data.md
/// section 1.3, **[stochgrad decision]**). Entry (e, j) of tensor t is the counter-based variate
/// \f[ P_{t}[e, j] = z_D(\text{noise\_key}\{\text{seed},\ \text{stream\_offset} + t,\ j\},\ e) \f]
/// (`noise_at<D, G>`; Rademacher \f$\pm 1\f$ or standard normal), and a feature f maps to
/// \f[ y_j = s \sum_t \sum_e f_{t,e}\, P_t[e, j], \qquad j = 0..k-1, \f]
/// with \f$ s = 1/\sqrt{k} \f$ (default, \f$E[\langle y(a), y(b)\rangle] = \langle a, b\rangle\f$)
/// or 1 (`projection_scale::trak`).
///
/// @tparam D distribution tag: `rademacher` (the reference's choice) or `gaussian`
/// @tparam G generator policy. Named explicitly on purpose: the values depend on it
///           (`philox_icdf<7>`, the library default, bit-slices Rademacher signs and gives other
///           entries than `philox<10>`), so a stored feature set is reproducible only with the
///           same policy.
///
/// Order of operations (fixed; independent of the executor's thread count): each tensor is cut
/// into leaves of 1024 elements; a leaf's contribution to column j is a dot product in the
/// parameter type with `simd::chunk_batches<T>` accumulators over the full chunks (summed
/// pairwise, then horizontally), plus the tail elements accumulated in order, converted to
/// double; leaves are added to column j's double sum in tensor/element order; s is applied last.
/// Work: one generator evaluation per entry (128 entries per Philox call for the bit-sliced
/// Rademacher, 4 otherwise) and one multiply-add, amortised over a batch of examples
/// (`project_batch`). Threads split the columns, so the source is evaluated once per thread.
///
/// Tensor by tensor: a `parameters` set holding only tensor t, projected with `stream_offset`
/// increased by t, gives tensor t's contribution; the sum of the contributions is the whole
/// projection up to the rounding of the double additions (e.g. to project gradients as a
/// backward pass produces them).
template <noise_distribution D, noise_generator G>
requires(std::is_same_v<D, rademacher> || std::is_same_v<D, gaussian>) class random_projector {
 public:
  /// Elements per leaf of the fixed summation order.
  static constexpr std::size_t leaf = 1024;

  /// @param k output dimension, in [1, 2^32] (column j is noise draw j)
  /// @param o seed, stream offset and scaling
  /// @throws invalid_argument for k outside [1, 2^32].
  explicit random_projector(std::size_t k, const projection_options& o = {}) : k_(k), o_(o) {
    stochgrad::detail::require(k >= 1 && k <= (std::size_t{1} << 32), "random_projector", "k", static_cast<double>(k),
                               "in [1, 2^32]");
    s_ = o.scale == projection_scale::jl ? 1.0 / std::sqrt(static_cast<double>(k)) : 1.0;
  }

  /// Output dimension k.
  std::size_t dim() const noexcept { return k_; }
  /// The output scale s.
  double scale() const noexcept { return s_; }
  /// The options.
  const projection_options& options() const noexcept { return o_; }

  /// The unscaled entry \f$P_t[e, j]\f$ (the value the projection multiplies element e of tensor t
  /// by for column j, before the scale s).
  float entry(std::size_t tensor, std::uint64_t element, std::size_t column) const noexcept {
    return noise_at<D, G>(key(tensor, column), element);
  }

  /// Projects one feature: `out[j] = y_j` (k values).
  /// @param p   the parameters the feature is shaped like (tensor lengths; their values are
  ///            passed to the source as it requires, and not modified)
  /// @param g   the feature, any gradient source (`adam_direction`, `dense_gradient`, ...)
  /// @param out k outputs (float or double; the sums are double and rounded once on store)
  /// @param ex  where to run
  /// @throws size_mismatch when `out` does not hold k values, or from `g.check(p)`; state_error
  ///         from an `adam_direction` whose state does not fit `p`. `out` is untouched then.
  template <real_scalar T, class Source, real_scalar U>
  void project(const parameters<T>& p, const Source& g, std::span<U> out, const executor& ex = {}) const {
    project_batch(p, std::span<const Source>(&g, 1), out, ex);
  }

  /// Projects a batch of features with one regeneration of the matrix:
  /// `out[b k + j] = y_j(g[b])` (row-major, `g.size()` x k).
  /// @throws size_mismatch when `out` does not hold `g.size() * k` values, or from a source's
  ///         check; state_error as `project`. `out` is untouched then.
  template <real_scalar T, class Source, real_scalar U>
  void project_batch(const parameters<T>& p, std::span<const Source> g, std::span<U> out,
                     const executor& ex = {}) const {
    static_assert(gradient_source<Source, T>, "random_projector: Source must be a gradient source for T");
    const std::size_t nb = g.size();
    stochgrad::detail::require_same_size("random_projector", "batch x k",
                                         stochgrad::detail::checked_product("random_projector", "batch", nb, "k", k_),
                                         "outputs", out.size());
    stochgrad::detail::require_data("random_projector", "outputs", out.data(), out.size());
    for (const Source& s : g) s.check(p);
    if (nb == 0) return;
    // Column blocks: one per thread. Each column's sum runs over the leaves in order whatever the
    // blocking, so the bits do not depend on the number of threads.
    const std::size_t blocks = std::min<std::size_t>(k_, std::max<unsigned>(1u, ex.concurrency()));
    auto task = [&](std::size_t blk) {
      const std::size_t j0 = blk * k_ / blocks, j1 = (blk + 1) * k_ / blocks;
      run_columns(p, g, j0, j1, out);
    };
    if (blocks == 1) {
      task(0);
    } else {
      ex.run(blocks, task);
    }
  }

 private:
  noise_key key(std::size_t t, std::size_t j) const noexcept {
    return noise_key{o_.seed, o_.stream_offset + static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(j)};
  }

  // Columns [j0, j1) of every output row.
  template <real_scalar T, class Source, real_scalar U>
  void run_columns(const parameters<T>& p, std::span<const Source> g, std::size_t j0, std::size_t j1,
                   std::span<U> out) const {
    using B = xsimd::batch<T>;
    constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = simd::width<T>;
    static_assert(leaf % C == 0, "random_projector: a leaf must hold whole chunks");
    const std::size_t nb = g.size(), nc = j1 - j0;
    std::vector<double> acc(nb * nc, 0.0);
    std::vector<T> feat(nb * leaf), z(leaf);
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const T* theta = p.tensor(t).data();
      const std::size_t n = p.tensor(t).size();
      for (std::size_t e0 = 0; e0 < n; e0 += leaf) {
        const std::size_t len = std::min(leaf, n - e0), full = len - len % C;
        // The leaf of every feature in the batch, evaluated once.
        for (std::size_t b = 0; b < nb; ++b) {
          T* f = feat.data() + b * leaf;
          for (std::size_t i = 0; i < full; i += C) {
            B th[NB], gr[NB];
            for (std::size_t r = 0; r < NB; ++r) th[r] = B::load_unaligned(theta + e0 + i + r * W);
            g[b].load_chunk(t, e0 + i, th, gr);
            for (std::size_t r = 0; r < NB; ++r) gr[r].store_unaligned(f + i + r * W);
          }
          for (std::size_t i = full; i < len; ++i) {
            T th = theta[e0 + i];
            f[i] = g[b].at(t, e0 + i, th);
          }
        }
        for (std::size_t j = j0; j < j1; ++j) {
          const noise_key kj = key(t, j);
          if (nb == 1) {  // the variates go straight into the dot product
            acc[j - j0] += leaf_dot_fused<T>(feat.data(), kj, e0, full, len);
            continue;
          }
          for (std::size_t i = 0; i < full; i += C) {
            B zr[NB];
            noise_chunk<D, G>(kj, e0 + i, zr);
            for (std::size_t r = 0; r < NB; ++r) zr[r].store_unaligned(z.data() + i + r * W);
          }
          for (std::size_t i = full; i < len; ++i) z[i] = noise_value<D, G, T>(kj, e0 + i);
          for (std::size_t b = 0; b < nb; ++b)
            acc[b * nc + (j - j0)] += leaf_dot<T>(feat.data() + b * leaf, z.data(), full, len);
        }
      }
    }
    for (std::size_t b = 0; b < nb; ++b) {
      for (std::size_t j = j0; j < j1; ++j) out[b * k_ + j] = static_cast<U>(s_ * acc[b * nc + (j - j0)]);
    }
  }

  // Dot product of a leaf: NB register accumulators over [0, full), combined pairwise, summed
  // horizontally; the tail [full, len) in order; the sum in double.
  template <real_scalar T>
  static double leaf_dot(const T* f, const T* z, std::size_t full, std::size_t len) noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = simd::width<T>;
    B a[NB];
    for (std::size_t r = 0; r < NB; ++r) a[r] = B(T(0));
    for (std::size_t i = 0; i < full; i += C) {
      for (std::size_t r = 0; r < NB; ++r)
        a[r] = simd::madd(B::load_unaligned(f + i + r * W), B::load_unaligned(z + i + r * W), a[r]);
    }
    for (std::size_t w = NB / 2; w >= 1; w /= 2) {
      for (std::size_t r = 0; r < w; ++r) a[r] = a[r] + a[r + w];
    }
    T tail = T(0);
    for (std::size_t i = full; i < len; ++i) tail = simd::madd(f[i], z[i], tail);
    return static_cast<double>(simd::reduce_add(a[0])) + static_cast<double>(tail);
  }

  // leaf_dot with the variates of column key `kj` generated in registers (same arithmetic).
  template <real_scalar T>
  static double leaf_dot_fused(const T* f, const noise_key& kj, std::size_t e0, std::size_t full,
                               std::size_t len) noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = simd::width<T>;
    B a[NB];
    for (std::size_t r = 0; r < NB; ++r) a[r] = B(T(0));
    for (std::size_t i = 0; i < full; i += C) {
      B zr[NB];
      noise_chunk<D, G>(kj, e0 + i, zr);
      for (std::size_t r = 0; r < NB; ++r) a[r] = simd::madd(B::load_unaligned(f + i + r * W), zr[r], a[r]);
    }
    for (std::size_t w = NB / 2; w >= 1; w /= 2) {
      for (std::size_t r = 0; r < w; ++r) a[r] = a[r] + a[r + w];
    }
    T tail = T(0);
    for (std::size_t i = full; i < len; ++i) tail = simd::madd(f[i], noise_value<D, G, T>(kj, e0 + i), tail);
    return static_cast<double>(simd::reduce_add(a[0])) + static_cast<double>(tail);
  }

  std::size_t k_;
  projection_options o_;
  double s_ = 1.0;
};

// ---------------------------------------------------------------------------------------------
// Section 1.4: scores, aggregation over checkpoints, selection

/// The reference's guard of `torch.nn.functional.normalize`: rows are divided by \f$\max(\lVert x\rVert, 10^{-12})\f$.
inline constexpr double less_normalize_eps = 1e-12;

/// L2-normalises the rows of a row-major `rows x k` matrix in place:
/// \f$ x \leftarrow x / \max(\lVert x\rVert_2, 10^{-12}) \f$ (norm in double). A zero row stays 0.
/// @throws invalid_argument for k = 0; size_mismatch when the size is not a multiple of k;
///         nonfinite_error when an element is not finite (checked first: `x` is then untouched).
template <real_scalar U>
void normalize_rows(std::span<U> x, std::size_t k) {
  stochgrad::detail::require(k >= 1, "normalize_rows", "k", 0.0, ">= 1");
  if (x.size() % k != 0) {
    throw size_mismatch("normalize_rows: " + std::to_string(x.size()) + " values are not a whole number of rows of " +
                        std::to_string(k));
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) throw nonfinite_error("normalize_rows: element " + std::to_string(i) + " is not finite");
  }
  for (std::size_t r = 0; r < x.size() / k; ++r) {
    U* row = x.data() + r * k;
    double sq = 0.0;
    for (std::size_t j = 0; j < k; ++j) sq += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    const double d = std::max(std::sqrt(sq), less_normalize_eps);
    for (std::size_t j = 0; j < k; ++j) row[j] = static_cast<U>(static_cast<double>(row[j]) / d);
  }
}

/// Checkpoint weights from the learning rates (matching.py): \f$ w_c = \text{lr}_c / \sum_{c'} \text{lr}_{c'} \f$
/// (the reference divides only when the sum is not 1, which is the same).
/// @param lr one value per checkpoint (the reference: the average learning rate of the epoch)
/// @throws invalid_argument for no checkpoints, a value that is not finite or < 0, or a sum that
///         is not > 0 (the reference divides by zero; **[stochgrad decision]** reject, section 1.6).
inline std::vector<double> checkpoint_weights(std::span<const double> lr) {
  stochgrad::detail::require(!lr.empty(), "checkpoint_weights", "checkpoints", 0.0, ">= 1");
  double sum = 0.0;
  for (double w : lr) {
    stochgrad::detail::require(std::isfinite(w) && w >= 0.0, "checkpoint_weights", "lr", w, "finite and >= 0");
    sum += w;
  }
  stochgrad::detail::require(sum > 0.0 && std::isfinite(sum), "checkpoint_weights", "sum of lr", sum, "finite and > 0");
  std::vector<double> w(lr.begin(), lr.end());
  for (double& x : w) x /= sum;
  return w;
}

namespace detail {

template <real_scalar U>
std::size_t feature_rows(const char* what, const char* name, std::span<const U> x, std::size_t k) {
  stochgrad::detail::require_data(what, name, x.data(), x.size());
  if (x.size() % k != 0) {
    throw size_mismatch(std::string(what) + ": " + name + " has " + std::to_string(x.size()) +
                        " values, not a whole number of rows of k = " + std::to_string(k));
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      throw nonfinite_error(std::string(what) + ": " + name + " value " + std::to_string(i) + " is not finite");
    }
  }
  return x.size() / k;
}

// Row r of x (k values), l2-normalised as torch.nn.functional.normalize, into out (double).
template <real_scalar U>
void normalized_row(const U* x, std::size_t k, double* out) noexcept {
  double sq = 0.0;
  for (std::size_t j = 0; j < k; ++j) sq += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  const double d = std::max(std::sqrt(sq), less_normalize_eps);
  for (std::size_t j = 0; j < k; ++j) out[j] = static_cast<double>(x[j]) / d;
}

}  // namespace detail

/// Adds one checkpoint's weighted cosine scores (matching.py `calculate_influence_score` after
/// normalisation): \f$ S \mathrel{+}= w\, \hat Y \hat V^\top \f$, with \f$\hat Y\f$, \f$\hat V\f$
/// the row-normalised training (`n x k`) and validation (`m x k`) features (row-major, as
/// `normalize_rows`; the inputs are not modified) and S row-major `n x m`.
/// @param train  n x k projected training features
/// @param val    m x k projected validation features, m >= 1
/// @param k      feature dimension, >= 1
/// @param weight the checkpoint's weight w (finite)
/// @param scores n x m accumulator
/// @throws invalid_argument for k = 0, an empty validation set or a non-finite weight;
///         size_mismatch for sizes that do not fit; nonfinite_error for a non-finite feature. All
///         checks precede the first write: `scores` is untouched when it throws.
template <real_scalar U>
void add_cosine_scores(std::span<const U> train, std::span<const U> val, std::size_t k, double weight,
                       std::span<double> scores) {
  const char* what = "add_cosine_scores";
  stochgrad::detail::require(k >= 1, what, "k", 0.0, ">= 1");
  stochgrad::detail::require(std::isfinite(weight), what, "weight", weight, "finite");
  const std::size_t n = detail::feature_rows(what, "training features", train, k);
  const std::size_t m = detail::feature_rows(what, "validation features", val, k);
  stochgrad::detail::require(m >= 1, what, "validation examples", 0.0, ">= 1");
  stochgrad::detail::require_same_size(what, "scores", scores.size(), "training x validation examples",
                                       stochgrad::detail::checked_product(what, "training", n, "validation", m));
  std::vector<double> vn(m * k), yn(k);
  for (std::size_t b = 0; b < m; ++b) detail::normalized_row(val.data() + b * k, k, vn.data() + b * k);
  for (std::size_t i = 0; i < n; ++i) {
    detail::normalized_row(train.data() + i * k, k, yn.data());
    for (std::size_t b = 0; b < m; ++b) {
      const double* v = vn.data() + b * k;
      double dot = 0.0;
      for (std::size_t j = 0; j < k; ++j) dot += yn[j] * v[j];
      scores[i * m + b] += weight * dot;
    }
  }
}

/// The cosine-similarity matrix of one checkpoint, \f$ \hat Y \hat V^\top \f$ (`n x m`, row-major).
/// @throws as add_cosine_scores.
template <real_scalar U>
std::vector<double> cosine_scores(std::span<const U> train, std::span<const U> val, std::size_t k) {
  stochgrad::detail::require(k >= 1, "cosine_scores", "k", 0.0, ">= 1");
  std::vector<double> s(
      stochgrad::detail::checked_product("cosine_scores", "training", train.size() / k, "validation", val.size() / k),
      0.0);
  add_cosine_scores(train, val, k, 1.0, std::span<double>(s));
  return s;
}

/// The projected features of one checkpoint (views; memory owned by the caller).
template <real_scalar U>
struct less_checkpoint {
  std::span<const U> train{};  ///< n x k training features (Adam directions, projected)
  std::span<const U> val{};    ///< m x k validation features (gradients, projected)
  double lr = 1.0;             ///< the checkpoint's learning rate (the reference: the epoch's average)
};

/// LESS's aggregated score matrix (matching.py): with \f$ w = \f$ `checkpoint_weights(lr)`,
/// \f[ S = \sum_c w_c\, \hat Y_c \hat V_c^\top \qquad (n \times m,\ \text{row-major}). \f]
/// Every checkpoint must have the same n and m.
/// @throws invalid_argument for no checkpoints, bad learning rates (checkpoint_weights), k = 0 or
///         an empty validation set; size_mismatch for checkpoints of different shapes;
///         nonfinite_error for a non-finite feature.
template <real_scalar U>
std::vector<double> less_score_matrix(std::span<const less_checkpoint<U>> checkpoints, std::size_t k) {
  const char* what = "less_score_matrix";
  stochgrad::detail::require(k >= 1, what, "k", 0.0, ">= 1");
  stochgrad::detail::require(!checkpoints.empty(), what, "checkpoints", 0.0, ">= 1");
  std::vector<double> lr;
  lr.reserve(checkpoints.size());
  for (const auto& c : checkpoints) {
    lr.push_back(c.lr);
    stochgrad::detail::require_same_size(what, "training features of a checkpoint", c.train.size(),
                                         "those of the first", checkpoints[0].train.size());
    stochgrad::detail::require_same_size(what, "validation features of a checkpoint", c.val.size(),
                                         "those of the first", checkpoints[0].val.size());
  }
  const std::vector<double> w = checkpoint_weights(lr);
  const std::size_t n = checkpoints[0].train.size() / k, m = checkpoints[0].val.size() / k;
  std::vector<double> s(stochgrad::detail::checked_product(what, "training", n, "validation", m), 0.0);
  for (std::size_t c = 0; c < checkpoints.size(); ++c) {
    add_cosine_scores(checkpoints[c].train, checkpoints[c].val, k, w[c], std::span<double>(s));
  }
  return s;
}

/// Per-example scores of a task with `subtasks` subtasks (matching.py): the validation columns of
/// S are ordered subtask by subtask in equal groups of `m / subtasks`;
/// \f[ s_i = \max_{q} \frac{1}{m/\text{subtasks}} \sum_{b \in q} S_{i b}. \f]
/// One subtask gives the mean over all validation examples.
/// @param scores  n x m, row-major
/// @param m       validation examples (columns), >= 1
/// @param subtasks number of subtasks, >= 1, dividing m (mmlu 57, bbh 27, tydiqa 9)
/// @throws invalid_argument for m = 0, subtasks = 0 or not dividing m; size_mismatch when the size
///         is not a multiple of m; nonfinite_error for a non-finite score.
inline std::vector<double> task_scores(std::span<const double> scores, std::size_t m, std::size_t subtasks = 1) {
  const char* what = "task_scores";
  stochgrad::detail::require(m >= 1, what, "validation examples", 0.0, ">= 1");
  stochgrad::detail::require(subtasks >= 1 && m % subtasks == 0, what, "subtasks", static_cast<double>(subtasks),
                             ">= 1 and dividing the number of validation examples");
  const std::size_t n = detail::feature_rows(what, "scores", scores, m);
  const std::size_t per = m / subtasks;
  std::vector<double> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    double best = -std::numeric_limits<double>::infinity();
    for (std::size_t q = 0; q < subtasks; ++q) {
      double sum = 0.0;
      for (std::size_t b = 0; b < per; ++b) sum += scores[i * m + q * per + b];
      best = std::max(best, sum / static_cast<double>(per));
    }
    s[i] = best;
  }
  return s;
}

/// The selection of write_selected_data.py: \f$ K = \lfloor \text{fraction} \cdot N \rfloor \f$
/// (Python's `int()`, so K may be 0), the indices of the K largest scores in descending order of
/// score. Ties: **[stochgrad decision]** stable, lower index first (the reference's torch.sort is
/// not stable). Concatenate the scores of several training files before calling it, as the
/// reference does.
/// @param scores    one per training example
/// @param fraction  in (0, 1] (the reference's `percentage`, default 0.05)
/// @throws invalid_argument for a fraction outside (0, 1]; nonfinite_error for a non-finite score.
inline std::vector<std::size_t> select_top_fraction(std::span<const double> scores, double fraction) {
  stochgrad::detail::require(fraction > 0.0 && fraction <= 1.0, "select_top_fraction", "fraction", fraction,
                             "in (0, 1]");
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) {
      throw nonfinite_error("select_top_fraction: score " + std::to_string(i) + " is not finite");
    }
  }
  const auto k = static_cast<std::size_t>(fraction * static_cast<double>(scores.size()));
  std::vector<std::size_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  idx.resize(k);
  return idx;
}

}  // namespace stochgrad::data
