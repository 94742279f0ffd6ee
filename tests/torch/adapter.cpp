// SPDX-License-Identifier: Apache-2.0
// libtorch as a client: the adapter (parameters, groups, .grad(), errors), the torch::optim-compatible
// wrapper against torch's own optimizers in the same process, save/load + resume, MeZO on a libtorch
// model. <stochgrad/torch.hpp> comes first: this TU is also its self-containment check.
#include <stochgrad/torch.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "support/catch.hpp"

namespace sl = stochgrad::libtorch;

namespace {

// The message of the exception E thrown by f ("<no exception>" when none, "<other exception>"
// for another type).
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (...) {
    return "<other exception>";
  }
  return "<no exception>";
}
bool contains(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

// Runs f, which must throw stochgrad::invalid_argument with every one of `needles` in its message.
template <class F>
void expect_refusal(F&& f, std::initializer_list<const char*> needles) {
  const std::string msg = message_of<stochgrad::invalid_argument>(std::forward<F>(f));
  INFO(msg);
  for (const char* n : needles) CHECK(contains(msg, n));
}

torch::nn::Sequential make_mlp(std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})),
                               torch::nn::Tanh(), torch::nn::Linear(16, 4));
}

void copy_params(torch::nn::Sequential& dst, const torch::nn::Sequential& src) {
  torch::NoGradGuard ng;
  auto d = dst->parameters();
  auto s = src->parameters();
  for (std::size_t i = 0; i < d.size(); ++i) d[i].copy_(s[i]);
}

std::vector<torch::Tensor> snapshot(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

bool same(const std::vector<torch::Tensor>& a, const torch::nn::Module& m) {
  const auto b = m.parameters();
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

double max_abs_diff(const torch::nn::Module& a, const torch::nn::Module& b) {
  double d = 0.0;
  const auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) d = std::max(d, (pa[i] - pb[i]).abs().max().item<double>());
  return d;
}

double max_abs(const torch::nn::Module& a) {
  double d = 0.0;
  for (const auto& p : a.parameters()) d = std::max(d, p.abs().max().item<double>());
  return d;
}

struct batch {
  torch::Tensor x, y;
};
batch make_data() {
  torch::manual_seed(123);
  return {torch::randn({64, 8}), torch::randn({64, 4})};
}

void backward_mse(torch::nn::Sequential& m, const batch& b) {
  torch::mse_loss(m->forward(b.x), b.y).backward();
}

}  // namespace

TEST_CASE("module parameters become a parameters<float> set with biases and norms in the no-decay group", "[torch]") {
  auto m = make_mlp(1);
  sl::tensor_parameters<float> tp(*m);
  const auto& p = tp.params();
  REQUIRE(p.groups() == 2);
  REQUIRE(tp.size() == 6);  // 0.weight 0.bias 1.weight 1.bias 3.weight 3.bias
  CHECK(p.group(1).decay == false);
  std::size_t total = 0;
  for (std::size_t i = 0; i < tp.size(); ++i) {
    const bool matrix = tp.tensor(i).dim() == 2;
    CHECK(p.group_of(i) == (matrix ? 0u : 1u));
    // The span is a view of the tensor's own storage.
    CHECK(static_cast<void*>(p.tensor(i).data()) == tp.tensor(i).data_ptr());
    CHECK(p.tensor(i).size() == static_cast<std::size_t>(tp.tensor(i).numel()));
    total += p.tensor(i).size();
  }
  CHECK(tp.name(0) == "0.weight");
  CHECK(tp.name(2) == "1.weight");
  CHECK(p.size() == total);

  // The rule is overridable: a predicate on name and shape.
  sl::tensor_parameters<float> all(*m, {.decays = sl::decay_all});
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(all.params().group_of(i) == 0);
  sl::tensor_parameters<float> by_name(*m, {.decays = [](const std::string& n, c10::IntArrayRef) { return n[0] == '3'; }});
  CHECK(by_name.params().group_of(4) == 0);
  CHECK(by_name.params().group_of(0) == 1);

  // .grad() as a gradient source: the spans alias the gradient tensors.
  backward_mse(m, make_data());
  auto g = tp.gradients();
  REQUIRE(g.spans().size() == tp.size());
  for (std::size_t i = 0; i < tp.size(); ++i) {
    CHECK(static_cast<const void*>(g.spans()[i].data()) == tp.tensor(i).grad().data_ptr());
  }
}

