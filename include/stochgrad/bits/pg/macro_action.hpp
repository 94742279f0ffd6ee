// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief MA-RLHF, macro-action PPO (Chai et al., "MA-RLHF: Reinforcement Learning from Human
/// Feedback with Macro Actions", arXiv 2410.02743), as its code does it (ernie-research/MA-RLHF @
/// 807551d519, applications/DeepSpeed-Chat/dschat/rlhf/ppo_trainer.py `DeepSpeedPPOTrainer`):
/// macro-action segmentation, macro-level GAE mapped back to per-token advantages and returns,
/// the token rewards, and the clipped value loss. Seed spec rl_zo.md §1.
///
/// Tokens `t = 0..n-1` of one response (mask m), macro boundaries `b = [b_0 = 0, ..., b_{K-1} = n-1]`:
///
///     macro actions     seg_k = [b_k, b_{k+1})  (k = 0..K-2),   seg_{K-1} = {n-1}
///                       (the LAST token is always a macro action of its own)
///     token rewards     r_t = -kl_coef (old_t - ref_t) ;  r_{n-1} += clip(s, -2.5, 2.5)
///     aggregation       X_k over the active tokens of seg_k, in order, for x in {V, r}:
///                         mean      X_k = mean of x                            (the reference's "equal")
///                         position  X_k = sum_j w_j x_j,  w_j = (1/(j+1)) / sum_i 1/(i+1)
///                         last      X_k = the last active token's x           (the intended "unit")
///                       an empty segment (or one without an active token) gives X_k = 0
///     GAE               delta_k = R_k + gamma V_{k+1} - V_k   (V_K = 0)
///                       A_k = delta_k + gamma lam A_{k+1}      (A_K = 0) ;  G_k = A_k + V_k
///     per token         A_t = A_k, G_t = G_k for every token t of seg_k
///     policy loss       the clipped surrogate (token ratio, clip 0.2, token mean, no KL term:
///                       the KL is in the reward) with the per-token A_t: `macro_ppo_options()`
///     value loss        vc_t = clip(Vnew_t, V_t - 0.2, V_t + 0.2)
///                       L_V = 0.5 sum_t max((Vnew_t - G_t)^2, (vc_t - G_t)^2) m_t / max(sum_t m_t, 1)
///
/// Macro REWARDS are aggregated too, so the per-token KL penalties of a macro action are averaged,
/// not summed (as the reference does). With `fixed_ngram{1}` (and the default de-duplication) the
/// kernel is token-level GAE and the whole pipeline is vanilla PPO.
///
/// Termination rules (how `b` is chosen; the reference's `--termination_condition`):
/// - `fixed_ngram{N}`: a boundary after every N active tokens (`fixed_ngram_selection`);
/// - `ngram_schedule{lengths}`: the j-th macro action has `lengths[j]` active tokens, then the
///   rest is one macro action (`randomized_ngram_selection` with its shuffled list given
///   explicitly; `randomized_ngram_lengths` draws one with the counter-based generator);
/// - `perplexity_rise{ppl}`: a macro action starts at token i whenever `ppl_{i+1} > ppl_i`
///   (`ppl_selection`; ppl = exp of the reference model's cross-entropy per token);
/// - `explicit_boundaries{starts}`: any caller rule, e.g. the constituency-parse rule
///   (`parsing_selection`, which needs an external parser and the policy's tokenizer).
///
/// Quirks of the reference (§1.4) and stochgrad's choices:
/// - Duplicate last boundary: with the fixed rule, when the count reaches N exactly at token n-2
///   (`(n-1) mod N == 0` for all-ones masks, so ALWAYS for N = 1), n-1 is appended twice; the
///   split then has an EMPTY macro action (value 0, reward 0) that takes part in GAE, and the
///   macro action before it bootstraps from V = 0 instead of the true next value. The README's
///   "ngram = 1 reproduces PPO" therefore does not hold for the reference code. **[stochgrad
///   decision]** boundaries are de-duplicated; `macro_segmentation_options::reference_quirks`
///   keeps the empty segment (the reference's numbers).
/// - Padding: the reference runs one sequence per micro-batch (no padding) and would place the
///   score one position past the last valid token of a right-padded row. **[stochgrad decision]**
///   each row ends at its last active token (positions after it get A = G = 0 and are not part of
///   any macro action), the score is added to that token, and it is its own macro action. Holes in
///   the mask (inactive tokens before the last active one) stay inside their macro action: they are
///   skipped by the n-gram count and by the aggregation, get their segment's A and G, and are
///   masked in the losses.
/// - `"unit"` aggregation raises an IndexError in the reference; `last` is what it intends.
///   `"position"` uses float32 weights there (results differ from this double implementation by
///   ~1e-8 relative; worked example 3 agrees with the reference to 2e-7).
/// - Masks are 0/1: a token is active when `m != 0` (segmentation, aggregation); the losses
///   weight tokens by m, as the reference multiplies by its mask.
///
/// Defaults (main.py; run_gemma.sh): kl_coef 0.05, gamma 1, lam 0.95, clip ranges 0.2 (policy and
/// value), reward clip 2.5, ngram 1 in the code (5 in the scripts), aggregation "equal" (`mean`).
///
/// The pipeline for a batch of B responses padded to L tokens (the critic and the backward passes
/// are the caller's):
/// @code
/// const std::size_t B = 1, L = 8;
/// const std::vector<double> old{-1.2, -0.4, -2.1, -0.7, -0.9, -1.5, -0.3, -0.05};
/// const std::vector<double> ref{-1.0, -0.5, -1.8, -0.9, -1.1, -1.3, -0.35, -0.1};
/// const std::vector<double> logp{-1.0, -0.45, -2.6, -0.5, -0.95, -1.2, -0.3, -0.02};
/// const std::vector<double> values{0.1, 0.2, 0.15, 0.3, 0.25, 0.4, 0.5, 0.6}, scores{1.7};
/// const std::vector<double> mask(B * L, 1.0);
/// std::vector<double> rewards(B * L), adv(B * L), ret(B * L), coef(B * L);
/// stochgrad::ma_rlhf_token_rewards<double, double>(old, ref, scores, mask, L, {}, rewards);
/// stochgrad::macro_segmentation seg;
/// stochgrad::segment_macro_actions(stochgrad::fixed_ngram{3}, B, L, std::span<const double>(mask), seg);
/// stochgrad::macro_gae<double, double>(rewards, values, mask, seg, {}, adv, ret);
/// const stochgrad::token_batch<double, double> tb{B, L, logp, old, {}, mask, adv};  // per-token advantages
/// const auto pi = stochgrad::clipped_surrogate(stochgrad::macro_ppo_options()).evaluate(tb, std::span<double>(coef));
/// // coef = dL_pi/dlogp for the actor's backward pass; clipped_value_loss gives the critic's
/// if (seg.macro_actions(0) != 4 || std::abs(pi.loss - -1.2864088584294682) > 1e-12) std::abort();
/// @endcode
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../rng/noise.hpp"
#include "surrogate.hpp"
#include "token_batch.hpp"

