// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief `run(stepper, ...)`: the optimization loop, for callers who have none of their own, with
/// stop rules, a monitored loss and ensmallen-style callbacks.
///
/// A run is a sequence of *rounds*. Round j (j = 0, 1, ... steps done so far) is
///  1. the **budget check**: stop with `max_steps` when j = max_steps, with `max_evaluations` when
///     the evaluations made so far (steps' and monitor's) have reached max_evaluations, with
///     `max_seconds` when the clock says max_seconds have passed since the start (0 turns a rule off);
///  2. a **monitor round** when j is a multiple of `monitor_every` (so round 0 monitors the starting
///     point): the monitored loss at the current parameters, then every callback's `on_monitor`,
///     then the monitor rules: stop with `nonfinite_loss` (a NaN/Inf loss, if `stop_on_nonfinite`),
///     `tolerance` (|loss - previous monitored loss| < tolerance), `patience` (`patience`
///     consecutive monitor rounds without a new best, i.e. a loss strictly below the best so far),
///     `callback` (a callback's `on_monitor` returned true);
///  3. **one step**, then every callback's `on_step`; `callback` when one of them returned true.
///
/// When a budget rule or an `on_step` callback ends the run and the current parameters were not
/// just monitored, a last monitor round runs (if `monitor_at_end`; its callbacks are called, its
/// stop rules are moot) so that `final_loss` is the loss of the parameters the run leaves, except
/// after `max_evaluations`: an exhausted evaluation budget makes no further objective call (then
/// `final_loss` is the last monitored one, at `final_loss_step`). The evaluation budget is checked
/// before each round, so a run ends with fewer than max_evaluations + (one step's evaluations +
/// one monitor evaluation) evaluations.
///
/// What the monitored loss is, per overload:
///  - zeroth order, `run(s, f, opts, callbacks...)`: `f` itself at the current parameters, one
///    objective call per monitor round, counted in `monitor_evaluations` (apart from the steps'
///    `step_evaluations`, which come from the stepper's running totals, `stepper::totals()`). A
///    stochastic `f` (minibatches) gives a noisy monitor: pass a separate monitor function through
///    the generic overload instead. A `pass_mode::fused_next` stepper is settled (`zo::settle`)
///    before each monitor evaluation and at the end, so monitored and returned parameters are the
///    iterate itself.
///  - first order, `run(s, fg, opts, callbacks...)`: `fg` writes the gradient at the current
///    parameters and returns the loss there. A monitor round uses the loss of the call whose
///    gradient the following step applies, so monitoring costs no extra call, except the final
///    monitor round (no step follows) and a round that stops the run; those calls count in
///    `monitor_evaluations`, all others in `step_evaluations` (while a run is on, a monitor
///    round's call counts as a monitor evaluation until the step after it uses its gradient).
///  - any family, `run(s, step_fn, monitor_fn, opts, callbacks...)`: `step_fn(s)` makes one step
///    (e.g. samples a batch and calls `s.step(batch, layout, vjp)` on a policy-gradient stepper)
///    and returns its report; `monitor_fn(s)` returns the monitored loss. Each monitor call counts
///    as one monitor evaluation; step evaluations come from the stepper's running totals.
///
/// Callbacks are plain objects with any of these member functions (detected by `requires`; ensmallen's
/// style), called in the order the callbacks are given:
///  - `on_begin(S& s, const run_options& o)`: before round 0;
///  - `on_step(const S& s, const R& report, const run_report& so_far)`: after each step, with the
///    step's report (`zo::step_report`, `update_report`, what `step_fn` returned, or
///    `no_step_report` for a `step_fn` returning void); may return bool, true to stop;
///  - `on_monitor(const S& s, double loss, const run_report& so_far)`: after each monitored loss
///    (at the parameters `s` holds); may return bool, true to stop;
///  - `on_end(S& s, const run_report& r)`: once at the end (not when a step or a callback threw).
///
/// `so_far` holds the counts up to that point; its `reason` and `message` are set only at the end.
/// Provided: `callbacks::progress_bar`, `callbacks::early_stop`, `callbacks::keep_best`,
/// `callbacks::report_every`.
///
/// @code
/// std::vector<double> x(8, 1.0);
/// auto f = [](std::span<const double> v) { double s = 0; for (double e : v) s += e * e; return s; };
/// stochgrad::mezo<double> m(x, {.lr = 0.05}, {.eps = 1e-4, .seed = 1});
/// stochgrad::callbacks::keep_best<double> best;   // restores the best monitored iterate at the end
/// const stochgrad::run_report r =
///     stochgrad::run(m, f, {.max_steps = 400, .patience = 10, .monitor_every = 5}, best);
/// std::printf("%s; %llu steps, %llu evaluations (%llu by the monitor), best f = %.3g at step %llu\n",
///             r.message.c_str(), static_cast<unsigned long long>(r.steps),
///             static_cast<unsigned long long>(r.evaluations), static_cast<unsigned long long>(r.monitor_evaluations),
///             r.best_loss, static_cast<unsigned long long>(r.best_step));
/// if (f(x) != r.best_loss) std::abort();   // x holds the best monitored iterate
/// @endcode
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>  // isatty, for progress_bar's terminal detection
#endif

