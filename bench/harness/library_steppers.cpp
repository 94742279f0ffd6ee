// SPDX-License-Identifier: Apache-2.0
// The library's steppers in the shoot-out: every preset (adan, mezo, spsa, grpo, bnpo), the other
// presets that are cheap to run (spsa-gc, rloo, reinforce) and cross-compositions of the stepper
// template (mezo+adan, es, sparse-mezo, grpo-adv+sgd). Each is a driver<T> (harness.hpp) built from
// a *recipe* that constructs the library stepper over the run's parameter buffer; the harness does
// the loop, timing, memory, curves and gradient-quality scoring.
//
// - first-order: the problem's exact gradient goes to `stepper.step(gradient)`;
// - zeroth-order: the stepper perturbs x in place and calls the objective, which only returns
//   `oracle::loss` (a ZO stepper never sees a gradient); the quality estimate is the library's own
//   `zo::estimate` (same passes and evaluations as a step, no update) on a fresh stepper whose
//   master seed is derived from (run seed, sample), so it never reuses the run's directions;
// - policy-gradient: each step draws a generation batch of P prompts x G completions from the
//   reward task (prompt stream 0, completion stream 1, draw = step), hands rewards, log-probs, the
//   group layout and the task's vector-Jacobian product to `stepper.step(batch, layout, vjp)`; the
//   quality estimate is `estimator().estimate(...)` on a batch from streams 2 and 3 (draw = sample).
//
// Hyper-parameters are per problem family (see the table in `register_library_steppers`, each with
// its reason); `shootout --list` prints the merged values and `--set` overrides them.
#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/outcome/outcome.hpp>
#include <stochgrad/bits/pg/pg.hpp>
#include <stochgrad/presets.hpp>
#include <stochgrad/bits/zo/zo.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace harness {
namespace {

namespace sg = stochgrad;
namespace optim = stochgrad::optim;
namespace zo = stochgrad::zo;

// ------------------------------------------------------------------ hyper-parameter helpers

std::size_t count_hp(const run_setup& s, const char* name, double fallback, double lo, double hi) {
  const double v = s.hp_or(name, fallback);
  if (!(v >= lo && v <= hi) || v != std::floor(v)) {
    throw std::invalid_argument(
        fmt::format("{} on {}: {} = {}, must be an integer in [{:g}, {:g}]", s.stepper, s.problem, name, v, lo, hi));
  }
  return static_cast<std::size_t>(v);
}

// The zeroth-order learning rate: `lr` if given, else `lr_scaled / (d + 2)` (the second moment of
// a two-point Gaussian estimate is about (d + 2) |grad f|^2, so lr ~ 1/(L (d + 2)) is the stable
// scale; family-level values then carry over to other --dim choices).
double zo_lr(const run_setup& s, const char* name = "lr") {
  if (s.hyper.count(name) != 0) return s.hp(name);
  return s.hp(std::string(name) + "_scaled") / (static_cast<double>(s.dimension) + 2.0);
}

// Master seed of quality estimate `sample`: a Philox hash of (run seed, 2^63 + sample), so its
// directions are independent of the run's (master = run seed, calls 0, 1, ...).
std::uint64_t quality_seed(std::uint64_t seed, std::uint64_t sample) {
  return zo::step_seed(seed, (std::uint64_t{1} << 63) + sample);
}

// ------------------------------------------------------------------ first-order: adan

// stochgrad::adan (first_order estimator x Adan) on the problem's exact gradient.
template <class T>
class adan_driver final : public driver<T> {
 public:
  using stepper_type = sg::adan<T>;
  explicit adan_driver(const run_setup& s) : s_(s) {}
  void prepare(std::span<T> x, oracle<T>&) override {
    g_.assign(x.size(), T(0));
    st_ = std::make_unique<stepper_type>(
        sg::parameters<T>(x),
        optim::adan<>({.lr = s_.hp("lr"), .weight_decay = s_.hp_or("wd", 0.0), .no_prox = false,
                       .max_grad_norm = s_.hp_or("clip", 0.0)}),
        sg::first_order{}, sg::no_baseline{}, sg::no_normalizer{}, s_.ex);
  }
  void step(std::span<T> x, oracle<T>& f) override {
    f.loss_and_gradient(x, std::span<T>(g_));
    st_->step(std::span<const T>(g_));
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t, std::span<T> g) override {
    f.loss_and_gradient(x, g);  // a first-order stepper's estimate is the gradient it is given
    return true;
  }

