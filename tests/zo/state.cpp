// SPDX-License-Identifier: Apache-2.0
// State of zeroth-order steppers: save -> load -> continue is bitwise identical to an
// uninterrupted run (step counter, call counter / seeds, pending perturbation, momentum, schedule
// position, fixed masks); the replay log reconstructs a run exactly without the objective; the
// per-step seeds are a pure function of (master seed, call number).
#include <cmath>
#include <cstdint>
#include <sstream>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;

namespace {

template <class T>
std::vector<T> start(std::size_t n) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(0.5 * std::sin(0.1 * static_cast<double>(i)) + 0.2);
  return x;
}

// A loss with a NaN at one chosen evaluation (to put a skipped step into runs).
template <class T>
struct loss {
  int nan_at = -1;
  int calls = 0;
  double operator()(std::span<const T> x) {
    if (calls++ == nan_at) return std::nan("");
    double f = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = static_cast<double>(x[i]) - 0.1 * static_cast<double>(i % 5);
      f += 0.5 * v * v + 0.1 * v * v * v * v;
    }
    return f;
  }
};

// Runs `total` steps; saves after `cut` steps; resumes a second stepper from the saved state and
// parameters; returns true when both end bitwise equal (parameters, losses, state bytes).
template <class S, class Make>
void check_resume(Make make, std::size_t n, int cut, int total) {
  using T = typename S::value_type;
  std::vector<T> x = start<T>(n);
  S a = make(std::span<T>(x));
  loss<T> fa;
  for (int k = 0; k < cut; ++k) a.step(fa);
  std::stringstream saved;
  a.save(saved);
  std::vector<T> y = x;  // the parameters as they are at the cut (pending perturbation included)
  std::vector<double> la, lb;
  for (int k = cut; k < total; ++k) la.push_back(a.step(fa).loss_plus);
  S b = make(std::span<T>(y));
  b.load(saved);
  loss<T> fb;
  for (int k = cut; k < total; ++k) lb.push_back(b.step(fb).loss_plus);
  CHECK(la == lb);
  CHECK(zo_test::same_bits<T>(x, y));
  std::stringstream sa, sb;
  a.save(sa);
  b.save(sb);
  CHECK(sa.str() == sb.str());
}

}  // namespace

TEMPLATE_TEST_CASE("save, load and resume bit-identically", "[zo][state]", float, double) {
  using T = TestType;
  SECTION("mezo, fused_next (pending perturbation saved), SGD momentum, weight decay") {
    auto make = [](std::span<T> x) {
      return mezo<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2, .momentum = 0.9, .weight_decay = 1e-3}),
                     zo::two_point<gaussian>({.eps = 1e-3, .q = 2, .seed = 42, .mode = zo::pass_mode::fused_next}));
    };
    check_resume<mezo<T>>(make, 300, 7, 15);
  }
  SECTION("spsa with Spall gains and Nesterov momentum (SPSA-GC)") {
    auto make = [](std::span<T> x) {
      return spall_spsa<T>(parameters<T>(x),
                     optim::sgd<spall_gain>({.lr = 0.05, .momentum = 0.9, .nesterov = true}, spall_gain{5.0, 0.602}),
                     zo::two_point<rademacher, zo::spall_perturbation>({.eps = 0.05, .seed = 3}, {0.101}));
    };
    check_resume<spall_spsa<T>>(make, 100, 9, 20);
  }
  SECTION("gc_spsa: DREAM schedule and adaptive momentum") {
    auto make = [](std::span<T> x) {
      return gc_spsa<T>(parameters<T>(x), zo::gc_spsa_sgd<>({.lr = 1e-3}),
                        zo::two_point<gaussian, zo::dream_schedule>({.eps = 1e-3, .q = 4, .seed = 5},
                                                                    zo::dream_schedule{.steps_per_epoch = 3}));
    };
    check_resume<gc_spsa<T>>(make, 100, 8, 16);
  }
  SECTION("sparse mezo with a fixed mask (bits saved)") {
    using E = zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>;
    auto make = [](std::span<T> x) {
      return sparse_mezo<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2}),
                            E({.eps = 1e-3, .seed = 6}, {}, {.sparsity = 0.5, .dynamic = false}));
    };
    check_resume<sparse_mezo<T>>(make, 200, 5, 12);
  }
  SECTION("rge and cge") {
    auto mk_rge = [](std::span<T> x) {
      return rge<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-3}), zo::one_sided<unit_sphere>({.eps = 1e-3, .q = 3, .seed = 8}));
    };
    check_resume<rge<T>>(mk_rge, 64, 4, 9);
    auto mk_cge = [](std::span<T> x) { return cge<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2})); };
    check_resume<cge<T>>(mk_cge, 10, 3, 6);
  }
}

TEST_CASE("loading state of another composition or a corrupt file fails and leaves the stepper untouched", "[zo][state]") {
  std::vector<float> x = start<float>(50), y = x;
  mezo<float> a(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 1e-2}), zo::two_point<gaussian>({.seed = 1}));
  spall_spsa<float> b{parameters<float>(std::span<float>(y))};
  loss<float> f;
  a.step(f);
  std::stringstream s;
  a.save(s);
  CHECK_THROWS_AS(b.load(s), state_error);
  CHECK(b.est_state().calls == 0);
  std::string bytes = s.str();
  bytes.resize(bytes.size() - 5);
  std::stringstream t(bytes);
  mezo<float> c{parameters<float>(std::span<float>(y))};
  CHECK_THROWS_AS(c.load(t), state_error);
  CHECK(c.est_state().calls == 0);
  CHECK(c.steps() == 0);
}

