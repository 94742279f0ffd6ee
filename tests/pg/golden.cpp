// SPDX-License-Identifier: Apache-2.0
// Golden test: every case of tests/golden/policy_gradient.json (TRL, the BNPO repository's verl
// fork and upstream verl, run by their own code) against stochgrad's advantages, surrogate losses,
// coefficients and diagnostics.
//
// Data file: the environment variable STOCHGRAD_PG_GOLDEN if set, else
// STOCHGRAD_GOLDEN_DIR "/policy_gradient.json". Any file with the same schema can be checked; a
// missing or malformed file, an unknown function family or a case that is not checked fails.
//
// Tolerances (the file's `comparison` rule: "relative tolerance plus a small absolute floor"):
// relative 1e-12 (algorithms.md §0.4 for closed-form float64 quantities) with an absolute floor of
// 1e-14. The floor is needed because the peer's summation order leaves values that are
// mathematically 0 at about 1e-17, and our own cancellations (r - mean, then a division by a
// group std >= 0.01 in these cases) leave absolute errors of at most ~100 ulp(1) ~ 2e-14 / 2;
// inputs are O(1). TRL's clip fractions are computed by the peer in float32 (`.float()`), so they
// are compared with the float32 tolerance of §0.4 (relative 2e-6).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

using json = nlohmann::json;
using namespace stochgrad;

namespace {

constexpr double rel_tol = 1e-12;
constexpr double abs_tol = 1e-14;
constexpr double f32_rel_tol = 2e-6;

std::string golden_path() {
  if (const char* p = std::getenv("STOCHGRAD_PG_GOLDEN"); p != nullptr && *p != '\0') return p;
  return STOCHGRAD_GOLDEN_DIR "/policy_gradient.json";
}

double num(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::nan("");
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
  }
  throw std::runtime_error("malformed number in golden file: " + v.dump());
}

// Flattens a (nested) list in row-major order.
void flatten(const json& v, std::vector<double>& out) {
  if (v.is_array()) {
    for (const auto& x : v) flatten(x, out);
  } else {
    out.push_back(num(v));
  }
}
std::vector<double> vec(const json& v) {
  std::vector<double> out;
  flatten(v, out);
  return out;
}
std::size_t rows(const json& v) { return v.size(); }
std::size_t cols(const json& v) { return v.at(0).size(); }

bool close(double got, double want, double rel, double abs) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::abs(got - want) <= abs + rel * std::abs(want);
}

std::string g17(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void check_value(const std::string& what, double got, double want, double rel = rel_tol, double abs = abs_tol) {
  INFO(what << ": got " << g17(got) << " want " << g17(want) << " (diff " << g17(got - want) << ")");
  CHECK(close(got, want, rel, abs));
}

void check_vec(const std::string& what, const std::vector<double>& got, const json& want_j, double rel = rel_tol,
               double abs = abs_tol) {
  const std::vector<double> want = vec(want_j);
  INFO(what);
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  std::ostringstream msg;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!close(got[i], want[i], rel, abs)) {
      if (bad < 5) msg << " [" << i << "] got " << g17(got[i]) << " want " << g17(want[i]) << ";";
      ++bad;
    }
  }
  INFO("mismatches:" << msg.str());
  CHECK(bad == 0);
}

// Group ids (strings or integers) -> dense int64 ids in order of first appearance.
std::vector<std::int64_t> ids_of(const json& index) {
  std::map<std::string, std::int64_t> m;
  std::vector<std::int64_t> out;
  for (const auto& v : index) {
    const std::string key = v.is_string() ? v.get<std::string>() : v.dump();
    auto it = m.find(key);
    if (it == m.end()) it = m.emplace(key, static_cast<std::int64_t>(m.size())).first;
    out.push_back(it->second);
  }
  return out;
}

std::vector<double> seq_scores(const json& token_rewards) {
  const std::vector<double> tr = vec(token_rewards);
  std::vector<double> s(rows(token_rewards));
  sum_tokens<double>(tr, cols(token_rewards), s);
  return s;
}

