// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief libtorch adapter: the parameters of a `torch::nn::Module` (or a list of tensors) as a
/// stochgrad `parameters<T>` set viewed in place, their `.grad()` as a gradient source, and the
/// checks that keep the two in step (device, dtype, layout, gradient present, parameter set
/// unchanged). Part of the optional component `<stochgrad/torch.hpp>` (CMake target
/// `stochgrad::torch`); the core headers never include libtorch.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"

namespace stochgrad::libtorch {

/// The libtorch dtype of a stochgrad parameter type (float: kFloat, double: kDouble).
template <real_scalar T>
inline constexpr c10::ScalarType dtype_of = std::is_same_v<T, float> ? c10::ScalarType::Float : c10::ScalarType::Double;

/// Which parameters get weight decay: `rule(name, shape)` is true for a tensor that decays.
using decay_rule = std::function<bool(const std::string& name, c10::IntArrayRef shape)>;

/// stochgrad's default decay rule (the usual "no decay for biases and norms" convention of
/// BERT/GPT fine-tuning recipes): a tensor decays iff it has at least two dimensions and its name
/// does not end in "bias". So linear/conv weights and embeddings decay; biases and the 1-D
/// weights of LayerNorm/BatchNorm/GroupNorm go to the no-decay group.
inline bool default_decay_rule(const std::string& name, c10::IntArrayRef shape) {
  constexpr std::string_view bias = "bias";
  const bool is_bias = name.size() >= bias.size() && std::string_view(name).substr(name.size() - bias.size()) == bias;
  return shape.size() >= 2 && !is_bias;
}

/// Every tensor decays (torch.optim's behaviour: one group with one weight decay).
inline bool decay_all(const std::string&, c10::IntArrayRef) { return true; }

/// How a module's parameters are grouped: `decays(name, shape)` picks the group; the two groups'
/// options (group 0: decay, group 1: no decay) can carry their own learning rates.
struct module_options {
  decay_rule decays = default_decay_rule;                     ///< true: the tensor goes to group 0
  group_options decay_group{.name = "decay"};                 ///< options of group 0
  group_options no_decay_group{.name = "no_decay", .decay = false};  ///< options of group 1
};

/// A group of tensors with its own options (torch's param group).
struct tensor_group {
  std::vector<at::Tensor> tensors;  ///< the tensors (views of their storage are taken)
  group_options options{};          ///< the group's learning rate / weight decay overrides
  std::vector<std::string> names{};  ///< optional names (default "group<g>.<i>"), used in errors
};

namespace detail {

inline std::string describe(const at::Tensor& t) {
  std::string s = std::string(c10::toString(t.scalar_type())) + " tensor on " + t.device().str();
  if (t.layout() != c10::kStrided) s += " with a non-strided layout";
  return s;
}

/// Throws invalid_argument naming the tensor unless it is a defined, strided, contiguous CPU
/// tensor of dtype T. `role` is "parameter" or "gradient of parameter".
template <real_scalar T>
void check_tensor(const char* what, const char* role, const std::string& name, const at::Tensor& t) {
  const std::string who = std::string(what) + ": " + role + " '" + name + "'";
  if (!t.defined()) throw invalid_argument(who + " is undefined");
  if (!t.device().is_cpu()) {
    throw invalid_argument(who + " is a " + describe(t) + "; stochgrad steps CPU tensors only (move the module to CPU)");
  }
  if (t.layout() != c10::kStrided) throw invalid_argument(who + " is a " + describe(t) + "; only dense tensors are supported");
  if (t.scalar_type() != dtype_of<T>) {
    throw invalid_argument(who + " is a " + describe(t) + " but the parameter set is of " +
                           std::string(c10::toString(dtype_of<T>)));
  }
  if (!t.is_contiguous()) throw invalid_argument(who + " is not contiguous (call .contiguous() on it, or on the module's parameter)");
}

}  // namespace detail

/// Tensors owned by libtorch, viewed as a `parameters<T>` set (spans over `data_ptr<T>()`), and
/// their gradients as a `dense_gradient<T>`.
///
/// The tensors stay owned by libtorch (this object holds handles, as torch's optimizers do).
/// stochgrad writes their storage directly, outside autograd: the tensors' version counters are
/// not bumped, so step between backward passes as with any optimizer.
/// Every throwing member throws before anything is modified.
template <real_scalar T = float>
class tensor_parameters {
 public:
  /// The module's named parameters (recursively, in `named_parameters()` order), grouped by
  /// `o.decays`: group 0 decays, group 1 (`decay = false`) does not.
  /// @throws invalid_argument naming the parameter for a CUDA, non-contiguous, non-strided or
  /// wrongly typed tensor, or for a module without parameters.
  explicit tensor_parameters(const torch::nn::Module& m, module_options o = {}) : module_(&m) {
    params_.set_group(0, o.decay_group);
    params_.add_group(o.no_decay_group);
    std::vector<std::pair<std::string, at::Tensor>> items;
    for (const auto& item : m.named_parameters(/*recurse=*/true)) items.emplace_back(item.key(), item.value());
    for (const auto& [name, t] : items) detail::check_tensor<T>("tensor_parameters", "parameter", name, t);
    for (const auto& [name, t] : items) push(name, t, o.decays(name, t.sizes()) ? 0 : 1);
    finish();
  }