TEST_CASE("bad tensors are refused with the parameter's name, before anything changes", "[torch]") {
  // A tensor that is not on the CPU: the meta device takes the same branch as CUDA (device().is_cpu()
  // is false); this libtorch build has no CUDA.
  torch::Tensor off_cpu = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  expect_refusal([&] { (void)sl::tensor_parameters<float>({off_cpu}); }, {"'group0.0'", "CPU"});
  torch::Tensor dbl = torch::zeros({4}, torch::kDouble);
  expect_refusal([&] { (void)sl::tensor_parameters<float>({dbl}); }, {"Double"});
  torch::Tensor nc = torch::zeros({4, 3}).t();
  expect_refusal([&] { (void)sl::tensor_parameters<float>({nc}); }, {"not contiguous"});
  {
    auto m = make_mlp(2);
    m->to(torch::kDouble);
    expect_refusal([&] { (void)sl::AdamW(*m); }, {"'0.weight'"});
    sl::tensor_parameters<double> ok(*m);  // the double adapter takes it
    CHECK(ok.size() == 6);
  }

  const auto data = make_data();
  SECTION("missing gradient") {
    auto m = make_mlp(3);
    sl::AdamW opt(*m, {.lr = 1e-2});
    const auto before = snapshot(*m);
    expect_refusal([&] { (void)opt.step(); }, {"'0.weight'", "no gradient"});
    CHECK(same(before, *m));
    CHECK(opt.stochgrad_stepper().steps() == 0);
  }
  SECTION("non-contiguous gradient") {
    auto m = make_mlp(3);
    sl::AdamW opt(*m, {.lr = 1e-2});
    backward_mse(m, data);
    auto w = m->parameters()[0];  // 16 x 8
    w.mutable_grad() = torch::ones({8, 16}).t();
    const auto before = snapshot(*m);
    expect_refusal([&] { (void)opt.step(); }, {"gradient of parameter '0.weight'"});
    CHECK(same(before, *m));
    CHECK(opt.stochgrad_stepper().steps() == 0);
  }
  SECTION("parameter set changed: a parameter added") {
    auto m = make_mlp(3);
    sl::AdamW opt(*m, {.lr = 1e-2});
    m->register_parameter("extra", torch::zeros({3}));
    backward_mse(m, data);
    m->named_parameters()["extra"].mutable_grad() = torch::zeros({3});
    const auto before = snapshot(*m);
    expect_refusal([&] { (void)opt.step(); }, {"'extra'"});
    CHECK(same(before, *m));
  }
  SECTION("parameter set changed: storage replaced") {
    auto m = make_mlp(3);
    sl::AdamW opt(*m, {.lr = 1e-2});
    backward_mse(m, data);
    m->parameters()[2].set_data(torch::ones({16}));
    const auto before = snapshot(*m);
    expect_refusal([&] { (void)opt.step(); }, {"'1.weight'"});
    CHECK(same(before, *m));
    CHECK(opt.stochgrad_stepper().steps() == 0);
  }
}

