// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Objectives of the zeroth-order steppers, step options and the step report.
///
/// An objective is any callable that evaluates the loss at the stepper's current parameters
/// (which the stepper perturbs in place before each call): `f()`, `f(const parameters<T>&)` or,
/// for a single-tensor parameter set, `f(std::span<const T>)`. It returns a number, or a struct
/// with members `loss` and `valid` (e.g. `zo::evaluation`): an invalid or non-finite evaluation
/// makes the step a documented skip (or a `nonfinite_error`, by option).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"

namespace stochgrad::zo {

/// What an objective may return instead of a plain number: the loss and whether it is usable
/// (e.g. false when a batch produced no scorable sample). An invalid evaluation is treated like a
/// non-finite loss.
struct evaluation {
  double loss = 0.0;  ///< the loss at the current parameters
  bool valid = true;  ///< false: the step is skipped (parameters restored)
};

/// How a step treats a non-finite or invalid evaluation.
enum class nonfinite_policy {
  skip,         ///< restore the parameters, apply nothing, report `nonfinite = true` (default)
  throw_error,  ///< restore the parameters, then throw `nonfinite_error`
};

/// How a step is laid out in passes over the parameters (two-point, q = 1; N = parameters).
/// All three give bitwise identical parameters: they perform the same floating-point operations
/// per element, only grouped into fewer passes over memory.
enum class pass_mode {
  reference,  ///< MeZO's 4 passes: +eps, -2 eps, +eps (restore), update
  fused,      ///< 3 passes: +eps, -2 eps, restore+update (the default)
  /// 2 passes in steady state: -2 eps, then restore+update+next step's +eps. Between steps the
  /// parameters then hold `theta + eps_next v_next`; call `zo::settle(stepper)` to remove it
  /// (e.g. before evaluating or saving the model on its own). Falls back to `fused` where the
  /// next perturbation cannot be known in advance (magnitude masks, one-sided with a center point).
  fused_next,
};

/// Options of the difference estimators (`two_point`, `one_sided`).
struct difference_options {
  double eps = 1e-3;            ///< perturbation size (MeZO eps, SPSA c, RGE mu); > 0
  std::size_t q = 1;            ///< query directions per step (n-SPSA, RGE q, ES pairs); >= 1
  std::uint64_t seed = 0;       ///< master seed; step seeds are `step_seed(seed, call)`
  /// How the step is split into passes over the parameters (default `fused`: 3 passes).
  pass_mode mode = pass_mode::fused;
  /// What a non-finite or invalid evaluation does: skip the step (default) or throw.
  nonfinite_policy on_nonfinite = nonfinite_policy::skip;
  bool center = true;           ///< one_sided only: difference against f(theta) (false: one-point estimate)