TEST_CASE("per-step seeds are a pure function of (master seed, call number)", "[zo][state]") {
  std::vector<float> x = start<float>(40), y = start<float>(40), z = start<float>(40);
  mezo<float> a(parameters<float>(std::span<float>(x)), {}, zo::two_point<gaussian>({.seed = 123}));
  mezo<float> b(parameters<float>(std::span<float>(y)), {}, zo::two_point<gaussian>({.seed = 123}));
  mezo<float> c(parameters<float>(std::span<float>(z)), {}, zo::two_point<gaussian>({.seed = 124}));
  loss<float> f;
  for (std::uint64_t k = 0; k < 20; ++k) {
    const auto ra = a.step(f), rb = b.step(f), rc = c.step(f);
    CHECK(ra.seed == zo::step_seed(123, k));
    CHECK(ra.call == k);
    CHECK(ra.seed == rb.seed);
    CHECK(ra.seed != rc.seed);
  }
  CHECK(zo_test::same_bits<float>(x, y));
  // The derivation is Philox4x32-10 of (call, 0, "ZOSE", 0) keyed by the master seed.
  const philox_block o = philox4x32<10>({5u, 0u, 0x5A4F5345u, 0u}, {123u, 0u});
  CHECK(zo::step_seed(123, 5) == ((static_cast<std::uint64_t>(o[1]) << 32) | o[0]));
  STATIC_REQUIRE(zo::step_seed(1, 2) == zo::step_seed(1, 2));  // constexpr
}

TEMPLATE_TEST_CASE("the replay log reconstructs a run exactly, without the objective", "[zo][state][replay]", float,
                   double) {
  using T = TestType;
  auto check = [](auto make, std::size_t n, int steps, int nan_at) {
    std::vector<T> x = start<T>(n), y = x;
    auto a = make(std::span<T>(x));
    zo::replay_log log;
    loss<T> f{nan_at};
    int skipped = 0;
    for (int k = 0; k < steps; ++k) {
      const zo::step_report r = a.step(f);
      skipped += r.nonfinite ? 1 : 0;
      log.record(r);
    }
    CHECK(skipped == (nan_at >= 0 ? 1 : 0));
    // Through the file format too.
    std::stringstream file;
    log.save(file);
    zo::replay_log loaded;
    loaded.load(file);
    REQUIRE(loaded == log);
    auto b = make(std::span<T>(y));
    zo::replay(b, loaded);
    CHECK(zo_test::same_bits<T>(x, y));
    CHECK(b.steps() == a.steps());
    std::stringstream sa, sb;
    a.save(sa);
    b.save(sb);
    CHECK(sa.str() == sb.str());
  };
  SECTION("mezo fused_next, q = 2, momentum, a skipped step") {
    check([](std::span<T> x) {
      return mezo<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2, .momentum = 0.9}),
                     zo::two_point<gaussian>({.eps = 1e-3, .q = 2, .seed = 77, .mode = zo::pass_mode::fused_next}));
    }, 500, 25, 21);
  }
  SECTION("spsa (the (seed, scalar) pairs of Spall SPSA)") {
    check([](std::span<T> x) {
      return spall_spsa<T>(parameters<T>(x), optim::sgd<spall_gain>({.lr = 0.1}, spall_gain{10.0, 0.602}),
                     zo::two_point<rademacher, zo::spall_perturbation>({.eps = 0.1, .seed = 9}));
    }, 100, 30, -1);
  }
  SECTION("sparse mezo and cge") {
    using E = zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>;
    check([](std::span<T> x) {
      return sparse_mezo<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2, .weight_decay = 0.1}),
                            E({.eps = 1e-3, .seed = 10}, {}, {.sparsity = 0.7}));
    }, 300, 15, 3);
    check([](std::span<T> x) { return cge<T>(parameters<T>(x), optim::sgd<>({.lr = 1e-2})); }, 8, 6, 5);
  }
}

TEST_CASE("replay refuses a log that does not start at the stepper's state", "[zo][state][replay]") {
  std::vector<float> x = start<float>(20), y = x;
  mezo<float> a{parameters<float>(std::span<float>(x))};
  zo::replay_log log;
  loss<float> f;
  for (int k = 0; k < 3; ++k) log.record(a.step(f));
  mezo<float> b{parameters<float>(std::span<float>(y))};
  CHECK_THROWS_AS(zo::replay(b, log, 1), state_error);  // entry for call 1, stepper at call 0
  CHECK_NOTHROW(zo::replay(b, log, 0, 2));
  CHECK(b.est_state().calls == 2);
  CHECK_NOTHROW(zo::replay(b, log, 2));
  CHECK(zo_test::same_bits<float>(x, y));
  std::stringstream junk("not a log");
  zo::replay_log l2;
  CHECK_THROWS_AS(l2.load(junk), state_error);
}
