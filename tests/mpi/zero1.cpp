// SPDX-License-Identifier: Apache-2.0
// mpi::sharded_optimizer (ZeRO stage 1): each rank keeps the optimizer state of 1/R of the
// parameters. Adam, AdamW (with a no-decay group) and Adan on R ranks equal, bit for bit, a single
// process stepping the rank-order sum of the ranks' gradients, for tiny and large buckets and
// parameter counts that do not divide by R; the state per rank is its shard only; per-rank
// checkpoints resume bit for bit and are refused on another rank count; whole-gradient options
// are refused. Run under mpiexec -n 1 .. 4.
#include "support/catch.hpp"

#include <stochgrad/mpi.hpp>

#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "mpi/shards.hpp"
#include "mpi/support.hpp"

namespace {

namespace smpi = stochgrad::mpi;
namespace opt = stochgrad::optim;
using sg_mpi_test::world;

// Rank r's gradient of tensor t at element i (a fixed function of the parameters, so the
// trajectory is non-trivial): g = (1 + r + i % 5) theta / 10 - 0.01 (r + 1) + 0.001 t.
float rank_grad(int r, std::size_t t, std::size_t i, float theta) {
  return static_cast<float>(1 + r + static_cast<int>(i % 5)) * theta / 10.0f - 0.01f * static_cast<float>(r + 1) +
         0.001f * static_cast<float>(t);
}

template <class Policy>
void check_matches_single_process(const Policy& policy, std::size_t bucket) {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  // Two tensors (13 + 6 elements: 19 does not divide by 2, 3 or 4), the second in a no-decay group.
  std::vector<float> a(13), b(6);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.3f - 0.05f * static_cast<float>(i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = -0.2f + 0.07f * static_cast<float>(i);
  std::vector<float> ar = a, br = b;
  auto make = [](std::vector<float>& x, std::vector<float>& y) {
    stochgrad::parameters<float> p;
    const std::size_t nd = p.add_group({.decay = false});
    p.add(x);
    p.add(y, nd);
    return p;
  };
  stochgrad::parameters<float> p = make(a, b), pr = make(ar, br);
  smpi::sharded_optimizer<Policy, float> z(comm, p, policy, bucket);
  auto sref = policy.init(pr);
  bool same = true;
  for (std::uint64_t k = 0; k < 20; ++k) {
    std::vector<float> ga(a.size()), gb(b.size());
    for (std::size_t i = 0; i < a.size(); ++i) ga[i] = rank_grad(me, 0, i, a[i]);
    for (std::size_t i = 0; i < b.size(); ++i) gb[i] = rank_grad(me, 1, i, b[i]);
    const std::span<const float> g[2] = {ga, gb};
    z.step(std::span<const std::span<const float>>(g, 2));
    // Single process: the rank-order sum of every rank's gradient, divided by R.
    std::vector<float> ha(ar.size()), hb(br.size());
    for (std::size_t i = 0; i < ar.size(); ++i) {
      float s = rank_grad(0, 0, i, ar[i]);
      for (int r = 1; r < R; ++r) s += rank_grad(r, 0, i, ar[i]);
      ha[i] = s / static_cast<float>(R);
    }
    for (std::size_t i = 0; i < br.size(); ++i) {
      float s = rank_grad(0, 1, i, br[i]);
      for (int r = 1; r < R; ++r) s += rank_grad(r, 1, i, br[i]);
      hb[i] = s / static_cast<float>(R);
    }
    const std::span<const float> h[2] = {ha, hb};
    policy.update(pr, sref, stochgrad::dense_gradient<float>(std::span<const std::span<const float>>(h, 2)),
                  stochgrad::step_context{.step = k});
    same = same && sg_mpi_test::same_bits<float>(a, ar) && sg_mpi_test::same_bits<float>(b, br);
  }
  CHECK(same);
  CHECK(sg_mpi_test::same_on_all_ranks(sg_mpi_test::bits_hash<float>(a) ^ sg_mpi_test::bits_hash<float>(b)));
  CHECK(a != std::vector<float>(13, 0.0f));
  // This rank's shard: ceil(19 / R) elements (fewer on the last ranks), and state for it only.
  const std::size_t c = (19 + static_cast<std::size_t>(R) - 1) / static_cast<std::size_t>(R);
  CHECK(z.shard_begin() == std::min<std::size_t>(19, static_cast<std::size_t>(me) * c));
  CHECK(z.shard_parameters().size() == z.shard_end() - z.shard_begin());
}

}  // namespace

TEST_CASE("sharded_optimizer: ZeRO-1 Adam, AdamW and Adan equal the single-process run bit for bit", "[mpi][zero1]") {
  for (std::size_t bucket : {std::size_t{1}, std::size_t{3}, std::size_t{1} << 20}) {
    INFO("bucket " << bucket);
    check_matches_single_process(opt::adam<>({.lr = 1e-2}), bucket);
    check_matches_single_process(opt::adamw<>({.lr = 1e-2, .weight_decay = 0.1}), bucket);
    check_matches_single_process(opt::adan<>({.lr = 1e-2, .weight_decay = 0.02}), bucket);
  }
}

TEST_CASE("sharded_optimizer: the Adam state of a rank covers its shard only", "[mpi][zero1]") {
  auto& comm = world();
  const auto R = static_cast<std::size_t>(comm.size());
  std::vector<float> w(100001, 0.5f);
  stochgrad::parameters<float> p;
  p.add(w);
  smpi::sharded_optimizer<opt::adam<>, float> z(comm, p, opt::adam<>({.lr = 1e-3}));
  std::size_t held = 0;
  for (const auto& m : z.shard_state().exp_avg) held += m.size();
  CHECK(held == z.shard_end() - z.shard_begin());
  CHECK(held <= (w.size() + R - 1) / R);
  // The shards partition the parameters: their sizes add up to P on the ranks together.
  std::vector<std::uint64_t> all(R);
  const std::uint64_t mine = held;
  comm.allgather(std::span<const std::uint64_t>(&mine, 1), std::span<std::uint64_t>(all));
  std::uint64_t total = 0;
  for (auto v : all) total += v;
  CHECK(total == w.size());
}

TEST_CASE("sharded_optimizer: per-rank checkpoints resume bit for bit; another rank count is refused", "[mpi][zero1]") {
  auto& comm = world();
  const int me = comm.rank();
  auto run = [&](bool resume, std::string* saved) {
    std::vector<float> w(23);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
    stochgrad::parameters<float> p;
    p.add(w);
    smpi::sharded_optimizer<opt::adam<>, float> z(comm, p, opt::adam<>({.lr = 1e-2}), 4);
    for (int k = 0; k < 10; ++k) {
      if (resume && k == 5) {
        std::stringstream ss;
        z.save(ss);
        if (saved != nullptr) *saved = ss.str();
        smpi::sharded_optimizer<opt::adam<>, float> fresh(comm, p, opt::adam<>({.lr = 1e-2}), 4);
        std::stringstream in(ss.str());
        fresh.load(in);
        CHECK(fresh.steps() == 5);
        z = std::move(fresh);
      }
      std::vector<float> g(w.size());
      for (std::size_t i = 0; i < w.size(); ++i) g[i] = rank_grad(me, 0, i, w[i]);
      z.step(std::span<const float>(g));
    }
    return w;
  };
  std::string ckpt;
  const std::vector<float> a = run(false, nullptr), b = run(true, &ckpt);
  CHECK(sg_mpi_test::same_bits<float>(a, b));
  // A one-rank job (MPI_COMM_SELF) refuses a checkpoint written by one of R > 1 ranks.
  if (comm.size() > 1) {
    smpi::communicator self(MPI_COMM_SELF);
    std::vector<float> w(23, 0.0f);
    stochgrad::parameters<float> p;
    p.add(w);
    smpi::sharded_optimizer<opt::adam<>, float> z(self, p, opt::adam<>({.lr = 1e-2}), 4);
    std::stringstream in(ckpt);
    std::string msg;
    try {
      z.load(in);
    } catch (const stochgrad::state_error& e) {
      msg = e.what();
    }
    CHECK(msg.find("re-sharding is not supported") != std::string::npos);
    CHECK(z.steps() == 0);
  }
}

TEST_CASE("sharded_optimizer: options that need the whole gradient are refused", "[mpi][zero1]") {
  auto& comm = world();
  std::vector<float> w(8, 1.0f);
  stochgrad::parameters<float> p;
  p.add(w);
  CHECK_THROWS_AS((smpi::sharded_optimizer<opt::adam<>, float>(comm, p, opt::adam<>({.lr = 1e-3, .max_grad_norm = 1.0}))),
                  stochgrad::invalid_argument);
  CHECK_THROWS_AS((smpi::sharded_optimizer<opt::sgd<>, float>(comm, p, opt::sgd<>({.lr = 1e-3, .skip_nonfinite = true}))),
                  stochgrad::invalid_argument);
  CHECK_THROWS_AS((smpi::sharded_optimizer<opt::adam<>, float>(comm, p, opt::adam<>({.lr = 1e-3}), 0)), stochgrad::invalid_argument);
  smpi::sharded_optimizer<opt::sgd<>, float> z(comm, p, opt::sgd<>({.lr = 0.5}));
  std::vector<float> short_g(7, 1.0f);
  CHECK_THROWS_AS(z.step(std::span<const float>(short_g)), stochgrad::size_mismatch);
  CHECK(w == std::vector<float>(8, 1.0f));
  // Only the last rank passes a short gradient: every rank throws (no rank waits in a collective),
  // naming that rank, and nothing changes; the next step works on every rank.
  const int R = comm.size(), me = comm.rank();
  std::vector<float> g(me == R - 1 ? 7 : 8, 1.0f);
  std::string msg;
  try {
    z.step(std::span<const float>(g));
  } catch (const stochgrad::size_mismatch& e) {
    msg = e.what();
  }
  CHECK(msg.find("on rank(s) " + std::to_string(R - 1) + " (refused on every rank") != std::string::npos);
  CHECK(w == std::vector<float>(8, 1.0f));
  CHECK(z.steps() == 0);
  std::vector<float> ok(8, 1.0f);
  z.step(std::span<const float>(ok));
  CHECK(w == std::vector<float>(8, 0.5f));
  CHECK(z.steps() == 1);
}
