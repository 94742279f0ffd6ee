// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief M-FAC (Frantar, Kurtic, Alistarh, NeurIPS 2021): products with the inverse of a damped
/// empirical Fisher over a sliding window of m gradients without forming a d x d matrix
/// (`optim::mfac_window`), and the M-FAC optimizer built on it (`optim::mfac`), as the reference
/// code computes them (design/seeds/optimizers.md section 3).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "parameters.hpp"
#include "schedule.hpp"
#include "source.hpp"

namespace stochgrad::optim {

/// The dynamic M-FAC algorithm (the reference's `HInvFastUpMulti`): a ring of the last m
/// gradients `G` (m x d, rows in ring order, initially zero) and the m x m quantities derived from
/// `dots = G G^T`, giving products with the inverse of
/// \f[ F = \lambda I + \frac{1}{m}\sum_{i=1}^{m} g_i g_i^T \f]
/// in O(m d + m^2) per product and O(m d + m^3) per replaced gradient. Zero rows (a window not yet
/// full) still count in 1/m, as in the reference.
///
/// setup (after each replacement): `P = dots / lambda + m I`, its LU factorisation without
/// pivoting (stable: P is symmetric positive definite), `D = triu(LU) - m I` (so
/// `D_ij = v_i . g_j` for i <= j with `v_i = H_{i-1}^{-1} g_i`), `den = m + diag(D)`, and the lower
/// triangular `B` with `B_ii = 1/lambda`, `B[i, :i] = (-D^T / den)[i, :i] B[:i, :i]`.
/// Product: with `z = (G x) / lambda` forward-substituted,
/// `z[i:] -= D[i-1, i:] z_{i-1} / den_{i-1}`, the result is
/// \f[ F^{-1}x = x/\lambda - G^T\big((z/\mathrm{den})\,B\big). \f]
/// The m x m work is in double; `G` is stored in the parameter type T.
template <real_scalar T>
class mfac_window {
 public:
  mfac_window() = default;
  /// A window of `m` gradients of dimension `d`, damping `lambda`.
  /// @throws invalid_argument for m = 0, d = 0, m d overflowing, or lambda not finite and > 0.
  mfac_window(std::size_t m, std::size_t d, double lambda) : m_(m), d_(d), lambda_(lambda) {
    stochgrad::detail::require(m >= 1, "mfac_window", "m (ngrads)", static_cast<double>(m), ">= 1");
    stochgrad::detail::require(d >= 1, "mfac_window", "d (parameters)", static_cast<double>(d), ">= 1");
    stochgrad::detail::require(d <= static_cast<std::size_t>(-1) / m / sizeof(T), "mfac_window", "m * d",
                               static_cast<double>(m) * static_cast<double>(d), "small enough to allocate");
    detail::require_positive("mfac_window", "damp (lambda)", lambda);
    G_.assign(m * d, T(0));
    dots_.assign(m * m, 0.0);
    size_workspace();
    setup();
  }

  /// Window size m.
  std::size_t m() const noexcept { return m_; }
  /// Dimension d.
  std::size_t d() const noexcept { return d_; }
  /// Damping lambda.
  double lambda() const noexcept { return lambda_; }
  /// Ring index of the row the next gradient replaces.
  std::size_t last() const noexcept { return last_; }
  /// Row i of G (ring order).
  std::span<const T> row(std::size_t i) const noexcept { return {G_.data() + i * d_, d_}; }

  /// `G x` in double (m numbers), each a dot product accumulated in a fixed order.
  /// @throws size_mismatch unless x has d elements.
  std::vector<double> dots_with(std::span<const T> x) const {
    stochgrad::detail::require_same_size("mfac_window::dots_with", "x", x.size(), "d", d_);
    std::vector<double> t(m_);
    for (std::size_t j = 0; j < m_; ++j) t[j] = dot_row(j, x.data());
    return t;
  }

  /// Replaces the oldest gradient by `g` (then `last` advances).
  /// @throws size_mismatch unless g has d elements; nonfinite_error for a non-finite element (the
  /// window is unchanged then).
  void update(std::span<const T> g) {
    check_gradient(g);
    std::copy(g.begin(), g.end(), G_.begin() + static_cast<std::ptrdiff_t>(last_ * d_));
    refresh_row(last_);
    last_ = (last_ + 1) % m_;
  }