  /// Explicit groups (torch's param groups): group g of `groups` becomes stochgrad group g.
  /// @throws invalid_argument as above, or for an empty list.
  explicit tensor_parameters(const std::vector<tensor_group>& groups) {
    if (groups.empty()) throw invalid_argument("tensor_parameters: no parameter group");
    for (std::size_t g = 0; g < groups.size(); ++g) {
      for (std::size_t i = 0; i < groups[g].tensors.size(); ++i) {
        detail::check_tensor<T>("tensor_parameters", "parameter", name_in(groups[g], g, i), groups[g].tensors[i]);
      }
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
      if (g == 0) {
        params_.set_group(0, groups[0].options);
      } else {
        params_.add_group(groups[g].options);
      }
      for (std::size_t i = 0; i < groups[g].tensors.size(); ++i) push(name_in(groups[g], g, i), groups[g].tensors[i], g);
    }
    finish();
  }

  /// All tensors in one group with the given options (torch.optim's `Optimizer(model->parameters())`).
  explicit tensor_parameters(std::vector<at::Tensor> tensors, group_options opts = {})
      : tensor_parameters(std::vector<tensor_group>{tensor_group{std::move(tensors), std::move(opts), {}}}) {}

  /// The parameter set (spans over the tensors' storage) to build a stepper from.
  const parameters<T>& params() const noexcept { return params_; }
  /// Number of tensors.
  std::size_t size() const noexcept { return entries_.size(); }
  /// Name of tensor i (the module's parameter name).
  const std::string& name(std::size_t i) const noexcept { return entries_[i].name; }
  /// Tensor i.
  const at::Tensor& tensor(std::size_t i) const noexcept { return entries_[i].tensor; }
  /// The tensors of group g, in order (for torch's param groups).
  std::vector<at::Tensor> tensors_of_group(std::size_t g) const {
    std::vector<at::Tensor> out;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (params_.group_of(i) == g) out.push_back(entries_[i].tensor);
    }
    return out;
  }

