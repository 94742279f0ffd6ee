// SPDX-License-Identifier: Apache-2.0
// mpi::data_parallel: R ranks stay bit-identical and equal, bit for bit, a single-process run whose
// loss combines the same shards in the same order (weighted_mean); only O(q) scalars travel; a
// throw or a NaN on one rank is handled identically on every rank; ranks built differently are
// refused on every rank at attach with the state untouched. Run under mpiexec -n 1 .. 4.
#include "support/catch.hpp"

#include <stochgrad/mpi.hpp>
#include <stochgrad/problems.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpi/shards.hpp"
#include "mpi/support.hpp"

namespace {

namespace sp = stochgrad::problems;
namespace smpi = stochgrad::mpi;
using sg_mpi_test::world;
using sg_mpi_test::make_shards;
using sg_mpi_test::shards;

/// The single-process loss: every shard's mean loss, combined as the ranks combine them.
double all_shards_loss(const shards& sh, std::span<const float> x) {
  std::vector<double> l;
  for (const auto& m : sh.model) l.push_back(m.value(x));
  return smpi::weighted_mean(l, sh.sizes);
}

std::vector<float> start_point(std::size_t dim) {
  std::vector<float> w(dim);
  for (std::size_t i = 0; i < dim; ++i) w[i] = 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
  return w;
}

using spsa_adam = stochgrad::stepper<stochgrad::zo::two_point<stochgrad::rademacher>, stochgrad::no_baseline,
                                     stochgrad::no_normalizer, stochgrad::optim::adam<>, float>;

template <class S>
S build(std::vector<float>& w);
template <>
stochgrad::mezo<float> build<stochgrad::mezo<float>>(std::vector<float>& w) {
  return stochgrad::mezo<float>(w, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
}
template <>
spsa_adam build<spsa_adam>(std::vector<float>& w) {
  return spsa_adam(w, stochgrad::optim::adam<>({.lr = 1e-2}),
                   stochgrad::zo::two_point<stochgrad::rademacher>(
                       {.eps = 1e-3, .q = 3, .seed = 11, .mode = stochgrad::zo::pass_mode::fused_next}));
}

}  // namespace

TEMPLATE_TEST_CASE("data_parallel: every rank equals the single-process run bit for bit", "[mpi][zo]",
                   stochgrad::mezo<float>, spsa_adam) {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const shards sh = make_shards(R);
  const auto& mine = sh.model[static_cast<std::size_t>(me)];

  std::vector<float> w = start_point(sh.dim), w_ref = w;
  TestType s = build<TestType>(w);
  TestType ref = build<TestType>(w_ref);
  smpi::data_parallel dp(comm, s, sh.sizes[static_cast<std::size_t>(me)]);
  std::uint64_t total = 0;
  for (auto n : sh.sizes) total += n;
  CHECK(dp.total_size() == total);
  CHECK(total > 400);
  CHECK(dp.shard_sizes().size() == static_cast<std::size_t>(R));

  bool losses_equal = true, applied = true;
  for (int k = 0; k < 40; ++k) {
    const auto r = dp.step([&](std::span<const float> x) { return mine.value(x); });
    const auto rr = ref.step([&](std::span<const float> x) { return all_shards_loss(sh, x); });
    losses_equal = losses_equal && sg_mpi_test::same_bits(r.losses, rr.losses);
    applied = applied && r.applied && rr.applied;
  }
  CHECK(losses_equal);
  CHECK(applied);
  CHECK(sg_mpi_test::same_bits<float>(w, w_ref));
  CHECK(sg_mpi_test::same_on_all_ranks(sg_mpi_test::bits_hash<float>(w)));
  CHECK(sg_mpi_test::same_on_all_ranks(std::hash<std::string>{}(sg_mpi_test::saved(s))));
  CHECK(sg_mpi_test::saved(s) == sg_mpi_test::saved(ref));
  // It trained: the combined loss went down from log 2.
  CHECK(all_shards_loss(sh, w) < 0.5);
}

TEST_CASE("data_parallel: a rank sends one 16-byte record per evaluation, whatever the parameter count",
          "[mpi][zo]") {
  auto& comm = world();
  for (std::size_t n : {std::size_t{64}, std::size_t{1} << 16}) {
    for (std::size_t q : {std::size_t{1}, std::size_t{4}}) {
      std::vector<float> x(n, 0.5f);
      stochgrad::mezo<float> m(x, {.lr = 1e-3}, {.eps = 1e-3, .q = q, .seed = 3});
      smpi::data_parallel dp(comm, m, 10);
      for (int k = 0; k < 3; ++k) {
        const auto r = dp.step([](std::span<const float> v) {
          double acc = 0;
          for (float e : v) acc += static_cast<double>(e) * e;
          return acc;
        });
        CHECK(r.evaluations == 2 * q);
        CHECK(dp.last_step().collectives == 2 * q);
        CHECK(dp.last_step().bytes_sent == 16 * 2 * q);
      }
    }
  }
}

TEST_CASE("data_parallel: a throw or a NaN on one rank fails or skips the step alike on every rank", "[mpi][zo]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const shards sh = make_shards(R);
  const auto& mine = sh.model[static_cast<std::size_t>(me)];
  std::vector<float> w = start_point(sh.dim), w_ref = w;
  stochgrad::mezo<float> s(w, {.lr = 0.05}, {.eps = 1e-3, .q = 2, .seed = 5});
  stochgrad::mezo<float> ref(w_ref, {.lr = 0.05}, {.eps = 1e-3, .q = 2, .seed = 5});
  smpi::data_parallel dp(comm, s, sh.sizes[static_cast<std::size_t>(me)]);
  const int bad = R - 1;  // the rank that throws
  int threw = 0, ref_threw = 0, skipped = 0, ref_skipped = 0;
  bool named = true, listed = true;
  for (int k = 0; k < 12; ++k) {
    int ev = 0, ev_ref = 0;
    auto local = [&](std::span<const float> x) -> stochgrad::zo::evaluation {
      const int e = ev++;
      if (k == 3 && e == 1 && me == bad) throw std::runtime_error("boom at step 3");
      if (k == 6 && e == 2 && me == 0) return {std::numeric_limits<double>::quiet_NaN(), true};
      if (k == 8 && e == 0 && me == bad) return {1.0, false};
      return {mine.value(x), true};
    };
    auto single = [&](std::span<const float> x) -> stochgrad::zo::evaluation {
      const int e = ev_ref++;
      if (k == 3 && e == 1) throw std::runtime_error("boom");
      if ((k == 6 && e == 2) || (k == 8 && e == 0)) return {std::numeric_limits<double>::quiet_NaN(), false};
      return {all_shards_loss(sh, x), true};
    };
    try {
      const auto r = dp.step(local);
      skipped += r.nonfinite ? 1 : 0;
    } catch (const smpi::rank_failure& e) {
      ++threw;
      const std::string m = e.what();
      named = named && m.find("rank(s) " + std::to_string(bad)) != std::string::npos &&
              m.find("boom at step 3") != std::string::npos && m.find("evaluation 1") != std::string::npos;
      listed = listed && e.failed_ranks() == std::vector<int>{bad};
    }
    try {
      ref_skipped += ref.step(single).nonfinite ? 1 : 0;
    } catch (const std::runtime_error&) {
      ++ref_threw;
    }
    CHECK(sg_mpi_test::same_bits<float>(w, w_ref));
  }
  CHECK(threw == 1);
  CHECK(ref_threw == 1);
  CHECK(named);
  CHECK(listed);
  CHECK(skipped == 2);
  CHECK(ref_skipped == 2);
  CHECK(sg_mpi_test::saved(s) == sg_mpi_test::saved(ref));
  CHECK(sg_mpi_test::same_on_all_ranks(sg_mpi_test::bits_hash<float>(w)));
  CHECK(dp.stepper().steps() == ref.steps());
}

namespace {

/// Runs `attach` and returns the config_mismatch message ("" when it attached).
template <class F>
std::string refusal(F&& attach) {
  try {
    attach();
  } catch (const smpi::config_mismatch& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("data_parallel: ranks built differently are refused on every rank, nothing changed", "[mpi][zo]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const bool odd = R > 1 && me == R - 1;  // the rank that differs
  const std::string other = "rank(s) " + std::to_string(R - 1);

  std::vector<float> w(40, 0.25f);
  stochgrad::mezo<float> m(w, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
  const std::string before = sg_mpi_test::saved(m);
  const std::vector<float> w0 = w;

  SECTION("a shard size of 0") {
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m, me == 0 ? 0u : 5u); });
    CHECK(has(msg, "rank 0: the shard size is 0"));
  }
  SECTION("another seed") {
    stochgrad::mezo<float> m2(w, {.lr = 0.05}, {.eps = 1e-3, .seed = odd ? 8u : 7u});
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m2, 5); });
    CHECK(has(msg, "options") == (R > 1));
    CHECK(has(msg, other) == (R > 1));
  }
  SECTION("another learning rate") {
    stochgrad::mezo<float> m2(w, {.lr = odd ? 0.06 : 0.05}, {.eps = 1e-3, .seed = 7});
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m2, 5); });
    CHECK(has(msg, "options") == (R > 1));
    CHECK(!has(msg, "parameter values"));
  }
  SECTION("another salt") {
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m, 5, {.salt = odd ? 2u : 1u}); });
    CHECK(has(msg, "salt") == (R > 1));
  }
  SECTION("another parameter size") {
    std::vector<float> w2(odd ? 41 : 40, 0.25f);
    stochgrad::mezo<float> m2(w2, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m2, 5); });
    CHECK(has(msg, "parameter shapes") == (R > 1));
  }
  SECTION("other parameter values") {
    std::vector<float> w2(40, 0.25f);
    if (odd) w2[17] = std::nextafter(0.25f, 1.0f);
    stochgrad::mezo<float> m2(w2, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m2, 5); });
    CHECK(has(msg, "parameter values") == (R > 1));
    CHECK(!has(msg, "options"));
  }
  SECTION("another step state") {
    std::vector<float> w2(40, 0.25f);
    stochgrad::mezo<float> m2(w2, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
    if (odd) {
      m2.step([](std::span<const float> x) { return static_cast<double>(x[0]); });
      w2 = w;  // same values, but one step further on
    }
    const std::string msg = refusal([&] { smpi::data_parallel dp(comm, m2, 5); });
    CHECK(has(msg, "step state") == (R > 1));
  }
  SECTION("another stepper type") {
    std::string msg;
    if (odd) {
      stochgrad::spall_spsa<float> s2(w, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
      msg = refusal([&] { smpi::data_parallel dp(comm, s2, 5); });
    } else {
      msg = refusal([&] { smpi::data_parallel dp(comm, m, 5); });
    }
    CHECK(has(msg, "stepper type") == (R > 1));
  }
  // Untouched, and the ranks still work together afterwards.
  CHECK(sg_mpi_test::saved(m) == before);
  CHECK(sg_mpi_test::same_bits<float>(w, w0));
  smpi::data_parallel dp(comm, m, 5);
  CHECK(dp.step([](std::span<const float> x) { return static_cast<double>(x[1]); }).applied);
}

TEST_CASE("data_parallel: the combination helpers", "[mpi][zo]") {
  const double l[3] = {0.5, 0.25, 2.0};
  const std::uint64_t n[3] = {2, 4, 1};
  CHECK(smpi::weighted_mean(l, n) == std::fma(1.0, 2.0, std::fma(4.0, 0.25, 2.0 * 0.5)) / 7.0);
  CHECK(smpi::rank_sum(l) == 2.75);
  const std::uint64_t n2[2] = {1, 1};
  CHECK_THROWS_AS(smpi::weighted_mean(l, n2), stochgrad::size_mismatch);
  const std::uint64_t z[3] = {0, 0, 0};
  CHECK_THROWS_AS(smpi::weighted_mean(l, z), stochgrad::invalid_argument);
  CHECK_THROWS_AS(smpi::rank_sum({}), stochgrad::invalid_argument);
}

TEST_CASE("communicator: the caller's communicator duplicated, MPI errors as exceptions", "[mpi]") {
  auto& comm = world();
  CHECK_THROWS_AS(smpi::communicator(MPI_COMM_NULL), stochgrad::invalid_argument);
  smpi::communicator c(MPI_COMM_WORLD);
  CHECK(c.size() == comm.size());
  CHECK(c.rank() == comm.rank());
  int cmp = MPI_UNEQUAL;
  MPI_Comm_compare(c.handle(), MPI_COMM_WORLD, &cmp);
  CHECK(cmp == MPI_CONGRUENT);  // a duplicate, not MPI_COMM_WORLD itself

  // A receive buffer of the wrong size is refused before any communication (on every rank alike).
  std::vector<std::uint64_t> too_small(static_cast<std::size_t>(c.size()) - 1 + 0);
  const std::uint64_t one = 1;
  CHECK_THROWS_AS(c.allgather(std::span<const std::uint64_t>(&one, 1), std::span<std::uint64_t>(too_small)),
                  stochgrad::size_mismatch);
  CHECK(c.sent() == smpi::traffic{});

  // An MPI error on the duplicate returns (MPI_ERRORS_RETURN) and becomes mpi_error.
  const int rc = MPI_Send(&one, 1, MPI_UINT64_T, c.size() + 5, 0, c.handle());
  CHECK(rc != MPI_SUCCESS);
  try {
    smpi::detail::check(rc, "MPI_Send");
    FAIL("no exception");
  } catch (const smpi::mpi_error& e) {
    CHECK(e.code() == rc);
    CHECK(has(e.what(), "MPI_Send failed"));
  }
  // Counting: one allgather of 8 bytes.
  std::vector<std::uint64_t> all(static_cast<std::size_t>(c.size()));
  c.allgather(std::span<const std::uint64_t>(&one, 1), std::span<std::uint64_t>(all));
  CHECK(c.sent() == smpi::traffic{1, 8});
  c.reset_traffic();
  CHECK(c.sent() == smpi::traffic{});
  smpi::communicator moved(std::move(c));
  CHECK(moved.size() == comm.size());
  CHECK(c.handle() == MPI_COMM_NULL);  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("data_parallel: nonfinite_policy::throw_error and a misfitting objective act alike on every rank",
          "[mpi][zo]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  std::vector<float> w(16, 0.5f), b(3, 0.0f);
  stochgrad::mezo<float> m(w, {.lr = 1e-2},
                           {.eps = 1e-3, .seed = 2, .on_nonfinite = stochgrad::zo::nonfinite_policy::throw_error});
  smpi::data_parallel dp(comm, m, 4);
  // A NaN on the last rank only: nonfinite_error on every rank, parameters restored alike.
  const std::vector<float> w0 = w;
  bool threw = false;
  try {
    dp.step([&](std::span<const float> x) {
      return me == R - 1 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(x[0]);
    });
  } catch (const stochgrad::nonfinite_error&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(sg_mpi_test::same_on_all_ranks(sg_mpi_test::bits_hash<float>(w)));
  CHECK(m.steps() == 0);
  // An objective taking a span on a two-tensor set: refused before anything changes, on every rank.
  stochgrad::parameters<float> p;
  p.add(std::span<float>(w)).add(std::span<float>(b));
  stochgrad::mezo<float> m2(p, {.lr = 1e-2}, {.eps = 1e-3, .seed = 2});
  smpi::data_parallel dp2(comm, m2, 4);
  const std::string before = sg_mpi_test::saved(m2);
  const std::vector<float> w1 = w;
  CHECK_THROWS_AS(dp2.step([](std::span<const float> x) { return static_cast<double>(x[0]); }),
                  stochgrad::invalid_argument);
  CHECK(sg_mpi_test::saved(m2) == before);
  CHECK(sg_mpi_test::same_bits<float>(w, w1));
  CHECK(dp2.last_step().collectives == 0);
  CHECK(dp2.step([](const stochgrad::parameters<float>& x) { return static_cast<double>(x.tensor(1)[0]); }).applied);
}