namespace {

// Runs `steps` full-batch steps of the same loss with a stochgrad wrapper on model `a` and a torch
// optimizer on model `b` (same initial parameters). After each step it records
// max |theta_a - theta_b| / (max |theta_b| + 4 lr) and copies b's parameters into a, so every step
// starts from the same parameters (hence bitwise the same gradient) and the comparison measures the
// optimizer arithmetic, not the chaotic growth of rounding differences through the loss (free-running,
// Adam's m / sqrt(v) amplifies ulp-level differences in near-zero gradient components: about 6e-4
// after 200 steps here, reported as `free-running`).
template <class Sg, class Torch>
double track(Sg& sg, Torch& th, torch::nn::Sequential& a, torch::nn::Sequential& b, int steps, double lr) {
  const auto data = make_data();
  double worst = 0.0;
  for (int k = 0; k < steps; ++k) {
    sg.zero_grad();
    backward_mse(a, data);
    sg.step();
    th.zero_grad();
    backward_mse(b, data);
    th.step();
    worst = std::max(worst, max_abs_diff(*a, *b) / (max_abs(*b) + 4.0 * lr));
    copy_params(a, b);
  }
  return worst;
}

// Float32 tolerance per step. Both sides evaluate the same formulas in float32 from the same
// parameters and gradient, with a different operation order and fused multiply-adds (stochgrad's
// kernel) vs separately rounded foreach ops (torch): about 8 roundings each, so one update differs by
// at most ~16 ulp of the larger of |theta| and the step (|lr m_hat / (sqrt(v_hat) + eps)| <= 4 lr in
// these runs; SGD: lr |g + mu b| < 4 lr as well). The moment buffers differ by a few ulp too, but the
// same gradient enters both each step, so those differences decay with beta instead of compounding.
// Tolerance: 16 * 2^-24 relative to max |theta| + 4 lr.
constexpr int peer_steps = 200;
constexpr double peer_tol = 16.0 * 5.96e-8;

}  // namespace

