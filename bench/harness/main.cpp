// SPDX-License-Identifier: Apache-2.0
// stochgrad shoot-out harness (the README's main job): every (problem x stepper) runner on the
// built-in problem suite, reported as a terminal table, JSON, CSV and SVG plots. `--kernels`
// prints the kernel throughput table instead. See `shootout --help` and harness.hpp.
#include <stochgrad/bits/error.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/ioctl.h>
#include <unistd.h>

namespace {

using namespace harness;
namespace fs = std::filesystem;

// A one-line progress bar on stderr, redrawn at most ten times a second; only on a terminal.
class progress_bar {
 public:
  progress_bar(bool enabled, double total_weight) : enabled_(enabled), total_(total_weight) {
    if (enabled_) {
      winsize ws{};
      if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) width_ = ws.ws_col;
    }
  }
  void update(double done_weight, const std::string& label) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double frac = std::clamp(done_weight / total_, 0.0, 1.0);
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    std::string eta = "--:--";
    if (frac > 0.01) {
      const auto left = static_cast<long>(elapsed * (1.0 - frac) / frac);
      eta = fmt::format("{}:{:02}", left / 60, left % 60);
    }
    const int bar = 24;
    const int full = static_cast<int>(frac * bar);
    std::string line = fmt::format("[{}{}] {:3.0f}%  ETA {}  {}", std::string(static_cast<std::size_t>(full), '#'),
                                   std::string(static_cast<std::size_t>(bar - full), '.'), frac * 100, eta, label);
    if (line.size() + 1 > width_) line.resize(width_ - 1);
    fmt::print(stderr, "\r{}\033[K", line);
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (enabled_ && drawn_) {
      fmt::print(stderr, "\r\033[K");
      std::fflush(stderr);
    }
  }

 private:
  bool enabled_;
  double total_;
  std::size_t width_ = 100;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

// Empty string if `out` is (now) a writable folder, else the reason.
std::string prepare_output(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return ec.message();
  if (!fs::is_directory(out, ec)) return "not a directory";
  const fs::path probe = fs::path(out) / ".shootout-write-test";
  {
    std::ofstream f(probe, std::ios::binary);
    f << "ok";
    f.close();
    if (!f) return "cannot create files in it";
  }
  fs::remove(probe, ec);
  return {};
}

template <class Info>
std::vector<const Info*> select(const std::vector<Info>& all, const std::vector<std::string>& tokens, const char* what,
                                bool (*match)(const Info&, const std::string&)) {
  std::vector<const Info*> out;
  for (const Info& i : all) {
    bool take = tokens.empty();
    for (const std::string& t : tokens) take = take || match(i, t);
    if (take) out.push_back(&i);
  }
  for (const std::string& t : tokens) {
    bool any = false;
    for (const Info& i : all) any = any || match(i, t);
    if (!any) {
      std::string names;
      for (const Info& i : all) names += (names.empty() ? "" : ", ") + i.name;
      throw usage_error(fmt::format("unknown {} '{}' (choose from: {})", what, t, names));
    }
  }
  return out;
}

bool match_problem(const problem_info& p, const std::string& t) { return p.name == t || p.family == t; }
bool match_stepper(const stepper_info& s, const std::string& t) { return s.name == t; }

void print_list(const registry& reg, const std::vector<const problem_info*>& ps, const std::vector<const stepper_info*>& ss,
                const options& o) {
  fmt::print("problems:\n");
  for (const problem_info* p : ps) {
    fmt::print("  {:<20} d = {:<8} {:<6} {}  [target: {}; steps {}]\n", p->name, p->dimension, to_string(p->prec),
               p->description, p->target.describe(), o.steps ? o.steps : p->steps.in(o.run_mode));
  }
  fmt::print("steppers:\n");
  for (const stepper_info* s : ss) fmt::print("  {:<20} {:<16} {}\n", s->name, to_string(s->fam), s->description);
  fmt::print("runners (problem x stepper):\n");
  for (const problem_info* p : ps) {
    std::string names;
    for (const stepper_info* s : ss) {
      if (!registry::applies(*s, *p)) continue;
      std::string hp;
      const hyper_map h = registry::hyper_for(*s, *p, o.sets);
      for (const auto& [k, v] : h) hp += fmt::format("{}{}={:g}", hp.empty() ? "" : ",", k, v);
      names += fmt::format("\n    {:<14} {:>6} steps  {}", s->name, registry::steps_for(*s, *p, o.run_mode, o.steps, h), hp);
    }
    fmt::print("  {}{}\n", p->name, names.empty() ? ": -" : names);
  }
  (void)reg;
}

