// SPDX-License-Identifier: Apache-2.0
// Executes one (problem, stepper, seed) run: the step loop, its clock, curve recording, target
// detection, divergence, peak memory and the gradient-estimate quality (at the initial point, or
// where the problem's quality_point says).
#include <stochgrad/bits/kernels/reduce.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <malloc.h>
#include <sys/resource.h>

namespace harness {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Value in kB of a "Name:   123 kB" line of /proc/self/status (NaN if absent).
double status_kb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return nan;
  char line[256];
  double v = nan;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, n) == 0) {
      v = std::strtod(line + n, nullptr);
      break;
    }
  }
  std::fclose(f);
  return v;
}

// Peak resident memory of one run: trims the heap, resets the kernel's high-water mark
// (/proc/self/clear_refs "5", Linux >= 4.0) and reads VmHWM afterwards. Where the reset is not
// possible it falls back to getrusage's ru_maxrss (the process peak so far) and reports no delta.
class memory_probe {
 public:
  void start() {
    malloc_trim(0);
    {
      std::ofstream clear("/proc/self/clear_refs");
      clear << "5";
      clear.flush();
      reset_ = static_cast<bool>(clear);
    }
    start_kb_ = status_kb("VmRSS:");
    reset_ = reset_ && !std::isnan(start_kb_);
  }
  void stop(run_result& r) const {
    if (reset_) {
      const double hwm = status_kb("VmHWM:");
      r.peak_rss_mb = hwm / 1024.0;
      r.peak_delta_mb = (hwm - start_kb_) / 1024.0;
      r.memory_method = "VmHWM after clear_refs reset";
    } else {
      rusage u{};
      getrusage(RUSAGE_SELF, &u);
      r.peak_rss_mb = static_cast<double>(u.ru_maxrss) / 1024.0;
      r.memory_method = "ru_maxrss (process peak)";
    }
  }

 private:
  bool reset_ = false;
  double start_kb_ = nan;
};

std::size_t points_for(mode m) { return m == mode::smoke ? 10 : m == mode::quick ? 100 : 200; }

template <class T>
std::unique_ptr<driver<T>> make_driver(const stepper_info& s, const run_setup& rs) {
  if constexpr (std::is_same_v<T, float>) {
    return s.make_f32(rs);
  } else {
    return s.make_f64(rs);
  }
}

template <class T>
void measure_quality(problem<T>& prob, const stepper_info& s, const run_setup& rs, std::span<const T> x0,
                     std::size_t samples, const std::string& at, run_result& r) {
  const std::size_t d = x0.size();
  if (!prob.has_gradient() || samples < 2) return;
  std::vector<T> g(d), gk(d), xs(d);
  prob.loss_and_gradient(x0, std::span<T>(g), rs.ex);
  const double gg = stochgrad::sum_squares<T>(g, rs.ex);
  if (!(gg > 0.0) || !std::isfinite(gg)) return;  // at a stationary point there is nothing to score
  auto drv = make_driver<T>(s, rs);
  oracle<T> orc(prob, s.fam, rs.ex);
  // Welford over samples, element-wise: mean m_k = m_{k-1} + (g_k - m_{k-1}) / k and
  // M2 += (g_k - m_{k-1}) . (g_k - m_k) = sum_k |g_k - mean|^2 without cancellation.
  std::vector<double> mean(d, 0.0);
  double cos_sum = 0.0, m2 = 0.0;
  for (std::size_t k = 0; k < samples; ++k) {
    std::copy(x0.begin(), x0.end(), xs.begin());
    if (!drv->estimate(std::span<T>(xs), orc, k, std::span<T>(gk))) return;
    const double kk = stochgrad::sum_squares<T>(gk, rs.ex);
    const double kg = stochgrad::dot<T>(gk, g, rs.ex);
    cos_sum += kk > 0.0 ? kg / std::sqrt(kk * gg) : 0.0;
    const double inv = 1.0 / static_cast<double>(k + 1);
    for (std::size_t i = 0; i < d; ++i) {
      const double v = static_cast<double>(gk[i]);
      const double delta = v - mean[i];
      mean[i] += delta * inv;
      m2 += delta * (v - mean[i]);
    }
  }
  const double K = static_cast<double>(samples);
  double mm = 0.0, mg = 0.0, dd = 0.0;
  for (std::size_t i = 0; i < d; ++i) {
    const double gi = static_cast<double>(g[i]);
    mm += mean[i] * mean[i];
    mg += mean[i] * gi;
    dd += (mean[i] - gi) * (mean[i] - gi);
  }
  r.quality.measured = true;
  r.quality.at = at;
  r.quality.samples = samples;
  r.quality.cos_mean = cos_sum / K;
  r.quality.cos_of_mean = mm > 0.0 ? mg / std::sqrt(mm * gg) : 0.0;
  r.quality.rel_var = m2 / ((K - 1.0) * gg);
  r.quality.rel_bias = std::sqrt(dd / gg);
}

