// SPDX-License-Identifier: Apache-2.0
// Registry helpers: applicability of a stepper to a problem, hyper-parameter merging, targets.
#include "harness.hpp"

#include <fmt/format.h>

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
    case metric::accuracy: return fmt::format("test accuracy >= {:g}", value);
    case metric::reward: return fmt::format("reward >= {:g}", value);
  }
  return "?";
}

bool target_spec::reached(const eval_point& p, double optimum, double initial_gap) const {
  const double gap = p.objective - (std::isnan(optimum) ? 0.0 : optimum);
  switch (what) {
    case metric::objective_gap: return gap <= value;
    case metric::relative_gap: return gap <= value * initial_gap;
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

std::string short_count(std::size_t n) {
  if (n >= 1'000'000 && n % 1'000'000 == 0) return fmt::format("{}M", n / 1'000'000);
  if (n >= 1000 && n % 1000 == 0) return fmt::format("{}k", n / 1000);
  return fmt::format("{}", n);
}

}  // namespace harness
