// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `dist::estimator<Distribution, Strategy, Objective>`: the distribution-parameter
/// estimator policy of the one `stepper` template (spec section 1.2).
///
/// The stepper's parameters are the distribution's tensors in D's order (diag_gaussian:
/// `mu`, `rho`; bernoulli_logit: `eta`; ...). A step is:
/// @code
/// std::vector<double> mu(2, 0.0), rho(2, -1.0), z(8 * 2), g(8 * 2);
/// stochgrad::parameters<double> p;
/// p.add(mu);
/// p.add(rho);
/// using est = stochgrad::dist::estimator<stochgrad::dist::diag_gaussian, stochgrad::dist::pathwise>;
/// stochgrad::stepper<est, stochgrad::no_baseline, stochgrad::no_normalizer, stochgrad::optim::sgd<>, double>
///     s(p, {.lr = 0.1}, {.samples = 8, .seed = 7});
/// for (int k = 0; k < 100; ++k) {
///   s.estimator().sample(s, std::span<double>(z));      // z_s = mu + sigma .* eps_s of this step
///   for (std::size_t i = 0; i < z.size(); ++i) g[i] = -2.0 * (z[i] - 1.0);  // grad of f = -|z - 1|^2
///   s.step(std::span<const double>(g));                  // maximises E[f]: mu -> 1
/// }
/// if (std::abs(mu[0] - 1.0) > 0.1) std::abort();
/// @endcode
/// The noise of step call k is regenerated from `step_seed(seed, k)` by `sample`, `noise`,
/// `estimate` and `step` alike (noise.hpp); it is never stored. A step that throws changes
/// nothing (neither the parameters nor the call counter), so the same samples can be used again.
///
/// Arguments of `step(args...)` / `estimate(out, args...)` by strategy and objective:
///   score_function, expectation:  `f` (std::span<const double>, S values f(z_s))
///   score_function, elbo:         `log_p` (S values log p(x, z_s)); `options.direct_term`
///   pathwise, expectation:        `grad_f` (std::span<const T>, S x dim)
///   pathwise, elbo / iwae:        `grad_log_p` / `log_p, grad_log_p` (diag_gaussian)
///   enumerate:                    categorical: `f` at the K categories; bernoulli: `f_one, f_zero`
///   mvd:                          bernoulli: `f_drawn, f_flip` (S x n each)
///   gaussian_mixture (mixture.hpp; `sample` writes what f is evaluated at):
///     composed<enumerate, pathwise>:      `f` [S x K], `grad f` [S x K x d] at all component samples
///     composed<score_function, pathwise>: `f` [S], `grad f` [S x d] at the drawn component's sample
///     score_function (mixture density):   `f` [S] at the drawn sample
///     frequency:                          objective values `q` [S x K] and their gradients [S x K x d]
///     gumbel_softmax:                     `grad f` [S x d] at the relaxed points (`options.temperature`)
///   (spec section 1.2 writes `gaussian_mixture<W, C>` with a `composed` strategy; here the
///   composition is the strategy, `estimator<gaussian_mixture, composed<W, C>>`.)
///
/// Estimator family: the spec (section 1.2) asks for a fourth `estimator_family::distribution`;
/// until base/family.hpp has it, this family reports `policy_gradient` (outcomes computed by the
/// caller; `run(s, step_fn, monitor_fn, ...)` drives it, as for policy gradients).
#pragma once

#include <cstddef>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../base/family.hpp"
#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../outcome/policies.hpp"
#include "../rng/noise.hpp"
#include "../stepper/stepper_template.hpp"
#include "distributions.hpp"
#include "mixture.hpp"
#include "noise.hpp"
#include "objectives.hpp"
#include "strategies.hpp"

