// SPDX-License-Identifier: Apache-2.0
// The run loop (bits/stepper/run.hpp) and the stepper's running totals: every stop rule ends the
// run at the round the file comment's schedule says (the counts below are worked out by hand from
// that schedule: budget check, monitor round every k steps, one step), evaluations are counted
// honestly (objective calls = stepper totals + monitor evaluations), a run makes the same
// trajectory as the hand-written loop, keep_best restores the best monitored iterate bit for bit,
// callbacks stop a run, bad options are refused before anything changes, and the progress bar
// writes no '\r' on a stream that is not a terminal.
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <stochgrad/problems.hpp>
#include <stochgrad/stochgrad.hpp>

#include "pg/steppers_support.hpp"
#include "support/alloc_counter.hpp"
#include "support/bitwise.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;
using sgtest::same_bits;

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

// 0.5 |x|^2 with a call counter.
struct counted_quadratic {
  std::uint64_t* calls;
  double operator()(std::span<const double> v) const {
    ++*calls;
    double s = 0;
    for (double e : v) s += 0.5 * e * e;
    return s;
  }
};

// The parameters' bytes at every monitor round, keyed by the run's step count.
struct snapshots {
  std::map<std::uint64_t, std::vector<double>> at;
  std::vector<double> losses;
  template <class S>
  void on_monitor(const S& s, double loss, const sg::run_report& r) {
    const auto t = s.params().tensor(0);
    at[r.steps] = std::vector<double>(t.begin(), t.end());
    losses.push_back(loss);
  }
};

// Counts every hook call.
struct hook_counter {
  int begin = 0, steps = 0, monitors = 0, end = 0;
  template <class S>
  void on_begin(S&, const sg::run_options&) { ++begin; }
  template <class S, class R>
  void on_step(const S&, const R&, const sg::run_report&) { ++steps; }
  template <class S>
  void on_monitor(const S&, double, const sg::run_report&) { ++monitors; }
  template <class S>
  void on_end(S&, const sg::run_report&) { ++end; }
};

// A monitor that returns the scripted values in order (then the last one again).
struct scripted_monitor {
  std::vector<double> values;
  std::size_t next = 0;
  double operator()() {
    const double v = values[next < values.size() ? next : values.size() - 1];
    ++next;
    return v;
  }
};

struct stop_at_5 {
  template <class S, class R>
  bool on_step(const S&, const R& rep, const sg::run_report& so_far) {
    static_assert(std::is_same_v<R, sg::zo::step_report>);
    CHECK(rep.evaluations == 2);
    return so_far.steps == 5;
  }
};

struct stop_below {
  bool on_monitor(const auto&, double loss, const sg::run_report&) { return loss < 3.0; }
};

struct check_settled {
  int rounds = 0;
  template <class S>
  void on_monitor(const S& st, double loss, const sg::run_report&) {
    ++rounds;
    CHECK(!st.est_state().pending);
    double v = 0;
    for (double e : st.params().tensor(0)) v += 0.5 * e * e;
    CHECK(v == Approx(loss).epsilon(1e-12));  // the same sum, perhaps contracted differently (FMA)
  }
};

struct reward_log {
  std::vector<double> means;
  template <class S, class R>
  void on_step(const S&, const R& rep, const sg::run_report&) {
    static_assert(std::is_same_v<R, sg::pg_step_report<float>>);
    means.push_back(rep.reward_mean);
  }
};

struct sees_no_report {
  int n = 0;
  template <class S, class R>
  void on_step(const S&, const R&, const sg::run_report&) {
    static_assert(std::is_same_v<R, sg::no_step_report>);
    ++n;
  }
};

std::string saved(const auto& s) {
  std::ostringstream os;
  s.save(os);
  return os.str();
}

}  // namespace