#include "../base/family.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../optim/parameters.hpp"
#include "../zo/objective.hpp"
#include "stepper_template.hpp"

namespace stochgrad {

/// Why a run ended.
enum class stop_reason {
  max_steps,        ///< `run_options::max_steps` steps were made
  max_evaluations,  ///< the evaluations reached `run_options::max_evaluations`
  max_seconds,      ///< the clock passed `run_options::max_seconds`
  tolerance,        ///< two consecutive monitored losses differed by less than `run_options::tolerance`
  patience,         ///< `run_options::patience` monitor rounds in a row brought no new best loss
  nonfinite_loss,   ///< the monitored loss was NaN or infinite (`run_options::stop_on_nonfinite`)
  callback,         ///< a callback's `on_step` or `on_monitor` returned true
};

/// The name of a stop reason ("max_steps", "tolerance", ...).
constexpr const char* to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::max_steps: return "max_steps";
    case stop_reason::max_evaluations: return "max_evaluations";
    case stop_reason::max_seconds: return "max_seconds";
    case stop_reason::tolerance: return "tolerance";
    case stop_reason::patience: return "patience";
    case stop_reason::nonfinite_loss: return "nonfinite_loss";
    case stop_reason::callback: return "callback";
  }
  return "unknown";
}

/// The stop rules and monitoring of `run` (see the file comment for the order of a round). A zero
/// turns a limit or rule off; at least one of `max_steps`, `max_evaluations`, `max_seconds`,
/// `tolerance`, `patience` must be on.
struct run_options {
  std::uint64_t max_steps = 1000;     ///< stop after this many steps (0: no limit)
  std::uint64_t max_evaluations = 0;  ///< stop once steps and monitor together made this many objective calls (0: no limit)
  double max_seconds = 0.0;           ///< stop once this many seconds passed on `clock` (finite, >= 0; 0: no limit)
  double tolerance = 0.0;             ///< stop when two consecutive monitored losses differ by less (finite, >= 0; 0: off)
  std::uint64_t patience = 0;         ///< stop after this many monitor rounds in a row without a new best loss (0: off)
  std::uint64_t monitor_every = 10;   ///< monitor the loss every k steps, starting at step 0 (>= 1)
  bool monitor_at_end = true;         ///< monitor the final parameters when the run ends between monitor rounds
  bool stop_on_nonfinite = true;      ///< stop when the monitored loss is NaN or infinite
  /// Seconds on a monotone clock (any origin), read once at the start, at every budget check and
  /// once at the end; empty: `std::chrono::steady_clock`. Tests inject a fake clock here.
  std::function<double()> clock{};

  /// @throws invalid_argument naming the field: `max_seconds` or `tolerance` negative or not finite,
  ///         `monitor_every` = 0, or no stop rule at all (`max_steps` = 0 with every other rule off).
  void validate() const {
    const char* w = "run_options";
    detail::require(std::isfinite(max_seconds) && max_seconds >= 0.0, w, "max_seconds", max_seconds,
                    "finite and >= 0 (0: no time limit)");
    detail::require(std::isfinite(tolerance) && tolerance >= 0.0, w, "tolerance", tolerance, "finite and >= 0 (0: off)");
    detail::require(monitor_every >= 1, w, "monitor_every", static_cast<double>(monitor_every), ">= 1");
    if (max_steps == 0 && max_evaluations == 0 && max_seconds == 0.0 && tolerance == 0.0 && patience == 0) {
      throw invalid_argument(
          "run_options: max_steps = 0 (no step limit) and no other stop rule is set (max_evaluations, max_seconds, "
          "tolerance, patience): the run would never end");
    }
  }
};

/// What a run did. During the run, callbacks see the counts so far (`reason` and `message` are set
/// only at the end). Steps are counted from the start of this run (not the stepper's `steps()`).
struct run_report {
  stop_reason reason = stop_reason::max_steps;  ///< why the run ended
  std::string message;                          ///< the reason in words, with the numbers that triggered it
  std::uint64_t steps = 0;                      ///< steps made by this run
  std::uint64_t evaluations = 0;                ///< step_evaluations + monitor_evaluations
  std::uint64_t step_evaluations = 0;           ///< objective (or gradient) calls made for the steps
  std::uint64_t monitor_evaluations = 0;        ///< calls made only to monitor the loss
  std::uint64_t applied = 0;                    ///< steps whose report says the optimizer updated the parameters
  std::uint64_t skipped = 0;                    ///< steps whose report says nothing was applied
  std::uint64_t monitor_rounds = 0;             ///< monitored losses computed (the final one included)
  double best_loss = std::numeric_limits<double>::quiet_NaN();   ///< lowest finite monitored loss (NaN: none)
  std::uint64_t best_step = 0;                  ///< steps done when best_loss was monitored
  double final_loss = std::numeric_limits<double>::quiet_NaN();  ///< the last monitored loss (NaN: none)
  std::uint64_t final_loss_step = 0;            ///< steps done when final_loss was monitored
  double seconds = 0.0;                         ///< time on the run's clock from the start to the last reading
};

/// What `on_step` receives from a generic run whose `step_fn` returns nothing.
struct no_step_report {};

