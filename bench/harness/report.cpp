// SPDX-License-Identifier: Apache-2.0
// Reports of the shoot-out: terminal table, JSON, CSV, SVG convergence plots and an index page.
#include <stochgrad/bits/config.hpp>
#include <stochgrad/version.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace harness {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- aggregation over seeds

struct stats {
  std::size_t n = 0;
  double mean = nan, sd = nan, min = nan, max = nan, median = nan;
};

stats stats_of(std::vector<double> v) {
  std::erase_if(v, [](double x) { return std::isnan(x); });
  stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0.0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

struct pair_summary {
  const problem_info* p = nullptr;
  const stepper_info* s = nullptr;
  std::vector<const run_result*> runs;
  std::size_t ok = 0, reached = 0;
  stats final_obj, accuracy, reward, steps_to_target, time_to_target, cos, rel_var, ups, peak_delta, peak, wall;
  std::string status;  // "ok", or the first non-ok status and its count
};

std::vector<pair_summary> summarise(const report_input& in) {
  std::vector<pair_summary> out;
  for (const problem_info* p : in.problems) {
    for (const stepper_info* s : in.steppers) {
      pair_summary ps;
      ps.p = p;
      ps.s = s;
      for (const run_result& r : in.runs) {
        if (r.problem == p->name && r.stepper == s->name) ps.runs.push_back(&r);
      }
      if (ps.runs.empty()) continue;
      std::vector<double> fo, acc, rw, stt, ttt, cs, rv, ups, pd, pk, wl;
      std::size_t bad = 0;
      std::string bad_status;
      for (const run_result* r : ps.runs) {
        if (r->status == "ok") {
          ++ps.ok;
        } else {
          ++bad;
          if (bad_status.empty()) bad_status = r->status;
        }
        fo.push_back(r->final_point.objective);
        acc.push_back(r->final_point.accuracy);
        rw.push_back(r->final_point.reward);
        if (r->reached_target) {
          ++ps.reached;
          stt.push_back(static_cast<double>(r->steps_to_target));
          ttt.push_back(r->time_to_target_s);
        }
        cs.push_back(r->quality.cos_mean);
        rv.push_back(r->quality.rel_var);
        ups.push_back(r->updates_per_s);
        pd.push_back(r->peak_delta_mb);
        pk.push_back(r->peak_rss_mb);
        wl.push_back(r->wall_s);
      }
      ps.status = bad == 0 ? "ok" : fmt::format("{} {}/{}", bad_status, bad, ps.runs.size());
      ps.final_obj = stats_of(fo);
      ps.accuracy = stats_of(acc);
      ps.reward = stats_of(rw);
      ps.steps_to_target = stats_of(stt);
      ps.time_to_target = stats_of(ttt);
      ps.cos = stats_of(cs);
      ps.rel_var = stats_of(rv);
      ps.ups = stats_of(ups);
      ps.peak_delta = stats_of(pd);
      ps.peak = stats_of(pk);
      ps.wall = stats_of(wl);
      out.push_back(std::move(ps));
    }
  }
  return out;
}

const char* dash = "-";

std::string num(double v, const char* f) {
  if (std::isnan(v)) return dash;
  return fmt::format(fmt::runtime(f), v);
}

std::string time_str(double s) {
  if (std::isnan(s)) return dash;
  if (s < 1e-3) return fmt::format("{:.0f}us", s * 1e6);
  if (s < 1.0) return fmt::format("{:.1f}ms", s * 1e3);
  return fmt::format("{:.2f}s", s);
}

std::string rate_str(double v) {
  if (std::isnan(v)) return dash;
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

// ---------------------------------------------------------------- small writers

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          o += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

std::string json_num(double v) { return std::isfinite(v) ? fmt::format("{:.17g}", v) : "null"; }

std::string csv_str(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

std::string csv_num(double v) { return std::isnan(v) ? "" : fmt::format("{:.17g}", v); }

std::string xml(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

void write_file(const fs::path& path, const std::string& content, std::vector<std::string>& written) {
  std::ofstream f(path, std::ios::binary);
  f << content;
  f.close();
  if (!f) throw std::runtime_error(fmt::format("cannot write '{}'", path.string()));
  written.push_back(path.string());
}

std::string file_safe(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return o;
}

// ---------------------------------------------------------------- SVG plots

const char* palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                         "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#6b6b6b"};

struct series {
  std::string name, color;
  std::vector<double> x, mid, lo, hi;
};

struct plot_spec {
  std::string title, subtitle, xlabel, ylabel;
  std::vector<std::string> notes;  ///< small lines under the legend
  bool logy = true;
  double target = nan;  ///< a dashed horizontal line (NaN: none)
  std::vector<series> lines;
};

double nice_step(double range, int target_ticks) {
  const double raw = range / target_ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e6 && std::fmod(a, 1e6) == 0) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e3 && std::fmod(a, 1e3) == 0) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

std::string svg_plot(const plot_spec& ps) {
  const double W = 760, H = 470, L = 80, R = 190, T = 56, B = 58;
  const double pw = W - L - R, ph = H - T - B;
  double xmax = 1, ymin = 1e300, ymax = -1e300;
  for (const series& s : ps.lines) {
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      xmax = std::max(xmax, s.x[i]);
      for (double v : {s.lo[i], s.hi[i], s.mid[i]}) {
        if (!std::isfinite(v) || (ps.logy && v <= 0)) continue;
        ymin = std::min(ymin, v);
        ymax = std::max(ymax, v);
      }
    }
  }
  if (std::isfinite(ps.target) && (!ps.logy || ps.target > 0)) {
    ymin = std::min(ymin, ps.target);
    ymax = std::max(ymax, ps.target);
  }
  double y0, y1;  // axis range (log10 units when logy)
  if (ps.logy) {
    if (ymin > ymax) ymin = ymax = 1;
    y0 = std::floor(std::log10(ymin));
    y1 = std::ceil(std::log10(ymax));
    if (y1 <= y0) y1 = y0 + 1;
  } else {
    if (ymin > ymax) ymin = 0, ymax = 1;
    const double st = nice_step(std::max(ymax - ymin, 1e-12), 5);
    y0 = std::floor(ymin / st) * st;
    y1 = std::ceil(ymax / st) * st;
    if (y1 <= y0) y1 = y0 + st;
  }
  const double floor_v = ps.logy ? std::pow(10.0, y0) : y0;
  auto X = [&](double x) { return L + pw * x / xmax; };
  auto Y = [&](double v) {
    double t;
    if (ps.logy) {
      t = (std::log10(std::max(v, floor_v)) - y0) / (y1 - y0);
    } else {
      t = (v - y0) / (y1 - y0);
    }
    return T + ph * (1.0 - std::clamp(t, 0.0, 1.0));
  };
  std::string o;
  o += fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{2}" y="22" font-size="15" font-weight="bold">{3}</text>
<text x="{2}" y="40" fill="#555">{4}</text>
<defs><clipPath id="plot"><rect x="{2}" y="{5}" width="{6}" height="{7}"/></clipPath></defs>
)",
                   W, H, L, xml(ps.title), xml(ps.subtitle), T, pw, ph);
  // grid and y ticks
  if (ps.logy) {
    const int decades = static_cast<int>(y1 - y0);
    const int every = std::max(1, (decades + 7) / 8);
    for (int e = static_cast<int>(y0); e <= static_cast<int>(y1); ++e) {
      if ((e - static_cast<int>(y0)) % every != 0) continue;
      const double yy = Y(std::pow(10.0, e));
      o += fmt::format(R"(<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#e4e4e4"/>)"
                       "\n",
                       L, yy, L + pw, yy);
      o += fmt::format(R"(<text x="{}" y="{:.1f}" text-anchor="end">10<tspan dy="-6" font-size="9">{}</tspan></text>)"
                       "\n",
                       L - 6, yy + 4, e);
    }
  } else {
    const double st = nice_step(y1 - y0, 5);
    for (double v = y0; v <= y1 + st * 1e-9; v += st) {
      const double yy = Y(v);
      o += fmt::format(R"(<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#e4e4e4"/>)"
                       "\n",
                       L, yy, L + pw, yy);
      o += fmt::format(R"(<text x="{}" y="{:.1f}" text-anchor="end">{:g}</text>)"
                       "\n",
                       L - 6, yy + 4, v);
    }
  }
  const double xs = nice_step(xmax, 6);
  for (double v = 0; v <= xmax * (1 + 1e-9); v += xs) {
    const double xx = X(v);
    o += fmt::format(R"(<line x1="{:.1f}" y1="{}" x2="{:.1f}" y2="{}" stroke="#e4e4e4"/>)"
                     "\n",
                     xx, T, xx, T + ph);
    o += fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)"
                     "\n",
                     xx, T + ph + 18, tick_label(v));
  }
  o += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>)"
                   "\n",
                   L, T, pw, ph);
  o += fmt::format(R"(<text x="{}" y="{}" text-anchor="middle">{}</text>)"
                   "\n",
                   L + pw / 2, H - 14, xml(ps.xlabel));
  o += fmt::format(R"svg(<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>)svg"
                   "\n",
                   T + ph / 2, xml(ps.ylabel + (ps.logy ? " (log scale)" : "")));
  // bands, then lines
  o += "<g clip-path=\"url(#plot)\">\n";
  for (const series& s : ps.lines) {
    if (s.x.size() < 2) continue;
    bool spread = false;
    for (std::size_t i = 0; i < s.x.size(); ++i) spread = spread || s.lo[i] != s.hi[i];
    if (!spread) continue;
    std::string pts;
    for (std::size_t i = 0; i < s.x.size(); ++i) pts += fmt::format("{:.1f},{:.1f} ", X(s.x[i]), Y(s.lo[i]));
    for (std::size_t i = s.x.size(); i-- > 0;) pts += fmt::format("{:.1f},{:.1f} ", X(s.x[i]), Y(s.hi[i]));
    o += fmt::format(R"(<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>)"
                     "\n",
                     pts, s.color);
  }
  for (const series& s : ps.lines) {
    std::string pts;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.mid[i])) break;
      pts += fmt::format("{:.1f},{:.1f} ", X(s.x[i]), Y(s.mid[i]));
    }
    o += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"><title>{}</title></polyline>)"
                     "\n",
                     pts, s.color, xml(s.name));
  }
  if (std::isfinite(ps.target) && (!ps.logy || ps.target > 0)) {
    const double ty = Y(ps.target);
    o += fmt::format(R"(<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#222" stroke-dasharray="6 4"/>)"
                     "\n",
                     L, ty, L + pw, ty);
    o += fmt::format(R"(<text x="{}" y="{:.1f}" text-anchor="end" fill="#222" font-size="11">target</text>)"
                     "\n",
                     L + pw - 4, ty - 4);
  }
  o += "</g>\n";
  // legend
  double ly = T + 8;
  for (const series& s : ps.lines) {
    o += fmt::format(R"(<line x1="{0}" y1="{1:.1f}" x2="{2}" y2="{1:.1f}" stroke="{3}" stroke-width="3"/>)"
                     "\n",
                     L + pw + 14, ly, L + pw + 40, s.color);
    o += fmt::format(R"(<text x="{}" y="{:.1f}">{}</text>)"
                     "\n",
                     L + pw + 46, ly + 4, xml(s.name));
    ly += 20;
  }
  ly += 10;
  for (const std::string& n : ps.notes) {
    o += fmt::format(R"(<text x="{}" y="{:.1f}" fill="#555" font-size="10">{}</text>)"
                     "\n",
                     L + pw + 14, ly, xml(n));
    ly += 14;
  }
  o += "</svg>\n";
  return o;
}

