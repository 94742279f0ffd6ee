// SPDX-License-Identifier: Apache-2.0
// Registry helpers: applicability of a stepper to a problem, hyper-parameter merging, targets.
#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace harness {

const char* to_string(family f) noexcept {
  switch (f) {
    case family::first_order: return "first-order";
    case family::zeroth_order: return "zeroth-order";
    case family::policy_gradient: return "policy-gradient";
  }
  return "?";
}

const char* to_string(precision p) noexcept { return p == precision::f32 ? "float" : "double"; }

const char* to_string(mode m) noexcept {
  switch (m) {
    case mode::smoke: return "smoke";
    case mode::quick: return "quick";
    case mode::full: return "full";
  }
  return "?";
}

double run_setup::hp(const std::string& name) const {
  const auto it = hyper.find(name);
  if (it == hyper.end()) {
    throw std::invalid_argument(fmt::format("runner {} on {}: hyper-parameter '{}' is not set", stepper, problem, name));
  }
  return it->second;
}

double run_setup::hp_or(const std::string& name, double fallback) const {
  const auto it = hyper.find(name);
  return it == hyper.end() ? fallback : it->second;
}

std::string target_spec::describe() const {
  switch (what) {
    case metric::objective_gap: return fmt::format("f - f* <= {:g}", value);
    case metric::relative_gap: return fmt::format("f - f* <= {:g} (f0 - f*)", value);
    case metric::objective: return fmt::format("f <= {:g}", value);
    case metric::accuracy: return fmt::format("{} >= {:g}", accuracy_name, value);
    case metric::reward: return fmt::format("reward >= {:g}", value);
  }
  return "?";
}

bool target_spec::reached(const eval_point& p, double optimum, double initial_gap) const {
  const double gap = p.objective - (std::isnan(optimum) ? 0.0 : optimum);
  switch (what) {
    case metric::objective_gap: return gap <= value;
    case metric::relative_gap: return gap <= value * initial_gap;
    case metric::objective: return p.objective <= value;
    case metric::accuracy: return p.accuracy >= value;
    case metric::reward: return p.reward >= value;
  }
  return false;
}

bool registry::applies(const stepper_info& s, const problem_info& p) {
  bool ok = false;
  switch (s.fam) {
    case family::policy_gradient: ok = p.policy; break;
    case family::first_order: ok = !p.policy && p.has_gradient; break;
    case family::zeroth_order: ok = !p.policy; break;
  }
  if (ok && s.applies) ok = s.applies(p);
  return ok;
}

hyper_map registry::hyper_for(const stepper_info& s, const problem_info& p) {
  hyper_map h;
  for (const char* level : {"*", "family", "name"}) {
    const std::string key = std::string(level) == "*" ? "*" : std::string(level) == "family" ? p.family : p.name;
    for (const auto& [k, m] : s.hyper) {
      if (k == key) {
        for (const auto& [name, v] : m) h[name] = v;
      }
    }
  }
  return h;
}

hyper_map registry::hyper_for(const stepper_info& s, const problem_info& p,
                              const std::vector<std::pair<std::string, double>>& sets) {
  hyper_map h = hyper_for(s, p);
  for (const auto& [key, v] : sets) {
    const auto dot = key.rfind('.');
    std::string who = key.substr(0, dot);
    const std::string param = key.substr(dot + 1);
    std::string where;
    if (const auto at = who.find('@'); at != std::string::npos) {
      where = who.substr(at + 1);
      who = who.substr(0, at);
    }
    if (who == s.name && (where.empty() || where == p.name || where == p.family)) h[param] = v;
  }
  return h;
}

std::size_t registry::steps_for(const stepper_info& s, const problem_info& p, mode m, std::size_t steps_option,
                                const hyper_map& hyper) {
  if (steps_option != 0) return steps_option;
  double scale = s.step_scale;
  if (!s.budget_divisor.empty()) {
    const auto it = hyper.find(s.budget_divisor);
    if (it != hyper.end() && it->second >= 1.0) scale /= it->second;
  }
  return std::max<std::size_t>(
      1, static_cast<std::size_t>(std::llround(static_cast<double>(p.steps.in(m)) * scale)));
}

std::string short_count(std::size_t n) {
  if (n >= 1'000'000 && n % 1'000'000 == 0) return fmt::format("{}M", n / 1'000'000);
  if (n >= 1000 && n % 1000 == 0) return fmt::format("{}k", n / 1000);
  return fmt::format("{}", n);
}

}  // namespace harness