namespace stochgrad::dist {

/// Options of a distribution estimator.
struct estimator_options {
  std::size_t samples = 8;  ///< S, samples per step (>= 1; >= 2 with leave_one_out)
  std::uint64_t seed = 0;   ///< master seed of the noise
  bool direct_term = true;  ///< ELBO + score function: ADEV's direct term (coefficient A_s - 1)
  double temperature = 1.0; ///< gumbel_softmax: the relaxation temperature tau (finite, > 0)
};

/// What one step did.
struct step_report {
  bool applied = false;       ///< the optimizer updated the parameters
  std::size_t samples = 0;    ///< S
  std::uint64_t call = 0;     ///< the step call number whose noise was used
  double objective = 0.0;     ///< the objective estimate where the inputs give it (NaN otherwise)
  update_report update{};     ///< the optimizer's report
};

/// True when a strategy has no outcomes for a baseline to act on (pathwise, enumerate, mvd).
template <class S>
inline constexpr bool strategy_without_outcomes = !S::has_outcomes;

/// Estimator policy: gradients of `E_{q_phi}[...]` with respect to the parameters of distribution
/// D, by strategy Strategy, for objective Objective (expectation, elbo, iwae). The stepper
/// applies the LOSS gradient `-grad E[...]` (negated here, once).
/// @tparam D        diag_gaussian, gaussian_tril, bernoulli_logit, categorical_logits, gaussian_mixture
/// @tparam Strategy score_function, pathwise, enumerate, mvd; for gaussian_mixture also
///                  composed<enumerate, pathwise>, composed<score_function, pathwise>, frequency,
///                  gumbel_softmax (file comment)
/// @tparam Objective expectation (default), elbo, iwae
/// @tparam Gen      noise generator policy
template <class D, class Strategy, class Objective = expectation, noise_generator Gen = default_generator>
class estimator {
  static_assert(std::is_same_v<D, gaussian_mixture> || !std::is_same_v<Strategy, score_function> || has_score<D>,
                "stochgrad::dist: score_function needs a distribution with a closed-form score (gaussian_tril "
                "is pathwise only): use pathwise");
  static_assert(!std::is_same_v<Strategy, pathwise> || has_pathwise<D>,
                "stochgrad::dist: pathwise gradients need a reparameterisable (Gaussian) distribution: use "
                "score_function, enumerate or mvd");
  static_assert(!std::is_same_v<Strategy, enumerate> ||
                    std::is_same_v<D, categorical_logits> || std::is_same_v<D, bernoulli_logit>,
                "stochgrad::dist: enumerate needs a finite support (bernoulli_logit, categorical_logits)");
  static_assert(!std::is_same_v<Strategy, mvd> || std::is_same_v<D, bernoulli_logit>,
                "stochgrad::dist: the estimator's mvd strategy is the Bernoulli one; the Gaussian-mean MVD has "
                "no scale gradient: call dist::mvd_mean_gradient directly");
  static_assert(std::is_same_v<Objective, expectation> ||
                    ((std::is_same_v<Strategy, score_function> || std::is_same_v<Strategy, pathwise>) &&
                     (std::is_same_v<Objective, elbo> ||
                      (std::is_same_v<Objective, iwae> && std::is_same_v<Strategy, pathwise>))),
                "stochgrad::dist: elbo takes score_function or pathwise, iwae takes pathwise");
  static_assert(std::is_same_v<Objective, expectation> || std::is_same_v<Strategy, score_function> ||
                    std::is_same_v<D, diag_gaussian>,
                "stochgrad::dist: the pathwise elbo / iwae gradients are those of a diag_gaussian q");

  static_assert(!std::is_same_v<D, gaussian_mixture> || (mixture_strategy<Strategy> && std::is_same_v<Objective, expectation>),
                "stochgrad::dist: a gaussian_mixture takes composed<enumerate, pathwise>, composed<score_function, "
                "pathwise>, score_function (through the mixture density), frequency or gumbel_softmax, with the "
                "expectation objective");
  static_assert(std::is_same_v<D, gaussian_mixture> || !mixture_strategy<Strategy> ||
                    std::is_same_v<Strategy, score_function>,
                "stochgrad::dist: composed, frequency and gumbel_softmax are strategies of a gaussian_mixture");

 public:
  using options_type = estimator_options;  ///< what `stepper(params, opt, {.samples = ...})` builds it from
  using distribution_type = D;             ///< the distribution
  using strategy_type = Strategy;          ///< the strategy
  using objective_type = Objective;        ///< the objective
  /// "dist<distribution,strategy,objective,generator>", part of the stepper's kind(): saved state
  /// is refused by a stepper of another distribution, strategy, objective or generator.
  static constexpr stochgrad::detail::fixed_name name_text{"dist<", D::name, ",", Strategy::name, ",", Objective::name,
                                                           ",", Gen::name, ">"};
  static constexpr const char* name = name_text.text;  ///< see name_text
  /// See the file comment (the spec's `distribution` family is not in the enum yet).
  static constexpr estimator_family family = estimator_family::policy_gradient;