enum class quantity { objective, accuracy, reward };

// Mean (geometric when logy) and min/max across seeds, point by point. A stepper whose budget was
// scaled down (es: q query pairs per step) is drawn with its steps stretched by `stretch` (budget
// of the problem's longest runner / its own), so every curve spans the same amount of work.
series series_for(const pair_summary& ps, const std::string& color, bool logy, quantity what, double stretch) {
  series s;
  s.name = ps.s->name;
  if (std::abs(stretch - 1.0) > 1e-9) s.name += fmt::format(" (step x{:.3g})", stretch);
  s.color = color;
  std::size_t len = 0;
  for (const run_result* r : ps.runs) len = std::max(len, r->curve.size());
  const double off = std::isnan(ps.p->optimum) ? 0.0 : ps.p->optimum;
  for (std::size_t i = 0; i < len; ++i) {
    double acc = 0, lo = 1e300, hi = -1e300;
    std::size_t n = 0;
    double step = 0;
    for (const run_result* r : ps.runs) {
      if (i >= r->curve.size()) continue;
      const curve_point& c = r->curve[i];
      double v = what == quantity::accuracy ? c.at.accuracy
                 : what == quantity::reward ? c.at.reward
                                            : c.at.objective - off;
      if (!std::isfinite(v)) continue;
      step = static_cast<double>(c.step) * stretch;
      if (logy) v = std::max(v, 1e-300);
      acc += logy ? std::log(v) : v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      ++n;
    }
    if (n == 0) break;
    s.x.push_back(step);
    s.mid.push_back(logy ? std::exp(acc / static_cast<double>(n)) : acc / static_cast<double>(n));
    s.lo.push_back(lo);
    s.hi.push_back(hi);
  }
  return s;
}

