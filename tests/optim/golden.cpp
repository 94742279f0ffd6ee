// SPDX-License-Identifier: Apache-2.0
// Golden trajectories from peer libraries (tests/golden/optimizers.json: timm's Adan, optax's
// adan, torch's Adam/AdamW/SGD, float64): every case is replayed with stochgrad's optimizer and
// compared at every recorded step. Expected values come only from the file.
//
// The file is taken from `--golden <path>`, else from the environment variable
// STOCHGRAD_OPTIM_GOLDEN, else STOCHGRAD_GOLDEN_DIR/optimizers.json, so any reference set with
// the same schema can be checked:
//   { "problem": {"dim", "acoef", "bshift", "c"},            (the formula in "problem.formula")
//     "cases": { "<kind>_<anything>": { "config": {...}, ["x0", "a", "b"], "trajectory": {"<step>": [x...]} } } }
// with <kind> one of timm_adan, optax_adan, torch_adam, torch_adamw, torch_sgd. A malformed file
// (missing or mistyped field, wrong length, unknown kind or config key) is a test failure that
// names the problem.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <stochgrad/bits/optim/optim.hpp>

// This file provides main() so that it can add the --golden option. With Catch2 v3 the session
// header is separate; with v2 the single header must be seen first with CATCH_CONFIG_RUNNER (so
// tests/CMakeLists.txt keeps this file out of the shared precompiled header). Should v2 Catch
// already have been included without the runner, only the environment variable is available.
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#define SG_CLARA Catch::Clara
#define SG_OWN_MAIN 1
#elif !defined(TWOBLUECUBES_SINGLE_INCLUDE_CATCH_HPP_INCLUDED)
#define CATCH_CONFIG_RUNNER  // main() below; with Catch2 v2 this TU also holds Catch's implementation
#define SG_CLARA Catch::clara
#define SG_OWN_MAIN 1
#else
#define SG_OWN_MAIN 0
#endif
#include "support/catch.hpp"

using namespace stochgrad;
using json = nlohmann::json;

namespace {

// The file to check: --golden, else $STOCHGRAD_OPTIM_GOLDEN, else the in-repo copy.
std::string golden_path;

void default_golden_path() {
  if (!golden_path.empty()) return;
  const char* env = std::getenv("STOCHGRAD_OPTIM_GOLDEN");
  golden_path = (env != nullptr && *env != '\0') ? std::string(env) : std::string(STOCHGRAD_GOLDEN_DIR "/optimizers.json");
}

struct format_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct golden_case {
  std::string name, kind;
  json config;
  std::vector<double> x0, a, b;
  double c = 0.0;
  std::map<int, std::vector<double>> trajectory;
};

double number(const json& j, const std::string& where) {
  if (!j.is_number()) throw format_error(where + " is not a number");
  return j.get<double>();
}

std::vector<double> vec(const json& j, std::size_t n, const std::string& where) {
  if (!j.is_array()) throw format_error(where + " is not an array");
  if (j.size() != n) throw format_error(where + " has " + std::to_string(j.size()) + " entries, expected " + std::to_string(n));
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = number(j[i], where + "[" + std::to_string(i) + "]");
  return v;
}

const json& member(const json& j, const char* key, const std::string& where) {
  if (!j.is_object()) throw format_error(where + " is not an object");
  if (!j.contains(key)) throw format_error(where + " has no \"" + key + "\"");
  return j.at(key);
}

std::string kind_of(const std::string& name) {
  for (const char* k : {"timm_adan", "optax_adan", "torch_adamw", "torch_adam", "torch_sgd"}) {
    const std::string ks(k);
    if (name.rfind(ks, 0) == 0 && (name.size() == ks.size() || name[ks.size()] == '_')) return ks;
  }
  throw format_error("case \"" + name + "\": unknown optimizer kind (name must start with timm_adan, optax_adan, "
                     "torch_adam, torch_adamw or torch_sgd)");
}

// Parses and validates the whole document.
std::vector<golden_case> parse(const json& doc) {
  const json& prob = member(doc, "problem", "document");
  const double dim_d = number(member(prob, "dim", "problem"), "problem.dim");
  if (!(dim_d >= 1 && dim_d == std::floor(dim_d))) throw format_error("problem.dim must be a positive integer");
  const auto n = static_cast<std::size_t>(dim_d);
  const double acoef = number(member(prob, "acoef", "problem"), "problem.acoef");
  const double bshift = number(member(prob, "bshift", "problem"), "problem.bshift");
  const double c = number(member(prob, "c", "problem"), "problem.c");
  const json& cases = member(doc, "cases", "document");
  if (!cases.is_object() || cases.empty()) throw format_error("document.cases must be a non-empty object");
  std::vector<golden_case> out;
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    golden_case gc;
    gc.name = it.key();
    const std::string w = "case \"" + gc.name + "\"";
    gc.kind = kind_of(gc.name);
    gc.config = member(it.value(), "config", w);
    if (!gc.config.is_object()) throw format_error(w + ".config is not an object");
    // Inputs: the case's own x0/a/b, else the problem's formula (x0_i = 2 cos(0.11 i^2 + 0.5),
    // a_i = 1 + (i % 5) acoef, b_i = sin(0.37 i + bshift)).
    for (std::size_t i = 0; i < n; ++i) {
      const double di = static_cast<double>(i);
      gc.x0.push_back(2.0 * std::cos(0.11 * di * di + 0.5));
      gc.a.push_back(1.0 + static_cast<double>(i % 5) * acoef);
      gc.b.push_back(std::sin(0.37 * di + bshift));
    }
    if (it.value().contains("x0")) gc.x0 = vec(it.value()["x0"], n, w + ".x0");
    if (it.value().contains("a")) gc.a = vec(it.value()["a"], n, w + ".a");
    if (it.value().contains("b")) gc.b = vec(it.value()["b"], n, w + ".b");
    gc.c = c;
    const json& tr = member(it.value(), "trajectory", w);
    if (!tr.is_object() || tr.empty()) throw format_error(w + ".trajectory must be a non-empty object");
    for (auto s = tr.begin(); s != tr.end(); ++s) {
      std::size_t used = 0;
      int k = 0;
      try {
        k = std::stoi(s.key(), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != s.key().size() || k < 1 || k > 100000) throw format_error(w + ".trajectory key \"" + s.key() + "\" is not a step number >= 1");
      gc.trajectory[k] = vec(s.value(), n, w + ".trajectory[" + s.key() + "]");
    }
    out.push_back(std::move(gc));
  }
  return out;
}

json read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw format_error("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw format_error(path + " is not valid JSON: " + e.what());
  }
}