TEST_CASE("stochgrad AdamW/Adam/SGD through the wrapper track torch::optim in the same process for 200 steps", "[torch]") {
  SECTION("AdamW") {
    auto a = make_mlp(7), b = make_mlp(8);
    copy_params(b, a);
    const double lr = 1e-2;
    sl::optimizer<stochgrad::optim::adamw<>> sg(a->parameters(), {.lr = lr, .weight_decay = 1e-2});
    torch::optim::AdamW th(b->parameters(), torch::optim::AdamWOptions(lr).weight_decay(1e-2));
    const double d = track(sg, th, a, b, peer_steps, lr);
    INFO("AdamW relative max difference " << d);
    CHECK(d <= peer_tol);
  }
  SECTION("AdamW free-running (reported; loose bound)") {
    auto a = make_mlp(7), b = make_mlp(8);
    copy_params(b, a);
    sl::AdamW sg(a->parameters(), {.lr = 1e-2, .weight_decay = 1e-2});
    torch::optim::AdamW th(b->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(1e-2));
    const auto data = make_data();
    for (int k = 0; k < peer_steps; ++k) {
      sg.zero_grad();
      backward_mse(a, data);
      sg.step();
      th.zero_grad();
      backward_mse(b, data);
      th.step();
    }
    const double d = max_abs_diff(*a, *b) / std::max(1.0, max_abs(*b));
    const double la = torch::mse_loss(a->forward(data.x), data.y).item<double>();
    const double lb = torch::mse_loss(b->forward(data.x), data.y).item<double>();
    INFO("free-running AdamW relative max difference " << d << ", losses " << la << " " << lb);
    // Loose: the trajectories stay on the same path (both reach the same loss to 1e-3 relative).
    CHECK(std::abs(la - lb) <= 1e-3 * lb);
    CHECK(d < 1e-2);
  }
  SECTION("Adam with L2 decay") {
    auto a = make_mlp(7), b = make_mlp(8);
    copy_params(b, a);
    const double lr = 1e-2;
    sl::Adam sg(a->parameters(), {.lr = lr, .weight_decay = 1e-3});
    torch::optim::Adam th(b->parameters(), torch::optim::AdamOptions(lr).weight_decay(1e-3));
    const double d = track(sg, th, a, b, peer_steps, lr);
    INFO("Adam relative max difference " << d);
    CHECK(d <= peer_tol);
  }
  SECTION("SGD momentum + Nesterov + weight decay") {
    auto a = make_mlp(7), b = make_mlp(8);
    copy_params(b, a);
    const double lr = 5e-2;
    sl::SGD sg(a->parameters(), {.lr = lr, .momentum = 0.9, .nesterov = true, .weight_decay = 1e-3});
    torch::optim::SGD th(b->parameters(), torch::optim::SGDOptions(lr).momentum(0.9).nesterov(true).weight_decay(1e-3));
    const double d = track(sg, th, a, b, peer_steps, lr);
    INFO("SGD relative max difference " << d);
    CHECK(d <= peer_tol);
  }
  SECTION("param groups with their own lr / decay, and a mid-run set_lr") {
    auto a = make_mlp(7), b = make_mlp(8);
    copy_params(b, a);
    auto pa = a->parameters(), pb = b->parameters();
    std::vector<sl::tensor_group> ga{{{pa[0], pa[4]}, {.lr = 2e-2, .weight_decay = 1e-2}},
                                     {{pa[1], pa[2], pa[3], pa[5]}, {.lr = 5e-3, .decay = false}}};
    sl::AdamW sg(ga, {.lr = 1e-3});
    std::vector<torch::optim::OptimizerParamGroup> gb;
    gb.emplace_back(std::vector<torch::Tensor>{pb[0], pb[4]},
                    std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(2e-2).weight_decay(1e-2)));
    gb.emplace_back(std::vector<torch::Tensor>{pb[1], pb[2], pb[3], pb[5]},
                    std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(5e-3).weight_decay(0.0)));
    torch::optim::AdamW th(gb, torch::optim::AdamWOptions(1e-3));
    REQUIRE(sg.param_groups().size() == 2);
    CHECK(sg.param_groups()[1].options().get_lr() == 5e-3);
    double d = track(sg, th, a, b, peer_steps / 2, 2e-2);
    sg.param_groups()[0].options().set_lr(4e-3);
    th.param_groups()[0].options().set_lr(4e-3);
    d = std::max(d, track(sg, th, a, b, peer_steps / 2, 2e-2));
    INFO("AdamW (groups) relative max difference " << d);
    CHECK(d <= peer_tol);
    CHECK(sg.stochgrad_stepper().params().group(0).lr.value() == 4e-3);
  }
}

TEST_CASE("save/load through torch's archives resumes bit-identically; foreign state is refused", "[torch]") {
  const auto data = make_data();
  auto run = [&](sl::Adan& opt, torch::nn::Sequential& m, int n) {
    for (int k = 0; k < n; ++k) {
      opt.zero_grad();
      backward_mse(m, data);
      opt.step();
    }
  };
  auto a = make_mlp(11);
  sl::Adan oa(*a, {.lr = 1e-2, .weight_decay = 0.02});
  run(oa, a, 10);
  std::stringstream model_ckpt, opt_ckpt;
  torch::save(a, model_ckpt);
  torch::save(oa, opt_ckpt);
  run(oa, a, 10);

  auto b = make_mlp(99);  // different initial weights: the checkpoint must restore everything
  {
    // torch::load(module) gives the parameters new storage: an optimizer built before it refuses to
    // step (it would update the old storage). Load the model first, then build the optimizer.
    auto stale = make_mlp(99);
    sl::Adan os(*stale, {.lr = 1e-2});
    std::stringstream copy(model_ckpt.str());
    torch::load(stale, copy);
    backward_mse(stale, data);
    expect_refusal([&] { (void)os.step(); }, {"changed its storage"});
  }
  torch::load(b, model_ckpt);
  sl::Adan ob(*b, {.lr = 1e-2, .weight_decay = 0.02});
  torch::load(ob, opt_ckpt);
  CHECK(ob.stochgrad_stepper().steps() == 10);
  run(ob, b, 10);
  CHECK(max_abs_diff(*a, *b) == 0.0);

  // AdamW state into an Adan optimizer: refused, nothing changes.
  auto c = make_mlp(12);
  sl::AdamW oc(*c, {.lr = 1e-2});
  std::stringstream other;
  torch::save(oc, other);
  const auto steps_before = ob.stochgrad_stepper().steps();
  std::ostringstream state_before;
  ob.stochgrad_stepper().save(state_before);
  CHECK_THROWS_AS(torch::load(ob, other), stochgrad::state_error);
  std::ostringstream state_after;
  ob.stochgrad_stepper().save(state_after);
  CHECK(ob.stochgrad_stepper().steps() == steps_before);
  CHECK(state_after.str() == state_before.str());
}

