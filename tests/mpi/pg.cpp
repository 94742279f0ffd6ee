// SPDX-License-Identifier: Apache-2.0
// mpi::advantages and mpi::dapo_options: the peer golden cases (TRL GRPO and RLOO, verl GRPO, the
// BNPO repository's Beta normalisation) split over the ranks in rank order, groups spanning ranks
// and ranks holding no sample: each rank's advantages equal, bit for bit, the single-process batch's
// and the peers' values to the golden tolerance. Run under mpiexec -n 1 .. 4.
#include "support/catch.hpp"

#include <nlohmann/json.hpp>
#include <stochgrad/mpi.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "mpi/support.hpp"

namespace {

using json = nlohmann::json;
namespace smpi = stochgrad::mpi;
using sg_mpi_test::world;

double num(const json& v) {
  if (v.is_number()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "nan") return std::nan("");
  return s == "inf" ? INFINITY : -INFINITY;
}
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
  std::vector<double> s(token_rewards.size());
  stochgrad::sum_tokens<double>(tr, token_rewards.at(0).size(), s);
  return s;
}
bool close(double got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  return std::abs(got - want) <= 1e-14 + 1e-12 * std::abs(want);
}

/// This rank's samples [begin, end) of a batch of n: rank r gets [n r / R, n (r + 1) / R).
struct slice {
  std::size_t begin, end;
};
slice my_slice(std::size_t n) {
  const auto R = static_cast<std::size_t>(world().size()), r = static_cast<std::size_t>(world().rank());
  return {n * r / R, n * (r + 1) / R};
}

struct outcome {
  std::size_t cases = 0, bitwise = 0, golden = 0;
};

/// Runs one case both ways. `ids` empty: contiguous groups of `G`.
template <class B, class N>
void check_case(outcome& o, const B& b, const N& n, const std::vector<double>& r, const std::vector<std::int64_t>& ids,
                std::size_t G, const std::vector<double>& want) {
  const std::size_t total = r.size();
  const slice s = my_slice(total);
  const std::size_t m = s.end - s.begin;
  std::vector<double> adv_all(total), adv(m, -7.0);
  const stochgrad::group_layout g = ids.empty() ? stochgrad::group_layout::contiguous(total / G, G)
                                                : stochgrad::group_layout::by_id(ids);
  stochgrad::advantages(b, n, std::span<const double>(r), g, std::span<double>(adv_all));
  smpi::advantage_exchange x;
  const std::span<const double> mine(r.data() + s.begin, m);
  if (ids.empty()) {
    smpi::advantages(world(), b, n, mine, G, std::span<double>(adv), x);
  } else {
    smpi::advantages(world(), b, n, mine, std::span<const std::int64_t>(ids.data() + s.begin, m), std::span<double>(adv), x);
  }
  ++o.cases;
  bool bits = x.offset == s.begin, gold = want.size() == total;
  for (std::size_t i = 0; i < m; ++i) {
    bits = bits && std::memcmp(&adv[i], &adv_all[s.begin + i], sizeof(double)) == 0;
    gold = gold && close(adv[i], want[s.begin + i]);
  }
  o.bitwise += bits ? 1 : 0;
  o.golden += gold ? 1 : 0;
}

json golden_cases() {
  std::ifstream f(std::string(STOCHGRAD_GOLDEN_DIR) + "/policy_gradient.json");
  return json::parse(f).at("cases");
}

}  // namespace

