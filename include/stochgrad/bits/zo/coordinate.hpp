// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `coordinate_wise`: the coordinate-wise gradient estimate CGE (ZO-AE-DS, Zhang et al. ICLR 2022;
/// Black-Box-Defense `AE_DS_train.py`), central differences along every coordinate, 2d evaluations per step:
/// ```
///   ghat_i = ( f(x + mu e_i) - f(x - mu e_i) ) / (2 mu)
/// ```
/// Each coordinate is perturbed in place (`x_i + mu`, `x_i - mu` rounded to T) through a
/// `perturbation_guard` and then written back from a saved copy, so the restore is exact (also
/// when the objective throws). The estimate is held in a d-element buffer
/// (state sized at construction) and applied as a dense gradient: CGE is meant for small d.
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

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "objective.hpp"
#include "perturbation_guard.hpp"
#include "replay_log.hpp"

namespace stochgrad::zo {

/// Options of `coordinate_wise`.
struct coordinate_options {
  double mu = 0.005;  ///< perturbation size (ZO-AE-DS default 0.005), > 0
  /// What a non-finite or invalid evaluation does: skip the step (default) or throw.
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;
};

/// Coordinate-wise estimator CGE. Baseline and normalizer must be `no_baseline` and
/// `no_normalizer` (each coordinate has its own pair of evaluations).
class coordinate_wise {
 public:
  static constexpr const char* name = "coordinate_wise";  ///< identifies the estimator in saved state
  using options_type = coordinate_options;  ///< what `stepper(params, opt, {.mu = ...})` builds it from
  static constexpr estimator_family family = estimator_family::zeroth_order;  ///< losses at perturbed points

  /// Sized state: the estimate buffer (not saved) and the call counter.
  template <class T>
  struct state {
    std::uint64_t calls = 0;                  ///< step calls so far
    std::vector<std::vector<T>> grad;         ///< the estimate, per tensor
    std::vector<std::span<const T>> spans;    ///< views of `grad` (rebuilt each step)
    std::vector<double> coefs;                ///< the estimate in double (report / replay log)
    std::vector<double> outcomes;             ///< f(x + mu e_i), f(x - mu e_i) for every i
    /// Saves/loads the call counter only (field "cge_calls"; the buffers are workspace).
    template <class Ar>
    void serialize(Ar& ar) {
      ar.field("cge_calls", calls);
    }
  };

  /// Default options (mu = 0.005).
  coordinate_wise() noexcept = default;
  /// @throws invalid_argument unless mu > 0 and finite.
  explicit coordinate_wise(coordinate_options o) : o_(o) {
    stochgrad::detail::require(o_.mu > 0.0 && std::isfinite(o_.mu), "coordinate_wise", "mu", o_.mu, "> 0 and finite");
  }

  /// The options.
  const coordinate_options& options() const noexcept { return o_; }

