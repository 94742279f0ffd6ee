// SPDX-License-Identifier: Apache-2.0
// Command line of the shoot-out harness.
#include "harness.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <system_error>

namespace harness {
namespace {

std::vector<std::string> split_list(const std::string& opt, const std::string& s) {
  std::vector<std::string> out;
  std::size_t b = 0;
  for (;;) {
    const std::size_t c = s.find(',', b);
    std::string item = s.substr(b, c == std::string::npos ? std::string::npos : c - b);
    if (item.empty()) throw usage_error(fmt::format("{} expects a comma-separated list without empty items, got '{}'", opt, s));
    out.push_back(std::move(item));
    if (c == std::string::npos) break;
    b = c + 1;
  }
  return out;
}

std::uint64_t parse_u64(const std::string& opt, std::string_view s, std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi) {
    throw usage_error(fmt::format("{} expects an integer in [{}, {}], got '{}'", opt, lo, hi, s));
  }
  return v;
}

double parse_double(const std::string& opt, std::string_view s, double lo, double hi) {
  double v = 0.0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v) || v < lo || v > hi) {
    throw usage_error(fmt::format("{} expects a number in [{:g}, {:g}], got '{}'", opt, lo, hi, s));
  }
  return v;
}

}  // namespace

void print_help() {
  fmt::print(
      R"(usage: shootout [options]

The stochgrad estimator shoot-out: runs every (problem x stepper) pair on the built-in problem
suite and reports final objective / accuracy, steps and time to a target, gradient-estimate
quality, throughput and peak memory, as a terminal table and as files in the output folder
(results.json, results.csv, curves.csv, summary.txt, plot-<problem>.svg, index.html).

Modes (pick one):
  --quick                 the default: about two minutes on 2 cores
  --full                  longer budgets, 3 seeds, denser curves
  --smoke                 a few steps of everything (a CI check; seconds)
  --kernels               print the kernel throughput table instead (size: --n N, default 1e7)
  --list                  list problems, steppers and runners, then exit
  --spsa-grid             calibrated spsa (no setting) against spall-spsa over a grid of gains a
                          on the selected problems (default: the 1000-d quadratics, Rosenbrock,
                          logistic regression): final f and evaluations to the target

Selection:
  --problems LIST         problem names or families, comma-separated (default: all)
                          e.g. --problems quadratic,rosenbrock-2,mlp-digits
  --steppers LIST         stepper names, comma-separated (default: all)
  --seeds LIST            seeds, e.g. 1,2,3 or 1-5 (default: 1,2 quick; 1,2,3 full; 1 smoke)
  --dim FAMILY=LIST       dimensions of a scalable family (quadratic, rosenbrock), e.g.
                          --dim quadratic=1000,1000000 --dim rosenbrock=2,10 (the defaults)
  --condition K           condition number of the quadratics (default 1000)
  --rotate-up-to D        quadratics with d <= D get a dense random rotation (default 2000,
                          at most 4096; 0 = never)
  --steps N               step budget of every run (default: per problem and mode)
  --precision P           float, double or auto (default auto: float for quadratic and MLP,
                          double for Rosenbrock and logistic regression)
  --set S.NAME=V          override hyper-parameter NAME of stepper S (S@PROBLEM.NAME=V for one
                          problem or family), e.g. --set ref-gd.lr=0.5 --set ref-zo-sgd@rosenbrock.eps=1e-4

Execution:
  --threads N             threads for kernels and problem evaluations (default: all cores);
                          results do not depend on it, only wall times do
  --grad-samples K        gradient estimates per quality measurement (default: 4 smoke,
                          16 quick, 64 full; below 2 disables the measurement)

Output:
  --out DIR               output folder (default: shootout-out in the current directory);
                          it is created, and checked for writing before any work starts
  --data-dir DIR          folder with breast_cancer.csv and digits.csv (default: {})
  --fashion-mnist-dir DIR folder with the Fashion-MNIST idx .gz files (default: {}); the
                          fmnist problems are skipped, with the reason, when it or zlib is missing
  --no-progress           no progress bar (it is only drawn when stderr is a terminal)
  -h, --help              this text

Exit status: 0 success; 1 a run failed, or data/output error; 2 bad command line.
)",
      STOCHGRAD_DATA_DIR, STOCHGRAD_FASHION_MNIST_DIR);
}