  /// `update(g)`, then `out = F^{-1} g` with the new window (the reference's `update_mul`).
  /// @throws as update, and size_mismatch unless out has d elements; nothing changes then.
  void update_mul(std::span<const T> g, std::span<T> out) {
    stochgrad::detail::require_same_size("mfac_window::update_mul", "out", out.size(), "d", d_);
    check_gradient(g);
    std::copy(g.begin(), g.end(), G_.begin() + static_cast<std::ptrdiff_t>(last_ * d_));
    refresh_row(last_);
    last_ = (last_ + 1) % m_;
    mul_with_dots(g, t_, out);  // t_ = G g after the refresh
  }

  /// `out = F^{-1} x`.
  /// @throws size_mismatch unless x and out have d elements.
  void mul(std::span<const T> x, std::span<T> out) const {
    stochgrad::detail::require_same_size("mfac_window::mul", "out", out.size(), "d", d_);
    const std::vector<double> gx = dots_with(x);
    mul_with_dots(x, gx, out);
  }

  /// The coefficients `c = (z / den) B` of the product with x given `G x` (`F^{-1}x = x/lambda -
  /// sum_j c_j G_j`), so a caller can apply the product while streaming over the parameters.
  std::vector<double> product_coefficients(std::span<const double> gx) const {
    std::vector<double> z(m_), c(m_);
    coefficients_into(gx, z, c);
    return c;
  }

  /// `den_i = m + v_i . g_i` (diagnostics, tests).
  const std::vector<double>& den() const noexcept { return den_; }
  /// `D` (m x m, row major, upper triangle).
  const std::vector<double>& D() const noexcept { return D_; }
  /// `B` (m x m, row major, lower triangle).
  const std::vector<double>& B() const noexcept { return B_; }

  /// Saves/loads the window (G, dots, last); the derived matrices are recomputed on load.
  template <class Ar>
  void serialize(Ar& ar, const char* prefix) {
    const std::string p(prefix);
    std::uint64_t m = m_, d = d_, last = last_;
    double lambda = lambda_;
    ar.field((p + ".m").c_str(), m);
    ar.field((p + ".d").c_str(), d);
    ar.field((p + ".lambda").c_str(), lambda);
    ar.field((p + ".last").c_str(), last);
    ar.field((p + ".G").c_str(), G_);
    ar.field((p + ".dots").c_str(), dots_);
    if (m == 0 || d == 0 || last >= m || G_.size() / d != m || G_.size() % d != 0 || dots_.size() != m * m ||
        !(std::isfinite(lambda) && lambda > 0.0)) {
      throw state_error("mfac: the saved window is inconsistent (sizes, ring index or damping)");
    }
    m_ = static_cast<std::size_t>(m);
    d_ = static_cast<std::size_t>(d);
    last_ = static_cast<std::size_t>(last);
    lambda_ = lambda;
    size_workspace();
    setup();
  }

 private:
  // z: forward substitution of (G x)/lambda; c = (z / den) B.
  void coefficients_into(std::span<const double> gx, std::vector<double>& z, std::vector<double>& c) const {
    const double li = 1.0 / lambda_;
    for (std::size_t i = 0; i < m_; ++i) z[i] = li * gx[i];
    for (std::size_t i = 1; i < m_; ++i) {
      const double f = z[i - 1] / den_[i - 1];
      for (std::size_t j = i; j < m_; ++j) z[j] -= D_[(i - 1) * m_ + j] * f;
    }
    std::fill(c.begin(), c.end(), 0.0);
    for (std::size_t i = 0; i < m_; ++i) {
      const double w = z[i] / den_[i];
      for (std::size_t j = 0; j <= i; ++j) c[j] += w * B_[i * m_ + j];
    }
  }

  // Every buffer the updates and products use, sized once (no allocation per step after this).
  void size_workspace() {
    D_.assign(m_ * m_, 0.0);
    B_.assign(m_ * m_, 0.0);
    P_.assign(m_ * m_, 0.0);
    den_.assign(m_, 0.0);
    t_.assign(m_, 0.0);
    z_.assign(m_, 0.0);
    c_.assign(m_, 0.0);
  }
  void check_gradient(std::span<const T> g) const {
    stochgrad::detail::require_same_size("mfac_window::update", "g", g.size(), "d", d_);
    for (std::size_t i = 0; i < g.size(); ++i) {
      if (!std::isfinite(g[i])) throw nonfinite_error("mfac_window::update: gradient element " + std::to_string(i) + " is not finite");
    }
  }