TEST_CASE("run: zeroth order, max_steps, evaluations counted honestly", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(16, 1.0), twin(16, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
  sg::mezo<double> ref(twin, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});

  SECTION("monitor every 3 steps, final monitor") {
    // Rounds 0..9 step; monitor rounds at 0, 3, 6, 9, then the final monitor at 10 (not a
    // multiple of 3): 5 monitor evaluations, 10 x 2 step evaluations.
    const sg::run_report r = sg::run(m, f, {.max_steps = 10, .monitor_every = 3});
    CHECK(r.reason == sg::stop_reason::max_steps);
    CHECK(r.message == "max_steps: 10 steps done");
    CHECK(r.steps == 10);
    CHECK(r.step_evaluations == 20);
    CHECK(r.monitor_evaluations == 5);
    CHECK(r.monitor_rounds == 5);
    CHECK(r.evaluations == 25);
    CHECK(calls == 25);
    CHECK(m.totals().evaluations == 20);
    CHECK(calls == m.totals().evaluations + r.monitor_evaluations);
    CHECK(m.totals().applied == 10);
    CHECK(m.totals().skipped == 0);
    CHECK(r.applied == 10);
    CHECK(r.skipped == 0);
    CHECK(r.final_loss_step == 10);
    CHECK(m.steps() == 10);
    // The final loss is f at the parameters the run leaves; the monitor changed nothing: the
    // trajectory is the hand-written loop's, bit for bit.
    for (int k = 0; k < 10; ++k) ref.step(f);
    CHECK(same_bits(x, twin));
    std::uint64_t dummy = 0;
    CHECK(r.final_loss == counted_quadratic{&dummy}(x));
    CHECK(r.best_loss <= r.final_loss);
    CHECK(r.best_loss < 8.0);  // the start: 0.5 * 16
  }
  SECTION("no final monitor") {
    const sg::run_report r = sg::run(m, f, {.max_steps = 10, .monitor_every = 3, .monitor_at_end = false});
    CHECK(r.monitor_evaluations == 4);
    CHECK(r.final_loss_step == 9);
    CHECK(calls == 24);
  }
  SECTION("a second run continues the totals, reports its own counts") {
    (void)sg::run(m, f, {.max_steps = 4, .monitor_every = 2});  // monitors at 0, 2, 4 (final)
    const sg::run_report r = sg::run(m, f, {.max_steps = 3, .monitor_every = 2});  // 0, 2, 3 (final)
    CHECK(r.steps == 3);
    CHECK(r.step_evaluations == 6);
    CHECK(r.monitor_evaluations == 3);
    CHECK(m.totals().evaluations == 14);
    CHECK(m.totals().applied == 7);
    CHECK(calls == 14 + 3 + 3);
  }
}

TEST_CASE("run: max_evaluations is checked before each round", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  // Evaluations before each round j: 0, 3 (monitor + step), 5, 7, 10 (monitor at 3 + step).
  SECTION("reached exactly") {
    const sg::run_report r = sg::run(m, f, {.max_steps = 0, .max_evaluations = 10, .monitor_every = 3});
    CHECK(r.reason == sg::stop_reason::max_evaluations);
    CHECK(r.steps == 4);
    CHECK(r.evaluations == 10);
    CHECK(r.monitor_evaluations == 2);
    CHECK(r.final_loss_step == 3);  // no final monitor: the budget is spent
    CHECK(calls == 10);
  }
  SECTION("overshot by the last round") {
    const sg::run_report r = sg::run(m, f, {.max_steps = 0, .max_evaluations = 9, .monitor_every = 3});
    CHECK(r.reason == sg::stop_reason::max_evaluations);
    CHECK(r.steps == 4);
    CHECK(r.evaluations == 10);
    CHECK(calls == 10);
  }
  SECTION("max_steps comes first when both are reached") {
    const sg::run_report r = sg::run(m, f, {.max_steps = 4, .max_evaluations = 10, .monitor_every = 3});
    CHECK(r.reason == sg::stop_reason::max_steps);
    CHECK(r.steps == 4);
    CHECK(r.monitor_evaluations == 3);  // 0, 3 and the final monitor at 4
  }
}