TEST_CASE("MeZO fine-tunes a libtorch model with forward passes only, under NoGradGuard", "[torch]") {
  // Regression onto a fixed random teacher; MeZO perturbs the module's tensors in place through the
  // adapter's spans and evaluates the loss without autograd.
  auto m = make_mlp(21);
  const auto data = make_data();
  sl::tensor_parameters<float> tp(*m);
  stochgrad::mezo<float> mz(tp.params(), {.lr = 2e-3}, {.eps = 1e-3});
  auto loss = [&]() {
    torch::NoGradGuard ng;
    return torch::mse_loss(m->forward(data.x), data.y).item<double>();
  };
  const double before = loss();
  const int steps = 400;
  for (int k = 0; k < steps; ++k) mz.step(loss);
  const double after = loss();
  // No gradient was ever allocated.
  for (const auto& p : m->parameters()) CHECK_FALSE(p.grad().defined());
  // Deterministic (seeded directions), so this is no statistical claim: with lr 2e-3 and d = 356
  // parameters, the expected decrease per step is lr |grad|^2 (MeZO's estimate is unbiased for the
  // smoothed loss); the initial |grad|^2 of this model is O(0.1), so 400 steps remove well over 5 %
  // of the loss. Full-batch backprop Adam reaches about half of it in the same number of steps.
  INFO("MeZO loss " << before << " -> " << after);
  CHECK(after < 0.95 * before);
}

