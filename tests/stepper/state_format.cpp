// The saved-state format (bits/stepper/serialize.hpp) through the stepper: every way a file can be
// wrong gives state_error and leaves the stepper exactly as it was.
#include "support/catch.hpp"

#include <stochgrad/stochgrad.hpp>

#include <span>
#include <sstream>
#include <string>
#include <vector>

using namespace stochgrad;

namespace {

// Runs a few Adan steps with a deterministic gradient.
void advance(adan<double>& s, std::vector<double>& x, int steps) {
  std::vector<double> g(x.size());
  for (int k = 0; k < steps; ++k) {
    for (std::size_t i = 0; i < x.size(); ++i) g[i] = 2.0 * x[i] - static_cast<double>(i % 3);
    s.step(std::span<const double>(g));
  }
}

std::string saved(const adan<double>& s) {
  std::ostringstream os;
  s.save(os);
  return os.str();
}

void require_load_fails_untouched(adan<double>& s, const std::string& bytes, const char* what) {
  const std::string before = saved(s);
  const auto steps = s.steps();
  std::istringstream is(bytes);
  INFO(what);
  REQUIRE_THROWS_AS(s.load(is), state_error);
  CHECK(s.steps() == steps);
  CHECK(saved(s) == before);
}

}  // namespace

TEST_CASE("stepper state: kind names all four policies and the scalar type", "[stepper][state]") {
  CHECK(adan<float>::kind() == "first_order/no_baseline/no_normalizer/adan<constant>/float32");
  CHECK(grpo<double>::kind() == "score_function/group_mean/group_std/adam<constant>/float64");
  CHECK(bnpo<double>::kind() == "score_function/bnpo_mean/beta_normalizer/adam<constant>/float64");
}

TEST_CASE("stepper state: corrupt, truncated, foreign and mismatched files are refused", "[stepper][state]") {
  std::vector<double> x(37, 0.5), y(37, 0.5);
  adan<double> a{parameters<double>(std::span<double>(x))};
  advance(a, x, 5);
  const std::string good = saved(a);

  adan<double> b{parameters<double>(std::span<double>(y))};
  advance(b, y, 2);

  SECTION("empty input") { require_load_fails_untouched(b, "", "empty"); }
  SECTION("every truncation") {
    for (std::size_t n : {std::size_t{7}, std::size_t{20}, good.size() / 2, good.size() - 1}) {
      require_load_fails_untouched(b, good.substr(0, n), "truncated");
    }
  }
  SECTION("one flipped byte anywhere is caught by the checksum or the structure") {
    for (std::size_t pos = 0; pos < good.size(); pos += 13) {
      std::string bad = good;
      bad[pos] = static_cast<char>(bad[pos] ^ 0x20);
      require_load_fails_untouched(b, bad, "flipped byte");
    }
  }
  SECTION("another format version") {
    std::string bad = good;
    bad[7] = '2';
    require_load_fails_untouched(b, bad, "version");
  }
  SECTION("not a state file") { require_load_fails_untouched(b, std::string(100, 'x'), "garbage"); }
  SECTION("a state for parameters of another shape") {
    std::vector<double> z(38, 0.5);
    adan<double> c{parameters<double>(std::span<double>(z))};
    require_load_fails_untouched(b, saved(c), "shape");
  }
  SECTION("a state of another composition") {
    std::vector<double> z(37, 0.5);
    stepper<first_order, no_baseline, no_normalizer, optim::adam<>, double> c{parameters<double>(std::span<double>(z))};
    std::ostringstream os;
    c.save(os);
    require_load_fails_untouched(b, os.str(), "composition");
  }
  SECTION("the good file loads and the run continues identically") {
    std::istringstream is(good);
    b.load(is);
    CHECK(b.steps() == 5);
    y = x;
    advance(a, x, 4);
    advance(b, y, 4);
    CHECK(x == y);
  }
}

TEST_CASE("stepper state: a GRPO checkpoint does not load into a BNPO stepper", "[stepper][state]") {
  std::vector<double> x(10, 0.0), y(10, 0.0);
  grpo<double> g{parameters<double>(std::span<double>(x))};
  bnpo<double> b{parameters<double>(std::span<double>(y))};
  std::ostringstream os;
  g.save(os);
  std::istringstream is(os.str());
  REQUIRE_THROWS_AS(b.load(is), state_error);
}

TEST_CASE("stepper state: an SGD state without momentum buffers is refused at load by SGD with momentum",
          "[stepper][state]") {
  using sgd_stepper = stepper<first_order, no_baseline, no_normalizer, optim::sgd<>, double>;
  std::vector<double> x(10, 1.0), y(10, 1.0), g(10, 0.5);
  sgd_stepper plain{parameters<double>(std::span<double>(x)), optim::sgd<>({.lr = 0.1})};
  sgd_stepper heavy{parameters<double>(std::span<double>(y)), optim::sgd<>({.lr = 0.1, .momentum = 0.9})};
  plain.step(std::span<const double>(g));
  std::ostringstream a, b;
  plain.save(a);
  heavy.save(b);
  {
    std::istringstream is(a.str());
    REQUIRE_THROWS_AS(heavy.load(is), state_error);
  }
  {
    std::istringstream is(b.str());
    REQUIRE_THROWS_AS(plain.load(is), state_error);
  }
  CHECK(heavy.steps() == 0);
  CHECK(plain.steps() == 1);
}

TEST_CASE("stepper: the executor constructor gives the same trajectory on a thread pool", "[stepper]") {
  std::vector<float> x(70000, 0.25f), y(70000, 0.25f);
  auto f = [](std::span<const float> v) {
    double s = 0;
    for (float e : v) s += 0.5 * static_cast<double>(e) * static_cast<double>(e);
    return s;
  };
  thread_pool pool(2);
  mezo<float> a(parameters<float>(std::span<float>(x)), optim::sgd<>({.lr = 1e-5}),
                zo::two_point<gaussian>({.seed = 5}), executor(pool));
  mezo<float> b(parameters<float>(std::span<float>(y)), optim::sgd<>({.lr = 1e-5}), zo::two_point<gaussian>({.seed = 5}));
  for (int k = 0; k < 3; ++k) {
    a.step(f);
    b.step(f);
  }
  CHECK(a.exec().concurrency() == 2);
  CHECK(x == y);
  CHECK(x != std::vector<float>(70000, 0.25f));
}