int run(int argc, char** argv) {
  options o;
  std::vector<const problem_info*> problems;
  std::vector<const stepper_info*> steppers;
  registry reg;
  try {
    if (!parse_options(argc, argv, o)) return 0;
    if (!o.kernels) {
      register_problems(reg, o);
      register_reference_steppers(reg);
      register_library_steppers(reg);
      // Problems this build or machine cannot offer (Fashion-MNIST without zlib or its files) are
      // announced with the reason; asking for them by name or family is not a usage error.
      std::vector<std::string> tokens;
      for (const std::string& t : o.problems) {
        bool only_skipped = false;
        for (const auto& [name, why] : reg.skipped()) {
          only_skipped = only_skipped || name == t || name.rfind(t + "-", 0) == 0;
        }
        for (const problem_info& p : reg.problems()) only_skipped = only_skipped && !match_problem(p, t);
        if (!only_skipped) tokens.push_back(t);
      }
      for (const auto& [name, why] : reg.skipped()) {
        bool wanted = o.problems.empty();
        for (const std::string& t : o.problems) wanted = wanted || name == t || name.rfind(t + "-", 0) == 0;
        if (wanted) fmt::print(stderr, "shootout: skipping problem {}: {}\n", name, why);
      }
      if (tokens.empty() && !o.problems.empty()) {
        fmt::print(stderr, "shootout: none of the selected problems is available\n");
        return 1;
      }
      problems = select(reg.problems(), tokens, "problem", match_problem);
      steppers = select(reg.steppers(), o.steppers, "stepper", match_stepper);
      for (const auto& [key, v] : o.sets) {
        std::string who = key.substr(0, key.rfind('.'));
        std::string where;
        if (const auto at = who.find('@'); at != std::string::npos) {
          where = who.substr(at + 1);
          who = who.substr(0, at);
        }
        select(reg.steppers(), {who}, "stepper in --set", match_stepper);
        if (!where.empty()) select(reg.problems(), {where}, "problem in --set", match_problem);
      }
    }
  } catch (const usage_error& e) {
    fmt::print(stderr, "shootout: {}\n(try shootout --help)\n", e.what());
    return 2;
  }
  const unsigned threads = o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  if (o.kernels) {
    run_kernel_table(o.kernel_n, threads);
    return 0;
  }
  if (o.list) {
    print_list(reg, problems, steppers, o);
    return 0;
  }
  if (o.spsa_grid) {
    std::vector<const problem_info*> grid_problems;
    for (const problem_info* p : problems) {
      const bool wanted = !o.problems.empty() || p->family == "quadratic" || p->family == "rosenbrock" ||
                          p->family == "logreg";
      if (wanted && p->dimension <= 100'000) grid_problems.push_back(p);
    }
    std::vector<std::uint64_t> gseeds = o.seeds.empty() ? std::vector<std::uint64_t>{1, 2} : o.seeds;
    std::unique_ptr<stochgrad::thread_pool> gpool;
    stochgrad::executor gex;
    if (threads > 1) {
      gpool = std::make_unique<stochgrad::thread_pool>(threads);
      gex = stochgrad::executor(*gpool);
    }
    return run_spsa_grid(reg, grid_problems, o, gseeds, gex);
  }
  struct job {
    const problem_info* p;
    const stepper_info* s;
    std::uint64_t seed;
    std::size_t steps;
    double weight;
  };
  std::vector<std::uint64_t> seeds = o.seeds;
  if (seeds.empty()) {
    seeds = o.run_mode == mode::smoke ? std::vector<std::uint64_t>{1}
            : o.run_mode == mode::quick ? std::vector<std::uint64_t>{1, 2}
                                        : std::vector<std::uint64_t>{1, 2, 3};
  }
  const std::size_t samples = o.grad_samples != options::default_samples ? o.grad_samples
                              : o.run_mode == mode::smoke                ? 4
                              : o.run_mode == mode::quick                ? 16
                                                                         : 64;
  std::vector<job> jobs;
  std::vector<const problem_info*> used_problems;
  for (const problem_info* p : problems) {
    bool used = false;
    for (const stepper_info* s : steppers) {
      if (!registry::applies(*s, *p)) continue;
      used = true;
      const std::size_t steps =
          registry::steps_for(*s, *p, o.run_mode, o.steps, registry::hyper_for(*s, *p, o.sets));
      for (std::uint64_t seed : seeds) {
        jobs.push_back({p, s, seed, steps, static_cast<double>(steps) * p->step_cost_us});
      }
    }
    if (used) used_problems.push_back(p);
  }
  if (jobs.empty()) {
    fmt::print(stderr,
               "shootout: no runner matches the selection (first-order steppers need a problem with an exact "
               "gradient; policy-gradient steppers need a reward task)\n(try shootout --list)\n");
    return 2;
  }
  // The output folder must be writable before any work starts.
  if (const std::string why = prepare_output(o.out); !why.empty()) {
    fmt::print(stderr, "shootout: cannot write to output folder '{}': {}\n", o.out, why);
    return 1;
  }
  // Problems (and their datasets) are built once, before the first run.
  std::vector<problem_instance> instances(used_problems.size());
  try {
    for (std::size_t i = 0; i < used_problems.size(); ++i) instances[i] = instantiate(*used_problems[i]);
  } catch (const stochgrad::error& e) {
    fmt::print(stderr, "shootout: {}\n(the datasets are looked up in --data-dir, default {}; Fashion-MNIST in "
               "--fashion-mnist-dir, default {})\n", e.what(), STOCHGRAD_DATA_DIR, STOCHGRAD_FASHION_MNIST_DIR);
    return 1;
  }
  std::unique_ptr<stochgrad::thread_pool> pool;
  stochgrad::executor ex;
  if (threads > 1) {
    pool = std::make_unique<stochgrad::thread_pool>(threads);
    ex = stochgrad::executor(*pool);
  }
  double total_weight = 0.0;
  for (const job& j : jobs) total_weight += j.weight;
  progress_bar bar(o.progress && isatty(STDERR_FILENO) != 0, total_weight);
  if (!isatty(STDERR_FILENO) || !o.progress) {
    fmt::print(stderr, "shootout: {} runs ({} problems x {} steppers x {} seeds), {} mode, {} thread{}\n", jobs.size(),
               used_problems.size(), steppers.size(), seeds.size(), to_string(o.run_mode), threads,
               threads == 1 ? "" : "s");
  }
  report_input in;
  in.opts = &o;
  in.problems = used_problems;
  in.steppers = steppers;
  in.seeds = seeds;
  in.threads = threads;
  in.grad_samples = samples;
  for (const auto& sk : reg.skipped()) {
    bool wanted = o.problems.empty();
    for (const std::string& t : o.problems) wanted = wanted || sk.first == t || sk.first.rfind(t + "-", 0) == 0;
    if (wanted) in.skipped.push_back(sk);
  }
  const auto t0 = std::chrono::steady_clock::now();
  double done = 0.0;
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    const job& j = jobs[k];
    const std::size_t pi =
        static_cast<std::size_t>(std::find(used_problems.begin(), used_problems.end(), j.p) - used_problems.begin());
    const std::string label = fmt::format("run {}/{}: {} x {} (seed {})", k + 1, jobs.size(), j.p->name, j.s->name, j.seed);
    bar.update(done, label);
    in.runs.push_back(execute(*j.p, instances[pi], *j.s, j.seed, o, j.steps, samples, ex,
                              [&](double frac, std::size_t) { bar.update(done + frac * j.weight, label); }));
    done += j.weight;
  }
  bar.clear();
  in.total_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string table = format_table(in);
  fmt::print("{}", table);
  int status = 0;
  for (const run_result& r : in.runs) {
    if (r.status == "error") {
      fmt::print(stderr, "shootout: run {} x {} (seed {}) failed: {}\n", r.problem, r.stepper, r.seed, r.message);
      status = 1;
    }
  }
  try {
    const auto files = write_reports(in, table);
    fmt::print("\n{} runs in {:.1f} s; wrote {} files to {}/:", in.runs.size(), in.total_wall_s, files.size(), o.out);
    for (const std::string& f : files) fmt::print(" {}", fs::path(f).filename().string());
    fmt::print("\n");
  } catch (const std::exception& e) {
    fmt::print(stderr, "shootout: {}\n", e.what());
    return 1;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "shootout: {}\n", e.what());
    return 1;
  }
}