TEST_CASE("run: max_seconds on an injected clock", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  int reads = 0;
  // Each reading is one second later: the start reads 0, the budget check of round j reads j + 1,
  // so round 4 (after 4 steps) sees 5 seconds; the end reads 6.
  sg::run_options o{.max_steps = 0, .max_seconds = 5.0, .monitor_every = 10};
  o.clock = [&reads] { return static_cast<double>(reads++); };
  const sg::run_report r = sg::run(m, f, o);
  CHECK(r.reason == sg::stop_reason::max_seconds);
  CHECK(r.steps == 4);
  CHECK(reads == 7);
  CHECK(r.seconds == 6.0);
  CHECK(r.monitor_rounds == 2);  // step 0 and the final monitor at 4
  CHECK(r.message.find("max_seconds") == 0);
}

TEST_CASE("run: monitor rules (tolerance, patience, non-finite) and callbacks", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  const auto step = [&f](auto& s) { return s.step(f); };

  SECTION("tolerance") {
    scripted_monitor mon{{10, 5, 4, 3.95, 1}};
    // Rounds at steps 0, 2, 4, 6: |3.95 - 4| = 0.05 < 0.1 at the fourth.
    const sg::run_report r = sg::run(m, step, mon, {.max_steps = 100, .tolerance = 0.1, .monitor_every = 2});
    CHECK(r.reason == sg::stop_reason::tolerance);
    CHECK(r.steps == 6);
    CHECK(r.monitor_rounds == 4);
    CHECK(r.monitor_evaluations == 4);
    CHECK(r.step_evaluations == 12);
    CHECK(r.evaluations == 16);
    CHECK(r.final_loss == 3.95);
    CHECK(r.best_loss == 3.95);
    CHECK(r.best_step == 6);
    CHECK(m.totals().evaluations == calls);  // the monitor is the caller's here
  }
  SECTION("patience") {
    // best 5, 4; then 4.5 (1), 4 (equal is no improvement: 2), 3.9 (new best), 4.1 (1), 4.2 (2), 4.3 (3).
    scripted_monitor mon{{5, 4, 4.5, 4, 3.9, 4.1, 4.2, 4.3, 0}};
    const sg::run_report r = sg::run(m, step, mon, {.max_steps = 100, .patience = 3, .monitor_every = 1});
    CHECK(r.reason == sg::stop_reason::patience);
    CHECK(r.steps == 7);
    CHECK(r.monitor_rounds == 8);
    CHECK(r.best_loss == 3.9);
    CHECK(r.best_step == 4);
    CHECK(r.final_loss == 4.3);
  }
  SECTION("early_stop callback with min_delta") {
    // 5, then 4 (improves by 1 > 0.5), 3.8 and 3.6 (not below 4 - 0.5): stop at the fourth round.
    scripted_monitor mon{{5, 4, 3.8, 3.6, 0}};
    sg::callbacks::early_stop es(2, 0.5);
    const sg::run_report r = sg::run(m, step, mon, {.max_steps = 100, .monitor_every = 1}, es);
    CHECK(r.reason == sg::stop_reason::callback);
    CHECK(r.message.find("early_stop") != std::string::npos);
    CHECK(r.steps == 3);
    CHECK(es.best_loss() == 4.0);
    CHECK(es.rounds_without_improvement() == 2);
    CHECK(r.best_loss == 3.6);  // the run's own best has no min_delta
  }
  SECTION("non-finite monitored loss") {
    scripted_monitor mon{{3, 2, nan_v, 1}};
    const sg::run_report r = sg::run(m, step, mon, {.max_steps = 100, .monitor_every = 2});
    CHECK(r.reason == sg::stop_reason::nonfinite_loss);
    CHECK(r.steps == 4);
    CHECK(std::isnan(r.final_loss));
    CHECK(r.best_loss == 2.0);
    CHECK(r.best_step == 2);
  }
  SECTION("non-finite tolerated") {
    scripted_monitor mon{{nan_v, nan_v, 7, nan_v}};
    const sg::run_report r =
        sg::run(m, step, mon, {.max_steps = 5, .monitor_every = 1, .stop_on_nonfinite = false});
    CHECK(r.reason == sg::stop_reason::max_steps);
    CHECK(r.steps == 5);
    CHECK(r.best_loss == 7.0);
    CHECK(r.best_step == 2);
  }
  SECTION("a callback's on_step stops the run; the final monitor still runs") {
    stop_at_5 cb;
    hook_counter hc;
    const sg::run_report r = sg::run(m, f, {.max_steps = 100}, hc, cb);
    CHECK(r.reason == sg::stop_reason::callback);
    CHECK(r.message == "callback: a callback (on_step) asked to stop after 5 steps");
    CHECK(r.steps == 5);
    CHECK(r.monitor_rounds == 2);  // step 0 (monitor_every = 10) and the final one at 5
    CHECK(r.final_loss_step == 5);
    CHECK(hc.begin == 1);
    CHECK(hc.steps == 5);
    CHECK(hc.monitors == 2);
    CHECK(hc.end == 1);
    CHECK(calls == 10 + 2);
  }
  SECTION("a callback's on_monitor stops the run") {
    stop_below cb;
    const sg::run_report r = sg::run(m, f, {.max_steps = 1000, .monitor_every = 1}, cb);
    CHECK(r.reason == sg::stop_reason::callback);
    CHECK(r.final_loss < 3.0);
    CHECK(r.final_loss_step == r.steps);
    CHECK(r.steps > 0);
    CHECK(r.steps < 1000);
    CHECK(r.monitor_evaluations == r.steps + 1);
  }
}