namespace stochgrad {

// ---------------------------------------------------------------------------------------------
// Segmentation
// ---------------------------------------------------------------------------------------------

/// Options of `segment_macro_actions`.
struct macro_segmentation_options {
  /// Keep duplicate boundaries as the reference does (an EMPTY macro action that takes part in
  /// GAE, see the file comment). Default false: boundaries are de-duplicated.
  bool reference_quirks = false;
};

class macro_segmentation;

/// Splits each row of a `[B x L]` batch into macro actions (defined below).
template <class P, class M>
void segment_macro_actions(const P& rule, std::size_t sequences, std::size_t length, std::span<const M> mask,
                           macro_segmentation& out, macro_segmentation_options o = {});

/// The macro actions of a `[B x L]` batch: for each row n, its valid length `n_n` (last active
/// token + 1) and the reference's boundary list `b = [0, ..., n_n - 1]` (K entries, K macro
/// actions: `[b_k, b_{k+1})` for k < K-1 and `{n_n - 1}` last; with `reference_quirks` a
/// repeated boundary gives an empty one). Macro actions of all rows are numbered consecutively
/// (row n's are `offset(n) .. offset(n) + macro_actions(n) - 1`), which is the layout of the
/// macro-level outputs of `macro_gae`. Reusable: refilling it allocates only when it grows.
class macro_segmentation {
 public:
  /// Rows B.
  std::size_t sequences() const noexcept { return neff_.size(); }
  /// Padded length L.
  std::size_t length() const noexcept { return length_; }
  /// Valid length of row n (index of its last active token + 1).
  std::size_t valid_length(std::size_t n) const noexcept { return neff_[n]; }
  /// The boundary list b of row n.
  std::span<const std::size_t> boundaries(std::size_t n) const noexcept {
    return std::span<const std::size_t>(b_.data() + off_[n], off_[n + 1] - off_[n]);
  }
  /// K, the number of macro actions of row n (= boundaries(n).size()).
  std::size_t macro_actions(std::size_t n) const noexcept { return off_[n + 1] - off_[n]; }
  /// Index of row n's first macro action in the batch numbering.
  std::size_t offset(std::size_t n) const noexcept { return off_[n]; }
  /// Macro actions of the whole batch.
  std::size_t total() const noexcept { return b_.size(); }
  /// Token range `[first, second)` of macro action k of row n (empty for a repeated boundary).
  std::pair<std::size_t, std::size_t> tokens(std::size_t n, std::size_t k) const noexcept {
    const std::span<const std::size_t> b = boundaries(n);
    if (k + 1 < b.size()) return {b[k], b[k + 1]};
    return {neff_[n] - 1, neff_[n]};
  }
  /// The sizes of row n's macro actions, diff(b) followed by 1 (the reference's split sizes).
  std::vector<std::size_t> sizes(std::size_t n) const {
    std::vector<std::size_t> s;
    for (std::size_t k = 0; k < macro_actions(n); ++k) {
      const auto r = tokens(n, k);
      s.push_back(r.second - r.first);
    }
    return s;
  }

