// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Parameter sets: contiguous float/double tensors owned by someone else, in groups with
/// their own hyper-parameters (torch's param groups).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"

namespace stochgrad {

/// Per-group overrides of an optimizer's hyper-parameters (layer-wise learning rates, weight
/// decay exclusion for biases and norms).
struct group_options {
  std::string name{};                  ///< label for diagnostics and saved state
  double lr_scale = 1.0;               ///< multiplies the learning rate of this group (>= 0)
  std::optional<double> lr{};          ///< replaces the optimizer's base learning rate
  std::optional<double> weight_decay{};  ///< replaces the optimizer's weight decay
  bool decay = true;                   ///< false: no weight decay at all in this group
};

/// Detects Eigen-like dense objects: `.data()`, `.size()`, `.innerStride()`.
template <class V>
concept eigen_like_contiguous = requires(V& v) {
  { v.data() };
  { v.size() } -> std::convertible_to<std::ptrdiff_t>;
  { v.innerStride() } -> std::convertible_to<std::ptrdiff_t>;
};

/// A view of a tensor as a span. Works for std::vector, std::span, std::array, Eigen vectors,
/// matrices, Map and Ref (contiguous storage only).
/// @throws invalid_argument for a non-contiguous Eigen expression.
template <class V>
auto as_span(V& v) {
  if constexpr (eigen_like_contiguous<V>) {
    using T = std::remove_pointer_t<decltype(v.data())>;
    if (v.size() > 1 && v.innerStride() != 1) {
      throw invalid_argument("as_span: the Eigen object is not contiguous (inner stride != 1)");
    }
    if constexpr (requires { v.outerStride(); v.innerSize(); v.outerSize(); }) {
      if (v.outerSize() > 1 && v.outerStride() != v.innerSize()) {
        throw invalid_argument("as_span: the Eigen object is not contiguous (outer stride != inner size)");
      }
    }
    return std::span<T>(v.data(), static_cast<std::size_t>(v.size()));
  } else {
    return std::span(v);
  }
}

/// The parameters a stepper updates: tensors (contiguous ranges of `T` owned by the caller, e.g.
/// `std::vector`, `Eigen::Map`, or a raw pointer from libtorch's `data_ptr()`), each in a group.
/// Tensor `i` gets noise stream `i` (so its random directions do not depend on other tensors).
/// The caller keeps the memory alive and does not resize it while a stepper uses it.
template <real_scalar T>
class parameters {
 public:
  /// The element type of the tensors (float or double).
  using value_type = T;

  /// An empty set with one default group.
  parameters() { groups_.emplace_back(); }

  /// A set holding one tensor in the default group. Implicit: a span is a view of memory the
  /// caller owns, so `mezo<float> m(std::span<float>(w), ...)` needs no `parameters<float>(...)`.
  parameters(std::span<T> tensor) : parameters() { add(tensor); }  // NOLINT(google-explicit-constructor)

  /// A set holding one contiguous range (`std::vector<T>&`, `std::array<T, N>&`, ...) in the default
  /// group, viewed in place: `stochgrad::mezo<float> m(w, {.lr = 1e-3}, {.eps = 1e-3});`.
  /// Implicit, but for lvalues only: a temporary range would be destroyed before the first step
  /// (the trap an implicit conversion from an rvalue would set), so `parameters<T>(std::vector<T>(n))`
  /// does not compile.
  template <class R>
    requires(!std::is_same_v<std::remove_cvref_t<R>, parameters> && !std::is_same_v<std::remove_cvref_t<R>, std::span<T>> &&
             std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
             std::is_same_v<std::ranges::range_value_t<R>, T> &&
             std::is_convertible_v<decltype(std::ranges::data(std::declval<R&>())), T*>)
  parameters(R& range)  // NOLINT(google-explicit-constructor)
      : parameters(std::span<T>(std::ranges::data(range), std::ranges::size(range))) {}

