// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The presets index: every named method of stochgrad, as a one-line alias of `stepper`,
/// with the paper it comes from, the header that implements its mechanism and its update.
///
/// | method (paper) | alias | mechanism (header) | update |
/// |---|---|---|---|
/// | MeZO (Malladi et al. 2023) | `mezo` | `zo::two_point<gaussian>` (zo/difference.hpp), `optim::sgd` | g = (f(θ+εz) − f(θ−εz))/(2ε), θ ← θ − lr (g z + λθ) |
/// | Sparse MeZO (Liu et al. 2024, arXiv 2402.15751) | `sparse_mezo` | `zo::magnitude_mask` (zo/mask.hpp) | MeZO on v = m ⊙ z, m = 1 on the smallest-magnitude (1 − s) of each tensor |
/// | SPSA (Spall 1992, 1998) | `spall_spsa` | `zo::two_point<rademacher, zo::spall_perturbation>`, `optim::sgd<spall_gain>` | c_k = c/(k+1)^γ, a_k = a/(k+1+A)^α, θ ← θ − a_k (y₊ − y₋)/(2c_k) Δ |
/// | HiZOO (Zhao et al., ICLR 2025) | `hizoo` | `zo::hizoo<>` (zo/hizoo.hpp), `optim::sgd<>` | L0, L± at θ ± ε√H z; H ← (1−α)H + α\|L+ + L− − 2L0\|/(2ε²) z²/H; θ ← θ − lr (L+ − L−)/(2ε) √H z (the reference code's form) |
/// | Diagonal 2SPSA (Spall 2000, 2009) | `spsa2` | `zo::spsa2<>` (zo/second_order.hpp), `optim::sgd<spall_gain>` | Ĥ from two extra evaluations with Δ̃, averaged (optimal weights, feedback); θ ← θ − a_k G/(\|H̄\| + δ) |
/// | Full-matrix 2SPSA (Spall 2000, 2009), d <= 4096 | `spsa2_full` | `zo::spsa2_full<>` (zo/second_order_full.hpp), `optim::sgd<spall_gain>` | dense Ĥ = h/2 (Δ̃Δᵀ + ΔΔ̃ᵀ), averaged (optimal weights, feedback); θ ← θ − a_k (H̄H̄ + δI)^{−1/2} G |
/// | SPSA without tuning (Spall's guidelines, qiskit's calibration, blocking) | `spsa` | `zo::calibrated<...>` of the above (zo/calibrated.hpp) | a, A, c calibrated at θ₀; a step whose loss rises by more than 2σ is undone |
/// | SPSA-GC of BlackVIP (Oh et al. 2023) | `spsa_gc` | `segmented_uniform` directions, Nesterov `optim::sgd<spall_gain>` | ĝ_i = (y₊ − y₋)/(2c_k Δ_i), m ← βm + ĝ, θ ← θ − a_k (ĝ + βm) |
/// | GC-SPSA of DREAM | `gc_spsa` | `zo::dream_schedule`, `zo::gc_spsa_sgd` (zo/gc_spsa.hpp) | q_e = max(1, ⌊4/2^⌊e/2⌋⌋), m ← b m + Σ_j g_j z_j/q_e, b = γ N/(N + q_e) |
/// | RGE (ZO-AE-DS, Zhang et al. 2022) | `rge` | `zo::one_sided<unit_sphere>` | ĝ = (d/q) Σ_k (f(x+μu_k) − f(x))/μ u_k, u_k uniform on the sphere |
/// | CGE (ZO-AE-DS) | `cge` | `zo::coordinate_wise` (zo/coordinate.hpp) | ĝ_i = (f(x+μe_i) − f(x−μe_i))/(2μ) |
/// | antithetic evolution strategies (Salimans et al. 2017) | `antithetic_es` | `zo::two_point` with q pairs, `group_mean`, `group_std` | ĝ = Σ_j w_j z_j, w = standardised loss differences |
/// | GRPO (Shao et al. 2024; TRL) | `grpo` | `score_function<>` (pg/score_function.hpp, pg/surrogate.hpp), `group_mean`, `group_std` | A = (r − mean_g r)/(std_g r + 1e-4), L = −Σ min(ρA, clip(ρ, 1−ε, 1+ε)A)/N |
/// | Dr. GRPO (Liu et al. 2025) | `dr_grpo` | `loss_aggregation::dr_grpo`, no std normalisation | A = r − mean_g r, L = −Σ min(ρA, clip(ρ)A)/(B L_max) |
/// | DAPO (Yu et al. 2025) | `dapo` | clip-higher ε_high = 0.28, token-level ("dapo") aggregation | as GRPO with clip(ρ, 1 − 0.2, 1 + 0.28) |
/// | GSPO (Zheng et al. 2025; TRL) | `gspo` | `ratio_level::sequence`, ε = 3e-4 / 4e-4 | s_i = exp(mean_t (log π − log π_old)), L = −mean_i min(s_i A_i, clip(s_i) A_i) |
/// | CISPO (MiniMax-M1, 2025) | `cispo` | `unified_estimator<cispo_mask, ...>` (pg/unified.hpp) | L = −Σ sg(clip(ρ, 0, 1 + 0.28)) A log π / N |
/// | BNPO (Xiao et al. 2025, arXiv 2506.02864) | `bnpo` | `bnpo_mean`, `beta_normalizer` (outcome/beta.hpp) | A = (r − p)/f_Beta(p; α, β) fitted per batch, verl dual-clip surrogate |
/// | RLOO (Ahmadian et al. 2024; TRL) | `rloo` | `score_function<rloo_loss>`, `leave_one_out` | A_i = r_i − mean_{j≠i} r_j, sequence-level clipped ratio |
/// | REINFORCE (Williams 1992) | `reinforce` | `score_function<>`, `no_baseline` | coefficient −A per token |
/// | Adan (Xie et al. 2022; sail-sg, timm) | `adan` | `first_order`, `optim::adan` (optim/adan.hpp) | m, v, n moments of g and g − g_prev, proximal weight decay |
/// | VADE (arXiv 2511.18902), prompt selection | `vade_sampler` | `beta_thompson` (pg/beta_thompson.hpp) | Thompson draws from decayed Beta beliefs of each prompt's success rate |
///
/// **Defaults.** Where a paper's released code fixes hyper-parameters that differ from a policy's
/// generic defaults, the preset's policy is `with_defaults<P, D>`: default-constructing it gives
/// the paper's values (so `spsa_gc<float> s(params)` *is* BlackVIP's method, `bnpo<float> s(params)`
/// uses BNPO's loss options). Such a policy is built either from those defaults or from a whole
/// policy object (`optim::sgd<spall_gain>(...)`), never from a partial option list, because the
/// fields a designated initializer leaves out would silently take the generic defaults instead of
/// the paper's. Learning rates are always the caller's: the papers' (MeZO 1e-6, TRL GRPO 1e-6,
/// BNPO 1e-6 with 10 warm-up steps, sail-sg Adan 1e-3) are given in each alias's comment.
#pragma once