// ---------------------------------------------------------------- JSON

std::string eval_json(const eval_point& e) {
  return fmt::format(R"({{"objective": {}, "test_accuracy": {}, "test_loss": {}, "reward": {}}})", json_num(e.objective),
                     json_num(e.accuracy), json_num(e.test_loss), json_num(e.reward));
}

std::string stats_json(const stats& s) {
  return fmt::format(R"({{"n": {}, "mean": {}, "sd": {}, "min": {}, "median": {}, "max": {}}})", s.n, json_num(s.mean),
                     json_num(s.sd), json_num(s.min), json_num(s.median), json_num(s.max));
}

template <class C, class F>
std::string json_array(const C& c, F f) {
  std::string o = "[";
  bool first = true;
  for (const auto& v : c) {
    if (!first) o += ", ";
    first = false;
    o += f(v);
  }
  return o + "]";
}

std::string results_json(const report_input& in, const std::vector<pair_summary>& sums) {
  const options& o = *in.opts;
  std::string j = "{\n";
  j += fmt::format("  \"tool\": \"stochgrad shootout\",\n  \"stochgrad_version\": {},\n  \"simd\": {},\n",
                   json_str(stochgrad::version_string), json_str(stochgrad::simd::arch_name()));
  j += fmt::format("  \"mode\": {},\n  \"threads\": {},\n  \"grad_samples\": {},\n", json_str(to_string(o.run_mode)),
                   in.threads, in.grad_samples);
  j += fmt::format("  \"seeds\": {},\n", json_array(in.seeds, [](std::uint64_t s) { return fmt::format("{}", s); }));
  j += fmt::format("  \"command_line\": {},\n", json_array(o.argv, json_str));
  j += fmt::format("  \"total_wall_s\": {},\n", json_num(in.total_wall_s));
  j += "  \"problems\": [\n";
  for (std::size_t i = 0; i < in.problems.size(); ++i) {
    const problem_info& p = *in.problems[i];
    j += fmt::format(
        "    {{\"name\": {}, \"family\": {}, \"description\": {}, \"dimension\": {}, \"precision\": {}, "
        "\"has_true_gradient\": {}, \"classifier\": {}, \"reward_task\": {}, \"optimum\": {}, \"curve\": {}, "
        "\"target\": {}, \"steps\": {}}}{}\n",
        json_str(p.name), json_str(p.family), json_str(p.description), p.dimension, json_str(to_string(p.prec)),
        p.has_gradient, p.classifier, p.policy, json_num(p.optimum), json_str(p.curve_label), json_str(p.target.describe()),
        o.steps ? o.steps : p.steps.in(o.run_mode), i + 1 < in.problems.size() ? "," : "");
  }
  j += "  ],\n  \"steppers\": [\n";
  for (std::size_t i = 0; i < in.steppers.size(); ++i) {
    const stepper_info& s = *in.steppers[i];
    j += fmt::format("    {{\"name\": {}, \"family\": {}, \"reference\": {}, \"description\": {}}}{}\n", json_str(s.name),
                     json_str(to_string(s.fam)), s.reference, json_str(s.description),
                     i + 1 < in.steppers.size() ? "," : "");
  }
  j += "  ],\n  \"summary\": [\n";
  for (std::size_t i = 0; i < sums.size(); ++i) {
    const pair_summary& ps = sums[i];
    j += fmt::format(
        "    {{\"problem\": {}, \"stepper\": {}, \"runs\": {}, \"ok\": {}, \"reached_target\": {}, \"final_objective\": {}, "
        "\"final_test_accuracy\": {}, \"final_reward\": {}, \"steps_to_target\": {}, \"time_to_target_s\": {}, \"grad_cos_mean\": {}, "
        "\"grad_rel_var\": {}, \"updates_per_s\": {}, \"peak_rss_delta_mb\": {}, \"peak_rss_mb\": {}, \"wall_s\": {}}}{}\n",
        json_str(ps.p->name), json_str(ps.s->name), ps.runs.size(), ps.ok, ps.reached, stats_json(ps.final_obj),
        stats_json(ps.accuracy), stats_json(ps.reward), stats_json(ps.steps_to_target), stats_json(ps.time_to_target), stats_json(ps.cos),
        stats_json(ps.rel_var), stats_json(ps.ups), stats_json(ps.peak_delta), stats_json(ps.peak), stats_json(ps.wall),
        i + 1 < sums.size() ? "," : "");
  }
  j += "  ],\n  \"runs\": [\n";
  for (std::size_t i = 0; i < in.runs.size(); ++i) {
    const run_result& r = in.runs[i];
    std::string hyper = "{";
    for (const auto& [k, v] : r.hyper) hyper += fmt::format("{}{}: {}", hyper.size() > 1 ? ", " : "", json_str(k), json_num(v));
    hyper += "}";
    const auto& q = r.quality;
    j += fmt::format(
        "    {{\"problem\": {}, \"stepper\": {}, \"seed\": {}, \"precision\": {}, \"dimension\": {}, \"hyper\": {},\n"
        "     \"status\": {}, \"message\": {}, \"steps_budget\": {}, \"steps_done\": {},\n"
        "     \"initial\": {}, \"final\": {},\n"
        "     \"reached_target\": {}, \"steps_to_target\": {}, \"time_to_target_s\": {},\n"
        "     \"step_time_s\": {}, \"wall_s\": {}, \"updates_per_s\": {}, \"losses\": {}, \"gradients\": {}, "
        "\"completions\": {},\n"
        "     \"peak_rss_mb\": {}, \"peak_rss_delta_mb\": {}, \"memory_method\": {},\n"
        "     \"grad_quality\": {{\"measured\": {}, \"at\": {}, \"samples\": {}, \"cos_mean\": {}, "
        "\"cos_of_mean\": {}, \"rel_var\": {}, \"rel_bias\": {}}},\n",
        json_str(r.problem), json_str(r.stepper), r.seed, json_str(to_string(r.prec)), r.dimension, hyper,
        json_str(r.status), json_str(r.message), r.steps_budget, r.steps_done, eval_json(r.initial),
        eval_json(r.final_point), r.reached_target,
        r.reached_target ? fmt::format("{}", r.steps_to_target) : std::string("null"), json_num(r.time_to_target_s),
        json_num(r.step_time_s), json_num(r.wall_s), json_num(r.updates_per_s), r.losses, r.gradients, r.completions,
        json_num(r.peak_rss_mb), json_num(r.peak_delta_mb), json_str(r.memory_method), q.measured, json_str(q.at), q.samples,
        json_num(q.cos_mean), json_num(q.cos_of_mean), json_num(q.rel_var), json_num(q.rel_bias));
    j += fmt::format(
        "     \"curve\": {{\"step\": {}, \"objective\": {}, \"test_accuracy\": {}, \"reward\": {}, \"time_s\": {}}}}}{}\n",
        json_array(r.curve, [](const curve_point& c) { return fmt::format("{}", c.step); }),
        json_array(r.curve, [](const curve_point& c) { return json_num(c.at.objective); }),
        json_array(r.curve, [](const curve_point& c) { return json_num(c.at.accuracy); }),
        json_array(r.curve, [](const curve_point& c) { return json_num(c.at.reward); }),
        json_array(r.curve, [](const curve_point& c) { return json_num(c.time_s); }), i + 1 < in.runs.size() ? "," : "");
  }
  j += "  ]\n}\n";
  return j;
}