  /// Adds a group with its own options; returns its index.
  /// @throws invalid_argument for an lr_scale outside [0, inf), an lr outside (0, inf) or a weight
  ///         decay outside [0, inf) (infinity and NaN included).
  std::size_t add_group(group_options opts) {
    check_group_options(opts);
    groups_.push_back(std::move(opts));
    return groups_.size() - 1;
  }

  /// Replaces the options of an existing group (group 0 is the default group).
  void set_group(std::size_t g, group_options opts) {
    check_group(g);
    const std::size_t keep = groups_.size();
    add_group(std::move(opts));
    groups_[g] = std::move(groups_.back());
    groups_.resize(keep);
  }

  /// Adds a tensor to group `g`.
  /// @throws invalid_argument for null data with non-zero length or an unknown group.
  parameters& add(std::span<T> tensor, std::size_t g = 0) {
    detail::require_data("parameters::add", "tensor", tensor.data(), tensor.size());
    check_group(g);
    tensors_.push_back({tensor, g});
    total_ += tensor.size();
    return *this;
  }
  /// Adds `n` elements at `data` (memory owned by another framework) to group `g`. Any integer
  /// type is accepted for `n` (e.g. libtorch's int64_t `numel()` or a plain `int`).
  /// @throws invalid_argument for a negative `n`, null data with non-zero length or an unknown group.
  template <std::integral N>
    requires(!std::same_as<N, bool>)
  parameters& add(T* data, N n, std::size_t g = 0) {
    if constexpr (std::is_signed_v<N>) {
      detail::require(n >= 0, "parameters::add", "n", static_cast<double>(n), ">= 0");
    }
    return add(std::span<T>(data, static_cast<std::size_t>(n)), g);
  }
  /// Adds a std::vector, std::array, Eigen vector/matrix/Map/Ref (contiguous) to group `g`.
  template <class V>
    requires(!std::is_convertible_v<V&, std::span<T>> && !std::is_pointer_v<V> && requires(V& v) { as_span(v); })
  parameters& add(V& v, std::size_t g = 0) {
    return add(std::span<T>(as_span(v)), g);
  }

  /// Number of tensors.
  std::size_t tensors() const noexcept { return tensors_.size(); }
  /// Tensor `i`.
  std::span<T> tensor(std::size_t i) const noexcept { return tensors_[i].data; }
  /// Group of tensor `i`.
  std::size_t group_of(std::size_t i) const noexcept { return tensors_[i].group; }
  /// Noise stream of tensor `i`.
  std::uint32_t stream(std::size_t i) const noexcept { return static_cast<std::uint32_t>(i); }
  /// Number of groups (at least one).
  std::size_t groups() const noexcept { return groups_.size(); }
  /// Options of group `g`.
  const group_options& group(std::size_t g) const noexcept { return groups_[g]; }
  /// Total number of elements.
  std::size_t size() const noexcept { return total_; }
  /// True when there is no element at all.
  bool empty() const noexcept { return total_ == 0; }

 private:
  static void check_group_options(const group_options& o) {
    const char* w = "parameters::add_group";
    detail::require(o.lr_scale >= 0.0 && std::isfinite(o.lr_scale), w, "lr_scale", o.lr_scale, "finite and >= 0");
    if (o.lr) detail::require(*o.lr > 0.0 && std::isfinite(*o.lr), w, "lr", *o.lr, "finite and > 0");
    if (o.weight_decay) {
      detail::require(*o.weight_decay >= 0.0 && std::isfinite(*o.weight_decay), w, "weight_decay", *o.weight_decay,
                      "finite and >= 0");
    }
  }
  struct entry {
    std::span<T> data;
    std::size_t group;
  };
  void check_group(std::size_t g) const {
    if (g >= groups_.size()) {
      throw invalid_argument("parameters: group " + std::to_string(g) + " does not exist (there are " +
                             std::to_string(groups_.size()) + "; call add_group first)");
    }
  }
  std::vector<entry> tensors_;
  std::vector<group_options> groups_;
  std::size_t total_ = 0;
};

}  // namespace stochgrad
