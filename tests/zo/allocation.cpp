// SPDX-License-Identifier: Apache-2.0
// Zero heap allocation per step (counting global allocator): after construction, a step of mezo
// and spsa with SGD (also with momentum, q > 1, every pass mode, 1 or 2 threads) allocates
// nothing; so do the other zeroth-order compositions (Sparse MeZO, RGE, CGE, ES shaping,
// GC-SPSA). The extra memory of mezo/spsa with plain SGD is O(1) beyond the parameters: their
// sized state holds O(q) scalars (checked below), no parameter-sized buffer.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

#include "support/alloc_counter.hpp"

using namespace stochgrad;

namespace {

// Counts the allocations made from its construction to count().
struct counting {
  long start = alloc_counter::count.load();
  long count() const { return alloc_counter::count.load() - start; }
};

template <class S>
long allocations_per_steps(S& s, int steps) {
  using T = typename S::value_type;
  auto f = [](const parameters<T>& p) {
    double r = 0;
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      for (T v : p.tensor(t)) r += static_cast<double>(v) * static_cast<double>(v);
    }
    return r;
  };
  s.step(f);  // warm-up outside the count (nothing should allocate there either, but it may size scratch once)
  counting c;
  for (int k = 0; k < steps; ++k) s.step(f);
  return c.count();
}

template <class T>
struct two_tensors {
  std::vector<T> a = std::vector<T>(100003, T(0.5));
  std::vector<T> b = std::vector<T>(17, T(-0.25));
  parameters<T> p() {
    parameters<T> q;
    q.add(a);
    q.add(b, q.add_group({.name = "bias", .decay = false}));
    return q;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("mezo and spsa with SGD: no heap allocation per step", "[zo][alloc]", float, double) {
  using T = TestType;
  thread_pool pool(2);
  for (auto mode : {zo::pass_mode::reference, zo::pass_mode::fused, zo::pass_mode::fused_next}) {
    for (bool threads : {false, true}) {
      const executor ex = threads ? executor(pool) : executor();
      two_tensors<T> m;
      mezo<T> s(m.p(), optim::sgd<>({.lr = 1e-4, .momentum = 0.9, .weight_decay = 1e-2}),
                zo::two_point<gaussian>({.eps = 1e-3, .q = 3, .seed = 1, .mode = mode}), {}, {}, ex);
      CHECK(allocations_per_steps(s, 5) == 0);
      two_tensors<T> n;
      spall_spsa<T> t(n.p(), optim::sgd<spall_gain>({.lr = 1e-2, .momentum = 0.9, .nesterov = true}, spall_gain{10, 0.602}),
                zo::two_point<rademacher, zo::spall_perturbation>({.eps = 0.01, .seed = 2, .mode = mode}), {}, {}, ex);
      CHECK(allocations_per_steps(t, 5) == 0);
    }
  }
}

TEMPLATE_TEST_CASE("other zeroth-order compositions: no heap allocation per step", "[zo][alloc]", float, double) {
  using T = TestType;
  SECTION("sparse mezo") {
    two_tensors<T> m;
    sparse_mezo<T> s(m.p(), optim::sgd<>({.lr = 1e-4}));
    CHECK(allocations_per_steps(s, 3) == 0);
  }
  SECTION("rge") {
    two_tensors<T> m;
    rge<T> s(m.p(), optim::sgd<>({.lr = 1e-6}), zo::one_sided<unit_sphere>({.q = 2}));
    CHECK(allocations_per_steps(s, 3) == 0);
  }
  SECTION("antithetic ES shaping (group mean, group std) and Adam") {
    two_tensors<T> m;
    stepper<zo::two_point<gaussian>, group_mean, group_std, optim::adam<>, T> s(m.p(), optim::adam<>({.lr = 1e-4}),
                                                                               zo::two_point<gaussian>({.q = 4}));
    CHECK(allocations_per_steps(s, 3) == 0);
  }
  SECTION("gc_spsa") {
    two_tensors<T> m;
    gc_spsa<T> s(m.p(), zo::gc_spsa_sgd<>({.lr = 1e-4}),
                 zo::two_point<gaussian, zo::dream_schedule>({.q = 4}, zo::dream_schedule{.steps_per_epoch = 1}));
    CHECK(allocations_per_steps(s, 6) == 0);
  }
  SECTION("cge") {
    std::vector<T> x(20, T(0.5));
    cge<T> s(parameters<T>(std::span<T>(x)), optim::sgd<>({.lr = 1e-4}));
    CHECK(allocations_per_steps(s, 3) == 0);
  }
}

TEST_CASE("mezo's sized state is O(q) scalars, independent of the parameter count", "[zo][alloc]") {
  std::vector<float> big(1 << 20, 0.5f);
  mezo<float> s(parameters<float>(std::span<float>(big)), optim::sgd<>({.lr = 1e-4}), zo::two_point<gaussian>({.q = 2}));
  const auto& st = s.est_state();
  CHECK(st.outcomes.size() == 4);
  CHECK(st.coefs.size() == 2);
  CHECK(st.terms.size() == 2);
  CHECK(st.mask.words.empty());
  CHECK(s.opt_state().momentum_buffer.empty());  // plain SGD keeps no buffer at all
}