// ---------------------------------------------------------------- CSV

std::string results_csv(const report_input& in) {
  std::string c =
      "problem,stepper,family,seed,precision,dimension,threads,status,steps_budget,steps_done,final_objective,"
      "final_test_accuracy,final_test_loss,final_reward,target,reached_target,steps_to_target,time_to_target_s,grad_cos_mean,"
      "grad_cos_of_mean,grad_rel_var,grad_rel_bias,updates_per_s,step_time_s,wall_s,peak_rss_mb,peak_rss_delta_mb,"
      "losses,gradients,completions\n";
  for (const run_result& r : in.runs) {
    const problem_info* p = nullptr;
    for (const problem_info* q : in.problems) p = q->name == r.problem ? q : p;
    const stepper_info* s = nullptr;
    for (const stepper_info* q : in.steppers) s = q->name == r.stepper ? q : s;
    c += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                     csv_str(r.problem), csv_str(r.stepper), s ? to_string(s->fam) : "", r.seed, to_string(r.prec),
                     r.dimension, in.threads, r.status, r.steps_budget, r.steps_done, csv_num(r.final_point.objective),
                     csv_num(r.final_point.accuracy), csv_num(r.final_point.test_loss), csv_num(r.final_point.reward),
                     csv_str(p ? p->target.describe() : ""), r.reached_target ? 1 : 0,
                     r.reached_target ? fmt::format("{}", r.steps_to_target) : std::string(),
                     csv_num(r.time_to_target_s), csv_num(r.quality.cos_mean), csv_num(r.quality.cos_of_mean),
                     csv_num(r.quality.rel_var), csv_num(r.quality.rel_bias), csv_num(r.updates_per_s),
                     csv_num(r.step_time_s), csv_num(r.wall_s), csv_num(r.peak_rss_mb), csv_num(r.peak_delta_mb),
                     r.losses, r.gradients, r.completions);
  }
  return c;
}

// Deterministic numbers only (no times): identical for any thread count.
std::string curves_csv(const report_input& in) {
  std::string c = "problem,stepper,seed,step,objective,test_accuracy,reward\n";
  for (const run_result& r : in.runs) {
    for (const curve_point& p : r.curve) {
      c += fmt::format("{},{},{},{},{},{},{}\n", csv_str(r.problem), csv_str(r.stepper), r.seed, p.step,
                       csv_num(p.at.objective), csv_num(p.at.accuracy), csv_num(p.at.reward));
    }
  }
  return c;
}

// ---------------------------------------------------------------- table

struct table {
  std::vector<std::string> header;
  std::vector<bool> left;
  std::vector<std::vector<std::string>> rows;
  std::string render() const {
    std::vector<std::size_t> w(header.size());
    for (std::size_t k = 0; k < header.size(); ++k) w[k] = header[k].size();
    for (const auto& r : rows) {
      for (std::size_t k = 0; k < r.size(); ++k) w[k] = std::max(w[k], r[k].size());
    }
    auto line = [&](const std::vector<std::string>& r) {
      std::string o;
      for (std::size_t k = 0; k < r.size(); ++k) {
        if (k) o += "  ";
        o += left[k] ? fmt::format("{:<{}}", r[k], w[k]) : fmt::format("{:>{}}", r[k], w[k]);
      }
      while (!o.empty() && o.back() == ' ') o.pop_back();
      return o + "\n";
    };
    std::string o = line(header);
    std::size_t total = 0;
    for (std::size_t k = 0; k < w.size(); ++k) total += w[k] + (k ? 2 : 0);
    o += std::string(total, '-') + "\n";
    std::string prev;
    for (const auto& r : rows) {
      if (!prev.empty() && r[0] != prev) o += "\n";
      prev = r[0];
      o += line(r);
    }
    return o;
  }
};

