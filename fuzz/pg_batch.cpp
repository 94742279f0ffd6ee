// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the policy-gradient batch validation (score_function::step through a GRPO
// stepper, and clipped_surrogate::evaluate on the token batch). The input is read as a few size
// bytes (groups, group size, length, and off-by-one / empty tweaks of each span) followed by the
// values of rewards, logp, old_logp, ref_logp and mask as doubles (any bit pattern: NaN, Inf,
// subnormals). Each call must succeed or throw a stochgrad::error; a refused step must leave the
// parameters and the saved state byte-identical.
#include <cstring>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "common.hpp"

namespace {

struct reader {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  double value() {
    double v = 0.0;
    if (n >= sizeof v) {
      std::memcpy(&v, p, sizeof v);
      p += sizeof v;
      n -= sizeof v;
    } else {
      v = static_cast<double>(byte()) / 16.0 - 4.0;
    }
    return v;
  }
};

// A span size: the right one, or one off, or empty, chosen by two bits of `t`.
std::size_t tweak(std::size_t right, std::uint8_t t) {
  switch (t & 3u) {
    case 1: return right + 1;
    case 2: return right == 0 ? 0 : right - 1;
    case 3: return (t & 4u) ? 0 : right;
    default: return right;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sg = stochgrad;
  reader in{data, size};
  const std::size_t P = in.byte() % 4 + 1, G = in.byte() % 5, L = in.byte() % 5;  // G or L may be 0
  const std::uint8_t t_rew = in.byte(), t_lp = in.byte(), t_old = in.byte(), t_ref = in.byte(), t_mask = in.byte();
  const std::uint8_t flags = in.byte();
  const std::size_t N = P * G;
  auto fill = [&](std::size_t n) {
    std::vector<double> v(n);
    for (double& x : v) x = in.value();
    return v;
  };
  const std::vector<double> rewards = fill(tweak(N, t_rew)), logp = fill(tweak(N * L, t_lp));
  const std::vector<double> old = (flags & 1u) ? fill(tweak(N * L, t_old)) : std::vector<double>{};
  const std::vector<double> ref = (flags & 2u) ? fill(tweak(N * L, t_ref)) : std::vector<double>{};
  const std::vector<double> mask = (flags & 4u) ? fill(tweak(N * L, t_mask)) : std::vector<double>{};

  sg::group_layout layout;
  try {
    layout = sg::group_layout::contiguous(P, G);
  } catch (const sg::error&) {
    return 0;  // G = 0 refused when the layout is built
  }
  std::vector<double> theta(5, 0.25);
  const std::vector<double> keep = theta;
  sg::surrogate_options so;
  so.beta = (flags & 8u) ? 0.04 : 0.0;
  so.delta = (flags & 16u) ? 1.5 : 0.0;
  auto s = sg::grpo<double>(sg::parameters<double>(std::span<double>(theta)), sg::optim::adam<>({.lr = 1e-2}),
                            sg::score_function<>(sg::clipped_surrogate(so), {.iterations = (flags & 32u) ? std::size_t{2} : std::size_t{1}}));
  sg::pg_batch<double> b;
  b.rewards = rewards;
  b.length = L;
  b.logp = logp;
  b.old_logp = old;
  b.ref_logp = ref;
  b.mask = mask;
  // vjp: grad_j += sum_t coef_t * (j + 1) (a fixed linear "model").
  auto vjp = [](std::span<const double> coef, std::span<double> grad) {
    double sum = 0.0;
    for (double c : coef) sum += c;
    for (std::size_t j = 0; j < grad.size(); ++j) grad[j] += sum * static_cast<double>(j + 1);
  };
  const std::string before = sgfuzz::saved(s);
  try {
    s.step(b, layout, vjp);
  } catch (const sg::error&) {
    if (theta != keep || sgfuzz::saved(s) != before) std::abort();
  }
  // The surrogate on its own, with the advantages given directly (one per sequence).
  std::vector<double> adv = fill(N), coef(N * L);
  sg::token_batch<double> tb;
  tb.sequences = N;
  tb.length = L;
  tb.logp = logp;
  tb.old_logp = old;
  tb.ref_logp = ref;
  tb.mask = mask;
  tb.advantages = adv;
  try {
    (void)sg::clipped_surrogate(so).evaluate(tb, std::span<double>(coef));
  } catch (const sg::error&) {
  }
  return 0;
}
