// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `zo::spsa2_full`: full-matrix second-order SPSA (Spall 2000, "Adaptive stochastic
/// approximation by the simultaneous perturbation method", IEEE TAC 45(10); 2SPSA) for small d
/// (dense d x d state, d <= 4096), with the feedback and optimal weighting of Spall 2009.
///
/// The evaluations, seeds and directions are those of the diagonal `zo::spsa2`
/// (zo/second_order.hpp): c = c_k, ct = ratio * c, Rademacher Delta = v(seed, draw 0),
/// Delta~ = v(seed, draw 1) (1/Delta = Delta), all parameters flattened in tensor order:
/// ```
///   y1 = f(theta + c Delta),  y2 = f(theta + c Delta + ct Delta~),
///   y3 = f(theta - c Delta + ct Delta~),  y4 = f(theta - c Delta)
///   G     = (y1 - y4) / (2 c) Delta                                (SPSA gradient)
///   dG    = G1(theta + c Delta) - G1(theta - c Delta) = (y2 - y1 - y3 + y4) / ct Delta~
///           (G1(x) = (f(x + ct Delta~) - f(x)) / ct Delta~, the one-sided gradient)
///   Hhat  = 1/2 [dG / (2 c) Delta^T + (.)^T] = h/2 (Delta~ Delta^T + Delta Delta~^T),
///           h = (y2 - y1 - y3 + y4) / (2 c ct)
///   Psi   = 1/2 [D~^T Hbar D + D^T Hbar D~],  D = Delta Delta^T - I,  D~ = Delta~ Delta~^T - I
///           (Spall 2009 feedback; 0 when off)
///   Hbar  = (1 - w_k) Hbar + w_k (Hhat - Psi),
///           w_k = 1/(k+1) (Spall 2000) or c_k^2 ct_k^2 / sum_{i<=k} c_i^2 ct_i^2 (Spall 2009 optimal)
///   theta = theta - a_k f(Hbar)^{-1} G,   f(Hbar) = (Hbar Hbar + delta I)^{1/2}
/// ```
/// The feedback generalises exactly: with u = Delta~, v = Delta, a = Hbar u, b = Hbar v and
/// s = u^T Hbar v (Hbar symmetric),
/// Psi = s/2 (u v^T + v u^T) - 1/2 (u a^T + a u^T) - 1/2 (b v^T + v b^T) + Hbar (O(d^2)); its
/// diagonal for a diagonal Hbar is the diagonal form's Delta_i Delta~_i S - Hbar_i. On a quadratic
/// with Hessian A, E[Hhat] = A and, with Hbar = A, E[Hhat - Psi] = A (both exactly).
///
/// The mapping is the paper's f(H) = (H H + delta I)^{1/2} = Q diag(sqrt(lambda_i^2 + delta)) Q^T
/// (H = Q diag(lambda) Q^T, Eigen's SelfAdjointEigenSolver): symmetric positive definite for every
/// symmetric H (a negative eigenvalue is used by its magnitude, a zero one gives sqrt(delta)).
/// Note the diagonal `zo::spsa2` uses |Hbar_i| + delta instead (the other mapping of the paper).
///
/// Hbar and the step direction are kept in double whatever the parameter type. The update runs as
/// one pass of optim::sgd (restore + theta -= a_k g); Hbar is written only after that pass, so an
/// exception leaves it unchanged. Cost per step: O(d^2) for Hbar, O(d^3) for the eigensolver.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "directions.hpp"
#include "objective.hpp"
#include "perturbation_guard.hpp"
#include "schedules.hpp"
#include "second_order.hpp"

namespace stochgrad::zo {

/// Largest parameter count `spsa2_full` accepts (its state is d x d doubles).
inline constexpr std::size_t spsa2_full_max_dim = 4096;

/// Options of `spsa2_full` (the same fields and ranges as `spsa2_options`).
struct spsa2_full_options {
  double eps = 1e-2;        ///< c (times the perturbation schedule), finite and > 0
  double ratio = 1.0;       ///< ct_k / c_k, finite and > 0
  double delta = 1e-4;      ///< delta of the mapping (Hbar Hbar + delta I)^{1/2}, finite and > 0
  bool feedback = true;     ///< subtract Spall 2009's feedback term Psi
  spsa2_weighting weighting = spsa2_weighting::optimal;  ///< averaging weights
  std::uint64_t seed = 0;   ///< master seed; step seeds are `step_seed(seed, call)`
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;  ///< what a non-finite evaluation does

