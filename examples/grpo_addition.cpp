// GRPO on a verifiable-reward task: a small autoregressive policy learns 2-digit addition (reward 1
// iff the answer is exact) through the `grpo` stepper. The trainer samples completions, scores
// them, and supplies a vector-Jacobian callback; the stepper does advantages, the clipped
// surrogate's per-token coefficients, and the Adam update.
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <vector>

int main() {
  namespace sg = stochgrad;
  const sg::problems::addition_policy<float> pol;  // linear softmax over context features
  const std::size_t P = 32, G = 8, L = pol.length(), N = P * G;

  std::vector<float> theta(pol.dimension(), 0.0f);  // uniform policy: accuracy ~0
  sg::grpo<float> s(sg::parameters<float>(std::span<float>(theta)), sg::optim::adam<>({.lr = 0.05}));
  const auto layout = sg::group_layout::contiguous(P, G);  // completions of a prompt are contiguous

  std::vector<sg::problems::addition_prompt> prompts(P), completions(N), test(1000);
  std::vector<std::uint8_t> tokens(N * L);
  std::vector<float> logp(N * L), rewards(N);
  pol.make_prompts(sg::noise_key{7, 9, 0}, test);

  for (std::uint32_t k = 1; k <= 200; ++k) {
    // Generation: P prompts, G sampled completions each, their log-probs and rewards.
    pol.make_prompts(sg::noise_key{7, 0, k}, prompts);
    for (std::size_t i = 0; i < N; ++i) completions[i] = prompts[i / G];
    pol.sample(theta, completions, sg::noise_key{7, 1, k}, tokens, logp, rewards);
    // One GRPO step: the callback adds sum_t coef_t * d logp_t / d theta to `grad`.
    const auto rep = s.step(sg::pg_batch<float>{.rewards = rewards, .length = L, .logp = logp}, layout,
                            [&](std::span<const float> coef, std::span<float> grad) {
                              pol.accumulate_gradient(theta, completions, tokens, coef, grad);
                            });
    if (k % 50 == 0) {
      fmt::print("step {:3}  mean reward {:.3f}  zero-advantage groups {:2}/{}  greedy accuracy {:.3f}\n", k,
                 rep.reward_mean, rep.stats.zero_groups, P, pol.greedy_accuracy(theta, test));
    }
  }
  return pol.greedy_accuracy(theta, test) >= 0.9 ? 0 : 1;
}