TEST_CASE("mpi::advantages: golden cases split over the ranks equal the single-process batch", "[mpi][pg]") {
  outcome o;
  for (const json& c : golden_cases()) {
    const std::string fn = c.at("function").get<std::string>();
    const json& p = c.at("params");
    const json& in = c.at("inputs");
    const json& out = c.at("outputs");
    if (fn == "trl_grpo_advantages") {
      if (p.at("multi_objective_aggregation").get<std::string>() != "sum_then_normalize") continue;
      const json& rpf_j = in.at("rewards_per_func");
      const std::vector<double> rpf = vec(rpf_j), w = p.at("reward_weights").get<std::vector<double>>();
      std::vector<double> r(rpf_j.size());
      stochgrad::weighted_reward_sum<double>(rpf, w, r);
      const std::size_t G = p.at("num_generations").get<std::size_t>();
      const std::string scale = p.at("scale_rewards").get<std::string>();
      const std::vector<double> want = vec(out.at("advantages"));
      if (scale == "group") {
        check_case(o, stochgrad::group_mean{}, stochgrad::group_std{1e-4}, r, {}, G, want);
      } else if (scale == "batch") {
        check_case(o, stochgrad::group_mean{}, stochgrad::batch_std{1e-4}, r, {}, G, want);
      } else {
        check_case(o, stochgrad::group_mean{}, stochgrad::no_normalizer{}, r, {}, G, want);
      }
    } else if (fn == "trl_rloo_advantages") {
      if (!p.at("reward_clip_range").is_null() || num(p.at("beta")) != 0.0) continue;
      const json& rpf_j = in.at("rewards_per_func");
      const std::vector<double> rpf = vec(rpf_j), w = p.at("reward_weights").get<std::vector<double>>();
      std::vector<double> r(rpf_j.size());
      stochgrad::weighted_reward_sum<double>(rpf, w, r);
      const std::size_t G = p.at("num_generations").get<std::size_t>();
      const std::vector<double> want = vec(out.at("advantages"));
      if (p.at("normalize_advantages").get<bool>()) {
        check_case(o, stochgrad::leave_one_out{}, stochgrad::batch_whiten{1e-4}, r, {}, G, want);
      } else {
        check_case(o, stochgrad::leave_one_out{}, stochgrad::no_normalizer{}, r, {}, G, want);
      }
    } else if (fn == "verl_grpo_outcome_advantage") {
      const std::vector<double> r = seq_scores(in.at("token_level_rewards"));
      const std::vector<std::int64_t> ids = ids_of(in.at("index"));
      const std::vector<double> want = vec(out.at("advantages_per_sequence"));
      if (p.at("norm_adv_by_std_in_grpo").get<bool>()) {
        stochgrad::group_std n = stochgrad::group_std::verl();
        n.eps = num(p.at("epsilon"));
        check_case(o, stochgrad::group_mean::verl(), n, r, ids, 0, want);
      } else {
        check_case(o, stochgrad::group_mean::verl(), stochgrad::no_normalizer{}, r, ids, 0, want);
      }
    } else if (fn == "bnpo_outcome_advantage") {
      const std::vector<double> r = seq_scores(in.at("token_level_rewards"));
      const std::vector<std::int64_t> ids = ids_of(in.at("index"));
      stochgrad::bnpo_options opt;
      opt.min_value = num(p.at("min_value"));
      opt.max_value = num(p.at("max_value"));
      opt.reference_compatible = true;
      const stochgrad::bnpo_mean base{opt};
      const stochgrad::beta_normalizer norm(opt);
      check_case(o, base, norm, r, ids, 0, vec(out.at("advantages_per_sequence")));
    }
  }
  INFO("cases " << o.cases << ", bitwise " << o.bitwise << ", golden " << o.golden);
  CHECK(o.cases >= 30);
  CHECK(o.bitwise == o.cases);
  CHECK(o.golden == o.cases);
}

TEST_CASE("mpi::advantages: a group spread over every rank, float rewards, traffic", "[mpi][pg]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  // Global batch: 3 groups by id, interleaved, 5 samples per rank.
  std::vector<float> all_r;
  std::vector<std::int64_t> all_ids;
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < 5; ++i) {
      all_r.push_back(0.1f * static_cast<float>((7 * r + 3 * i) % 10));
      all_ids.push_back((r + i) % 3);
    }
  }
  std::vector<float> want(all_r.size());
  stochgrad::advantages(stochgrad::group_mean{}, stochgrad::group_std{}, std::span<const float>(all_r),
                        stochgrad::group_layout::by_id(all_ids), std::span<float>(want));
  const auto b = static_cast<std::size_t>(5 * me);
  std::vector<float> adv(5);
  smpi::advantage_exchange x;
  comm.reset_traffic();
  smpi::advantages(comm, stochgrad::group_mean{}, stochgrad::group_std{}, std::span<const float>(all_r.data() + b, 5),
                   std::span<const std::int64_t>(all_ids.data() + b, 5), std::span<float>(adv), x);
  CHECK(sg_mpi_test::same_bits<float>(adv, std::span<const float>(want.data() + b, 5)));
  // One allgather of (count, status), one allgatherv of the rewards, one of the ids.
  CHECK(comm.sent() == smpi::traffic{3, 16 + 5 * 8 + 5 * 8});
  CHECK(x.layout.groups() == 3);
}