// Config readers that reject unknown keys (an option this replay does not implement).
struct config_reader {
  const json& cfg;
  std::string where;
  std::vector<std::string> seen;
  double num(const char* key, double def) {
    seen.emplace_back(key);
    return cfg.contains(key) ? number(cfg.at(key), where + "." + key) : def;
  }
  bool flag(const char* key, bool def) {
    seen.emplace_back(key);
    if (!cfg.contains(key)) return def;
    if (!cfg.at(key).is_boolean()) throw format_error(where + "." + key + " is not a boolean");
    return cfg.at(key).get<bool>();
  }
  std::vector<double> arr(const char* key, std::size_t n, std::vector<double> def) {
    seen.emplace_back(key);
    return cfg.contains(key) ? vec(cfg.at(key), n, where + "." + key) : def;
  }
  void done() const {
    for (auto it = cfg.begin(); it != cfg.end(); ++it) {
      if (std::find(seen.begin(), seen.end(), it.key()) == seen.end()) {
        throw format_error(where + " has the config key \"" + it.key() + "\", which this replay does not implement");
      }
    }
  }
};

// Runs one case in type T; returns the largest scaled error max |x - ref| / (|ref| + floor) seen,
// and records the first failure.
template <class T, class Opt>
double replay(const golden_case& gc, const Opt& opt, double rel_tol, double abs_floor, std::string& failure) {
  const std::size_t n = gc.x0.size();
  std::vector<T> x(n), g(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(gc.x0[i]);
  parameters<T> p{std::span<T>(x)};
  auto s = opt.init(p);
  const int last = gc.trajectory.rbegin()->first;
  double worst = 0.0;
  for (int k = 1; k <= last; ++k) {
    // Gradient at the current point: a_i (x_i - b_i) + c cos(x_i), in double, rounded to T.
    for (std::size_t i = 0; i < n; ++i) {
      const double xi = static_cast<double>(x[i]);
      g[i] = static_cast<T>(gc.a[i] * (xi - gc.b[i]) + gc.c * std::cos(xi));
    }
    step_context ctx;
    ctx.step = static_cast<std::uint64_t>(k - 1);
    const update_report r = opt.update(p, s, dense_gradient<T>(std::span<const T>(g)), ctx);
    if (!r.applied && failure.empty()) failure = "update not applied at step " + std::to_string(k);
    const auto it = gc.trajectory.find(k);
    if (it == gc.trajectory.end()) continue;
    for (std::size_t i = 0; i < n; ++i) {
      const double ref = it->second[i], got = static_cast<double>(x[i]);
      const double err = std::abs(got - ref) / (rel_tol * std::abs(ref) + abs_floor);  // <= 1 passes
      worst = std::max(worst, err);
      if (!(err <= 1.0) && failure.empty()) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "step %d element %zu: got %.17g, reference %.17g (relative error %.3g)", k, i,
                      got, ref, std::abs(got - ref) / std::abs(ref));
        failure = buf;
      }
    }
  }
  return worst;
}