  /// Sized state: the master seed and the call counter (saved), scratch (not saved).
  template <class T>
  struct state {
    std::uint64_t master_seed = 0;        ///< master seed
    std::uint64_t calls = 0;              ///< step calls so far (the next uses step_seed(master, calls))
    std::vector<T> noise;                 ///< scratch: the regenerated noise of a call
    std::vector<T> grad;                  ///< scratch: the gradient of all tensors, back to back
    std::vector<std::span<const T>> phi;  ///< scratch: views of the parameter tensors
    std::vector<std::span<T>> out;        ///< scratch: views into grad
    workspace ws;                         ///< scratch of the strategy functions
    /// Writes / reads the seed and the call counter (serialize.hpp archive protocol).
    template <class Ar>
    void serialize(Ar& ar) {
      ar.field("dist_master_seed", master_seed);
      ar.field("dist_calls", calls);
    }
  };

  /// Default options.
  /// @throws nothing
  estimator() = default;
  /// @param o the options
  /// @throws invalid_argument for samples = 0
  explicit estimator(estimator_options o) : opts_(o) {
    stochgrad::detail::require(o.samples >= 1, "dist::estimator", "samples", 0.0, ">= 1");
    stochgrad::detail::require(o.temperature > 0.0 && std::isfinite(o.temperature), "dist::estimator", "temperature",
                               o.temperature, "finite and > 0");
  }
  /// The options.
  const estimator_options& options() const noexcept { return opts_; }

  /// Fresh state for parameters `p` (D's tensors in order), validated.
  /// @param p the parameters
  /// @throws size_mismatch / invalid_argument from D::validate, or for leave-one-out-free checks
  ///         that need the sizes (enumerate with K > 4096)
  template <class T>
  state<T> init(const parameters<T>& p) const {
    state<T> st;
    st.master_seed = opts_.seed;
    for (std::size_t t = 0; t < p.tensors(); ++t) st.phi.emplace_back(p.tensor(t));
    const param_spans<T> phi(st.phi.data(), st.phi.size());
    D::validate("dist::estimator", phi);
    if constexpr (std::is_same_v<Strategy, enumerate> && std::is_same_v<D, categorical_logits>) {
      stochgrad::detail::require(phi[0].size() <= enumerate::max_support, "dist::estimator", "K",
                                 static_cast<double>(phi[0].size()), "<= 4096");
    }
    if constexpr (is_mixture) {
      st.noise.resize(mixture_noise_size(phi[0].size(), phi[1].size() / phi[0].size(), opts_.samples));
    } else {
      st.noise.resize(opts_.samples * D::noise_dim(phi));
    }
    std::size_t n = 0;
    for (const auto& t : st.phi) n += t.size();
    st.grad.resize(n);
    std::size_t o = 0;
    for (const auto& t : st.phi) {
      st.out.emplace_back(st.grad.data() + o, t.size());
      o += t.size();
    }
    return st;
  }

  /// Compile-time composition check (stepper_template.hpp, spec section 1.2 rules): strategies
  /// without outcomes (pathwise, enumerate, mvd) and gaussian_tril take no_baseline and
  /// no_normalizer.
  template <class B, class N, class O>
  static consteval bool check_composition() {
    static_assert(!strategy_without_outcomes<Strategy> || std::is_same_v<B, no_baseline>,
                  "stochgrad::dist: pathwise, enumerate and mvd gradients have no outcomes to subtract a baseline "
                  "from: use no_baseline");
    static_assert(!strategy_without_outcomes<Strategy> || std::is_same_v<N, no_normalizer>,
                  "stochgrad::dist: pathwise, enumerate and mvd gradients have no outcomes to normalize: use "
                  "no_normalizer");
    return true;
  }

