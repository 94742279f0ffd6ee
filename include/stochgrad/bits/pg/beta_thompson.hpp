// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The Beta/Thompson sample selector (VADE-inspired; the decay rules are stochgrad's own
/// decision, the paper's code was not available). Its Beta draws are the counter-based variates of
/// rng/variates.hpp.
///
/// Selector: each training sample i keeps a Beta(alpha_i, beta_i) belief about its success
/// probability, initialized to the prior (1, 1):
///
///     observe k successes in G rollouts:  alpha_i = lambda alpha_i + k ;  beta_i = lambda beta_i + (G - k)
///     not observed for s steps:           (alpha, beta) <- prior + lambda2^s ((alpha, beta) - prior)
///     select B of the candidates:         p_i ~ Beta(alpha_i, beta_i), score_i = p_i (1 - p_i), take the B
///                                         highest scores (ties: lower index first)
///
/// `lambda` (default 0.9) forgets old evidence as the policy changes; `lambda2` (default 1 = off)
/// pulls stale beliefs back toward the prior. The score p(1-p) is the variance of a 0/1 reward:
/// prompts the policy sometimes solves carry the most gradient signal (a group of all-equal rewards
/// carries none).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"
#include "../rng/variates.hpp"
#include "../stepper/serialize.hpp"

namespace stochgrad {

/// Options of the Beta/Thompson selector.
struct beta_thompson_options {
  double prior_alpha = 1.0;  ///< prior alpha; > 0
  double prior_beta = 1.0;   ///< prior beta; > 0
  double decay = 0.9;        ///< lambda in (0, 1]: weight of the old belief at each observation
  double prior_decay = 1.0;  ///< lambda2 in (0, 1]: per-step pull of unobserved beliefs to the prior (1 = off)
  std::uint64_t seed = 0;    ///< seed of the Thompson draws
};

/// Beta/Thompson selector over a fixed set of training samples (see the file comment). State:
/// per-sample (alpha, beta, step last observed) and the step counter; `select` does not allocate
/// once its buffers have grown to the candidate count.
class beta_thompson {
 public:
  /// @param samples number of training samples tracked (>= 1)
  /// @param o       priors, decay rates and the seed of the Thompson draws
  /// @throws invalid_argument for options outside their ranges
  beta_thompson(std::size_t samples, beta_thompson_options o = {}) : o_(o) {
    const char* w = "beta_thompson";
    detail::require(samples >= 1, w, "samples", 0.0, ">= 1");
    detail::require(o.prior_alpha > 0.0 && std::isfinite(o.prior_alpha), w, "prior_alpha", o.prior_alpha, "finite and > 0");
    detail::require(o.prior_beta > 0.0 && std::isfinite(o.prior_beta), w, "prior_beta", o.prior_beta, "finite and > 0");
    detail::require(o.decay > 0.0 && o.decay <= 1.0, w, "decay", o.decay, "in (0, 1]");
    detail::require(o.prior_decay > 0.0 && o.prior_decay <= 1.0, w, "prior_decay", o.prior_decay, "in (0, 1]");
    alpha_.assign(samples, o.prior_alpha);
    beta_.assign(samples, o.prior_beta);
    seen_.assign(samples, 0);
  }

  /// Number of tracked samples.
  std::size_t samples() const noexcept { return alpha_.size(); }
  /// Current step (advanced by `advance`).
  std::uint64_t step() const noexcept { return step_; }
  /// The options.
  const beta_thompson_options& options() const noexcept { return o_; }

  /// Belief (alpha, beta) of sample i now, with the prior decay for the steps since it was last
  /// observed applied. @throws invalid_argument if i is out of range
  std::pair<double, double> posterior(std::size_t i) const {
    check_index(i);
    const double f = stale_factor(i);
    return {o_.prior_alpha + f * (alpha_[i] - o_.prior_alpha), o_.prior_beta + f * (beta_[i] - o_.prior_beta)};
  }
  /// Posterior mean alpha / (alpha + beta).
  double mean(std::size_t i) const {
    const auto [a, b] = posterior(i);
    return a / (a + b);
  }
  /// Expected reward variance E[p(1-p)] = alpha beta / ((alpha + beta)(alpha + beta + 1)).
  double expected_variance(std::size_t i) const {
    const auto [a, b] = posterior(i);
    return a * b / ((a + b) * (a + b + 1.0));
  }

  /// Records k successes out of `trials` rollouts of sample i at the current step.
  /// @throws invalid_argument if i is out of range or successes > trials
  void observe(std::size_t i, std::size_t successes, std::size_t trials) {
    check_index(i);
    detail::require(successes <= trials, "beta_thompson::observe", "successes", static_cast<double>(successes),
                    "<= trials");
    const auto [a, b] = posterior(i);
    alpha_[i] = o_.decay * a + static_cast<double>(successes);
    beta_[i] = o_.decay * b + static_cast<double>(trials - successes);
    seen_[i] = step_;
  }

