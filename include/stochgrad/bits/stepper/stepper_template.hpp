// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `stepper<Estimator, Baseline, Normalizer, Optimizer, T>`: the one class template every
/// preset (`grpo`, `bnpo`, `mezo`, `spsa`, `adan`) is an alias of.
///
/// The estimator drives a step: it collects outcomes (losses at perturbed points, rewards, or
/// nothing for a first-order gradient), shapes them with the baseline and normalizer policies into
/// weights, builds a lazy gradient source and hands it to `apply`, which runs the optimizer's fused
/// update. Hyper-parameters live in the policy objects; sized state (estimator and optimizer) lives
/// in plain aggregates that `save`/`load` write in the format of serialize.hpp.
#pragma once

#include <concepts>
#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../base/family.hpp"
#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/outcome.hpp"
#include "../parallel/thread_pool.hpp"
#include "serialize.hpp"

namespace stochgrad {

namespace detail {
/// Stands for the options of a policy that has none (so the options constructor below is well
/// formed for every composition).
struct no_policy_options {};
template <class P>
struct policy_options {
  using type = no_policy_options;
};
template <class P>
  requires requires { typename P::options_type; }
struct policy_options<P> {
  using type = typename P::options_type;
};
/// `P::options_type`, the aggregate a policy is built from, or no_policy_options.
template <class P>
using policy_options_t = typename policy_options<P>::type;
/// Builds policy P from its options (or default-constructs a policy without options).
template <class P>
P from_options(const policy_options_t<P>& o) {
  if constexpr (std::is_same_v<policy_options_t<P>, no_policy_options>) {
    return P{};
  } else {
    return P(o);
  }
}
}  // namespace detail


/// An estimator policy E for parameters of type T: its `family` (estimator_family), a state
/// aggregate `E::state<T>` (serializable, possibly empty), `e.init(p)`, a `name`, a compile-time
/// composition check
/// `E::check_composition<B, N, O>()` (static_asserts with readable messages), and a
/// `step(stepper&, args...)` member template that the stepper forwards to.
template <class E, class T>
concept estimator_policy = real_scalar<T> && requires(const E& e, const parameters<T>& p) {
  typename E::template state<T>;
  { e.template init<T>(p) } -> std::same_as<typename E::template state<T>>;
  { E::name } -> std::convertible_to<const char*>;
  { E::family } -> std::convertible_to<estimator_family>;
};

namespace detail {
// Runs the estimator's own composition checks once the four roles are known to be filled by the
// right kinds of policy (so a wrong kind gives one message, not a cascade).
template <class E, class B, class N, class O, class T>
consteval bool check_composition() {
  if constexpr (estimator_policy<E, T> && baseline_policy<B> && normalizer_policy<N> && optimizer_policy<O, T>) {
    return E::template check_composition<B, N, O>();
  } else {
    return true;
  }
}

template <class T>
constexpr const char* scalar_name() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}
}  // namespace detail

/// Running totals of a stepper's `step` calls, kept by the stepper itself (see `stepper::totals`).
///
/// Each completed `step` adds what its report says: `evaluations` when the report has that field
/// (zeroth-order steps: objective calls), and one to `applied` or `skipped` when it has an
/// `applied` flag (every built-in estimator's report does). A step that throws adds nothing;
/// `estimate`, `apply` and replayed steps are not steps and add nothing either. The totals are not
/// part of the saved state: `save` does not write them and `load` leaves them as they are.
struct step_totals {
  std::uint64_t evaluations = 0;  ///< objective calls made by steps (reports with an `evaluations` field)
  std::uint64_t applied = 0;      ///< steps whose report says the optimizer updated the parameters
  std::uint64_t skipped = 0;      ///< steps whose report says nothing was applied (e.g. a non-finite loss)

  /// Adds one step's report `r` (any type; the fields it lacks add nothing).
  template <class R>
  constexpr void record(const R& r) noexcept {
    if constexpr (requires { static_cast<std::uint64_t>(r.evaluations); }) {
      evaluations += static_cast<std::uint64_t>(r.evaluations);
    }
    if constexpr (requires { static_cast<bool>(r.applied); }) {
      if (static_cast<bool>(r.applied)) {
        ++applied;
      } else {
        ++skipped;
      }
    }
  }
};

