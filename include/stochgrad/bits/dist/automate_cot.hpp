// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Automate-CoT (Shum, Diao, Zhang, 2023): the variance-reduced policy gradient over
/// exemplar choices, with categorical probability rows as the parameters and the reference's
/// bisection projection back onto the simplex (spec shared/design/seeds/variational.md section 7).
///
/// Setting. A prompt has `slots` positions; slot `i` draws candidate `j_i` from row `i` of the
/// matrix `P[slots x n]` (row-major), whose entries ARE the parameters (no softmax). One step
/// draws `I` prompts `j^(q)`, `q = 1..I`, and the caller evaluates their losses `L_q` (a loss:
/// minimised). With `Lbar = mean_q L_q`, BDPL's derivative
/// `D^(q)[i, j] = +1/P[i, j]` if `j == j^(q)_i` else `-1/P[i, j]` gives the loss gradient
///
///     G = (1/(I - 1)) sum_q (L_q - Lbar) D^(q)
///       = (2/(I - 1)) sum_q (L_q - Lbar) e_{j^(q)} ./ P          (sum_q (L_q - Lbar) = 0)
///       = 2 * (1/I) sum_q (L_q - b_q) e_{j^(q)} ./ P,   b_q = (sum_{q'} L_q' - L_q)/(I - 1),
///
/// i.e. exactly twice the leave-one-out (RLOO) score-function estimator of `grad_P E[L]` for the
/// direct-probability parameterisation (`d log P[i, j_i]/dP[i, j] = [j = j_i]/P[i, j]`).
/// That score has mean `1` (a row of ones), not 0, because it ignores the simplex constraint; as
/// the baseline `b_q` is independent of sample q with mean `E[L]`, the RLOO estimate has mean
/// `grad_P E[L] - E[L] * 1`: unbiased in every direction tangent to the simplex (each row's
/// constant part is what the projection removes), not for the unconstrained gradient.
/// `automate_cot_gradient` computes the RLOO form; its option `bdpl_derivative` (default true)
/// multiplies by 2 to match the reference (section 7.2). After the optimiser step the reference
/// clips `G` to norm 3 (`clip_grad_norm`) and projects every row with `project_simplex_rows`.
///
/// What the released code does, and what stochgrad does (section 7.3). The released
/// Automate-CoT `training_step` builds its per-sample derivatives as `[-1 / P] * I`, a Python list
/// of `I` references to ONE tensor; the in-place sign flips of all samples land on that tensor,
/// every `D^(q)` equals the shared matrix `D[i, j] = -(-1)^{c_ij} / P[i, j]` (`c_ij` = how often
/// slot `i` drew `j`), and `G = (sum_q (L_q - Lbar))/(I - 1) * D = 0` in exact arithmetic: the
/// released selection is a random walk driven by rounding residue (Adam normalises it). BDPL's own
/// code (independent copies, `repeat`) is correct. stochgrad implements the intended (BDPL)
/// estimator and does NOT reproduce the aliasing; `tests/dist/automate_cot.cpp` checks that the
/// shared-derivative result (0) is not what this library returns.
///
/// Other differences from the release (section 7.4): the release lets every slot index only the
/// first `floor(N_pool / 8)` pool entries; here each slot's candidate set is the caller's (row `i`
/// of `P`). Sampling renormalises each row, as `torch.distributions.Categorical` does (the
/// projection keeps the sums only within 1e-3 of 1). The optimiser (Adam, lr 1e-3 in the release)
/// is the caller's.
///
/// All arithmetic runs in double; parameters and outputs are float or double. Validation happens
/// before anything is written: on any exception the outputs are untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "distributions.hpp"