TEST_CASE("run: keep_best restores the best monitored iterate bit for bit", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0), twin(8, 1.0);

  SECTION("scripted monitor, best in the middle") {
    sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 11});
    sg::mezo<double> ref(twin, {.lr = 0.05}, {.eps = 1e-3, .seed = 11});
    const auto step = [&f](auto& s) { return s.step(f); };
    scripted_monitor mon{{9, 8, 2, 5, 6, 7}};
    snapshots snap;
    sg::callbacks::keep_best<double> best;
    // snap sees each monitor round before keep_best (callbacks are called in order).
    const sg::run_report r = sg::run(m, step, mon, {.max_steps = 10, .monitor_every = 2}, snap, best);
    CHECK(r.steps == 10);
    CHECK(r.best_loss == 2.0);
    CHECK(r.best_step == 4);
    CHECK(best.has_best());
    CHECK(best.best_loss() == 2.0);
    CHECK(best.best_step() == 4);
    REQUIRE(snap.at.count(4) == 1);
    CHECK(same_bits(x, snap.at[4]));
    CHECK(same_bits(std::vector<double>(best.iterate(0).begin(), best.iterate(0).end()), snap.at[4]));
    // The twin's 10 steps end elsewhere: the restore did something.
    for (int k = 0; k < 10; ++k) ref.step(f);
    CHECK(!same_bits(x, twin));
    CHECK(same_bits(snap.at[10], twin));
  }
  SECTION("real monitor: f at the restored parameters is the best loss") {
    // lr large enough that MeZO's steps overshoot along some directions (the loss goes up and down).
    sg::mezo<double> m(x, {.lr = 0.2}, {.eps = 1e-3, .seed = 5});
    sg::callbacks::keep_best<double> best;
    const sg::run_report r = sg::run(m, f, {.max_steps = 60, .monitor_every = 1}, best);
    std::uint64_t dummy = 0;
    CHECK(counted_quadratic{&dummy}(x) == r.best_loss);
    CHECK(best.best_loss() == r.best_loss);
    CHECK(best.best_step() == r.best_step);
    CHECK(r.best_loss <= r.final_loss);
  }
  SECTION("restore_at_end = false leaves the final iterate; restore() on demand") {
    sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 11});
    const auto step = [&f](auto& s) { return s.step(f); };
    scripted_monitor mon{{9, 1, 5, 6}};
    snapshots snap;
    sg::callbacks::keep_best<double> best(false);
    (void)sg::run(m, step, mon, {.max_steps = 6, .monitor_every = 2}, snap, best);
    CHECK(same_bits(x, snap.at[6]));
    best.restore(m);
    CHECK(same_bits(x, snap.at[2]));
    std::vector<double> other(9, 0.0);
    sg::mezo<double> wrong(other, {.lr = 0.05});
    CHECK_THROWS_AS(best.restore(wrong), sg::size_mismatch);
  }
}