#include <utility>

#include "bits/optim/adam.hpp"
#include "bits/optim/adan.hpp"
#include "bits/optim/schedule.hpp"
#include "bits/optim/sgd.hpp"
#include "bits/outcome/outcome.hpp"
#include "bits/pg/beta_thompson.hpp"
#include "bits/pg/rloo_loss.hpp"
#include "bits/pg/score_function.hpp"
#include "bits/pg/surrogate.hpp"
#include "bits/pg/unified.hpp"
#include "bits/rng/noise.hpp"
#include "bits/stepper/first_order.hpp"
#include "bits/stepper/stepper_template.hpp"
#include "bits/zo/coordinate.hpp"
#include "bits/zo/difference.hpp"
#include "bits/zo/directions.hpp"
#include "bits/zo/calibrated.hpp"
#include "bits/zo/gc_spsa.hpp"
#include "bits/zo/hizoo.hpp"
#include "bits/zo/mask.hpp"
#include "bits/zo/schedules.hpp"
#include "bits/zo/second_order.hpp"
#include "bits/zo/second_order_full.hpp"

namespace stochgrad {

/// Policy `P` whose default constructor gives a paper's hyper-parameters, `D::make()`; every other
/// constructor, its state, its name in saved state and its behaviour are P's.
/// It deliberately has no `options_type`, so a stepper cannot be built from a partial option list
/// for it (see the presets index above): pass a whole `P` instead.
template <class P, class D>
struct with_defaults : P {
  using P::P;
  using options_type = detail::no_policy_options;  ///< hides P's: no construction from a partial option list
  /// The paper's hyper-parameters (see D).
  with_defaults() : P(D::make()) {}
  /// Any P converts: hyper-parameters you choose replace the paper's as a whole. Implicit, so a
  /// preset takes the plain policy object: `spsa_gc<float> s(x, optim::sgd<spall_gain>(...))`.
  with_defaults(P p) : P(std::move(p)) {}  // NOLINT(google-explicit-constructor)
};

/// Hyper-parameters of the papers' released code, as `with_defaults` takes them.
namespace paper {
/// BlackVIP's SPSA-GC gains (trainers/blackvip.py; the ViT-B/16 config and scripts/blackvip/tl_bench.sh:
/// o = A = 1, a = 0.01, alpha = 0.4, Nesterov beta = 0.9; BlackVIP's k starts at 1, so its
/// a/(k + o)^alpha is spall_gain's a/(k + 1 + A)^alpha with A = o).
struct blackvip_optimizer {
  /// SGD with Nesterov momentum 0.9, lr a = 0.01 and gain schedule a / (k + 2)^0.4 (A = 1, alpha = 0.4).
  static optim::sgd<spall_gain> make() {
    return optim::sgd<spall_gain>({.lr = 0.01, .momentum = 0.9, .nesterov = true}, spall_gain{.A = 1.0, .alpha = 0.4});
  }
};
/// BlackVIP's perturbation: c = 0.01, gamma = 0.1 (ViT-B/16 config), q = SP_AVG = 5 (train.py).
struct blackvip_estimator {
  /// Two-point estimator, segmented-uniform directions, eps c_k = 0.01 / (k + 1)^0.1, q = 5.
  static zo::two_point<segmented_uniform, zo::spall_perturbation> make() {
    return zo::two_point<segmented_uniform, zo::spall_perturbation>({.eps = 0.01, .q = 5}, zo::spall_perturbation{.gamma = 0.1});
  }
};
/// DREAM's GC-SPSA estimator: zo_eps = 1e-3 and q = 4 directions at the start, halved every two
/// epochs by the dream_schedule (src/trainer.py).
struct dream_estimator {
  /// Two-point estimator, Gaussian directions, eps = 1e-3, q = 4 with dream_schedule's defaults.
  static zo::two_point<gaussian, zo::dream_schedule> make() {
    return zo::two_point<gaussian, zo::dream_schedule>({.eps = 1e-3, .q = 4});
  }
};
/// ZO-AE-DS's RGE: mu = 0.005, q = 192 directions (AE_DS_train.py defaults).
struct zo_ae_ds_rge {
  /// One-sided estimator, unit-sphere directions, smoothing mu = eps = 0.005, q = 192.
  static zo::one_sided<unit_sphere> make() { return zo::one_sided<unit_sphere>({.eps = 0.005, .q = 192}); }
};
/// BNPO's loss (recipe/bnpo/run.sh on its verl fork): clip 0.2 / 0.28, dual clip c = 10,
/// "seq-mean-token-sum" aggregation, no KL.
struct bnpo_loss {
  /// The surrogate options alone (verl conventions, eps_high 0.28, dual clip 10, seq-mean-token-sum).
  static surrogate_options options() {
    surrogate_options o = surrogate_options::verl();
    o.eps_high = 0.28;
    o.dual_clip = 10.0;
    o.aggregation = loss_aggregation::seq_mean_token_sum;
    return o;
  }
  /// score_function with `options()`.
  static score_function<> make() { return score_function<>(options()); }
};
/// Dr. GRPO (Liu et al. 2025): the sum of per-token terms over B L_max (L_max = the padded length
/// unless `max_completion_length` is set), no std normalisation of the advantages (the alias's
/// normalizer).
struct dr_grpo_loss {
  /// score_function with default surrogate options and `loss_aggregation::dr_grpo`.
  static score_function<> make() {
    surrogate_options o;
    o.aggregation = loss_aggregation::dr_grpo;
    return score_function<>(o);
  }
};
/// DAPO (Yu et al. 2025): clip-higher eps_high = 0.28 with token-level aggregation (TRL's "dapo").
/// DAPO's dynamic sampling and overlong reward shaping act on the batch before the step.
struct dapo_loss {
  /// score_function with default surrogate options (TRL "dapo" aggregation, eps_low 0.2) and eps_high 0.28.
  static score_function<> make() {
    surrogate_options o;
    o.eps_high = 0.28;
    return score_function<>(o);
  }
};
/// GSPO (Zheng et al. 2025) as TRL's paper index sets it: sequence-level ratios, eps 3e-4 / 4e-4
/// (GSPO v2 §5.1), loss "grpo" (mean over sequences of the token mean), no KL.
struct gspo_loss {
  /// score_function with sequence-level ratios, eps_low 3e-4, eps_high 4e-4, seq-mean-token-mean.
  static score_function<> make() {
    surrogate_options o;
    o.level = ratio_level::sequence;
    o.eps_low = 3e-4;
    o.eps_high = 4e-4;
    o.aggregation = loss_aggregation::seq_mean_token_mean;
    return score_function<>(o);
  }
};
/// CISPO (MiniMax-M1): the importance weight is clipped and stopped, no lower bound
/// (eps_low = 1), upper bound 1 + 0.28 (Trinity-RFT's default for the paper's tuned eps_high).
struct cispo_loss {
  /// score_function over cispo_estimator with `cispo_mask{eps_low = 1.0, eps_high = 0.28}`.
  static score_function<cispo_estimator> make() {
    return score_function<cispo_estimator>(cispo_estimator{cispo_mask{1.0, 0.28}, {}, {}, {}});
  }
};
}  // namespace paper

// ---------------------------------------------------------------------------------------------
// First order

/// Adan on the caller's gradients (sail-sg/timm semantics; paper lr 1e-3, weight decay 0.02):
/// `stochgrad::adan<float> s(w, {.lr = 1e-3, .weight_decay = 0.02});` then `s.step(gradient)`.
template <class T = float>
using adan = stepper<first_order, no_baseline, no_normalizer, optim::adan<>, T>;

// ---------------------------------------------------------------------------------------------
// Zeroth order

/// MeZO (Malladi et al. 2023): Gaussian two-point estimate, seed trick, SGD with coupled weight
/// decay (MeZO's full-parameter lr 1e-6 or 1e-7, eps 1e-3; exclude biases/norms with a group
/// `decay = false`): `stochgrad::mezo<float> m(w, {.lr = 1e-6}, {.eps = 1e-3});`.
template <class T = float>
using mezo = stepper<zo::two_point<gaussian>, no_baseline, no_normalizer, optim::sgd<>, T>;

/// Sparse MeZO (arXiv 2402.15751): MeZO on the smallest-magnitude 25 % of each tensor (sparsity 0.75).
template <class T = float>
using sparse_mezo = stepper<zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>, no_baseline, no_normalizer,
                            optim::sgd<>, T>;

/// Spall's SPSA with hand-set gains: Rademacher two-point estimate with c_k = c/(k+1)^0.101, SGD
/// with a_k = a/(k+1+A)^0.602 (Spall's practical exponents; A about 10 % of the iterations, c about
/// the noise level, a from the first steps' size are problem-dependent: pass them). `spsa` is the
/// same method with the gains calibrated and blocking on.
template <class T = float>
using spall_spsa = stepper<zo::two_point<rademacher, zo::spall_perturbation>, no_baseline, no_normalizer,
                           optim::sgd<spall_gain>, T>;

/// SPSA that needs no tuning: Spall's SPSA (as `spall_spsa`) whose gains a, A and c are calibrated
/// from a few evaluations before the first step, with blocking of steps that raise the loss
/// (zo::calibrated, zo/calibrated.hpp). Tell it the planned number of steps:
/// `stochgrad::spsa<double> s(x, {}, {.planned_steps = 2000});` then `s.step(f)`; the calibration
/// is in `s.est_state().calibration` (and saved with the state).
template <class T = float>
using spsa = stepper<zo::calibrated<zo::two_point<rademacher, zo::spall_perturbation>>, no_baseline, no_normalizer,
                     optim::sgd<spall_gain>, T>;

/// SPSA-GC of **BlackVIP** (Oh et al., CVPR 2023), not DREAM's GC-SPSA (`gc_spsa`): segmented-uniform
/// perturbations in the 1/Δ form, Nesterov momentum 0.9, BlackVIP's gains by default
/// (paper::blackvip_optimizer, paper::blackvip_estimator).
template <class T = float>
using spsa_gc = stepper<with_defaults<zo::two_point<segmented_uniform, zo::spall_perturbation>, paper::blackvip_estimator>,
                        no_baseline, no_normalizer, with_defaults<optim::sgd<spall_gain>, paper::blackvip_optimizer>, T>;

/// GC-SPSA of **DREAM**, not BlackVIP's SPSA-GC (`spsa_gc`): Gaussian directions with the q_e / eps_e
/// schedule and the direction-count-adaptive momentum (lr 1e-6, gamma 1.2 by default).
template <class T = float>
using gc_spsa = stepper<with_defaults<zo::two_point<gaussian, zo::dream_schedule>, paper::dream_estimator>, no_baseline,
                        no_normalizer, zo::gc_spsa_sgd<>, T>;

/// RGE (ZO-AE-DS): forward differences along q = 192 unit-sphere directions, mu = 0.005, scaled by d/q.
template <class T = float>
using rge = stepper<with_defaults<zo::one_sided<unit_sphere>, paper::zo_ae_ds_rge>, no_baseline, no_normalizer, optim::sgd<>, T>;

/// CGE (ZO-AE-DS): coordinate-wise central differences, mu = 0.005 (2d evaluations per step).
template <class T = float>
using cge = stepper<zo::coordinate_wise, no_baseline, no_normalizer, optim::sgd<>, T>;

/// Antithetic evolution strategies: q Gaussian pairs, outcomes shaped by the group mean and std.
template <class T = float>
using antithetic_es = stepper<zo::two_point<gaussian>, group_mean, group_std, optim::sgd<>, T>;

/// HiZOO (Zhao et al., ICLR 2025): MeZO preconditioned by a running diagonal Hessian estimate from
/// one extra evaluation f(theta) (zo/hizoo.hpp; one parameter-sized buffer H):
/// `stochgrad::hizoo<float> h(w, {.lr = 1e-6}, {.eps = 1e-3, .smooth = 1e-8});`.
template <class T = float>
using hizoo = stepper<zo::hizoo<>, no_baseline, no_normalizer, optim::sgd<>, T>;

/// Diagonal second-order SPSA (Spall 2000, with Spall 2009 feedback and optimal weighting;
/// zo/second_order.hpp): Rademacher Delta, Delta~, 4 evaluations, Hbar averaged per entry,
/// theta -= a_k G / (|Hbar| + delta) with a_k = a/(k+1+A)^0.602, c_k = c/(k+1)^0.101.
template <class T = float>
using spsa2 = stepper<zo::spsa2<>, no_baseline, no_normalizer, optim::sgd<spall_gain>, T>;

/// Full-matrix second-order SPSA for small d (d <= 4096; Spall 2000, with Spall 2009 feedback and
/// optimal weighting; zo/second_order_full.hpp): the evaluations of `spsa2`, a dense d x d Hbar,
/// theta -= a_k (Hbar Hbar + delta I)^{-1/2} G with a_k = a/(k+1+A)^0.602, c_k = c/(k+1)^0.101.
template <class T = float>
using spsa2_full = stepper<zo::spsa2_full<>, no_baseline, no_normalizer, optim::sgd<spall_gain>, T>;

// ---------------------------------------------------------------------------------------------
// Policy gradient (the framework user supplies rewards, log-probs and a vector-Jacobian callback)

/// GRPO (Shao et al. 2024) with TRL's defaults: eps 0.2, "dapo" aggregation, no KL, group std +
/// 1e-4 (TRL's learning rate 1e-6): `stochgrad::grpo<float> g(theta, {.lr = 1e-6});`.
template <class T = float>
using grpo = stepper<score_function<>, group_mean, group_std, optim::adam<>, T>;

/// Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): group-mean baseline without
/// std normalisation, loss summed over tokens and divided by B L_max.
template <class T = float>
using dr_grpo = stepper<with_defaults<score_function<>, paper::dr_grpo_loss>, group_mean, no_normalizer, optim::adam<>, T>;

/// DAPO (Yu et al. 2025): GRPO's advantages with clip-higher (eps_high 0.28) and token-level aggregation.
template <class T = float>
using dapo = stepper<with_defaults<score_function<>, paper::dapo_loss>, group_mean, group_std, optim::adam<>, T>;

/// GSPO (Zheng et al. 2025): sequence-level importance ratios, clip 3e-4 / 4e-4.
template <class T = float>
using gspo = stepper<with_defaults<score_function<>, paper::gspo_loss>, group_mean, group_std, optim::adam<>, T>;

/// CISPO (MiniMax-M1, 2025): clipped, stopped importance weights that drop no token.
template <class T = float>
using cispo = stepper<with_defaults<score_function<cispo_estimator>, paper::cispo_loss>, group_mean, group_std,
                      optim::adam<>, T>;

/// BNPO (arXiv 2506.02864): per-prompt expected reward as the baseline, Beta-density normalisation
/// fitted per batch (rewards in [0, 1] by default: `bnpo_options`), BNPO's loss options
/// (paper::bnpo_loss; its run.sh also uses lr 1e-6, 10 warm-up steps, gradient clipping at 1).
template <class T = float>
using bnpo = stepper<with_defaults<score_function<>, paper::bnpo_loss>, bnpo_mean, beta_normalizer, optim::adam<>, T>;

/// RLOO (Ahmadian et al. 2024, TRL semantics): sequence-level clipped ratio of summed log-probs,
/// leave-one-out baseline, no normalisation.
template <class T = float>
using rloo = stepper<score_function<rloo_loss>, leave_one_out, no_normalizer, optim::adam<>, T>;

/// REINFORCE (Williams 1992) without a baseline: coefficient −A per token (on-policy ratio 1).
template <class T = float>
using reinforce = stepper<score_function<>, no_baseline, no_normalizer, optim::adam<>, T>;

/// VADE (arXiv 2511.18902) prompt selection as far as its abstract specifies it: Thompson sampling
/// from per-prompt Beta beliefs of the success rate, decayed toward the prior. The paper's code was
/// not available; the decay rules and defaults are stochgrad's (see beta_thompson).
using vade_sampler = beta_thompson;

}  // namespace stochgrad

