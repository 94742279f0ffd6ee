// SPDX-License-Identifier: Apache-2.0
// The breast-cancer training set split over the ranks (shared by the MPI tests).
#pragma once

#include <stochgrad/problems.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sg_mpi_test {

namespace sp = stochgrad::problems;

/// The breast-cancer training set split into R contiguous shards of unequal sizes (shard r gets
/// n/R rows, rank 0 also the remainder, and 3 rows move from the last shard to the first).
struct shards {
  std::vector<sp::logistic_regression<float>> model;  // one per shard
  std::vector<std::uint64_t> sizes;
  std::size_t dim = 0;
};

inline shards make_shards(int R) {
  const auto split = sp::standardized_split(sp::load_breast_cancer<float>(std::string(STOCHGRAD_DATA_DIR) + "/breast_cancer.csv"), 0.2, 1);
  const sp::dataset<float>& d = split.train;
  const auto n = d.rows, Ru = static_cast<std::size_t>(R);
  std::vector<std::size_t> sz;
  for (std::size_t r = 0; r < Ru; ++r) {
    std::size_t k = n / Ru;
    if (r == 0) k += n % Ru + (Ru > 1 ? 3 : 0);
    if (r + 1 == Ru && Ru > 1) k -= 3;
    sz.push_back(k);
  }
  shards s;
  std::size_t row = 0;
  for (std::size_t r = 0; r < Ru; ++r) {
    sp::dataset<float> part;
    part.rows = sz[r];
    part.features = d.features;
    part.classes = d.classes;
    part.x.assign(d.x.begin() + static_cast<std::ptrdiff_t>(row * d.features),
                  d.x.begin() + static_cast<std::ptrdiff_t>((row + sz[r]) * d.features));
    part.y.assign(d.y.begin() + static_cast<std::ptrdiff_t>(row), d.y.begin() + static_cast<std::ptrdiff_t>(row + sz[r]));
    row += sz[r];
    s.model.emplace_back(std::move(part), split.test);
    s.sizes.push_back(sz[r]);
  }
  s.dim = s.model[0].dimension();
  return s;
}

}  // namespace sg_mpi_test