namespace detail {

inline bool stream_is_terminal(const std::ostream& os) noexcept {
#if __has_include(<unistd.h>)
  if (&os == &std::cout) return ::isatty(1) == 1;
  if (&os == &std::cerr || &os == &std::clog) return ::isatty(2) == 1;
#else
  (void)os;
#endif
  return false;
}

/// Writes the `n` characters snprintf put into `buf` (clipped to the buffer) to a stream.
template <std::size_t N>
void put(std::ostream& os, const char (&buf)[N], int n) {
  if (n > 0) os.write(buf, static_cast<std::streamsize>(static_cast<std::size_t>(n) < N ? static_cast<std::size_t>(n) : N - 1));
}

inline unsigned long long ull(std::uint64_t v) noexcept { return static_cast<unsigned long long>(v); }

template <class T>
concept run_stepper = requires(T& s) {
  typename T::value_type;
  typename T::estimator_type;
  { T::estimator_type::family } -> std::convertible_to<estimator_family>;
  { s.totals() } -> std::convertible_to<const step_totals&>;
  { s.params() } -> std::convertible_to<const parameters<typename T::value_type>&>;
};

template <class C, class S>
concept has_on_begin = requires(C& c, S& s, const run_options& o) { c.on_begin(s, o); };
template <class C, class S, class R>
concept has_on_step = requires(C& c, const S& s, const R& r, const run_report& p) { c.on_step(s, r, p); };
template <class C, class S>
concept has_on_monitor = requires(C& c, const S& s, double l, const run_report& p) { c.on_monitor(s, l, p); };
template <class C, class S>
concept has_on_end = requires(C& c, S& s, const run_report& p) { c.on_end(s, p); };

/// Calls a hook; true when it returned something that converts to true.
template <class F>
bool hook_stops(F&& call) {
  using R = decltype(call());
  if constexpr (std::is_void_v<R>) {
    call();
    return false;
  } else {
    static_assert(std::is_convertible_v<R, bool>,
                  "stochgrad::run: a callback's on_step / on_monitor returns void or bool (true: stop the run)");
    return static_cast<bool>(call());
  }
}

template <class C>
const char* callback_name() {
  if constexpr (requires { { std::remove_cvref_t<C>::name } -> std::convertible_to<const char*>; }) {
    return std::remove_cvref_t<C>::name;
  } else {
    return "a callback";
  }
}

/// Removes a pending fused_next perturbation, for estimators that can have one.
template <class S>
void settle_if_pending(S& s) {
  if constexpr (requires { s.estimator().settle(s); }) s.estimator().settle(s);
}

/// The run's clock: the user's, or steady_clock.
class run_clock {
 public:
  explicit run_clock(const std::function<double()>& user) : user_(user) {}
  double now() const {
    if (user_) return user_();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

 private:
  const std::function<double()>& user_;
};

/// The loop shared by every overload; a driver supplies `monitor(s)`, `step(s)`, `finish(s)` and
/// the evaluation counts.
template <class S, class Driver, class... Cb>
run_report run_loop(S& s, Driver& d, const run_options& o, Cb&... cb) {
  static_assert(((has_on_begin<Cb, S> || has_on_step<Cb, S, typename Driver::report_type> || has_on_monitor<Cb, S> ||
                  has_on_end<Cb, S>) && ...),
                "stochgrad::run: every callback needs at least one of on_begin(S&, const run_options&), "
                "on_step(const S&, const Report&, const run_report&), on_monitor(const S&, double, const run_report&), "
                "on_end(S&, const run_report&)");
  const run_clock clock(o.clock);
  const double t0 = clock.now();
  if (!std::isfinite(t0)) require(false, "run_options", "clock()", t0, "finite");
  const step_totals start = s.totals();
  run_report rep;

  const auto count = [&] {
    const step_totals& t = s.totals();
    rep.applied = t.applied - start.applied;
    rep.skipped = t.skipped - start.skipped;
    rep.step_evaluations = d.step_evaluations(t.evaluations - start.evaluations);
    rep.monitor_evaluations = d.monitor_evaluations();
    rep.evaluations = rep.step_evaluations + rep.monitor_evaluations;
  };

  (
      [&] {
        if constexpr (has_on_begin<Cb, S>) cb.on_begin(s, o);
      }(),
      ...);

  double previous = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t since_best = 0;
  bool monitored_here = false;  // the current parameters were monitored
  const char* stopper = nullptr;

  // One monitor round; returns the reason it ends the run, if any.
  const auto monitor = [&]() -> std::optional<stop_reason> {
    const double loss = d.monitor(s);
    monitored_here = true;
    ++rep.monitor_rounds;
    count();
    const double before = previous;
    previous = loss;
    rep.final_loss = loss;
    rep.final_loss_step = rep.steps;
    if (std::isfinite(loss) && !(loss >= rep.best_loss)) {  // !(>=): also when best_loss is NaN
      rep.best_loss = loss;
      rep.best_step = rep.steps;
      since_best = 0;
    } else {
      ++since_best;
    }
    bool stop = false;
    (
        [&] {
          if constexpr (has_on_monitor<Cb, S>) {
            if (hook_stops([&] { return cb.on_monitor(std::as_const(s), loss, std::as_const(rep)); }) && !stop) {
              stop = true;
              stopper = callback_name<Cb>();
            }
          }
        }(),
        ...);
    char buf[200];
    if (o.stop_on_nonfinite && !std::isfinite(loss)) {
      std::snprintf(buf, sizeof buf, "nonfinite_loss: the monitored loss is %g after %llu steps", loss, ull(rep.steps));
      rep.message = buf;
      return stop_reason::nonfinite_loss;
    }
    if (o.tolerance > 0.0 && std::isfinite(before) && std::isfinite(loss) && std::abs(loss - before) < o.tolerance) {
      std::snprintf(buf, sizeof buf, "tolerance: the monitored loss changed by %.3g < %.3g (from %.6g to %.6g) after %llu steps",
                    std::abs(loss - before), o.tolerance, before, loss, ull(rep.steps));
      rep.message = buf;
      return stop_reason::tolerance;
    }
    if (o.patience > 0 && since_best >= o.patience) {
      std::snprintf(buf, sizeof buf, "patience: no new best loss in %llu monitor rounds (best %.6g after %llu steps), %llu steps done",
                    ull(since_best), rep.best_loss, ull(rep.best_step), ull(rep.steps));
      rep.message = buf;
      return stop_reason::patience;
    }
    if (stop) {
      std::snprintf(buf, sizeof buf, "callback: %s (on_monitor) asked to stop after %llu steps", stopper, ull(rep.steps));
      rep.message = buf;
      return stop_reason::callback;
    }
    return std::nullopt;
  };

  // A run that ends between monitor rounds monitors its final parameters (see the file comment).
  const auto final_monitor = [&](stop_reason why) {
    if (o.monitor_at_end && !monitored_here && why != stop_reason::max_evaluations) {
      const std::string keep = std::move(rep.message);
      (void)monitor();
      rep.message = keep;
    }
  };

  for (;;) {
    // 1. budget check
    count();
    rep.seconds = clock.now() - t0;
    std::optional<stop_reason> why;
    char buf[200];
    if (o.max_steps > 0 && rep.steps >= o.max_steps) {
      why = stop_reason::max_steps;
      std::snprintf(buf, sizeof buf, "max_steps: %llu steps done", ull(rep.steps));
    } else if (o.max_evaluations > 0 && rep.evaluations >= o.max_evaluations) {
      why = stop_reason::max_evaluations;
      std::snprintf(buf, sizeof buf, "max_evaluations: %llu evaluations made (limit %llu) in %llu steps",
                    ull(rep.evaluations), ull(o.max_evaluations), ull(rep.steps));
    } else if (o.max_seconds > 0.0 && rep.seconds >= o.max_seconds) {
      why = stop_reason::max_seconds;
      std::snprintf(buf, sizeof buf, "max_seconds: %.3g s passed (limit %.3g s) in %llu steps", rep.seconds, o.max_seconds,
                    ull(rep.steps));
    }
    if (why) {
      rep.reason = *why;
      rep.message = buf;
      final_monitor(*why);
      break;
    }
    // 2. monitor round
    if (rep.steps % o.monitor_every == 0) {
      if (const std::optional<stop_reason> m = monitor()) {
        rep.reason = *m;
        break;
      }
    }
    // 3. one step
    decltype(auto) r = d.step(s);
    ++rep.steps;
    monitored_here = false;
    count();
    bool stop = false;
    (
        [&] {
          if constexpr (has_on_step<Cb, S, typename Driver::report_type>) {
            if (hook_stops([&] { return cb.on_step(std::as_const(s), std::as_const(r), std::as_const(rep)); }) && !stop) {
              stop = true;
              stopper = callback_name<Cb>();
            }
          }
        }(),
        ...);
    if (stop) {
      rep.reason = stop_reason::callback;
      std::snprintf(buf, sizeof buf, "callback: %s (on_step) asked to stop after %llu steps", stopper, ull(rep.steps));
      rep.message = buf;
      final_monitor(stop_reason::callback);
      break;
    }
  }
  d.finish(s);
  count();
  rep.seconds = clock.now() - t0;
  (
      [&] {
        if constexpr (has_on_end<Cb, S>) cb.on_end(s, std::as_const(rep));
      }(),
      ...);
  return rep;
}

/// Zeroth order: steps `s.step(f)`, monitors `f` at the current (settled) parameters.
template <class S, class F>
class zo_driver {
 public:
  using T = typename S::value_type;
  using report_type = std::remove_cvref_t<decltype(std::declval<S&>().step(std::declval<F&>()))>;
  explicit zo_driver(F& f) : f_(f) {}
  double monitor(S& s) {
    settle_if_pending(s);
    ++monitors_;
    const zo::evaluation e = zo::detail::evaluate<T>(f_, s.params());
    return e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
  }
  decltype(auto) step(S& s) { return s.step(f_); }
  void finish(S& s) { settle_if_pending(s); }
  std::uint64_t step_evaluations(std::uint64_t from_totals) const noexcept { return from_totals; }
  std::uint64_t monitor_evaluations() const noexcept { return monitors_; }

