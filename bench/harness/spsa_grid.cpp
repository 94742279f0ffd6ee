// SPDX-License-Identifier: Apache-2.0
// `shootout --spsa-grid`: SPSA without tuning against the best hand-set gain. On each problem, the
// calibrated `spsa` preset (no setting) and `spall-spsa` over a grid of gains a (A = 10 % of the
// budget, c = 1e-3, Spall's exponents) run for every seed with the same budget; the table gives the
// seed mean of the final objective, how many seeds reached the target, and the median number of
// loss evaluations to it (calibration and blocking evaluations included for `spsa`).
#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace harness {
namespace {

constexpr double grid[] = {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0};

struct row {
  std::string method;
  double a = 0.0;  // 0: calibrated
  double final_f = 0.0;
  std::size_t reached = 0, runs = 0, diverged = 0;
  double evals_median = -1.0;
};

double median(std::vector<double> v) {
  if (v.empty()) return -1.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const stepper_info& find(const registry& reg, const std::string& name) {
  for (const stepper_info& s : reg.steppers()) {
    if (s.name == name) return s;
  }
  throw usage_error("stepper " + name + " is not registered");
}

}  // namespace

int run_spsa_grid(const registry& reg, const std::vector<const problem_info*>& problems, const options& o,
                  const std::vector<std::uint64_t>& seeds, stochgrad::executor ex) {
  const stepper_info& cal = find(reg, "spsa");
  const stepper_info& plain = find(reg, "spall-spsa");
  std::string out = fmt::format(
      "SPSA without tuning vs a gain grid ({} mode, seeds {}): spall-spsa with a in {{{}}}, A = 10 % of the budget, "
      "c = 1e-3; spsa calibrated (no setting).\nfinal f: seed mean; evals>target: median loss evaluations of the seeds "
      "that reached the target (calibration and blocking included)\n\n",
      to_string(o.run_mode), fmt::join(seeds, ","), fmt::join(grid, ", "));
  out += fmt::format("{:<26} {:<12} {:>9} {:>8} {:>12} {:>9} {:>13}\n", "problem", "stepper", "a", "steps", "final f",
                     "reached", "evals>target");
  out += std::string(95, '-') + "\n";
  int status = 0;
  for (const problem_info* p : problems) {
    if (!registry::applies(cal, *p)) continue;
    problem_instance inst = instantiate(*p);
    const std::size_t steps = o.steps != 0 ? o.steps : p->steps.in(o.run_mode);
    std::vector<row> rows;
    const auto run_one = [&](const stepper_info& s, double a) {
      options oo = o;
      oo.grad_samples = 0;
      if (a > 0.0) {
        oo.sets.emplace_back(s.name + ".a", a);
        oo.sets.emplace_back(s.name + ".A", 0.1 * static_cast<double>(steps));
        oo.sets.emplace_back(s.name + ".c", 1e-3);
      }
      row r{a > 0.0 ? s.name : s.name + " (cal.)", a};
      std::vector<double> evals;
      double sum = 0.0;
      for (const std::uint64_t seed : seeds) {
        const run_result res = execute(*p, inst, s, seed, oo, steps, 0, ex, {});
        if (res.status == "error") {
          fmt::print(stderr, "shootout: {} x {} (seed {}) failed: {}\n", p->name, s.name, seed, res.message);
          status = 1;
        }
        ++r.runs;
        if (res.status == "diverged") ++r.diverged;
        sum += res.final_point.objective;
        if (res.reached_target && res.status == "ok") {
          ++r.reached;
          evals.push_back(static_cast<double>(res.losses_to_target));
        }
      }
      r.final_f = sum / static_cast<double>(seeds.size());
      r.evals_median = median(evals);
      rows.push_back(r);
    };
    run_one(cal, 0.0);
    for (const double a : grid) run_one(plain, a);
    // The best hand-set gain: fewest evaluations to the target among the gains where every seed
    // reached it; otherwise the lowest mean final f among the gains that did not diverge.
    std::size_t best = 0;
    for (std::size_t i = 1; i < rows.size(); ++i) {
      const row& r = rows[i];
      const row* b = best == 0 ? nullptr : &rows[best];
      const bool all = r.reached == r.runs;
      if (b == nullptr) {
        if (r.diverged == 0 || all) best = i;
        continue;
      }
      const bool ball = b->reached == b->runs;
      if (all && (!ball || r.evals_median < b->evals_median)) best = i;
      if (!all && !ball && r.diverged == 0 && r.final_f < b->final_f) best = i;
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const row& r = rows[i];
      const std::string fin = r.diverged == r.runs ? "diverged"
                              : r.diverged > 0     ? fmt::format("{:.4e}*", r.final_f)
                                                   : fmt::format("{:.4e}", r.final_f);
      out += fmt::format("{:<26} {:<12} {:>9} {:>8} {:>12} {:>9} {:>13}{}\n", i == 0 ? p->name : "", r.method,
                         r.a > 0.0 ? fmt::format("{:g}", r.a) : "-", steps, fin, fmt::format("{}/{}", r.reached, r.runs),
                         r.evals_median >= 0.0 ? fmt::format("{:.0f}", r.evals_median) : "-",
                         i == best && best != 0 ? "  <- best hand-set" : "");
    }
    out += "\n";
  }
  out += "(*: some seeds diverged; their final f is in the mean)\n";
  fmt::print("{}", out);
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  std::ofstream f(std::filesystem::path(o.out) / "spsa-grid.txt");
  f << out;
  if (!f) {
    fmt::print(stderr, "shootout: cannot write {}/spsa-grid.txt\n", o.out);
    return 1;
  }
  fmt::print("wrote {}/spsa-grid.txt\n", o.out);
  return status;
}

}  // namespace harness