/// The stepper: parameters + four policies + their state.
/// @tparam Estimator  how the gradient is estimated (first_order, two_point<...>, score_function<...>)
/// @tparam Baseline   outcome baseline policy (no_baseline, group_mean, ...)
/// @tparam Normalizer outcome normalizer policy (no_normalizer, group_std, ...)
/// @tparam Optimizer  optimizer policy (sgd<>, adam<>, adan<>, ...)
/// @tparam T          parameter element type (float or double)
template <class Estimator, class Baseline, class Normalizer, class Optimizer, class T = float>
class stepper {
  static_assert(real_scalar<T>, "stochgrad::stepper: the parameter type T must be float or double");
  static_assert(estimator_policy<Estimator, T>,
                "stochgrad::stepper: the first template argument must be an estimator policy "
                "(e.g. first_order, two_point<gaussian>, score_function)");
  static_assert(baseline_policy<Baseline>,
                "stochgrad::stepper: the second template argument must be a baseline policy "
                "(e.g. no_baseline, group_mean, leave_one_out)");
  static_assert(normalizer_policy<Normalizer>,
                "stochgrad::stepper: the third template argument must be a normalizer policy "
                "(e.g. no_normalizer, group_std, beta_normalizer)");
  static_assert(optimizer_policy<Optimizer, T>,
                "stochgrad::stepper: the fourth template argument must be an optimizer policy "
                "(e.g. sgd<>, adam<>, adan<>)");
  static_assert(detail::check_composition<Estimator, Baseline, Normalizer, Optimizer, T>());

 public:
  /// The parameter element type (float or double).
  using value_type = T;
  /// The estimator policy (first_order, a zo:: difference estimator, score_function, ...).
  using estimator_type = Estimator;
  /// The baseline policy.
  using baseline_type = Baseline;
  /// The normalizer policy.
  using normalizer_type = Normalizer;
  /// The optimizer policy.
  using optimizer_type = Optimizer;
  /// The estimator's state for parameters of type T (`Estimator::state<T>`).
  using estimator_state = typename Estimator::template state<T>;
  /// The optimizer's state for parameters of type T (`Optimizer::state<T>`).
  using optimizer_state = typename Optimizer::template state<T>;

  /// Builds a stepper over `params` (whose memory the caller owns and keeps alive).
  /// @throws invalid_argument if the parameter set is empty, or from the policies' validation.
  explicit stepper(parameters<T> params, Optimizer opt = {}, Estimator est = {}, Baseline base = {},
                   Normalizer norm = {}, executor ex = {})
      : params_(std::move(params)),
        est_(std::move(est)),
        base_(std::move(base)),
        norm_(std::move(norm)),
        opt_(std::move(opt)),
        ex_(ex),
        est_state_(est_.template init<T>(params_)),
        opt_state_(opt_.template init<T>(params_)) {
    if (params_.empty()) throw invalid_argument("stepper: the parameter set is empty");
  }

  /// Builds a stepper from the optimizer's and the estimator's options, without naming the policy
  /// types (baseline and normalizer default-constructed):
  /// @code
  /// std::vector<float> w(256, 1.0f);
  /// stochgrad::mezo<float> m(w, {.lr = 1e-3}, {.eps = 1e-3});   // sgd_options, difference_options
  /// stochgrad::adan<float> a(w, {.lr = 1e-3, .weight_decay = 0.02});
  /// @endcode
  /// The order is the constructor's throughout (parameters, optimizer, estimator, baseline,
  /// normalizer): the optimizer comes first because it is the policy set most often. Schedules and
  /// masks take their defaults; to set them, pass the policy objects instead.
  /// @throws invalid_argument from the policies' validation, or for an empty parameter set.
  stepper(parameters<T> params, detail::policy_options_t<Optimizer> opt, detail::policy_options_t<Estimator> est = {},
          executor ex = {})
    requires(!std::is_same_v<detail::policy_options_t<Optimizer>, detail::no_policy_options>)
      : stepper(std::move(params), Optimizer(opt), detail::from_options<Estimator>(est), Baseline{}, Normalizer{}, ex) {}

