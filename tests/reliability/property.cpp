// SPDX-License-Identifier: Apache-2.0
// Issue 11, the property test: randomised bad input over the public entry points (policy-gradient
// steps of GRPO / RLOO / BNPO, a zeroth-order and a first-order step, the free advantages(), the
// surrogate and the optimizer / loss / BNPO option validation). Each call either succeeds or throws
// a stochgrad exception type (never another type, never a crash: this runs under ASan+UBSan), and
// a stepper's saved state and parameters before and after a refused call are byte-identical.
// Fixed seed, bounded iterations.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

std::mt19937_64 rng(20261203);

std::size_t pick(std::size_t n) { return static_cast<std::size_t>(rng() % n); }

double bad_value() {
  const double v[] = {nan_v, inf, -inf, 1e308, -1e308, 5e-324, 0.0, -0.0, 1e30, -1e30};
  return v[pick(std::size(v))];
}

// A size near `right`: off by one either way, zero, or (rarely) right.
std::size_t bad_size(std::size_t right) {
  switch (pick(4)) {
    case 0: return right + 1;
    case 1: return right == 0 ? 0 : right - 1;
    case 2: return 0;
    default: return right;
  }
}

// Bitwise equality (the parameters may legitimately be NaN after an accepted extreme batch).
template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class S>
std::string saved(const S& s) {
  std::ostringstream os;
  s.save(os);
  return os.str();
}

struct tally {
  std::size_t ok = 0, refused = 0;
};

// Runs `call`; a stochgrad::error is a refusal, after which `unchanged()` must hold. Anything
// else thrown fails the test.
template <class Call, class Unchanged>
void attempt(tally& t, Call&& call, Unchanged&& unchanged, const std::string& what) {
  try {
    call();
    ++t.ok;
  } catch (const sg::error& e) {
    ++t.refused;
    INFO(what << ": refused with '" << e.what() << "'");
    CHECK(unchanged());
  } catch (const std::exception& e) {
    FAIL(what << ": threw a non-stochgrad exception: " << e.what());
  }
}

// One corrupted policy-gradient batch: one array gets a bad value or a bad size, or the length is off.
template <class S>
void pg_round(S& s, pgtest::addition_rollouts<double>& ro, std::vector<double>& theta, tally& t, int round) {
  ro.draw(theta, 100 + static_cast<std::uint64_t>(round), static_cast<std::uint32_t>(round));
  std::vector<double> rewards(ro.rewards.begin(), ro.rewards.end()), logp = ro.logp;
  std::vector<double> old = logp, ref = logp, mask(ro.S * ro.L, 1.0);
  bool use_old = pick(2) == 0, use_ref = pick(2) == 0, use_mask = pick(2) == 0;
  std::size_t length = ro.L;
  std::string what;
  const std::size_t kind = pick(7);
  std::vector<double>* arrays[] = {&rewards, &logp, &old, &ref, &mask};
  const char* names[] = {"rewards", "logp", "old_logp", "ref_logp", "mask"};
  if (kind < 5) {
    std::vector<double>& a = *arrays[kind];
    if (kind == 2) use_old = true;
    if (kind == 3) use_ref = true;
    if (kind == 4) use_mask = true;
    if (pick(2) == 0) {
      const std::size_t at = pick(a.size());
      a[at] = bad_value();
      what = std::string(names[kind]) + "[" + std::to_string(at) + "] = " + std::to_string(a[at]);
    } else {
      a.resize(bad_size(a.size()));
      what = std::string(names[kind]) + " of size " + std::to_string(a.size());
    }
  } else if (kind == 5) {
    length = bad_size(ro.L);
    what = "length " + std::to_string(length);
  } else {
    what = "a valid batch";
  }
  sg::pg_batch<double> b;
  b.rewards = rewards;
  b.length = length;
  b.logp = logp;
  if (use_old) b.old_logp = old;
  if (use_ref) b.ref_logp = ref;
  if (use_mask) b.mask = mask;
  const std::vector<double> keep = theta;
  const std::string before = saved(s);
  attempt(t, [&] { s.step(b, ro.layout, ro.vjp(theta)); },
          [&] { return same_bytes(theta, keep) && saved(s) == before; }, what);
}

}  // namespace

