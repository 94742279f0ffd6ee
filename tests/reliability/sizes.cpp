// SPDX-License-Identifier: Apache-2.0
// Issue 11 items 2 and 10: products of user sizes are checked for overflow (a wrapped product
// would pass the size checks and the kernels would read out of bounds), and parameters::add takes
// a pointer with any integer count, refusing negative counts with nothing added.
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {
constexpr std::size_t big = std::size_t{1} << 33;  // big * big = 2^66 wraps to 0; big * 2^31 wraps to 0
}

TEST_CASE("group_layout::contiguous refuses a wrapped groups x group_size", "[reliability][sizes]") {
  // 2^33 x 2^31 = 2^64 wraps to 0 samples; 2^33 x (2^31 + 1) wraps to 2^33 samples.
  CHECK_THROWS_AS(sg::group_layout::contiguous(big, std::size_t{1} << 31), sg::invalid_argument);
  CHECK_THROWS_AS(sg::group_layout::contiguous(big, (std::size_t{1} << 31) + 1), sg::invalid_argument);
  auto g = sg::group_layout::contiguous(4, 8);
  CHECK_THROWS_AS(g.assign_contiguous(std::numeric_limits<std::size_t>::max(), 2), sg::invalid_argument);
  CHECK(g.samples() == 32);  // refused assignment leaves the layout as it was
  CHECK(g.groups() == 4);
}

TEST_CASE("token-batch helpers refuse a wrapped sequences x length", "[reliability][sizes]") {
  std::vector<double> adv(2, 1.0), out(2, 7.0);
  // adv.size() x length = 2 x 2^63 wraps to 0 (out's size 2 does not match 0 either way, but
  // 2 x (2^63 + 1) wraps to 2, which matched out.size() before the check).
  volatile std::size_t opaque = (std::size_t{1} << 63) + 1;  // hidden from constant propagation
  const std::size_t L = opaque;
  CHECK_THROWS_AS(sg::broadcast_tokens<double>(adv, std::span<const double>{}, L, out), sg::invalid_argument);
  CHECK_THROWS_AS(sg::sum_tokens<double>(std::span<const double>(out), L, std::span<double>(adv)),
                  sg::invalid_argument);
  CHECK(out == std::vector<double>(2, 7.0));
  CHECK(adv == std::vector<double>(2, 1.0));
}

TEST_CASE("parameters::add accepts any integer count and refuses negatives", "[reliability][sizes]") {
  std::vector<float> w(5, 1.0f);
  sg::parameters<float> p;
  const int n = 5;
  p.add(w.data(), n);
  p.add(w.data(), std::int64_t{3});
  p.add(w.data(), 2u);
  CHECK(p.tensors() == 3);
  CHECK(p.size() == 10);
  CHECK_THROWS_AS(p.add(w.data(), -1), sg::invalid_argument);
  CHECK_THROWS_AS(p.add(w.data(), std::int64_t{-7}), sg::invalid_argument);
  CHECK(p.tensors() == 3);  // nothing added by the refused calls
  CHECK(p.size() == 10);
}

TEST_CASE("the token batch check refuses a wrapped sequences x length", "[reliability][sizes]") {
  // 2 x (2^63 + 1) wraps to 2: logp, mask and advantages of 2 elements passed the size checks on
  // main and the surrogate read L positions per row out of bounds.
  std::vector<double> logp(2, -1.0), adv(2, 1.0), coef(2, 5.0);
  sg::token_batch<double> b;
  b.sequences = 2;
  volatile std::size_t opaque = (std::size_t{1} << 63) + 1;
  b.length = opaque;
  b.logp = logp;
  b.advantages = adv;
  const sg::clipped_surrogate s;
  CHECK_THROWS_AS(s.evaluate(b, std::span<double>(coef)), sg::invalid_argument);
  CHECK(coef == std::vector<double>(2, 5.0));
}
