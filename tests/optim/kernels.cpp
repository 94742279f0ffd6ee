// SPDX-License-Identifier: Apache-2.0
// Properties of the fused optimizer kernels: results bitwise independent of the thread count;
// the SIMD body and the scalar tail compute the same bits; a lazy noise-direction gradient gives
// bitwise the same update as its materialised dense copy (so MeZO+Adan needs no gradient buffer);
// no heap allocation per step; the skip-on-non-finite guard leaves everything untouched.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <span>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "optim/util.hpp"
#include "support/catch.hpp"

#include "support/alloc_counter.hpp"

using namespace stochgrad;
using sg_test::first_mismatch;
using sg_test::wave;

namespace {

using ztype = noise_gradient<gaussian, default_generator, float>;

// Every optimizer configuration the kernel tests run, by index.
constexpr int n_configs = 8;

// Calls f(optimizer) for configuration `which`; every branch of the kernels is exercised.
template <class F>
void with_optimizer(int which, F&& f) {
  switch (which) {
    case 0: f(optim::sgd<>(optim::sgd_options{.lr = 0.05})); break;
    case 1: f(optim::sgd<>(optim::sgd_options{.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01})); break;
    case 2: f(optim::sgd<>(optim::sgd_options{.lr = 0.05, .momentum = 0.9, .nesterov = true, .max_grad_norm = 3.0})); break;
    case 3: f(optim::adam<>(optim::adam_options{.lr = 0.01, .weight_decay = 0.01, .max_grad_norm = 2.0})); break;
    case 4: f(optim::adamw<>(optim::adamw_options{.lr = 0.01, .beta1 = 0.3})); break;  // torch's other lerp branch
    case 5: f(optim::adan<>(optim::adan_options{.lr = 0.01, .weight_decay = 0.02, .max_grad_norm = 5.0})); break;
    case 6: f(optim::adan<>(optim::adan_options{.lr = 0.01, .weight_decay = 0.02, .no_prox = true})); break;
    default: f(optim::adan<>(optim::adan_options{.lr = 0.01, .weight_decay = 0.02, .optax_compat = true})); break;
  }
}

// Tensors of awkward lengths (chunk multiples, tails, several thread tasks of 65536 elements).
const std::vector<std::size_t> sizes{140003, 64, 1, 4099, 66000};

template <class T>
struct problem {
  std::vector<std::vector<T>> x;
  parameters<T> p;
  explicit problem(const std::vector<std::size_t>& n) {
    for (std::size_t t = 0; t < n.size(); ++t) x.push_back(wave<T>(n[t], 1.0, 0.3 * static_cast<double>(t)));
    for (auto& v : x) p.add(std::span<T>(v));
  }
};

template <class T>
std::vector<std::vector<T>> dense_grads(const std::vector<std::size_t>& n, std::size_t k) {
  std::vector<std::vector<T>> g;
  for (std::size_t t = 0; t < n.size(); ++t) g.push_back(wave<T>(n[t], 0.7, 1.3 * static_cast<double>(k) + 0.1 * static_cast<double>(t)));
  return g;
}

template <class T>
std::vector<std::span<const T>> spans_of(const std::vector<std::vector<T>>& g) {
  return std::vector<std::span<const T>>(g.begin(), g.end());
}

}  // namespace

TEMPLATE_TEST_CASE("optimizer results are bitwise identical for 1, 2, 3 and 4 threads", "[optim][kernels]", float, double) {
  using T = TestType;
  for (int which = 0; which < n_configs; ++which) {
    with_optimizer(which, [&](const auto& opt) {
      std::vector<std::vector<std::vector<T>>> results;
      for (unsigned threads : {1u, 2u, 3u, 4u}) {
        thread_pool pool(threads);
        problem<T> pr(sizes);
        auto s = opt.init(pr.p);
        for (std::size_t k = 0; k < 4; ++k) {
          const auto g = dense_grads<T>(sizes, k);
          const auto sp = spans_of(g);
          step_context ctx;
          ctx.step = k;
          ctx.ex = executor(pool);
          opt.update(pr.p, s, dense_gradient<T>(std::span<const std::span<const T>>(sp)), ctx);
          // and a lazy multi-term noise source (its norm pass is threaded too)
          const noise_term terms[2] = {{11, static_cast<std::uint32_t>(k), 0.3}, {12, 0, -0.2}};
          opt.update(pr.p, s, noise_gradient<gaussian, default_generator, T>(std::span<const noise_term>(terms)), ctx);
        }
        results.push_back(pr.x);
      }
      for (std::size_t r = 1; r < results.size(); ++r) {
        INFO("config " << which << ", thread count index " << r);
        REQUIRE(first_mismatch(results[0], results[r]) == -1);
      }
    });
  }
}

