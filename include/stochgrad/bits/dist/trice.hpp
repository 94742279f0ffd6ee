// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief TRICE (Phan et al., NeurIPS 2023): the MCMC-EM gradient of the marginal log-likelihood
/// of correct answers, with the leave-one-out acceptance-rate control variate over a rationale
/// memory (spec shared/design/seeds/variational.md section 6).
///
/// Setting. Maximise `sum_n log p_theta(y_n | x_n) = sum_n log sum_z p_theta(z, y_n | x_n)` over
/// rationales `z`; by Fisher's identity each term's gradient is `E_{p(z | x, y)}[grad log p(z, y | x)]`.
/// A memory keeps one correct rationale `z_n` per training example. Each step, for the M examples
/// of a minibatch, the caller draws a proposal `zt_m ~ p_theta(. | x_m)` and reports
/// `c_m = [answer of zt_m == y_m]`; an accepted proposal replaces the memory (independence-sampler
/// MCMC step, `trice_accept`). The gradient of the OBJECTIVE (ascend; negate once for a loss) is
///
///     beta_m = (sum_{m' != m} c_m') / (M - 1)                       (leave-one-out acceptance rate)
///     g = (1/M) sum_m [ grad log p(z_m) - beta_m grad log p(zt_m) ]     (z_m after the update)
///
/// unbiased because `beta_m` does not depend on `zt_m` and `E_{zt ~ p}[grad log p(zt)] = 0`. As
/// per-sequence weights on the OLD memory and the proposal (what `trice_weights` computes; the
/// caller's vector-Jacobian product applies them to sequence log-probabilities):
///
///     w_memory_m = (1 - c_m)/M,    w_proposal_m = (c_m - beta_m)/M.
///
/// With every proposal correct (`c = 1`), `beta = 1` and `g = 0` exactly. "No CV" (the paper's
/// ablation): `beta = 0`, `g = (1/M) sum_m grad log p(z_m)` over the updated memory.
/// Subsampling (`trice_subsample`): `L` of the `2M` weighted sequences with probability
/// `|w_j| / sum |w|`, `g ~ (sum_j |w_j| / L) sum_l sign(w_{j_l}) grad log p(seq_{j_l})`.
///
/// **[UNVERIFIED]** (spec sections 6.2 and 10.1; no code of the paper was available): the form of
/// the coefficient (reconstructed: the leave-one-out acceptance rate of the minibatch; the paper
/// may estimate it otherwise), whether the answer tokens are differentiated (stochgrad's weights
/// apply to whole sequences, rationale + answer, which keeps the exact cancellation of an accepted
/// example), the memory initialisation (the caller's), and the subsampling scheme (the one here is
/// a **[stochgrad decision]**: multinomial with replacement, by the inverse CDF of explicit
/// uniforms over the order [memories 0..M-1, proposals 0..M-1]). `M = 1` with the control variate
/// is refused (`beta` would be 0/0).
///
/// All arithmetic runs in double; validation happens before anything is written: on any
/// exception the outputs are untouched.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"

