// SPDX-License-Identifier: Apache-2.0
// mpi::sharded and mpi::sharded_direction: ranks holding slices of each tensor reproduce the
// single-process trajectory bit for bit (each slice gets the z of the unsharded tensor, with
// offsets on the SIMD chunk grid and off it); only O(q) scalars travel; bad layouts are refused on
// every rank with the state untouched. Run under mpiexec -n 1 .. 4.
#include "support/catch.hpp"

#include <stochgrad/mpi.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mpi/support.hpp"

namespace {

namespace smpi = stochgrad::mpi;
namespace zo = stochgrad::zo;
using sg_mpi_test::world;

constexpr std::size_t global_sizes[2] = {1000, 333};

float start_value(std::size_t t, std::uint64_t g) { return 0.05f * static_cast<float>(static_cast<int>((g + 3 * t) % 11) - 5); }
double target(std::size_t t, std::uint64_t g) { return 0.3 * std::sin(0.01 * static_cast<double>(g) + static_cast<double>(t)); }
double weight(std::uint64_t g) { return 1.0 + static_cast<double>(g % 5); }

template <class Dir, class Opt>
using zo_stepper = stochgrad::stepper<zo::two_point<Dir>, stochgrad::no_baseline, stochgrad::no_normalizer, Opt, float>;

template <class Dist, class Opt>
void run_case(const Opt& opt, std::uint64_t align, zo::pass_mode mode) {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  using dir = smpi::sharded_direction<Dist>;
  const zo::difference_options eo{.eps = 1e-3, .q = 2, .seed = 21, .mode = mode};

  // This rank's slices.
  smpi::shard_range mine[2];
  std::vector<float> local[2];
  stochgrad::parameters<float> p;
  for (std::size_t t = 0; t < 2; ++t) {
    mine[t] = smpi::shard_of(global_sizes[t], me, R, align);
    for (std::uint64_t i = 0; i < mine[t].count; ++i) local[t].push_back(start_value(t, mine[t].offset + i));
    p.add(std::span<float>(local[t]));
  }
  zo_stepper<dir, Opt> s(p, opt, zo::two_point<dir>(eo, {}, {}, dir({mine[0].offset, mine[1].offset})));
  smpi::sharded drv(comm, s);
  CHECK(drv.global_size(0) == 1000);
  CHECK(drv.global_size(1) == 333);
  CHECK(drv.slice(me, 1) == mine[1]);

  // The unsharded single-process run, whose loss adds the ranks' terms in rank order.
  std::vector<float> full[2];
  stochgrad::parameters<float> pf;
  for (std::size_t t = 0; t < 2; ++t) {
    for (std::uint64_t g = 0; g < global_sizes[t]; ++g) full[t].push_back(start_value(t, g));
    pf.add(std::span<float>(full[t]));
  }
  zo_stepper<Dist, Opt> ref(pf, opt, zo::two_point<Dist>(eo));
  auto ref_loss = [&](const stochgrad::parameters<float>& x) {
    std::vector<double> parts;
    for (int r = 0; r < R; ++r) {
      std::uint64_t off[2], cnt[2];
      for (std::size_t t = 0; t < 2; ++t) {
        const auto sr = smpi::shard_of(global_sizes[t], r, R, align);
        off[t] = sr.offset;
        cnt[t] = sr.count;
      }
      double acc = 0.0;  // the same terms in the same order as rank r's partial
      for (std::size_t t = 0; t < 2; ++t) {
        for (std::uint64_t i = 0; i < cnt[t]; ++i) {
          const std::uint64_t g = off[t] + i;
          const double d = static_cast<double>(x.tensor(t)[g]) - target(t, g);
          acc += weight(g) * d * d;
        }
      }
      parts.push_back(acc);
    }
    return smpi::rank_sum(parts);
  };
  const std::uint64_t off[2] = {mine[0].offset, mine[1].offset}, cnt[2] = {mine[0].count, mine[1].count};
  auto local_loss = [&](const stochgrad::parameters<float>& x) {
    double acc = 0.0;
    for (std::size_t t = 0; t < 2; ++t) {
      for (std::uint64_t i = 0; i < cnt[t]; ++i) {
        const std::uint64_t g = off[t] + i;
        const double d = static_cast<double>(x.tensor(t)[i]) - target(t, g);
        acc += weight(g) * d * d;
      }
    }
    return acc;
  };

  bool losses_equal = true, bytes_ok = true;
  const double l0 = ref_loss(pf);
  for (int k = 0; k < 30; ++k) {
    const auto r = drv.step(local_loss);
    const auto rr = ref.step(ref_loss);
    losses_equal = losses_equal && sg_mpi_test::same_bits(r.losses, rr.losses) && r.applied == rr.applied;
    bytes_ok = bytes_ok && drv.last_step().bytes_sent == 16 * 4 && drv.last_step().collectives == 4;
  }
  CHECK(losses_equal);
  CHECK(bytes_ok);
  if constexpr (requires { zo::settle(s); }) {
    zo::settle(s);
    zo::settle(ref);
  }
  for (std::size_t t = 0; t < 2; ++t) {
    const std::span<const float> slice(full[t].data() + mine[t].offset, mine[t].count);
    CHECK(sg_mpi_test::same_bits<float>(local[t], slice));
  }
  CHECK(ref_loss(pf) < l0);  // it trained
}

}  // namespace