 private:
  template <class P, class M>
  friend void segment_macro_actions(const P&, std::size_t, std::size_t, std::span<const M>, macro_segmentation&,
                                    macro_segmentation_options);
  std::size_t length_ = 0;
  std::vector<std::size_t> off_{0};
  std::vector<std::size_t> b_;
  std::vector<std::size_t> neff_;
};

namespace detail {
template <class M>
inline bool macro_active_at(std::span<const M> mask_row, std::size_t t) noexcept {
  return mask_row.empty() || mask_row[t] != M(0);
}
}  // namespace detail

/// The fixed n-gram rule (`fixed_ngram_selection`): `b = [0]`, count the active tokens
/// `i = 0..n-2`, append `i + 1` each time the count reaches N (and restart it), append `n - 1`.
/// A response with fewer than N + 1 valid tokens is one macro action of its first n - 1 tokens
/// plus the last token.
struct fixed_ngram {
  std::size_t ngram = 1;  ///< N >= 1 (code default 1 = token level; the scripts use 5)

  /// @throws invalid_argument if N is 0
  void validate(const char* what, std::size_t, std::size_t) const {
    detail::require(ngram >= 1, what, "fixed_ngram::ngram", static_cast<double>(ngram), ">= 1");
  }
  /// No per-row condition.
  template <class M>
  void check_row(const char*, std::size_t, std::size_t, std::span<const M>, std::size_t) const {}
  /// Appends row `row`'s raw boundary list (duplicates possible).
  template <class M>
  void append(std::size_t, std::size_t, std::span<const M> mask_row, std::size_t n, std::vector<std::size_t>& b) const {
    b.push_back(0);
    std::size_t c = 0;
    for (std::size_t i = 0; i + 1 < n; ++i) {
      if (!detail::macro_active_at(mask_row, i)) continue;
      if (++c == ngram) {
        b.push_back(i + 1);
        c = 0;
      }
    }
    b.push_back(n - 1);
  }
};

/// The randomized n-gram rule with its list given (`randomized_ngram_selection`): the j-th macro
/// action ends when it holds `lengths[j]` active tokens; after the last entry the loop stops and
/// the rest (up to n - 1) is one macro action; `n - 1` is appended. The same list applies to
/// every row. (A view: the caller keeps the data alive.)
struct ngram_schedule {
  std::span<const std::size_t> lengths{};  ///< >= 1 each; not empty

  /// @throws invalid_argument for an empty list or a zero entry
  void validate(const char* what, std::size_t, std::size_t) const {
    if (lengths.empty()) throw invalid_argument(std::string(what) + ": ngram_schedule::lengths is empty");
    for (const std::size_t l : lengths) {
      detail::require(l >= 1, what, "ngram_schedule::lengths[j]", static_cast<double>(l), ">= 1");
    }
  }
  /// No per-row condition.
  template <class M>
  void check_row(const char*, std::size_t, std::size_t, std::span<const M>, std::size_t) const {}
  /// Appends row `row`'s raw boundary list.
  template <class M>
  void append(std::size_t, std::size_t, std::span<const M> mask_row, std::size_t n, std::vector<std::size_t>& b) const {
    b.push_back(0);
    std::size_t c = 0, j = 0;
    for (std::size_t i = 0; i + 1 < n && j < lengths.size(); ++i) {
      if (!detail::macro_active_at(mask_row, i)) continue;
      if (++c == lengths[j]) {
        b.push_back(i + 1);
        c = 0;
        ++j;
      }
    }
    b.push_back(n - 1);
  }
};

/// The list of the reference's randomized rule: `[1, 2, 3, 5, 10]`, each repeated
/// `repeat_times` times, shuffled (Fisher-Yates, position i swapped with `floor(u_i (i + 1))`, u
/// the counter-based uniform of `noise_key{seed, 0, 0}` at element i). The reference shuffles with
/// Python's global `random`; this is reproducible from the seed instead.
/// @throws invalid_argument if repeat_times is 0
inline void randomized_ngram_lengths(std::size_t repeat_times, std::uint64_t seed, std::vector<std::size_t>& out) {
  detail::require(repeat_times >= 1, "randomized_ngram_lengths", "repeat_times", static_cast<double>(repeat_times),
                  ">= 1");
  static constexpr std::size_t base[5] = {1, 2, 3, 5, 10};
  out.clear();
  for (std::size_t r = 0; r < repeat_times; ++r) out.insert(out.end(), base, base + 5);
  const noise_key key{seed, 0, 0};
  for (std::size_t i = out.size(); i-- > 1;) {
    const double u = static_cast<double>(noise_at<uniform>(key, i));
    const std::size_t j = std::min(i, static_cast<std::size_t>(u * static_cast<double>(i + 1)));
    std::swap(out[i], out[j]);
  }
}

/// The perplexity rule (`ppl_selection`): `b = [i for i = 0..n-2 if ppl_{i+1} > ppl_i]`, 0
/// prepended if missing, `n - 1` appended: a macro action starts at token i whenever the next
/// token's perplexity is higher. `ppl` is `[B x L]` (the reference uses `exp` of the REFERENCE
/// model's cross-entropy of each response token; since exp is increasing, passing the
/// cross-entropies `-ref_logp` gives the same boundaries). A view: the caller keeps it alive.
template <real_scalar T>
struct perplexity_rise {
  std::span<const T> ppl{};  ///< `[B x L]`; finite at positions before each row's valid length

