// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Optional libtorch component (CMake target `stochgrad::torch`): the adapter from
/// `torch::nn::Module` parameters and `.grad()` to stochgrad (bits/torch/adapter.hpp) and a
/// `torch::optim::Optimizer` running stochgrad's optimizers (bits/torch/optimizer.hpp).
/// Not included by `<stochgrad/stochgrad.hpp>`.
///
/// @code
/// // torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
/// stochgrad::libtorch::AdamW opt(model->parameters(), {.lr = 1e-3});
/// @endcode
#pragma once

#include "stochgrad.hpp"
#include "bits/torch/adapter.hpp"
#include "bits/torch/optimizer.hpp"

/// @namespace stochgrad::libtorch
/// The optional libtorch component: the parameter/gradient adapter for `torch::nn::Module` and
/// `torch::optim::Optimizer` wrappers running stochgrad's optimizers.