 private:
  F& f_;
  std::uint64_t monitors_ = 0;
};

template <class FG, class T>
concept tensors_gradient_fn = std::invocable<FG&, const parameters<T>&, std::span<const std::span<T>>> &&
                              std::convertible_to<std::invoke_result_t<FG&, const parameters<T>&, std::span<const std::span<T>>>, double>;
template <class FG, class T>
concept single_gradient_fn = std::invocable<FG&, std::span<const T>, std::span<T>> &&
                             std::convertible_to<std::invoke_result_t<FG&, std::span<const T>, std::span<T>>, double>;

/// First order: `fg` writes the gradient into buffers sized at construction and returns the loss.
template <class S, class FG>
class first_order_driver {
 public:
  using T = typename S::value_type;
  static constexpr bool whole = tensors_gradient_fn<FG, T>;
  using report_type = std::remove_cvref_t<decltype(std::declval<S&>().step(std::declval<std::span<const T>>()))>;

  first_order_driver(const parameters<T>& p, FG& fg) : fg_(fg) {
    buffers_.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) buffers_[t].assign(p.tensor(t).size(), T(0));
    for (auto& b : buffers_) {
      out_.emplace_back(b);
      in_.emplace_back(b);
    }
  }
  double monitor(S& s) {
    if (!pending_) {
      loss_ = call(s);
      pending_ = true;
    }
    return loss_;
  }
  decltype(auto) step(S& s) {
    if (!pending_) (void)call(s);
    pending_ = false;
    ++used_;
    if constexpr (whole) {
      return s.step(std::span<const std::span<const T>>(in_));
    } else {
      return s.step(in_[0]);
    }
  }
  void finish(S&) noexcept {}
  std::uint64_t step_evaluations(std::uint64_t) const noexcept { return used_; }
  std::uint64_t monitor_evaluations() const noexcept { return calls_ - used_; }