namespace stochgrad::dist {

namespace detail {
/// Checks `M = c.size() >= 1` (>= 2 with the control variate) and every `c_m` in {0, 1}.
inline void check_acceptance(const char* what, std::span<const std::uint8_t> c, bool use_cv) {
  stochgrad::detail::require(!c.empty(), what, "c.size() (examples M)", 0.0, ">= 1");
  stochgrad::detail::require(!use_cv || c.size() >= 2, what, "c.size() (examples M)", static_cast<double>(c.size()),
                             ">= 2 with the control variate (beta = 0/0 at M = 1; use use_cv = false)");
  for (std::size_t m = 0; m < c.size(); ++m) {
    stochgrad::detail::require(c[m] <= 1, what, "c entry", static_cast<double>(c[m]), "0 or 1");
  }
}
/// Throws nonfinite_error naming `name[i]` for the first non-finite entry.
template <class T>
void check_finite_values(const char* what, const char* name, std::span<const T> x) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) {
      throw nonfinite_error(std::string(what) + ": " + name + "[" + std::to_string(i) + "] = " +
                            stochgrad::detail::num_to_string(v) + " is not finite");
    }
  }
}
/// The checks shared by the gradient entry points: d >= 1, both gradient tables `M x d` and finite.
template <class T>
void check_gradient_tables(const char* what, std::size_t M, std::size_t d, std::span<const T> memory_grads,
                           std::span<const T> proposal_grads) {
  stochgrad::detail::require(d >= 1, what, "g.size()", 0.0, ">= 1");
  const std::size_t Md = stochgrad::detail::checked_product(what, "M", M, "d", d);
  stochgrad::detail::require_same_size(what, "memory_grads", memory_grads.size(), "M x d", Md);
  stochgrad::detail::require_same_size(what, "proposal_grads", proposal_grads.size(), "M x d", Md);
  check_finite_values(what, "memory_grads", memory_grads);
  check_finite_values(what, "proposal_grads", proposal_grads);
}
}  // namespace detail

/// TRICE's per-sequence weights (section 6.2). With the control variate (`use_cv`):
/// `beta_m = (sum_{m' != m} c_m')/(M - 1)`; without: `beta_m = 0`. Then
/// `w_memory_m = (1 - c_m)/M` (weight of the old memory sequence) and
/// `w_proposal_m = (c_m - beta_m)/M` (weight of the proposal), so that
/// `g = sum_m (w_memory_m grad log p(z_m^old) + w_proposal_m grad log p(zt_m))`.
/// @param c acceptance indicators in {0, 1}, one per example (M of them)
/// @param use_cv true: the leave-one-out control variate (needs M >= 2); false: "TRICE no CV"
/// @param beta output, M coefficients
/// @param w_memory output, M weights
/// @param w_proposal output, M weights
/// @throws invalid_argument (M = 0, M = 1 with the CV, c not 0/1), size_mismatch; outputs
///         untouched on any exception
template <real_scalar T>
void trice_weights(std::span<const std::uint8_t> c, bool use_cv, std::span<T> beta, std::span<T> w_memory,
                   std::span<T> w_proposal) {
  constexpr const char* what = "trice_weights";
  detail::check_acceptance(what, c, use_cv);
  const std::size_t M = c.size();
  stochgrad::detail::require_same_size(what, "beta", beta.size(), "c", M);
  stochgrad::detail::require_same_size(what, "w_memory", w_memory.size(), "c", M);
  stochgrad::detail::require_same_size(what, "w_proposal", w_proposal.size(), "c", M);
  double accepted = 0.0;
  for (std::uint8_t x : c) accepted += x;
  const double dM = static_cast<double>(M);
  for (std::size_t m = 0; m < M; ++m) {
    const double cm = c[m];
    const double b = use_cv ? (accepted - cm) / (dM - 1.0) : 0.0;
    beta[m] = static_cast<T>(b);
    w_memory[m] = static_cast<T>((1.0 - cm) / dM);
    w_proposal[m] = static_cast<T>((cm - b) / dM);
  }
}

/// The MCMC accept step: `memory[m] <- proposals[m]` where `c_m = 1`, unchanged otherwise.
/// @tparam Z the rationale type (any copy-assignable type: token vectors, indices, ...)
/// @param c acceptance indicators in {0, 1}
/// @param memory the memory entries of the M examples (changed in place)
/// @param proposals the M proposals
/// @throws invalid_argument (c empty or not 0/1), size_mismatch; memory untouched on any exception
template <class Z>
void trice_accept(std::span<const std::uint8_t> c, std::span<Z> memory, std::span<const Z> proposals) {
  constexpr const char* what = "trice_accept";
  detail::check_acceptance(what, c, false);
  stochgrad::detail::require_same_size(what, "memory", memory.size(), "c", c.size());
  stochgrad::detail::require_same_size(what, "proposals", proposals.size(), "c", c.size());
  for (std::size_t m = 0; m < c.size(); ++m) {
    if (c[m] == 1) memory[m] = proposals[m];
  }
}