std::vector<double> broadcast(const std::vector<double>& a, const std::vector<double>& mask, std::size_t L) {
  std::vector<double> out(a.size() * L);
  broadcast_tokens<double, double>(a, mask, L, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// One handler per function family.
// ---------------------------------------------------------------------------------------------

void trl_grpo_advantages(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  const std::size_t G = p.at("num_generations").get<std::size_t>();
  const json& rpf_j = in.at("rewards_per_func");
  const std::size_t N = rows(rpf_j);
  const std::vector<double> rpf = vec(rpf_j);
  std::vector<double> w = p.at("reward_weights").get<std::vector<double>>();
  REQUIRE(N % G == 0);
  const group_layout g = group_layout::contiguous(N / G, G);
  std::vector<double> adv(N);
  const std::string mode = p.at("multi_objective_aggregation").get<std::string>();
  const std::string scale = p.at("scale_rewards").get<std::string>();
  if (mode == "normalize_then_sum") {
    multi_reward mr(group_mean{}, group_std{1e-4}, w, reward_aggregation::normalize_then_sum, 1e-4);
    mr.compute<double>(rpf, g, adv);
  } else {
    REQUIRE(mode == "sum_then_normalize");
    if (scale == "group") {
      multi_reward(group_mean{}, group_std{1e-4}, w).compute<double>(rpf, g, adv);
    } else if (scale == "batch") {
      multi_reward(group_mean{}, batch_std{1e-4}, w).compute<double>(rpf, g, adv);
    } else {
      REQUIRE(scale == "none");
      multi_reward(group_mean{}, no_normalizer{}, w).compute<double>(rpf, g, adv);
    }
    // The combined reward intermediate.
    if (c.contains("intermediates") && c.at("intermediates").contains("rewards")) {
      std::vector<double> r(N);
      weighted_reward_sum<double>(rpf, w, r);
      check_vec("intermediate rewards", r, c.at("intermediates").at("rewards"));
    }
  }
  check_vec("advantages", adv, c.at("outputs").at("advantages"));
}

void trl_rloo_advantages(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  const std::size_t G = p.at("num_generations").get<std::size_t>();
  const json& rpf_j = in.at("rewards_per_func");
  const std::size_t N = rows(rpf_j);
  const std::vector<double> rpf = vec(rpf_j);
  const std::vector<double> w = p.at("reward_weights").get<std::vector<double>>();
  std::vector<double> r(N);
  weighted_reward_sum<double>(rpf, w, r);
  if (!p.at("reward_clip_range").is_null()) {
    clip_rewards<double>(r, num(p.at("reward_clip_range").at(0)), num(p.at("reward_clip_range").at(1)));
  }
  const double beta = num(p.at("beta"));
  if (beta != 0.0) {
    const json& old_j = in.at("old_per_token_logps");
    kl_penalized_rewards<double, double>(r, vec(old_j), vec(in.at("ref_per_token_logps")),
                                         vec(in.at("completion_mask")), cols(old_j), beta);
  }
  const json& im = c.at("intermediates");
  check_vec("intermediate rewards", r, im.at("rewards"));
  const group_layout g = group_layout::contiguous(N / G, G);
  std::vector<double> base(N), adv(N);
  leave_one_out{}.compute<double>(r, g, base);
  check_vec("intermediate baselines", base, im.at("baselines"));
  if (p.at("normalize_advantages").get<bool>()) {
    advantages(leave_one_out{}, batch_whiten{1e-4}, std::span<const double>(r), g, std::span<double>(adv));
  } else {
    advantages(leave_one_out{}, no_normalizer{}, std::span<const double>(r), g, std::span<double>(adv));
  }
  check_vec("advantages", adv, c.at("outputs").at("advantages"));
}

loss_aggregation trl_aggregation(const std::string& t) {
  if (t == "grpo") return loss_aggregation::grpo;
  if (t == "bnpo") return loss_aggregation::token_mean;
  if (t == "dr_grpo") return loss_aggregation::dr_grpo;
  if (t == "dapo") return loss_aggregation::dapo;
  FAIL("unknown TRL loss_type " << t);
  return loss_aggregation::dapo;
}

loss_aggregation verl_aggregation(const std::string& t) {
  if (t == "token-mean") return loss_aggregation::token_mean;
  if (t == "seq-mean-token-mean") return loss_aggregation::seq_mean_token_mean;
  if (t == "seq-mean-token-sum") return loss_aggregation::seq_mean_token_sum;
  if (t == "seq-mean-token-sum-norm") return loss_aggregation::seq_mean_token_sum_norm;
  FAIL("unknown verl loss_agg_mode " << t);
  return loss_aggregation::token_mean;
}

void trl_grpo_loss(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  surrogate_options o;
  o.aggregation = trl_aggregation(p.at("loss_type").get<std::string>());
  o.beta = num(p.at("beta"));
  o.eps_low = num(p.at("epsilon_low"));
  o.eps_high = num(p.at("epsilon_high"));
  o.level = p.at("importance_sampling_level").get<std::string>() == "sequence" ? ratio_level::sequence : ratio_level::token;
  o.delta = p.at("delta").is_null() ? 0.0 : num(p.at("delta"));
  o.kl_bias_correction = p.at("use_bias_correction_kl").get<bool>();
  o.max_completion_length = p.at("max_completion_length").get<std::size_t>();
  o.gradient_accumulation_steps = p.at("gradient_accumulation_steps").get<std::size_t>();
  o.num_processes = p.at("num_processes").get<std::size_t>();
  o.global_active_tokens = p.at("num_items_in_batch").is_null() ? 0.0 : num(p.at("num_items_in_batch"));
  const json& lp_j = in.at("logp");
  const std::vector<double> lp = vec(lp_j), mask = vec(in.at("mask")), adv = vec(in.at("advantages"));
  std::vector<double> old, ref;
  if (!in.at("old_logp").is_null()) old = vec(in.at("old_logp"));
  REQUIRE(p.at("old_logp_is_detached_logp").get<bool>() == in.at("old_logp").is_null());
  if (!in.at("ref_logp").is_null()) ref = vec(in.at("ref_logp"));
  token_batch<double> b{rows(lp_j), cols(lp_j), lp, old, ref, mask, adv};
  std::vector<double> coef(lp.size());
  const surrogate_result r = clipped_surrogate(o).evaluate<double>(b, coef);
  const json& out = c.at("outputs");
  check_value("loss", r.loss, num(out.at("loss")));
  check_vec("grad_logp", coef, out.at("grad_logp"));
  const json& m = out.at("metrics");
  const surrogate_diagnostics& d = r.diagnostics;
  check_value("clip_ratio/low_mean", d.clip_low_fraction, num(m.at("clip_ratio/low_mean")), f32_rel_tol);
  check_value("clip_ratio/high_mean", d.clip_high_fraction, num(m.at("clip_ratio/high_mean")), f32_rel_tol);
  check_value("clip_ratio/region_mean", d.clip_region_fraction, num(m.at("clip_ratio/region_mean")), f32_rel_tol);
  check_value("clip_ratio/low_min", d.clip_low_min, num(m.at("clip_ratio/low_min")), f32_rel_tol);
  check_value("clip_ratio/high_max", d.clip_high_max, num(m.at("clip_ratio/high_max")), f32_rel_tol);
  if (m.contains("kl")) check_value("kl", d.mean_kl, num(m.at("kl")));
}

void trl_rloo_loss(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  const json& lp_j = in.at("logp");
  const std::vector<double> lp = vec(lp_j), mask = vec(in.at("mask")), adv = vec(in.at("advantages"));
  const std::vector<double> old = vec(in.at("old_logps"));
  token_batch<double> b{rows(lp_j), cols(lp_j), lp, {}, {}, mask, adv};
  std::vector<double> coef(lp.size());
  const surrogate_result r =
      rloo_surrogate<double>(rloo_options{num(p.at("epsilon_low")), num(p.at("epsilon_high"))}, b, old, coef);
  check_value("loss", r.loss, num(c.at("outputs").at("loss")));
  check_vec("grad_logp", coef, c.at("outputs").at("grad_logp"));
}

void verl_grpo_outcome_advantage(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  const std::vector<double> r = seq_scores(in.at("token_level_rewards"));
  const std::vector<double> mask = vec(in.at("response_mask"));
  const std::size_t L = cols(in.at("response_mask"));
  const std::vector<std::int64_t> ids = ids_of(in.at("index"));
  const group_layout g = group_layout::by_id(ids);
  std::vector<double> adv(r.size());
  if (p.at("norm_adv_by_std_in_grpo").get<bool>()) {
    group_std n = group_std::verl();
    n.eps = num(p.at("epsilon"));
    advantages(group_mean::verl(), n, std::span<const double>(r), g, std::span<double>(adv));
  } else {
    advantages(group_mean::verl(), no_normalizer{}, std::span<const double>(r), g, std::span<double>(adv));
  }
  const json& out = c.at("outputs");
  check_vec("advantages_per_sequence", adv, out.at("advantages_per_sequence"));
  check_vec("advantages", broadcast(adv, mask, L), out.at("advantages"));
  check_vec("returns", broadcast(adv, mask, L), out.at("returns"));
}

void bnpo_outcome_advantage(const json& c) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  const std::vector<double> r = seq_scores(in.at("token_level_rewards"));
  const std::vector<double> mask = vec(in.at("eos_mask"));
  const std::size_t L = cols(in.at("eos_mask"));
  const group_layout g = group_layout::by_id(ids_of(in.at("index")));
  bnpo_options opt;
  opt.min_value = num(p.at("min_value"));
  opt.max_value = num(p.at("max_value"));
  opt.reference_compatible = true;
  const bnpo_mean base{opt};
  const beta_normalizer norm(opt);
  std::vector<double> adv(r.size());
  const json& out = c.at("outputs");
  if (out.contains("error")) {
    INFO("the peer raised " << out.at("error").dump());
    REQUIRE_THROWS_AS(advantages(base, norm, std::span<const double>(r), g, std::span<double>(adv)), stochgrad::error);
    return;
  }
  advantages(base, norm, std::span<const double>(r), g, std::span<double>(adv));
  check_vec("advantages_per_sequence", adv, out.at("advantages_per_sequence"));
  check_vec("advantages", broadcast(adv, mask, L), out.at("advantages"));
  check_vec("returns", broadcast(adv, mask, L), out.at("returns"));
  if (c.contains("intermediates")) {
    const json& im = c.at("intermediates");
    const beta_fit& f = norm.last_fit();
    check_value("p_mean", f.mean, num(im.at("p_mean")));
    check_value("p_var", f.variance, num(im.at("p_var")));
    check_value("alpha", f.alpha, num(im.at("alpha")));
    check_value("beta", f.beta, num(im.at("beta")));
    // all_p: per-group p in first-appearance order, which must be the layout's dense group order.
    std::vector<double> all_p(g.groups());
    for (std::size_t k = 0; k < g.groups(); ++k) {
      all_p[k] = 0.0;  // the reference's p for a one-sample group
      double s = 0.0;
      g.for_each_member(k, [&](std::size_t n) { s += (r[n] - opt.min_value) / (opt.max_value - opt.min_value); });
      if (g.size_of(k) > 1) all_p[k] = s / static_cast<double>(g.size_of(k));
    }
    check_vec("all_p", all_p, im.at("all_p"));
  }
}

void bnpo_advantage_decomposition(const json& c) {
  const json& in = c.at("inputs");
  const std::vector<double> acc = seq_scores(in.at("acc_reward_tensor"));
  const std::vector<double> fmt = seq_scores(in.at("format_reward_tensor"));
  const std::vector<double> mask = vec(in.at("response_mask"));
  const std::size_t L = cols(in.at("response_mask"));
  const group_layout g = group_layout::by_id(ids_of(in.at("index")));
  const std::size_t N = acc.size();
  std::vector<double> rpf(2 * N);
  for (std::size_t n = 0; n < N; ++n) {
    rpf[2 * n] = acc[n];
    rpf[2 * n + 1] = fmt[n];
  }
  bnpo_options opt;
  opt.reference_compatible = true;
  multi_reward mr(bnpo_mean{opt}, beta_normalizer(opt), {1.0, 1.0}, reward_aggregation::decompose);
  std::vector<double> adv(N);
  const json& out = c.at("outputs");
  if (out.contains("error")) {
    REQUIRE_THROWS_AS(mr.compute<double>(rpf, g, adv), stochgrad::error);
    return;
  }
  mr.compute<double>(rpf, g, adv);
  CHECK(out.at("count").get<std::size_t>() == mr.functions());
  check_vec("advantages", broadcast(adv, mask, L), out.at("advantages"));
  check_vec("returns", broadcast(adv, mask, L), out.at("returns"));
}

void verl_policy_loss(const json& c, bool upstream) {
  const json& p = c.at("params");
  const json& in = c.at("inputs");
  surrogate_options o = upstream ? surrogate_options::verl_upstream() : surrogate_options::verl();
  const double clip = num(p.at("cliprange"));
  o.eps_low = p.at("cliprange_low").is_null() ? clip : num(p.at("cliprange_low"));
  o.eps_high = p.at("cliprange_high").is_null() ? clip : num(p.at("cliprange_high"));
  o.dual_clip = num(p.at("clip_ratio_c"));
  o.aggregation = verl_aggregation(p.at("loss_agg_mode").get<std::string>());
  const json& lp_j = in.at("log_prob");
  const std::vector<double> lp = vec(lp_j), old = vec(in.at("old_log_prob")), adv = vec(in.at("advantages"));
  const std::vector<double> mask = vec(in.at("response_mask"));
  token_batch<double> b{rows(lp_j), cols(lp_j), lp, old, {}, mask, adv};
  std::vector<double> coef(lp.size());
  const surrogate_result r = clipped_surrogate(o).evaluate<double>(b, coef);
  const json& out = c.at("outputs");
  check_value("pg_loss", r.loss, num(out.at("pg_loss")));
  check_vec("grad_log_prob", coef, out.at("grad_log_prob"));
  check_value("pg_clipfrac", r.diagnostics.clip_region_fraction, num(out.at("pg_clipfrac")));
  check_value("ppo_kl", r.diagnostics.approx_kl, num(out.at("ppo_kl")));
  check_value("pg_clipfrac_lower", r.diagnostics.dual_clip_fraction, num(out.at("pg_clipfrac_lower")));
}

void verl_kl_penalty(const json& c) {
  const std::string k = c.at("params").at("kl_penalty").get<std::string>();
  const json& in = c.at("inputs");
  const std::vector<double> lp = vec(in.at("logprob")), ref = vec(in.at("ref_logprob"));
  kl_estimator e;
  if (k == "kl") {
    e = kl_estimator::k1;
  } else if (k == "abs") {
    e = kl_estimator::abs;
  } else if (k == "mse") {
    e = kl_estimator::k2;
  } else {
    REQUIRE(k == "low_var_kl");
    e = kl_estimator::k3;
  }
  std::vector<double> v(lp.size()), gr(lp.size());
  kl_penalty<double>(e, lp, ref, v, gr, 10.0);
  check_vec("kl", v, c.at("outputs").at("kl"));
  check_vec("grad_logprob", gr, c.at("outputs").at("grad_logprob"));
}

void verl_compute_rewards(const json& c) {
  const json& in = c.at("inputs");
  const std::vector<double> s = vec(in.at("token_level_scores")), old = vec(in.at("old_log_prob")),
                            ref = vec(in.at("ref_log_prob"));
  std::vector<double> out(s.size());
  kl_token_rewards<double>(s, old, ref, num(c.at("params").at("kl_ratio")), out);
  check_vec("token_level_rewards", out, c.at("outputs").at("token_level_rewards"));
}

}  // namespace