 private:
  double call(S& s) {
    ++calls_;
    if constexpr (whole) {
      return static_cast<double>(fg_(s.params(), std::span<const std::span<T>>(out_)));
    } else {
      return static_cast<double>(fg_(std::span<const T>(s.params().tensor(0)), out_[0]));
    }
  }
  FG& fg_;
  std::vector<std::vector<T>> buffers_;
  std::vector<std::span<T>> out_;
  std::vector<std::span<const T>> in_;
  bool pending_ = false;
  double loss_ = 0.0;
  std::uint64_t calls_ = 0, used_ = 0;
};

template <class StepFn, class S>
decltype(auto) call_step_fn(StepFn& f, S& s) {
  if constexpr (std::invocable<StepFn&, S&>) {
    return f(s);
  } else {
    return f();
  }
}

/// Any family: the caller's step and monitor functions.
template <class S, class StepFn, class MonitorFn>
class generic_driver {
 public:
  using raw_report = decltype(call_step_fn(std::declval<StepFn&>(), std::declval<S&>()));
  using report_type = std::conditional_t<std::is_void_v<raw_report>, no_step_report, std::remove_cvref_t<raw_report>>;
  generic_driver(StepFn& step, MonitorFn& mon) : step_(step), mon_(mon) {}
  double monitor(S& s) {
    settle_if_pending(s);
    ++monitors_;
    zo::evaluation e;
    if constexpr (std::invocable<MonitorFn&, const S&>) {
      e = zo::detail::to_evaluation(mon_(std::as_const(s)));
    } else {
      e = zo::detail::to_evaluation(mon_());
    }
    return e.valid ? e.loss : std::numeric_limits<double>::quiet_NaN();
  }
  decltype(auto) step(S& s) {
    if constexpr (std::is_void_v<raw_report>) {
      call_step_fn(step_, s);
      return no_step_report{};
    } else {
      return call_step_fn(step_, s);
    }
  }
  void finish(S& s) { settle_if_pending(s); }
  std::uint64_t step_evaluations(std::uint64_t from_totals) const noexcept { return from_totals; }
  std::uint64_t monitor_evaluations() const noexcept { return monitors_; }

 private:
  StepFn& step_;
  MonitorFn& mon_;
  std::uint64_t monitors_ = 0;
};

}  // namespace detail

/// Runs a zeroth-order or first-order stepper until a stop rule ends the run (see the file comment).
///  - Zeroth order (`mezo`, `spsa`, any `zo::` estimator): `f` is the stepper's objective (`f()`,
///    `f(const parameters<T>&)` or `f(std::span<const T>)`, returning a number or a
///    `zo::evaluation`); each round's step is `s.step(f)`, each monitor round one call of `f` at
///    the current parameters (an invalid evaluation monitors as NaN).
///  - First order (`adan`, any `first_order` stepper): `fg(std::span<const T> x, std::span<T> g)`
///    for a single-tensor parameter set, or `fg(const parameters<T>& p, std::span<const std::span<T>> g)`
///    for any: writes the gradient at the current parameters into `g` (buffers `run` allocates
///    once, before round 0, not zeroed between calls) and returns the loss there; each step is
///    `s.step(g)`.
/// A policy-gradient stepper has no objective to call: use the overload with a step function.
/// @param s  the stepper; its parameters hold the final iterate afterwards (or the best, with a
///           restoring `callbacks::keep_best`)
/// @param f  the objective (zeroth order) or the loss-and-gradient function (first order)
/// @param o  stop rules and monitoring (validated first)
/// @param cb callbacks (see the file comment), called in the order given
/// @return the run's report; the stepper's `totals()` grew by its steps' counts
/// @throws invalid_argument for invalid options or an objective / gradient function that does not
///         fit a multi-tensor parameter set, before anything changes (no call, no callback, no
///         step); anything a step, the objective or a callback throws (the stepper is then as that
///         step leaves it, the run's own counts are lost).
template <class S, class F, class... Cb>
  requires detail::run_stepper<S>