TEST_CASE("property: policy-gradient steps refuse bad batches with the state untouched", "[reliability][property][pg]") {
  pgtest::addition_rollouts<double> ro(4, 4);
  std::vector<double> t1 = pgtest::warm_theta(ro.pol, 1.5), t2 = t1, t3 = t1;
  sg::grpo<double> grpo(sg::parameters<double>(std::span<double>(t1)), sg::optim::adam<>({.lr = 1e-2}),
                        sg::score_function<>(sg::surrogate_options{.delta = 1.5}, {.iterations = 2}));
  sg::rloo<double> rloo(sg::parameters<double>(std::span<double>(t2)), sg::optim::adam<>({.lr = 1e-2}));
  sg::bnpo<double> bnpo(sg::parameters<double>(std::span<double>(t3)), sg::optim::adam<>({.lr = 1e-2}));
  tally t;
  for (int round = 0; round < 200; ++round) {
    pg_round(grpo, ro, t1, t, round);
    pg_round(rloo, ro, t2, t, round);
    pg_round(bnpo, ro, t3, t, round);
  }
  // Wrapped and zero layouts are refused where the layout is built.
  CHECK_THROWS_AS(sg::group_layout::contiguous(std::size_t{1} << 33, std::size_t{1} << 31), sg::invalid_argument);
  CHECK_THROWS_AS(sg::group_layout::contiguous(4, 0), sg::invalid_argument);
  // A layout of another size than the batch.
  const std::string before = saved(grpo);
  const std::vector<double> keep = t1;
  ro.draw(t1, 7, 0);
  CHECK_THROWS_AS(grpo.step(ro.batch(), sg::group_layout::contiguous(5, 4), ro.vjp(t1)), sg::size_mismatch);
  CHECK(saved(grpo) == before);
  CHECK(same_bytes(t1, keep));
  INFO("accepted " << t.ok << ", refused " << t.refused);
  CHECK(t.refused > 100);  // most rounds corrupt something
  CHECK(t.ok > 10);        // and the valid ones went through
}

TEST_CASE("property: advantages() succeeds or throws a stochgrad error", "[reliability][property][outcome]") {
  tally t;
  for (int round = 0; round < 2000; ++round) {
    const std::size_t P = 1 + pick(4), G = 1 + pick(5), N = P * G;
    std::vector<double> r(N);
    for (double& x : r) x = static_cast<double>(pick(3)) / 2.0;
    if (pick(2) == 0) r[pick(N)] = bad_value();
    std::vector<double> adv(pick(4) == 0 ? bad_size(N) : N, 7.0);
    const std::vector<double> adv_before = adv;
    const sg::group_layout g = sg::group_layout::contiguous(P, G);
    // A refusal leaves `adv` as it was, except after a policy's own late throw (BNPO's
    // reference-compatible fit of saturated prompts: `adv` may then hold the baseline).
    auto run = [&](const auto& b, const auto& n) {
      bool late = false;
      attempt(t,
              [&] {
                try {
                  sg::advantages(b, n, std::span<const double>(r), g, std::span<double>(adv));
                } catch (const sg::invalid_argument& e) {
                  late = std::string(e.what()).find("beta_normalizer (reference_compatible)") != std::string::npos;
                  throw;
                }
              },
              [&] { return late || same_bytes(adv, adv_before); }, "advantages");
      adv = adv_before;
    };
    sg::bnpo_options o;
    o.reference_compatible = pick(2) == 0;
    switch (pick(6)) {
      case 0: run(sg::group_mean{}, sg::group_std{}); break;
      case 1: run(sg::leave_one_out{}, sg::no_normalizer{}); break;
      case 2: run(sg::no_baseline{}, sg::batch_whiten{}); break;
      case 3: run(sg::group_mean::verl(), sg::batch_std{pick(3) == 0 ? bad_value() : 1e-4}); break;
      case 4: run(sg::bnpo_mean{o}, sg::beta_normalizer(o)); break;
      default: run(sg::group_mean{}, sg::group_std{pick(2) == 0 ? -1.0 : 1e-6, false}); break;
    }
  }
  CHECK(t.refused > 50);
  CHECK(t.ok > 50);
}