  /// Moves to the next step (the Thompson draws of `select` depend on the step).
  void advance() noexcept { ++step_; }

  /// Thompson selection of `count` of the `candidates` (sample indices): draws p_i from each
  /// belief (stream 2i / 2i+1, draw = step) and keeps the `count` largest p_i (1 - p_i). Returns
  /// the selected sample indices, by decreasing score (a view valid until the next call).
  /// @throws invalid_argument if a candidate is out of range or count > candidates.size()
  std::span<const std::size_t> select(std::span<const std::size_t> candidates, std::size_t count) {
    detail::require(count <= candidates.size(), "beta_thompson::select", "count", static_cast<double>(count),
                    "<= number of candidates");
    const std::size_t n = candidates.size();
    if (order_.size() < n) {
      order_.resize(n);
      score_.resize(n);
    }
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t i = candidates[j];
      check_index(i);
      const double p = draw(i);
      score_[j] = p * (1.0 - p);
      order_[j] = j;
    }
    const double* sc = score_.data();
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(count),
                      order_.begin() + static_cast<std::ptrdiff_t>(n), [sc](std::size_t x, std::size_t y) {
                        return sc[x] > sc[y] || (sc[x] == sc[y] && x < y);
                      });
    for (std::size_t j = 0; j < count; ++j) order_[j] = candidates[order_[j]];
    return {order_.data(), count};
  }

  /// Writes the beliefs, the steps they were last observed and the step counter (the saved-state
  /// format of serialize.hpp, with the options' seed, priors and decays to check against on load).
  void save(std::ostream& os) const {
    state_writer w;
    auto self = const_cast<beta_thompson*>(this);  // archive() is shared with loading; nothing is modified here
    beta_thompson_image img{alpha_, beta_, seen_, step_};
    self->archive(w, img);
    w.finish(os);
  }

  /// Restores what `save` wrote, so selection continues with the same draws as without the
  /// interruption. Options come from the constructor and must equal the saved ones.
  /// @throws state_error for truncated or corrupt input, another sample count or other options;
  ///         the selector is then untouched
  void load(std::istream& is) {
    state_reader r(is);
    beta_thompson_image img;
    archive(r, img);
    r.finish();
    if (img.alpha.size() != alpha_.size() || img.beta.size() != alpha_.size() || img.seen.size() != alpha_.size()) {
      throw state_error("beta_thompson::load: state of " + std::to_string(img.alpha.size()) +
                        " samples cannot be loaded into a selector of " + std::to_string(alpha_.size()));
    }
    alpha_ = std::move(img.alpha);
    beta_ = std::move(img.beta);
    seen_ = std::move(img.seen);
    step_ = img.step;
  }

  /// The Thompson draw p_i ~ Beta(posterior(i)) used by `select` at the current step.
  double draw(std::size_t i) const {
    const auto [a, b] = posterior(i);
    const auto s = static_cast<std::uint32_t>(2 * i);
    const auto d = static_cast<std::uint32_t>(step_);
    return beta_variate(a, b, noise_key{o_.seed, s, d}, noise_key{o_.seed, s + 1, d});
  }

 private:
  struct beta_thompson_image {
    std::vector<double> alpha, beta;
    std::vector<std::uint64_t> seen;
    std::uint64_t step = 0;
  };

  template <class Ar>
  void archive(Ar& ar, beta_thompson_image& img) {
    std::string kind = "beta_thompson";
    ar.field("sampler", kind);
    if (kind != "beta_thompson") throw state_error("beta_thompson::load: not a beta_thompson state ('" + kind + "')");
    // The options are written and compared, not restored: they belong to the constructor.
    std::uint64_t seed = o_.seed;
    double pa = o_.prior_alpha, pb = o_.prior_beta, dc = o_.decay, pd = o_.prior_decay;
    ar.field("seed", seed);
    ar.field("prior_alpha", pa);
    ar.field("prior_beta", pb);
    ar.field("decay", dc);
    ar.field("prior_decay", pd);
    if (seed != o_.seed || pa != o_.prior_alpha || pb != o_.prior_beta || dc != o_.decay || pd != o_.prior_decay) {
      throw state_error("beta_thompson::load: the state was saved with other options (seed, priors or decays)");
    }
    ar.field("alpha", img.alpha);
    ar.field("beta", img.beta);
    ar.field("seen", img.seen);
    ar.field("step", img.step);
  }

  void check_index(std::size_t i) const {
    detail::require(i < alpha_.size(), "beta_thompson", "sample index", static_cast<double>(i), "< samples()");
  }
  double stale_factor(std::size_t i) const {
    if (o_.prior_decay == 1.0) return 1.0;
    return std::pow(o_.prior_decay, static_cast<double>(step_ - seen_[i]));
  }

  beta_thompson_options o_;
  std::vector<double> alpha_, beta_;
  std::vector<std::uint64_t> seen_;
  std::uint64_t step_ = 0;
  std::vector<std::size_t> order_;
  std::vector<double> score_;
};

}  // namespace stochgrad
