// BNPO on 2-digit addition with two PPO iterations per generation batch: the `bnpo` stepper fits a
// Beta density to the batch's per-prompt success rates and weights each prompt's advantages by its
// inverse; the second iteration of each batch reuses the stored advantages and old log-probs, with
// fresh log-probs under the updated parameters (so the clipped importance ratio is active).
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <vector>

int main() {
  namespace sg = stochgrad;
  const sg::problems::addition_policy<float> pol;
  const std::size_t P = 32, G = 8, L = pol.length(), N = P * G;

  std::vector<float> theta(pol.dimension(), 0.0f);
  sg::bnpo<float> s(sg::parameters<float>(std::span<float>(theta)), sg::optim::adam<>({.lr = 0.05}),
                    sg::score_function<>({.eps_low = 0.2, .eps_high = 0.28}, {.iterations = 2}));
  const auto layout = sg::group_layout::contiguous(P, G);

  std::vector<sg::problems::addition_prompt> prompts(P), completions(N), test(1000);
  std::vector<std::uint8_t> tokens(N * L);
  std::vector<float> logp(N * L), rewards(N);
  pol.make_prompts(sg::noise_key{8, 9, 0}, test);
  auto vjp = [&](std::span<const float> coef, std::span<float> grad) {
    pol.accumulate_gradient(theta, completions, tokens, coef, grad);
  };

  for (std::uint32_t k = 1; k <= 150; ++k) {
    pol.make_prompts(sg::noise_key{8, 0, k}, prompts);
    for (std::size_t i = 0; i < N; ++i) completions[i] = prompts[i / G];
    pol.sample(theta, completions, sg::noise_key{8, 1, k}, tokens, logp, rewards);
    const auto first = s.step(sg::pg_batch<float>{.rewards = rewards, .length = L, .logp = logp}, layout, vjp);
    pol.log_probs(theta, completions, tokens, logp);  // the policy moved: re-score the same completions
    const auto second = s.step(sg::pg_batch<float>{.length = L, .logp = logp}, layout, vjp);
    if (k % 50 == 0) {
      const auto& fit = s.normalizer().last_fit();
      fmt::print("batch {:3}  mean reward {:.3f}  Beta fit ({:.2f}, {:.2f})  ratio range [{:.3f}, {:.3f}]  clipped {:.3f}"
                 "  greedy accuracy {:.3f}\n",
                 k, first.reward_mean, fit.alpha, fit.beta, second.diagnostics.ratio_min, second.diagnostics.ratio_max,
                 second.diagnostics.clip_region_fraction, pol.greedy_accuracy(theta, test));
    }
  }
  return pol.greedy_accuracy(theta, test) >= 0.9 ? 0 : 1;
}