TEST_CASE("run: spsa, and a fused_next stepper is settled for the monitor", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(10, 1.0);
  SECTION("spsa") {
    sg::spall_spsa<double> s(x, sg::optim::sgd<sg::spall_gain>({.lr = 0.2}, {.A = 100}),
                             sg::zo::two_point<sg::rademacher, sg::zo::spall_perturbation>({.eps = 0.01}));
    // Monitors at 0, 5, 10, 15 and the final one at 20.
    const sg::run_report r = sg::run(s, f, {.max_steps = 20, .monitor_every = 5});
    CHECK(r.steps == 20);
    CHECK(r.step_evaluations == 40);
    CHECK(r.monitor_evaluations == 5);
    CHECK(calls == 45);
    CHECK(s.totals().evaluations == 40);
    CHECK(r.best_loss <= 5.0);  // the start, 0.5 * 10
    CHECK(std::isfinite(r.final_loss));
  }
  SECTION("calibrated spsa: calibration and blocking evaluations are counted") {
    sg::spsa<double> s(x, {}, {.planned_steps = 20});
    const sg::run_report r = sg::run(s, f, {.max_steps = 20, .monitor_every = 5});
    const auto& st = s.est_state();
    CHECK(st.calibration.done);
    CHECK(r.steps == 20);
    // Every step: two evaluations, plus one blocking evaluation when the step was applied; the
    // first step also ran the calibration.
    CHECK(r.step_evaluations == st.calibration.evaluations + 40 + st.extra_evaluations);
    CHECK(st.extra_evaluations == 20);  // f is noise-free: every inner step applies
    CHECK(r.monitor_evaluations == 5);
    CHECK(calls == r.step_evaluations + 5);
    CHECK(s.totals().evaluations == r.step_evaluations);
    CHECK(s.totals().applied + s.totals().skipped == 20);
    CHECK(s.totals().skipped == st.rejected);
    CHECK(r.final_loss < 5.0);
  }
  SECTION("two_point with q = 3 counts 6 evaluations a step") {
    sg::mezo<double> s(x, {.lr = 0.01}, {.eps = 1e-3, .q = 3, .seed = 2});
    const sg::run_report r = sg::run(s, f, {.max_steps = 4, .monitor_every = 4});
    CHECK(r.step_evaluations == 24);
    CHECK(r.monitor_evaluations == 2);
    CHECK(calls == 26);
  }
  SECTION("fused_next") {
    sg::mezo<double> s(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 2, .mode = sg::zo::pass_mode::fused_next});
    check_settled cb;
    const sg::run_report r = sg::run(s, f, {.max_steps = 7, .monitor_every = 2}, cb);
    CHECK(cb.rounds == 5);  // 0, 2, 4, 6 and 7
    CHECK(r.monitor_rounds == 5);
    CHECK(!s.est_state().pending);  // the run leaves the iterate itself in the parameters
  }
}