namespace {

// A small verifiable-reward task: prompt p in {0..3}; the answer is the L = 2 tokens
// ((p + l) mod 4); reward 1 for an exact answer, else 0. The policy factorises over positions
// given the prompt (embedding -> tanh -> linear to L x V logits); a random policy answers exactly
// with probability 1/16.
constexpr std::int64_t vocab = 4, answer_len = 2, prompts = 4;

struct PolicyImpl : torch::nn::Module {
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear head{nullptr};
  PolicyImpl() {
    emb = register_module("emb", torch::nn::Embedding(prompts, 16));
    head = register_module("head", torch::nn::Linear(16, answer_len * vocab));
  }
  torch::Tensor forward(const torch::Tensor& p) { return head->forward(torch::tanh(emb->forward(p))).view({-1, answer_len, vocab}); }
};
TORCH_MODULE(Policy);

struct rollout {
  torch::Tensor prompt, tokens, rewards;  // [N] long, [N x L] long, [N] float
};

rollout sample(Policy& pi, std::int64_t group) {
  torch::NoGradGuard ng;
  rollout r;
  r.prompt = torch::arange(prompts).repeat_interleave(group);  // contiguous groups of G
  const auto probs = torch::softmax(pi->forward(r.prompt), -1);
  r.tokens = torch::multinomial(probs.view({-1, vocab}), 1, true).view({-1, answer_len});
  const auto target = (r.prompt.unsqueeze(1) + torch::arange(answer_len).unsqueeze(0)) % vocab;
  r.rewards = (r.tokens == target).all(1).to(torch::kFloat).contiguous();
  return r;
}

torch::Tensor token_logp(Policy& pi, const rollout& r) {
  return torch::log_softmax(pi->forward(r.prompt), -1).gather(2, r.tokens.unsqueeze(2)).squeeze(2);  // [N x L]
}

// One stochgrad GRPO step through autograd: stochgrad turns rewards into advantages and per-token
// coefficients c = dLoss/dlogp; autograd of (c.detach() * logp).sum() is the loss gradient, which
// the callback adds to stochgrad's buffers; stochgrad's Adam steps the module. Returns the gradient
// stochgrad used (a copy per tensor) when `captured` is given.
template <class S>
void grpo_step(S& s, Policy& pi, const sl::tensor_parameters<float>& tp, const rollout& r, std::int64_t group,
               std::vector<torch::Tensor>* captured = nullptr) {
  const torch::Tensor logp = token_logp(pi, r);
  const torch::Tensor lp = logp.detach().contiguous();
  const auto n = static_cast<std::size_t>(lp.numel());
  const auto layout = stochgrad::group_layout::contiguous(static_cast<std::size_t>(prompts), static_cast<std::size_t>(group));
  auto vjp = [&](std::span<const float> coef, std::span<const std::span<float>> grads) {
    const torch::Tensor c = torch::from_blob(const_cast<float*>(coef.data()), {lp.size(0), lp.size(1)}, torch::kFloat).clone();
    for (auto& p : pi->parameters()) p.mutable_grad() = torch::Tensor();
    (c.detach() * logp).sum().backward();
    for (std::size_t t = 0; t < tp.size(); ++t) {
      const torch::Tensor g = tp.tensor(t).grad().contiguous();
      const float* gp = g.data_ptr<float>();
      for (std::size_t i = 0; i < grads[t].size(); ++i) grads[t][i] += gp[i];
      if (captured) captured->push_back(g.clone());
    }
  };
  s.step(stochgrad::pg_batch<float>{.rewards = std::span<const float>(r.rewards.data_ptr<float>(), static_cast<std::size_t>(r.rewards.numel())),
                                    .length = static_cast<std::size_t>(answer_len),
                                    .logp = std::span<const float>(lp.data_ptr<float>(), n)},
         layout, vjp);
}

double exact_rate(Policy& pi, std::int64_t per_prompt) {
  return sample(pi, per_prompt).rewards.mean().item<double>();
}

}  // namespace