 private:
  run_setup s_;
  std::vector<T> g_;
  std::unique_ptr<stepper_type> st_;
};

// ------------------------------------------------------------------ first-order: mfac

// optim::mfac (M-FAC, issue 17 §3) in the first-order stepper: the exact gradient preconditioned
// by the inverse empirical Fisher of the last m gradients.
template <class T>
class mfac_driver final : public driver<T> {
 public:
  using stepper_type = sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, optim::mfac<>, T>;
  explicit mfac_driver(const run_setup& s) : s_(s) {}
  void prepare(std::span<T> x, oracle<T>&) override {
    g_.assign(x.size(), T(0));
    st_ = std::make_unique<stepper_type>(
        sg::parameters<T>(x),
        optim::mfac<>({.lr = s_.hp("lr"), .damp = s_.hp("damp"), .ngrads = count_hp(s_, "ngrads", 32, 1, 1024),
                       .momentum = s_.hp_or("momentum", 0.0), .weight_decay = s_.hp_or("wd", 0.0)}),
        sg::first_order{}, sg::no_baseline{}, sg::no_normalizer{}, s_.ex);
  }
  void step(std::span<T> x, oracle<T>& f) override {
    f.loss_and_gradient(x, std::span<T>(g_));
    st_->step(std::span<const T>(g_));
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t, std::span<T> g) override {
    f.loss_and_gradient(x, g);  // scored as a first-order stepper: its estimate is the gradient it is given
    return true;
  }

 private:
  run_setup s_;
  std::vector<T> g_;
  std::unique_ptr<stepper_type> st_;
};

// ------------------------------------------------------------------ zeroth-order

// A zeroth-order stepper built by recipe R: `R::make<T>(x, setup, master_seed)` returns the stepper.
template <class T, class R>
class zo_driver final : public driver<T> {
 public:
  using stepper_type = decltype(R::template make<T>(std::span<T>{}, std::declval<const run_setup&>(), 0));
  explicit zo_driver(const run_setup& s) : s_(s) {}
  void prepare(std::span<T> x, oracle<T>&) override {
    st_.reset(new stepper_type(R::template make<T>(x, s_, s_.seed)));
  }
  void step(std::span<T>, oracle<T>& f) override {
    st_->step([&f](std::span<const T> p) { return f.loss(p); });
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t sample, std::span<T> g) override {
    stepper_type s(R::template make<T>(x, s_, quality_seed(s_.seed, sample)));
    zo::estimate(s, [&f](std::span<const T> p) { return f.loss(p); }, g);
    return true;
  }

 private:
  run_setup s_;
  std::unique_ptr<stepper_type> st_;
};

// MeZO: two-point Gaussian x SGD (the preset).
struct mezo_recipe {
  template <class T>
  static sg::mezo<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return sg::mezo<T>(sg::parameters<T>(x), optim::sgd<>({.lr = zo_lr(s), .weight_decay = s.hp_or("wd", 0.0)}),
                       zo::two_point<sg::gaussian>({.eps = s.hp("eps"), .q = count_hp(s, "q", 1, 1, 4096), .seed = seed}),
                       {}, {}, s.ex);
  }
};