  // sum_k G_jk x_k in double: SIMD partial sums over registers of T (widened exactly for float),
  // then the lanes and the scalar tail, always in this order (serial: no executor dependence).
  double dot_row(std::size_t j, const T* x) const {
    using BT = xsimd::batch<T>;
    using BD = xsimd::batch<double>;
    constexpr std::size_t W = BT::size;
    const T* r = G_.data() + j * d_;
    BD a0(0.0), a1(0.0);
    std::size_t k = 0;
    for (; k + W <= d_; k += W) {
      const BT u = BT::load_unaligned(r + k), v = BT::load_unaligned(x + k);
      if constexpr (std::is_same_v<T, float>) {
        BD ul, uh, vl, vh;
        stochgrad::detail::widen(u, ul, uh);
        stochgrad::detail::widen(v, vl, vh);
        a0 = simd::madd(ul, vl, a0);
        a1 = simd::madd(uh, vh, a1);
      } else {
        a0 = simd::madd(u, v, a0);
      }
    }
    double s = simd::reduce_add(a0 + a1);
    for (; k < d_; ++k) s = simd::madd(static_cast<double>(r[k]), static_cast<double>(x[k]), s);
    return s;
  }

  // Row `i` of G changed: t_ = G g_i, row and column i of dots, then the derived matrices.
  void refresh_row(std::size_t i) {
    for (std::size_t j = 0; j < m_; ++j) t_[j] = dot_row(j, G_.data() + i * d_);
    for (std::size_t j = 0; j < m_; ++j) {
      dots_[i * m_ + j] = t_[j];
      dots_[j * m_ + i] = t_[j];
    }
    setup();
  }

  void setup() {
    const std::size_t m = m_;
    const double li = 1.0 / lambda_, md = static_cast<double>(m);
    std::vector<double>& P = P_;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < m; ++j) P[i * m + j] = li * dots_[i * m + j] + (i == j ? md : 0.0);
    for (std::size_t k = 0; k < m; ++k)  // LU without pivoting, packed
      for (std::size_t i = k + 1; i < m; ++i) {
        const double l = P[i * m + k] / P[k * m + k];
        P[i * m + k] = l;
        for (std::size_t j = k + 1; j < m; ++j) P[i * m + j] -= l * P[k * m + j];
      }
    std::fill(D_.begin(), D_.end(), 0.0);
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t j = i; j < m; ++j) D_[i * m + j] = P[i * m + j] - (i == j ? md : 0.0);
      den_[i] = md + D_[i * m + i];
    }
    std::fill(B_.begin(), B_.end(), 0.0);
    for (std::size_t i = 0; i < m; ++i) B_[i * m + i] = li;
    for (std::size_t i = 1; i < m; ++i)
      for (std::size_t j = 0; j < i; ++j) {
        double s = 0.0;
        for (std::size_t k = j; k < i; ++k) s += (-D_[k * m + i] / den_[k]) * B_[k * m + j];
        B_[i * m + j] = s;
      }
  }

  void mul_with_dots(std::span<const T> x, const std::vector<double>& gx, std::span<T> out) const {
    coefficients_into(gx, z_, c_);
    const std::vector<double>& c = c_;
    const double li = 1.0 / lambda_;
    // Per element, in this order: li x_k, then - c_j G_jk for j = 0..m-1 (double). Blocks of
    // elements keep the accumulators in L1 while the m rows stream past (the loops vectorise).
    constexpr std::size_t BL = 512;
    alignas(64) double acc[BL];
    for (std::size_t k0 = 0; k0 < d_; k0 += BL) {
      const std::size_t n = std::min(BL, d_ - k0);
      for (std::size_t i = 0; i < n; ++i) acc[i] = li * static_cast<double>(x[k0 + i]);
      for (std::size_t j = 0; j < m_; ++j) {
        const double cj = c[j];
        const T* g = G_.data() + j * d_ + k0;
        for (std::size_t i = 0; i < n; ++i) acc[i] -= cj * static_cast<double>(g[i]);
      }
      for (std::size_t i = 0; i < n; ++i) out[k0 + i] = static_cast<T>(acc[i]);
    }
  }

  std::size_t m_ = 0, d_ = 0, last_ = 0;
  double lambda_ = 1e-5;
  std::vector<T> G_;
  std::vector<double> dots_, D_, den_, B_, P_, t_;
  mutable std::vector<double> z_, c_;  // product workspace
};