TEST_CASE("run: first order (adan), same trajectory as the hand-written loop", "[stepper][run]") {
  namespace sp = sg::problems;
  const sp::rosenbrock<double> rb(6);
  std::vector<double> x(6), twin(6), g(6);
  rb.initial_point(x);
  rb.initial_point(twin);
  const double f0 = rb.value(x);
  sg::adan<double> a(x, {.lr = 0.02, .weight_decay = 0.0});
  sg::adan<double> ref(twin, {.lr = 0.02, .weight_decay = 0.0});
  std::uint64_t calls = 0;
  auto fg = [&](std::span<const double> v, std::span<double> grad) {
    ++calls;
    return rb.value_and_gradient(v, grad);
  };
  // Monitors at 0, 10, ..., 40 use the loss of the gradient call of the step after them; the
  // final monitor at 50 is one call of its own.
  const sg::run_report r = sg::run(a, fg, {.max_steps = 50, .monitor_every = 10});
  CHECK(r.reason == sg::stop_reason::max_steps);
  CHECK(r.steps == 50);
  CHECK(calls == 51);
  CHECK(r.step_evaluations == 50);
  CHECK(r.monitor_evaluations == 1);
  CHECK(r.evaluations == 51);
  CHECK(r.monitor_rounds == 6);
  CHECK(r.applied == 50);
  CHECK(a.totals().applied == 50);
  CHECK(a.totals().evaluations == 0);  // a first-order report has no evaluation count
  for (int k = 0; k < 50; ++k) {
    rb.value_and_gradient(twin, g);
    ref.step(std::span<const double>(g));
  }
  CHECK(same_bits(x, twin));
  CHECK(r.final_loss == rb.value_and_gradient(x, g));
  CHECK(r.final_loss < f0);

  SECTION("a monitor rule that stops the run counts its unused gradient call as a monitor evaluation") {
    const sg::run_report r2 = sg::run(a, fg, {.max_steps = 1000, .patience = 1, .monitor_every = 1},
                                      sg::callbacks::early_stop(1));
    CHECK(r2.evaluations == r2.steps + 1);
    CHECK(r2.monitor_evaluations == 1);
  }
}

TEST_CASE("run: first order over several tensors", "[stepper][run]") {
  std::vector<float> w1(5, 1.0f), w2(3, -2.0f);
  sg::parameters<float> p;
  p.add(w1).add(w2);
  sg::adan<float> a(p, {.lr = 0.05, .weight_decay = 0.0});
  auto fg = [](const sg::parameters<float>& ps, std::span<const std::span<float>> grads) {
    double l = 0;
    for (std::size_t t = 0; t < ps.tensors(); ++t) {
      for (std::size_t i = 0; i < ps.tensor(t).size(); ++i) {
        const float v = ps.tensor(t)[i];
        l += 0.5 * double(v) * v;
        grads[t][i] = v;
      }
    }
    return l;
  };
  const sg::run_report r = sg::run(a, fg, {.max_steps = 200, .monitor_every = 20});
  CHECK(r.steps == 200);
  CHECK(r.final_loss < 0.1 * (0.5 * 5 + 0.5 * 3 * 4));
  CHECK(r.evaluations == 201);

  SECTION("a single-tensor gradient function is refused for two tensors, before anything changes") {
    const std::vector<float> b1 = w1, b2 = w2;
    const std::string st = saved(a);
    int n = 0;
    auto single = [&n](std::span<const float>, std::span<float>) { ++n; return 0.0; };
    hook_counter hc;
    CHECK_THROWS_AS(sg::run(a, single, {.max_steps = 3}, hc), sg::invalid_argument);
    CHECK(n == 0);
    CHECK(hc.begin == 0);
    CHECK(same_bits(w1, b1));
    CHECK(same_bits(w2, b2));
    CHECK(saved(a) == st);
  }
}

TEST_CASE("run: policy gradient through the generic overload", "[stepper][run]") {
  pgtest::addition_rollouts<float> ro(8, 4);
  pgtest::addition_rollouts<float> eval(16, 1);
  std::vector<float> theta(ro.pol.dimension(), 0.0f);
  sg::grpo<float> s(theta, {.lr = 0.05});
  std::uint32_t k = 0;
  auto step_fn = [&](sg::grpo<float>& st) {
    ro.draw(theta, 7, k++);
    return st.step(ro.batch(), ro.layout, ro.vjp(theta));
  };
  int monitors = 0;
  auto monitor_fn = [&](const sg::grpo<float>&) {
    ++monitors;
    eval.draw(theta, 99, 0);  // the same prompts and noise every time
    double mean = 0;
    for (float v : eval.rewards) mean += v;
    return -mean / static_cast<double>(eval.rewards.size());
  };
  reward_log log;
  // Monitors at 0, 3, and the final one at 6.
  const sg::run_report r = sg::run(s, step_fn, monitor_fn, {.max_steps = 6, .monitor_every = 3}, log);
  CHECK(r.steps == 6);
  CHECK(monitors == 3);
  CHECK(r.monitor_evaluations == 3);
  CHECK(r.step_evaluations == 0);
  CHECK(r.applied == 6);
  CHECK(s.totals().applied == 6);
  CHECK(s.steps() == 6);
  CHECK(log.means.size() == 6);
  CHECK(r.final_loss <= 0.0);
  CHECK(r.final_loss >= -1.0);
}