// MeZO directions + Adan: the lazy noise gradient goes straight into Adan's fused kernel.
struct mezo_adan_recipe {
  template <class T>
  using type = sg::stepper<zo::two_point<sg::gaussian>, sg::no_baseline, sg::no_normalizer, optim::adan<>, T>;
  template <class T>
  static type<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return type<T>(sg::parameters<T>(x), optim::adan<>({.lr = s.hp("lr"), .weight_decay = s.hp_or("wd", 0.0)}),
                   zo::two_point<sg::gaussian>({.eps = s.hp("eps"), .q = count_hp(s, "q", 1, 1, 4096), .seed = seed}),
                   {}, {}, s.ex);
  }
};

// Sparse MeZO: the magnitude mask (perturb and update the smallest-|x| 1 - sparsity of entries).
struct sparse_mezo_recipe {
  template <class T>
  static sg::sparse_mezo<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    using est = zo::two_point<sg::gaussian, sg::constant_schedule, zo::magnitude_mask>;
    return sg::sparse_mezo<T>(
        sg::parameters<T>(x), optim::sgd<>({.lr = zo_lr(s)}),
        est({.eps = s.hp("eps"), .seed = seed}, sg::constant_schedule{},
            zo::magnitude_mask{.sparsity = s.hp("sparsity"), .dynamic = true}),
        {}, {}, s.ex);
  }
};

// Spall SPSA: Rademacher two-point, c_k = c/(k+1)^gamma, a_k = a/(k+1+A)^alpha (a = a_scaled / (d + 2)
// unless a is set: the same dimension scaling as MeZO's lr).
struct spall_spsa_recipe {
  template <class T>
  static sg::spall_spsa<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return sg::spall_spsa<T>(
        sg::parameters<T>(x),
        optim::sgd<sg::spall_gain>({.lr = zo_lr(s, "a")}, sg::spall_gain{.A = s.hp_or("A", 0.0), .alpha = s.hp_or("alpha", 0.602)}),
        zo::two_point<sg::rademacher, zo::spall_perturbation>({.eps = s.hp("c"), .q = count_hp(s, "q", 1, 1, 4096), .seed = seed},
                                                             zo::spall_perturbation{.gamma = s.hp_or("gamma", 0.101)}),
        {}, {}, s.ex);
  }
};

// SPSA without tuning (the spsa preset): gains calibrated at the start for the run's step budget,
// blocking on (planned_steps = the run's budget; nothing per problem).
struct spsa_calibrated_recipe {
  template <class T>
  static sg::spsa<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return sg::spsa<T>(sg::parameters<T>(x), optim::sgd<sg::spall_gain>(),
                       zo::calibrated<zo::two_point<sg::rademacher, zo::spall_perturbation>>(
                           {.planned_steps = std::max<std::uint64_t>(s.steps, 1),
                            .blocking = s.hp_or("blocking", 1.0) != 0.0,
                            .q = count_hp(s, "q", 1, 1, 4096),
                            .seed = seed}),
                       {}, {}, s.ex);
  }
};

// SPSA-GC (BlackVIP): segmented-uniform inverse-form SPSA with Nesterov momentum beta.
struct spsa_gc_recipe {
  template <class T>
  static sg::spsa_gc<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return sg::spsa_gc<T>(
        sg::parameters<T>(x),
        optim::sgd<sg::spall_gain>({.lr = zo_lr(s, "a"), .momentum = s.hp_or("beta", 0.9), .nesterov = true},
                                   sg::spall_gain{.A = s.hp_or("A", 1.0), .alpha = s.hp_or("alpha", 0.4)}),
        zo::two_point<sg::segmented_uniform, zo::spall_perturbation>(
            {.eps = s.hp("c"), .q = count_hp(s, "q", 1, 1, 4096), .seed = seed},
            zo::spall_perturbation{.gamma = s.hp_or("gamma", 0.1)}),
        {}, {}, s.ex);
  }
};

// Antithetic ES: q Gaussian pairs, losses shaped by the group mean and std, SGD.
struct es_recipe {
  template <class T>
  static sg::antithetic_es<T> make(std::span<T> x, const run_setup& s, std::uint64_t seed) {
    return sg::antithetic_es<T>(sg::parameters<T>(x), optim::sgd<>({.lr = s.hp("lr")}),
                                zo::two_point<sg::gaussian>({.eps = s.hp("eps"), .q = count_hp(s, "q", 8, 1, 4096), .seed = seed}),
                                sg::group_mean{}, sg::group_std{.eps = s.hp_or("std_eps", 1e-8)}, s.ex);
  }
};