TEST_CASE("GRPO through autograd: stochgrad's per-token coefficients give TRL's GRPO gradient, and training works", "[torch]") {
  torch::manual_seed(5);
  Policy pi;
  sl::tensor_parameters<float> tp(*pi);
  stochgrad::grpo<float> s(tp.params(), {.lr = 5e-2});
  const std::int64_t G = 16;

  SECTION("gradient equals autograd of a direct libtorch transcription of TRL's GRPO loss") {
    torch::manual_seed(17);
    const rollout r = sample(pi, G);
    // TRL GRPOTrainer (loss_type "dapo", beta 0, epsilon 0.2, scale_rewards "group"): advantages
    // (r - mean_g) / (std_g + 1e-4) with torch's unbiased std, ratio exp(logp - logp.detach()),
    // per-token loss -min(ratio A, clamp(ratio, 1 - eps, 1 + eps) A), summed over active tokens and
    // divided by their number.
    const auto rw = r.rewards.view({prompts, G});
    const auto adv = ((rw - rw.mean(1, true)) / (rw.std(1, true, true) + 1e-4)).view({-1, 1});
    REQUIRE(adv.abs().max().item<double>() > 0.1);  // the batch has non-constant groups
    const torch::Tensor logp = token_logp(pi, r);
    const auto ratio = torch::exp(logp - logp.detach());
    const auto per_token = -torch::min(ratio * adv, torch::clamp(ratio, 0.8, 1.2) * adv);
    for (auto& p : pi->parameters()) p.mutable_grad() = torch::Tensor();
    (per_token.sum() / static_cast<double>(per_token.numel())).backward();
    std::vector<torch::Tensor> ref;
    for (std::size_t t = 0; t < tp.size(); ++t) ref.push_back(tp.tensor(t).grad().clone());

    std::vector<torch::Tensor> got;
    grpo_step(s, pi, tp, r, G, &got);
    REQUIRE(got.size() == ref.size());
    // Tolerance: the coefficients agree to a few float32 ulp (stochgrad computes the advantages in
    // double, TRL in float: relative 2^-22 at most for these rewards), and both gradients are the
    // same autograd reduction of N L = 128 weighted terms; a relative error of 2^-22 on the weights
    // plus reordering (log2(128) = 7 roundings) is below 16 * 2^-24 of the largest gradient element.
    double scale = 0.0, diff = 0.0;
    for (std::size_t t = 0; t < ref.size(); ++t) {
      scale = std::max(scale, ref[t].abs().max().item<double>());
      diff = std::max(diff, (ref[t] - got[t]).abs().max().item<double>());
    }
    INFO("max |g_stochgrad - g_TRL| = " << diff << ", max |g_TRL| = " << scale);
    CHECK(scale > 0.0);
    CHECK(diff <= 16.0 * 5.96e-8 * scale);
  }

  SECTION("a short GRPO run raises the exact-answer rate") {
    torch::manual_seed(23);
    const std::int64_t eval_n = 512;  // per prompt: 2048 samples
    const double before = exact_rate(pi, eval_n);
    for (int k = 0; k < 60; ++k) {
      const rollout r = sample(pi, G);
      grpo_step(s, pi, tp, r, G);
    }
    const double after = exact_rate(pi, eval_n);
    // Margin: four standard errors of the difference of two binomial proportions over 2048 samples each.
    const double n = static_cast<double>(eval_n * prompts);
    const double se = std::sqrt(before * (1 - before) / n + after * (1 - after) / n);
    INFO("exact-answer rate " << before << " -> " << after << " (SE of the difference " << se << ")");
    CHECK(after - before > 4.0 * se);
  }
}

#if defined(STOCHGRAD_TORCH_FASHION_DIR)
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace {

// Reads a gzip-compressed idx file (LeCun's format: big-endian magic 0x0000080d, d big-endian
// dimensions, then the bytes). Throws std::runtime_error naming the file for a missing file, a
// bad magic or a size that does not match the header.
std::vector<unsigned char> read_idx(const std::string& path, unsigned dims, std::vector<std::int64_t>& shape) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error(path + ": cannot open");
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  int got = 0;
  while ((got = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  gzclose(f);
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) | (std::uint32_t{bytes[at + 2]} << 8) |
           std::uint32_t{bytes[at + 3]};
  };
  if (bytes.size() < 4 + 4 * std::size_t{dims} || be32(0) != (0x800u | dims)) throw std::runtime_error(path + ": bad idx magic");
  std::size_t n = 1;
  shape.clear();
  for (unsigned d = 0; d < dims; ++d) {
    shape.push_back(be32(4 + 4 * d));
    n *= be32(4 + 4 * d);
  }
  if (bytes.size() != 4 + 4 * std::size_t{dims} + n) throw std::runtime_error(path + ": size does not match its header (truncated?)");
  bytes.erase(bytes.begin(), bytes.begin() + 4 + 4 * dims);
  return bytes;
}