// =============================================================================================
// BEGIN verl registry names (issue 19, seed spec rl_zo.md §6.6; volcengine/verl core_algos.py @ b178a3cd56)
// =============================================================================================
//
// Compositions under verl's registry names (namespace `stochgrad::verl`), with upstream verl's
// defaults: the "vanilla" policy loss is `surrogate_options::verl_upstream()` (clip 0.2 / 0.2,
// dual clip 3, token-mean, log-ratio clamp 20), GRPO's statistics are verl's (singleton mean 0
// and std 1, eps 1e-6). A string table maps every registry name onto its composition; names
// without a stochgrad counterpart throw `invalid_argument` naming the missing piece.

#include <span>
#include <string>
#include <string_view>

#include "bits/pg/grpo_family.hpp"
#include "bits/pg/kl.hpp"

namespace stochgrad {

namespace paper {
/// verl's group mean (`compute_grpo_outcome_advantage`): singleton groups get mean 0.
struct verl_group_mean {
  /// `group_mean::verl()`.
  static group_mean make() { return group_mean::verl(); }
};
/// verl's group std: eps 1e-6 added to the unbiased std, singleton groups std 1.
struct verl_group_std {
  /// `group_std::verl()`.
  static group_std make() { return group_std::verl(); }
};
/// verl's "vanilla" policy loss with upstream defaults (actor `clip_ratio 0.2, clip_ratio_c 3.0,
/// loss_agg_mode "token-mean"`, no KL loss).
struct verl_vanilla_loss {
  /// score_function with `surrogate_options::verl_upstream()`.
  static score_function<> make() { return score_function<>(surrogate_options::verl_upstream()); }
};
/// verl's "gpg" policy loss: `-logp * A`, token-mean over the batch.
struct verl_gpg_loss {
  /// score_function over `reinforce_loss` with verl's defaults.
  static score_function<reinforce_loss> make() { return score_function<reinforce_loss>(reinforce_loss{}); }
};
}  // namespace paper

/// verl's registry names as stochgrad compositions (the presets index, continued; verl
/// core_algos.py @ b178a3cd56):
///
/// | verl name (adv_estimator / loss_mode) | alias or functions | advantage / loss |
/// |---|---|---|
/// | `grpo`, `grpo_vectorized` | `verl::grpo`, `verl::grpo_vectorized` | A = (r − mean_g r)/(std_g r + 1e-6), singleton mean 0 / std 1; vanilla loss |
/// | `rloo`, `rloo_vectorized` | `verl::rloo`, `verl::rloo_vectorized` | A_i = r_i − mean_{j≠i} r_j; vanilla loss |
/// | `reinforce_plus_plus` | `kl_in_reward`, `outcome_token_scores`, `reinforce_pp_advantages` (pg/reinforce_pp.hpp) | G_t = r_t + γ G_{t+1} (reset at the mask), A = (G − μ)/√(var + 1e-8) over all tokens |
/// | `reinforce_plus_plus_baseline` | `verl::reinforce_plus_plus_baseline` (`token_whiten`) | d = s − mean_g s, whitened over all valid tokens |
/// | `opo` | `verl::opo` (`length_weighted_mean`, pg/opo.hpp) | A = s − Σ L s / Σ L per group |
/// | `gpg` (both) | `verl::gpg` (`gpg_scale`, `reinforce_loss`, pg/gpg.hpp) | A = B/#{s ≠ 0} (s − mean_g s); L = −Σ W log π A |
/// | `vanilla`, `gspo`, `cispo` (loss_mode) | `clipped_surrogate` (verl_upstream), `paper::gspo_loss`, `paper::cispo_loss` | PPO clip, sequence ratio, clipped stopped weight |
///
/// `gae`, `remax`, `grpo_passk`, `optimal_token_baseline`, `tir_optimal_token_baseline`, `sapo`,
/// `clip_cov`, `kl_cov`, `geo_mean`, `bypass_mode` have no counterpart: `advantage_estimator` /
/// `policy_loss` throw `invalid_argument` naming the missing piece.
namespace verl {

/// `adv_estimator = grpo`: group mean / (group std + 1e-6), verl singletons, vanilla loss.
template <class T = float>
using grpo = stepper<with_defaults<score_function<>, paper::verl_vanilla_loss>,
                     with_defaults<group_mean, paper::verl_group_mean>, with_defaults<group_std, paper::verl_group_std>,
                     optim::adam<>, T>;
/// `adv_estimator = grpo_vectorized`: the same advantages as `grpo`.
template <class T = float>
using grpo_vectorized = grpo<T>;
/// `adv_estimator = rloo`: leave-one-out baseline, vanilla (token-level clipped) loss. verl leaves a
/// singleton group's score unchanged; `leave_one_out` gives it advantage 0.
template <class T = float>
using rloo = stepper<with_defaults<score_function<>, paper::verl_vanilla_loss>, leave_one_out, no_normalizer,
                     optim::adam<>, T>;
/// `adv_estimator = rloo_vectorized`: as `rloo`.
template <class T = float>
using rloo_vectorized = rloo<T>;
/// `adv_estimator = reinforce_plus_plus_baseline`: group mean (verl singletons), global token
/// whitening (`token_whiten`; set `s.normalizer().token_counts` per batch), vanilla loss.
template <class T = float>
using reinforce_plus_plus_baseline = stepper<with_defaults<score_function<>, paper::verl_vanilla_loss>,
                                             with_defaults<group_mean, paper::verl_group_mean>, token_whiten,
                                             optim::adam<>, T>;
/// `adv_estimator = opo`: length-weighted group mean (set `s.baseline().lengths` per batch), no
/// std scaling, vanilla loss; verl trains it exactly on-policy (one mini-batch, no KL, no entropy).
template <class T = float>
using opo = stepper<with_defaults<score_function<>, paper::verl_vanilla_loss>, length_weighted_mean, no_normalizer,
                    optim::adam<>, T>;
/// `adv_estimator = gpg` with `policy_loss.loss_mode = gpg`: alpha (s - group mean) / f_norm and
/// the ratio-free loss `-logp A` (token-mean).
template <class T = float>
using gpg = stepper<with_defaults<score_function<reinforce_loss>, paper::verl_gpg_loss>,
                    with_defaults<group_mean, paper::verl_group_mean>, gpg_scale, optim::adam<>, T>;

/// One registry name and what it maps onto.
struct registry_entry {
  std::string_view name;         ///< verl's registry name
  std::string_view composition;  ///< the stochgrad composition (alias, policies, free functions)
  std::string_view missing;      ///< empty when available; else the piece stochgrad lacks
};

/// verl's `AdvantageEstimator` names.
inline constexpr registry_entry advantage_estimators[] = {
    {"gae", "", "GAE needs a learned value model (critic); stochgrad has no value-function estimator"},
    {"grpo", "verl::grpo (group_mean::verl(), group_std::verl())", ""},
    {"reinforce_plus_plus",
     "kl_in_reward + outcome_token_scores + reinforce_pp_advantages (token-level advantages) with "
     "clipped_surrogate(surrogate_options::verl_upstream())",
     ""},
    {"reinforce_plus_plus_baseline", "verl::reinforce_plus_plus_baseline (group_mean::verl(), token_whiten); "
                                     "token level: reinforce_pp_baseline_advantages", ""},
    {"remax", "", "ReMax's baseline is the reward of a greedy decode, which stochgrad does not generate"},
    {"rloo", "verl::rloo (leave_one_out, no_normalizer)", ""},
    {"opo", "verl::opo (length_weighted_mean, no_normalizer)", ""},
    {"grpo_passk", "", "the pass@k advantage (only the best sample of a group gets r_max - r_second) is not implemented"},
    {"gpg", "verl::gpg (group_mean::verl(), gpg_scale, reinforce_loss)", ""},
    {"rloo_vectorized", "verl::rloo_vectorized (as rloo)", ""},
    {"grpo_vectorized", "verl::grpo_vectorized (as grpo)", ""},
    {"optimal_token_baseline", "", "the per-token optimal baseline weighted by squared score norms is not implemented"},
    {"tir_optimal_token_baseline", "", "the tool-integrated optimal token baseline is not implemented"},
};

/// verl's `register_policy_loss` names.
inline constexpr registry_entry policy_losses[] = {
    {"vanilla", "clipped_surrogate(surrogate_options::verl_upstream())", ""},
    {"gspo", "clipped_surrogate with ratio_level::sequence (paper::gspo_loss)", ""},
    {"sapo", "", "SAPO's soft adaptive gate on the ratio is not implemented"},
    {"gpg", "reinforce_loss (-logp A, token-mean)", ""},
    {"clip_cov", "", "Clip-Cov (clipping the tokens of largest advantage-logp covariance) is not implemented"},
    {"kl_cov", "", "KL-Cov (a KL penalty on the tokens of largest covariance) is not implemented"},
    {"geo_mean", "", "GMPO's geometric-mean token ratio objective is not implemented"},
    {"cispo", "cispo_estimator (paper::cispo_loss, bits/pg/unified.hpp)", ""},
    {"bypass_mode", "", "verl's rollout-correction bypass mode (importance weights from the rollout engine) is not "
                        "implemented"},
};

namespace detail {
inline const registry_entry& registry_find(std::span<const registry_entry> table, std::string_view name,
                                           const char* kind) {
  for (const registry_entry& e : table) {
    if (e.name != name) continue;
    if (!e.missing.empty()) {
      throw invalid_argument("verl::" + std::string(kind) + ": \"" + std::string(name) +
                             "\" has no stochgrad counterpart: " + std::string(e.missing));
    }
    return e;
  }
  throw invalid_argument("verl::" + std::string(kind) + ": unknown verl name \"" + std::string(name) + "\"");
}
}  // namespace detail

/// The composition of verl's `algorithm.adv_estimator = name`.
/// @throws invalid_argument for an unknown name, or one without a stochgrad counterpart (naming
///         the missing piece)
inline const registry_entry& advantage_estimator(std::string_view name) {
  return detail::registry_find(advantage_estimators, name, "advantage_estimator");
}

/// The composition of verl's `actor.policy_loss.loss_mode = name`.
/// @throws invalid_argument for an unknown name, or one without a stochgrad counterpart
inline const registry_entry& policy_loss(std::string_view name) {
  return detail::registry_find(policy_losses, name, "policy_loss");
}

/// verl's KL estimator names (`algorithm.kl_penalty`, `actor.kl_loss_type`): "kl"/"k1" -> k1,
/// "abs" -> abs, "mse"/"k2" -> k2, "low_var_kl"/"k3" -> k3. A "+" suffix (e.g. "k3+") keeps the
/// forward value and takes k2's gradient (straight-through): `straight_through` is set then.
/// @throws invalid_argument for "full" (not implemented in verl either) and unknown names
inline kl_estimator kl_estimator_of(std::string_view name, bool* straight_through = nullptr) {
  const bool plus = !name.empty() && name.back() == '+';
  const std::string_view base = plus ? name.substr(0, name.size() - 1) : name;
  if (straight_through != nullptr) *straight_through = plus;
  if (base == "kl" || base == "k1") return kl_estimator::k1;
  if (base == "abs") return kl_estimator::abs;
  if (base == "mse" || base == "k2") return kl_estimator::k2;
  if (base == "low_var_kl" || base == "k3") return kl_estimator::k3;
  if (base == "full") throw invalid_argument("verl::kl_estimator_of: \"full\" is not implemented (in verl either)");
  throw invalid_argument("verl::kl_estimator_of: unknown verl KL estimator \"" + std::string(name) + "\"");
}

/// verl's `loss_agg_mode` names: "token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
/// "seq-mean-token-sum-norm" (use with `loss_convention::verl_upstream`).
/// @throws invalid_argument for an unknown name
inline loss_aggregation loss_agg_mode(std::string_view name) {
  if (name == "token-mean") return loss_aggregation::token_mean;
  if (name == "seq-mean-token-sum") return loss_aggregation::seq_mean_token_sum;
  if (name == "seq-mean-token-mean") return loss_aggregation::seq_mean_token_mean;
  if (name == "seq-mean-token-sum-norm") return loss_aggregation::seq_mean_token_sum_norm;
  throw invalid_argument("verl::loss_agg_mode: unknown verl loss_agg_mode \"" + std::string(name) + "\"");
}

}  // namespace verl

/// CoPG, Contrastive Policy Gradient (Flet-Berliac et al., EMNLP 2024, arXiv 2406.19185; the
/// k-sample loss of the Cohere Command A report; seed spec rl_zo.md §2): per prompt,
/// `L = 1/(k-1) sum_{i<j} (R^beta_i - R^beta_j)^2` with `R^beta = R - beta (lp - lr)`, so
/// `dL/dlp_i = -2 beta A^RLOO_i(R^beta)`; off-policy data, no ratio, no clip (`copg_loss`,
/// pg/copg.hpp). beta 0.1 by default (`score_function<copg_loss>(copg_options{.beta = ...})`);
/// `ref_logp` is required; NaN rewards drop their completion from its group.
template <class T = float>
using copg = stepper<score_function<copg_loss>, no_baseline, no_normalizer, optim::adam<>, T>;

namespace paper {
/// MA-RLHF's actor loss (ppo_trainer.py `actor_loss_fn`): token ratio clipped at 0.2 on both
/// sides, token mean, no KL term (the KL is in the reward).
struct ma_rlhf_actor_loss {
  /// score_function with `macro_ppo_options()`.
  static score_function<> make() { return score_function<>(macro_ppo_options()); }
};
}  // namespace paper

/// MA-RLHF's actor (Chai et al. 2024, arXiv 2410.02743; ernie-research/MA-RLHF; seed spec
/// rl_zo.md §1): PPO whose per-token advantages are those of the token's macro action. The
/// advantages come from the caller's critic through `ma_rlhf_token_rewards`,
/// `segment_macro_actions` and `macro_gae` (pg/macro_action.hpp) and are handed over as
/// `pg_batch::advantages` (`[N x L]`), with `old_logp` from generation; the critic's loss is
/// `clipped_value_loss`. The reference's Gemma-2B run uses lr 1.5e-5, weight decay 0.1 (AdamW),
/// a linear schedule with 5 % warm-up.
template <class T = float>
using ma_rlhf = stepper<with_defaults<score_function<>, paper::ma_rlhf_actor_loss>, no_baseline, no_normalizer,
                       optim::adam<>, T>;

}  // namespace stochgrad
// =============================================================================================
// END verl registry names
// =============================================================================================