template <class T>
using mezo_driver = zo_driver<T, mezo_recipe>;
template <class T>
using mezo_adan_driver = zo_driver<T, mezo_adan_recipe>;
template <class T>
using sparse_mezo_driver = zo_driver<T, sparse_mezo_recipe>;
template <class T>
using spall_spsa_driver = zo_driver<T, spall_spsa_recipe>;
template <class T>
using spsa_driver = zo_driver<T, spsa_calibrated_recipe>;
template <class T>
using spsa_gc_driver = zo_driver<T, spsa_gc_recipe>;
template <class T>
using es_driver = zo_driver<T, es_recipe>;

// ------------------------------------------------------------------ policy gradient

// A policy-gradient stepper built by recipe R (`R::make<T>(x, setup)`), on the run's reward task.
template <class T, class R>
class pg_driver final : public driver<T> {
 public:
  using stepper_type = decltype(R::template make<T>(std::span<T>{}, std::declval<const run_setup&>()));
  explicit pg_driver(const run_setup& s)
      : s_(s), prompts_(count_hp(s, "prompts", 32, 1, 1 << 16)), group_(count_hp(s, "group", 8, 1, 1024)) {}
  void prepare(std::span<T> x, oracle<T>& f) override {
    batch_ = f.task().make_batch(prompts_, group_);
    st_.reset(new stepper_type(R::template make<T>(x, s_)));
  }
  void step(std::span<T> x, oracle<T>& f) override {
    const auto k = static_cast<std::uint32_t>(step_++);
    batch_->draw(x, {s_.seed, 0, k}, {s_.seed, 1, k});
    f.count_completions(prompts_ * group_);
    st_->step(batch_of(*batch_), batch_->layout(), vjp_of(*batch_, x));
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t sample, std::span<T> g) override {
    auto b = f.task().make_batch(prompts_, group_);
    const auto k = static_cast<std::uint32_t>(sample);
    b->draw(x, {s_.seed, 2, k}, {s_.seed, 3, k});
    stepper_type s(R::template make<T>(x, s_));
    const auto rep = s.estimator().estimate(s, batch_of(*b), b->layout(), vjp_of(*b, x));
    const std::span<const T> est = rep.gradient[0];
    std::copy(est.begin(), est.end(), g.begin());
    return true;
  }

 private:
  static sg::pg_batch<T> batch_of(const rollout_batch<T>& b) {
    return {.rewards = b.rewards(), .length = b.length(), .logp = b.logp()};
  }
  static auto vjp_of(const rollout_batch<T>& b, std::span<const T> theta) {
    return [&b, theta](std::span<const T> coef, std::span<T> grad) { b.vjp(theta, coef, grad); };
  }

  run_setup s_;
  std::size_t prompts_, group_;
  std::uint64_t step_ = 0;
  std::unique_ptr<rollout_batch<T>> batch_;
  std::unique_ptr<stepper_type> st_;
};

optim::adam<> adam_of(const run_setup& s) { return optim::adam<>({.lr = s.hp("lr")}); }

