// SPDX-License-Identifier: Apache-2.0
// thread_pool / executor: every task runs exactly once, results are visible to the caller, many
// small jobs, concurrent callers, construction/destruction churn, argument checking. Run it under
// the sanitizer builds (ASan/UBSan in CI; it is also clean under -fsanitize=thread).
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include <stochgrad/bits/error.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "support/catch.hpp"

using namespace stochgrad;

TEST_CASE("thread_pool: invalid size throws, sizes are reported", "[parallel]") {
  REQUIRE_THROWS_AS(thread_pool(0), invalid_argument);
  thread_pool one(1), four(4);
  CHECK(one.size() == 1);
  CHECK(four.size() == 4);
  CHECK(executor{}.concurrency() == 1);
  CHECK(executor(four).concurrency() == 4);
}

TEST_CASE("thread_pool: many small jobs, each task exactly once, writes visible after run", "[parallel]") {
  for (const unsigned threads : {1u, 2u, 3u, 8u}) {
    thread_pool pool(threads);
    const executor ex(pool);
    std::vector<int> hits(64);
    std::vector<std::size_t> plain(64);  // non-atomic writes, read after run() returns
    for (int job = 0; job < 3000; ++job) {
      const std::size_t n = static_cast<std::size_t>(job % 37);
      for (std::size_t t = 0; t < n; ++t) hits[t] = 0;
      ex.run(n, [&](std::size_t t) {
        std::atomic_ref<int>(hits[t]).fetch_add(1, std::memory_order_relaxed);
        plain[t] = t * 3 + static_cast<std::size_t>(job);
      });
      for (std::size_t t = 0; t < n; ++t) {
        REQUIRE(hits[t] == 1);
        REQUIRE(plain[t] == t * 3 + static_cast<std::size_t>(job));
      }
    }
  }
}

TEST_CASE("thread_pool: concurrent callers are serialised", "[parallel]") {
  thread_pool pool(3);
  std::atomic<long> total{0};
  auto caller = [&] {
    for (int job = 0; job < 500; ++job) {
      pool.run(7, [&](std::size_t t) { total.fetch_add(static_cast<long>(t) + 1, std::memory_order_relaxed); });
    }
  };
  std::thread a(caller), b(caller);
  caller();
  a.join();
  b.join();
  CHECK(total.load() == 3L * 500 * (7 * 8 / 2));
}

TEST_CASE("thread_pool: construction and destruction churn", "[parallel]") {
  long ran = 0;
  for (int i = 0; i < 200; ++i) {
    const unsigned threads = 1u + static_cast<unsigned>(i % 8);
    thread_pool pool(threads);  // destroyed right away in some iterations, after jobs in others
    if (i % 3 != 0) {
      std::atomic<long> c{0};
      for (int job = 0; job < i % 5; ++job) pool.run(9, [&](std::size_t) { c.fetch_add(1); });
      ran += c.load();
      CHECK(c.load() == 9L * (i % 5));
    }
  }
  CHECK(ran > 0);
}

TEST_CASE("thread_pool: long-running tasks with uneven cost", "[parallel]") {
  thread_pool pool(4);
  std::vector<double> out(40);
  executor(pool).run(out.size(), [&](std::size_t t) {
    double acc = 0;
    for (std::size_t k = 0; k < 20000 * (t % 5 + 1); ++k) acc += 1.0 / static_cast<double>(k + 1);
    out[t] = acc;
  });
  for (std::size_t t = 0; t < out.size(); ++t) {
    double acc = 0;
    for (std::size_t k = 0; k < 20000 * (t % 5 + 1); ++k) acc += 1.0 / static_cast<double>(k + 1);
    CHECK(out[t] == acc);
  }
}
