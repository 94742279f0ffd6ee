// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief SG-MCMC samplers as optimizer policies: `optim::sgld` (stochastic-gradient Langevin
/// dynamics), `optim::psgld` (RMSprop-preconditioned SGLD) and `optim::sghmc` (stochastic-gradient
/// Hamiltonian Monte Carlo). Each is one fused pass per step that reads any gradient source and
/// regenerates its Gaussian noise in registers from the counter-based generator.
///
/// The gradient they read is that of the stochastic potential
/// \f[ \tilde U(\theta) = \frac{1}{T_\text{post}}\Big(-\frac{N}{n}\sum_{i \in B}\log p(x_i \mid \theta)
///     - \log p(\theta)\Big) \f]
/// (prior and posterior temperature included; jax-sgmc `minibatch_potential`). The samplers add no
/// weight decay and do no clipping: a Gaussian prior belongs in U, and clipping would bias the
/// stationary law.
///
/// Noise: element e of tensor t at stepper step k is the standard Gaussian of key
/// `{seed_s, stream = t, draw = (uint32) k}` with
/// `seed_s = noise_seed + (k >> 32) * 0x9E3779B97F4A7C15 (mod 2^64)`, so chains are bit-identical
/// for any thread count, SIMD width or executor, and a resumed run (state: step counters and the
/// V or v buffers) continues bit-identically. Chain c of a multi-chain run uses `noise_seed + c`
/// (sampler_chain_seed).
///
/// References: M. Welling, Y. W. Teh, "Bayesian Learning via Stochastic Gradient Langevin
/// Dynamics", ICML 2011; C. Li, C. Chen, D. Carlson, L. Carin, "Preconditioned Stochastic Gradient
/// Langevin Dynamics for Deep Neural Networks", AAAI 2016; T. Chen, E. B. Fox, C. Guestrin,
/// "Stochastic Gradient Hamiltonian Monte Carlo", ICML 2014; the group implementation jax-sgmc
/// (integrator.py, adaption.py, alias.py) used by Thaler, Doehner, Zavadlav (arXiv 2212.07959).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../base/names.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "parameters.hpp"
#include "schedule.hpp"
#include "sgmcmc_samples.hpp"
#include "sgmcmc_schedule.hpp"
#include "source.hpp"