struct grpo_recipe {
  template <class T>
  static sg::grpo<T> make(std::span<T> x, const run_setup& s) {
    return sg::grpo<T>(sg::parameters<T>(x), adam_of(s), sg::score_function<>{}, sg::group_mean{}, sg::group_std{}, s.ex);
  }
};
struct bnpo_recipe {
  template <class T>
  static sg::bnpo<T> make(std::span<T> x, const run_setup& s) {
    return sg::bnpo<T>(sg::parameters<T>(x), adam_of(s), sg::score_function<>{}, sg::bnpo_mean{}, sg::beta_normalizer{},
                       s.ex);
  }
};
// GRPO's advantages (group mean, group std) and clipped surrogate, applied with plain SGD.
struct grpo_sgd_recipe {
  template <class T>
  using type = sg::stepper<sg::score_function<>, sg::group_mean, sg::group_std, optim::sgd<>, T>;
  template <class T>
  static type<T> make(std::span<T> x, const run_setup& s) {
    return type<T>(sg::parameters<T>(x), optim::sgd<>({.lr = s.hp("lr")}), sg::score_function<>{}, sg::group_mean{},
                   sg::group_std{}, s.ex);
  }
};
struct rloo_recipe {
  template <class T>
  static sg::rloo<T> make(std::span<T> x, const run_setup& s) {
    return sg::rloo<T>(sg::parameters<T>(x), adam_of(s), sg::score_function<sg::rloo_loss>{}, sg::leave_one_out{},
                       sg::no_normalizer{}, s.ex);
  }
};
struct reinforce_recipe {
  template <class T>
  static sg::reinforce<T> make(std::span<T> x, const run_setup& s) {
    return sg::reinforce<T>(sg::parameters<T>(x), adam_of(s), sg::score_function<>{}, sg::no_baseline{},
                            sg::no_normalizer{}, s.ex);
  }
};

template <class T>
using grpo_driver = pg_driver<T, grpo_recipe>;
template <class T>
using bnpo_driver = pg_driver<T, bnpo_recipe>;
template <class T>
using grpo_sgd_driver = pg_driver<T, grpo_sgd_recipe>;
template <class T>
using rloo_driver = pg_driver<T, rloo_recipe>;
template <class T>
using reinforce_driver = pg_driver<T, reinforce_recipe>;

}  // namespace

