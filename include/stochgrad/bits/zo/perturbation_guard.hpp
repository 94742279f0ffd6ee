// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `perturbation_guard`: the one owner of an in-place perturbation of the parameters, and
/// the two perturbers it drives (seeded directions for `two_point` / `one_sided`, single
/// coordinates for `coordinate_wise`).
///
/// Invariant: while the guard holds a perturbation, the parameters hold
/// ```
///   theta + d * v(seed, draw)          (direction perturber: one pass over every tensor)
///   theta + d * e_i                    (coordinate perturber, draw = coordinate i)
/// ```
/// where theta are the parameters the guard started from, and (seed, draw, d) are the guard's.
/// Moving to another draw or displacement goes through the guard; `restore()`, or the destructor
/// on unwind (an objective that throws), removes what is held. Code that perturbs in place does so
/// only through a guard.
///
/// Rounding: the coordinate perturber keeps the unperturbed value and writes it back, so its
/// restore is exact. The direction perturber adds and subtracts `d * v` in T (one fused
/// multiply-add per pass and element), so after m passes an element x comes back as x' with
///   |x' - x| <= u * (|y_1| + ... + |y_m|),   u = 2^-24 (float) or 2^-53 (double),
/// where y_1 .. y_m are the values the element held after each pass (the last one is x'): each
/// pass rounds once, and a round-to-nearest result is within u of its own magnitude. In particular
/// x' = x exactly whenever every pass is exact (e.g. d * v and x on one binary grid), and the
/// restore of a step is the same operation sequence whatever the fault, so it is reproducible.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../config.hpp"
#include "../optim/parameters.hpp"
#include "kernels.hpp"
#include "mask.hpp"

namespace stochgrad::zo::detail {

/// Perturbs every tensor along the seeded direction v(seed, stream = tensor, draw), optionally
/// masked. `separate` (pass_mode::reference) moves between draws in two passes instead of one.
template <bool Masked, real_scalar T, class Dir>
struct direction_perturber {
  using value_type = T;
  using draw_type = std::uint32_t;
  const parameters<T>* params;
  const Dir* dir;
  mask_view mask{};
  executor ex{};
  bool separate = false;

  /// theta -> theta + to * v(seed, draw).
  void displace(std::uint64_t seed, draw_type draw, T to) const { one(seed, draw, to); }
  /// theta + from * v(seed, draw) -> theta + to * v(seed, draw), in one pass adding (to - from).
  void redisplace(std::uint64_t seed, draw_type draw, T from, T to) const {
    one(seed, draw, static_cast<T>(to - from));
  }
  /// theta + from * v(seed, a) -> theta + to * v(seed, b): one pass of two terms (or two passes).
  void move(std::uint64_t seed, draw_type a, T from, draw_type b, T to) const {
    const pass_term<T> terms[2] = {{seed, a, static_cast<T>(-from)}, {seed, b, to}};
    if (separate) {
      perturb_pass<Masked>(*params, *dir, mask, terms, 1, ex);
      perturb_pass<Masked>(*params, *dir, mask, terms + 1, 1, ex);
    } else {
      perturb_pass<Masked>(*params, *dir, mask, terms, 2, ex);
    }
  }
  /// theta + from * v(seed, draw) -> theta (up to rounding; see the file comment). A pass throws
  /// only if the executor cannot run it; during a restore that ends the program (noexcept).
  void undo(std::uint64_t seed, draw_type draw, T from) const noexcept { one(seed, draw, static_cast<T>(-from)); }

 private:
  void one(std::uint64_t seed, draw_type draw, T scale) const {
    const pass_term<T> term{seed, draw, scale};
    perturb_pass<Masked>(*params, *dir, mask, &term, 1, ex);
  }
};

/// Where one coordinate lives: tensor t, element e.
struct coordinate {
  std::size_t tensor = 0;
  std::size_t element = 0;
  friend bool operator==(const coordinate&, const coordinate&) = default;
};

/// Perturbs one coordinate at a time from its saved value (x_i = saved + d), so that every move
/// and the restore write exact values.
template <real_scalar T>
struct coordinate_perturber {
  using value_type = T;
  using draw_type = coordinate;
  const parameters<T>* params;
  T saved = T(0);  ///< the unperturbed value of the coordinate currently held