run_report run(S& s, F&& f, const run_options& o, Cb&&... cb) {
  using T = typename S::value_type;
  constexpr estimator_family fam = S::estimator_type::family;
  if constexpr (fam == estimator_family::zeroth_order) {
    zo::detail::check_objective<std::remove_reference_t<F>, T>();
    o.validate();
    zo::detail::check_objective_fits<T, std::remove_reference_t<F>>(s.params());
    detail::zo_driver<S, std::remove_reference_t<F>> d(f);
    return detail::run_loop(s, d, o, cb...);
  } else if constexpr (fam == estimator_family::first_order) {
    using FG = std::remove_reference_t<F>;
    static_assert(detail::tensors_gradient_fn<FG, T> || detail::single_gradient_fn<FG, T>,
                  "stochgrad::run: a first-order run takes fg(std::span<const T> x, std::span<T> grad) (single "
                  "tensor) or fg(const stochgrad::parameters<T>&, std::span<const std::span<T>> grads), writing the "
                  "gradient and returning the loss");
    o.validate();
    if constexpr (!detail::tensors_gradient_fn<FG, T>) {
      if (s.params().tensors() != 1) {
        throw invalid_argument("run: a gradient function taking (std::span<const T>, std::span<T>) needs a single-tensor "
                               "parameter set (this one has " + std::to_string(s.params().tensors()) +
                               " tensors); take (const parameters<T>&, std::span<const std::span<T>>) instead");
      }
    }
    detail::first_order_driver<S, FG> d(s.params(), f);
    return detail::run_loop(s, d, o, cb...);
  } else {
    static_assert(fam != estimator_family::policy_gradient,
                  "stochgrad::run: a policy-gradient stepper has no objective to call; use "
                  "run(s, step_fn, monitor_fn, options, callbacks...) with a step_fn that samples a batch and calls "
                  "s.step(batch, layout, vjp)");
    return {};
  }
}

/// Runs any stepper with the caller's step and monitor functions (policy gradient, or a
/// zeroth-order stepper on minibatches monitored on held-out data): each round's step is
/// `step_fn(s)` (or `step_fn()`), whose result is the report `on_step` callbacks receive
/// (`no_step_report` when it returns void); each monitor round calls `monitor_fn(s)` (const
/// stepper, or `monitor_fn()`) for a number or a `zo::evaluation` (invalid: NaN), counted as one
/// monitor evaluation. Step evaluations are the growth of the stepper's `totals().evaluations`.
/// A `pass_mode::fused_next` stepper is settled before each monitor call and at the end.
/// @param s        the stepper
/// @param step_fn  makes one step
/// @param monitor_fn returns the monitored loss at the current parameters
/// @param o        stop rules and monitoring (validated first)
/// @param cb       callbacks (see the file comment)
/// @return the run's report
/// @throws invalid_argument for invalid options, before anything changes; anything step_fn,
///         monitor_fn or a callback throws.
template <class S, class StepFn, class MonitorFn, class... Cb>
  requires detail::run_stepper<S> && (std::invocable<StepFn&, S&> || std::invocable<StepFn&>) &&
           (std::invocable<MonitorFn&, const S&> || std::invocable<MonitorFn&>)
run_report run(S& s, StepFn&& step_fn, MonitorFn&& monitor_fn, const run_options& o, Cb&&... cb) {
  o.validate();
  detail::generic_driver<S, std::remove_reference_t<StepFn>, std::remove_reference_t<MonitorFn>> d(step_fn, monitor_fn);
  return detail::run_loop(s, d, o, cb...);
}

/// Callbacks for `run` (ensmallen's style: objects with optional hooks; see run.hpp's file comment).
namespace callbacks {

/// Shows the run's progress. On a terminal it redraws one line with `\r` (a bar when
/// `max_steps` is set, the step count otherwise, the last monitored and best loss) whenever the
/// percentage changes or, without a step limit, at every monitor round; elsewhere (a file, a pipe,
/// a string stream) it never writes `\r`: it writes one line at every tenth of `max_steps` (none
/// without a step limit). Both end with a summary line. Whether the stream is a terminal is told
/// by the constructor, or detected for `std::cout`, `std::cerr` and `std::clog` (isatty of their
/// file descriptors; any other stream is not a terminal).
class progress_bar {
 public:
  /// Identifies the callback in a run's stop message.
  static constexpr const char* name = "progress_bar";

