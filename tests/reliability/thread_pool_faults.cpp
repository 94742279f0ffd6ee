// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 4: a thread_pool whose construction fails partway stops and joins the workers it
// had started and reports the failure (on main the joinable std::thread objects were destroyed
// during unwinding: std::terminate, or a hang); absurd thread counts are refused up front.
#include <atomic>
#include <stdexcept>
#include <system_error>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {
unsigned fail_at = 0;
unsigned calls = 0;
void fail_system(unsigned i) {
  ++calls;
  if (i == fail_at) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
}
void fail_other(unsigned i) {
  ++calls;
  if (i == fail_at) throw std::runtime_error("injected");
}
struct hook_guard {
  explicit hook_guard(void (*h)(unsigned)) { sg::detail::thread_pool_spawn_hook = h; }
  ~hook_guard() { sg::detail::thread_pool_spawn_hook = nullptr; }
  hook_guard(const hook_guard&) = delete;
  hook_guard& operator=(const hook_guard&) = delete;
};
}  // namespace

TEST_CASE("thread_pool construction failing partway stops what it started", "[reliability][thread_pool]") {
  for (unsigned k : {1u, 2u, 5u, 8u}) {
    fail_at = k;
    calls = 0;
    {
      hook_guard g(fail_system);
      // A system failure becomes a stochgrad::error; returning here at all shows the k - 1 workers
      // started before the failure were stopped and joined.
      CHECK_THROWS_AS(sg::thread_pool(9), sg::error);
    }
    CHECK(calls == k);
    calls = 0;
    {
      hook_guard g(fail_other);
      CHECK_THROWS_AS(sg::thread_pool(9), std::runtime_error);  // other exceptions propagate as they are
    }
    CHECK(calls == k);
  }
  // After the faults a pool still works: every task runs exactly once.
  sg::thread_pool pool(4);
  std::atomic<int> sum{0};
  pool.run(100, [&](std::size_t t) { sum += static_cast<int>(t); });
  CHECK(sum.load() == 4950);
}

TEST_CASE("thread_pool refuses zero and absurd thread counts", "[reliability][thread_pool]") {
  CHECK_THROWS_AS(sg::thread_pool(0), sg::invalid_argument);
  CHECK_THROWS_AS(sg::thread_pool(sg::thread_pool::max_threads + 1), sg::invalid_argument);
  CHECK_THROWS_AS(sg::thread_pool(static_cast<unsigned>(-1)), sg::invalid_argument);  // a wrapped -1
}