TEST_CASE("shard_of: slices tile the tensor in rank order on the chunk grid", "[mpi][sharded]") {
  for (int R = 1; R <= 5; ++R) {
    for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{63}, std::uint64_t{333},
                            std::uint64_t{100000}}) {
      std::uint64_t next = 0;
      for (int r = 0; r < R; ++r) {
        const auto s = smpi::shard_of(n, r, R);
        CHECK(s.offset == next);
        CHECK(s.offset % stochgrad::simd::chunk == 0);
        next += s.count;
      }
      CHECK(next == n);
    }
  }
  CHECK(smpi::shard_of(1000, 1, 2, 1) == smpi::shard_range{500, 500});
  CHECK_THROWS_AS(smpi::shard_of(10, 2, 2), stochgrad::invalid_argument);
  CHECK_THROWS_AS(smpi::shard_of(10, 0, 0), stochgrad::invalid_argument);
  CHECK_THROWS_AS(smpi::shard_of(10, 0, 1, 0), stochgrad::invalid_argument);
}

TEST_CASE("sharded_direction: a slice gets the unsharded tensor's z, on and off the chunk grid", "[mpi][sharded]") {
  using dir = smpi::sharded_direction<stochgrad::gaussian>;
  const zo::direction_t<stochgrad::gaussian> whole;
  constexpr std::size_t C = stochgrad::simd::chunk;
  for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{C}, std::uint64_t{5}, std::uint64_t{C + 3}}) {
    const dir d({0, off});
    const stochgrad::noise_key k{99, 1, 2};
    xsimd::batch<float> a[stochgrad::simd::chunk_batches<float>], b[stochgrad::simd::chunk_batches<float>];
    alignas(64) float va[C], vb[C];
    bool same = true;
    for (std::uint64_t e0 = 0; e0 < 4 * C; e0 += C) {
      d.chunk<float>(k, e0, a);
      for (std::size_t i = 0; i < C; ++i) vb[i] = whole.value<float>(k, off + e0 + i);
      for (std::size_t r = 0; r < stochgrad::simd::chunk_batches<float>; ++r) a[r].store_aligned(va + r * a[r].size);
      same = same && sg_mpi_test::same_bits<float>(va, vb) && d.value<float>(k, e0 + 1) == vb[1];
    }
    (void)b;
    CHECK(same);
  }
}

