// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Posterior sample collection for the SG-MCMC samplers: burn-in and thinning
/// (jax-sgmc `initial_burn_in`, a Bernoulli form of `random_thinning`) and a running weighted mean
/// and variance of the parameters (Welford / West), so no chain is stored.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"
#include "parameters.hpp"
#include "schedule.hpp"

namespace stochgrad::optim {

/// Which steps of a chain are kept: step k is eligible iff `k >= burn_in` and
/// `(k - burn_in) mod thin == 0`.
struct sample_options {
  std::uint64_t burn_in = 0;  ///< steps discarded at the start (jax-sgmc `initial_burn_in`, default 0)
  std::uint64_t thin = 1;     ///< keep every thin-th eligible step, > 0 (1: all)
};

/// Step-size-weighted random thinning, the Bernoulli form of jax-sgmc's `random_thinning`: step k
/// (eligible after burn-in) is accepted iff
/// \f[ u_k < \frac{S\, h_k}{\sum_{j \ge n} h_j}, \qquad
///     u_k = \text{uniform}(\{\text{seed}, \text{0xFFFFFFFF}, k\}, 0), \f]
/// with S the expected number of selections; the count is random with mean S (jax-sgmc draws
/// exactly S without replacement). The uniform comes from the counter-based generator, so the
/// selection is reproducible and independent of threads.
/// @tparam G generator policy of the uniforms
template <noise_generator G = default_generator>
struct step_weighted_thinning {
  std::uint64_t seed = 0;     ///< key of the uniforms
  double selections = 1000;   ///< expected number of accepted samples S, finite and > 0 (jax-sgmc default 1000)
  double eligible_sum = 1.0;  ///< sum of the step sizes of the eligible steps, finite and > 0 (see eligible_step_sum)
  /// @throws invalid_argument unless selections and eligible_sum are finite and > 0.
  void validate() const {
    stochgrad::detail::require(selections > 0.0 && std::isfinite(selections), "step_weighted_thinning", "selections",
                               selections, "finite and > 0");
    stochgrad::detail::require(eligible_sum > 0.0 && std::isfinite(eligible_sum), "step_weighted_thinning",
                               "eligible_sum", eligible_sum, "finite and > 0");
  }
  /// The uniform u_k of step k (low 32 bits of k as the draw).
  float uniform_at(std::uint64_t k) const noexcept {
    return noise_at<uniform, G>(noise_key{seed, 0xFFFFFFFFu, static_cast<std::uint32_t>(k)}, 0);
  }
  /// Whether step k with step size h is accepted (the caller checks burn-in first).
  bool accept(std::uint64_t k, double h) const noexcept {
    return static_cast<double>(uniform_at(k)) < selections * h / eligible_sum;
  }
};

/// \f$ \sum_{k=n}^{K-1} \mathrm{lr}\, s(k) \f$: the step sizes of the eligible steps of a run of
/// `iterations` steps with burn-in `burn_in`, for step_weighted_thinning.
template <schedule_policy Schedule>
double eligible_step_sum(double lr, const Schedule& s, std::uint64_t burn_in, std::uint64_t iterations) {
  double sum = 0.0;
  for (std::uint64_t k = burn_in; k < iterations; ++k) sum += lr * static_cast<double>(s(k));
  return sum;
}

/// Running weighted mean and variance of a chain of parameter vectors, element-wise (West's
/// weighted form of Welford's update, in double): for each accepted sample x with weight w,
/// \f[ W \leftarrow W + w, \quad \delta = x - \mu, \quad \mu \leftarrow \mu + \frac{w}{W}\delta,
///     \quad S \leftarrow S + w\,\delta\,(x - \mu), \f]
/// so `mean() = sum w x / sum w` (posterior average; w = 1 for thinned samples or w = h_k as in
/// Welling & Teh) and `variance() = S / W`. The buffers are sized once at construction; adding a
/// sample allocates nothing.
template <real_scalar T>
class sample_collector {
 public:
  /// A collector of vectors of `n` elements, keeping the steps chosen by `o`.
  /// @throws invalid_argument if o.thin == 0.
  explicit sample_collector(std::size_t n, sample_options o = {}) : o_(o), mean_(n, 0.0), m2_(n, 0.0) {
    stochgrad::detail::require(o.thin > 0, "sample_collector", "thin", static_cast<double>(o.thin), "> 0");
  }
  /// A collector sized for all elements of `p` (tensors concatenated in order).
  explicit sample_collector(const parameters<T>& p, sample_options o = {}) : sample_collector(p.size(), o) {}