namespace stochgrad::dist {

/// `slots` independent categorical variables whose probabilities are the entries of the rows of
/// `P[slots x n]` (row-major; Automate-CoT's exemplar choice, spec sections 1.2 and 7.2). Entries
/// must be finite and positive (the score divides by them; the projection keeps them >= 1e-4).
/// Noise per sample: one `u ~ U(0, 1)` per slot; slot `i` takes the first index `j` with
/// `(P[i, 0] + ... + P[i, j]) / sum_k P[i, k] > u_i` (the last index if rounding leaves none).
///   score (direct probabilities)  `dlog P[i, j_i] / dP[i, j] = [j = j_i] / P[i, j]`
///   BDPL derivative               `D[i, j] = (j == j_i ? +1 : -1) / P[i, j]`
struct categorical_probs {
  static constexpr const char* name = "categorical_probs";  ///< identifies the distribution

  /// Checks `slots >= 1`, `P.size()` a positive multiple of `slots`, every entry finite and > 0.
  /// @param what the caller's name, for messages
  /// @param P the probability matrix, row-major
  /// @param slots the number of rows
  /// @throws invalid_argument on a bad shape or entry
  template <real_scalar T>
  static void validate(const char* what, std::span<const T> P, std::size_t slots) {
    stochgrad::detail::require(slots >= 1, what, "slots", 0.0, ">= 1");
    stochgrad::detail::require(P.size() >= slots && P.size() % slots == 0, what, "P.size()",
                               static_cast<double>(P.size()), "a positive multiple of slots");
    stochgrad::detail::require_data(what, "P", P.data(), P.size());
    detail::require_finite(what, "P", P);
    for (std::size_t k = 0; k < P.size(); ++k) {
      stochgrad::detail::require(static_cast<double>(P[k]) > 0.0, what, "P entry", static_cast<double>(P[k]), "> 0");
    }
  }
  /// The inverse-CDF index of `u` over one row, renormalised: the first `j` with
  /// `sum_{k <= j} row_k > u * sum_k row_k` (the last index if none).
  /// @param row one row of P
  /// @param u uniform in [0, 1)
  template <real_scalar T>
  static std::size_t index(std::span<const T> row, double u) noexcept {
    double total = 0.0;
    for (const T& x : row) total += static_cast<double>(x);
    const double target = u * total;
    double c = 0.0;
    for (std::size_t k = 0; k < row.size(); ++k) {
      c += static_cast<double>(row[k]);
      if (c > target) return k;
    }
    return row.size() - 1;
  }
  /// `j_i = index(P[i, :], u_i)` for every slot.
  /// @param P the probability matrix (validated), row-major
  /// @param u one uniform per slot
  /// @param j output, one index per slot
  template <real_scalar T>
  static void sample(std::span<const T> P, std::span<const T> u, std::span<std::size_t> j) noexcept {
    const std::size_t n = P.size() / u.size();
    for (std::size_t i = 0; i < u.size(); ++i) j[i] = index(P.subspan(i * n, n), static_cast<double>(u[i]));
  }
  /// `log q(j) = sum_i log P[i, j_i]` (direct probabilities, rows assumed on the simplex).
  /// @param P the probability matrix (validated), row-major
  /// @param j one index per slot, each below n
  template <real_scalar T>
  static double log_density(std::span<const T> P, std::span<const std::size_t> j) noexcept {
    const std::size_t n = P.size() / j.size();
    double s = 0.0;
    for (std::size_t i = 0; i < j.size(); ++i) s += std::log(static_cast<double>(P[i * n + j[i]]));
    return s;
  }
  /// Adds `c * [j == j_i] / P[i, j]` to `out` (the score of the direct parameterisation).
  /// @param P the probability matrix (validated), row-major
  /// @param j one index per slot, each below n
  /// @param c coefficient
  /// @param out accumulator, same shape as P
  template <real_scalar T>
  static void add_score(std::span<const T> P, std::span<const std::size_t> j, double c, std::span<double> out) noexcept {
    const std::size_t n = P.size() / j.size();
    for (std::size_t i = 0; i < j.size(); ++i) out[i * n + j[i]] += c / static_cast<double>(P[i * n + j[i]]);
  }
  /// Adds `c * D` with BDPL's derivative `D[i, j] = (j == j_i ? +1 : -1) / P[i, j]`.
  /// @param P the probability matrix (validated), row-major
  /// @param j one index per slot, each below n
  /// @param c coefficient
  /// @param out accumulator, same shape as P
  template <real_scalar T>
  static void add_bdpl_derivative(std::span<const T> P, std::span<const std::size_t> j, double c,
                                  std::span<double> out) noexcept {
    const std::size_t n = P.size() / j.size();
    for (std::size_t i = 0; i < j.size(); ++i) {
      for (std::size_t k = 0; k < n; ++k) {
        out[i * n + k] += (k == j[i] ? c : -c) / static_cast<double>(P[i * n + k]);
      }
    }
  }
};

/// Draws the exemplar indices of `I` prompts from explicit uniforms (section 7.2,
/// `Categorical(P_i)` with rows renormalised): `draws[q * slots + i] = index(P[i, :], u[q * slots + i])`.
/// @param P the matrix `P[slots x n]`, row-major, entries finite and > 0
/// @param slots the number of rows
/// @param u `I x slots` uniforms in [0, 1)
/// @param draws output, `I x slots` indices
/// @throws invalid_argument (bad P, a uniform outside [0, 1)), size_mismatch; `draws` untouched
///         on any exception
template <real_scalar T>
void sample_exemplars(std::span<const T> P, std::size_t slots, std::span<const T> u, std::span<std::size_t> draws) {
  constexpr const char* what = "sample_exemplars";
  categorical_probs::validate(what, P, slots);
  stochgrad::detail::require(u.size() % slots == 0, what, "u.size()", static_cast<double>(u.size()),
                             "a multiple of slots");
  stochgrad::detail::require_same_size(what, "draws", draws.size(), "u", u.size());
  for (const T& x : u) {
    const double v = static_cast<double>(x);
    stochgrad::detail::require(v >= 0.0 && v < 1.0, what, "u entry", v, "in [0, 1)");
  }
  for (std::size_t q = 0; q < u.size() / slots; ++q) {
    categorical_probs::sample(P, u.subspan(q * slots, slots), draws.subspan(q * slots, slots));
  }
}

/// Options of `automate_cot_gradient`.
struct automate_cot_options {
  /// true (the reference, section 7.2): return BDPL's `G`, twice the leave-one-out estimate;
  /// false: the leave-one-out score-function estimate `G / 2` itself.
  bool bdpl_derivative = true;
};

/// The Automate-CoT / BDPL loss gradient over the `I` sampled prompts of one step (section 7.2):
///
///     G = (2/(I - 1)) sum_q (L_q - Lbar) e_{j^(q)} ./ P        (bdpl_derivative, the default)
///     G = (1/I) sum_q (L_q - b_q) e_{j^(q)} ./ P,  b_q = (sum_{q'} L_q' - L_q)/(I - 1)   (otherwise)
///
/// the two equal up to the factor 2; entries of candidates never drawn are exactly 0. `G` is the
/// gradient of the LOSS `E[L]` (descend it). The release's aliased derivative (which gives 0,
/// see the file comment) is not reproduced.
/// @param P the probability matrix `P[slots x n]`, row-major, entries finite and > 0
/// @param slots the number of rows (prompt slots)
/// @param draws `I x slots` candidate indices, row q = prompt q, each below n
/// @param losses the `I` losses `L_q`, finite
/// @param out the gradient, same shape as P (overwritten)
/// @param opt options
/// @throws invalid_argument (bad P, I < 2, an index >= n), size_mismatch, nonfinite_error (a
///         non-finite loss); `out` untouched on any exception
template <real_scalar T>
void automate_cot_gradient(std::span<const T> P, std::size_t slots, std::span<const std::size_t> draws,
                           std::span<const T> losses, std::span<T> out, const automate_cot_options& opt = {}) {
  constexpr const char* what = "automate_cot_gradient";
  categorical_probs::validate(what, P, slots);
  const std::size_t n = P.size() / slots, I = losses.size();
  stochgrad::detail::require(I >= 2, what, "losses.size() (samples I)", static_cast<double>(I),
                             ">= 2 (the estimator divides by I - 1)");
  stochgrad::detail::require_same_size(what, "draws", draws.size(), "I x slots",
                                       stochgrad::detail::checked_product(what, "I", I, "slots", slots));
  stochgrad::detail::require_same_size(what, "out", out.size(), "P", P.size());
  stochgrad::detail::require_data(what, "out", out.data(), out.size());
  for (std::size_t k = 0; k < draws.size(); ++k) {
    stochgrad::detail::require(draws[k] < n, what, "draws entry", static_cast<double>(draws[k]),
                               "below the number of candidates n");
  }
  double sum = 0.0;
  for (std::size_t q = 0; q < I; ++q) {
    const double l = static_cast<double>(losses[q]);
    if (!std::isfinite(l)) {
      throw nonfinite_error(std::string(what) + ": losses[" + std::to_string(q) + "] = " +
                            stochgrad::detail::num_to_string(l) + " is not finite");
    }
    sum += l;
  }
  std::vector<double> acc(P.size(), 0.0);
  const double dI = static_cast<double>(I);
  for (std::size_t q = 0; q < I; ++q) {
    const double l = static_cast<double>(losses[q]);
    const double advantage = l - (sum - l) / (dI - 1.0);  // L_q - b_q (leave-one-out)
    categorical_probs::add_score(P, draws.subspan(q * slots, slots), advantage / dI, acc);
  }
  const double factor = opt.bdpl_derivative ? 2.0 : 1.0;
  for (std::size_t k = 0; k < P.size(); ++k) out[k] = static_cast<T>(factor * acc[k]);
}

/// Rescales `g` in place to norm `max_norm` when it is longer (torch `clip_grad_norm_`, the
/// reference's max_norm 3): if `||g||_2 > max_norm` then `g <- g * max_norm / (||g||_2 + eps)`.
/// @param g the gradient (changed only when clipped)
/// @param max_norm the bound, finite and > 0 (reference: 3)
/// @param eps the guard in the denominator, finite and >= 0 (torch: 1e-6)
/// @return `||g||_2` before clipping
/// @throws invalid_argument (bad max_norm / eps), nonfinite_error (a non-finite entry); `g`
///         untouched on any exception
template <real_scalar T>
double clip_grad_norm(std::span<T> g, double max_norm = 3.0, double eps = 1e-6) {
  constexpr const char* what = "clip_grad_norm";
  stochgrad::detail::require(std::isfinite(max_norm) && max_norm > 0.0, what, "max_norm", max_norm, "finite and > 0");
  stochgrad::detail::require(std::isfinite(eps) && eps >= 0.0, what, "eps", eps, "finite and >= 0");
  double ss = 0.0;
  for (std::size_t k = 0; k < g.size(); ++k) {
    const double v = static_cast<double>(g[k]);
    if (!std::isfinite(v)) {
      throw nonfinite_error(std::string(what) + ": g[" + std::to_string(k) + "] = " +
                            stochgrad::detail::num_to_string(v) + " is not finite");
    }
    ss += v * v;
  }
  const double norm = std::sqrt(ss);
  if (norm > max_norm) {
    const double s = max_norm / (norm + eps);
    for (T& x : g) x = static_cast<T>(static_cast<double>(x) * s);
  }
  return norm;
}

/// Options of the simplex projection (the reference's constants, section 7.2).
struct simplex_projection_options {
  double lower = 1e-4;          ///< lower clamp of every entry (keeps every candidate reachable)
  double upper = 1.0;           ///< upper clamp
  double tolerance = 1e-3;      ///< bisection stops when `|sum_j clamp(p_j - v) - 1| < tolerance`
  std::size_t max_iterations = 30;  ///< ... or after `max_iterations + 1` midpoints (the reference's `itr > 30`)
};

/// The shift found for one row by `project_simplex_rows`.
struct simplex_shift {
  double v = 0.0;              ///< the shift: the row became `clamp(p - v, lower, upper)`
  std::size_t iterations = 0;  ///< bisection midpoints evaluated
};

/// Projects every row `p = P[i, :]` back toward the simplex exactly as the reference's
/// `constrain_score_by_whole_exact` / `solve_v_total_exact` (section 7.2): bisection on `v` with
/// `a = 0, b = max(p)`; repeat `itr += 1; v = (a + b)/2; s = sum_j clamp(p_j - v, lower, upper) - 1`,
/// stop if `|s| < tolerance` or `itr > max_iterations`, else `b = v` if `s < 0` and `a = v`
/// otherwise; finally `P[i, :] <- clamp(p - v, lower, upper)`. Rows sum to 1 only within
/// `tolerance`; a row already summing below 1 drives `v` toward 0 and is only clamped.
/// @param P the matrix, row-major (changed in place)
/// @param slots the number of rows
/// @param shifts optional output, one `simplex_shift` per row (empty: not written)
/// @param opt the projection constants
/// @throws invalid_argument (bad shape, a non-finite entry, bad options), size_mismatch (shifts);
///         nothing changed on any exception
template <real_scalar T>
void project_simplex_rows(std::span<T> P, std::size_t slots, std::span<simplex_shift> shifts = {},
                          const simplex_projection_options& opt = {}) {
  constexpr const char* what = "project_simplex_rows";
  stochgrad::detail::require(slots >= 1, what, "slots", 0.0, ">= 1");
  stochgrad::detail::require(P.size() >= slots && P.size() % slots == 0, what, "P.size()",
                             static_cast<double>(P.size()), "a positive multiple of slots");
  detail::require_finite(what, "P", std::span<const T>(P));
  stochgrad::detail::require(std::isfinite(opt.lower) && std::isfinite(opt.upper) && opt.lower < opt.upper, what,
                             "lower", opt.lower, "finite and below a finite upper");
  stochgrad::detail::require(std::isfinite(opt.tolerance) && opt.tolerance > 0.0, what, "tolerance", opt.tolerance,
                             "finite and > 0");
  if (!shifts.empty()) stochgrad::detail::require_same_size(what, "shifts", shifts.size(), "slots", slots);
  const std::size_t n = P.size() / slots;
  auto clamp = [&](double x) { return std::clamp(x, opt.lower, opt.upper); };
  for (std::size_t i = 0; i < slots; ++i) {
    const std::span<T> p = P.subspan(i * n, n);
    double a = 0.0, b = static_cast<double>(*std::max_element(p.begin(), p.end())), v = 0.0;
    std::size_t itr = 0;
    for (;;) {
      ++itr;
      v = 0.5 * (a + b);
      double s = -1.0;
      for (const T& x : p) s += clamp(static_cast<double>(x) - v);
      if (std::abs(s) < opt.tolerance || itr > opt.max_iterations) break;
      (s < 0.0 ? b : a) = v;
    }
    for (T& x : p) x = static_cast<T>(clamp(static_cast<double>(x) - v));
    if (!shifts.empty()) shifts[i] = simplex_shift{v, itr};
  }
}

/// Inference choice (section 7.2): slot `i` uses `argmax_j P[i, j]`, the first maximum.
/// @param P the matrix `P[slots x n]`, row-major, entries finite and > 0
/// @param slots the number of rows
/// @param choice output, one index per slot
/// @throws invalid_argument (bad P), size_mismatch (choice); `choice` untouched on any exception
template <real_scalar T>
void exemplar_argmax(std::span<const T> P, std::size_t slots, std::span<std::size_t> choice) {
  constexpr const char* what = "exemplar_argmax";
  categorical_probs::validate(what, P, slots);
  stochgrad::detail::require_same_size(what, "choice", choice.size(), "slots", slots);
  const std::size_t n = P.size() / slots;
  for (std::size_t i = 0; i < slots; ++i) {
    const auto row = P.subspan(i * n, n);
    choice[i] = static_cast<std::size_t>(std::max_element(row.begin(), row.end()) - row.begin());
  }
}

}  // namespace stochgrad::dist