TEST_CASE("run: a step function returning nothing", "[stepper][run]") {
  std::vector<double> x(4, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05});
  int steps = 0;
  sees_no_report cb;
  const sg::run_report r = sg::run(m, [&] { ++steps; }, [] { return 1.0; }, {.max_steps = 4}, cb);
  CHECK(steps == 4);
  CHECK(cb.n == 4);
  CHECK(r.steps == 4);
  CHECK(r.applied == 0);
  CHECK(m.steps() == 0);
}

TEST_CASE("run: bad options are refused before anything changes", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  m.step(f);  // some state to compare
  calls = 0;
  const std::vector<double> before = x;
  const std::string state = saved(m);
  const sg::step_totals totals = m.totals();

  struct bad_case {
    const char* field;
    sg::run_options o;
  };
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<bad_case> cases;
  cases.push_back({"max_steps", {.max_steps = 0}});
  cases.push_back({"tolerance", {.tolerance = -1e-3}});
  cases.push_back({"tolerance", {.tolerance = nan_v}});
  cases.push_back({"tolerance", {.tolerance = inf}});
  cases.push_back({"max_seconds", {.max_seconds = nan_v}});
  cases.push_back({"max_seconds", {.max_seconds = -1.0}});
  cases.push_back({"max_seconds", {.max_seconds = inf}});
  cases.push_back({"monitor_every", {.monitor_every = 0}});
  {
    sg::run_options o;
    o.clock = [] { return nan_v; };
    cases.push_back({"clock", o});
  }
  for (const bad_case& c : cases) {
    INFO(c.field);
    hook_counter hc;
    bool threw = false;
    try {
      (void)sg::run(m, f, c.o, hc);
    } catch (const sg::invalid_argument& e) {
      threw = true;
      CHECK(std::string(e.what()).find(c.field) != std::string::npos);
    }
    CHECK(threw);
    // The generic overload refuses the same options.
    CHECK_THROWS_AS(sg::run(m, [&](auto& s) { return s.step(f); }, [] { return 0.0; }, c.o), sg::invalid_argument);
    CHECK(calls == 0);
    CHECK(hc.begin == 0);
    CHECK(hc.end == 0);
    CHECK(same_bits(x, before));
    CHECK(saved(m) == state);
    CHECK(m.totals().evaluations == totals.evaluations);
    CHECK(m.totals().applied == totals.applied);
  }
  // max_steps = 0 is fine with another stop rule.
  CHECK(sg::run(m, f, {.max_steps = 0, .patience = 1, .monitor_every = 1}).reason == sg::stop_reason::patience);

  CHECK_THROWS_AS(sg::callbacks::early_stop(0), sg::invalid_argument);
  CHECK_THROWS_AS(sg::callbacks::early_stop(2, -1.0), sg::invalid_argument);
  CHECK_THROWS_AS(sg::callbacks::early_stop(2, nan_v), sg::invalid_argument);
  std::ostringstream os;
  CHECK_THROWS_AS(sg::callbacks::report_every(0, os), sg::invalid_argument);
  CHECK_THROWS_AS(sg::callbacks::progress_bar(os, false, 0), sg::invalid_argument);
}