namespace stochgrad::optim {

/// The samplers' default noise seed (distinct from the zeroth-order estimators' seeds, so MeZO
/// directions and Langevin noise in one composition never share a key).
inline constexpr std::uint64_t default_sampler_seed = 0x53474D434D430001ULL;

/// Stream bit of SGHMC's momentum-refresh noise: tensor t uses stream `0x80000000 | t`.
inline constexpr std::uint32_t sampler_refresh_stream = 0x80000000U;

/// The key of the sampler noise of tensor `stream` at step k:
/// \f[ \{\,\text{seed} + \lfloor k / 2^{32}\rfloor \cdot \text{0x9E3779B97F4A7C15},\;\text{stream},
///     \; k \bmod 2^{32}\,\} \f]
/// (the seed changes every 2^32 steps, so the 32-bit draw never repeats a key).
constexpr noise_key sampler_noise_key(std::uint64_t seed, std::uint32_t stream, std::uint64_t k) noexcept {
  return noise_key{seed + (k >> 32) * 0x9E3779B97F4A7C15ULL, stream, static_cast<std::uint32_t>(k)};
}

/// The noise seed of chain c of a multi-chain run: `base + c` (independent keys per chain).
constexpr std::uint64_t sampler_chain_seed(std::uint64_t base, std::uint64_t chain) noexcept { return base + chain; }

/// Hyper-parameters of optim::sgld.
struct sgld_options {
  double lr = 1e-3;                           ///< step size h (the base of the schedule), finite and > 0
  double temperature = 1.0;                   ///< noise temperature T, finite and >= 0 (T < 1: cold posterior)
  std::uint64_t noise_seed = default_sampler_seed;  ///< seed of the Langevin noise
  double weight_decay = 0.0;                  ///< must be 0: samplers take no weight decay (prior in U)
  double max_grad_norm = 0.0;                 ///< must be 0: samplers do not clip
  bool skip_nonfinite = false;                ///< a NaN/inf gradient leaves the chain where it is (no noise drawn)
};

/// Hyper-parameters of optim::psgld (jax-sgmc `rms_prop` adaption; defaults as `alias.sgld`).
struct psgld_options {
  double lr = 1e-3;                           ///< step size h, finite and > 0
  double temperature = 1.0;                   ///< noise temperature T, finite and >= 0
  double alpha = 0.9;                         ///< RMSprop decay of V, in [0, 1)
  double lambda = 1e-5;                       ///< added to sqrt(V), finite and > 0
  double v0 = 1.0;                            ///< initial V (jax-sgmc: ones), finite and >= 0
  std::uint64_t noise_seed = default_sampler_seed;  ///< seed of the Langevin noise
  double weight_decay = 0.0;                  ///< must be 0: samplers take no weight decay (prior in U)
  double max_grad_norm = 0.0;                 ///< must be 0: samplers do not clip
  bool skip_nonfinite = false;                ///< a NaN/inf gradient leaves the chain where it is (no noise drawn)
};

/// Hyper-parameters of optim::sghmc (Chen et al.'s `(eta, alpha)` parametrisation).
struct sghmc_options {
  double lr = 1e-3;                           ///< learning rate eta = eps^2 / M, finite and > 0
  double alpha = 0.1;                         ///< momentum decay (friction) alpha = eps C / M, in [0, 1]
  double temperature = 1.0;                   ///< noise temperature T, finite and >= 0
  std::uint64_t refresh_every = 0;            ///< resample v every L updates (0: never)
  std::uint64_t noise_seed = default_sampler_seed;  ///< seed of the noise and of the momentum refresh
  double weight_decay = 0.0;                  ///< must be 0: samplers take no weight decay (prior in U)
  double max_grad_norm = 0.0;                 ///< must be 0: samplers do not clip
  bool skip_nonfinite = false;                ///< a NaN/inf gradient leaves the chain where it is (no noise drawn)
};

/// Sized state of optim::sgld: step counters only (the noise is regenerated, never stored).
template <real_scalar T>
struct sgld_state {
  /// Updates applied so far, per parameter group.
  std::vector<std::uint64_t> steps;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var neg_lr
    /// `-h_k`, the signed step size
    /// @var noise
    /// `sqrt(2 T h_k)`, the noise scale
    T neg_lr, noise;
    /// @var noisy
    /// noise scale != 0 (T > 0): the noise is generated
    bool noisy;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("sgld.steps", steps);
  }
  /// @throws state_error unless there is one counter per group.
  void check(const parameters<T>& p) const { detail::check_group_steps("sgld", steps, p); }
};

/// Sized state of optim::psgld: step counters and the RMSprop second moment V.
template <real_scalar T>
struct psgld_state {
  /// Updates applied so far, per parameter group.
  std::vector<std::uint64_t> steps;
  /// V per tensor (initialised to psgld_options::v0).
  std::vector<std::vector<T>> square_avg;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var neg_lr
    /// `-h_k`
    /// @var noise
    /// `sqrt(2 T h_k)`
    /// @var alpha
    /// RMSprop decay alpha
    /// @var omalpha
    /// `1 - alpha`
    /// @var lambda
    /// added to sqrt(V)
    T neg_lr, noise, alpha, omalpha, lambda;
    /// @var noisy
    /// noise scale != 0 (T > 0): the noise is generated
    bool noisy;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters and V (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("psgld.steps", steps);
    ar.field("psgld.square_avg", square_avg);
  }
  /// @throws state_error unless the state fits `p`.
  void check(const parameters<T>& p) const {
    detail::check_group_steps("psgld", steps, p);
    detail::check_tensor_buffers("psgld", "psgld.square_avg", square_avg, p);
  }
};

/// Sized state of optim::sghmc: step counters and the momentum v.
template <real_scalar T>
struct sghmc_state {
  /// Updates applied so far, per parameter group.
  std::vector<std::uint64_t> steps;
  /// Momentum v per tensor (initialised to 0).
  std::vector<std::vector<T>> momentum;