/// Hyper-parameters of optim::mfac (defaults as the reference's MFAC class).
struct mfac_options {
  double lr = 1e-3;            ///< learning rate, finite and > 0
  double damp = 1e-5;          ///< damping lambda of the Fisher, finite and > 0
  std::size_t ngrads = 1024;   ///< window size m, >= 1 (the reference also refuses m > 1024; we do not)
  double momentum = 0.0;       ///< momentum mu in [0, 1): v = mu v + (1 - mu) u
  double weight_decay = 0.0;   ///< coupled weight decay added to the gradient before preconditioning
};

/// Sized state of optim::mfac.
template <real_scalar T>
struct mfac_state {
  std::vector<std::uint64_t> steps;  ///< updates applied so far, per parameter group
  mfac_window<T> window;             ///< the last m gradients (flattened in tensor order)
  std::vector<T> momentum;           ///< v (flattened), empty when momentum == 0
  std::vector<T> gradient;           ///< workspace: the flattened gradient of the step (not saved)
  std::vector<T> direction;          ///< workspace: F^{-1} g (not saved)
  std::vector<std::size_t> offset;   ///< workspace: first flat index of each tensor (not saved)
  std::vector<T> tensor_wd;          ///< workspace: each tensor's weight decay this step (not saved)

  /// Saves/loads the counters, the window and the momentum (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("mfac.steps", steps);
    window.serialize(ar, "mfac.window");
    ar.field("mfac.momentum", momentum);
  }
  /// @throws state_error unless the state fits `p`.
  void check(const parameters<T>& p) const {
    detail::check_group_steps("mfac", steps, p);
    if (window.d() != p.size()) {
      throw state_error("mfac: the window has dimension " + std::to_string(window.d()) + " but the parameters have " +
                        std::to_string(p.size()) + " elements");
    }
    if (!momentum.empty() && momentum.size() != p.size()) throw state_error("mfac: the momentum buffer does not fit the parameters");
  }
};

