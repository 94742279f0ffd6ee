// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Data Shapley (Ghorbani & Zou, ICML 2019): exact Shapley values by enumeration and
/// TMC-Shapley with the reference code's truncation rule and convergence statistic, over a
/// caller-supplied utility.
///
/// The value of training point i in the game whose worth of a subset S is the utility V(S)
/// (e.g. the test score of a model trained on S) is
/// \f[ \phi_i = \sum_{S \subseteq N\setminus\{i\}} \frac{|S|!\,(n-|S|-1)!}{n!}\,\big(V(S\cup\{i\}) - V(S)\big), \f]
/// the mean marginal contribution of i over uniformly random orders; \f$\sum_i\phi_i = V(N) - V(\emptyset)\f$.
///
/// TMC-Shapley follows amiratag/DataShapley @ 303d91d988 (DShap.py `run`, `_tmc_shap`,
/// `one_iteration`; shap_utils.py `error`) as design/seeds/data.md section 2.3 documents it:
/// a pass over a random permutation stops after `patience + 1` (6) consecutive prefixes whose score
/// is within `tolerance * mean_score` of the full score (the paper's pseudo-code stops at the first
/// hit); unreached points get marginal 0. Differences from the reference: points only (the
/// reference's groups of points, "sources", are not offered); the reference's class-coverage
/// check (no training until every test class is in the prefix) belongs to the utility: return
/// V(empty) for such prefixes and the marginals are the same. **[stochgrad decision]** when
/// |mean_score| < 1e-12 the truncation test is absolute, `|V - mean_score| <= tolerance`.
/// G-Shapley (section 2.4) is in g_shapley.hpp.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../rng/philox.hpp"