TEMPLATE_TEST_CASE("the SIMD body and the scalar tail compute the same bits", "[optim][kernels]", float, double) {
  using T = TestType;
  // The same 1000 numbers as one tensor (SIMD chunks + a short tail) and as 1000 one-element
  // tensors (scalar path only). Clipping is off here: its norm is summed in a layout-dependent order.
  const std::size_t n = 1000;
  for (int which = 0; which < n_configs; ++which) {
    if (which == 2 || which == 3 || which == 5) continue;  // configurations with clipping
    with_optimizer(which, [&](const auto& opt) {
      std::vector<T> big = wave<T>(n, 1.0, 0.2);
      std::vector<T> small = big;
      parameters<T> pb{std::span<T>(big)}, ps;
      for (std::size_t i = 0; i < n; ++i) ps.add(std::span<T>(small.data() + i, 1));
      auto sb = opt.init(pb);
      auto ss = opt.init(ps);
      for (std::size_t k = 0; k < 5; ++k) {
        const auto g = wave<T>(n, 0.6, 0.9 * static_cast<double>(k));
        std::vector<std::span<const T>> gs;
        for (std::size_t i = 0; i < n; ++i) gs.emplace_back(g.data() + i, 1);
        step_context ctx;
        ctx.step = k;
        opt.update(pb, sb, dense_gradient<T>(std::span<const T>(g)), ctx);
        opt.update(ps, ss, dense_gradient<T>(std::span<const std::span<const T>>(gs)), ctx);
      }
      INFO("config " << which);
      REQUIRE(first_mismatch(big, small) == -1);
    });
  }
}

TEMPLATE_TEST_CASE("a lazy noise gradient gives bitwise the update of its materialised copy", "[optim][kernels][lazy]",
                   float, double) {
  using T = TestType;
  for (int which = 0; which < n_configs; ++which) {
    with_optimizer(which, [&](const auto& opt) {
      for (int q : {1, 3}) {
        problem<T> lazy(sizes), dense(sizes);
        auto sl = opt.init(lazy.p);
        auto sd = opt.init(dense.p);
        std::vector<std::vector<T>> buf(sizes.size());
        for (std::size_t t = 0; t < sizes.size(); ++t) buf[t].resize(sizes[t]);
        std::vector<std::span<T>> out(buf.begin(), buf.end());
        for (std::size_t k = 0; k < 3; ++k) {
          // MeZO-like: projected gradient times z(seed_k); q > 1: several directions (n-SPSA/ES).
          const noise_term terms[3] = {{100 + k, 0, 0.8}, {200 + k, 1, -0.5}, {300 + k, 2, 0.25}};
          const noise_gradient<gaussian, default_generator, T> z(std::span<const noise_term>(terms, static_cast<std::size_t>(q)));
          materialize(dense.p, z, std::span<const std::span<T>>(out));
          const auto sp = spans_of(buf);
          step_context ctx;
          ctx.step = k;
          opt.update(lazy.p, sl, z, ctx);
          opt.update(dense.p, sd, dense_gradient<T>(std::span<const std::span<const T>>(sp)), ctx);
        }
        INFO("config " << which << ", q = " << q);
        REQUIRE(first_mismatch(lazy.x, dense.x) == -1);
      }
    });
  }
}

TEMPLATE_TEST_CASE("no heap allocation per step (dense and lazy sources, 1 and 2 threads)", "[optim][kernels][alloc]",
                   float, double) {
  using T = TestType;
  thread_pool pool(2);
  for (int which = 0; which < n_configs; ++which) {
    with_optimizer(which, [&](const auto& opt) {
      problem<T> pr(sizes);
      auto s = opt.init(pr.p);  // state is allocated here
      const auto g = dense_grads<T>(sizes, 0);
      const auto sp = spans_of(g);
      const dense_gradient<T> dense{std::span<const std::span<const T>>(sp)};
      const noise_gradient<gaussian, default_generator, T> lazy(7, 0, 0.1);
      step_context ctx;
      opt.update(pr.p, s, dense, ctx);  // warm-up (not needed, but makes the claim stricter)
      const long before = alloc_counter::count.load();
      for (std::uint64_t k = 1; k < 4; ++k) {
        ctx.step = k;
        ctx.ex = (k % 2 == 0) ? executor(pool) : executor();
        opt.update(pr.p, s, dense, ctx);
        opt.update(pr.p, s, lazy, ctx);
      }
      const long after = alloc_counter::count.load();
      INFO("config " << which);
      REQUIRE(after - before == 0);
    });
  }
  // The counter works (the check above can fail).
  const long before = alloc_counter::count.load();
  auto* v = new std::vector<T>(10);
  delete v;
  REQUIRE(alloc_counter::count.load() - before >= 2);
}