TEST_CASE("property: zeroth-order and first-order steps refuse bad input with the state untouched", "[reliability][property][zo]") {
  tally t;
  std::vector<float> x(41, 0.3f);
  sg::mezo<float> m(sg::parameters<float>(std::span<float>(x)), sg::optim::sgd<>({.lr = 1e-3}),
                    sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 3}));
  std::vector<double> y(33, 0.2);
  sg::adan<double> a(sg::parameters<double>(std::span<double>(y)), sg::optim::adan<>({.lr = 1e-2, .skip_nonfinite = true}));
  for (int round = 0; round < 500; ++round) {
    // ZO: an objective that returns a bad value at a random evaluation, or a span objective of
    // the right shape.
    const int bad_at = static_cast<int>(pick(3)) - 1;  // -1: never
    const double bad = bad_value();
    int calls = 0;
    auto f = [&](std::span<const float> v) {
      if (calls++ == bad_at) return bad;
      double s = 0.0;
      for (float e : v) s += 0.5 * static_cast<double>(e) * static_cast<double>(e);
      return s;
    };
    {
      const std::vector<float> keep = x;
      const std::string before = saved(m);
      attempt(t, [&] { m.step(f); }, [&] { return same_bytes(x, keep) && saved(m) == before; }, "mezo step");
    }
    // First order: a gradient of a bad size or with a bad value (skip_nonfinite skips those).
    std::vector<double> g(pick(3) == 0 ? bad_size(y.size()) : y.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = y[i % y.size()] - 0.1;
    if (!g.empty() && pick(2) == 0) g[pick(g.size())] = bad_value();
    const std::vector<double> keep = y;
    const std::string before = saved(a);
    attempt(t, [&] { a.step(std::span<const double>(g)); }, [&] { return same_bytes(y, keep) && saved(a) == before; },
            "adan step");
  }
  CHECK(t.refused > 20);
  CHECK(t.ok > 20);
}

TEST_CASE("property: invalid options are refused with a stochgrad error", "[reliability][property][options]") {
  tally t;
  auto none = [] { return true; };
  for (int round = 0; round < 1000; ++round) {
    const double v = pick(2) == 0 ? bad_value() : (static_cast<double>(pick(7)) - 3.0) / 2.0;
    switch (pick(8)) {
      case 0: attempt(t, [&] { (void)sg::clipped_surrogate(sg::surrogate_options{.eps_low = v}); }, none, "eps_low"); break;
      case 1: attempt(t, [&] { (void)sg::clipped_surrogate(sg::surrogate_options{.delta = v}); }, none, "delta"); break;
      case 2: attempt(t, [&] { (void)sg::clipped_surrogate(sg::surrogate_options{.beta = v}); }, none, "beta"); break;
      case 3: attempt(t, [&] { (void)sg::optim::adam<>({.lr = v}); }, none, "adam lr"); break;
      case 4: attempt(t, [&] { (void)sg::optim::adan<>({.lr = 1e-3, .beta1 = v}); }, none, "adan beta1"); break;
      case 5: {
        sg::bnpo_options o;
        o.max_value = v;
        attempt(t, [&] { (void)sg::beta_normalizer(o); }, none, "bnpo max_value");
        break;
      }
      case 6: attempt(t, [&] { (void)sg::score_function<>(sg::score_function_options{.final_eps = v}); }, none, "final_eps"); break;
      default: {
        std::vector<float> w(8, 1.0f);
        sg::parameters<float> ps;
        ps.add(std::span<float>(w));
        attempt(t, [&] { ps.add_group({.name = "g", .lr_scale = v}); }, none, "lr_scale");
        break;
      }
    }
  }
  CHECK(t.refused > 50);
  CHECK(t.ok > 50);
}