TEST_CASE("sharded: R ranks holding slices reproduce the single-process trajectory bit for bit", "[mpi][sharded]") {
  SECTION("gaussian, adam, slices on the chunk grid") {
    run_case<stochgrad::gaussian>(stochgrad::optim::adam<>({.lr = 1e-3}), stochgrad::simd::chunk, zo::pass_mode::fused);
  }
  SECTION("gaussian, adam, slices off the chunk grid") {
    run_case<stochgrad::gaussian>(stochgrad::optim::adam<>({.lr = 1e-3}), 1, zo::pass_mode::fused);
  }
  SECTION("rademacher, sgd with momentum and weight decay, fused_next, off the grid") {
    run_case<stochgrad::rademacher>(stochgrad::optim::sgd<>({.lr = 5e-5, .momentum = 0.9, .weight_decay = 1e-3}), 7,
                                    zo::pass_mode::fused_next);
  }
  SECTION("rademacher, adan, reference passes, on the grid") {
    run_case<stochgrad::rademacher>(stochgrad::optim::adan<>({.lr = 1e-3}), stochgrad::simd::chunk,
                                    zo::pass_mode::reference);
  }
}

TEST_CASE("sharded: bad layouts are refused on every rank, nothing changed", "[mpi][sharded]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  using dir = smpi::sharded_direction<stochgrad::gaussian>;
  const auto a = smpi::shard_of(1000, me, R), b = smpi::shard_of(333, me, R);
  std::vector<float> wa(a.count, 0.5f), wb(b.count, -0.5f);
  stochgrad::parameters<float> p;
  p.add(std::span<float>(wa)).add(std::span<float>(wb));
  auto attempt = [&](auto& s) -> std::string {
    const std::string before = sg_mpi_test::saved(s);
    const std::vector<float> a0 = wa, b0 = wb;
    std::string msg;
    try {
      smpi::sharded drv(comm, s);
    } catch (const smpi::config_mismatch& e) {
      msg = e.what();
    }
    CHECK(sg_mpi_test::saved(s) == before);
    CHECK(sg_mpi_test::same_bits<float>(wa, a0));
    CHECK(sg_mpi_test::same_bits<float>(wb, b0));
    return msg;
  };
  using adam_s = zo_stepper<dir, stochgrad::optim::adam<>>;
  SECTION("a slice that leaves a gap") {
    const std::uint64_t shift = me == R - 1 ? 1 : 0;
    adam_s s(p, stochgrad::optim::adam<>(stochgrad::optim::adam_options{}), zo::two_point<dir>({.seed = 1}, {}, {}, dir({a.offset, b.offset + shift})));
    const std::string msg = attempt(s);
    CHECK(msg.find("do not tile") != std::string::npos);
    CHECK(msg.find("tensor 1: rank " + std::to_string(R - 1) + " starts at " + std::to_string(smpi::shard_of(333, R - 1, R).offset + 1)) !=
          std::string::npos);
  }
  SECTION("an offset table of the wrong length") {
    adam_s s(p, stochgrad::optim::adam<>(stochgrad::optim::adam_options{}), zo::two_point<dir>({.seed = 1}, {}, {}, dir({a.offset})));
    CHECK(attempt(s).find("offset table") != std::string::npos);
  }
  SECTION("global-norm clipping") {
    adam_s s(p, stochgrad::optim::adam<>({.max_grad_norm = me == 0 ? 1.0 : 0.0}),
             zo::two_point<dir>({.seed = 1}, {}, {}, dir({a.offset, b.offset})));
    const std::string msg = attempt(s);
    CHECK(msg.find("rank 0: the optimizer clips by the global gradient norm") != std::string::npos);
  }
  SECTION("another seed") {
    adam_s s(p, stochgrad::optim::adam<>(stochgrad::optim::adam_options{}),
             zo::two_point<dir>({.seed = me == R - 1 && R > 1 ? 2u : 1u}, {}, {}, dir({a.offset, b.offset})));
    CHECK((attempt(s).find("options") != std::string::npos) == (R > 1));
  }
}