// ---------------------------------------------------------------------------------------------
// Distribution-parameter estimators (issue 16, bits/dist; spec shared/design/seeds/variational.md
// section 1.2). Appended section: these aliases are not yet in the table of the file comment.
// ---------------------------------------------------------------------------------------------
#include "bits/dist/dist.hpp"

namespace stochgrad {

/// Mean-field Gaussian VI with pathwise (reparameterisation) ELBO gradients (ADEV
/// `mv_normal_diag_reparam`): parameters `mu`, `rho`; `step(grad_log_p)`. (The spec's alias uses
/// the plain expectation; with the `elbo` objective the entropy term's +1 per rho is the library's.)
template <class T = double>
using vi_pathwise = stepper<dist::estimator<dist::diag_gaussian, dist::pathwise, dist::elbo>, no_baseline, no_normalizer,
                            optim::adam<>, T>;

/// Mean-field Gaussian VI with score-function ELBO gradients, leave-one-out baseline over the S
/// samples and ADEV's direct term (`direct_term`, default on): `step(log_p)`.
template <class T = double>
using vi_score = stepper<dist::estimator<dist::diag_gaussian, dist::score_function, dist::elbo>, leave_one_out,
                         no_normalizer, optim::adam<>, T>;

/// Gaussian mixture, component choice enumerated, components pathwise (ADEV `categorical_enum` x
/// `normal_reparam`): parameters `l`, `mu`, `rho`; `step(f, grad_f)` at all K component samples.
template <class T = double>
using mix_exact = stepper<dist::estimator<dist::gaussian_mixture, dist::composed<dist::enumerate, dist::pathwise>>,
                          no_baseline, no_normalizer, optim::adam<>, T>;

}  // namespace stochgrad