bool parse_options(int argc, char** argv, options& o) {
  o.data_dir = STOCHGRAD_DATA_DIR;
  o.fashion_dir = STOCHGRAD_FASHION_MNIST_DIR;
  for (int i = 0; i < argc; ++i) o.argv.emplace_back(argv[i]);
  bool mode_given = false;
  auto set_mode = [&](mode m, const std::string& opt) {
    if (mode_given && o.run_mode != m) throw usage_error(fmt::format("{} conflicts with --{}: choose one mode", opt, to_string(o.run_mode)));
    mode_given = true;
    o.run_mode = m;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      if (const auto eq = a.find('='); eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) throw usage_error(fmt::format("option {} needs a value", a));
      return argv[++i];
    };
    auto flag = [&] {
      if (has_inline) throw usage_error(fmt::format("option {} takes no value", a));
    };
    if (a == "-h" || a == "--help") {
      flag();
      print_help();
      return false;
    } else if (a == "--quick") {
      flag();
      set_mode(mode::quick, a);
    } else if (a == "--full") {
      flag();
      set_mode(mode::full, a);
    } else if (a == "--smoke") {
      flag();
      set_mode(mode::smoke, a);
    } else if (a == "--kernels") {
      flag();
      o.kernels = true;
    } else if (a == "--n") {
      o.kernel_n = parse_u64(a, value(), 1024, 1'000'000'000);
    } else if (a == "--spsa-grid") {
      flag();
      o.spsa_grid = true;
    } else if (a == "--list") {
      flag();
      o.list = true;
    } else if (a == "--problems") {
      o.problems = split_list(a, value());
    } else if (a == "--steppers") {
      o.steppers = split_list(a, value());
    } else if (a == "--seeds") {
      o.seeds.clear();
      for (const std::string& item : split_list(a, value())) {
        const auto dash = item.find('-');
        if (dash == std::string::npos) {
          o.seeds.push_back(parse_u64(a, item, 0, UINT64_MAX));
        } else {
          const auto lo = parse_u64(a, std::string_view(item).substr(0, dash), 0, UINT64_MAX);
          const auto hi = parse_u64(a, std::string_view(item).substr(dash + 1), 0, UINT64_MAX);
          if (hi < lo || hi - lo >= 1000) {
            throw usage_error(fmt::format("--seeds: range '{}' must be increasing and hold at most 1000 seeds", item));
          }
          for (std::uint64_t s = lo; s <= hi; ++s) o.seeds.push_back(s);
        }
      }
    } else if (a == "--dim") {
      const std::string v = value();
      const auto eq = v.find('=');
      if (eq == std::string::npos) throw usage_error(fmt::format("--dim expects FAMILY=LIST, got '{}'", v));
      const std::string fam = v.substr(0, eq);
      if (fam != "quadratic" && fam != "rosenbrock") {
        throw usage_error(fmt::format("--dim: '{}' is not a scalable family (quadratic, rosenbrock)", fam));
      }
      const std::uint64_t lo = fam == "rosenbrock" ? 2 : 1;
      std::vector<std::size_t> ds;
      for (const std::string& item : split_list("--dim " + fam, v.substr(eq + 1))) {
        ds.push_back(static_cast<std::size_t>(parse_u64("--dim " + fam, item, lo, 1'000'000'000)));
      }
      o.dims[fam] = ds;
    } else if (a == "--condition") {
      o.condition = parse_double(a, value(), 1.0, 1e15);
    } else if (a == "--rotate-up-to") {
      o.rotate_up_to = static_cast<std::size_t>(parse_u64(a, value(), 0, 4096));
    } else if (a == "--steps") {
      o.steps = static_cast<std::size_t>(parse_u64(a, value(), 1, 1'000'000'000));
    } else if (a == "--precision") {
      o.precision_choice = value();
      if (o.precision_choice != "auto" && o.precision_choice != "float" && o.precision_choice != "double") {
        throw usage_error(fmt::format("--precision expects auto, float or double, got '{}'", o.precision_choice));
      }
    } else if (a == "--set") {
      const std::string v = value();
      const auto eq = v.find('=');
      const auto dot = v.substr(0, eq).rfind('.');
      if (eq == std::string::npos || dot == std::string::npos || dot == 0 || dot + 1 == eq) {
        throw usage_error(fmt::format("--set expects STEPPER.NAME=VALUE or STEPPER@PROBLEM.NAME=VALUE, got '{}'", v));
      }
      o.sets.emplace_back(v.substr(0, eq), parse_double("--set " + v.substr(0, eq), v.substr(eq + 1), -1e300, 1e300));
    } else if (a == "--threads") {
      o.threads = static_cast<unsigned>(parse_u64(a, value(), 1, 1024));
    } else if (a == "--grad-samples") {
      o.grad_samples = static_cast<std::size_t>(parse_u64(a, value(), 0, 100000));
    } else if (a == "--out") {
      o.out = value();
      if (o.out.empty()) throw usage_error("--out expects a folder name");
    } else if (a == "--data-dir") {
      o.data_dir = value();
    } else if (a == "--fashion-mnist-dir") {
      o.fashion_dir = value();
    } else if (a == "--no-progress") {
      flag();
      o.progress = false;
    } else if (a.rfind("-", 0) == 0) {
      throw usage_error(fmt::format("unknown option '{}'", argv[i]));
    } else {
      throw usage_error(fmt::format("unexpected argument '{}'", argv[i]));
    }
  }
  return true;
}

}  // namespace harness
