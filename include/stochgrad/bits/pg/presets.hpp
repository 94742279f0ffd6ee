// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Policy-gradient presets: one-line aliases of `stepper` over the `score_function`
/// estimator (bits/pg/score_function.hpp). Construct with the policies' options, e.g.
/// `grpo<float> s(params, optim::adam<>({.lr = 1e-6}), score_function<>({.eps_high = 0.28}))`,
/// then `s.step(pg_batch<float>{...}, layout, vjp)` per generation batch.
///
/// Other compositions are spelled out the same way (all compile, all are tested):
/// | method | estimator (loss options) | baseline | normalizer | optimizer |
/// |---|---|---|---|---|
/// | GRPO (TRL) | `score_function<>` | `group_mean` | `group_std` (eps 1e-4; `group_std::verl()`: 1e-6) | `optim::adam<>` |
/// | GRPO, batch-scaled rewards | `score_function<>` | `group_mean` | `batch_std` | any |
/// | Dr. GRPO | `score_function<>({.aggregation = loss_aggregation::dr_grpo, .max_completion_length = L})` | `group_mean` | `no_normalizer` | any |
/// | DAPO | `score_function<>({.eps_high = 0.28})` (dapo aggregation is the default) | `group_mean` | `group_std` | any |
/// | GSPO | `score_function<>({.level = ratio_level::sequence})` | `group_mean` | `group_std` | any |
/// | BNPO | `score_function<>` (BNPO's run.sh: `surrogate_options::verl()` with seq_mean_token_sum, dual clip 10) | `bnpo_mean` | `beta_normalizer` | `optim::adam<>` |
/// | RLOO (TRL) | `score_function<rloo_loss>` | `leave_one_out` | `no_normalizer` (`normalize_advantages`: `batch_whiten`) | `optim::adam<>` |
/// | REINFORCE | `score_function<>` | `no_baseline` (with a baseline: `group_mean`) | `no_normalizer` | `optim::adam<>` |
/// | GRPO advantages + SGD | `score_function<>` | `group_mean` | `group_std` | `optim::sgd<>` |
/// | CISPO, or any HPT composition (unified.hpp) | `score_function<cispo_estimator>(cispo_estimator{.mask = {1.0, 0.28}})` | `group_mean` | `group_std` | any |
///
/// Surrogate options (clip ranges, KL beta with `ref_logp`, aggregation) are runtime values of the
/// loss; PPO iterations per generation batch are `score_function_options::iterations`.
#pragma once

#include "../optim/adam.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/stepper_template.hpp"
#include "rloo_loss.hpp"
#include "score_function.hpp"
#include "surrogate.hpp"

namespace stochgrad {

/// GRPO (Shao et al. 2024, TRL semantics): clipped surrogate (TRL defaults: eps 0.2, "dapo"
/// aggregation, no KL), group-mean baseline, group std + 1e-4 normalizer, Adam.
template <class T = float>
using grpo = stepper<score_function<>, group_mean, group_std, optim::adam<>, T>;

/// BNPO (arXiv 2506.02864): clipped surrogate, per-prompt expected reward as baseline, Beta-density
/// normalization fitted per batch (rewards in [0, 1] by default: `bnpo_options`), Adam.
template <class T = float>
using bnpo = stepper<score_function<>, bnpo_mean, beta_normalizer, optim::adam<>, T>;

/// RLOO (Ahmadian et al. 2024, TRL semantics): sequence-level clipped ratio of summed log-probs,
/// leave-one-out baseline, no normalization, Adam.
template <class T = float>
using rloo = stepper<score_function<rloo_loss>, leave_one_out, no_normalizer, optim::adam<>, T>;

/// REINFORCE (Williams 1992) without a baseline: coefficient -A W per token (on-policy ratio 1), Adam.
template <class T = float>
using reinforce = stepper<score_function<>, no_baseline, no_normalizer, optim::adam<>, T>;

}  // namespace stochgrad