TEST_CASE("golden policy_gradient.json: every case", "[golden][pg]") {
  const std::string path = golden_path();
  INFO("golden file: " << path << " (override with STOCHGRAD_PG_GOLDEN)");
  std::ifstream f(path);
  REQUIRE(f.good());
  json d;
  try {
    d = json::parse(f);
  } catch (const std::exception& e) {
    FAIL("malformed golden file: " << e.what());
  }
  REQUIRE(d.contains("schema_version"));
  REQUIRE(d.at("schema_version").get<int>() == 1);
  REQUIRE(d.contains("cases"));
  REQUIRE(d.contains("summary"));
  REQUIRE(d.at("cases").is_array());
  std::map<std::string, std::size_t> ran;
  for (const json& c : d.at("cases")) {
    const std::string id = c.at("id").get<std::string>();
    const std::string fn = c.at("function").get<std::string>();
    INFO("case " << id << " (" << fn << ")");
    try {
      if (fn == "trl_grpo_advantages") {
        trl_grpo_advantages(c);
      } else if (fn == "trl_rloo_advantages") {
        trl_rloo_advantages(c);
      } else if (fn == "trl_grpo_loss") {
        trl_grpo_loss(c);
      } else if (fn == "trl_rloo_loss") {
        trl_rloo_loss(c);
      } else if (fn == "verl_grpo_outcome_advantage") {
        verl_grpo_outcome_advantage(c);
      } else if (fn == "bnpo_outcome_advantage") {
        bnpo_outcome_advantage(c);
      } else if (fn == "bnpo_advantage_decomposition") {
        bnpo_advantage_decomposition(c);
      } else if (fn == "verl_policy_loss") {
        verl_policy_loss(c, false);
      } else if (fn == "verl_upstream_policy_loss") {
        verl_policy_loss(c, true);
      } else if (fn == "verl_kl_penalty") {
        verl_kl_penalty(c);
      } else if (fn == "verl_compute_rewards") {
        verl_compute_rewards(c);
      } else {
        FAIL("unknown function family '" << fn << "' in the golden file");
      }
    } catch (const json::exception& e) {
      FAIL("malformed case: " << e.what());
    }
    ++ran[fn];
  }
  // Every family in the summary ran exactly as many cases as it announces.
  std::size_t total = 0;
  for (const auto& [fn, count] : d.at("summary").items()) {
    INFO("function " << fn);
    CHECK(ran[fn] == count.get<std::size_t>());
    total += count.get<std::size_t>();
  }
  CHECK(total == d.at("cases").size());
  CHECK(d.at("cases").size() >= 1);
}

TEST_CASE("golden loader rejects a malformed file", "[golden][pg]") {
  CHECK_THROWS(json::parse(std::string("{\"cases\": [")));
  CHECK_THROWS_AS(num(json("not-a-number")), std::runtime_error);
}