  /// Writes the standard noise of the current call: S rows of `D::noise_dim` entries (noise.hpp
  /// layout), or for a gaussian_mixture the blocks of `fill_mixture_noise`.
  /// @param s the stepper
  /// @param out S rows
  /// @throws size_mismatch for a wrong size
  template <class St>
  void noise(const St& s, std::span<typename St::value_type> out) const {
    using T = typename St::value_type;
    const auto& st = s.est_state();
    stochgrad::detail::require_same_size("dist::estimator::noise", "out", out.size(), "samples x noise_dim",
                                         st.noise.size());
    const std::uint64_t seed = step_seed(st.master_seed, st.calls);
    if constexpr (is_mixture) {
      const std::size_t K = st.phi[0].size();
      fill_mixture_noise<Gen, T>(seed, K, st.phi[1].size() / K, opts_.samples, out);
    } else {
      fill_noise<typename D::noise_type, Gen, T>(seed, st.noise.size() / opts_.samples, out);
    }
  }

  /// Writes the samples of the current call (S rows of `D::dim` entries; categorical: the index).
  /// @param s the stepper
  /// @param z S rows
  /// @throws size_mismatch for a wrong size
  template <class St>
  void sample(St& s, std::span<typename St::value_type> z) const {
    using T = typename St::value_type;
    auto& st = s.est_state();
    const param_spans<T> phi(st.phi.data(), st.phi.size());
    if constexpr (is_mixture) {
      const std::size_t K = phi[0].size(), d = phi[1].size() / K;
      stochgrad::detail::require_same_size("dist::estimator::sample", "z", z.size(), "samples x sample entries",
                                           opts_.samples * detail::mixture_sample_dim<Strategy>(K, d));
      noise(s, std::span<T>(st.noise));
      detail::mixture_samples_of<Strategy, T>(phi, std::span<const T>(st.noise), opts_.samples, opts_.temperature, z);
    } else {
      const std::size_t dz = D::dim(phi), nd = D::noise_dim(phi);
      stochgrad::detail::require_same_size("dist::estimator::sample", "z", z.size(), "samples x dim", opts_.samples * dz);
      noise(s, std::span<T>(st.noise));
      for (std::size_t k = 0; k < opts_.samples; ++k) {
        D::sample(phi, std::span<const T>(st.noise).subspan(k * nd, nd), z.subspan(k * dz, dz));
      }
    }
  }

  static constexpr bool is_mixture = std::is_same_v<D, gaussian_mixture>;  ///< D is a gaussian_mixture
  /// Strategies whose input is one span of values (score_function: f or log p; enumerate over a
  /// categorical: f at the K categories).
  static constexpr bool takes_values =
      !is_mixture && (std::is_same_v<Strategy, score_function> ||
                      (std::is_same_v<Strategy, enumerate> && std::is_same_v<D, categorical_logits>));
  /// Strategies whose input is one span of gradients (pathwise, expectation or elbo).
  static constexpr bool takes_gradients = std::is_same_v<Strategy, pathwise> && !std::is_same_v<Objective, iwae>;
  /// Strategies whose input is two spans of values (enumerate / mvd over bernoulli_logit).
  static constexpr bool takes_pairs = std::is_same_v<D, bernoulli_logit> && !takes_values && !std::is_same_v<Strategy, score_function>;
  /// The IWAE input: log p and its gradient.
  static constexpr bool takes_iwae = std::is_same_v<Objective, iwae>;
  /// Mixture strategies with one input span: score_function (f at the drawn samples, S) and
  /// gumbel_softmax (grad f at the relaxed points, S x d).
  static constexpr bool takes_mixture_one =
      is_mixture && (std::is_same_v<Strategy, score_function> || std::is_same_v<Strategy, gumbel_softmax>);
  /// Mixture strategies with two input spans: composed<enumerate, pathwise> (f [S x K], grad f
  /// [S x K x d] at all components), composed<score_function, pathwise> (f [S], grad f [S x d] at
  /// the drawn sample) and frequency (objective values q [S x K], their gradients [S x K x d]).
  static constexpr bool takes_mixture_two = is_mixture && !takes_mixture_one;