TEST_CASE("run: progress_bar and report_every output", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(8, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});

  SECTION("not a terminal: no \\r, one line per tenth and a summary") {
    std::ostringstream os;
    sg::callbacks::progress_bar bar(os);  // a string stream is never a terminal
    CHECK(!bar.terminal());
    const sg::run_report r = sg::run(m, f, {.max_steps = 100}, bar);
    const std::string out = os.str();
    CHECK(out.find('\r') == std::string::npos);
    std::size_t lines = 0, progress = 0;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      ++lines;
      if (line.rfind("progress: step ", 0) == 0) ++progress;
    }
    CHECK(progress == 10);
    CHECK(lines == 11);
    CHECK(out.find("progress: step 10/100 (10%)") != std::string::npos);
    CHECK(out.find("done: " + r.message) != std::string::npos);
  }
  SECTION("a terminal redraws with \\r and ends the line") {
    std::ostringstream os;
    sg::callbacks::progress_bar bar(os, true, 10);
    (void)sg::run(m, f, {.max_steps = 50}, bar);
    const std::string out = os.str();
    // One redraw per percent that changes (2 % a step: 50 draws) and the final one.
    std::size_t cr = 0;
    for (char c : out) cr += c == '\r' ? 1 : 0;
    CHECK(cr == 51);
    CHECK(out.find("[==========] 100% 50/50") != std::string::npos);
    CHECK(out.find("\ndone: ") != std::string::npos);
  }
  SECTION("report_every") {
    std::ostringstream os;
    const sg::run_report r = sg::run(m, f, {.max_steps = 100, .monitor_every = 25}, sg::callbacks::report_every(25, os));
    std::size_t lines = 0;
    std::istringstream in(os.str());
    for (std::string line; std::getline(in, line);) {
      ++lines;
      CHECK(line.rfind("step " + std::to_string(25 * lines) + ": loss ", 0) == 0);
    }
    CHECK(lines == 4);
    CHECK(os.str().find("step 50: loss") != std::string::npos);
    CHECK(r.steps == 100);
  }
}

TEST_CASE("run: no allocation per step", "[stepper][run]") {
  std::uint64_t calls = 0;
  counted_quadratic f{&calls};
  std::vector<double> x(64, 1.0);
  sg::mezo<double> m(x, {.lr = 0.01}, {.eps = 1e-3, .seed = 3});
  const auto run_n = [&](std::uint64_t n) {
    return alloc_counter::allocations_of([&] {
      sg::callbacks::keep_best<double> best;
      sg::callbacks::early_stop es(1000000);
      (void)sg::run(m, f, {.max_steps = n, .monitor_every = 3}, best, es);
    });
  };
  const long a10 = run_n(10), a300 = run_n(300);
  CHECK(a10 == a300);
  CHECK(a10 > 0);  // keep_best's buffers and the message
}

TEST_CASE("stepper totals: counted by step, not saved, not loaded", "[stepper][run]") {
  std::vector<double> x(4, 1.0), y(4, 1.0);
  sg::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  bool bad = false;
  auto f = [&bad](std::span<const double> v) { return bad ? nan_v : v[0] * v[0]; };
  m.step(f);
  m.step(f);
  bad = true;
  m.step(f);  // skipped: the first evaluation is NaN
  CHECK(m.totals().applied == 2);
  CHECK(m.totals().skipped == 1);
  CHECK(m.totals().evaluations >= 5);
  CHECK(m.totals().evaluations <= 6);
  bad = false;
  std::vector<double> out(4);
  (void)m.estimate(f, std::span<double>(out));  // not a step
  CHECK(m.totals().applied == 2);
  const std::string with_totals = saved(m);
  const sg::step_totals kept = m.totals();
  m.reset_totals();
  CHECK(m.totals().evaluations == 0);
  CHECK(m.totals().applied == 0);
  CHECK(m.totals().skipped == 0);
  CHECK(saved(m) == with_totals);  // totals are not part of the saved state

  sg::mezo<double> other(y, {.lr = 0.05}, {.eps = 1e-3, .seed = 3});
  other.step(f);
  const sg::step_totals before = other.totals();
  std::istringstream in(with_totals);
  other.load(in);
  CHECK(other.totals().applied == before.applied);
  CHECK(other.totals().evaluations == before.evaluations);
  CHECK(kept.applied == 2);

  // First-order and policy-gradient reports count applied steps.
  std::vector<float> w(3, 1.0f);
  sg::adan<float> a(w, {.lr = 1e-2});
  const std::vector<float> g = {1, 2, 3};
  a.step(std::span<const float>(g));
  CHECK(a.totals().applied == 1);
  CHECK(a.totals().evaluations == 0);
}