  /// Checks that the tensors are still the ones the set was built over: same storage pointer,
  /// element count, dtype, device and contiguity, and, for a set built from a module, the
  /// module's named parameters are still the same tensors under the same names.
  /// @throws invalid_argument naming the first parameter that changed.
  void check_unchanged() const {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const auto& e = entries_[i];
      detail::check_tensor<T>("stochgrad::libtorch", "parameter", e.name, e.tensor);
      if (e.tensor.data_ptr() != static_cast<void*>(params_.tensor(i).data()) ||
          static_cast<std::size_t>(e.tensor.numel()) != params_.tensor(i).size()) {
        throw invalid_argument("stochgrad::libtorch: parameter '" + e.name +
                               "' changed its storage or size since the stepper was built (rebuild the optimizer)");
      }
    }
    if (module_ == nullptr) return;
    std::size_t i = 0;
    for (const auto& item : module_->named_parameters(true)) {
      if (i >= entries_.size()) {
        throw invalid_argument("stochgrad::libtorch: the module has a new parameter '" + item.key() +
                               "' since the stepper was built (rebuild the optimizer)");
      }
      if (item.key() != entries_[i].name || !item.value().is_same(entries_[i].tensor)) {
        throw invalid_argument("stochgrad::libtorch: the module's parameter '" + entries_[i].name +
                               "' was replaced or renamed since the stepper was built (now '" + item.key() +
                               "'; rebuild the optimizer)");
      }
      ++i;
    }
    if (i != entries_.size()) {
      throw invalid_argument("stochgrad::libtorch: the module's parameter '" + entries_[i].name +
                             "' was removed since the stepper was built (rebuild the optimizer)");
    }
  }

  /// The tensors' `.grad()` as a gradient source (valid until the next call or until a gradient
  /// tensor is replaced). Checks `check_unchanged()` first.
  /// @throws invalid_argument naming the parameter whose gradient is missing (no backward pass
  /// reached it), on another device, of another dtype, non-contiguous or of another size.
  dense_gradient<T> gradients() {
    check_unchanged();
    // Validate every gradient first (nothing held changes if one is refused), then take them:
    // no allocation per step (the handles and spans live in members sized at construction).
    for (const auto& e : entries_) {
      at::Tensor g = e.tensor.grad();
      if (!g.defined()) {
        throw invalid_argument("stochgrad::libtorch: parameter '" + e.name +
                               "' has no gradient (backward() did not reach it, or its requires_grad is false)");
      }
      detail::check_tensor<T>("stochgrad::libtorch", "gradient of parameter", e.name, g);
      if (g.numel() != e.tensor.numel()) {
        throw invalid_argument("stochgrad::libtorch: gradient of parameter '" + e.name + "' has " +
                               std::to_string(g.numel()) + " elements, the parameter " + std::to_string(e.tensor.numel()));
      }
    }
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      grads_[i] = entries_[i].tensor.grad();
      grad_spans_[i] = std::span<const T>(grads_[i].data_ptr<T>(), static_cast<std::size_t>(grads_[i].numel()));
    }
    return dense_gradient<T>(std::span<const std::span<const T>>(grad_spans_));
  }

  /// Sets every gradient to undefined (`set_to_none`) or to zero.
  void zero_grad(bool set_to_none = true) {
    for (auto& e : entries_) {
      if (!e.tensor.grad().defined()) continue;
      if (set_to_none) {
        e.tensor.mutable_grad().reset();
      } else {
        e.tensor.mutable_grad().detach_();
        e.tensor.mutable_grad().zero_();
      }
    }
  }

 private:
  struct entry {
    std::string name;
    at::Tensor tensor;
  };
  static std::string name_in(const tensor_group& g, std::size_t gi, std::size_t i) {
    return i < g.names.size() ? g.names[i] : "group" + std::to_string(gi) + "." + std::to_string(i);
  }
  void push(const std::string& name, const at::Tensor& t, std::size_t g) {
    entries_.push_back({name, t});
    params_.add(t.data_ptr<T>(), static_cast<std::size_t>(t.numel()), g);
  }
  void finish() {
    if (entries_.empty()) throw invalid_argument("tensor_parameters: the module has no parameters");
    grad_spans_.resize(entries_.size());
    grads_.resize(entries_.size());
  }

  const torch::nn::Module* module_ = nullptr;
  parameters<T> params_;
  std::vector<entry> entries_;
  std::vector<at::Tensor> grads_;
  std::vector<std::span<const T>> grad_spans_;
};

}  // namespace stochgrad::libtorch