  /// Per-group coefficients of the current update (workspace sized by init; not saved).
  struct group_coeffs {
    /// @var neg_lr
    /// `-eta_k`
    /// @var damp
    /// `1 - alpha`
    /// @var noise
    /// `sqrt(2 alpha eta_k T)`
    /// @var refresh
    /// `sqrt(eta_k)`, the scale of a refreshed momentum
    T neg_lr, damp, noise, refresh;
    /// @var noisy
    /// noise scale != 0: the noise is generated
    /// @var refreshing
    /// this update resamples v first
    bool noisy, refreshing;
  };
  /// One `group_coeffs` per parameter group, recomputed at every update (workspace, not saved).
  std::vector<group_coeffs> scratch;

  /// Saves/loads the counters and momenta (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("sghmc.steps", steps);
    ar.field("sghmc.momentum", momentum);
  }
  /// @throws state_error unless the state fits `p`.
  void check(const parameters<T>& p) const {
    detail::check_group_steps("sghmc", steps, p);
    detail::check_tensor_buffers("sghmc", "sghmc.momentum", momentum, p);
  }
};

namespace detail {

// The Gaussian noise of tensor t (stream `stream_bits | t`) under one key, as a gradient-source-like
// reader (load_chunk / at), so the kernels read counter noise and explicit noise the same way.
template <noise_generator G, real_scalar T>
struct counter_noise {
  std::uint64_t seed = 0;
  std::uint32_t draw = 0;
  std::uint32_t stream_bits = 0;
  STOCHGRAD_ALWAYS_INLINE void load_chunk(std::size_t t, std::size_t i, xsimd::batch<T>*,
                                          xsimd::batch<T>* out) const noexcept {
    noise_chunk<gaussian, G>(key(t), i, out);
  }
  STOCHGRAD_ALWAYS_INLINE T at(std::size_t t, std::size_t i, T&) const noexcept {
    return noise_value<gaussian, G, T>(key(t), i);
  }
  void check(const parameters<T>&) const noexcept {}
  noise_key key(std::size_t t) const noexcept {
    return noise_key{seed, stream_bits | static_cast<std::uint32_t>(t), draw};
  }
};

template <noise_generator G, real_scalar T>
counter_noise<G, T> step_noise(std::uint64_t seed, std::uint64_t k, std::uint32_t stream_bits = 0) noexcept {
  const noise_key key = sampler_noise_key(seed, 0, k);
  return counter_noise<G, T>{key.seed, key.draw, stream_bits};
}

// Options every sampler shares: validated the same way.
inline void require_sampler_common(const char* what, double lr, double temperature, double weight_decay,
                                   double max_grad_norm) {
  require_positive(what, "lr", lr);
  require_nonnegative(what, "temperature", temperature);
  stochgrad::detail::require(weight_decay == 0.0, what, "weight_decay", weight_decay,
                             "0 (samplers take no weight decay: put a Gaussian prior into the potential U)");
  stochgrad::detail::require(max_grad_norm == 0.0, what, "max_grad_norm", max_grad_norm,
                             "0 (samplers do not clip: clipping would bias the stationary distribution)");
}

// A group weight-decay override is refused as the option is (before anything changes).
template <real_scalar T>
void require_no_group_decay(const char* what, const parameters<T>& p) {
  for (std::size_t k = 0; k < p.groups(); ++k) {
    const auto& wd = p.group(k).weight_decay;
    if (wd && *wd != 0.0) {
      stochgrad::detail::require(false, what, "group weight_decay", *wd,
                                 "0 or unset (samplers take no weight decay: put a Gaussian prior into U)");
    }
  }
}

// The shared update protocol of the three samplers: checks, skip guard, coefficients, one fused pass.
template <class O, class T, class State, class Source, class Noise>
update_report sampler_update(const O& o, const parameters<T>& p, State& s, const Source& g, const Noise* xi,
                             const step_context& ctx) {
  g.check(p);
  if (xi != nullptr) xi->check(p);
  o.check_state(s, p);
  require_no_group_decay(O::name, p);
  const auto pre = gradient_prepass(p, g, ctx.ex, 0.0, 1e-6, o.options().skip_nonfinite);
  const double factor = static_cast<double>(o.schedule()(ctx.step)) * ctx.lr_factor;
  update_report rep;
  rep.grad_norm = pre.norm;
  rep.lr = resolve_group(p.group(0), o.options().lr, 0.0, factor).lr;
  if (pre.skip) {
    rep.applied = false;
    return rep;
  }
  s.scratch.resize(p.groups());  // no allocation once init sized it
  for (std::size_t k = 0; k < p.groups(); ++k) {
    o.fill_coeffs(s.scratch[k], resolve_group(p.group(k), o.options().lr, 0.0, factor).lr, ctx.step);
  }
  o.run_pass(p, s, g, xi, ctx);
  for (auto& k : s.steps) ++k;
  return rep;
}

}  // namespace detail

