// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `stochgrad::libtorch::optimizer<O>`: a `torch::optim::Optimizer` whose step is
/// stochgrad's fused first-order update with optimizer policy O (Adam, AdamW, Adan, SGD), so a
/// libtorch training loop swaps `torch::optim::AdamW` for it by changing one line.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../optim/adam.hpp"
#include "../optim/adan.hpp"
#include "../optim/sgd.hpp"
#include "../outcome/outcome.hpp"
#include "../stepper/first_order.hpp"
#include "../stepper/stepper.hpp"
#include "adapter.hpp"

namespace stochgrad::libtorch {

/// torch's view of a stochgrad param group: its learning rate and weight decay. Setting them
/// through `param_groups()[g].options()` (e.g. a learning-rate scheduler calling `set_lr`) takes
/// effect at the next step.
struct group_settings : torch::optim::OptimizerCloneableOptions<group_settings> {
  double lr = 0.0;            ///< the group's learning rate
  double weight_decay = 0.0;  ///< the group's weight decay (0 for a `decay = false` group)
  /// Settings with learning rate `lr_` and weight decay `wd_`.
  group_settings(double lr_, double wd_) : lr(lr_), weight_decay(wd_) {}
  /// The group's learning rate (torch's OptimizerOptions interface, read by LR schedulers).
  double get_lr() const override { return lr; }
  /// Sets the group's learning rate to `v`; applied at the next step.
  void set_lr(const double v) override { lr = v; }
};

/// A `torch::optim::Optimizer` stepping libtorch tensors with stochgrad's optimizer policy
/// `Policy` (e.g. `optim::adamw<>`): `step()` reads every parameter's `.grad()` and runs one
/// fused update (the formulas are the policy's, e.g. torch.optim.AdamW's for optim::adamw);
/// `zero_grad()`, `param_groups()` and `size()` are torch's.
///
/// Groups: built from `model->parameters()` there is one group (every tensor decays, as in
/// torch.optim); built from a module, biases and norm weights go to a no-decay group 1 by
/// `module_options::decays` (default_decay_rule); built from `tensor_group`s, each is a group with
/// its own lr / weight decay. Changing a group's lr or weight decay through torch's options
/// rebuilds the stepper at the next step (one copy of the optimizer state).
///
/// Save/load: through torch's archives (`torch::save(opt, path)` / `torch::load(opt, path)`):
/// the key `stochgrad.state` holds stochgrad's own state format (stepper::save, a byte tensor),
/// `stochgrad.group_lr` / `stochgrad.group_weight_decay` the groups' current settings. Loading
/// refuses state of another composition or other tensor sizes (state_error) and leaves the
/// optimizer untouched.
///
/// Errors (invalid_argument naming the parameter, thrown before anything is modified): a CUDA,
/// non-contiguous or non-float tensor, a missing gradient, a parameter set that changed since
/// construction.
template <class Policy, real_scalar T = float>
class optimizer : public torch::optim::Optimizer {
 public:
  /// The stochgrad optimizer policy (e.g. `optim::adamw<>`).
  using policy_type = Policy;
  /// The policy's hyper-parameters (e.g. `optim::adamw_options`).
  using options_type = typename Policy::options_type;
  /// The first-order stepper that runs the updates.
  using stepper_type = stochgrad::stepper<first_order, no_baseline, no_normalizer, Policy, T>;

  /// One group over `params`, every tensor decaying (torch.optim's constructor).
  explicit optimizer(std::vector<at::Tensor> params, options_type o = {})
      : optimizer(tensor_parameters<T>(std::move(params)), o) {}
  /// A module's named parameters, split into decay / no-decay groups by `mo.decays`.
  explicit optimizer(const torch::nn::Module& m, options_type o = {}, module_options mo = {})
      : optimizer(tensor_parameters<T>(m, std::move(mo)), o) {}
  /// Explicit groups with their own options.
  explicit optimizer(const std::vector<tensor_group>& groups, options_type o = {})
      : optimizer(tensor_parameters<T>(groups), o) {}
  /// From an adapter built by the caller.
  optimizer(tensor_parameters<T> tp, options_type o)
      : torch::optim::Optimizer(std::vector<torch::optim::OptimizerParamGroup>{},
                                std::make_unique<group_settings>(o.lr, o.weight_decay)),
        tp_(std::move(tp)),
        opts_(o),
        stepper_(tp_.params(), Policy(o)) {
    for (std::size_t g = 0; g < tp_.params().groups(); ++g) {
      const auto s = resolved(tp_.params().group(g));
      param_groups_.emplace_back(tp_.tensors_of_group(g), std::make_unique<group_settings>(s.lr, s.weight_decay));
    }
  }

  /// One update from the parameters' gradients. With a closure, evaluates it first (with
  /// gradients enabled) and returns its loss.
  /// @throws invalid_argument (see the class comment); nothing is modified then.
  at::Tensor step(LossClosure closure = nullptr) override {
    at::Tensor loss;
    if (closure) {
      torch::AutoGradMode enable(true);
      loss = closure();
    }
    const dense_gradient<T> g = tp_.gradients();  // all checks happen here, before any change
    sync_groups();
    last_ = stepper_.step(g);
    return loss;
  }