TEST_CASE("mpi::advantages: bad input refused on every rank before anything is written", "[mpi][pg]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  std::vector<double> r = {1.0, 0.0, 1.0}, adv(3, 42.0);
  std::vector<std::int64_t> ids = {0, 0, 1};
  smpi::advantage_exchange x;
  // One rank's ids are short: every rank refuses, naming that rank.
  const std::size_t nid = me == R - 1 ? 2 : 3;
  std::string msg;
  try {
    smpi::advantages(comm, stochgrad::group_mean{}, stochgrad::group_std{}, std::span<const double>(r),
                     std::span<const std::int64_t>(ids.data(), nid), std::span<double>(adv), x);
  } catch (const stochgrad::invalid_argument& e) {
    msg = e.what();
  }
  CHECK(msg.find("rank " + std::to_string(R - 1) + ": the rewards, group ids") != std::string::npos);
  CHECK(adv == std::vector<double>(3, 42.0));
  // Contiguous groups of 2 over 3 R samples: refused when 3 R is odd.
  msg.clear();
  try {
    smpi::advantages(comm, stochgrad::group_mean{}, stochgrad::group_std{}, std::span<const double>(r), 2,
                     std::span<double>(adv), x);
  } catch (const stochgrad::invalid_argument& e) {
    msg = e.what();
  }
  CHECK((msg.find("not a whole number of groups of 2") != std::string::npos) == (R % 2 == 1));
  if (R % 2 == 1) CHECK(adv == std::vector<double>(3, 42.0));
  // An empty batch on every rank.
  CHECK_THROWS_AS(smpi::advantages(comm, stochgrad::group_mean{}, stochgrad::group_std{}, std::span<const double>(),
                                   std::span<const std::int64_t>(), std::span<double>(), x),
                  stochgrad::invalid_argument);
}

TEST_CASE("mpi::advantages: a reward only one rank sees out of BNPO's range is refused on every rank", "[mpi][pg]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  std::vector<double> r = {1.0, 0.0, me == R - 1 ? 1.5 : 1.0, 0.0}, adv(4, 42.0);
  const std::vector<std::int64_t> ids = {0, 0, 1, 1};
  stochgrad::bnpo_options opt;
  smpi::advantage_exchange x;
  std::string msg;
  try {
    smpi::advantages(comm, stochgrad::bnpo_mean{opt}, stochgrad::beta_normalizer(opt), std::span<const double>(r),
                     std::span<const std::int64_t>(ids), std::span<double>(adv), x);
  } catch (const stochgrad::invalid_argument& e) {
    msg = e.what();
  }
  // The global index of the bad reward: rank R - 1's third sample.
  CHECK(msg.find("reward[" + std::to_string(4 * (R - 1) + 2) + "] = 1.5") != std::string::npos);
  CHECK(adv == std::vector<double>(4, 42.0));
  CHECK(sg_mpi_test::same_on_all_ranks(std::hash<std::string>{}(msg)));
}

TEST_CASE("mpi::dapo_options: N_global and the process count from the communicator", "[mpi][pg]") {
  auto& comm = world();
  const int R = comm.size(), me = comm.rank();
  const auto o = smpi::dapo_options(comm, stochgrad::surrogate_options::trl(), static_cast<std::uint64_t>(10 + me));
  CHECK(o.global_active_tokens == static_cast<double>(10 * R + R * (R - 1) / 2));
  CHECK(o.num_processes == static_cast<std::size_t>(R));
  CHECK(o.aggregation == stochgrad::loss_aggregation::dapo);
  CHECK(smpi::global_sum(comm, 3) == static_cast<std::uint64_t>(3 * R));
}