  /// Builds a stepper that runs its kernels on `ex` (e.g. a thread_pool), with default-constructed
  /// baseline and normalizer policies: `mezo<float> s(params, sgd, two_point, pool);`.
  stepper(parameters<T> params, Optimizer opt, Estimator est, executor ex)
      : stepper(std::move(params), std::move(opt), std::move(est), Baseline{}, Normalizer{}, ex) {}

  /// One step; the arguments depend on the estimator (a gradient for first_order, an objective
  /// for zeroth-order estimators, a batch and a vector-Jacobian callback for score_function).
  /// The step's report is also added to the running totals (`totals()`); the parameters and every
  /// state are exactly what the estimator's step leaves.
  template <class... Args>
  decltype(auto) step(Args&&... args) {
    using result = decltype(est_.step(*this, std::forward<Args>(args)...));
    if constexpr (std::is_void_v<result>) {
      return est_.step(*this, std::forward<Args>(args)...);
    } else {
      result r = est_.step(*this, std::forward<Args>(args)...);
      totals_.record(r);
      return r;
    }
  }

  /// The estimator's gradient estimate at the current parameters, without an update, with the
  /// arguments of `step` plus where the estimate goes:
  ///   zeroth order:   `s.estimate(f, out)`, out one span per tensor (or one span), receiving the
  ///                   difference estimate g = sum_j c_j d_j of the step (bits/zo/difference.hpp,
  ///                   coordinate.hpp); a seed is used, the optimizer step counter is not advanced;
  ///   score function: `s.estimate(batch, layout, vjp)`, the policy-gradient estimate of the
  ///                   batch (bits/pg), as the estimator's own `estimate(s, ...)`.
  /// Present for every estimator that defines `estimate(stepper&, ...)` (a first-order stepper is
  /// handed its gradient, so it has none).
  template <class... Args>
    requires requires(Estimator& e, stepper& s, Args&&... a) { e.estimate(s, std::forward<Args>(a)...); }
  decltype(auto) estimate(Args&&... args) {
    return est_.estimate(*this, std::forward<Args>(args)...);
  }

  /// Runs the optimizer's fused update with gradient source `g` and advances the step counter
  /// (also when the optimizer skips a non-finite gradient, so schedules stay aligned with calls).
  /// Called by estimators; also usable directly with any gradient source.
  template <class Source>
    requires gradient_source<Source, T>
  update_report apply(const Source& g, double lr_factor = 1.0) {
    step_context ctx;
    ctx.step = steps_;
    ctx.lr_factor = lr_factor;
    ctx.ex = ex_;
    const update_report r = opt_.update(params_, opt_state_, g, ctx);
    ++steps_;
    return r;
  }

  /// Number of completed steps.
  std::uint64_t steps() const noexcept { return steps_; }
  /// Running totals of the `step` calls made on this object since construction or the last
  /// `reset_totals()`: objective evaluations, applied and skipped steps (step_totals). Not saved.
  const step_totals& totals() const noexcept { return totals_; }
  /// Sets the running totals back to zero (nothing else changes).
  void reset_totals() noexcept { totals_ = {}; }
  /// The parameters.
  const parameters<T>& params() const noexcept { return params_; }
  /// The estimator policy (mutable).
  Estimator& estimator() noexcept { return est_; }
  /// The estimator policy.
  const Estimator& estimator() const noexcept { return est_; }
  /// The baseline policy (mutable).
  Baseline& baseline() noexcept { return base_; }
  /// The baseline policy.
  const Baseline& baseline() const noexcept { return base_; }
  /// The normalizer policy (mutable).
  Normalizer& normalizer() noexcept { return norm_; }
  /// The normalizer policy.
  const Normalizer& normalizer() const noexcept { return norm_; }
  /// The optimizer policy (mutable).
  Optimizer& optimizer() noexcept { return opt_; }
  /// The optimizer policy.
  const Optimizer& optimizer() const noexcept { return opt_; }
  /// The estimator's state, sized for the parameters at construction (mutable).
  estimator_state& est_state() noexcept { return est_state_; }
  /// The estimator's state, sized for the parameters at construction.
  const estimator_state& est_state() const noexcept { return est_state_; }
  /// The optimizer's state (moments, step coefficients), sized for the parameters (mutable).
  optimizer_state& opt_state() noexcept { return opt_state_; }
  /// The optimizer's state (moments, step coefficients), sized for the parameters.
  const optimizer_state& opt_state() const noexcept { return opt_state_; }
  /// Where kernels run.
  const executor& exec() const noexcept { return ex_; }
  /// Changes where kernels run (results do not depend on it).
  void set_executor(executor ex) noexcept { ex_ = ex; }