/// The M-FAC optimizer (reference `MFAC.step`): per step, with the flattened gradient of all
/// tensors in tensor order
/// \f[ g = \nabla + \mathrm{wd}\,\theta, \quad u = F^{-1} g \;(\text{after } g \text{ entered the window}), \quad
///     v \leftarrow \mu v + (1-\mu) u,\; u \leftarrow v \;(\mu > 0), \quad \theta \leftarrow \theta - \mathrm{lr}_t\, u \f]
/// with `F` the damped empirical Fisher of the window (mfac_window). The window and the momentum
/// are global; per-group learning rates apply after preconditioning, and a group with
/// `decay = false` gets no weight decay (the reference decays every parameter; with the default
/// single group the two agree). Cost per step O(m d + m^3); state m d values of T plus O(m^2)
/// doubles. Two passes over the parameters: the first reads the source once (storing any
/// adjustment a source makes to the parameters as it is read, as every optimizer does) into a flat
/// gradient buffer, the second applies the preconditioned step from that buffer; the window's dot
/// products and products are serial and in double, so results do not depend on the executor.
/// Not supported (and refused at compile time): sources that fuse the next perturbation
/// (`finish_chunk`), since the window needs the whole gradient before any parameter moves.
/// @tparam Schedule learning-rate schedule (schedule.hpp).
template <schedule_policy Schedule = constant_schedule>
class mfac {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"mfac<", stochgrad::detail::policy_name<Schedule>(), ">"};
  /// "mfac<schedule>".
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = mfac_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = mfac_options;
  /// The learning-rate schedule policy.
  using schedule_type = Schedule;

  /// Default hyper-parameters.
  mfac() : mfac(mfac_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  /// @throws invalid_argument naming the parameter: lr or damp not finite and > 0, ngrads = 0,
  /// momentum outside [0, 1), weight_decay < 0; and from the schedule's validate().
  explicit mfac(mfac_options o, Schedule s = {}) : o_(o), sched_(s) {
    detail::require_positive("optim::mfac", "lr", o_.lr);
    detail::require_positive("optim::mfac", "damp", o_.damp);
    stochgrad::detail::require(o_.ngrads >= 1, "optim::mfac", "ngrads", static_cast<double>(o_.ngrads), ">= 1");
    detail::require_beta("optim::mfac", "momentum", o_.momentum);
    detail::require_nonnegative("optim::mfac", "weight_decay", o_.weight_decay);
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const mfac_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: an all-zero window of ngrads rows, zero momentum (when momentum > 0).
  /// @throws invalid_argument for empty parameters.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.window = mfac_window<T>(o_.ngrads, p.size(), o_.damp);
    if (o_.momentum > 0.0) s.momentum.assign(p.size(), T(0));
    s.gradient.resize(p.size());
    s.direction.resize(p.size());
    s.offset.resize(p.tensors() + 1);
    s.tensor_wd.resize(p.tensors());
    return s;
  }

  /// Checks a loaded state against these options (window size and damping, momentum buffer).
  /// @throws state_error otherwise.
  template <real_scalar T>
  void check_state(const state<T>& s, const parameters<T>& p) const {
    s.check(p);
    if (s.window.m() != o_.ngrads || s.window.lambda() != o_.damp) {
      throw state_error("mfac: the saved window has another size or damping than these options");
    }
    if ((o_.momentum > 0.0) != !s.momentum.empty()) throw state_error("mfac: momentum buffer present iff momentum > 0");
  }

  /// One update of `p` from the gradient source `g`.
  /// @throws size_mismatch from the source's check; state_error when `s` does not fit `p`;
  /// nonfinite_error for a non-finite gradient element. Nothing is modified when it throws (except an
  /// adjustment the source itself makes as it is read, e.g. a zeroth-order restore, already applied).
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    static_assert(!stochgrad::detail::has_finish<Source, T>,
                  "optim::mfac needs the whole gradient before any parameter moves: a source that fuses the "
                  "next perturbation (finish_chunk) cannot feed it");
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return update_impl(p, s, g, ctx);
    } else {
      return update_report{};
    }
  }

 private:
  template <class T, class Source>
  update_report update_impl(const parameters<T>& p, state<T>& s, const Source& g, const step_context& ctx) const {
    g.check(p);
    check_state(s, p);
    const double factor = sched_(ctx.step) * ctx.lr_factor;
    s.offset.resize(p.tensors() + 1);  // no allocation once init sized it
    s.offset[0] = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) s.offset[t + 1] = s.offset[t] + p.tensor(t).size();
    const std::vector<std::size_t>& offset = s.offset;
    s.gradient.resize(p.size());
    s.direction.resize(p.size());
    // Pass 1: the flattened g = grad + wd theta, in one read of the source (a source that adjusts
    // the parameters as it is read, e.g. the zeroth-order estimators' fused restore, has its
    // adjustment stored, as with every optimizer; theta is otherwise written back unchanged).
    s.tensor_wd.resize(p.tensors());  // no allocation once init sized it
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      s.tensor_wd[t] = static_cast<T>(detail::resolve_group(p.group(p.group_of(t)), o_.lr, o_.weight_decay, factor).wd);
    }
    using B = xsimd::batch<T>;
    stochgrad::detail::for_each_gradient_chunk(
        p, g, ctx.ex,
        [&](std::size_t t, std::size_t i, B* th, B* gr) {
          const B wd(s.tensor_wd[t]);
          for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r)
            (gr[r] + wd * th[r]).store_unaligned(s.gradient.data() + offset[t] + i + r * simd::width<T>);
        },
        [&](std::size_t t, std::size_t i, T& th, T gi) { s.gradient[offset[t] + i] = gi + s.tensor_wd[t] * th; });
    s.window.update_mul(s.gradient, s.direction);  // throws (window, parameters unchanged) on a non-finite g
    // Pass 2: momentum and the step.
    update_report rep;
    rep.lr = detail::resolve_group(p.group(0), o_.lr, o_.weight_decay, factor).lr;
    const bool mom = o_.momentum > 0.0;
    const T mu = static_cast<T>(o_.momentum), mu1 = static_cast<T>(1.0 - o_.momentum);
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const T lr = static_cast<T>(detail::resolve_group(p.group(p.group_of(t)), o_.lr, o_.weight_decay, factor).lr);
      T* th = p.tensor(t).data();
      for (std::size_t i = 0; i < p.tensor(t).size(); ++i) {
        const std::size_t k = offset[t] + i;
        T u = s.direction[k];
        if (mom) {
          s.momentum[k] = mu * s.momentum[k] + mu1 * u;
          u = s.momentum[k];
        }
        th[i] -= lr * u;
      }
    }
    for (auto& k : s.steps) ++k;
    return rep;
  }

  mfac_options o_;
  Schedule sched_;
};

}  // namespace stochgrad::optim