/// Stochastic-gradient Langevin dynamics (Welling & Teh 2011, in jax-sgmc's step convention; their
/// `eps_t` is `2 h_k`). With step size `h_k = lr * s(k)` (schedule, group lr and lr_scale, context
/// factor) and noise temperature T, per element:
/// \f[ \theta \leftarrow \theta - h_k\, g + \sqrt{2\,T\,h_k}\;\xi_k, \qquad \xi_k \sim N(0, 1), \f]
/// with `g` the gradient of the stochastic potential (prior and posterior temperature included).
/// For small h the chain samples `exp(-U / T)`. One pass: reads theta and g, writes theta (12
/// bytes/element in float); xi is generated in registers.
/// @tparam Schedule step-size schedule (schedule.hpp, sgmcmc_schedule.hpp)
/// @tparam Gen      noise generator policy (default_generator unless named)
template <schedule_policy Schedule = constant_schedule, noise_generator Gen = default_generator>
class sgld {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"sgld<", stochgrad::detail::policy_name<Schedule>(), ",",
                                                           stochgrad::detail::policy_name<Gen>(), ">"};
  /// "sgld<schedule,generator>": identifies the sampler in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = sgld_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = sgld_options;
  /// The step-size schedule policy: h_k = lr * Schedule(k).
  using schedule_type = Schedule;
  /// The noise generator policy.
  using generator_type = Gen;

  /// Default hyper-parameters (see the options struct).
  sgld() : sgld(sgld_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, temperature not finite or < 0, weight_decay or max_grad_norm not 0; and from the
  /// schedule's validate().
  explicit sgld(sgld_options o, Schedule s = {}) : o_(o), sched_(s) {
    detail::require_sampler_common(name, o_.lr, o_.temperature, o_.weight_decay, o_.max_grad_norm);
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const sgld_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero step counters.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.scratch.resize(p.groups());
    return s;
  }
  /// Checks a (loaded) state against the parameters. @throws state_error when it does not fit.
  template <real_scalar T>
  void check_state(const state<T>& s, const parameters<T>& p) const {
    s.check(p);
  }

  /// One fused update of `p` from the gradient source `g`, with the counter-based noise of step
  /// `ctx.step`.
  /// @throws size_mismatch from the source's check; state_error when `s` does not fit `p`;
  /// invalid_argument when a group overrides weight_decay with a non-zero value. Nothing is
  /// modified when it throws. With skip_nonfinite, a gradient with a NaN/inf element leaves
  /// parameters and state untouched and returns `applied = false`.
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, static_cast<const dense_gradient<T>*>(nullptr), ctx);
    } else {
      return update_report{};  // not reached: the checks above fail to compile first
    }
  }
  /// The same update with explicit noise: `xi` (any gradient source of T, e.g. a dense_gradient
  /// holding the values) replaces the counter-based xi. For reproducing worked examples and for
  /// callers that bring their own noise. @throws as update, and size_mismatch from xi's check.
  template <class T, class State, class Source, class Noise>
  update_report update_with_noise(const parameters<T>& p, State& s, const Source& g, const Noise& xi,
                                  const step_context& ctx) const {
    static_assert(gradient_source<Noise, T>, "stochgrad::optim::sgld: the explicit noise must be a gradient source of T");
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, &xi, ctx);
    } else {
      return update_report{};
    }
  }

  /// @cond STOCHGRAD_INTERNAL
  template <class C>
  void fill_coeffs(C& c, double h, std::uint64_t) const noexcept {
    using T = decltype(c.neg_lr);
    const double ns = std::sqrt(2.0 * o_.temperature * h);
    c.neg_lr = static_cast<T>(-h);
    c.noise = static_cast<T>(ns);
    c.noisy = ns != 0.0;
  }
  template <class T, class Source, class Noise>
  void run_pass(const parameters<T>& p, state<T>& s, const Source& g, const Noise* xi, const step_context& ctx) const {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>;
    const auto cn = detail::step_noise<Gen, T>(o_.noise_seed, ctx.step);
    auto body = [&](const auto& nz) {
      stochgrad::detail::for_each_gradient_chunk(
          p, g, ctx.ex,
          [&](std::size_t t, std::size_t i, B* th, B* gr) {
            const auto c = s.scratch[p.group_of(t)];
            for (std::size_t r = 0; r < NB; ++r) th[r] = simd::madd(B(c.neg_lr), gr[r], th[r]);
            if (c.noisy) {
              B z[NB];
              nz.load_chunk(t, i, th, z);
              for (std::size_t r = 0; r < NB; ++r) th[r] = simd::madd(B(c.noise), z[r], th[r]);
            }
          },
          [&](std::size_t t, std::size_t i, T& th, T gi) {
            const auto c = s.scratch[p.group_of(t)];
            th = simd::madd(c.neg_lr, gi, th);
            if (c.noisy) th = simd::madd(c.noise, nz.at(t, i, th), th);
          });
    };
    if (xi != nullptr) {
      body(*xi);
    } else {
      body(cn);
    }
  }
  /// @endcond

 private:
  sgld_options o_;
  Schedule sched_;
};