  /// @throws size_mismatch unless ppl has B x L elements
  void validate(const char* what, std::size_t B, std::size_t L) const {
    detail::require_same_size(what, "perplexity_rise::ppl", ppl.size(), "sequences x length", B * L);
  }
  /// @throws nonfinite_error for a non-finite perplexity among the row's first n tokens
  template <class M>
  void check_row(const char* what, std::size_t row, std::size_t length, std::span<const M>, std::size_t n) const {
    for (std::size_t t = 0; t < n; ++t) {
      const double v = static_cast<double>(ppl[row * length + t]);
      if (!std::isfinite(v)) detail::throw_nonfinite(what, "ppl", row, t, v);
    }
  }
  /// Appends row `row`'s raw boundary list.
  template <class M>
  void append(std::size_t row, std::size_t length, std::span<const M>, std::size_t n,
              std::vector<std::size_t>& b) const {
    const T* p = ppl.data() + row * length;
    const std::size_t first = b.size();
    for (std::size_t i = 0; i + 1 < n; ++i) {
      if (p[i + 1] > p[i]) b.push_back(i);
    }
    if (b.size() == first || b[first] != 0) b.insert(b.begin() + static_cast<std::ptrdiff_t>(first), 0);
    b.push_back(n - 1);
  }
};

/// Caller-given macro-action starts (the parse-based rule, or any other): row n's starts are
/// `starts[offsets[n] .. offsets[n+1])`, beginning with 0, strictly increasing, each below the
/// row's valid length; `n - 1` is appended (as the reference's `parsing_selection` does). For a
/// single row `offsets` may be empty. Views: the caller keeps the data alive.
struct explicit_boundaries {
  std::span<const std::size_t> starts{};   ///< concatenated starts of every row
  std::span<const std::size_t> offsets{};  ///< B + 1 offsets into starts (empty when B == 1)

  /// @throws size_mismatch / invalid_argument for offsets that do not describe B rows of starts
  void validate(const char* what, std::size_t B, std::size_t) const {
    if (offsets.empty()) {
      if (B != 1) {
        throw size_mismatch(std::string(what) + ": explicit_boundaries::offsets is empty but there are " +
                            std::to_string(B) + " rows (give B + 1 offsets)");
      }
      return;
    }
    detail::require_same_size(what, "explicit_boundaries::offsets", offsets.size(), "sequences + 1", B + 1);
    detail::require(offsets[0] == 0, what, "explicit_boundaries::offsets[0]", static_cast<double>(offsets[0]), "0");
    for (std::size_t n = 0; n < B; ++n) {
      if (offsets[n + 1] < offsets[n]) {
        throw invalid_argument(std::string(what) + ": explicit_boundaries::offsets decrease at row " +
                               std::to_string(n));
      }
    }
    detail::require_same_size(what, "explicit_boundaries::offsets[B]", offsets[B], "starts", starts.size());
  }
  /// @throws invalid_argument for an empty row (no macro action), a first start other than 0,
  ///         starts that do not increase strictly (an empty macro action), or a start at or past
  ///         the row's valid length
  template <class M>
  void check_row(const char* what, std::size_t row, std::size_t, std::span<const M>, std::size_t n) const {
    const std::span<const std::size_t> s = row_starts(row);
    if (s.empty()) {
      throw invalid_argument(std::string(what) + ": explicit_boundaries: row " + std::to_string(row) +
                             " has no macro action (its list of starts is empty; give at least {0})");
    }
    if (s[0] != 0) {
      throw invalid_argument(std::string(what) + ": explicit_boundaries: row " + std::to_string(row) +
                             " starts its first macro action at " + std::to_string(s[0]) + ", must be 0");
    }
    for (std::size_t k = 0; k < s.size(); ++k) {
      if (k > 0 && s[k] <= s[k - 1]) {
        throw invalid_argument(std::string(what) + ": explicit_boundaries: row " + std::to_string(row) + " start " +
                               std::to_string(k) + " = " + std::to_string(s[k]) +
                               " does not exceed the previous one (" + std::to_string(s[k - 1]) +
                               "): an empty macro action");
      }
      if (s[k] >= n) {
        throw invalid_argument(std::string(what) + ": explicit_boundaries: row " + std::to_string(row) + " start " +
                               std::to_string(s[k]) + " is not below the row's valid length " + std::to_string(n));
      }
    }
  }
  /// Appends row `row`'s raw boundary list (the starts, then n - 1).
  template <class M>
  void append(std::size_t row, std::size_t, std::span<const M>, std::size_t n, std::vector<std::size_t>& b) const {
    const std::span<const std::size_t> s = row_starts(row);
    b.insert(b.end(), s.begin(), s.end());
    b.push_back(n - 1);
  }

