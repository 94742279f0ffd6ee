// SPDX-License-Identifier: Apache-2.0
// Zero heap allocation inside kernel calls: this binary replaces the global allocation functions
// with counting versions; the counter is armed only around the kernel calls (the thread pool,
// the data and Catch2's bookkeeping are allocated outside).
#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/kernels/reduce.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "support/catch.hpp"

#include "support/alloc_counter.hpp"

using namespace stochgrad;

namespace {
// Allocations made while running f.
template <class F>
long allocations_during(F&& f) {
  return alloc_counter::allocations_of(f);
}
}  // namespace

TEST_CASE("the counting allocator sees allocations (the check can fail)", "[kernels][alloc]") {
  const long n = allocations_during([] {
    std::vector<int>* v = new std::vector<int>(100);
    delete v;
  });
  CHECK(n == 2);
}

TEMPLATE_TEST_CASE("kernels do not allocate, inline or on a thread pool", "[kernels][alloc]", float, double) {
  using T = TestType;
  const std::size_t n = 3 * detail::task_grain + 77;
  std::vector<T> x(n, T(1)), y(n, T(2));
  std::span<T> a(x.data() + 1, n - 1);  // unaligned, offset head
  std::span<T> b(y.data() + 1, n - 1);
  std::vector<T> small_a(5), small_b(5), small_c(100);
  std::span<T> group[] = {std::span<T>(small_a), std::span<T>(small_b), a};
  thread_pool pool(3);
  for (const executor& ex : {executor{}, executor(pool)}) {
    volatile double sink = 0;
    const long count = allocations_during([&] {
      const noise_key key{1, 2, 3};
      perturb<gaussian>(a, T(0.5), key, 3, ex);
      perturb<rademacher>(a, T(0.5), key, 0, ex);
      perturb<uniform>(a, T(0.5), key, 0, ex);
      perturb<segmented_uniform>(a, T(0.5), key, 0, ex);
      perturb<gaussian>(std::span<const std::span<T>>(group), T(1), key, ex);
      generate<gaussian>(std::span<T>(small_c), key, 0, ex);
      generate<gaussian>(b, key, 0, ex);
      axpy<T>(T(2), std::span<const T>(a), b, ex);
      scale<T>(a, T(0.5), ex);
      sink = sink + sum<T>(std::span<const T>(a), ex) + sum_squares<T>(std::span<const T>(a), ex) +
             dot<T>(std::span<const T>(a), std::span<const T>(b), ex) + norm<T>(std::span<const T>(b), ex) +
             mean_variance<T>(std::span<const T>(a), ex).m2;
    });
    INFO("executor concurrency " << ex.concurrency());
    CHECK(count == 0);
  }
}
