// SPDX-License-Identifier: Apache-2.0
// Speed of stochgrad's fused Adam/AdamW/Adan step (through stochgrad::libtorch::optimizer) against
// torch::optim::Adam/AdamW stepping the same kind of libtorch parameters (one float tensor of n
// elements with a given gradient), and of one MeZO step (stochgrad's fused regenerated noise vs
// MeZO's recipe written in libtorch: per-parameter torch::normal from a re-seeded generator, four
// passes: +eps z, -2 eps z, +eps z, -lr g z) with a trivial loss, so the optimizer cost shows.
//   example_torch_optim_speed            n = 1e7, 1 and 2 threads
//   example_torch_optim_speed --large    also n = 1e8
//   example_torch_optim_speed --smoke    n = 1e5, one repetition (CTest)
#include <stochgrad/torch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

double median_ms(int reps, const std::function<void()>& f) {
  f();  // warm-up (first-touch of the state)
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

torch::Tensor make_param(std::int64_t n) {
  torch::manual_seed(0);
  torch::Tensor p = torch::randn({n}).requires_grad_(true);
  p.mutable_grad() = torch::randn({n});
  return p;
}

template <class Sg, class Torch>
void compare(const char* name, const char* peer, std::int64_t n, int threads, int reps, stochgrad::executor ex,
             typename Sg::options_type so, Torch&& make_torch) {
  torch::Tensor a = make_param(n), b = make_param(n);
  Sg sg(std::vector<torch::Tensor>{a}, so);
  sg.set_executor(ex);
  auto th = make_torch(std::vector<torch::Tensor>{b});
  const double ts = median_ms(reps, [&] { sg.step(); });
  const double tt = median_ms(reps, [&] { th.step(); });
  std::printf("%-6s n=%-10lld threads=%d  stochgrad %9.2f ms  %-17s %9.2f ms  ratio %.2fx\n", name,
              static_cast<long long>(n), threads, ts, peer, tt, tt / ts);
}

void mezo_compare(std::int64_t n, int threads, int reps, stochgrad::executor ex) {
  torch::Tensor a = make_param(n).detach(), b = make_param(n).detach();
  const double eps = 1e-3, lr = 1e-6;
  stochgrad::libtorch::tensor_parameters<float> tp(std::vector<torch::Tensor>{a});
  stochgrad::mezo<float> mz(tp.params(), {.lr = lr}, {.eps = eps});
  mz.set_executor(ex);
  auto loss_a = [&] { return static_cast<double>(a.data_ptr<float>()[0]); };  // trivial loss: optimizer cost only
  const double ts = median_ms(reps, [&] { mz.step(loss_a); });
  std::uint64_t seed = 1;
  const double tt = median_ms(reps, [&] {
    torch::NoGradGuard ng;
    auto perturb = [&](double scale) {
      auto gen = at::detail::createCPUGenerator(seed);
      b.add_(torch::normal(0.0, 1.0, b.sizes(), gen), scale);
    };
    perturb(eps);
    const double lp = static_cast<double>(b.data_ptr<float>()[0]);
    perturb(-2 * eps);
    const double lm = static_cast<double>(b.data_ptr<float>()[0]);
    perturb(eps);
    perturb(-lr * (lp - lm) / (2 * eps));
    ++seed;
  });
  std::printf("%-6s n=%-10lld threads=%d  stochgrad %9.2f ms  %-17s %9.2f ms  ratio %.2fx\n", "mezo",
              static_cast<long long>(n), threads, ts, "libtorch recipe", tt, tt / ts);
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false, large = false;
  for (int i = 1; i < argc; ++i) {
    smoke = smoke || std::strcmp(argv[i], "--smoke") == 0;
    large = large || std::strcmp(argv[i], "--large") == 0;
  }
  std::vector<std::int64_t> sizes = smoke ? std::vector<std::int64_t>{100000} : std::vector<std::int64_t>{10000000};
  if (large) sizes.push_back(100000000);
  const int reps = smoke ? 1 : 7;
  std::printf("stochgrad %d, SIMD %s, libtorch %s\n", STOCHGRAD_VERSION, xsimd::default_arch::name(),
              TORCH_VERSION);
  namespace sl = stochgrad::libtorch;
  for (const int threads : {1, 2}) {
    torch::set_num_threads(threads);
    stochgrad::thread_pool pool(static_cast<unsigned>(threads));
    const stochgrad::executor ex(pool);
    for (const auto n : sizes) {
      compare<sl::Adam>("adam", "torch::optim::Adam", n, threads, reps, ex, {.lr = 1e-3},
                        [](std::vector<torch::Tensor> p) { return torch::optim::Adam(p, torch::optim::AdamOptions(1e-3)); });
      compare<sl::AdamW>("adamw", "torch AdamW", n, threads, reps, ex, {.lr = 1e-3},
                         [](std::vector<torch::Tensor> p) { return torch::optim::AdamW(p, torch::optim::AdamWOptions(1e-3)); });
      compare<sl::Adan>("adan", "torch AdamW", n, threads, reps, ex, {.lr = 1e-3},
                        [](std::vector<torch::Tensor> p) { return torch::optim::AdamW(p, torch::optim::AdamWOptions(1e-3)); });
      mezo_compare(n, threads, reps, ex);
    }
  }
  return 0;
}