/// Preconditioned SGLD with an RMSprop preconditioner (Li et al. 2016, as jax-sgmc's `rms_prop`
/// adaption). With step size h_k and noise temperature T, per element:
/// \f[ V \leftarrow \alpha V + (1-\alpha)\, g^2, \qquad G^{-1} = \frac{1}{\lambda + \sqrt{V}}, \qquad
///     \theta \leftarrow \theta - h_k\, G^{-1} g + \sqrt{G^{-1}}\,\sqrt{2\,T\,h_k}\;\xi_k, \f]
/// V initialised to `v0` (1: jax-sgmc's `ones_like`) and updated with the current gradient before
/// use. The correction term Gamma(theta) of Li et al. is 0, as in jax-sgmc. `g` is the gradient
/// of the full scaled potential (jax-sgmc's choice; Li et al. average per-example gradients, so V is
/// about N^2 times larger here). One pass: reads theta, g, V and writes theta, V (20 bytes/element
/// in float).
/// @tparam Schedule step-size schedule
/// @tparam Gen      noise generator policy
template <schedule_policy Schedule = constant_schedule, noise_generator Gen = default_generator>
class psgld {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"psgld<", stochgrad::detail::policy_name<Schedule>(), ",",
                                                           stochgrad::detail::policy_name<Gen>(), ">"};
  /// "psgld<schedule,generator>": identifies the sampler in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = psgld_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = psgld_options;
  /// The step-size schedule policy: h_k = lr * Schedule(k).
  using schedule_type = Schedule;
  /// The noise generator policy.
  using generator_type = Gen;

  /// Default hyper-parameters (see the options struct).
  psgld() : psgld(psgld_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, temperature < 0, alpha outside [0, 1), lambda not finite or <= 0, v0 not finite or
  /// < 0, weight_decay or max_grad_norm not 0; and from the schedule's validate().
  explicit psgld(psgld_options o, Schedule s = {}) : o_(o), sched_(s) {
    detail::require_sampler_common(name, o_.lr, o_.temperature, o_.weight_decay, o_.max_grad_norm);
    detail::require_beta(name, "alpha", o_.alpha);
    detail::require_positive(name, "lambda", o_.lambda);
    detail::require_nonnegative(name, "v0", o_.v0);
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const psgld_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero step counters, V = v0.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.square_avg.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) s.square_avg[t].assign(p.tensor(t).size(), static_cast<T>(o_.v0));
    s.scratch.resize(p.groups());
    return s;
  }
  /// Checks a (loaded) state against the parameters. @throws state_error when it does not fit.
  template <real_scalar T>
  void check_state(const state<T>& s, const parameters<T>& p) const {
    s.check(p);
  }

  /// One fused update of `p` from the gradient source `g` with the counter-based noise of step
  /// `ctx.step`. @throws as sgld::update; nothing is modified when it throws.
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, static_cast<const dense_gradient<T>*>(nullptr), ctx);
    } else {
      return update_report{};
    }
  }
  /// The same update with explicit noise `xi` (any gradient source of T).
  /// @throws as update, and size_mismatch from xi's check.
  template <class T, class State, class Source, class Noise>
  update_report update_with_noise(const parameters<T>& p, State& s, const Source& g, const Noise& xi,
                                  const step_context& ctx) const {
    static_assert(gradient_source<Noise, T>, "stochgrad::optim::psgld: the explicit noise must be a gradient source of T");
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, &xi, ctx);
    } else {
      return update_report{};
    }
  }

  /// @cond STOCHGRAD_INTERNAL
  template <class C>
  void fill_coeffs(C& c, double h, std::uint64_t) const noexcept {
    using T = decltype(c.neg_lr);
    const double ns = std::sqrt(2.0 * o_.temperature * h);
    c.neg_lr = static_cast<T>(-h);
    c.noise = static_cast<T>(ns);
    c.alpha = static_cast<T>(o_.alpha);
    c.omalpha = static_cast<T>(1.0 - o_.alpha);
    c.lambda = static_cast<T>(o_.lambda);
    c.noisy = ns != 0.0;
  }
  template <class T, class Source, class Noise>
  void run_pass(const parameters<T>& p, state<T>& s, const Source& g, const Noise* xi, const step_context& ctx) const {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    const auto cn = detail::step_noise<Gen, T>(o_.noise_seed, ctx.step);
    auto body = [&](const auto& nz) {
      stochgrad::detail::for_each_gradient_chunk(
          p, g, ctx.ex,
          [&](std::size_t t, std::size_t i, B* th, B* gr) {
            const auto c = s.scratch[p.group_of(t)];
            T* vp = s.square_avg[t].data() + i;
            B z[NB];
            if (c.noisy) nz.load_chunk(t, i, th, z);
            for (std::size_t r = 0; r < NB; ++r) {
              B v = B::load_unaligned(vp + r * W);
              v = simd::madd(B(c.omalpha) * gr[r], gr[r], B(c.alpha) * v);
              v.store_unaligned(vp + r * W);
              const B ginv = B(T(1)) / (B(c.lambda) + detail::vsqrt(v));
              th[r] = simd::madd(B(c.neg_lr) * ginv, gr[r], th[r]);
              if (c.noisy) th[r] = simd::madd(detail::vsqrt(ginv) * B(c.noise), z[r], th[r]);
            }
          },
          [&](std::size_t t, std::size_t i, T& th, T gi) {
            const auto c = s.scratch[p.group_of(t)];
            T& vr = s.square_avg[t][i];
            const T v = simd::madd(c.omalpha * gi, gi, c.alpha * vr);
            vr = v;
            const T ginv = T(1) / (c.lambda + detail::vsqrt(v));
            const T z = c.noisy ? nz.at(t, i, th) : T(0);
            th = simd::madd(c.neg_lr * ginv, gi, th);
            if (c.noisy) th = simd::madd(detail::vsqrt(ginv) * c.noise, z, th);
          });
    };
    if (xi != nullptr) {
      body(*xi);
    } else {
      body(cn);
    }
  }
  /// @endcond

 private:
  psgld_options o_;
  Schedule sched_;
};

/// Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin 2014, their eq. 15 with
/// `beta_hat = 0`, in the `(eta, alpha)` variables: eta = eps^2 / M, alpha = eps C / M). With
/// learning rate `eta_k = lr * s(k)` and the caller's gradient `g` at the current parameters, per
/// element one fused update
/// \f[ v \leftarrow (1-\alpha)\, v - \eta_k\, g + \sqrt{2\,\alpha\,\eta_k\,T}\;\xi_k, \qquad
///     \theta \leftarrow \theta + v, \f]
/// which is Chen et al.'s Algorithm-2 order (position with the old momentum, then friction,
/// gradient at the new position and noise) shifted by one position step: from v = 0 the first
/// update yields Chen's `theta_2 = theta_0 + v_1` and state `v_1`. With `refresh_every = L > 0`
/// the update at step k with `k mod L == 0` first resamples the momentum,
/// \f$ v \leftarrow \sqrt{\eta_k}\,\zeta \f$, with zeta from stream `0x80000000 | t`, draw `k / L`.
/// Because the state is shifted by one position step, the stationary covariance of the state
/// `(theta, v)` on a Gaussian target is `+eta T c / (2 - alpha)` (that of Chen's
/// `(theta_{k+1}, v_{k+1})` plus Var(v)); Var(theta) and Var(v) are the same in both orders.
/// The noise scale is Chen et al.'s `sqrt(2 alpha eta T)`; jax-sgmc's `friction_leapfrog` adds
/// `C sqrt(2 eps) xi` to the momentum r and has no temperature (the two agree for C = 1, T = 1;
/// for C != 1 jax-sgmc's chain is tempered by C). One pass: reads theta, g, v and writes
/// theta, v (20 bytes/element in float).
/// @tparam Schedule learning-rate schedule
/// @tparam Gen      noise generator policy
template <schedule_policy Schedule = constant_schedule, noise_generator Gen = default_generator>
class sghmc {
 public:
  /// Identifier in saved state.
  static constexpr stochgrad::detail::fixed_name name_text{"sghmc<", stochgrad::detail::policy_name<Schedule>(), ",",
                                                           stochgrad::detail::policy_name<Gen>(), ">"};
  /// "sghmc<schedule,generator>": identifies the sampler in saved state and kind().
  static constexpr const char* name = name_text.text;
  /// Sized state for parameters of type T.
  template <class T>
  using state = sghmc_state<T>;
  /// The hyper-parameter aggregate.
  using options_type = sghmc_options;
  /// The learning-rate schedule policy: eta_k = lr * Schedule(k).
  using schedule_type = Schedule;
  /// The noise generator policy.
  using generator_type = Gen;

