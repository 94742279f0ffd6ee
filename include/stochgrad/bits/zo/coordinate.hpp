// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `coordinate_wise`: the coordinate-wise gradient estimate CGE (ZO-AE-DS; algorithms.md
/// §8.4), central differences along every coordinate, 2d evaluations per step:
/// ```
///   ghat_i = ( f(x + mu e_i) - f(x - mu e_i) ) / (2 mu)
/// ```
/// Each coordinate is perturbed in place (`x_i + mu`, `x_i - mu` rounded to T) and then written
/// back from a saved copy, so the restore is exact. The estimate is held in a d-element buffer
/// (state sized at construction) and applied as a dense gradient: CGE is meant for small d.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "objective.hpp"
#include "replay_log.hpp"

namespace stochgrad::zo {

/// Options of `coordinate_wise`.
struct coordinate_options {
  double mu = 0.005;  ///< perturbation size (ZO-AE-DS default 0.005), > 0
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
  template <class S, class F>
  step_report step(S& s, F&& f) {
    detail::check_objective<std::remove_reference_t<F>, typename S::value_type>();
    return run(s, &f, nullptr, {});
  }
  /// The estimate into `out` without updating.
  template <class S, class F>
  step_report estimate(S& s, F&& f, std::span<const std::span<typename S::value_type>> out) {
    detail::check_objective<std::remove_reference_t<F>, typename S::value_type>();
    stochgrad::detail::require_same_size("estimate", "parameter tensors", s.params().tensors(), "outputs", out.size());
    for (std::size_t t = 0; t < out.size(); ++t) {
      stochgrad::detail::require_same_size("estimate", "parameter tensor", s.params().tensor(t).size(), "output",
                                           out[t].size());
    }
    return run(s, &f, nullptr, out);
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
    no_f* none = nullptr;
    return run(s, none, &e, {});
  }
  /// Nothing is ever pending.
  template <class S>
  void settle(S&) noexcept {}

 private:
  struct no_f {};

  template <class S, class F>
  step_report run(S& s, F* f, const replay_entry* rep, std::span<const std::span<typename S::value_type>> out) {
    using T = typename S::value_type;
    auto& st = s.est_state();
    const parameters<T>& p = s.params();
    const T mu = static_cast<T>(o_.mu);
    step_report r;
    r.call = st.calls;
    r.step = s.steps();
    r.eps = o_.mu;
    r.queries = p.size();
    bool ok = true;
    if constexpr (!std::is_same_v<F, no_f>) {
      std::size_t idx = 0;
      for (std::size_t t = 0; t < p.tensors(); ++t) {
        T* x = p.tensor(t).data();
        for (std::size_t e = 0; e < p.tensor(t).size(); ++e, ++idx) {
          const T saved = x[e];
          evaluation lp, lm;
          try {
            x[e] = saved + mu;
            lp = detail::evaluate<T>(*f, p);
            x[e] = saved - mu;
            lm = detail::evaluate<T>(*f, p);
          } catch (...) {
            x[e] = saved;
            ++st.calls;
            throw;
          }
          x[e] = saved;
          r.evaluations += 2;
          st.outcomes[2 * idx] = lp.valid ? lp.loss : std::numeric_limits<double>::quiet_NaN();
          st.outcomes[2 * idx + 1] = lm.valid ? lm.loss : std::numeric_limits<double>::quiet_NaN();
          const double g = (lp.loss - lm.loss) / (2.0 * o_.mu);
          ok = ok && detail::usable(lp) && detail::usable(lm) && std::isfinite(g);
          st.coefs[idx] = g;
          st.grad[t][e] = static_cast<T>(g);
        }
      }
      r.loss_plus = st.outcomes[0];
      r.loss_minus = st.outcomes[1];
      r.projected_gradient = st.coefs[0];
      r.losses = std::span<const double>(st.outcomes.data(), 2 * p.size());
    } else {
      (void)f;
      ok = !rep->skipped;
      if (ok) {
        std::size_t idx = 0;
        for (std::size_t t = 0; t < p.tensors(); ++t) {
          for (std::size_t e = 0; e < p.tensor(t).size(); ++e, ++idx) {
            st.coefs[idx] = rep->coefficients[idx];
            st.grad[t][e] = static_cast<T>(rep->coefficients[idx]);
          }
        }
      }
    }
    ++st.calls;
    if (!ok) {
      r.nonfinite = true;
      if (rep == nullptr && o_.on_nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error("coordinate_wise: non-finite or invalid evaluation at step " + std::to_string(r.step) +
                              "; the parameters were left unchanged");
      }
      return r;
    }
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
