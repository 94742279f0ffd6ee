// SPDX-License-Identifier: Apache-2.0
// The objects the loader targets load into, shared by the harnesses and by make_corpus.cpp (which
// writes the seed corpus from real saved states of these same configurations).
#pragma once

#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

namespace sgfuzz {

namespace sg = stochgrad;

/// Zeroth order: MeZO with momentum SGD, q = 2.
inline auto make_zo(std::vector<float>& x) {
  return sg::mezo<float>(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<>({.lr = 1e-3, .momentum = 0.9}),
                         sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .q = 2, .seed = 42}));
}

/// First order: Adan over two tensors in two parameter groups.
inline auto make_first_order(std::vector<double>& x) {
  sg::parameters<double> ps;
  ps.add(std::span<double>(x).subspan(0, x.size() - 9));
  const std::size_t g = ps.add_group({.name = "bias", .lr_scale = 0.5, .decay = false});
  ps.add(std::span<double>(x).subspan(x.size() - 9), g);
  return sg::adan<double>(std::move(ps), sg::optim::adan<>({.lr = 0.02, .weight_decay = 0.02}));
}

/// Policy gradient: GRPO with two PPO iterations (the state can hold a batch in progress).
inline auto make_pg(std::vector<float>& x) {
  return sg::grpo<float>(sg::parameters<float>(std::span<float>(x)), sg::optim::adam<>({.lr = 1e-3}),
                         sg::score_function<>(sg::score_function_options{.iterations = 2}));
}

/// The Beta-Thompson sampler over six samples.
inline sg::beta_thompson make_sampler() {
  sg::beta_thompson_options o;
  o.seed = 7;
  return sg::beta_thompson(6, o);
}

}  // namespace sgfuzz