  /// Default hyper-parameters (see the options struct).
  sghmc() : sghmc(sghmc_options{}) {}
  /// @param o hyper-parameters; @param s the schedule.
  /// @throws invalid_argument naming the parameter, value and allowed range: lr not finite or
  /// <= 0, alpha outside [0, 1], temperature < 0, weight_decay or max_grad_norm not 0; and from
  /// the schedule's validate().
  explicit sghmc(sghmc_options o, Schedule s = {}) : o_(o), sched_(s) {
    detail::require_sampler_common(name, o_.lr, o_.temperature, o_.weight_decay, o_.max_grad_norm);
    stochgrad::detail::require(o_.alpha >= 0.0 && o_.alpha <= 1.0, name, "alpha", o_.alpha, "in [0, 1]");
    detail::validate_schedule(sched_);
  }

  /// The hyper-parameters.
  const sghmc_options& options() const noexcept { return o_; }
  /// The schedule.
  const Schedule& schedule() const noexcept { return sched_; }

  /// Fresh state: zero step counters and momenta.
  template <real_scalar T>
  state<T> init(const parameters<T>& p) const {
    state<T> s;
    s.steps.assign(p.groups(), 0);
    s.momentum = detail::zero_buffers(p);
    s.scratch.resize(p.groups());
    return s;
  }
  /// Checks a (loaded) state against the parameters. @throws state_error when it does not fit.
  template <real_scalar T>
  void check_state(const state<T>& s, const parameters<T>& p) const {
    s.check(p);
  }