  /// @throws invalid_argument naming the option and its range.
  void validate() const {
    stochgrad::detail::require(eps > 0.0 && std::isfinite(eps), "spsa2_full", "eps", eps, "> 0 and finite");
    stochgrad::detail::require(ratio > 0.0 && std::isfinite(ratio), "spsa2_full", "ratio", ratio, "> 0 and finite");
    stochgrad::detail::require(delta > 0.0 && std::isfinite(delta), "spsa2_full", "delta", delta, "> 0 and finite");
  }
};

/// Sized state of `spsa2_full`.
template <real_scalar T>
struct spsa2_full_state {
  std::uint64_t master_seed = 0;          ///< master seed
  std::uint64_t calls = 0;                ///< step calls so far (also skipped ones)
  double weight_sum = 0.0;                ///< sum_{i<=k} c_i^2 ct_i^2 (optimal weighting)
  std::size_t dim = 0;                    ///< d, the flattened parameter count
  std::vector<double> hessian;            ///< Hbar, d x d row-major, symmetric (starts at 0)
  std::vector<double> next;               ///< the updated Hbar before it is committed (workspace)
  std::vector<double> delta;              ///< Delta of the last step, flattened (workspace)
  std::vector<double> delta_t;            ///< Delta~ of the last step, flattened (workspace)
  std::vector<double> work_a;             ///< Hbar Delta~ (workspace)
  std::vector<double> work_b;             ///< Hbar Delta (workspace)
  std::vector<T> direction;               ///< f(Hbar)^{-1} G of the last step (workspace)
  std::vector<std::size_t> offsets;       ///< flat offset of each tensor (workspace)
  double outcomes[4] = {0.0, 0.0, 0.0, 0.0};  ///< y1..y4 of the last step (workspace; not saved)
  double coefficient = 0.0;               ///< (y1 - y4)/(2c) of the last step (workspace)

  /// Hbar(i, j).
  double h(std::size_t i, std::size_t j) const noexcept { return hessian[i * dim + j]; }

  /// Saves/loads seed, calls, the weight sum and Hbar (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("spsa2_full_master_seed", master_seed);
    ar.field("spsa2_full_calls", calls);
    ar.field("spsa2_full_weight_sum", weight_sum);
    ar.field("spsa2_full_hessian", hessian);
  }
};

/// Spall's positive-definite mapping f(H) = (H H + delta I)^{1/2} of the symmetric part of `h`:
/// \f$ f(H) = Q \,\mathrm{diag}\big(\sqrt{\lambda_i^2 + \delta}\big)\, Q^T \f$ for
/// \f$ (H + H^T)/2 = Q \,\mathrm{diag}(\lambda)\, Q^T \f$.
/// @throws invalid_argument unless delta is finite and > 0 and `h` is square.
inline Eigen::MatrixXd spsa2_mapping(const Eigen::MatrixXd& h, double delta) {
  stochgrad::detail::require(delta > 0.0 && std::isfinite(delta), "spsa2_mapping", "delta", delta, "> 0 and finite");
  stochgrad::detail::require(h.rows() == h.cols(), "spsa2_mapping", "rows - cols", static_cast<double>(h.rows() - h.cols()),
                             "0 (a square matrix)");
  const Eigen::MatrixXd sym = 0.5 * (h + h.transpose());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sym);
  const Eigen::VectorXd m = (es.eigenvalues().array().square() + delta).sqrt().matrix();
  return es.eigenvectors() * m.asDiagonal() * es.eigenvectors().transpose();
}

/// The gradient source of one `spsa2_full` step, read once by optim::sgd's pass: restores
/// theta += c Delta (bitwise the perturbation guard's undo) and yields g = f(Hbar)^{-1} G.
template <real_scalar T, class Dir>
class spsa2_full_source {
 public:
  /// Over parameters `p`, the direction `g` (flattened, at `offsets`); both must outlive the source.
  spsa2_full_source(const parameters<T>& p, const std::vector<T>& g, const std::vector<std::size_t>& offsets,
                    const Dir& dir, std::uint64_t seed, T c) noexcept
      : p_(&p), g_(&g), off_(&offsets), dir_(dir), seed_(seed), c_(c) {}

