// SPDX-License-Identifier: Apache-2.0
// Writes the seed corpus fuzz/corpus/<target>/ from real saved states of the configurations in
// targets.hpp (after a few steps, and mid-way through a PPO generation batch), each in both input
// modes of common.hpp: "c_*" = mode byte 1 + the image without its checksum (the harness
// recomputes it), "r_*" = mode byte 0 + the image as saved. Run: make_corpus <fuzz/corpus>.
// The pg_batch seeds are valid batches in that target's encoding (pg_batch.cpp).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "targets.hpp"

namespace fs = std::filesystem;
namespace sg = stochgrad;

namespace {

fs::path root;

void write(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = root / target;
  fs::create_directories(dir);
  std::ofstream os(dir / name, std::ios::binary);
  os.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!os) throw std::runtime_error("writing " + (dir / name).string());
}

// Both modes of one saved state.
template <class Obj>
void seed_state(const std::string& target, const std::string& name, const Obj& obj) {
  std::ostringstream os;
  obj.save(os);
  const std::string s = os.str();
  write(target, "r_" + name, std::string(1, '\0') + s);
  write(target, "c_" + name, std::string(1, '\1') + s.substr(0, s.size() - 8));
}

double quartic(std::span<const float> x) {
  double f = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]) - 0.1 * static_cast<double>(i % 5);
    f += 0.5 * v * v + 0.1 * v * v * v * v;
  }
  return f;
}

void zo_seeds() {
  std::vector<float> x(37, 0.5f);
  auto s = sgfuzz::make_zo(x);
  seed_state("state_zo", "fresh", s);
  sg::zo::replay_log log;
  for (int k = 0; k < 3; ++k) log.record(s.step([](std::span<const float> v) { return quartic(v); }));
  seed_state("state_zo", "three_steps", s);
  seed_state("replay_log", "three_entries", log);
  seed_state("replay_log", "empty", sg::zo::replay_log{});
}

void first_order_seeds() {
  std::vector<double> x(29, 0.25), g0(20), g1(9);
  auto s = sgfuzz::make_first_order(x);
  seed_state("state_first_order", "fresh", s);
  for (int k = 0; k < 3; ++k) {
    for (std::size_t i = 0; i < g0.size(); ++i) g0[i] = x[i] - 0.01 * static_cast<double>(i + k);
    for (std::size_t i = 0; i < g1.size(); ++i) g1[i] = 2.0 * x[20 + i] - 0.3;
    const std::span<const double> spans[] = {g0, g1};
    s.apply(sg::dense_gradient<double>(std::span<const std::span<const double>>(spans)));
  }
  seed_state("state_first_order", "three_steps", s);
}

void pg_seeds() {
  std::vector<float> x(23, 0.1f);
  auto s = sgfuzz::make_pg(x);
  seed_state("state_pg", "fresh", s);
  const std::size_t P = 2, G = 3, L = 2, N = P * G;
  const std::vector<float> rewards{1, 0, 0, 1, 1, 0};
  std::vector<float> logp(N * L);
  for (std::size_t i = 0; i < logp.size(); ++i) logp[i] = -0.5f - 0.1f * static_cast<float>(i % 4);
  sg::pg_batch<float> b;
  b.rewards = rewards;
  b.length = L;
  b.logp = logp;
  auto vjp = [](std::span<const float> coef, std::span<float> grad) {
    for (std::size_t j = 0; j < grad.size(); ++j) grad[j] += coef[j % coef.size()];
  };
  s.step(b, sg::group_layout::contiguous(P, G), vjp);
  seed_state("state_pg", "mid_ppo_batch", s);  // iteration 1 of 2: advantages and old_logp stored
  s.step(b, sg::group_layout::contiguous(P, G), vjp);
  seed_state("state_pg", "two_steps", s);
}

void sampler_seeds() {
  auto sel = sgfuzz::make_sampler();
  seed_state("sampler_state", "fresh", sel);
  sel.observe(1, 3, 4);
  sel.advance();
  sel.observe(4, 0, 2);
  seed_state("sampler_state", "observed", sel);
}

void pg_batch_seeds() {
  // Layout of pg_batch.cpp: P-1, G, L, five size tweaks (0 = right size), flags, then doubles.
  auto enc = [](std::uint8_t p, std::uint8_t g, std::uint8_t l, std::uint8_t flags, const std::vector<double>& v) {
    std::string s{static_cast<char>(p), static_cast<char>(g), static_cast<char>(l), 0, 0, 0, 0, 0,
                  static_cast<char>(flags)};
    for (double d : v) s.append(reinterpret_cast<const char*>(&d), sizeof d);
    return s;
  };
  // 2 prompts x 2 completions x 2 tokens: rewards, logp, then the surrogate's advantages.
  write("pg_batch", "plain", enc(1, 2, 2, 0, {1, 0, 0.5, 0.5, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8, 1, -1, 0.5, -0.5}));
  // With old_logp, ref_logp, mask, KL, delta and two PPO iterations.
  std::vector<double> v{1, 0, 0, 1};
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 8; ++i) v.push_back(k == 3 ? (i % 3 != 0 ? 1.0 : 0.0) : -0.1 * (i + k + 1));
  }
  for (double a : {1.0, -1.0, 0.5, -0.5}) v.push_back(a);
  write("pg_batch", "all_arrays", enc(1, 2, 2, 63, v));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus folder>\n");
    return 2;
  }
  root = argv[1];
  zo_seeds();
  first_order_seeds();
  pg_seeds();
  sampler_seeds();
  pg_batch_seeds();
  return 0;
}