  /// On `std::cerr`, redrawing only if it is a terminal.
  progress_bar() : progress_bar(std::cerr) {}
  /// On `os`, redrawing only if it is `std::cout`, `std::cerr` or `std::clog` attached to a terminal.
  explicit progress_bar(std::ostream& os) : progress_bar(os, detail::stream_is_terminal(os)) {}
  /// On `os`, redrawing with `\r` if `terminal`; the bar is `width` characters wide (>= 1).
  /// @throws invalid_argument for width = 0
  progress_bar(std::ostream& os, bool terminal, std::size_t width = 30) : os_(&os), terminal_(terminal), width_(width) {
    detail::require(width >= 1, "progress_bar", "width", static_cast<double>(width), ">= 1");
  }

  /// Whether the bar redraws with `\r`.
  bool terminal() const noexcept { return terminal_; }

  /// Records the step limit and resets the drawing.
  template <class S>
  void on_begin(const S&, const run_options& o) noexcept {
    total_ = o.max_steps;
    drawn_ = -1;
    lines_ = 0;
  }
  /// Redraws (terminal) or writes a line at each tenth of the steps (otherwise).
  template <class S, class R>
  void on_step(const S&, const R&, const run_report& r) {
    if (total_ == 0) return;
    if (terminal_) {
      const long pct = static_cast<long>(r.steps * 100 / total_);
      if (pct != drawn_) draw(r);
    } else {
      const std::uint64_t tenth = r.steps * 10 / total_;
      if (tenth > lines_) {
        lines_ = tenth;
        char line[256];
        detail::put(*os_, line,
                    std::snprintf(line, sizeof line, "progress: step %llu/%llu (%llu%%), loss %.6g, best %.6g, %llu evaluations\n",
                                  detail::ull(r.steps), detail::ull(total_), detail::ull(r.steps * 100 / total_),
                                  r.final_loss, r.best_loss, detail::ull(r.evaluations)));
      }
    }
  }
  /// Redraws on a terminal when there is no step limit (the bar shows the new loss at its next change otherwise).
  template <class S>
  void on_monitor(const S&, double, const run_report& r) {
    if (terminal_ && total_ == 0) draw(r);
  }
  /// Final redraw (terminal) and the summary line.
  template <class S>
  void on_end(const S&, const run_report& r) {
    if (terminal_) {
      draw(r);
      *os_ << '\n';
    }
    char line[512];
    detail::put(*os_, line,
                std::snprintf(line, sizeof line,
                              "done: %s; %llu steps, %llu evaluations (%llu monitor), best loss %.6g at step %llu, final %.6g, %.3g s\n",
                              r.message.c_str(), detail::ull(r.steps), detail::ull(r.evaluations),
                              detail::ull(r.monitor_evaluations), r.best_loss, detail::ull(r.best_step), r.final_loss,
                              r.seconds));
    os_->flush();
  }

 private:
  void draw(const run_report& r) {
    char line[256];
    *os_ << '\r';
    if (total_ > 0) {
      const std::uint64_t pct = r.steps * 100 / total_;
      const std::size_t fill = static_cast<std::size_t>(r.steps >= total_ ? width_ : r.steps * width_ / total_);
      *os_ << '[';
      for (std::size_t i = 0; i < width_; ++i) *os_ << (i < fill ? '=' : ' ');
      detail::put(*os_, line,
                  std::snprintf(line, sizeof line, "] %3llu%% %llu/%llu", detail::ull(pct), detail::ull(r.steps), detail::ull(total_)));
      drawn_ = static_cast<long>(pct);
    } else {
      detail::put(*os_, line, std::snprintf(line, sizeof line, "step %llu", detail::ull(r.steps)));
    }
    detail::put(*os_, line, std::snprintf(line, sizeof line, "  loss %-11.4g best %-11.4g", r.final_loss, r.best_loss));
    os_->flush();
  }

  std::ostream* os_;
  bool terminal_;
  std::size_t width_;
  std::uint64_t total_ = 0;
  long drawn_ = -1;
  std::uint64_t lines_ = 0;
};

/// Stops the run after `patience` monitor rounds in a row whose loss is not below the best so far
/// by more than `min_delta` (ensmallen's EarlyStopAtMinLoss). Independent of `run_options::patience`
/// (which has no min_delta); the run then ends with `stop_reason::callback`.
class early_stop {
 public:
  /// Identifies the callback in a run's stop message.
  static constexpr const char* name = "early_stop";

  /// @throws invalid_argument for patience = 0 or a negative or non-finite min_delta
  explicit early_stop(std::uint64_t patience, double min_delta = 0.0) : patience_(patience), min_delta_(min_delta) {
    detail::require(patience >= 1, "early_stop", "patience", static_cast<double>(patience), ">= 1");
    detail::require(std::isfinite(min_delta) && min_delta >= 0.0, "early_stop", "min_delta", min_delta, "finite and >= 0");
  }

  /// Forgets the previous run.
  template <class S>
  void on_begin(const S&, const run_options&) noexcept {
    has_best_ = false;
    since_ = 0;
  }
  /// True (stop) once `patience` rounds in a row brought no loss below best - min_delta.
  template <class S>
  bool on_monitor(const S&, double loss, const run_report&) noexcept {
    if (std::isfinite(loss) && (!has_best_ || loss < best_ - min_delta_)) {
      best_ = loss;
      has_best_ = true;
      since_ = 0;
      return false;
    }
    return ++since_ >= patience_;
  }