  /// Identifies the composition in saved state, e.g.
  /// "first_order/no_baseline/no_normalizer/adan/float32".
  static std::string kind() {
    return std::string(Estimator::name) + "/" + detail::policy_name<Baseline>() + "/" +
           detail::policy_name<Normalizer>() + "/" + Optimizer::name + "/" + detail::scalar_name<T>();
  }

  /// Writes the step counter, the estimator state and the optimizer state (format: serialize.hpp).
  /// Parameters are not saved: they live in the caller's memory; nor are the running totals.
  void save(std::ostream& os) const {
    state_writer w;
    auto self = const_cast<stepper*>(this);  // serialize() is shared with loading; nothing is modified here
    self->archive(w);
    w.finish(os);
  }

  /// Restores what `save` wrote. On any error (truncated, corrupt, other composition, other
  /// parameter shapes) throws state_error and leaves the stepper untouched.
  void load(std::istream& is) {
    state_reader r(is);
    stepper_image img{steps_, est_state_, opt_state_};
    std::string k = kind();
    r.field("stepper", k);
    if (k != kind()) throw state_error("load: state of stepper '" + k + "' cannot be loaded into '" + kind() + "'");
    std::vector<std::uint64_t> sizes;
    r.field("tensor_sizes", sizes);
    check_sizes(sizes);
    r.field("steps", img.steps);
    img.est.serialize(r);
    img.opt.serialize(r);
    r.finish();
    img.opt.check(params_);
    // Optimizers whose state shape depends on their options (e.g. SGD's momentum buffers) check
    // the loaded state against those options too.
    if constexpr (requires { opt_.check_state(img.opt, params_); }) opt_.check_state(img.opt, params_);
    steps_ = img.steps;
    est_state_ = std::move(img.est);
    opt_state_ = std::move(img.opt);
  }

 private:
  struct stepper_image {
    std::uint64_t steps;
    estimator_state est;
    optimizer_state opt;
  };

  template <class Ar>
  void archive(Ar& ar) {
    std::string k = kind();
    ar.field("stepper", k);
    std::vector<std::uint64_t> sizes = tensor_sizes();
    ar.field("tensor_sizes", sizes);
    ar.field("steps", steps_);
    est_state_.serialize(ar);
    opt_state_.serialize(ar);
  }

  std::vector<std::uint64_t> tensor_sizes() const {
    std::vector<std::uint64_t> s(params_.tensors());
    for (std::size_t t = 0; t < s.size(); ++t) s[t] = params_.tensor(t).size();
    return s;
  }

  void check_sizes(const std::vector<std::uint64_t>& sizes) const {
    if (sizes != tensor_sizes()) {
      throw state_error("load: the saved state is for " + std::to_string(sizes.size()) +
                        " tensors of other sizes than this stepper's " + std::to_string(params_.tensors()));
    }
  }

  parameters<T> params_;
  Estimator est_;
  Baseline base_;
  Normalizer norm_;
  Optimizer opt_;
  executor ex_;
  estimator_state est_state_;
  optimizer_state opt_state_;
  std::uint64_t steps_ = 0;
  step_totals totals_{};  // not saved (see step_totals)
};

}  // namespace stochgrad