  /// Runs the fused kernels on `ex` (e.g. a stochgrad::thread_pool; results do not depend on the
  /// thread count). The executor must outlive the optimizer's steps.
  void set_executor(executor ex) noexcept {
    ex_ = ex;
    stepper_.set_executor(ex);
  }

  /// The stochgrad stepper (its optimizer state, step count, kind()).
  const stepper_type& stochgrad_stepper() const noexcept { return stepper_; }
  /// The adapter (names, tensors, groups).
  const tensor_parameters<T>& adapter() const noexcept { return tp_; }
  /// The last step's report.
  const update_report& last_report() const noexcept { return last_; }

  /// Writes stochgrad's state into torch's archive (see the class comment).
  void save(torch::serialize::OutputArchive& ar) const override {
    std::ostringstream os;
    stepper_.save(os);
    const std::string bytes = os.str();
    at::Tensor blob = torch::empty({static_cast<std::int64_t>(bytes.size())}, torch::kUInt8);
    std::memcpy(blob.data_ptr<std::uint8_t>(), bytes.data(), bytes.size());
    ar.write("stochgrad.state", blob);
    at::Tensor lr = torch::empty({static_cast<std::int64_t>(param_groups_.size())}, torch::kDouble);
    at::Tensor wd = torch::empty_like(lr);
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const auto& s = settings(g);
      lr.data_ptr<double>()[g] = s.lr;
      wd.data_ptr<double>()[g] = s.weight_decay;
    }
    ar.write("stochgrad.group_lr", lr);
    ar.write("stochgrad.group_weight_decay", wd);
  }

  /// Restores what save wrote. @throws state_error (or torch's c10::Error for a missing key) and
  /// leaves the optimizer untouched.
  void load(torch::serialize::InputArchive& ar) override {
    at::Tensor blob, lr, wd;
    ar.read("stochgrad.state", blob);
    ar.read("stochgrad.group_lr", lr);
    ar.read("stochgrad.group_weight_decay", wd);
    const auto ng = static_cast<std::int64_t>(param_groups_.size());
    if (blob.scalar_type() != torch::kUInt8 || lr.scalar_type() != torch::kDouble || wd.scalar_type() != torch::kDouble ||
        lr.numel() != ng || wd.numel() != ng) {
      throw state_error("stochgrad::libtorch::optimizer::load: the archive's group settings are for " +
                        std::to_string(lr.numel()) + " groups, this optimizer has " + std::to_string(ng));
    }
    blob = blob.contiguous();
    const std::string bytes(reinterpret_cast<const char*>(blob.data_ptr<std::uint8_t>()),
                            static_cast<std::size_t>(blob.numel()));
    std::istringstream is(bytes);
    stepper_type fresh(stepper_);  // load into a copy: the live stepper stays untouched on error
    fresh.load(is);
    stepper_ = std::move(fresh);
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      settings(g).lr = lr.data_ptr<double>()[g];
      settings(g).weight_decay = wd.data_ptr<double>()[g];
    }
  }

 private:
  struct lr_wd {
    double lr, weight_decay;
  };
  lr_wd resolved(const group_options& go) const {
    const double lr = (go.lr ? *go.lr : opts_.lr) * go.lr_scale;
    const double wd = go.decay ? (go.weight_decay ? *go.weight_decay : opts_.weight_decay) : 0.0;
    return {lr, wd};
  }
  group_settings& settings(std::size_t g) { return static_cast<group_settings&>(param_groups_[g].options()); }
  const group_settings& settings(std::size_t g) const {
    return static_cast<const group_settings&>(param_groups_[g].options());
  }
  // torch's options changed (a scheduler, a user): rebuild the stepper's parameter set with the new
  // per-group lr / weight decay and move the optimizer state across.
  void sync_groups() {
    bool changed = false;
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const auto want = settings(g);
      const auto have = resolved(stepper_.params().group(g));
      changed = changed || want.lr != have.lr || want.weight_decay != have.weight_decay;
    }
    if (!changed) return;
    stochgrad::parameters<T> p = stepper_.params();
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      group_options go = p.group(g);
      go.lr = settings(g).lr;
      go.lr_scale = 1.0;
      go.weight_decay = settings(g).weight_decay;
      go.decay = settings(g).weight_decay != 0.0;
      p.set_group(g, go);
    }
    std::stringstream ss;
    stepper_.save(ss);
    stepper_type fresh(std::move(p), stepper_.optimizer());
    fresh.load(ss);
    fresh.set_executor(ex_);
    stepper_ = std::move(fresh);
  }

  tensor_parameters<T> tp_;
  options_type opts_;
  stepper_type stepper_;
  executor ex_{};
  update_report last_{};
};

/// stochgrad's Adam (torch.optim.Adam semantics) as a torch optimizer.
using Adam = optimizer<optim::adam<>>;
/// stochgrad's AdamW (torch.optim.AdamW semantics) as a torch optimizer.
using AdamW = optimizer<optim::adamw<>>;
/// stochgrad's Adan (sail-sg reference semantics) as a torch optimizer.
using Adan = optimizer<optim::adan<>>;
/// stochgrad's SGD (torch.optim.SGD semantics: momentum, dampening, Nesterov, L2 decay).
using SGD = optimizer<optim::sgd<>>;

}  // namespace stochgrad::libtorch