// ---------------------------------------------------------------------------------------------
// Large-batch training and SubGM (issue 17, bits/optim/large_batch.hpp; spec
// shared/design/seeds/optimizers.md sections 6 and 7). Appended section: these aliases are not
// yet in the table of the file comment.
// ---------------------------------------------------------------------------------------------
#include "bits/optim/large_batch.hpp"

namespace stochgrad {

/// Hoffer et al.'s large-batch recipe on the caller's (ghost-batch averaged) gradients: SGD with
/// `lr = lr0 sqrt(B / B_ref)` over the regime stretched `ceil(B / B_ref)`-fold: the optimizer
/// `optim::sgd<...>({.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .max_grad_norm = 5},
/// {.batch = 2048, .reference_batch = 128, .inner = {.multiplier = 16, .inner = regime}})`.
template <class T = float>
using large_batch_sgd = stepper<first_order, no_baseline, no_normalizer,
                                optim::sgd<sqrt_batch_scaling<regime_adaptation<piecewise_constant>>>, T>;

/// Ma & Fattahi's sub-gradient method: plain SGD (no momentum) with geometric step sizes
/// `eta_t = eta_0 rho^t` on the caller's subgradients (e.g. of `problems::robust_matrix_sensing`):
/// `stochgrad::subgm<double> s(parameters<double>(U), optim::sgd<geometric_schedule>({.lr = 0.1}, {.rho = 0.9975}));`
/// then `s.step(subgradient)`.
template <class T = double>
using subgm = stepper<first_order, no_baseline, no_normalizer, optim::sgd<geometric_schedule>, T>;

}  // namespace stochgrad