// ---------------------------------------------------------------- HTML page

// The CPU model from /proc/cpuinfo ("" where there is none).
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      if (c != std::string::npos) return line.substr(line.find_first_not_of(' ', c + 1));
    }
  }
  return {};
}

// A column of a problem's HTML table: a header with its unit, a tooltip, which direction is
// better (-1 lower, +1 higher, 0 not ranked), and per row the sort key and the text shown.
struct html_column {
  std::string head, unit, tip;
  int better = 0;
  bool text = false;  // sorted as text
  std::vector<double> key;
  std::vector<std::string> shown;
};

std::string sig(double v, int digits) {
  if (std::isnan(v)) return dash;
  return fmt::format("{:.{}g}", v, digits);
}

// The inline script: click a column header to sort by it (again: reverse); rows without a value
// stay last. With #selftest in the address it clicks every header twice and checks the order,
// and it always records whether the page overflows horizontally: both as attributes of <html>
// (data-selftest, data-overflow) for the browser test.
const char* page_script = R"js(
(function () {
  "use strict";
  function keyOf(td) {
    var v = td.getAttribute("data-v");
    return v === null || v === "" ? NaN : Number(v);
  }
  function sortTable(table, col, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asText = table.tHead.rows[0].cells[col].classList.contains("text");
    rows.sort(function (a, b) {
      var x = a.cells[col], y = b.cells[col];
      if (asText) return dir * x.textContent.localeCompare(y.textContent);
      var p = keyOf(x), q = keyOf(y);
      if (isNaN(p) || isNaN(q)) return isNaN(p) === isNaN(q) ? 0 : (isNaN(p) ? 1 : -1);
      return dir * (p - q);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, k) {
      th.setAttribute("aria-sort", k === col ? (dir > 0 ? "ascending" : "descending") : "none");
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        sortTable(table, col, dir);
      });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") th.click(); });
    });
  });
  var root = document.documentElement;
  root.setAttribute("data-overflow", root.scrollWidth > root.clientWidth ? "yes" : "no");
  root.setAttribute("data-tables", String(tables.length));
  if (location.hash !== "#selftest") return;
  var problems = [];
  Array.prototype.forEach.call(tables, function (table, t) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var asText = th.classList.contains("text");
      [1, -1].forEach(function (dir) {
        th.click();
        if (th.getAttribute("aria-sort") !== (dir > 0 ? "ascending" : "descending")) {
          problems.push("table " + t + " column " + col + ": aria-sort " + th.getAttribute("aria-sort"));
        }
        var rows = table.tBodies[0].rows, seenMissing = false;
        for (var i = 0; i < rows.length; ++i) {
          var c = rows[i].cells[col];
          if (asText) {
            if (i > 0 && dir * rows[i - 1].cells[col].textContent.localeCompare(c.textContent) > 0) {
              problems.push("table " + t + " column " + col + " row " + i + ": text out of order");
            }
            continue;
          }
          var v = keyOf(c);
          if (isNaN(v)) { seenMissing = true; continue; }
          if (seenMissing) problems.push("table " + t + " column " + col + " row " + i + ": value after a missing one");
          if (i > 0 && !isNaN(keyOf(rows[i - 1].cells[col])) && dir * (keyOf(rows[i - 1].cells[col]) - v) > 0) {
            problems.push("table " + t + " column " + col + " row " + i + ": out of order");
          }
        }
      });
    });
  });
  root.setAttribute("data-selftest", problems.length === 0 && tables.length > 0 ? "pass" : "fail: " +
                    (tables.length === 0 ? "no sortable table" : problems.slice(0, 5).join("; ")));
})();
)js";

const char* page_style = R"css(
*, *::before, *::after { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto;
       padding: 16px 20px 40px; max-width: 1800px; }