  /// Registers of tensor t at [i, i + chunk).
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>* theta,
                                          xsimd::batch<T>* out) const noexcept {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    B v[NB];
    dir_.template chunk<T>(noise_key{seed_, p_->stream(t), 0}, i, v);
    const T* g = g_->data() + (*off_)[t] + i;
    const B c(c_);
    for (std::size_t r = 0; r < NB; ++r) {
      theta[r] = simd::madd(c, v[r], theta[r]);
      out[r] = B::load_unaligned(g + r * W);
    }
  }
  /// Element i of tensor t, bitwise equal to `load_chunk`.
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T& th) const noexcept {
    const T v = dir_.template value<T>(noise_key{seed_, p_->stream(t), 0}, i);
    th = simd::madd(c_, v, th);
    return (*g_)[(*off_)[t] + i];
  }
  /// @throws size_mismatch unless the direction has one entry per parameter.
  void check(const parameters<T>& p) const {
    stochgrad::detail::require_same_size("spsa2_full", "parameter tensors", p.tensors(), "tensor offsets", off_->size());
    stochgrad::detail::require_same_size("spsa2_full", "parameters", p.size(), "direction entries", g_->size());
  }

 private:
  const parameters<T>* p_;
  const std::vector<T>* g_;
  const std::vector<std::size_t>* off_;
  Dir dir_;
  std::uint64_t seed_;
  T c_;
};

/// Full-matrix 2SPSA for small d (see the file comment). Use with `no_baseline`, `no_normalizer`
/// and `optim::sgd<spall_gain>` (a_k) — any `optim::sgd` schedule works.
/// @tparam Schedule perturbation schedule of c_k (spall_perturbation: c / (k+1)^0.101)
/// @tparam Dir      direction (Rademacher; a policy object with `inverse = false` for tests)
/// @tparam Gen      counter-based generator policy
template <class Schedule = spall_perturbation, class Dir = rademacher, class Gen = default_generator>
class spsa2_full {
 public:
  using direction_type = direction_t<Dir, Gen>;  ///< the direction policy object
  using options_type = spsa2_full_options;       ///< what `stepper(params, opt, {.eps = ...})` builds it from
  /// Sized state (spsa2_full_state).
  template <class T>
  using state = spsa2_full_state<T>;
  /// Losses at perturbed points; directions regenerated from seeds.
  static constexpr estimator_family family = estimator_family::zeroth_order;
  /// Identifies the estimator in saved state, e.g. "spsa2_full<spall_perturbation,philox_icdf<7>>".
  static constexpr stochgrad::detail::fixed_name name_text{"spsa2_full<", stochgrad::detail::policy_name<Schedule>(), ",",
                                                          stochgrad::detail::policy_name<Gen>(), ">"};
  static constexpr const char* name = name_text.text;  ///< identifies the estimator in saved state

  /// Default options.
  spsa2_full() : spsa2_full(spsa2_full_options{}) {}
  /// @throws invalid_argument for a bad option (spsa2_full_options::validate) or schedule.
  explicit spsa2_full(spsa2_full_options o, Schedule sched = {}, direction_type dir = {})
      : o_(o), sched_(std::move(sched)), dir_(std::move(dir)) {
    static_assert(!direction_type::inverse && !direction_type::normalized,
                  "stochgrad::zo::spsa2_full: uses 1/Delta = Delta: use rademacher directions");
    o_.validate();
    detail::validate_schedule(sched_);
  }