TEMPLATE_TEST_CASE("skip_nonfinite: a NaN/inf gradient leaves parameters, state and counters untouched",
                   "[optim][kernels][nonfinite]", float, double) {
  using T = TestType;
  const T bad[3] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                    -std::numeric_limits<T>::infinity()};
  for (const T b : bad) {
    auto run = [&](auto make) {
      // run A sees g1, a bad gradient (skipped), g2; run B sees g1, g2.
      const auto opt = make(true);
      problem<T> a(sizes), ref(sizes);
      auto sa = opt.init(a.p);
      auto sr = opt.init(ref.p);
      const auto g1 = dense_grads<T>(sizes, 1), g2 = dense_grads<T>(sizes, 2);
      auto gbad = dense_grads<T>(sizes, 3);
      gbad[4][12345] = b;
      const auto s1 = spans_of(g1), s2 = spans_of(g2), sbad = spans_of(gbad);
      step_context ctx;
      opt.update(a.p, sa, dense_gradient<T>(std::span<const std::span<const T>>(s1)), ctx);
      opt.update(ref.p, sr, dense_gradient<T>(std::span<const std::span<const T>>(s1)), ctx);
      const auto x_before = a.x;
      const auto steps_before = sa.steps;
      const update_report r = opt.update(a.p, sa, dense_gradient<T>(std::span<const std::span<const T>>(sbad)), ctx);
      REQUIRE(!r.applied);
      REQUIRE(first_mismatch(a.x, x_before) == -1);
      REQUIRE(sa.steps == steps_before);
      // a lazy source with a non-finite coefficient is skipped too
      REQUIRE(!opt.update(a.p, sa, noise_gradient<gaussian, default_generator, T>(1, 0, static_cast<double>(b)), ctx).applied);
      REQUIRE(first_mismatch(a.x, x_before) == -1);
      opt.update(a.p, sa, dense_gradient<T>(std::span<const std::span<const T>>(s2)), ctx);
      opt.update(ref.p, sr, dense_gradient<T>(std::span<const std::span<const T>>(s2)), ctx);
      REQUIRE(first_mismatch(a.x, ref.x) == -1);
      // Without the guard, the reference behaviour: the bad value propagates (documented).
      const auto unguarded = make(false);
      problem<T> u(sizes);
      auto su = unguarded.init(u.p);
      REQUIRE(unguarded.update(u.p, su, dense_gradient<T>(std::span<const std::span<const T>>(sbad)), ctx).applied);
      REQUIRE(!std::isfinite(u.x[4][12345]));
    };
    run([](bool skip) { return optim::sgd<>(optim::sgd_options{.lr = 0.1, .momentum = 0.9, .skip_nonfinite = skip}); });
    run([](bool skip) { return optim::adam<>(optim::adam_options{.skip_nonfinite = skip}); });
    run([](bool skip) { return optim::adamw<>(optim::adamw_options{.skip_nonfinite = skip}); });
    run([](bool skip) { return optim::adan<>(optim::adan_options{.max_grad_norm = 1.0, .skip_nonfinite = skip}); });
  }
}

TEST_CASE("global-norm clipping of huge finite float gradients scales them, not to zero", "[optim][kernels][nonfinite]") {
  std::vector<float> x(100, 1.0f), g(100, 1e20f);  // ||g|| = 1e21 in double; g^2 overflows float
  parameters<float> p{std::span<float>(x)};
  const optim::sgd<> opt(optim::sgd_options{.lr = 0.5, .max_grad_norm = 1.0});
  auto s = opt.init(p);
  const update_report r = opt.update(p, s, dense_gradient<float>(std::span<const float>(g)), step_context{});
  REQUIRE(r.applied);
  REQUIRE_THAT(r.clip_factor, Catch::Matchers::WithinRel(1e-21, 1e-5));
  // Clipped gradient: every element 1/sqrt(100) = 0.1, so x = 1 - 0.5 * 0.1.
  for (float xi : x) REQUIRE_THAT(xi, Catch::Matchers::WithinRel(0.95f, 1e-6f));
}

TEST_CASE("skip_nonfinite does not skip finite gradients whose squared norm overflows", "[optim][kernels][nonfinite]") {
  std::vector<float> x(100, 1.0f), g(100, 1e20f);  // g^2 overflows float, g is finite
  parameters<float> p{std::span<float>(x)};
  const optim::sgd<> opt(optim::sgd_options{.lr = 1e-20, .skip_nonfinite = true});
  auto s = opt.init(p);
  const update_report r = opt.update(p, s, dense_gradient<float>(std::span<const float>(g)), step_context{});
  REQUIRE(r.applied);
  // The norm is accumulated in double, so it is finite: sqrt(100) * 1e20 (float 1e20 is exact to 1e-7).
  REQUIRE_THAT(r.grad_norm, Catch::Matchers::WithinRel(1e21, 1e-6));
  for (float xi : x) REQUIRE(std::abs(xi) <= 1e-6f);  // 1 - 1e-20 * 1e20
}