h1 { font-size: 22px; margin: 4px 0 10px; }
h2 { font-size: 18px; margin: 0 0 4px; }
.meta { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 4px 18px;
        background: #f5f6f8; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; margin-bottom: 12px; }
.meta div { overflow-wrap: anywhere; }
.meta b { color: #555; font-weight: 600; }
.cmd { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
nav { margin: 8px 0 16px; overflow-wrap: anywhere; }
nav a { margin-right: 12px; white-space: nowrap; }
.skipped { background: #fff4e5; border: 1px solid #f0c78a; border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
section.problem { border-top: 2px solid #dde1e6; padding-top: 14px; margin-top: 22px; }
.desc { color: #444; margin: 0 0 8px; overflow-wrap: anywhere; }
.layout { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.tablebox { flex: 0 1 auto; max-width: 100%; min-width: 0; overflow-x: auto; }
.plots { flex: 1 1 340px; min-width: 0; display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 8px; }
.plots img { width: 100%; height: auto; border: 1px solid #e4e4e4; border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 5px; border-bottom: 1px solid #e6e8eb; text-align: right; white-space: nowrap; }
th { background: #eef1f5; cursor: pointer; user-select: none; vertical-align: bottom; white-space: normal;
     min-width: 3.5em; }
th .unit { display: block; font-weight: normal; color: #666; font-size: 11px; }
th[aria-sort="ascending"]::after { content: " \25B2"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " \25BC"; font-size: 10px; }
th.text, td.text { text-align: left; }
tbody tr:hover { background: #f7f9fc; }
td.best { background: #dff3e4; font-weight: 700; }
td.bad { color: #b3261e; }
.legend { color: #555; font-size: 12px; margin-top: 24px; }
.legend td, .legend th { text-align: left; white-space: normal; border: none; background: none; cursor: auto; }
)css";

std::string html_page(const report_input& in, const std::vector<pair_summary>& sums,
                      const std::map<const problem_info*, std::vector<std::pair<std::string, std::string>>>& plots) {
  const options& o = *in.opts;
  std::string cmd;
  for (const std::string& a : o.argv) cmd += (cmd.empty() ? "" : " ") + a;
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                  "<link rel=\"icon\" href=\"data:,\">\n<title>stochgrad shoot-out</title>\n<style>";
  h += page_style;
  h += "</style>\n</head>\n<body>\n";
  h += fmt::format("<h1>stochgrad {} shoot-out</h1>\n", xml(stochgrad::version_string));
  const std::string cpu = cpu_model();
  std::string seeds;
  for (std::uint64_t sd : in.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(sd);
  h += "<div class=\"meta\">\n";
  h += fmt::format("<div><b>mode</b> {}</div>\n<div><b>seeds</b> {}</div>\n", to_string(o.run_mode), seeds);
  h += fmt::format("<div><b>runs</b> {} ({} problems, {} steppers) in {:.1f} s</div>\n", in.runs.size(),
                   in.problems.size(), in.steppers.size(), in.total_wall_s);
  h += fmt::format("<div><b>threads</b> {} (of {} hardware threads)</div>\n", in.threads,
                   std::max(1u, std::thread::hardware_concurrency()));
  h += fmt::format("<div><b>SIMD ISA</b> {}</div>\n", xml(stochgrad::simd::arch_name()));
  if (!cpu.empty()) h += fmt::format("<div><b>CPU</b> {}</div>\n", xml(cpu));
  h += fmt::format("<div><b>gradient quality</b> {} estimates per run</div>\n", in.grad_samples);
  h += fmt::format("<div><b>files</b> <a href=\"summary.txt\">summary.txt</a> <a href=\"results.json\">results.json</a> "
                   "<a href=\"results.csv\">results.csv</a> <a href=\"curves.csv\">curves.csv</a></div>\n");
  h += fmt::format("<div style=\"grid-column: 1 / -1\"><b>command</b> <span class=\"cmd\">{}</span></div>\n", xml(cmd));
  h += "</div>\n";
  if (!in.skipped.empty()) {
    h += "<div class=\"skipped\"><b>Not run in this build:</b><ul>\n";
    for (const auto& [name, why] : in.skipped) h += fmt::format("<li><b>{}</b>: {}</li>\n", xml(name), xml(why));
    h += "</ul></div>\n";
  }
  h += "<nav>";
  for (const problem_info* p : in.problems) h += fmt::format("<a href=\"#p-{0}\">{1}</a>", file_safe(p->name), xml(p->name));
  h += "</nav>\n";

  for (const problem_info* p : in.problems) {
    std::vector<const pair_summary*> rows;
    for (const pair_summary& ps : sums) {
      if (ps.p == p) rows.push_back(&ps);
    }
    if (rows.empty()) continue;
    std::size_t budget = 0;
    for (const pair_summary* ps : rows) {
      for (const run_result* r : ps->runs) budget = std::max(budget, r->steps_budget);
    }
    h += fmt::format("<section class=\"problem\" id=\"p-{}\">\n<h2>{}</h2>\n", file_safe(p->name), xml(p->name));
    h += fmt::format("<p class=\"desc\">{}. d = {}, {}. Target: {}. Up to {} steps; gradient quality at the {}.{}</p>\n",
                     xml(p->description), p->dimension, to_string(p->prec), xml(p->target.describe()), budget,
                     xml(p->quality_at), p->data_note.empty() ? "" : " <b>Subsample: " + xml(p->data_note) + ".</b>");
    std::vector<html_column> cols;
    cols.reserve(16);  // the references below stay valid
    auto add = [&](std::string head, std::string unit, std::string tip, int better, bool text = false) -> html_column& {
      cols.push_back({std::move(head), std::move(unit), std::move(tip), better, text, {}, {}});
      return cols.back();
    };
    html_column& c_step = add("stepper", "", "stepper (see the harness README)", 0, true);
    html_column& c_fam = add("family", "", "what the stepper sees: gradients, losses or sampled completions", 0, true);
    html_column& c_steps = add("steps", "steps", "steps done (budget; es: divided by its q query pairs)", 0);
    html_column& c_f = add("final f", p->curve_label, "last recorded training objective, mean over seeds", -1);
    html_column* c_acc = p->classifier ? &add(p->policy ? "greedy acc" : "test acc", "fraction",
                                              p->policy ? "exact greedy accuracy over all prompts" : "test accuracy", +1)
                                       : nullptr;
    html_column* c_rew = p->policy ? &add("reward", "expected, exact", "exact expected reward of the sampling policy", +1) : nullptr;
    html_column& c_stt = add("to target", "steps", "median steps to the target over the seeds that reached it", -1);
    html_column& c_ttt = add("to target", "s", "median stepping time to the target", -1);
    html_column& c_cos = add("cos(g&#770;, g)", "mean", "mean cosine of the stepper's gradient estimate with the true gradient", +1);
    html_column& c_var = add("rel. var", "tr Cov / |g|&sup2;", "trace of the estimate's covariance over |g|^2", -1);
    html_column& c_ups = add("throughput", "updates/s", "parameter updates per second inside step()", +1);
    html_column& c_mem = add("peak mem", "MB above start", "peak resident memory above the run's start (max over seeds)", -1);
    html_column& c_wall = add("run time", "s", "whole run incl. recording and the quality measurement (mean)", -1);
    html_column& c_stat = add("status", "", "ok, diverged or error (count of seeds)", 0, true);
    for (const pair_summary* ps : rows) {
      const std::size_t n = ps->runs.size();
      std::size_t steps = 0;
      for (const run_result* r : ps->runs) steps = std::max(steps, r->steps_done);
      c_step.key.push_back(nan);
      c_step.shown.push_back(ps->s->name);
      c_fam.key.push_back(nan);
      c_fam.shown.push_back(to_string(ps->s->fam));
      c_steps.key.push_back(static_cast<double>(steps));
      c_steps.shown.push_back(std::to_string(steps));
      c_f.key.push_back(ps->final_obj.mean);
      c_f.shown.push_back(num(ps->final_obj.mean, "{:.4e}"));
      if (c_acc) {
        c_acc->key.push_back(ps->accuracy.mean);
        c_acc->shown.push_back(num(ps->accuracy.mean, "{:.3f}"));
      }
      if (c_rew) {
        c_rew->key.push_back(ps->reward.mean);
        c_rew->shown.push_back(num(ps->reward.mean, "{:.3f}"));
      }
      const std::string part = ps->reached > 0 && ps->reached < n ? fmt::format(" ({}/{})", ps->reached, n) : "";
      c_stt.key.push_back(ps->reached > 0 ? ps->steps_to_target.median : nan);
      c_stt.shown.push_back(ps->reached > 0 ? fmt::format("{:.0f}", ps->steps_to_target.median) + part : dash);
      c_ttt.key.push_back(ps->reached > 0 ? ps->time_to_target.median : nan);
      c_ttt.shown.push_back(ps->reached > 0 ? sig(ps->time_to_target.median, 3) + part : dash);
      c_cos.key.push_back(ps->cos.mean);
      c_cos.shown.push_back(num(ps->cos.mean, "{:.3f}"));
      c_var.key.push_back(ps->rel_var.mean);
      c_var.shown.push_back(num(ps->rel_var.mean, "{:.3g}"));
      c_ups.key.push_back(ps->ups.median);
      c_ups.shown.push_back(rate_str(ps->ups.median));
      c_mem.key.push_back(ps->peak_delta.max);
      c_mem.shown.push_back(num(ps->peak_delta.max, "{:.1f}"));
      c_wall.key.push_back(ps->wall.mean);
      c_wall.shown.push_back(sig(ps->wall.mean, 3));
      c_stat.key.push_back(nan);
      c_stat.shown.push_back(ps->status);
    }
    h += "<div class=\"layout\">\n<div class=\"tablebox\">\n<table class=\"sortable\">\n<thead><tr>";
    for (const html_column& c : cols) {
      h += fmt::format("<th{} title=\"{}{}\">{}{}</th>", c.text ? " class=\"text\"" : "", xml(c.tip),
                       c.better < 0 ? " (lower is better; best marked)" : c.better > 0 ? " (higher is better; best marked)" : "",
                       c.head, c.unit.empty() ? "" : "<span class=\"unit\">" + c.unit + "</span>");
    }
    h += "</tr></thead>\n<tbody>\n";
    std::vector<double> best(cols.size(), nan);
    for (std::size_t k = 0; k < cols.size(); ++k) {
      if (cols[k].better == 0) continue;
      for (double v : cols[k].key) {
        if (!std::isfinite(v)) continue;
        if (std::isnan(best[k]) || (cols[k].better < 0 ? v < best[k] : v > best[k])) best[k] = v;
      }
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      h += "<tr>";
      for (std::size_t k = 0; k < cols.size(); ++k) {
        const html_column& c = cols[k];
        std::string cls = c.text ? "text" : "";
        if (c.better != 0 && std::isfinite(c.key[i]) && c.key[i] == best[k]) cls += cls.empty() ? "best" : " best";
        if (&c == &c_stat && c.shown[i] != "ok") cls += " bad";
        h += fmt::format("<td{}{}>{}</td>", cls.empty() ? "" : " class=\"" + cls + "\"",
                         c.text ? "" : " data-v=\"" + (std::isfinite(c.key[i]) ? fmt::format("{:.17g}", c.key[i]) : std::string()) + "\"",
                         xml(c.shown[i]));
      }
      h += "</tr>\n";
    }
    h += "</tbody>\n</table>\n</div>\n<div class=\"plots\">\n";
    const auto it = plots.find(p);
    if (it != plots.end()) {
      for (const auto& [file, alt] : it->second) {
        h += fmt::format("<a href=\"{0}\"><img src=\"{0}\" alt=\"{1}: {2}\" width=\"760\" height=\"470\"></a>\n", file,
                         xml(p->name), xml(alt));
      }
    }
    h += "</div>\n</div>\n</section>\n";
  }
  h += R"(<div class="legend"><b>Columns</b> (means over seeds unless said otherwise; best value per column in green, ties
all marked; click a header to sort, again to reverse):
<ul>
<li><b>final f</b>: the last recorded training objective (reward tasks: 1 &minus; expected reward).</li>
<li><b>to target</b>: median over the seeds that reached the problem's target, (k/n) when not all did; steps are exact to
the recording interval; time is stepping time only.</li>
<li><b>cos(g&#770;, g)</b>, <b>rel. var</b>: the stepper's own gradient estimate against the exact gradient; rel. var is
not scale-free for estimators that normalise their outcomes (es, grpo, bnpo, grpo-adv+sgd): compare their cosine only.</li>
<li><b>throughput</b>: dimension &times; steps / time inside step() (median over seeds). <b>peak mem</b>: peak resident
memory above the run's start, maximum over seeds. <b>run time</b>: the whole run, recording and measurement included.</li>
<li>&ldquo;-&rdquo;: not reached or not applicable. Plots: one curve per stepper (geometric mean over seeds for the
objective, mean for accuracy and reward), band = min to max; dashed line = target.</li>
</ul></div>
)";
  h += "<script>";
  h += page_script;
  h += "</script>\n</body>\n</html>\n";
  return h;
}

}  // namespace

std::string format_table(const report_input& in) {
  const auto sums = summarise(in);
  const options& o = *in.opts;
  std::string out = fmt::format(
      "stochgrad {} shoot-out: mode {}, seeds {}, {} thread{}, SIMD {}, gradient quality from {} estimates at the "
      "initial point (reward tasks: a warm policy)\n\n",
      stochgrad::version_string, to_string(o.run_mode),
      json_array(in.seeds, [](std::uint64_t s) { return fmt::format("{}", s); }), in.threads,
      in.threads == 1 ? "" : "s", stochgrad::simd::arch_name(), in.grad_samples);
  table t;
  bool rewards = false;
  for (const problem_info* p : in.problems) rewards = rewards || p->policy;
  t.header = {"problem", "stepper", "steps", "final f", "test acc", "steps>target", "time>target",
              "cos(g^,g)", "rel.var", "upd/s", "peak+MB", "run time", "status"};
  t.left = {true, true, false, false, false, false, false, false, false, false, false, false, true};
  if (rewards) {  // a column for the reward tasks, after "test acc"
    t.header.insert(t.header.begin() + 5, "reward");
    t.left.insert(t.left.begin() + 5, false);
  }
  for (const pair_summary& ps : sums) {
    const std::size_t n = ps.runs.size();
    std::string stt = dash, ttt = dash;
    if (ps.reached > 0) {
      stt = fmt::format("{:.0f}", ps.steps_to_target.median);
      ttt = time_str(ps.time_to_target.median);
      if (ps.reached < n) {
        stt += fmt::format(" ({}/{})", ps.reached, n);
        ttt += fmt::format(" ({}/{})", ps.reached, n);
      }
    }
    std::size_t steps = 0;
    for (const run_result* r : ps.runs) steps = std::max(steps, r->steps_done);
    t.rows.push_back({ps.p->name, ps.s->name, fmt::format("{}", steps), num(ps.final_obj.mean, "{:.4e}"),
                      num(ps.accuracy.mean, "{:.3f}"), stt, ttt, num(ps.cos.mean, "{:.3f}"),
                      num(ps.rel_var.mean, "{:.3g}"), rate_str(ps.ups.median), num(ps.peak_delta.max, "{:.1f}"),
                      time_str(ps.wall.mean), ps.status});
    if (rewards) t.rows.back().insert(t.rows.back().begin() + 5, num(ps.reward.mean, "{:.3f}"));
  }
  out += t.render();
  out += "\ntargets:";
  for (const problem_info* p : in.problems) out += fmt::format("  {}: {};", p->name, p->target.describe());
  out.pop_back();
  for (const problem_info* p : in.problems) {
    if (!p->data_note.empty()) out += fmt::format("\ndata: {}: {} (subsampled)", p->name, p->data_note);
  }
  for (const auto& [name, why] : in.skipped) out += fmt::format("\nskipped: {}: {}", name, why);
  out += "\ncolumns: means over seeds (steps/time to target: median of the seeds that reached it, (k/n) if not "
         "all did);\n"
         "  test acc: test accuracy (classifiers), exact greedy accuracy over all prompts (reward tasks); reward: exact "
         "expected reward\n"
         "  of the sampling policy (reward tasks; final f = 1 - reward);\n"
         "  cos(g^,g), rel.var: cosine with the true gradient and trace(Cov)/|g|^2 of the stepper's gradient "
         "estimate;\n"
         "  upd/s: parameter updates per second (dimension x steps / time in step); peak+MB: peak resident memory "
         "above the run's start;\n"
         "  run time: whole run incl. recording and the quality measurement; '-': not reached / not applicable.\n";
  return out;
}

std::vector<std::string> write_reports(const report_input& in, const std::string& table_text) {
  const fs::path dir(in.opts->out);
  std::vector<std::string> written;
  const auto sums = summarise(in);
  write_file(dir / "summary.txt", table_text, written);
  write_file(dir / "results.json", results_json(in, sums), written);
  write_file(dir / "results.csv", results_csv(in), written);
  write_file(dir / "curves.csv", curves_csv(in), written);
  std::map<std::string, std::string> color;
  for (std::size_t i = 0; i < in.steppers.size(); ++i) color[in.steppers[i]->name] = palette[i % std::size(palette)];
  std::map<const problem_info*, std::vector<std::pair<std::string, std::string>>> plots;  // file, alt
  for (const problem_info* p : in.problems) {
    plot_spec ps;
    ps.title = p->name;
    ps.subtitle = p->description;
    ps.xlabel = "step";
    ps.ylabel = p->curve_label;
    ps.logy = true;
    plot_spec acc = ps;
    acc.logy = false;
    acc.ylabel = p->policy ? "greedy accuracy (all prompts)" : "test accuracy";
    plot_spec rew = ps;
    rew.logy = false;
    rew.ylabel = "expected reward";
    double initial_gap = nan;
    std::size_t longest = 0;  // the problem's longest step budget (the x axis of every curve)
    for (const run_result& r : in.runs) {
      if (r.problem == p->name) longest = std::max(longest, r.steps_budget);
    }
    for (const pair_summary& s : sums) {
      if (s.p != p) continue;
      const std::size_t own = s.runs.empty() ? 0 : s.runs.front()->steps_budget;
      const double stretch = own > 0 ? static_cast<double>(longest) / static_cast<double>(own) : 1.0;
      if (std::isnan(initial_gap) && !s.runs.empty()) initial_gap = s.runs.front()->initial_gap;
      ps.lines.push_back(series_for(s, color[s.s->name], true, quantity::objective, stretch));
      if (p->classifier) acc.lines.push_back(series_for(s, color[s.s->name], false, quantity::accuracy, stretch));
      if (p->policy) rew.lines.push_back(series_for(s, color[s.s->name], false, quantity::reward, stretch));
    }
    if (ps.lines.empty()) continue;
    switch (p->target.what) {
      case target_spec::metric::objective_gap: ps.target = p->target.value; break;
      case target_spec::metric::relative_gap: ps.target = p->target.value * initial_gap; break;
      case target_spec::metric::objective: ps.target = p->target.value; break;
      case target_spec::metric::accuracy: acc.target = p->target.value; break;
      case target_spec::metric::reward: rew.target = p->target.value; break;
    }
    if (in.seeds.size() > 1) ps.notes = {fmt::format("{} seeds: line = geometric", in.seeds.size()), "mean, band = min to max"};
    const std::string name = "plot-" + file_safe(p->name) + ".svg";
    write_file(dir / name, svg_plot(ps), written);
    plots[p].emplace_back(name, p->curve_label);
    if (p->classifier) {
      const std::string an = "plot-" + file_safe(p->name) + "-accuracy.svg";
      if (in.seeds.size() > 1) acc.notes = {fmt::format("{} seeds: line = mean,", in.seeds.size()), "band = min to max"};
      write_file(dir / an, svg_plot(acc), written);
      plots[p].emplace_back(an, acc.ylabel);
    }
    if (p->policy) {
      const std::string rn = "plot-" + file_safe(p->name) + "-reward.svg";
      if (in.seeds.size() > 1) rew.notes = {fmt::format("{} seeds: line = mean,", in.seeds.size()), "band = min to max"};
      write_file(dir / rn, svg_plot(rew), written);
      plots[p].emplace_back(rn, rew.ylabel);
    }
  }
  write_file(dir / "index.html", html_page(in, sums, plots), written);
  return written;
}

}  // namespace harness