namespace stochgrad::data {

/// A utility: `double u(std::span<const std::uint32_t> subset)`, the worth of the subset of
/// point indices (e.g. the test accuracy of a model trained on those points). It may throw;
/// the estimators let the exception through and change nothing the caller owns.
template <class U>
concept subset_utility = requires(const U& u, std::span<const std::uint32_t> s) {
  { u(s) } -> std::convertible_to<double>;
};

/// Largest n exact_shapley accepts (2^n utility evaluations, 2^n doubles of memory).
inline constexpr std::uint32_t exact_shapley_max_n = 20;

/// Exact Shapley values by enumerating the 2^n subsets (design/seeds/data.md section 2.2): every
/// subset is evaluated once (indices passed ascending), then
/// \f$\phi_i = \sum_{S \not\ni i} w_{|S|}\,(V(S+i) - V(S))\f$ with \f$w_s = 1 / (n \binom{n-1}{s})\f$.
/// @param n       number of points, 1..exact_shapley_max_n
/// @param utility the game V
/// @returns phi, n values.
/// @throws invalid_argument for n outside 1..20; nonfinite_error when V is not finite on some
///         subset; whatever `utility` throws.
template <subset_utility U>
std::vector<double> exact_shapley(std::uint32_t n, const U& utility) {
  stochgrad::detail::require(n >= 1 && n <= exact_shapley_max_n, "exact_shapley", "n", n, "in [1, 20]");
  const std::size_t m = std::size_t{1} << n;
  std::vector<double> v(m);
  std::vector<std::uint32_t> subset;
  subset.reserve(n);
  for (std::size_t mask = 0; mask < m; ++mask) {
    subset.clear();
    for (std::uint32_t i = 0; i < n; ++i) {
      if ((mask >> i) & 1u) subset.push_back(i);
    }
    v[mask] = static_cast<double>(utility(std::span<const std::uint32_t>(subset)));
    if (!std::isfinite(v[mask])) {
      throw nonfinite_error("exact_shapley: the utility is not finite on a subset of size " +
                            std::to_string(subset.size()));
    }
  }
  std::vector<double> w(n);  // w[s] = s! (n - s - 1)! / n! = 1 / (n C(n - 1, s))
  double binom = 1.0;
  for (std::uint32_t s = 0; s < n; ++s) {
    if (s > 0) binom = binom * static_cast<double>(n - s) / static_cast<double>(s);
    w[s] = 1.0 / (static_cast<double>(n) * binom);
  }
  std::vector<double> phi(n, 0.0);
  for (std::size_t mask = 0; mask < m; ++mask) {
    const auto size = static_cast<std::uint32_t>(std::popcount(mask));
    for (std::uint32_t i = 0; i < n; ++i) {
      if (!((mask >> i) & 1u)) phi[i] += w[size] * (v[mask | (std::size_t{1} << i)] - v[mask]);
    }
  }
  return phi;
}

/// The permutation of TMC iteration `iteration` (**[stochgrad decision]**, design/seeds/data.md
/// section 7): Fisher-Yates from the identity, for i = n-1 down to 1 swap positions i and
/// \f$j = \lfloor w_i (i+1) / 2^{32}\rfloor\f$, where \f$w_i\f$ is word `i mod 4` of
/// Philox4x32-10 on counter `(i/4, 0, iteration, 0)` with key `(seed mod 2^32, seed / 2^32)`
/// (the counter layout of `noise_key{seed, stream = iteration, draw = 0}`).
/// @param seed      permutation seed
/// @param iteration iteration number (the Philox stream)
/// @param out       n slots; receives the permutation of 0..n-1
inline void shapley_permutation(std::uint64_t seed, std::uint32_t iteration, std::span<std::uint32_t> out) noexcept {
  const std::size_t n = out.size();
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint32_t>(i);
  const philox_key key{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  for (std::size_t i = n; i-- > 1;) {
    const std::uint64_t blk = i >> 2;
    const philox_block b =
        philox4x32<10>({static_cast<std::uint32_t>(blk), static_cast<std::uint32_t>(blk >> 32), iteration, 0u}, key);
    const std::uint64_t j = (static_cast<std::uint64_t>(b[i & 3u]) * (i + 1)) >> 32;
    std::swap(out[i], out[static_cast<std::size_t>(j)]);
  }
}

/// What one TMC pass did.
struct tmc_pass {
  std::size_t evaluations = 0;  ///< utility calls
  std::size_t failures = 0;     ///< calls that returned a non-finite value (previous score kept)
  bool truncated = false;       ///< stopped before the end of the permutation
};

/// One TMC-Shapley pass over `perm` (DShap.py `one_iteration`, data.md section 2.3):
/// `new = empty_score`; for each point `idx` in order: `old = new`, `new = V(prefix through idx)`,
/// `marginal[idx] = new - old`; if \f$|new - mean| \le tolerance \cdot mean\f$ (absolute
/// `tolerance` when |mean| < 1e-12) the hit counter increases and the pass stops once it exceeds
/// `patience`, otherwise it resets. Points not reached keep marginal 0. A non-finite utility value
/// keeps the previous score (the reference's rule for a model that cannot be fit).
/// @param perm        a permutation of 0..n-1
/// @param utility     the game V (called on the prefix, in permutation order)
/// @param empty_score V(empty)
/// @param mean_score  the full-data score the truncation compares with
/// @param tolerance   truncation tolerance >= 0 (reference 0.01)
/// @param patience    hits allowed before stopping (reference 5: the 6th consecutive hit stops)
/// @param marginal    n outputs (overwritten)
/// @throws size_mismatch when perm and marginal differ in length; whatever `utility` throws
///         (marginal is then partly written).
template <subset_utility U>
tmc_pass tmc_iteration(std::span<const std::uint32_t> perm, const U& utility, double empty_score, double mean_score,
                       double tolerance, std::uint32_t patience, std::span<double> marginal) {
  stochgrad::detail::require_same_size("tmc_iteration", "permutation", perm.size(), "marginal", marginal.size());
  for (double& x : marginal) x = 0.0;
  tmc_pass r;
  double score = empty_score;
  std::uint32_t counter = 0;
  const bool absolute = std::abs(mean_score) < 1e-12;
  for (std::size_t k = 0; k < perm.size(); ++k) {
    const double old = score;
    const double v = static_cast<double>(utility(perm.subspan(0, k + 1)));
    ++r.evaluations;
    if (std::isfinite(v)) {
      score = v;
    } else {
      ++r.failures;
    }
    marginal[perm[k]] = score - old;
    const double dist = std::abs(score - mean_score);
    if (dist <= (absolute ? tolerance : tolerance * mean_score)) {
      if (++counter > patience) {
        r.truncated = k + 1 < perm.size();
        break;
      }
    } else {
      counter = 0;
    }
  }
  return r;
}

/// The reference's convergence statistic (shap_utils.py `error`) of a `rows x n` row-major matrix
/// of marginals: 1 when `rows < window`; otherwise, with running means \f$R_t\f$ (mean of rows
/// 1..t),
/// \f[ \max_{t > T - \text{window}}\ \frac1n \sum_i \frac{|R_{t,i} - R_{T,i}|}{|R_{T,i}| + 10^{-12}}. \f]
/// Points whose value is near 0 dominate it (the 1e-12 guard; reference behaviour).
/// @param marginals row-major, rows x n
/// @param n         number of points (> 0)
/// @param window    number of trailing running means compared (reference 100), > 0
/// @throws invalid_argument for n = 0, window = 0 or a size that is not a multiple of n.
inline double convergence_error(std::span<const double> marginals, std::size_t n, std::size_t window = 100) {
  stochgrad::detail::require(n > 0, "convergence_error", "n", 0.0, "> 0");
  stochgrad::detail::require(window > 0, "convergence_error", "window", 0.0, "> 0");
  if (marginals.size() % n != 0) throw invalid_argument("convergence_error: marginals size is not a multiple of n");
  const std::size_t rows = marginals.size() / n;
  if (rows < window) return 1.0;
  std::vector<double> run(n, 0.0), last(n);
  std::vector<double> means(window * n);  // running means of the last `window` rows
  for (std::size_t t = 0; t < rows; ++t) {
    for (std::size_t i = 0; i < n; ++i) run[i] += marginals[t * n + i];
    if (t + window >= rows) {
      const std::size_t slot = t + window - rows;
      for (std::size_t i = 0; i < n; ++i) means[slot * n + i] = run[i] / static_cast<double>(t + 1);
    }
  }
  for (std::size_t i = 0; i < n; ++i) last[i] = means[(window - 1) * n + i];
  double worst = 0.0;
  for (std::size_t s = 0; s < window; ++s) {
    double e = 0.0;
    for (std::size_t i = 0; i < n; ++i) e += std::abs(means[s * n + i] - last[i]) / (std::abs(last[i]) + 1e-12);
    worst = std::max(worst, e / static_cast<double>(n));
  }
  return worst;
}

/// Options of tmc_shapley (defaults: the reference's, data.md section 2.3).
struct tmc_options {
  double tolerance = 0.01;                 ///< truncation tolerance, finite and >= 0
  std::uint32_t patience = 5;              ///< hits allowed before a pass stops (hard-coded "> 5" in the reference)
  std::size_t window = 100;                ///< rows of the convergence statistic (hard-coded 100), > 0
  double err = 0.1;                        ///< stop once convergence_error < err (Example.ipynb 0.1), in (0, 1]
  std::size_t check_every = 100;           ///< passes between convergence checks (`save_every`), > 0
  std::size_t max_iterations = 100000;     ///< hard cap on passes (in [1, 2^32]); not converged when reached
  std::uint64_t seed = 0;                  ///< permutation seed (shapley_permutation)
  std::optional<double> empty_score{};     ///< V(empty) ("random score"); default: utility({})
  std::optional<double> mean_score{};      ///< full-data score (reference: bootstrap mean); default: utility(all)
};

namespace detail {
// The permutation loop shared by tmc_shapley and g_shapley: passes over the permutations of
// (o.seed, iteration) until the convergence statistic (checked every o.check_every passes) falls
// below o.err or o.max_iterations passes ran; `pass(perm, iteration, row)` writes one pass's
// marginals into row. Fills r.marginals, r.iterations, r.error, r.converged and r.values (the mean
// of the rows).
template <class Result, class Options, class Pass>
void run_permutation_passes(std::uint32_t n, const Options& o, Result& r, Pass&& pass) {
  std::vector<std::uint32_t> perm(n);
  std::vector<double> row(n);
  while (r.iterations < o.max_iterations) {
    r.error = convergence_error(r.marginals, n, o.window);
    if (r.error < o.err) {
      r.converged = true;
      break;
    }
    for (std::size_t b = 0; b < o.check_every && r.iterations < o.max_iterations; ++b) {
      const auto it = static_cast<std::uint32_t>(r.iterations);
      shapley_permutation(o.seed, it, perm);
      pass(std::span<const std::uint32_t>(perm), it, std::span<double>(row));
      r.marginals.insert(r.marginals.end(), row.begin(), row.end());
      ++r.iterations;
    }
  }
  if (!r.converged) {
    r.error = convergence_error(r.marginals, n, o.window);
    r.converged = r.error < o.err;
  }
  r.values.assign(n, 0.0);
  for (std::size_t t = 0; t < r.iterations; ++t) {
    for (std::size_t i = 0; i < n; ++i) r.values[i] += r.marginals[t * n + i];
  }
  for (double& x : r.values) x /= static_cast<double>(r.iterations);
}
}  // namespace detail

/// Result of tmc_shapley.
struct tmc_result {
  std::vector<double> values;     ///< column means of the marginals: the TMC-Shapley values
  std::vector<double> marginals;  ///< row-major iterations x n marginal contributions
  std::size_t iterations = 0;     ///< passes run
  std::size_t evaluations = 0;    ///< utility calls (including the ones for the default scores)
  std::size_t failures = 0;       ///< non-finite utility values (previous score kept)
  double error = 1.0;             ///< convergence_error at the end
  bool converged = false;         ///< error < err was reached before max_iterations
};

/// TMC-Shapley (DShap.py `run` / `_tmc_shap`): blocks of `check_every` passes over the
/// permutations of shapley_permutation(seed, iteration) until `convergence_error < err` (checked
/// before each block, as the reference) or `max_iterations` passes.
/// @param n       number of points, > 0
/// @param utility the game V
/// @param o       options
/// @throws invalid_argument for bad options, n = 0 or a non-finite empty/mean score; whatever
///         `utility` throws (nothing of the caller's is changed).
template <subset_utility U>
tmc_result tmc_shapley(std::uint32_t n, const U& utility, const tmc_options& o = {}) {
  stochgrad::detail::require(n > 0, "tmc_shapley", "n", 0.0, "> 0");
  stochgrad::detail::require(std::isfinite(o.tolerance) && o.tolerance >= 0.0, "tmc_shapley", "tolerance", o.tolerance,
                             "finite and >= 0");
  stochgrad::detail::require(o.window > 0, "tmc_shapley", "window", 0.0, "> 0");
  stochgrad::detail::require(o.err > 0.0 && o.err <= 1.0, "tmc_shapley", "err", o.err, "in (0, 1]");
  stochgrad::detail::require(o.check_every > 0, "tmc_shapley", "check_every", 0.0, "> 0");
  stochgrad::detail::require(o.max_iterations >= 1 && o.max_iterations <= (std::size_t{1} << 32), "tmc_shapley",
                             "max_iterations", static_cast<double>(o.max_iterations), "in [1, 2^32]");
  tmc_result r;
  std::vector<std::uint32_t> perm(n);
  auto score_or = [&](const std::optional<double>& given, std::span<const std::uint32_t> s, const char* name) {
    const double v = given ? *given : static_cast<double>(utility(s));
    if (!given) ++r.evaluations;
    stochgrad::detail::require(std::isfinite(v), "tmc_shapley", name, v, "finite");
    return v;
  };
  const double empty = score_or(o.empty_score, {}, "empty_score");
  for (std::uint32_t i = 0; i < n; ++i) perm[i] = i;
  const double mean = score_or(o.mean_score, perm, "mean_score");
  detail::run_permutation_passes(n, o, r, [&](std::span<const std::uint32_t> pm, std::uint32_t, std::span<double> row) {
    const tmc_pass p = tmc_iteration(pm, utility, empty, mean, o.tolerance, o.patience, row);
    r.evaluations += p.evaluations;
    r.failures += p.failures;
  });
  return r;
}

}  // namespace stochgrad::data
