// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Module header for bits/problems/ (includes every header of that folder): the built-in
/// test problems of `stochgrad::problems`, shipped in the library (as ensmallen ships its test
/// functions) so tests, benchmarks, the shoot-out harness and users share them.
///
/// | problem | dimension | gradient | extra |
/// |---|---|---|---|
/// | `quadratic<T>` | any (diagonal), <= 4096 rotated | exact | condition number, solution x* |
/// | `rosenbrock<T>` | >= 2 (chained form) | exact | minimum 0 at (1, ..., 1) |
/// | `logistic_regression<T>` | features + 1 | exact | test loss, accuracy |
/// | `softmax_regression<T>` | classes (features + 1) | exact | test loss, accuracy |
/// | `mlp_classifier<T>` | hidden (in + 1) + classes (hidden + 1) | exact (backprop) | test loss, accuracy |
///
/// Datasets: `load_breast_cancer`, `load_digits`, `load_classification_csv` (throw `data_error`),
/// the idx reader `parse_idx` / `read_idx_file` / `load_idx_classification` (MNIST, Fashion-MNIST;
/// uncompressed bytes, throws `data_error` naming the file),
/// `train_test_split`, `standardizer`, `standardized_split`. Requirements shared by all problems:
/// the `objective_problem` / `differentiable_problem` concepts.
#pragma once

#include "../config.hpp"
#include "concepts.hpp"
#include "quadratic.hpp"
#include "rosenbrock.hpp"
#include "dataset.hpp"
#include "logistic_regression.hpp"
#include "softmax_regression.hpp"
#include "mlp.hpp"
#include "idx.hpp"
#include "addition_policy.hpp"
#include "robust_matrix_sensing.hpp"

/// @namespace stochgrad::problems
/// Built-in test problems (objectives with exact gradients) and the dataset loaders they use.
