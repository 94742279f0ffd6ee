// SPDX-License-Identifier: Apache-2.0
// mpi::gradient_reducer: first-order data parallelism. Every rank computes its shard's gradient;
// the reducer's rank-order sum (and average) gives every rank the same bits, equal to the
// single-process expression ((g_0 + g_1) + ...) (/ R), for any bucket size; an Adam trajectory on
// R ranks equals the single-process one bit for bit; ranks with other gradient lengths are refused
// on every rank. Run under mpiexec -n 1 .. 4.
#include "support/catch.hpp"

#include <stochgrad/mpi.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mpi/shards.hpp"
#include "mpi/support.hpp"

namespace {

namespace smpi = stochgrad::mpi;
using sg_mpi_test::world;

using adam_fo = stochgrad::stepper<stochgrad::first_order, stochgrad::no_baseline, stochgrad::no_normalizer,
                                   stochgrad::optim::adam<>, float>;

/// Shard r's gradient at x, weighted by its share of the samples: n_r / N * grad(mean loss of r).
std::vector<float> weighted_gradient(const sg_mpi_test::shards& sh, std::size_t r, std::span<const float> x) {
  std::uint64_t total = 0;
  for (auto n : sh.sizes) total += n;
  std::vector<float> g(sh.dim);
  sh.model[r].value_and_gradient(x, g);
  const float share = static_cast<float>(static_cast<double>(sh.sizes[r]) / static_cast<double>(total));
  for (float& v : g) v *= share;
  return g;
}

}  // namespace

TEST_CASE("gradient_reducer: Adam on R ranks equals the single-process trajectory bit for bit", "[mpi][first_order]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const auto sh = sg_mpi_test::make_shards(R);
  for (std::size_t bucket : {std::size_t{7}, std::size_t{1} << 20}) {
    std::vector<float> w(sh.dim, 0.0f), w_ref(sh.dim, 0.0f);
    adam_fo s(w, stochgrad::optim::adam<>({.lr = 1e-2}));
    adam_fo ref(w_ref, stochgrad::optim::adam<>({.lr = 1e-2}));
    smpi::gradient_reducer<float> reduce(comm, bucket);
    CHECK(reduce.bucket() == bucket);
    bool equal_grads = true;
    for (int k = 0; k < 50; ++k) {
      std::vector<float> g = weighted_gradient(sh, static_cast<std::size_t>(me), w);
      reduce.sum(g);
      // Single process: the shards' weighted gradients added in rank order.
      std::vector<float> gr = weighted_gradient(sh, 0, w_ref);
      for (std::size_t r = 1; r < static_cast<std::size_t>(R); ++r) {
        const std::vector<float> h = weighted_gradient(sh, r, w_ref);
        for (std::size_t i = 0; i < gr.size(); ++i) gr[i] += h[i];
      }
      equal_grads = equal_grads && sg_mpi_test::same_bits<float>(g, gr);
      s.step(std::span<const float>(g));
      ref.step(std::span<const float>(gr));
    }
    CHECK(equal_grads);
    CHECK(sg_mpi_test::same_bits<float>(w, w_ref));
    CHECK(sg_mpi_test::same_on_all_ranks(sg_mpi_test::bits_hash<float>(w)));
    double loss = 0.0;
    for (std::size_t r = 0; r < sh.model.size(); ++r) loss += sh.model[r].value(w) * static_cast<double>(sh.sizes[r]);
    CHECK(loss / 455.0 < 0.2);  // it trained (log 2 at the start)
  }
}

TEST_CASE("gradient_reducer: average, several tensors, traffic", "[mpi][first_order]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const auto Ru = static_cast<std::size_t>(R);
  auto value = [](int r, std::size_t t, std::size_t i) {
    return 0.1f * static_cast<float>((13 * r + 7 * static_cast<int>(t) + 3 * static_cast<int>(i)) % 17) - 0.7f;
  };
  std::vector<float> a(100), b(5);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = value(me, 0, i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = value(me, 1, i);
  smpi::gradient_reducer<float> reduce(comm, 32);
  comm.reset_traffic();
  const std::span<float> ts[2] = {a, b};
  reduce.average(std::span<const std::span<float>>(ts));
  bool same = true;
  for (std::size_t t = 0; t < 2; ++t) {
    for (std::size_t i = 0; i < ts[t].size(); ++i) {
      float acc = value(0, t, i);
      for (int r = 1; r < R; ++r) acc += value(r, t, i);
      same = same && ts[t][i] == acc / static_cast<float>(R);
    }
  }
  CHECK(same);
  // Per tensor: 16 bytes of lengths; per bucket of n: R c + c floats, c = ceil(n / R).
  std::uint64_t want = 0, calls = 0;
  for (std::size_t n : {std::size_t{100}, std::size_t{5}}) {
    want += 16;
    ++calls;
    for (std::size_t b0 = 0; b0 < n; b0 += 32) {
      const std::size_t m = std::min<std::size_t>(32, n - b0), c = (m + Ru - 1) / Ru;
      want += 4 * (Ru * c + c);
      calls += 2;
    }
  }
  CHECK(comm.sent() == smpi::traffic{calls, want});
  CHECK_THROWS_AS(smpi::gradient_reducer<float>(comm, 0), stochgrad::invalid_argument);
}

TEST_CASE("gradient_reducer: another gradient length on one rank is refused on every rank", "[mpi][first_order]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  std::vector<float> g(R > 1 && me == R - 1 ? 9 : 8, 1.5f);
  const std::vector<float> g0 = g;
  smpi::gradient_reducer<float> reduce(comm, 4);
  std::string msg;
  try {
    reduce.average(g);
  } catch (const stochgrad::size_mismatch& e) {
    msg = e.what();
  }
  CHECK((msg.find("another length on rank(s) " + std::to_string(R - 1)) != std::string::npos) == (R > 1));
  if (R > 1) CHECK(g == g0);
  std::vector<float> ok(8, 1.5f);
  reduce.average(ok);  // the ranks still work together
  CHECK(ok == std::vector<float>(8, 1.5f));
}
