// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The replay log of a zeroth-order run: per step, the seed and the scalars the update
/// used. Together with the initial parameters and the stepper's configuration it reconstructs
/// the run exactly (`zo::replay`), without calling the objective: the MeZO observation that a
/// fine-tuned model is its seeds plus one scalar per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../stepper/serialize.hpp"
#include "objective.hpp"

namespace stochgrad::zo {

/// One step of a replay log.
struct replay_entry {
  std::uint64_t call = 0;            ///< step call number (derives the seed)
  std::uint64_t step = 0;            ///< optimizer step number k at that call
  std::uint64_t seed = 0;            ///< noise seed of the step
  double eps = 0.0;                  ///< perturbation size used
  std::uint64_t queries = 0;         ///< directions evaluated (CGE: coordinates)
  bool skipped = false;              ///< the step was skipped (non-finite or invalid evaluation)
  std::vector<double> coefficients;  ///< the scalar of each direction (empty when skipped)
  /// Memberwise equality (coefficients compared exactly, element by element).
  friend bool operator==(const replay_entry&, const replay_entry&) = default;
};

/// A sequence of replay entries. `record` allocates (it is the caller's log, outside the step).
class replay_log {
 public:
  /// Appends the step described by `r`.
  void record(const step_report& r) {
    replay_entry e;
    e.call = r.call;
    e.step = r.step;
    e.seed = r.seed;
    e.eps = r.eps;
    e.queries = r.queries;
    e.skipped = r.nonfinite;
    if (!r.nonfinite) e.coefficients.assign(r.coefficients.begin(), r.coefficients.end());
    entries_.push_back(std::move(e));
  }
  /// Number of entries.
  std::size_t size() const noexcept { return entries_.size(); }
  /// True when empty.
  bool empty() const noexcept { return entries_.empty(); }
  /// Entry i.
  const replay_entry& operator[](std::size_t i) const noexcept { return entries_[i]; }
  /// All entries.
  std::span<const replay_entry> entries() const noexcept { return entries_; }
  /// Removes every entry.
  void clear() noexcept { entries_.clear(); }

  /// Writes the log in the state format of serialize.hpp (checksummed).
  void save(std::ostream& os) const {
    state_writer w;
    auto self = const_cast<replay_log*>(this);  // serialize() is shared with loading; nothing is modified
    self->archive(w);
    w.finish(os);
  }
  /// Reads what `save` wrote. @throws state_error for a truncated, corrupt or foreign input
  /// (the log is left untouched).
  void load(std::istream& is) {
    state_reader r(is);
    replay_log tmp;
    tmp.archive(r);
    r.finish();
    entries_ = std::move(tmp.entries_);
  }

  /// Equal when both logs hold equal entries in the same order.
  friend bool operator==(const replay_log&, const replay_log&) = default;

 private:
  template <class Ar>
  void archive(Ar& ar) {
    std::string magic = "zo_replay_log";
    ar.field("kind", magic);
    if (magic != "zo_replay_log") throw state_error("load: not a zeroth-order replay log");
    std::uint64_t n = entries_.size();
    ar.field("entries", n);
    if constexpr (Ar::loading) {
      // Each entry takes at least its seven record headers and values (checked before allocating:
      // a crafted count must be a state_error, not a multi-terabyte allocation).
      constexpr std::size_t min_entry = (3 + 4 + 8) + (3 + 4 + 8) + (3 + 4 + 8) + (3 + 3 + 8) + (3 + 7 + 8) +
                                        (3 + 7 + 8) + (3 + 12 + 8);
      ar.require_count("entries", n, min_entry);
      entries_.assign(static_cast<std::size_t>(n), replay_entry{});
    }
    for (auto& e : entries_) {
      ar.field("call", e.call);
      ar.field("step", e.step);
      ar.field("seed", e.seed);
      ar.field("eps", e.eps);
      ar.field("queries", e.queries);
      ar.field("skipped", e.skipped);
      ar.field("coefficients", e.coefficients);
    }
  }
  std::vector<replay_entry> entries_;
};

}  // namespace stochgrad::zo