 private:
  std::span<const std::size_t> row_starts(std::size_t row) const noexcept {
    if (offsets.empty()) return starts;
    return starts.subspan(offsets[row], offsets[row + 1] - offsets[row]);
  }
};

/// Splits each row of a `[B x L]` batch into macro actions with a termination rule (see the
/// rules above and the file comment): each row's valid length is its last active token + 1; the
/// rule's boundary list is de-duplicated unless `o.reference_quirks`.
/// @param rule       fixed_ngram, ngram_schedule, perplexity_rise<T>, explicit_boundaries
/// @param sequences  B >= 1
/// @param length     L >= 1
/// @param mask       `[B x L]` response mask, or empty (all ones)
/// @param out        the segmentation (refilled; its buffers grow only)
/// @param o          options (`reference_quirks`: keep the reference's duplicate-boundary macro action)
/// @throws invalid_argument for B or L of 0, a row without an active token, or the rule's
///         conditions; size_mismatch on sizes; nonfinite_error for a non-finite mask entry or
///         perplexity. `out` is unchanged then.
template <class P, class M>
void segment_macro_actions(const P& rule, std::size_t sequences, std::size_t length, std::span<const M> mask,
                           macro_segmentation& out, macro_segmentation_options o) {
  static_assert(std::is_arithmetic_v<M>, "stochgrad::segment_macro_actions: the mask type must be arithmetic");
  const char* what = "segment_macro_actions";
  detail::require(sequences >= 1, what, "sequences (empty batch)", static_cast<double>(sequences), ">= 1");
  detail::require(length >= 1, what, "length", static_cast<double>(length), ">= 1");
  const std::size_t NL = detail::checked_product(what, "sequences", sequences, "length", length);
  if (!mask.empty()) detail::require_same_size(what, "mask", mask.size(), "sequences x length", NL);
  detail::check_mask_finite(what, mask, length);
  const P& r = rule;
  r.validate(what, sequences, length);
  auto row_mask = [&](std::size_t n) { return mask.empty() ? std::span<const M>() : mask.subspan(n * length, length); };
  auto valid_length = [&](std::size_t n) {
    const std::span<const M> m = row_mask(n);
    if (m.empty()) return length;
    for (std::size_t t = length; t-- > 0;) {
      if (m[t] != M(0)) return t + 1;
    }
    return std::size_t{0};
  };
  // Pass 1: every check; nothing is written.
  for (std::size_t n = 0; n < sequences; ++n) {
    const std::size_t v = valid_length(n);
    if (v == 0) {
      throw invalid_argument(std::string(what) + ": row " + std::to_string(n) +
                             " has no active token (an empty response has no macro action)");
    }
    r.check_row(what, n, length, row_mask(n), v);
  }
  // Pass 2: the boundaries.
  out.length_ = length;
  out.neff_.resize(sequences);
  out.off_.resize(sequences + 1);
  out.off_[0] = 0;
  out.b_.clear();
  for (std::size_t n = 0; n < sequences; ++n) {
    const std::size_t v = valid_length(n);
    out.neff_[n] = v;
    const std::size_t first = out.b_.size();
    r.append(n, length, row_mask(n), v, out.b_);
    if (!o.reference_quirks) {
      const auto end = std::unique(out.b_.begin() + static_cast<std::ptrdiff_t>(first), out.b_.end());
      out.b_.erase(end, out.b_.end());
    }
    out.off_[n + 1] = out.b_.size();
  }
}

/// As above with a `std::vector` mask (deduces M).
template <class P, class M>
void segment_macro_actions(const P& rule, std::size_t sequences, std::size_t length, const std::vector<M>& mask,
                           macro_segmentation& out, macro_segmentation_options o = {}) {
  segment_macro_actions(rule, sequences, length, std::span<const M>(mask), out, o);
}

/// A new segmentation (see above).
template <class P, class M>
macro_segmentation segment_macro_actions(const P& rule, std::size_t sequences, std::size_t length,
                                         std::span<const M> mask, macro_segmentation_options o = {}) {
  macro_segmentation s;
  segment_macro_actions(rule, sequences, length, mask, s, o);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Token rewards
// ---------------------------------------------------------------------------------------------

/// Options of MA-RLHF's token rewards (`compute_rewards`).
struct ma_rlhf_reward_options {
  double kl_coef = 0.05;     ///< kl_ctl; finite and >= 0 (0.1 for WebGPT / 27B in the paper's scripts)
  double reward_clip = 2.5;  ///< clip_reward_value (hard-coded 2.5); > 0, infinity = no clip
};

/// MA-RLHF's token rewards: `r_t = -kl_coef (old_t - ref_t)` at every active token, 0 at
/// inactive ones, and `clip(s_n, -c, c)` added at each row's last active token (k1 KL estimate of
/// the generating policy; see the file comment for padded rows).
/// @param old_logp  `[B x L]` log-probabilities of the generating policy
/// @param ref_logp  `[B x L]` log-probabilities of the reference model
/// @param scores    `[B]` reward-model scores
/// @param mask      `[B x L]` response mask, or empty (all ones)
/// @param length    L
/// @param o         kl_coef, reward_clip
/// @param out       `[B x L]` token rewards
/// @throws invalid_argument for a bad option, L of 0 or a row without an active token;
///         size_mismatch on sizes; nonfinite_error for a non-finite score or log-probability at an
///         active token. Nothing is written then.
template <real_scalar T, class M = T>
void ma_rlhf_token_rewards(std::span<const T> old_logp, std::span<const T> ref_logp, std::span<const T> scores,
                           std::span<const M> mask, std::size_t length, const ma_rlhf_reward_options& o,
                           std::span<T> out) {
  const char* what = "ma_rlhf_token_rewards";
  detail::require(o.kl_coef >= 0.0 && std::isfinite(o.kl_coef), what, "kl_coef", o.kl_coef, "finite and >= 0");
  detail::require(o.reward_clip > 0.0, what, "reward_clip", o.reward_clip, "> 0 (infinity = no clip)");
  detail::require(length >= 1, what, "length", static_cast<double>(length), ">= 1");
  const std::size_t B = scores.size();
  detail::require(B >= 1, what, "scores (empty batch)", 0.0, ">= 1 element");
  const std::size_t NL = detail::checked_product(what, "scores", B, "length", length);
  detail::require_same_size(what, "old_logp", old_logp.size(), "scores x length", NL);
  detail::require_same_size(what, "ref_logp", ref_logp.size(), "scores x length", NL);
  detail::require_same_size(what, "out", out.size(), "scores x length", NL);
  if (!mask.empty()) detail::require_same_size(what, "mask", mask.size(), "scores x length", NL);
  detail::check_mask_finite(what, mask, length);
  for (std::size_t n = 0; n < B; ++n) {
    const double s = static_cast<double>(scores[n]);
    if (!std::isfinite(s)) detail::throw_nonfinite(what, "scores", n, 0, s);
    bool any = false;
    for (std::size_t t = 0; t < length; ++t) {
      const std::size_t i = n * length + t;
      if (!mask.empty() && mask[i] == M(0)) continue;
      any = true;
      const double a = static_cast<double>(old_logp[i]), c = static_cast<double>(ref_logp[i]);
      if (!std::isfinite(a)) detail::throw_nonfinite(what, "old_logp", n, t, a);
      if (!std::isfinite(c)) detail::throw_nonfinite(what, "ref_logp", n, t, c);
    }
    if (!any) {
      throw invalid_argument(std::string(what) + ": row " + std::to_string(n) +
                             " has no active token (nowhere to put its score)");
    }
  }
  for (std::size_t n = 0; n < B; ++n) {
    std::size_t last = 0;
    for (std::size_t t = 0; t < length; ++t) {
      const std::size_t i = n * length + t;
      if (!mask.empty() && mask[i] == M(0)) {
        out[i] = T(0);
        continue;
      }
      last = t;
      out[i] = static_cast<T>(-o.kl_coef * (static_cast<double>(old_logp[i]) - static_cast<double>(ref_logp[i])));
    }
    const double s = std::clamp(static_cast<double>(scores[n]), -o.reward_clip, o.reward_clip);
    out[n * length + last] = static_cast<T>(static_cast<double>(out[n * length + last]) + s);
  }
}

// ---------------------------------------------------------------------------------------------
// Macro-level GAE
// ---------------------------------------------------------------------------------------------

/// How token values and rewards are aggregated into a macro action's (the reference's
/// `--value_function`).
enum class macro_aggregation {
  mean,      ///< "equal": mean over the active tokens (every script)
  position,  ///< "position": weights (1/(j+1)) / sum_i 1/(i+1), j the token's rank in the segment
  last,      ///< "unit" as intended: the last active token's value (the reference raises)
};

/// Options of `macro_gae` (main.py defaults).
struct macro_gae_options {
  double gamma = 1.0;                                       ///< discount in [0, 1]
  double lam = 0.95;                                        ///< GAE lambda in [0, 1]
  macro_aggregation aggregation = macro_aggregation::mean;  ///< token -> macro aggregation
};

/// Optional macro-level outputs of `macro_gae`, each empty or `seg.total()` long (numbered as
/// `macro_segmentation::offset`).
template <real_scalar T>
struct macro_gae_detail {
  std::span<T> values{};      ///< V_k
  std::span<T> rewards{};     ///< R_k
  std::span<T> advantages{};  ///< A_k
  std::span<T> returns{};     ///< G_k = A_k + V_k
};

namespace detail {

template <class T, class M>
double macro_aggregate(macro_aggregation a, const T* x, std::span<const M> mask_row, std::size_t first,
                       std::size_t end) {
  std::size_t cnt = 0;
  for (std::size_t t = first; t < end; ++t) cnt += macro_active_at(mask_row, t) ? 1 : 0;
  if (cnt == 0) return 0.0;
  switch (a) {
    case macro_aggregation::mean: {
      double s = 0.0;
      for (std::size_t t = first; t < end; ++t) {
        if (macro_active_at(mask_row, t)) s += static_cast<double>(x[t]);
      }
      return s / static_cast<double>(cnt);
    }
    case macro_aggregation::position: {
      double h = 0.0;
      for (std::size_t j = 0; j < cnt; ++j) h += 1.0 / static_cast<double>(j + 1);
      double s = 0.0;
      std::size_t j = 0;
      for (std::size_t t = first; t < end; ++t) {
        if (!macro_active_at(mask_row, t)) continue;
        s += (1.0 / static_cast<double>(j + 1)) / h * static_cast<double>(x[t]);
        ++j;
      }
      return s;
    }
    case macro_aggregation::last:
    default:
      for (std::size_t t = end; t-- > first;) {
        if (macro_active_at(mask_row, t)) return static_cast<double>(x[t]);
      }
      return 0.0;
  }
}

}  // namespace detail

/// MA-RLHF's GAE over macro actions (`get_advantages_and_returns` on the aggregated values and
/// rewards; see the file comment), mapped back to tokens: `advantages[t] = A_k` and
/// `returns[t] = G_k` for every token t of macro action k (positions after a row's valid length:
/// 0). With `fixed_ngram{1}` this is token-level GAE.
/// @param token_rewards  `[B x L]` token rewards (e.g. `ma_rlhf_token_rewards`); read at active tokens
/// @param values         `[B x L]` critic values at generation time; read at active tokens
/// @param mask           `[B x L]` response mask (the one the segmentation was built from), or empty
/// @param seg            the macro actions (`segment_macro_actions`)
/// @param o              gamma, lam, aggregation
/// @param advantages     `[B x L]` output A_t (may alias token_rewards)
/// @param returns        `[B x L]` output G_t, or empty (may alias values)
/// @param macro          optional macro-level outputs
/// @throws invalid_argument for gamma or lam outside [0, 1], or a segmentation built for another
///         batch or mask; size_mismatch on sizes; nonfinite_error for a non-finite reward or value
///         at an active token. Nothing is written then.
template <real_scalar T, class M = T>
void macro_gae(std::span<const T> token_rewards, std::span<const T> values, std::span<const M> mask,
               const macro_segmentation& seg, const macro_gae_options& o, std::span<T> advantages,
               std::span<T> returns = {}, macro_gae_detail<T> macro = {}) {
  static_assert(std::is_arithmetic_v<M>, "stochgrad::macro_gae: the mask type must be arithmetic");
  const char* what = "macro_gae";
  detail::require(o.gamma >= 0.0 && o.gamma <= 1.0, what, "gamma", o.gamma, "in [0, 1]");
  detail::require(o.lam >= 0.0 && o.lam <= 1.0, what, "lam", o.lam, "in [0, 1]");
  const std::size_t B = seg.sequences(), L = seg.length();
  if (B == 0) throw invalid_argument("macro_gae: the segmentation is empty (build it with segment_macro_actions)");
  const std::size_t NL = B * L;
  detail::require_same_size(what, "token_rewards", token_rewards.size(), "segmentation sequences x length", NL);
  detail::require_same_size(what, "values", values.size(), "segmentation sequences x length", NL);
  detail::require_same_size(what, "advantages", advantages.size(), "segmentation sequences x length", NL);
  if (!returns.empty())
    detail::require_same_size(what, "returns", returns.size(), "segmentation sequences x length", NL);
  if (!mask.empty()) detail::require_same_size(what, "mask", mask.size(), "segmentation sequences x length", NL);
  detail::check_mask_finite(what, mask, L);
  const std::size_t K = seg.total();
  const std::span<T> outs[4] = {macro.values, macro.rewards, macro.advantages, macro.returns};
  const char* names[4] = {"macro.values", "macro.rewards", "macro.advantages", "macro.returns"};
  for (int j = 0; j < 4; ++j) {
    if (!outs[j].empty()) detail::require_same_size(what, names[j], outs[j].size(), "segmentation total", K);
  }
  auto row_mask = [&](std::size_t n) { return mask.empty() ? std::span<const M>() : mask.subspan(n * L, L); };
  for (std::size_t n = 0; n < B; ++n) {
    const std::span<const M> m = row_mask(n);
    std::size_t v = m.empty() ? L : 0;
    for (std::size_t t = L; v == 0 && t-- > 0;) {
      if (m[t] != M(0)) v = t + 1;
    }
    if (v != seg.valid_length(n)) {
      throw invalid_argument(std::string(what) + ": row " + std::to_string(n) + " has valid length " +
                             std::to_string(v) + " under this mask but " + std::to_string(seg.valid_length(n)) +
                             " in the segmentation (built from another mask?)");
    }
    for (std::size_t t = 0; t < v; ++t) {
      if (!detail::macro_active_at(m, t)) continue;
      const double r = static_cast<double>(token_rewards[n * L + t]), x = static_cast<double>(values[n * L + t]);
      if (!std::isfinite(r)) detail::throw_nonfinite(what, "token_rewards", n, t, r);
      if (!std::isfinite(x)) detail::throw_nonfinite(what, "values", n, t, x);
    }
  }
  for (std::size_t n = 0; n < B; ++n) {
    const std::span<const M> m = row_mask(n);
    const std::size_t v = seg.valid_length(n), off = seg.offset(n);
    const T* r = token_rewards.data() + n * L;
    const T* x = values.data() + n * L;
    for (std::size_t t = v; t < L; ++t) {
      advantages[n * L + t] = T(0);
      if (!returns.empty()) returns[n * L + t] = T(0);
    }
    // Backwards over the macro actions; each one's tokens are read before they are written, and
    // macro actions are disjoint, so advantages may alias token_rewards and returns values.
    double next_v = 0.0, next_a = 0.0;
    for (std::size_t k = seg.macro_actions(n); k-- > 0;) {
      const auto [a, e] = seg.tokens(n, k);
      const double vk = detail::macro_aggregate(o.aggregation, x, m, a, e);
      const double rk = detail::macro_aggregate(o.aggregation, r, m, a, e);
      const double ak = rk + o.gamma * next_v - vk + o.gamma * o.lam * next_a;
      for (std::size_t t = a; t < e; ++t) {
        advantages[n * L + t] = static_cast<T>(ak);
        if (!returns.empty()) returns[n * L + t] = static_cast<T>(ak + vk);
      }
      if (!macro.values.empty()) macro.values[off + k] = static_cast<T>(vk);
      if (!macro.rewards.empty()) macro.rewards[off + k] = static_cast<T>(rk);
      if (!macro.advantages.empty()) macro.advantages[off + k] = static_cast<T>(ak);
      if (!macro.returns.empty()) macro.returns[off + k] = static_cast<T>(ak + vk);
      next_v = vk;
      next_a = ak;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------------------------

/// MA-RLHF's actor loss as `clipped_surrogate` options (`actor_loss_fn`): token ratio, clip 0.2 on
/// both sides, token mean `sum l m / max(sum m, 1)` (trl convention), no KL term. Pass the
/// per-token advantages of `macro_gae` as `token_batch::advantages` (`[B x L]`) and the
/// generation-time log-probabilities as `old_logp`.
inline surrogate_options macro_ppo_options(double cliprange = 0.2) {
  surrogate_options o;
  o.eps_low = cliprange;
  o.eps_high = cliprange;
  o.aggregation = loss_aggregation::token_mean;
  o.convention = loss_convention::trl;
  o.beta = 0.0;
  o.level = ratio_level::token;
  return o;
}

/// Value of the clipped value loss and its diagnostics.
struct value_loss_result {
  double loss = 0.0;           ///< L_V
  double clip_fraction = 0.0;  ///< fraction of active tokens where the clipped square is the larger
  double active_tokens = 0.0;  ///< M = sum of the mask
};

/// The PPO clipped value loss (`critic_loss_fn`): `vc = clip(Vnew, V - c, V + c)`,
/// `L_V = 0.5 sum_t max((Vnew - G)^2, (vc - G)^2) m / max(M, 1)`, and its gradient
/// `dL_V/dVnew_t = (Vnew - G) m / max(M, 1)` where the unclipped square is the larger,
/// `(vc - G) [V - c <= Vnew <= V + c] m / max(M, 1)` where the clipped one is, the mean of both
/// on a tie. The critic's backward pass is the caller's.
/// @param values      `[B x L]` current critic values Vnew
/// @param old_values  `[B x L]` critic values at generation time V
/// @param returns     `[B x L]` returns G (e.g. from `macro_gae`)
/// @param mask        `[B x L]` mask, or empty (all ones)
/// @param length      L
/// @param clip_range  c (cliprange_value, 0.2); > 0, infinity = unclipped
/// @param grad        `[B x L]` output dL_V/dVnew (0 at inactive tokens), or empty
/// @throws invalid_argument for L of 0 or clip_range <= 0 / NaN; size_mismatch on sizes;
///         nonfinite_error for a non-finite value or return at an active token (nothing written)
template <real_scalar T, class M = T>
value_loss_result clipped_value_loss(std::span<const T> values, std::span<const T> old_values,
                                     std::span<const T> returns, std::span<const M> mask, std::size_t length,
                                     double clip_range = 0.2, std::span<T> grad = {}) {
  const char* what = "clipped_value_loss";
  detail::require(clip_range > 0.0, what, "clip_range", clip_range, "> 0 (infinity = unclipped)");
  detail::require(length >= 1, what, "length", static_cast<double>(length), ">= 1");
  const std::size_t NL = values.size();
  detail::require(NL >= 1 && NL % length == 0, what, "values size", static_cast<double>(NL),
                  "a non-zero multiple of length");
  detail::require_same_size(what, "old_values", old_values.size(), "values", NL);
  detail::require_same_size(what, "returns", returns.size(), "values", NL);
  if (!mask.empty()) detail::require_same_size(what, "mask", mask.size(), "values", NL);
  if (!grad.empty()) detail::require_same_size(what, "grad", grad.size(), "values", NL);
  detail::check_mask_finite(what, mask, length);
  double msum = 0.0;
  for (std::size_t i = 0; i < NL; ++i) {
    const double m = detail::mask_at(mask, i);
    if (m == 0.0) continue;
    msum += m;
    const double a = static_cast<double>(values[i]), b = static_cast<double>(old_values[i]),
                 c = static_cast<double>(returns[i]);
    if (!std::isfinite(a)) detail::throw_nonfinite(what, "values", i / length, i % length, a);
    if (!std::isfinite(b)) detail::throw_nonfinite(what, "old_values", i / length, i % length, b);
    if (!std::isfinite(c)) detail::throw_nonfinite(what, "returns", i / length, i % length, c);
  }
  const double den = std::max(msum, 1.0);
  value_loss_result res;
  res.active_tokens = msum;
  double clipped = 0.0;
  for (std::size_t i = 0; i < NL; ++i) {
    const double m = detail::mask_at(mask, i);
    if (m == 0.0) {
      if (!grad.empty()) grad[i] = T(0);
      continue;
    }
    const double vn = static_cast<double>(values[i]), vo = static_cast<double>(old_values[i]),
                 g = static_cast<double>(returns[i]);
    const double lo = vo - clip_range, hi = vo + clip_range;
    const double vc = std::min(std::max(vn, lo), hi);
    const double inside = (vn >= lo && vn <= hi) ? 1.0 : 0.0;
    const double u = vn - g, w = vc - g;
    const double l1 = u * u, l2 = w * w;
    double d;
    if (l1 > l2) {
      d = u;
    } else if (l2 > l1) {
      d = w * inside;
      clipped += m;
    } else {
      d = 0.5 * (u + w * inside);
    }
    res.loss += 0.5 * std::max(l1, l2) * m / den;
    if (!grad.empty()) grad[i] = static_cast<T>(d * m / den);
  }
  res.clip_fraction = msum > 0.0 ? clipped / msum : 0.0;
  return res;
}

}  // namespace stochgrad