  /// One step with S values (score_function: `f(z_s)`, or `log p(x, z_s)` for elbo; enumerate
  /// over a categorical: f at the K categories): regenerates the call's noise, computes the
  /// objective gradient, applies its negation (the loss gradient) and consumes the call.
  /// @param s the stepper
  /// @param f the values
  /// @return the report
  /// @throws as the strategy function, before anything changes
  template <class St>
    requires takes_values
  step_report step(St& s, std::span<const double> f) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return values(s, phi, nz, out, f); });
  }
  /// One pathwise step with `grad_z f(z_s)` (elbo: `grad_z log p(x, z_s)`), S rows of dim.
  /// @param s the stepper
  /// @param g the gradients
  /// @return the report
  /// @throws as the strategy function
  template <class St>
    requires takes_gradients
  step_report step(St& s, std::span<const typename St::value_type> g) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return gradients(s, phi, nz, out, g); });
  }
  /// One step over Bernoulli logits with two value rows (enumerate: `f_one, f_zero`; mvd:
  /// `f_drawn, f_flip`), S x n each.
  /// @param s the stepper
  /// @param a first values
  /// @param b second values
  /// @return the report
  /// @throws as the strategy function
  template <class St>
    requires takes_pairs
  step_report step(St& s, std::span<const double> a, std::span<const double> b) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return pairs(phi, nz, out, a, b); });
  }
  /// One IWAE step with `log p(x, z_s)` and `grad_z log p(x, z_s)`.
  /// @param s the stepper
  /// @param log_p S values
  /// @param g S rows of d
  /// @return the report
  /// @throws as iwae_pathwise_gradient
  template <class St>
    requires takes_iwae
  step_report step(St& s, std::span<const double> log_p, std::span<const typename St::value_type> g) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return iwae_pathwise_gradient(phi, nz, log_p, g, out); });
  }

  /// One mixture step with one input span (see takes_mixture_one).
  /// @param s the stepper
  /// @param a the values
  /// @return the report
  /// @throws as the mixture function
  template <class St>
    requires takes_mixture_one
  step_report step(St& s, std::span<const double> a) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return mixture(s, phi, nz, out, a, {}); });
  }
  /// One mixture step with two input spans (see takes_mixture_two).
  /// @param s the stepper
  /// @param a the first values
  /// @param b the second values
  /// @return the report
  /// @throws as the mixture function
  template <class St>
    requires takes_mixture_two
  step_report step(St& s, std::span<const double> a, std::span<const double> b) const {
    return do_step(s, [&](auto phi, auto nz, auto out) { return mixture(s, phi, nz, out, a, b); });
  }
  /// The OBJECTIVE gradient of a mixture call (inputs as step), without an update.
  /// @param s the stepper
  /// @param out the gradient
  /// @param a the values
  /// @return the objective estimate or NaN
  /// @throws as step
  template <class St>
    requires takes_mixture_one
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out, std::span<const double> a) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return mixture(s, phi, nz, o, a, {}); });
  }
  /// The OBJECTIVE gradient of a mixture call (two inputs as step), without an update.
  /// @param s the stepper
  /// @param out the gradient
  /// @param a the first values
  /// @param b the second values
  /// @return the objective estimate or NaN
  /// @throws as step
  template <class St>
    requires takes_mixture_two
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out, std::span<const double> a,
                  std::span<const double> b) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return mixture(s, phi, nz, o, a, b); });
  }

  /// The OBJECTIVE gradient of the current call into `out` (one span per tensor), without an
  /// update and without consuming the call; the inputs are those of `step`.
  /// @param s the stepper
  /// @param out the gradient
  /// @param f the values
  /// @return the objective estimate (NaN where the inputs do not give it)
  /// @throws as step
  template <class St>
    requires takes_values
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out, std::span<const double> f) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return values(s, phi, nz, o, f); });
  }
  /// The OBJECTIVE gradient of a pathwise call (`grad f` or `grad log p` as in step), without an
  /// update and without consuming the call.
  /// @param s the stepper
  /// @param out the gradient
  /// @param f the gradients, S rows of dim
  /// @return NaN (the gradients do not give the objective)
  /// @throws as step
  template <class St>
    requires takes_gradients
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out,
                  std::span<const typename St::value_type> f) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return gradients(s, phi, nz, o, f); });
  }
  /// The OBJECTIVE gradient of the current call (two value rows, as step), without an update.
  /// @param s the stepper
  /// @param out the gradient
  /// @param a first values
  /// @param b second values
  /// @return NaN
  /// @throws as step
  template <class St>
    requires takes_pairs
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out, std::span<const double> a,
                  std::span<const double> b) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return pairs(phi, nz, o, a, b); });
  }
  /// The OBJECTIVE (IWAE) gradient of the current call, without an update.
  /// @param s the stepper
  /// @param out the gradient
  /// @param log_p S values
  /// @param g S rows of d
  /// @return the IWAE estimate
  /// @throws as step
  template <class St>
    requires takes_iwae
  double estimate(St& s, std::span<const std::span<typename St::value_type>> out, std::span<const double> log_p,
                  std::span<const typename St::value_type> g) const {
    return do_estimate(s, out, [&](auto phi, auto nz, auto o) { return iwae_pathwise_gradient(phi, nz, log_p, g, o); });
  }

 private:
  template <class St, class F>
  step_report do_step(St& s, F&& fn) const {
    using T = typename St::value_type;
    auto& st = s.est_state();
    noise(s, std::span<T>(st.noise));
    step_report r;
    r.samples = opts_.samples;
    r.call = st.calls;
    r.objective = fn(param_spans<T>(st.phi.data(), st.phi.size()), std::span<const T>(st.noise),
                     grad_spans<T>(st.out.data(), st.out.size()));
    for (T& g : st.grad) g = -g;
    std::vector<std::span<const T>> views(st.out.begin(), st.out.end());
    r.update = s.apply(dense_gradient<T>(std::span<const std::span<const T>>(views.data(), views.size())));
    r.applied = r.update.applied;
    ++st.calls;
    return r;
  }
  template <class St, class F>
  double do_estimate(St& s, std::span<const std::span<typename St::value_type>> out, F&& fn) const {
    using T = typename St::value_type;
    auto& st = s.est_state();
    noise(s, std::span<T>(st.noise));
    return fn(param_spans<T>(st.phi.data(), st.phi.size()), std::span<const T>(st.noise), grad_spans<T>(out));
  }
  template <class St, class T>
  double values(St& s, param_spans<T> phi, std::span<const T> nz, grad_spans<T> out, std::span<const double> a) const {
    auto& st = s.est_state();
    if constexpr (std::is_same_v<Strategy, enumerate>) {
      return enumerate_gradient<T>(categorical_logits{}, phi, a, out);
    } else if constexpr (std::is_same_v<Objective, elbo>) {
      return elbo_score_gradient<D>(phi, nz, a, out, s.baseline(), s.normalizer(), opts_.direct_term, &st.ws);
    } else {
      score_function_gradient<D>(phi, nz, a, out, s.baseline(), s.normalizer(), 0.0, &st.ws);
      double m = 0.0;
      for (double v : a) m += v;
      return m / static_cast<double>(a.size());
    }
  }
  template <class St, class T>
  double gradients(St& s, param_spans<T> phi, std::span<const T> nz, grad_spans<T> out, std::span<const T> g) const {
    auto& st = s.est_state();
    if constexpr (std::is_same_v<Objective, elbo>) {
      elbo_pathwise_gradient(phi, nz, g, out, &st.ws);
    } else {
      pathwise_gradient<D>(phi, nz, g, out, &st.ws);
    }
    return std::numeric_limits<double>::quiet_NaN();
  }
  template <class T>
  static double pairs(param_spans<T> phi, std::span<const T> nz, grad_spans<T> out, std::span<const double> a,
                      std::span<const double> b) {
    if constexpr (std::is_same_v<Strategy, enumerate>) {
      enumerate_gradient<T>(bernoulli_logit{}, phi, a, b, out);
    } else {
      mvd_gradient(bernoulli_logit{}, phi, nz, a, b, out);
    }
    return std::numeric_limits<double>::quiet_NaN();
  }

  template <class St, class T>
  double mixture(St& s, param_spans<T> phi, std::span<const T> nz, grad_spans<T> out, std::span<const double> a,
                 std::span<const double> b) const {
    return detail::mixture_gradient_of<Strategy, T>(phi, nz, opts_.samples, opts_.temperature, a, b, out, s.baseline(),
                                                    s.normalizer());
  }

  estimator_options opts_{};
};

}  // namespace stochgrad::dist