void register_library_steppers(registry& r) {
  // Hyper-parameters: chosen by sweeps of the quick mode (seeds 1 and 2; factor ~3 grids), the
  // value with the best final objective / steps to target that is stable on both seeds, with
  // the reason on each line. ZO learning rates are `lr_scaled = lr (d + 2)` where noted, so they
  // carry over to other --dim choices.

  // ---------------------------------------------------------------- first order
  r.add_stepper<adan_driver>({
      .name = "adan",
      .fam = family::first_order,
      .description = "stochgrad::adan: first_order x Adan (sail-sg semantics), exact gradients",
      .hyper = {{"*", {{"lr", 1e-2}}},
                // 1e-2 reaches the target at step 340 (1k) but not within 200 steps on 1M; 0.1 at 100 with a
                // 10x higher noise floor; 0.05 reaches it on both sizes.
                {"quadratic", {{"lr", 0.05}}},
                // near-sign steps hover around the minimum with f ~ lr^2: 1e-2 stalls at 1.9e-4 on d = 10.
                {"rosenbrock", {{"lr", 2e-3}}},
                // every lr in [1e-3, 0.3] converges to the same loss; 0.1 gets there in 30 steps.
                {"logreg", {{"lr", 0.1}}},
                {"fmnist-softmax", {{"lr", 0.1}}},  // as logreg (not swept on Fashion-MNIST)
                // best test accuracy (0.977); 0.1 fits the training set faster but overfits (0.966).
                {"mlp", {{"lr", 1e-2}}},
                {"fmnist-mlp", {{"lr", 1e-2}}}},  // fmnist: as mlp (not swept)
  });

  // M-FAC on the two small first-order problems only (its window is m x d floats: 32 x 1e6 on the
  // large quadratic would be 128 MiB and O(m d) work per step).
  r.add_stepper<mfac_driver>({
      .name = "mfac",
      .fam = family::first_order,
      .description = "optim::mfac (M-FAC, window of 32 gradients) in the first-order stepper, exact gradients",
      // lr x damp swept over {1e-3, 1e-2, 1e-1} x {1e-3, 1e-1, 1} on both seeds: 1e-2 / 1e-3 reaches
      // both targets fastest (logreg 90 steps, mlp 30 with test accuracy 0.986); damp >= 0.1 at
      // lr 1e-3 stalls the MLP (the preconditioner then scales by ~1/damp and the steps are tiny).
      .hyper = {{"*", {{"lr", 1e-2}, {"damp", 1e-3}, {"ngrads", 32}}}},
      .applies = [](const problem_info& p) { return p.name == "logreg-cancer" || p.name == "mlp-digits"; },
  });

  // ---------------------------------------------------------------- zeroth order
  // MeZO and the in-binary reference ref-zo-sgd are the same algorithm: same hyper-parameters.
  r.add_stepper<mezo_driver>({
      .name = "mezo",
      .fam = family::zeroth_order,
      .description = "stochgrad::mezo: two_point<gaussian> x SGD, lr = lr_scaled / (d + 2) unless lr is set",
      .hyper = {{"*", {{"eps", 1e-3}}},
                // trace(A) ~ 0.145 d for this spectrum, so ZO-SGD is stable below lr_scaled ~ 2 / 0.145 ~ 14
                // (16 diverges on 1k-rot); 8 is no faster than 4.
                {"quadratic", {{"lr_scaled", 4.0}}},
                // 2e-3 diverges on d = 10 (so does 1.5e-3); on d = 2 it reaches the target, 1e-3 does not.
                {"rosenbrock", {{"lr_scaled", 1e-3}}},
                {"rosenbrock-2", {{"lr_scaled", 2e-3}}},
                // lowest loss of {0.5, 1, 2, 4}, stable on both seeds.
                {"logreg", {{"lr_scaled", 4.0}}},
                {"fmnist-softmax", {{"lr_scaled", 4.0}}},  // as logreg (not swept on Fashion-MNIST)
                // 0.9 test accuracy on both seeds in 1000 steps (16: 0.88; 64: no better, nearer divergence).
                {"mlp", {{"lr_scaled", 32.0}}},
                {"fmnist-mlp", {{"lr_scaled", 32.0}}}},  // fmnist: as mlp (not swept)
  });
  r.add_stepper<mezo_adan_driver>({
      .name = "mezo+adan",
      .fam = family::zeroth_order,
      .description = "composition: two_point<gaussian> (MeZO directions) x optim::adan (lazy noise gradient, no "
                     "gradient buffer)",
      .hyper = {{"*", {{"eps", 1e-3}}},
                // best of {1e-2, 3e-2, 0.1} (21, 5.7, 25 on 1k-rot).
                {"quadratic", {{"lr", 3e-2}}},
                // Adan's per-coordinate normalisation turns the mostly-noise coordinates of a d = 1e6
                // estimate into full-size steps: 3e-2 raises f (7.24e4 -> 7.58e4); 1e-3 lowers it.
                {"quadratic-1M", {{"lr", 1e-3}}},
                // target on d = 2 at ~4300 steps (1e-2 hovers at 1e-3 on one seed); d = 10 needs 1e-2
                // (1e-3: 1.2, 3e-2: 0.3-0.6).
                {"rosenbrock", {{"lr", 1e-2}}},
                {"rosenbrock-2", {{"lr", 3e-3}}},
                // reaches the optimum's loss in 300 steps (1e-3: 0.13 after 3000).
                {"logreg", {{"lr", 1e-2}}},
                {"fmnist-softmax", {{"lr", 1e-2}}},  // as logreg (not swept on Fashion-MNIST)
                // 0.93 test accuracy (1e-2: 0.89; 0.1: 0.78-0.84).
                {"mlp", {{"lr", 3e-2}}},
                {"fmnist-mlp", {{"lr", 3e-2}}}},  // fmnist: as mlp (not swept)
  });
  r.add_stepper<es_driver>({
      .name = "es",
      .fam = family::zeroth_order,
      .description = "composition: antithetic ES = two_point<gaussian> over q pairs x group_mean x group_std x SGD "
                     "(budget / q: equal evaluations)",
      // The std normalizer makes the step length ~ lr sqrt(2 d / q) / eps whatever the gradient's size,
      // so lr sets the noise floor. eps = 1e-2 smooths better than 1e-3 (Rosenbrock: 2e-3 vs 0.12-0.76).
      .hyper = {{"*", {{"q", 8}, {"eps", 1e-2}, {"lr", 1e-3}}},  // 1e-3: best on quadratic, logreg, MLP (3e-3 worse)
                {"rosenbrock", {{"lr", 1e-4}}},                    // 1e-3 stalls at 0.25-0.9; 3e-4 at 0.02-0.5
                {"quadratic-1M", {{"lr", 1e-5}}}},                 // step ~ sqrt(d): 1e-3 raises f on d = 1e6
      .budget_divisor = "q",
  });
  r.add_stepper<sparse_mezo_driver>({
      .name = "sparse-mezo",
      .fam = family::zeroth_order,
      .description = "composition: two_point<gaussian, magnitude_mask> x SGD (Sparse MeZO, dynamic mask), "
                     "lr = lr_scaled / (d + 2)",
      // A quarter of the entries is perturbed, so the estimate's second moment is ~ (d/4 + 2) |g_mask|^2:
      // about 4x MeZO's lr_scaled is stable.
      .hyper = {{"*", {{"eps", 1e-3}, {"sparsity", 0.75}}},
                {"quadratic", {{"lr_scaled", 16.0}}},   // 64 diverges, 32 is no better
                // 1e-2 diverges; the mask freezes the largest-magnitude coordinates, which Rosenbrock must move,
                // so it stalls (d = 2: 24 -> 4.4) whatever the lr.
                {"rosenbrock", {{"lr_scaled", 1e-3}}},
                {"logreg", {{"lr_scaled", 4.0}}},       // 8 and 16 lose stability on one seed
                {"fmnist-softmax", {{"lr_scaled", 4.0}}},  // as logreg (not swept on Fashion-MNIST)
                {"mlp", {{"lr_scaled", 64.0}}},  // best of {16, 32, 64}
                {"fmnist-mlp", {{"lr_scaled", 64.0}}}},  // fmnist: as mlp (not swept)
  });
  r.add_stepper<spsa_driver>({
      .name = "spsa",
      .fam = family::zeroth_order,
      .description = "stochgrad::spsa: calibrated<two_point<rademacher, spall_perturbation>> x sgd<spall_gain>: a, A, c "
                     "calibrated at the start (A = 10 % of the budget), blocking on (blocking=0: off); no per-problem "
                     "setting",
      .hyper = {},
  });
  r.add_stepper<spall_spsa_driver>({
      .name = "spall-spsa",
      .fam = family::zeroth_order,
      .description = "stochgrad::spall_spsa: two_point<rademacher, spall_perturbation> x sgd<spall_gain>, hand-set gains: "
                     "a_k = a / (k + 1 + A)^alpha, c_k = c / (k + 1)^gamma, a = a_scaled / (d + 2) unless a is set",
      // Spall's practical exponents; c small (no measurement noise); A ~ 10 % of the quick budget.
      .hyper = {{"*", {{"alpha", 0.602}, {"gamma", 0.101}, {"c", 1e-3}}},
      // Values as a_scaled = a (d + 2), swept as a on the first instance of each family:
                {"quadratic", {{"a_scaled", 300}, {"A", 200}}},     // a = 0.3 on 1k; 1 diverges, 0.1 slower
                {"rosenbrock", {{"a_scaled", 0.12}, {"A", 2000}}},  // a = 1e-2 on d = 10; 3e-2 diverges
                {"rosenbrock-2", {{"a_scaled", 0.4}}},              // a = 0.1: f 2e-4 (3e-2: 4e-2)
                {"logreg", {{"a_scaled", 165}, {"A", 300}}},        // a = 5, best of {0.5, 2, 5}
                {"fmnist-softmax", {{"a_scaled", 165}, {"A", 300}}},  // as logreg (not swept on Fashion-MNIST)
                {"mlp", {{"a_scaled", 1200}, {"A", 100}}},  // a = 0.5; 1 is no better
                {"fmnist-mlp", {{"a_scaled", 1200}, {"A", 100}}}},  // fmnist: as mlp (not swept)
  });
  r.add_stepper<spsa_gc_driver>({
      .name = "spsa-gc",
      .fam = family::zeroth_order,
      .description = "stochgrad::spsa_gc: two_point<segmented_uniform, spall_perturbation> x Nesterov "
                     "sgd<spall_gain> (BlackVIP), a = a_scaled / (d + 2) unless a is set",
      // BlackVIP's ViT-B/16 gains: o = A = 1, alpha 0.4, gamma 0.1, Nesterov beta 0.9; c = 1e-3.
      .hyper = {{"*", {{"beta", 0.9}, {"A", 1.0}, {"alpha", 0.4}, {"gamma", 0.1}, {"c", 1e-3}}},
      // Values as a_scaled = a (d + 2), swept as a on the first instance of each family:
                {"quadratic", {{"a_scaled", 3.0}}},       // a = 3e-3 on 1k; 1e-2 oscillates (89-160), 1e-3 slower
                {"rosenbrock", {{"a_scaled", 3.6e-4}}},   // a = 3e-5: d = 10 starts at f = 2057, 1e-4 diverges
                {"rosenbrock-2", {{"a_scaled", 4e-3}}},   // a = 1e-3; 3e-3 diverges
                {"logreg", {{"a_scaled", 1.0}}},          // a = 3e-2; 0.1 no better
                {"fmnist-softmax", {{"a_scaled", 1.0}}},  // as logreg (not swept on Fashion-MNIST)
                {"mlp", {{"a_scaled", 24.0}}},  // a = 1e-2, best of {3e-3, 1e-2, 3e-2}
                {"fmnist-mlp", {{"a_scaled", 24.0}}}},  // fmnist: as mlp (not swept)
  });

  // ---------------------------------------------------------------- policy gradient
  // 32 prompts x 8 completions per step (tests/pg/addition_training.cpp). The Adam steppers share
  // lr = 0.1: best or tied best of {0.05, 0.1, 0.2} for GRPO, BNPO and RLOO (RLOO: 0.2 stalls at
  // 0.7-0.8 accuracy); REINFORCE would be faster still at 0.2 but runs at the common value.
  const hyper_table pg_adam = {{"*", {{"prompts", 32}, {"group", 8}, {"lr", 0.1}}}};
  r.add_stepper<grpo_driver>({
      .name = "grpo",
      .fam = family::policy_gradient,
      .description = "stochgrad::grpo: score_function (clipped surrogate, dapo aggregation) x group_mean x "
                     "group_std x Adam",
      .hyper = pg_adam,
  });
  r.add_stepper<bnpo_driver>({
      .name = "bnpo",
      .fam = family::policy_gradient,
      .description = "stochgrad::bnpo: score_function x bnpo_mean x beta_normalizer x Adam",
      .hyper = pg_adam,
  });
  r.add_stepper<grpo_sgd_driver>({
      .name = "grpo-adv+sgd",
      .fam = family::policy_gradient,
      .description = "composition: score_function x group_mean x group_std (GRPO advantages) x optim::sgd",
      // The dapo aggregation divides the gradient by the N L = 768 tokens of a batch: 1 and 10 make
      // no progress in 300 steps, 100 reaches 0.9 accuracy first (300 later).
      .hyper = {{"*", {{"prompts", 32}, {"group", 8}, {"lr", 100.0}}}},
  });
  r.add_stepper<rloo_driver>({
      .name = "rloo",
      .fam = family::policy_gradient,
      .description = "stochgrad::rloo: score_function<rloo_loss> x leave_one_out x Adam",
      .hyper = pg_adam,
  });
  r.add_stepper<reinforce_driver>({
      .name = "reinforce",
      .fam = family::policy_gradient,
      .description = "stochgrad::reinforce: score_function x no baseline x Adam",
      .hyper = pg_adam,
  });
}

}  // namespace harness