  void displace(std::uint64_t, coordinate c, T to) noexcept {
    T& x = at(c);
    saved = x;
    x = saved + to;
  }
  void redisplace(std::uint64_t, coordinate c, T, T to) noexcept { at(c) = saved + to; }
  void move(std::uint64_t seed, coordinate a, T from, coordinate b, T to) noexcept {
    undo(seed, a, from);
    displace(seed, b, to);
  }
  void undo(std::uint64_t, coordinate c, T) noexcept { at(c) = saved; }

 private:
  T& at(coordinate c) const noexcept { return params->tensor(c.tensor).data()[c.element]; }
};

/// Owns the perturbation the parameters currently hold: (seed, draw, displacement d). See the
/// file comment for the invariant and the rounding of the restore.
/// @tparam Perturber direction_perturber or coordinate_perturber (anything with displace,
///                   redisplace, move and a non-throwing undo over its `draw_type`)
template <class Perturber>
class perturbation_guard {
 public:
  using value_type = typename Perturber::value_type;
  using draw_type = typename Perturber::draw_type;

  /// A guard over `pert` for perturbations of seed `seed`; holds nothing yet.
  perturbation_guard(Perturber& pert, std::uint64_t seed) noexcept : pert_(&pert), seed_(seed) {}
  perturbation_guard(const perturbation_guard&) = delete;
  perturbation_guard& operator=(const perturbation_guard&) = delete;
  /// Restores the parameters if a perturbation is still held (an exception is unwinding).
  ~perturbation_guard() { restore(); }

  /// Takes ownership of a perturbation the parameters already hold (theta + d v(seed, draw)),
  /// e.g. the one the previous step's fused update left for this step.
  void adopt(draw_type draw, value_type d) noexcept {
    draw_ = draw;
    disp_ = d;
    held_ = true;
  }
  /// Moves the parameters to theta + d * v(seed, draw) from whatever is held: one pass from the
  /// unperturbed parameters, one pass of (d - d_held) along the same draw, or one two-term pass
  /// between draws.
  void move_to(draw_type draw, value_type d) {
    if (!held_) {
      pert_->displace(seed_, draw, d);
    } else if (draw == draw_) {
      pert_->redisplace(seed_, draw, disp_, d);
    } else {
      pert_->move(seed_, draw_, disp_, draw, d);
    }
    draw_ = draw;
    disp_ = d;
    held_ = true;
  }
  /// Removes the held perturbation (no-op when none is held).
  void restore() noexcept {
    if (!held_) return;
    held_ = false;
    pert_->undo(seed_, draw_, disp_);
  }
  /// Forgets the held perturbation: the caller's own pass removed it (the optimizer's fused
  /// restore-and-update, see `restore_term`).
  void dismiss() noexcept { held_ = false; }
  /// The pass term that removes the held perturbation, for a pass that restores and updates at
  /// once; call `dismiss()` once that pass has run.
  pass_term<value_type> restore_term() const noexcept
    requires std::same_as<draw_type, std::uint32_t>
  {
    return {seed_, draw_, static_cast<value_type>(-disp_)};
  }

  bool held() const noexcept { return held_; }               ///< a perturbation is held
  std::uint64_t seed() const noexcept { return seed_; }      ///< the seed of every draw
  draw_type draw() const noexcept { return draw_; }          ///< the draw held (when held)
  value_type displacement() const noexcept { return disp_; } ///< d of the draw held (when held)

 private:
  Perturber* pert_;
  std::uint64_t seed_;
  draw_type draw_{};
  value_type disp_ = value_type(0);
  bool held_ = false;
};

}  // namespace stochgrad::zo::detail