  /// One fused update of `p` from the gradient source `g` (the gradient at the current
  /// parameters) with the counter-based noise of step `ctx.step`.
  /// @throws as sgld::update; nothing is modified when it throws.
  template <class T, class State, class Source>
  update_report update(const parameters<T>& p, State& s, const Source& g, const step_context& ctx) const {
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, static_cast<const dense_gradient<T>*>(nullptr), ctx);
    } else {
      return update_report{};
    }
  }
  /// The same update with explicit noise `xi` (any gradient source of T); a momentum refresh
  /// still uses the counter-based zeta. @throws as update, and size_mismatch from xi's check.
  template <class T, class State, class Source, class Noise>
  update_report update_with_noise(const parameters<T>& p, State& s, const Source& g, const Noise& xi,
                                  const step_context& ctx) const {
    static_assert(gradient_source<Noise, T>, "stochgrad::optim::sghmc: the explicit noise must be a gradient source of T");
    if constexpr (detail::update_arguments_ok<state<T>, State, Source, T>()) {
      return detail::sampler_update(*this, p, s, g, &xi, ctx);
    } else {
      return update_report{};
    }
  }

  /// @cond STOCHGRAD_INTERNAL
  template <class C>
  void fill_coeffs(C& c, double h, std::uint64_t k) const noexcept {
    using T = decltype(c.neg_lr);
    const double ns = std::sqrt(2.0 * o_.alpha * h * o_.temperature);
    c.neg_lr = static_cast<T>(-h);
    c.damp = static_cast<T>(1.0 - o_.alpha);
    c.noise = static_cast<T>(ns);
    c.refresh = static_cast<T>(std::sqrt(h));
    c.noisy = ns != 0.0;
    c.refreshing = o_.refresh_every > 0 && k % o_.refresh_every == 0;
  }
  template <class T, class Source, class Noise>
  void run_pass(const parameters<T>& p, state<T>& s, const Source& g, const Noise* xi, const step_context& ctx) const {
    using B = xsimd::batch<T>;
    constexpr std::size_t NB = simd::chunk_batches<T>, W = B::size;
    const auto cn = detail::step_noise<Gen, T>(o_.noise_seed, ctx.step);
    const auto rn = detail::step_noise<Gen, T>(o_.noise_seed, o_.refresh_every > 0 ? ctx.step / o_.refresh_every : 0,
                                               sampler_refresh_stream);
    auto body = [&](const auto& nz) {
      stochgrad::detail::for_each_gradient_chunk(
          p, g, ctx.ex,
          [&](std::size_t t, std::size_t i, B* th, B* gr) {
            const auto c = s.scratch[p.group_of(t)];
            T* vp = s.momentum[t].data() + i;
            B v[NB], z[NB];
            if (c.refreshing) {
              rn.load_chunk(t, i, th, v);
              for (std::size_t r = 0; r < NB; ++r) v[r] = B(c.refresh) * v[r];
            } else {
              for (std::size_t r = 0; r < NB; ++r) v[r] = B::load_unaligned(vp + r * W);
            }
            if (c.noisy) {
              nz.load_chunk(t, i, th, z);
              for (std::size_t r = 0; r < NB; ++r) z[r] = B(c.noise) * z[r];
            } else {
              for (std::size_t r = 0; r < NB; ++r) z[r] = B(T(0));
            }
            for (std::size_t r = 0; r < NB; ++r) {
              v[r] = simd::madd(B(c.damp), v[r], simd::madd(B(c.neg_lr), gr[r], z[r]));
              v[r].store_unaligned(vp + r * W);
              th[r] = th[r] + v[r];
            }
          },
          [&](std::size_t t, std::size_t i, T& th, T gi) {
            const auto c = s.scratch[p.group_of(t)];
            T& vr = s.momentum[t][i];
            const T v0 = c.refreshing ? c.refresh * rn.at(t, i, th) : vr;
            const T z = c.noisy ? c.noise * nz.at(t, i, th) : T(0);
            const T v = simd::madd(c.damp, v0, simd::madd(c.neg_lr, gi, z));
            vr = v;
            th = th + v;
          });
    };
    if (xi != nullptr) {
      body(*xi);
    } else {
      body(cn);
    }
  }
  /// @endcond

 private:
  sghmc_options o_;
  Schedule sched_;
};

}  // namespace stochgrad::optim