/// The TRICE objective gradient from per-sequence gradients given as vectors (section 6.3
/// example 1): `g = sum_m (w_memory_m gm_m + w_proposal_m gp_m)` with the weights of
/// `trice_weights`; equivalently `(1/M) sum_m [grad log p(z_m) - beta_m grad log p(zt_m)]` over
/// the updated memory. Ascend `g` (it is the gradient of the log-likelihood objective).
/// @param c acceptance indicators in {0, 1} (M of them)
/// @param memory_grads `M x d`, row m = `grad log p(z_m)` of the memory BEFORE the update
/// @param proposal_grads `M x d`, row m = `grad log p(zt_m)`
/// @param use_cv the leave-one-out control variate (M >= 2) or "no CV"
/// @param g output, d entries (overwritten)
/// @throws invalid_argument, size_mismatch, nonfinite_error (a non-finite gradient entry); `g`
///         untouched on any exception
template <real_scalar T>
void trice_gradient(std::span<const std::uint8_t> c, std::span<const T> memory_grads,
                    std::span<const T> proposal_grads, bool use_cv, std::span<T> g) {
  constexpr const char* what = "trice_gradient";
  detail::check_acceptance(what, c, use_cv);
  const std::size_t M = c.size(), d = g.size();
  detail::check_gradient_tables(what, M, d, memory_grads, proposal_grads);
  std::vector<double> beta(M), wm(M), wp(M), acc(d, 0.0);
  trice_weights<double>(c, use_cv, beta, wm, wp);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t k = 0; k < d; ++k) {
      acc[k] += wm[m] * static_cast<double>(memory_grads[m * d + k]) +
                wp[m] * static_cast<double>(proposal_grads[m * d + k]);
    }
  }
  for (std::size_t k = 0; k < d; ++k) g[k] = static_cast<T>(acc[k]);
}

/// Subsampling of the weighted sequences (section 6.2, **[stochgrad decision]**, the paper's
/// scheme **[UNVERIFIED]**): over the order `j = 0..2M-1` = [memories 0..M-1, proposals 0..M-1]
/// with weights `w = [w_memory, w_proposal]`, pick `picked[l]` = the first `j` with
/// `sum_{j' <= j} |w_j'| > u_l * sum |w|` (multinomial with replacement; zero weights are never
/// picked). The estimate is `g ~ scale * sum_l sign(w_{picked[l]}) grad log p(seq_{picked[l]})`
/// with `scale = sum |w| / L`; unbiased for `g`, with L backward passes. When every weight is 0
/// (e.g. all proposals accepted with the CV) the gradient is exactly 0: `scale = 0` and every
/// `picked[l] = 2M` (no sequence).
/// @param w_memory the M memory weights (finite)
/// @param w_proposal the M proposal weights (finite)
/// @param u L uniforms in [0, 1)
/// @param picked output, L indices in [0, 2M) (or 2M when every weight is 0)
/// @param sign output, L signs `sign(w_{picked[l]})` in {-1, +1} (0 when every weight is 0)
/// @return `scale = sum |w| / L`
/// @throws invalid_argument (M = 0, L = 0, u outside [0, 1)), size_mismatch, nonfinite_error;
///         outputs untouched on any exception
template <real_scalar T>
double trice_subsample(std::span<const T> w_memory, std::span<const T> w_proposal, std::span<const T> u,
                       std::span<std::size_t> picked, std::span<T> sign) {
  constexpr const char* what = "trice_subsample";
  const std::size_t M = w_memory.size(), L = u.size();
  stochgrad::detail::require(M >= 1, what, "w_memory.size() (examples M)", 0.0, ">= 1");
  stochgrad::detail::require(L >= 1, what, "u.size() (subsample L)", 0.0, ">= 1");
  stochgrad::detail::require_same_size(what, "w_proposal", w_proposal.size(), "w_memory", M);
  stochgrad::detail::require_same_size(what, "picked", picked.size(), "u", L);
  stochgrad::detail::require_same_size(what, "sign", sign.size(), "u", L);
  detail::check_finite_values(what, "w_memory", w_memory);
  detail::check_finite_values(what, "w_proposal", w_proposal);
  for (const T& x : u) {
    const double v = static_cast<double>(x);
    stochgrad::detail::require(v >= 0.0 && v < 1.0, what, "u entry", v, "in [0, 1)");
  }
  auto weight = [&](std::size_t j) { return static_cast<double>(j < M ? w_memory[j] : w_proposal[j - M]); };
  double total = 0.0;
  std::size_t last = 2 * M;  // last non-zero weight
  for (std::size_t j = 0; j < 2 * M; ++j) {
    total += std::abs(weight(j));
    if (weight(j) != 0.0) last = j;
  }
  for (std::size_t l = 0; l < L; ++l) {
    std::size_t pick = last;
    if (total > 0.0) {
      const double target = static_cast<double>(u[l]) * total;
      double cum = 0.0;
      for (std::size_t j = 0; j < 2 * M; ++j) {
        cum += std::abs(weight(j));
        if (weight(j) != 0.0 && cum > target) {
          pick = j;
          break;
        }
      }
    }
    picked[l] = pick;
    sign[l] = pick == 2 * M ? T(0) : (weight(pick) > 0.0 ? T(1) : T(-1));
  }
  return total / static_cast<double>(L);
}