// Builds the optimizer a case describes and replays it.
template <class T>
double run_case(const golden_case& gc, double rel_tol, double abs_floor, std::string& failure) {
  config_reader cr{gc.config, "case \"" + gc.name + "\".config", {}};
  if (gc.kind == "timm_adan" || gc.kind == "optax_adan") {
    optim::adan_options o;
    if (gc.kind == "timm_adan") {
      o.lr = cr.num("lr", 1e-3);
      const auto b = cr.arr("betas", 3, {0.98, 0.92, 0.99});
      o.beta1 = b[0], o.beta2 = b[1], o.beta3 = b[2];
      o.no_prox = cr.flag("no_prox", false);
    } else {
      o.optax_compat = true;
      o.lr = cr.num("learning_rate", 1e-3);
      o.beta1 = cr.num("b1", 0.98), o.beta2 = cr.num("b2", 0.92), o.beta3 = cr.num("b3", 0.99);
      o.eps_root = cr.num("eps_root", 1e-8);
    }
    o.eps = cr.num("eps", 1e-8);
    if (gc.kind == "optax_adan" && !gc.config.contains("weight_decay")) {
      throw format_error("case \"" + gc.name + "\".config must give weight_decay (optax_adan)");
    }
    o.weight_decay = cr.num("weight_decay", 0.0);
    cr.done();
    return replay<T>(gc, optim::adan<>(o), rel_tol, abs_floor, failure);
  }
  if (gc.kind == "torch_adam" || gc.kind == "torch_adamw") {
    const bool w = gc.kind == "torch_adamw";
    optim::adam_options o;
    o.lr = cr.num("lr", 1e-3);
    const auto b = cr.arr("betas", 2, {0.9, 0.999});
    o.beta1 = b[0], o.beta2 = b[1];
    o.eps = cr.num("eps", 1e-8);
    o.weight_decay = cr.num("weight_decay", w ? 1e-2 : 0.0);
    cr.done();
    if (w) {
      optim::adamw_options ow;
      ow.lr = o.lr, ow.beta1 = o.beta1, ow.beta2 = o.beta2, ow.eps = o.eps, ow.weight_decay = o.weight_decay;
      return replay<T>(gc, optim::adamw<>(ow), rel_tol, abs_floor, failure);
    }
    return replay<T>(gc, optim::adam<>(o), rel_tol, abs_floor, failure);
  }
  optim::sgd_options o;  // torch_sgd
  o.lr = cr.num("lr", 1e-3);
  o.momentum = cr.num("momentum", 0.0);
  o.dampening = cr.num("dampening", 0.0);
  o.nesterov = cr.flag("nesterov", false);
  o.weight_decay = cr.num("weight_decay", 0.0);
  cr.done();
  return replay<T>(gc, optim::sgd<>(o), rel_tol, abs_floor, failure);
}

std::vector<golden_case> load_or_fail() {
  default_golden_path();
  INFO("golden file: " << golden_path);
  try {
    return parse(read_file(golden_path));
  } catch (const format_error& e) {
    FAIL("malformed golden file " << golden_path << ": " << e.what());
  } catch (const std::exception& e) {
    FAIL("cannot use golden file " << golden_path << ": " << e.what());
  }
  return {};
}

}  // namespace

TEST_CASE("golden: every optimizer trajectory matches its peer library in double (rel 1e-12)", "[optim][golden]") {
  const auto cases = load_or_fail();
  REQUIRE(!cases.empty());
  std::printf("golden file %s\n%-24s %s\n", golden_path.c_str(), "case", "max |x - ref| / (1e-12 |ref| + 1e-15)");
  for (const auto& gc : cases) {
    std::string failure;
    double worst = 0.0;
    try {
      worst = run_case<double>(gc, 1e-12, 1e-15, failure);
    } catch (const format_error& e) {
      FAIL("malformed golden file " << golden_path << ": " << e.what());
    }
    std::printf("%-24s %.3f\n", gc.name.c_str(), worst);
    INFO("case " << gc.name << ": " << failure);
    CHECK(failure.empty());
  }
}

