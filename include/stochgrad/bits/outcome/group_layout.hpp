// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `group_layout`: which samples belong to which group (prompt, population, antithetic pair).
///
/// Every estimator draws samples with a scalar outcome, grouped: the G
/// completions of one prompt, the q perturbations of one step. Two layouts:
/// - contiguous `[P x G]`: sample `n` belongs to group `n / G` (TRL's layout; the fast path);
/// - explicit ids in any order (verl / BNPO `uid`), with variable group sizes. Groups are numbered
///   densely in order of first appearance of their id, and the members of a group are listed in
///   increasing sample order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../base/scratch.hpp"
#include "../error.hpp"

namespace stochgrad {

/// How samples are grouped. Cheap to copy for the contiguous layout; the id layout owns three
/// index arrays that are reused (grown only, never shrunk) when the layout is reassigned.
class group_layout {
 public:
  /// An empty layout (no samples). Assign one with `assign_contiguous` or `assign_ids`.
  group_layout() = default;

  /// `groups` groups of `group_size` consecutive samples each: sample n is in group n / group_size.
  /// @throws invalid_argument if `group_size < 1` or `groups < 1` (an empty batch), or if
  ///         `groups * group_size` overflows std::size_t.
  static group_layout contiguous(std::size_t groups, std::size_t group_size) {
    group_layout g;
    g.assign_contiguous(groups, group_size);
    return g;
  }

  /// Groups given by one id per sample, in any order; group sizes may differ (1 is allowed).
  /// @throws invalid_argument if `ids` is empty.
  static group_layout by_id(std::span<const std::int64_t> ids) {
    group_layout g;
    g.assign_ids(ids);
    return g;
  }

  /// Makes this a contiguous layout (see `contiguous`). Does not allocate.
  void assign_contiguous(std::size_t groups, std::size_t group_size) {
    detail::require(group_size >= 1, "group_layout::contiguous", "group_size", static_cast<double>(group_size),
                    ">= 1");
    detail::require(groups >= 1, "group_layout::contiguous", "groups (empty batch)", static_cast<double>(groups),
                    ">= 1");
    const std::size_t samples = detail::checked_product("group_layout::contiguous", "groups", groups, "group_size",
                                                        group_size);
    contiguous_ = true;
    groups_ = groups;
    group_size_ = group_size;
    samples_ = samples;
  }

  /// Makes this an id layout (see `by_id`). Allocates only when the sample count grows beyond
  /// every earlier assignment. O(n log n).
  void assign_ids(std::span<const std::int64_t> ids) {
    const std::size_t n = ids.size();
    detail::require(n >= 1, "group_layout::by_id", "ids.size() (empty batch)", 0.0, ">= 1");
    detail::require_data("group_layout::by_id", "ids", ids.data(), n);
    stochgrad::detail::grow(members_, n);
    stochgrad::detail::grow(group_of_, n);
    stochgrad::detail::grow(offsets_, n + 1);
    stochgrad::detail::grow(scratch_, n);
    // Cluster equal ids; ties by position so that each cluster starts at its first appearance.
    std::size_t* perm = members_.data();
    for (std::size_t i = 0; i < n; ++i) perm[i] = i;
    const std::int64_t* id = ids.data();
    std::sort(perm, perm + n, [id](std::size_t a, std::size_t b) { return id[a] < id[b] || (id[a] == id[b] && a < b); });
    // scratch_[k] = start (in perm) of cluster k; clusters ordered by first appearance below.
    std::size_t clusters = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 0 || id[perm[i]] != id[perm[i - 1]]) scratch_[clusters++] = i;
    }
    std::sort(scratch_.data(), scratch_.data() + clusters,
              [perm](std::size_t a, std::size_t b) { return perm[a] < perm[b]; });
    // Sizes per group, then group index per sample, then members in sample order.
    for (std::size_t k = 0; k < clusters; ++k) {
      const std::size_t s = scratch_[k];
      std::size_t e = s + 1;
      while (e < n && id[perm[e]] == id[perm[s]]) ++e;
      for (std::size_t i = s; i < e; ++i) group_of_[perm[i]] = k;
      offsets_[k + 1] = e - s;
    }
    offsets_[0] = 0;
    for (std::size_t k = 0; k < clusters; ++k) offsets_[k + 1] += offsets_[k];
    // Counting placement: walking samples in order keeps members sorted within a group.
    for (std::size_t k = 0; k < clusters; ++k) scratch_[k] = offsets_[k];
    for (std::size_t i = 0; i < n; ++i) members_[scratch_[group_of_[i]]++] = i;
    contiguous_ = false;
    groups_ = clusters;
    group_size_ = 0;
    samples_ = n;
  }

  /// Number of samples.
  std::size_t samples() const noexcept { return samples_; }
  /// Number of groups.
  std::size_t groups() const noexcept { return groups_; }
  /// True for the contiguous `[P x G]` layout.
  bool is_contiguous() const noexcept { return contiguous_; }
  /// Common group size G of a contiguous layout (0 for an id layout).
  std::size_t group_size() const noexcept { return group_size_; }

  /// Number of samples in group `g` (`g < groups()`).
  std::size_t size_of(std::size_t g) const noexcept {
    return contiguous_ ? group_size_ : offsets_[g + 1] - offsets_[g];
  }
  /// Sample index of member `k` of group `g` (`k < size_of(g)`), members in increasing order.
  std::size_t member(std::size_t g, std::size_t k) const noexcept {
    return contiguous_ ? g * group_size_ + k : members_[offsets_[g] + k];
  }
  /// Group of sample `n` (`n < samples()`).
  std::size_t group_of(std::size_t n) const noexcept { return contiguous_ ? n / group_size_ : group_of_[n]; }

  /// Calls `f(n)` for every sample `n` of group `g`, in increasing order.
  template <class F>
  void for_each_member(std::size_t g, F&& f) const {
    if (contiguous_) {
      const std::size_t b = g * group_size_, e = b + group_size_;
      for (std::size_t n = b; n < e; ++n) f(n);
    } else {
      const std::size_t* m = members_.data();
      for (std::size_t k = offsets_[g], e = offsets_[g + 1]; k < e; ++k) f(m[k]);
    }
  }

 private:

  bool contiguous_ = true;
  std::size_t samples_ = 0;
  std::size_t groups_ = 0;
  std::size_t group_size_ = 0;
  std::vector<std::size_t> offsets_;   // id layout: group g = members_[offsets_[g] .. offsets_[g+1])
  std::vector<std::size_t> members_;   // id layout: sample indices grouped, increasing within a group
  std::vector<std::size_t> group_of_;  // id layout: dense group index of each sample
  std::vector<std::size_t> scratch_;   // id layout: cluster starts / placement cursors
};

}  // namespace stochgrad