  /// Whether step k passes burn-in and thinning.
  bool eligible(std::uint64_t k) const noexcept { return k >= o_.burn_in && (k - o_.burn_in) % o_.thin == 0; }

  /// Adds `x` with weight `w` if step k is eligible; returns whether it was added.
  /// @throws size_mismatch if x has the wrong length; invalid_argument unless w is finite and > 0
  /// (nothing is changed then).
  bool offer(std::uint64_t k, std::span<const T> x, double w = 1.0) {
    if (!eligible(k)) return false;
    add(x, w);
    return true;
  }
  /// @copydoc offer(std::uint64_t, std::span<const T>, double)
  /// The elements of all tensors of `p`, concatenated.
  bool offer(std::uint64_t k, const parameters<T>& p, double w = 1.0) {
    if (!eligible(k)) return false;
    add(p, w);
    return true;
  }

  /// Adds `x` with weight `w` unconditionally.
  /// @throws size_mismatch if x has the wrong length; invalid_argument unless w is finite and > 0.
  void add(std::span<const T> x, double w = 1.0) {
    stochgrad::detail::require_same_size("sample_collector::add", "collector size", mean_.size(), "sample size", x.size());
    check_weight(w);
    begin(w);
    for (std::size_t i = 0; i < x.size(); ++i) accumulate(i, static_cast<double>(x[i]));
  }
  /// Adds the elements of all tensors of `p` (concatenated) with weight `w`.
  /// @throws size_mismatch if p.size() differs; invalid_argument unless w is finite and > 0.
  void add(const parameters<T>& p, double w = 1.0) {
    stochgrad::detail::require_same_size("sample_collector::add", "collector size", mean_.size(), "parameter elements",
                                         p.size());
    check_weight(w);
    begin(w);
    std::size_t j = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      for (const T v : p.tensor(t)) accumulate(j++, static_cast<double>(v));
    }
  }

  /// Number of samples added.
  std::uint64_t count() const noexcept { return count_; }
  /// Sum of the weights W.
  double weight_sum() const noexcept { return wsum_; }
  /// The weighted mean of every element (zeros before the first sample).
  const std::vector<double>& mean() const noexcept { return mean_; }
  /// The weighted (population) variance `S / W` of element i (0 before the first sample).
  double variance(std::size_t i) const noexcept { return wsum_ > 0.0 ? m2_[i] / wsum_ : 0.0; }
  /// The unbiased variance `S / (n - 1)` of element i for unit weights (0 with fewer than two samples).
  double sample_variance(std::size_t i) const noexcept {
    return count_ > 1 ? m2_[i] / static_cast<double>(count_ - 1) : 0.0;
  }
  /// The selection rule.
  const sample_options& options() const noexcept { return o_; }
  /// Forgets every sample (the buffers keep their size).
  void reset() noexcept {
    for (auto& v : mean_) v = 0.0;
    for (auto& v : m2_) v = 0.0;
    wsum_ = 0.0;
    count_ = 0;
  }

 private:
  static void check_weight(double w) {
    stochgrad::detail::require(w > 0.0 && std::isfinite(w), "sample_collector", "weight", w, "finite and > 0");
  }
  void begin(double w) noexcept {
    wsum_ += w;
    ratio_ = w / wsum_;
    w_ = w;
    ++count_;
  }
  void accumulate(std::size_t i, double x) noexcept {
    const double d = x - mean_[i];
    mean_[i] += ratio_ * d;
    m2_[i] += w_ * d * (x - mean_[i]);
  }
  sample_options o_;
  std::vector<double> mean_, m2_;
  double wsum_ = 0.0, ratio_ = 0.0, w_ = 0.0;
  std::uint64_t count_ = 0;
};

}  // namespace stochgrad::optim