// float32: the replay starts from x0 rounded to float and evaluates every gradient from float
// parameters, so it follows a nearby trajectory, not the float64 one. Each of the 100 steps adds
// a few roundings of relative size 2^-24 = 6e-8 to every coordinate (|x| <= ~2.5, update sizes
// ~lr), and on this strictly convex problem the iteration does not amplify them (the golden
// trajectories contract towards the minimiser), so the accumulated error is bounded by
// 100 steps x ~10 roundings x 6e-8 x max(|x|, 1) ~ 6e-5 (absolute, scaled by |x| when |x| > 1).
// Tolerance: |x_f - x_ref| <= 1e-4 (|x_ref| + 1), which leaves a margin over that bound and still
// catches any formula error (a wrong coefficient moves x by >= lr * 1e-2 = 1e-4 within a few steps
// and keeps growing).
TEST_CASE("golden: every optimizer trajectory in float32 stays within the rounding bound", "[optim][golden]") {
  const auto cases = load_or_fail();
  REQUIRE(!cases.empty());
  std::printf("%-24s %s\n", "case (float32)", "max |x - ref| / (1e-4 |ref| + 1e-4)");
  for (const auto& gc : cases) {
    std::string failure;
    double worst = 0.0;
    try {
      worst = run_case<float>(gc, 1e-4, 1e-4, failure);
    } catch (const format_error& e) {
      FAIL("malformed golden file " << golden_path << ": " << e.what());
    }
    std::printf("%-24s %.3f\n", gc.name.c_str(), worst);
    INFO("case " << gc.name << ": " << failure);
    CHECK(failure.empty());
  }
}

TEST_CASE("golden: malformed reference data is reported, not silently accepted", "[optim][golden]") {
  const std::string good = R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
    "cases": {"torch_sgd_x": {"config": {"lr": 0.1}, "trajectory": {"1": [0.5, 0.25]}}}})";
  REQUIRE(parse(json::parse(good)).size() == 1);
  auto bad = [&](const std::string& s) { REQUIRE_THROWS_AS(parse(json::parse(s)), format_error); };
  bad(R"({"cases": {}})");                                                                   // no problem
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3}})");                 // no cases
  bad(R"({"problem": {"dim": 0, "acoef": 0.5, "bshift": 0.0, "c": 0.3}, "cases": {"torch_sgd": {}}})");
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"torch_sgd_x": {"config": {"lr": 0.1}, "trajectory": {"1": [0.5]}}}})");  // wrong length
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"torch_sgd_x": {"config": {"lr": 0.1}, "trajectory": {"one": [0.5, 1]}}}})");
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"lion_x": {"config": {"lr": 0.1}, "trajectory": {"1": [0.5, 1]}}}})");    // unknown kind
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"torch_sgd_x": {"config": {"lr": 0.1}, "trajectory": {"1": [0.5, "x"]}}}})");
  bad(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"torch_sgd_x": {"config": {"lr": 0.1}, "x0": [1], "trajectory": {"1": [0.5, 1]}}}})");
  // An option the replay does not implement is refused when the case is run.
  const auto cs = parse(json::parse(R"({"problem": {"dim": 2, "acoef": 0.5, "bshift": 0.0, "c": 0.3},
          "cases": {"timm_adan_x": {"config": {"lr": 0.1, "caution": true}, "trajectory": {"1": [0.5, 1]}}}})"));
  std::string failure;
  REQUIRE_THROWS_AS(run_case<double>(cs[0], 1e-12, 1e-15, failure), format_error);
  REQUIRE_THROWS_AS(read_file("/nonexistent/optimizers.json"), format_error);
}

#if SG_OWN_MAIN
int main(int argc, char** argv) {
  Catch::Session session;
  std::string path;
  auto cli = session.cli() | SG_CLARA::Opt(path, "path")["--golden"](
                                 "reference file to check (default: $STOCHGRAD_OPTIM_GOLDEN, else "
                                 "STOCHGRAD_GOLDEN_DIR/optimizers.json)");
  session.cli(cli);
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  golden_path = path;
  default_golden_path();
  return session.run();
}
#endif