  /// @throws invalid_argument naming the parameter, value and allowed range.
  void validate(const char* who) const {
    stochgrad::detail::require(eps > 0.0 && eps < std::numeric_limits<double>::infinity(), who, "eps", eps, "> 0 and finite");
    stochgrad::detail::require(q >= 1, who, "q", static_cast<double>(q), ">= 1");
  }
};

/// What one zeroth-order step did. The spans point into the estimator's state and stay valid
/// until the next step of the same stepper.
struct step_report {
  double loss_plus = std::numeric_limits<double>::quiet_NaN();   ///< f(theta + eps v_0) (CGE: f(theta + mu e_0))
  /// two_point: f(theta - eps v_0); one_sided: f(theta) (NaN without a center); CGE: f(theta - mu e_0)
  double loss_minus = std::numeric_limits<double>::quiet_NaN();
  /// Raw difference quotient of query 0 before outcome shaping: (L+ - L-)/(2 eps) or (L+ - L0)/eps
  double projected_gradient = std::numeric_limits<double>::quiet_NaN();
  double eps = 0.0;              ///< perturbation size of this step (after its schedule)
  std::uint64_t seed = 0;        ///< noise seed of this step (queries use draws 0 .. q-1)
  std::uint64_t call = 0;        ///< step call number (counts skipped steps too; derives the seed)
  std::uint64_t step = 0;        ///< optimizer step number k used by the schedules
  std::size_t queries = 0;       ///< q of this step
  std::size_t evaluations = 0;   ///< objective calls made
  bool applied = false;          ///< the optimizer updated the parameters
  bool nonfinite = false;        ///< skipped: an evaluation was non-finite or invalid
  /// zo::calibrated with blocking: the step was computed but rejected (its loss rose by more than
  /// allowed), the parameters were put back
  bool rejected = false;
  /// zo::calibrated with blocking: f at the new iterate (NaN when not evaluated)
  double candidate_loss = std::numeric_limits<double>::quiet_NaN();
  update_report update{};        ///< the optimizer's report (when applied)
  std::span<const double> coefficients;  ///< scalar of each query direction in the estimate (what the update used)
  std::span<const double> losses;        ///< every evaluation of the step, in order
};

/// What an objective may return: a number convertible to double (the loss), or a type with
/// `loss` (convertible to double) and `valid` (convertible to bool) such as `evaluation`.
template <class R>
concept evaluation_result = std::convertible_to<R, double> || requires(const R& r) {
  { r.loss } -> std::convertible_to<double>;
  { r.valid } -> std::convertible_to<bool>;
};

/// An objective for parameters of type T (see the file comment).
template <class F, class T>
concept objective = real_scalar<T> &&
    ((std::invocable<F&, const parameters<T>&> && evaluation_result<std::invoke_result_t<F&, const parameters<T>&>>) ||
     (std::invocable<F&, std::span<const T>> && evaluation_result<std::invoke_result_t<F&, std::span<const T>>>) ||
     (std::invocable<F&> && evaluation_result<std::invoke_result_t<F&>>));

namespace detail {

template <class R>
evaluation to_evaluation(const R& r) {
  if constexpr (std::convertible_to<R, double>) {
    return {static_cast<double>(r), true};
  } else {
    return {static_cast<double>(r.loss), static_cast<bool>(r.valid)};
  }
}

/// Calls the objective at the current parameters.
template <real_scalar T, class F>
evaluation evaluate(F& f, const parameters<T>& p) {
  if constexpr (std::invocable<F&, const parameters<T>&>) {
    return to_evaluation(f(p));
  } else if constexpr (std::invocable<F&, std::span<const T>>) {
    if (p.tensors() != 1) {
      throw invalid_argument("zo: an objective taking std::span<const T> needs a single-tensor parameter set (this one has " +
                             std::to_string(p.tensors()) + " tensors); take const parameters<T>& instead");
    }
    return to_evaluation(f(std::span<const T>(p.tensor(0))));
  } else {
    return to_evaluation(f());
  }
}

/// Refuses an objective that cannot be called with parameters `p`, before a step changes
/// anything (no perturbation, no seed used): one taking `std::span<const T>` (and not
/// `const parameters<T>&`) needs a single-tensor parameter set.
/// @throws invalid_argument naming the number of tensors.
template <real_scalar T, class F>
void check_objective_fits(const parameters<T>& p) {
  if constexpr (!std::invocable<F&, const parameters<T>&> && std::invocable<F&, std::span<const T>>) {
    if (p.tensors() != 1) {
      throw invalid_argument("zo: an objective taking std::span<const T> needs a single-tensor parameter set (this one has " +
                             std::to_string(p.tensors()) + " tensors); take const parameters<T>& instead");
    }
  }
}

/// True when the evaluation can be used.
inline bool usable(const evaluation& e) noexcept { return e.valid && std::isfinite(e.loss); }

template <class F, class T>
constexpr void check_objective() {
  static_assert(objective<F, T>,
                "stochgrad::zo: the objective must be callable as f(), f(const stochgrad::parameters<T>&) or "
                "f(std::span<const T>), and return a number or a struct with members `loss` and `valid` "
                "(zo::evaluation)");
}

}  // namespace detail
}  // namespace stochgrad::zo