  /// Fresh state: Hbar = 0 (d x d), calls 0, workspaces sized.
  /// @throws invalid_argument if d = p.size() is 0 or exceeds spsa2_full_max_dim.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    const std::size_t d = p.size();
    stochgrad::detail::require(d >= 1 && d <= spsa2_full_max_dim, "spsa2_full", "parameter count d",
                               static_cast<double>(d), "1 ... 4096 (the state is d x d)");
    state<T> st;
    st.master_seed = o_.seed;
    st.dim = d;
    st.hessian.assign(d * d, 0.0);
    resize_workspace(st, p);
    return st;
  }

  /// Sizes the workspaces of `st` (Hbar itself untouched) for `p`.
  template <class T>
  static void resize_workspace(state<T>& st, const parameters<T>& p) {
    const std::size_t d = p.size();
    st.next.assign(d * d, 0.0);
    st.delta.assign(d, 0.0);
    st.delta_t.assign(d, 0.0);
    st.work_a.assign(d, 0.0);
    st.work_b.assign(d, 0.0);
    st.direction.assign(d, T(0));
    st.offsets.resize(p.tensors());
    std::size_t off = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      st.offsets[t] = off;
      off += p.tensor(t).size();
    }
  }

  /// Compile-time composition check (stepper_template.hpp).
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_same_v<B, no_baseline> && std::is_same_v<N, no_normalizer>,
                  "stochgrad::zo::spsa2_full: the four evaluations of a 2SPSA step are not a group of outcomes; use "
                  "no_baseline and no_normalizer");
    static_assert(detail::is_sgd<O>,
                  "stochgrad::zo::spsa2_full: the source restores the parameters as it is read, once: "
                  "use optim::sgd (e.g. optim::sgd<spall_gain> for Spall's a_k)");
    return true;
  }

  /// The options.
  const spsa2_full_options& options() const noexcept { return o_; }
  /// c_k at step k: `eps * schedule(k)`.
  double eps_at(std::uint64_t k) const noexcept { return o_.eps * static_cast<double>(sched_(k)); }

  /// One full-matrix 2SPSA step (file comment): 4 evaluations of `f`, the Hbar update and
  /// eigendecomposition, then the fused restore + update.
  /// @throws invalid_argument before anything changes if the optimizer clips or skips non-finite
  /// gradients, if c_k is not finite and > 0, or the objective does not fit; size_mismatch if the
  /// state does not fit the parameters; whatever `f` throws (parameters restored, Hbar unchanged);
  /// nonfinite_error under throw_error.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    const auto& so = s.optimizer().options();
    stochgrad::detail::require(so.max_grad_norm == 0.0, "spsa2_full", "optimizer max_grad_norm", so.max_grad_norm,
                               "0 (the 2SPSA source is read once: no clipping pre-pass)");
    stochgrad::detail::require(!so.skip_nonfinite, "spsa2_full", "optimizer skip_nonfinite", 1.0,
                               "false (the 2SPSA source is read once: no pre-pass)");
    const std::uint64_t k = s.steps();
    const double c = eps_at(k), ct = o_.ratio * c;
    stochgrad::detail::require(c > 0.0 && std::isfinite(c) && ct > 0.0 && std::isfinite(ct), "spsa2_full",
                               "c_k at this step (after the schedule)", c, "> 0 and finite");
    auto& st = s.est_state();
    const std::size_t d = s.params().size();
    stochgrad::detail::require_same_size("spsa2_full", "parameters", d, "state dimension", st.dim);
    stochgrad::detail::require_same_size("spsa2_full", "d * d", d * d, "hessian entries", st.hessian.size());
    if (st.next.size() != d * d || st.delta.size() != d || st.offsets.size() != s.params().tensors()) {
      resize_workspace(st, s.params());  // a state filled by load: size the workspaces once
    }
    step_report r;
    r.call = st.calls;
    r.step = k;
    r.seed = step_seed(st.master_seed, st.calls);
    r.eps = c;
    r.queries = 1;
    st.calls += 1;
    detail::spsa2_perturber<T, direction_type> pert{&s.params(), &dir_, static_cast<T>(ct), s.exec()};
    detail::perturbation_guard g(pert, r.seed);
    bool ok = true;
    auto record = [&](std::size_t slot) {
      const evaluation e = detail::evaluate<T>(f, s.params());
      ++r.evaluations;
      st.outcomes[slot] = e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
      ok = ok && detail::usable(e);
    };
    const T cT = static_cast<T>(c);
    g.move_to(0, cT);
    record(0);
    g.move_to(1, cT);
    record(1);
    g.move_to(1, static_cast<T>(-cT));
    record(2);
    g.move_to(0, static_cast<T>(-cT));
    record(3);
    const double y1 = st.outcomes[0], y2 = st.outcomes[1], y3 = st.outcomes[2], y4 = st.outcomes[3];
    r.loss_plus = y1;
    r.loss_minus = y4;
    r.losses = std::span<const double>(st.outcomes, 4);
    st.coefficient = (y1 - y4) / (2.0 * c);
    r.projected_gradient = st.coefficient;
    const double ch = (y2 - y1 - y3 + y4) / (2.0 * c * ct);
    auto skip = [&] {
      g.restore();
      r.nonfinite = true;
      if (o_.on_nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error("spsa2_full: non-finite or invalid evaluation at step " + std::to_string(k) +
                              "; the parameters were restored");
      }
      return r;
    };
    if (!ok || !std::isfinite(st.coefficient) || !std::isfinite(ch)) return skip();
    r.coefficients = std::span<const double>(&st.coefficient, 1);
    const double cc = c * c * ct * ct;
    const double wsum = st.weight_sum + cc;
    const double w = o_.weighting == spsa2_weighting::average ? 1.0 / (static_cast<double>(k) + 1.0)
                                                              : (wsum > 0.0 ? cc / wsum : 1.0);
    // Delta (v) and Delta~ (u), flattened in tensor order.
    std::vector<double>& v = st.delta;
    std::vector<double>& u = st.delta_t;
    for (std::size_t t = 0; t < s.params().tensors(); ++t) {
      const noise_key k0{r.seed, s.params().stream(t), 0}, k1{r.seed, s.params().stream(t), 1};
      const std::size_t off = st.offsets[t], n = s.params().tensor(t).size();
      for (std::size_t i = 0; i < n; ++i) {
        v[off + i] = static_cast<double>(dir_.template value<T>(k0, i));
        u[off + i] = static_cast<double>(dir_.template value<T>(k1, i));
      }
    }
    update_hessian(st, d, ch, w);
    // g = f(Hbar_new)^{-1} G, G = coefficient * Delta.
    const Eigen::Map<const Eigen::MatrixXd> hm(st.next.data(), static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(d));
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(hm);  // Hbar is symmetric by construction
    if (es.info() != Eigen::Success) return skip();
    const Eigen::Map<const Eigen::VectorXd> vm(v.data(), static_cast<Eigen::Index>(d));
    const Eigen::VectorXd inv = (es.eigenvalues().array().square() + o_.delta).sqrt().inverse().matrix();
    const Eigen::VectorXd dir = es.eigenvectors() * (inv.asDiagonal() * (es.eigenvectors().transpose() * vm));
    for (std::size_t i = 0; i < d; ++i) {
      st.direction[i] = static_cast<T>(st.coefficient * dir[static_cast<Eigen::Index>(i)]);
    }
    const detail::pass_term<T> undo = g.restore_term();
    spsa2_full_source<T, direction_type> src(s.params(), st.direction, st.offsets, dir_, r.seed, undo.scale);
    r.update = s.apply(src);  // throws before its pass: the guard restores on unwind, Hbar unchanged
    r.applied = r.update.applied;
    g.dismiss();
    st.hessian.swap(st.next);
    st.weight_sum = wsum;
    return r;
  }

 private:
  /// next = (1 - w) Hbar + w (Hhat - fb Psi) (file comment), from st.delta / st.delta_t.
  template <class St>
  void update_hessian(St& st, std::size_t d, double ch, double w) const {
    const std::vector<double>& v = st.delta;
    const std::vector<double>& u = st.delta_t;
    const std::vector<double>& h = st.hessian;
    std::vector<double>& a = st.work_a;
    std::vector<double>& b = st.work_b;
    double sv = 0.0;
    const bool fb = o_.feedback;
    if (fb) {
      for (std::size_t i = 0; i < d; ++i) {
        double ai = 0.0, bi = 0.0;
        const double* row = h.data() + i * d;
        for (std::size_t j = 0; j < d; ++j) {
          ai += row[j] * u[j];
          bi += row[j] * v[j];
        }
        a[i] = ai;
        b[i] = bi;
      }
      for (std::size_t i = 0; i < d; ++i) sv += u[i] * b[i];
    }
    const double keep = 1.0 - w;
    for (std::size_t i = 0; i < d; ++i) {
      for (std::size_t j = 0; j < d; ++j) {
        const double hv = h[i * d + j];
        const double sym = 0.5 * (u[i] * v[j] + v[i] * u[j]);
        double est = ch * sym;
        if (fb) {
          const double psi = sv * sym - 0.5 * (u[i] * a[j] + a[i] * u[j]) - 0.5 * (b[i] * v[j] + v[i] * b[j]) + hv;
          est -= psi;
        }
        st.next[i * d + j] = keep * hv + w * est;
      }
    }
  }

  spsa2_full_options o_;
  Schedule sched_;
  direction_type dir_;
};

}  // namespace stochgrad::zo