template <class T>
void execute_t(const problem_info& p, problem<T>& prob, const stepper_info& s, const options& o, run_setup rs,
               std::size_t grad_samples, const progress_fn& progress, run_result& r) {
  const std::size_t d = prob.dimension();
  const stochgrad::executor& ex = rs.ex;
  // Initial point and warm-up (problem workspaces exist before the memory probe starts).
  std::vector<T> x0(d);
  prob.initial_point(std::span<T>(x0), 0);
  r.initial = prob.evaluate(std::span<const T>(x0), ex);
  if (prob.has_gradient()) {
    std::vector<T> gw(d);
    prob.loss_and_gradient(std::span<const T>(x0), std::span<T>(gw), ex);
  }
  const double off = std::isnan(p.optimum) ? 0.0 : p.optimum;
  r.initial_gap = r.initial.objective - off;
  const std::size_t steps = rs.steps;
  const std::size_t points = p.points != 0 && o.run_mode != mode::smoke ? p.points : points_for(o.run_mode);
  const std::size_t every = std::max<std::size_t>(1, steps / points);

  memory_probe mem;
  mem.start();
  {
    std::vector<T> x(x0);
    auto drv = make_driver<T>(s, rs);
    oracle<T> orc(prob, s.fam, ex);
    drv->prepare(std::span<T>(x), orc);
    r.curve.push_back({0, r.initial, 0.0});
    r.final_point = r.initial;
    if (p.target.reached(r.initial, p.optimum, r.initial_gap)) {
      r.reached_target = true;
      r.steps_to_target = 0;
      r.time_to_target_s = 0.0;
    }
    const double blowup = 1e12 * (1.0 + std::abs(r.initial.objective));
    // Steps run in blocks of `every`, timed as a block (no clock reads between steps); the
    // recording evaluation and the progress callback happen between blocks, off the clock.
    std::size_t k = 0;
    while (k < steps) {
      const std::size_t end = std::min(steps, (k / every + 1) * every);
      const auto t0 = clock_type::now();
      for (; k < end; ++k) drv->step(std::span<T>(x), orc);
      r.step_time_s += seconds_since(t0);
      r.steps_done = k;
      const eval_point e = prob.evaluate(std::span<const T>(x), ex);
      r.curve.push_back({k, e, r.step_time_s});
      r.final_point = e;
      if (!std::isfinite(e.objective) || e.objective > blowup) {
        r.status = "diverged";
        r.message = fmt::format("objective {} at step {}", e.objective, k);
        break;
      }
      if (!r.reached_target && p.target.reached(e, p.optimum, r.initial_gap)) {
        r.reached_target = true;
        r.steps_to_target = k;
        r.losses_to_target = orc.losses();
        r.time_to_target_s = r.step_time_s;
      }
      if (progress) progress(static_cast<double>(k) / static_cast<double>(steps), k);
    }
    r.losses = orc.losses();
    r.gradients = orc.gradients();
    r.completions = orc.completions();
  }
  mem.stop(r);
  if (r.step_time_s > 0.0) {
    r.updates_per_s = static_cast<double>(d) * static_cast<double>(r.steps_done) / r.step_time_s;
  }
  std::vector<T> xq(x0);
  prob.quality_point(std::span<T>(xq));
  measure_quality<T>(prob, s, rs, std::span<const T>(xq), grad_samples, p.quality_at, r);
}

}  // namespace

run_result execute(const problem_info& p, problem_instance& inst, const stepper_info& s, std::uint64_t seed,
                   const options& o, std::size_t steps, std::size_t grad_samples, stochgrad::executor ex,
                   const progress_fn& progress) {
  const auto wall0 = clock_type::now();
  run_result r;
  r.problem = p.name;
  r.stepper = s.name;
  r.seed = seed;
  r.dimension = p.dimension;
  r.prec = p.prec;
  r.steps_budget = steps;
  run_setup rs;
  rs.problem = p.name;
  rs.problem_family = p.family;
  rs.stepper = s.name;
  rs.seed = seed;
  rs.dimension = p.dimension;
  rs.steps = steps;
  rs.ex = ex;
  rs.hyper = registry::hyper_for(s, p, o.sets);
  r.hyper = rs.hyper;
  try {
    if (inst.f32) {
      execute_t<float>(p, *inst.f32, s, o, rs, grad_samples, progress, r);
    } else {
      execute_t<double>(p, *inst.f64, s, o, rs, grad_samples, progress, r);
    }
  } catch (const std::exception& e) {
    r.status = "error";
    r.message = e.what();
  }
  r.wall_s = seconds_since(wall0);
  return r;
}

}  // namespace harness