  /// The best loss seen (NaN before any finite one).
  double best_loss() const noexcept { return has_best_ ? best_ : std::numeric_limits<double>::quiet_NaN(); }
  /// Monitor rounds since the last improvement.
  std::uint64_t rounds_without_improvement() const noexcept { return since_; }

 private:
  std::uint64_t patience_;
  double min_delta_;
  double best_ = 0.0;
  bool has_best_ = false;
  std::uint64_t since_ = 0;
};

/// Keeps a copy of the parameters at the best monitored loss (the lowest finite one; the first of
/// equal ones), in its own buffers, sized at the run's start (the only allocation; reused by later
/// runs of the same shape), and by default restores them into the stepper's parameters at the end,
/// bit for bit. Only the parameters are restored: the optimizer and estimator state stay those of
/// the last step. Its best agrees with `run_report::best_loss` / `best_step`.
/// @tparam T the parameter type (float or double)
template <real_scalar T>
class keep_best {
 public:
  /// Identifies the callback in a run's stop message.
  static constexpr const char* name = "keep_best";

  /// @param restore_at_end copy the best iterate back into the stepper's parameters at the end of the run
  explicit keep_best(bool restore_at_end = true) : restore_(restore_at_end) {}

  /// Sizes the buffers for the stepper's parameters and forgets the previous run's best.
  template <class S>
  void on_begin(const S& s, const run_options&) {
    static_assert(std::is_same_v<typename S::value_type, T>, "stochgrad::callbacks::keep_best<T>: T must be the stepper's value_type");
    const parameters<T>& p = s.params();
    best_.resize(p.tensors());
    for (std::size_t t = 0; t < p.tensors(); ++t) best_[t].resize(p.tensor(t).size());
    has_ = false;
  }
  /// Copies the parameters when `loss` is a new best.
  template <class S>
  void on_monitor(const S& s, double loss, const run_report& r) {
    if (!std::isfinite(loss) || (has_ && !(loss < loss_))) return;
    const parameters<T>& p = s.params();
    check_shape(p);
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      const std::span<const T> src = p.tensor(t);
      std::copy(src.begin(), src.end(), best_[t].begin());
    }
    loss_ = loss;
    step_ = r.steps;
    has_ = true;
  }
  /// Restores the best iterate if `restore_at_end` (and there is one).
  template <class S>
  void on_end(S& s, const run_report&) {
    if (restore_ && has_) restore(s);
  }
  /// Copies the best iterate into the stepper's parameters (a no-op before any finite loss). A
  /// `pass_mode::fused_next` stepper must be settled first (`run` leaves it settled).
  /// @throws size_mismatch when `s` has other tensor sizes than the recorded iterate
  template <class S>
  void restore(S& s) const {
    if (!has_) return;
    const parameters<T>& p = s.params();
    check_shape(p);
    for (std::size_t t = 0; t < p.tensors(); ++t) std::copy(best_[t].begin(), best_[t].end(), p.tensor(t).begin());
  }

  /// Whether a finite loss was monitored (there is an iterate).
  bool has_best() const noexcept { return has_; }
  /// The best monitored loss (NaN if none).
  double best_loss() const noexcept { return has_ ? loss_ : std::numeric_limits<double>::quiet_NaN(); }
  /// Steps done in the run when the best loss was monitored.
  std::uint64_t best_step() const noexcept { return step_; }
  /// Tensor `t` of the best iterate.
  std::span<const T> iterate(std::size_t t) const noexcept { return best_[t]; }

 private:
  void check_shape(const parameters<T>& p) const {
    detail::require_same_size("keep_best", "the stepper's tensors", p.tensors(), "the recorded tensors", best_.size());
    for (std::size_t t = 0; t < p.tensors(); ++t) {
      detail::require_same_size("keep_best", "a stepper tensor", p.tensor(t).size(), "the recorded tensor", best_[t].size());
    }
  }
  bool restore_;
  std::vector<std::vector<T>> best_;
  double loss_ = 0.0;
  std::uint64_t step_ = 0;
  bool has_ = false;
};

/// Writes one line every `k` steps: the step, the last monitored loss, the best and the evaluations.
class report_every {
 public:
  /// Identifies the callback in a run's stop message.
  static constexpr const char* name = "report_every";

  /// Every `k` steps (>= 1) to `os`.
  /// @throws invalid_argument for k = 0
  explicit report_every(std::uint64_t k, std::ostream& os = std::cout) : k_(k), os_(&os) {
    detail::require(k >= 1, "report_every", "k", static_cast<double>(k), ">= 1");
  }
  /// Writes the line when the step count is a multiple of k.
  template <class S, class R>
  void on_step(const S&, const R&, const run_report& r) {
    if (r.steps % k_ != 0) return;
    char line[256];
    detail::put(*os_, line,
                std::snprintf(line, sizeof line, "step %llu: loss %.6g (at step %llu), best %.6g (at step %llu), %llu evaluations\n",
                              detail::ull(r.steps), r.final_loss, detail::ull(r.final_loss_step), r.best_loss,
                              detail::ull(r.best_step), detail::ull(r.evaluations)));
  }

 private:
  std::uint64_t k_;
  std::ostream* os_;
};

}  // namespace callbacks
}  // namespace stochgrad