  /// Fresh state for `p`: zeroed estimate buffers shaped like `p`, 2 p.size() outcome slots, calls 0.
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.grad.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.grad[t].assign(p.tensor(t).size(), T(0));
    st.spans.resize(p.tensors());
    st.coefs.assign(p.size(), 0.0);
    st.outcomes.assign(2 * p.size(), 0.0);
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp): static_asserts that B is `no_baseline`
  /// and N is `no_normalizer`.
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(std::is_same_v<B, no_baseline>,
                  "stochgrad::zo: coordinate_wise (CGE) differences each coordinate's own pair of evaluations; a "
                  "baseline shared across coordinates has no meaning: use no_baseline");
    static_assert(std::is_same_v<N, no_normalizer>,
                  "stochgrad::zo: coordinate_wise (CGE) estimates each coordinate's derivative; normalizing the "
                  "evaluations across coordinates would change the gradient's direction: use no_normalizer");
    return true;
  }

  /// One step: 2d evaluations, then the optimizer update with the estimate.
  /// @throws whatever `f` throws (the coordinate restored exactly first); nonfinite_error under
  /// nonfinite_policy::throw_error; invalid_argument, before anything changes, for an objective
  /// taking a span over a multi-tensor parameter set.
  template <class S, class F>
  step_report step(S& s, F&& f) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    step_report r = open_report(s);
    if (!evaluate_all(s, f, r)) return skip(r, true);
    return commit(s, r, {});
  }
  /// The estimate into `out` without updating. @throws as step; invalid_argument for outputs of
  /// other shapes than the parameters.
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    detail::check_objective<std::remove_reference_t<F>, T>();
    detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    stochgrad::detail::require_same_size("estimate", "parameter tensors", s.params().tensors(), "outputs", out.size());
    for (std::size_t t = 0; t < out.size(); ++t) {
      stochgrad::detail::require_same_size("estimate", "parameter tensor", s.params().tensor(t).size(), "output",
                                           out[t].size());
    }
    step_report r = open_report(s);
    if (!evaluate_all(s, f, r)) return skip(r, true);
    return commit(s, r, out);
  }
  /// @copydoc estimate
  /// Single-tensor parameter sets.
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<typename S::value_type> out) {
    const std::span<typename S::value_type> one[1] = {out};
    return estimate(s, std::forward<F>(f), std::span<const std::span<typename S::value_type>>(one));
  }
  /// Replays a logged step (no evaluation).
  template <class S>
  step_report replay(S& s, const replay_entry& e, const replay_entry*) {
    if (e.call != s.est_state().calls) {
      throw state_error("replay: the entry is for call " + std::to_string(e.call) + " but the stepper is at call " +
                        std::to_string(s.est_state().calls));
    }
    if (!e.skipped && e.coefficients.size() != s.params().size()) {
      throw state_error("replay: a coordinate_wise entry needs one coefficient per parameter");
    }
    step_report r = open_report(s);
    if (e.skipped) return skip(r, false);
    auto& st = s.est_state();
    std::size_t idx = 0;
    for (std::size_t t = 0; t < s.params().tensors(); ++t) {
      for (std::size_t i = 0; i < s.params().tensor(t).size(); ++i, ++idx) {
        st.coefs[idx] = e.coefficients[idx];
        st.grad[t][i] = static_cast<typename S::value_type>(e.coefficients[idx]);
      }
    }
    return commit(s, r, {});
  }
  /// Nothing is ever pending.
  template <class S>
  void settle(S&) noexcept {}

 private:
  /// Phase plan: the report of this call; the call is used up.
  template <class S>
  step_report open_report(S& s) const {
    auto& st = s.est_state();
    step_report r;
    r.call = st.calls;
    r.step = s.steps();
    r.eps = o_.mu;
    r.queries = s.params().size();
    ++st.calls;
    return r;
  }

  /// Phase evaluate: x_i + mu, x_i - mu for each coordinate i, through one perturbation_guard
  /// (exact restore: the coordinate perturber writes the saved value back), and the estimate of
  /// the file comment per coordinate. Returns whether every evaluation and estimate is finite.
  template <class S, class F>
  bool evaluate_all(S& s, F& f, step_report& r) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    const parameters<T>& p = s.params();
    const T mu = static_cast<T>(o_.mu);
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    detail::coordinate_perturber<T> pert{&p};
    detail::perturbation_guard g(pert, 0);
    bool ok = true;
    std::size_t idx = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      for (std::size_t e = 0; e < p.tensor(t).size(); ++e, ++idx) {
        g.move_to({t, e}, mu);
        const evaluation lp = detail::evaluate<T>(f, p);
        g.move_to({t, e}, static_cast<T>(-mu));
        const evaluation lm = detail::evaluate<T>(f, p);
        r.evaluations += 2;
        st.outcomes[2 * idx] = lp.valid ? lp.loss : nan;
        st.outcomes[2 * idx + 1] = lm.valid ? lm.loss : nan;
        const double gi = (lp.loss - lm.loss) / (2.0 * o_.mu);
        ok = ok && detail::usable(lp) && detail::usable(lm) && std::isfinite(gi);
        st.coefs[idx] = gi;
        st.grad[t][e] = static_cast<T>(gi);
      }
    }
    g.restore();
    r.loss_plus = st.outcomes[0];
    r.loss_minus = st.outcomes[1];
    r.projected_gradient = st.coefs[0];
    r.losses = std::span<const double>(st.outcomes.data(), 2 * p.size());
    return ok;
  }

  /// Commit of a skipped step (the parameters are unchanged).
  step_report skip(step_report& r, bool may_throw) const {
    r.nonfinite = true;
    if (may_throw && o_.on_nonfinite == nonfinite_policy::throw_error) {
      throw nonfinite_error("coordinate_wise: non-finite or invalid evaluation at step " + std::to_string(r.step) +
                            "; the parameters were left unchanged");
    }
    return r;
  }

  /// Phase commit: the estimate as a dense gradient, into `out` (estimate) or the optimizer.
  template <class S>
  step_report commit(S& s, step_report& r, std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    const parameters<T>& p = s.params();
    r.coefficients = std::span<const double>(st.coefs.data(), p.size());
    for (std::size_t t = 0; t < p.tensors(); ++t) st.spans[t] = std::span<const T>(st.grad[t]);
    const dense_gradient<T> g(std::span<const std::span<const T>>(st.spans.data(), st.spans.size()));
    if (!out.empty()) {
      materialize(p, g, out, s.exec());
      return r;
    }
    r.update = s.apply(g);
    r.applied = r.update.applied;
    return r;
  }

  coordinate_options o_{};
};

}  // namespace stochgrad::zo