struct labelled {
  torch::Tensor x, y;  // [n x 784] float in [0, 1], [n] long
};
labelled load_fashion(const std::string& prefix) {
  std::vector<std::int64_t> si, sl_;
  auto img = read_idx(std::string(STOCHGRAD_TORCH_FASHION_DIR) + "/" + prefix + "-images-idx3-ubyte.gz", 3, si);
  auto lab = read_idx(std::string(STOCHGRAD_TORCH_FASHION_DIR) + "/" + prefix + "-labels-idx1-ubyte.gz", 1, sl_);
  const auto x = torch::from_blob(img.data(), {si[0], si[1] * si[2]}, torch::kUInt8).to(torch::kFloat) / 255.0;
  const auto y = torch::from_blob(lab.data(), {sl_[0]}, torch::kUInt8).to(torch::kLong);
  return {x, y};
}
labelled classes(const labelled& d, std::int64_t lo, std::int64_t hi, std::int64_t max_n) {
  const auto idx = torch::nonzero((d.y >= lo) & (d.y <= hi)).squeeze(1).slice(0, 0, max_n);
  return {d.x.index_select(0, idx), d.y.index_select(0, idx)};
}
double accuracy(torch::nn::Sequential& m, const labelled& d) {
  torch::NoGradGuard ng;
  return m->forward(d.x).argmax(1).eq(d.y).to(torch::kDouble).mean().item<double>();
}

}  // namespace

TEST_CASE("Fashion-MNIST: Adan pre-training on classes 0-4 by backprop, MeZO fine-tuning of the head on 5-9", "[.][fashion]") {
  labelled train, test;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    train = load_fashion("train");
    test = load_fashion("t10k");
  } catch (const std::runtime_error& e) {
    std::printf("SKIPPED: Fashion-MNIST not readable (%s); install dataset-fashion-mnist\n", e.what());
    return;
  }
  std::printf("fashion: read in %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  REQUIRE(train.x.size(0) == 60000);
  REQUIRE(test.x.size(0) == 10000);
  torch::manual_seed(3);
  torch::nn::Sequential m(torch::nn::Linear(784, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
  // Subsampled for a test of a few seconds: 10 000 training images per half.
  const auto a_train = classes(train, 0, 4, 10000), b_train = classes(train, 5, 9, 10000);
  const auto a_test = classes(test, 0, 4, 5000), b_test = classes(test, 5, 9, 5000);
  {
    sl::Adan opt(*m, {.lr = 3e-3, .weight_decay = 0.02});
    for (int epoch = 0; epoch < 1; ++epoch) {
      for (std::int64_t i = 0; i + 100 <= a_train.x.size(0); i += 100) {
        opt.zero_grad();
        torch::cross_entropy_loss(m->forward(a_train.x.slice(0, i, i + 100)), a_train.y.slice(0, i, i + 100)).backward();
        opt.step();
      }
    }
  }
  const double acc_a = accuracy(m, a_test), before = accuracy(m, b_test);
  // MeZO on the head (650 parameters) through the adapter: forward passes of the whole model only.
  auto head = m->named_parameters();
  sl::tensor_parameters<float> tp(std::vector<sl::tensor_group>{{{head["2.weight"], head["2.bias"]}, {}, {"2.weight", "2.bias"}}});
  stochgrad::mezo<float> mz(tp.params(), {.lr = 3e-2}, {.eps = 1e-3});
  std::int64_t at = 0;
  torch::Tensor bx, by;
  auto loss = [&]() {
    torch::NoGradGuard ng;
    return torch::cross_entropy_loss(m->forward(bx), by).item<double>();
  };
  const int steps = 400;
  for (int k = 0; k < steps; ++k) {
    bx = b_train.x.slice(0, at, at + 128);
    by = b_train.y.slice(0, at, at + 128);
    at = (at + 128 + 128 <= b_train.x.size(0)) ? at + 128 : 0;
    mz.step(loss);
  }
  const double after = accuracy(m, b_test);
  const double n = static_cast<double>(b_test.x.size(0));
  // Margin: four binomial standard errors of the difference of the two test accuracies.
  const double se = std::sqrt(before * (1 - before) / n + after * (1 - after) / n);
  std::printf("fashion: Adan backprop on 0-4: test accuracy %.4f; MeZO (head, %d steps, batch 128) on 5-9: %.4f -> %.4f (SE %.4f)\n",
              acc_a, steps, before, after, se);
  CHECK(acc_a > 0.8);
  CHECK(after - before > 4.0 * se);
}
#endif