/// The subsampled TRICE gradient from per-sequence gradients given as vectors:
/// `g = scale * sum_l sign_l * grad_{picked[l]}`, `grad_j` = row j of `memory_grads` for `j < M`,
/// row `j - M` of `proposal_grads` otherwise (`trice_subsample` draws `picked`, `sign`, `scale`).
/// @param w_memory the M memory weights (from `trice_weights`)
/// @param w_proposal the M proposal weights
/// @param u L uniforms in [0, 1)
/// @param memory_grads `M x d` gradients of the old memory sequences
/// @param proposal_grads `M x d` gradients of the proposals
/// @param picked output, the L picked indices (see `trice_subsample`)
/// @param g output, d entries (overwritten)
/// @throws invalid_argument, size_mismatch, nonfinite_error; outputs untouched on any exception
template <real_scalar T>
void trice_subsampled_gradient(std::span<const T> w_memory, std::span<const T> w_proposal, std::span<const T> u,
                               std::span<const T> memory_grads, std::span<const T> proposal_grads,
                               std::span<std::size_t> picked, std::span<T> g) {
  constexpr const char* what = "trice_subsampled_gradient";
  const std::size_t M = w_memory.size(), d = g.size();
  detail::check_gradient_tables(what, M, d, memory_grads, proposal_grads);
  std::vector<std::size_t> pk(u.size());
  std::vector<T> sg(u.size());
  const double scale = trice_subsample<T>(w_memory, w_proposal, u, pk, sg);
  stochgrad::detail::require_same_size(what, "picked", picked.size(), "u", u.size());
  std::vector<double> acc(d, 0.0);
  for (std::size_t l = 0; l < pk.size(); ++l) {
    if (pk[l] == 2 * M) continue;
    const std::span<const T> row = pk[l] < M ? memory_grads.subspan(pk[l] * d, d)
                                             : proposal_grads.subspan((pk[l] - M) * d, d);
    for (std::size_t k = 0; k < d; ++k) acc[k] += scale * static_cast<double>(sg[l]) * static_cast<double>(row[k]);
  }
  for (std::size_t l = 0; l < pk.size(); ++l) picked[l] = pk[l];
  for (std::size_t k = 0; k < d; ++k) g[k] = static_cast<T>(acc[k]);
}

}  // namespace stochgrad::dist
