// The `mezo` preset: memory-efficient zeroth-order SGD (two forward passes per step, no gradient,
// no stored noise) fine-tunes a logistic-regression classifier on the breast-cancer data.
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <span>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  namespace sp = stochgrad::problems;
  const std::string data = argc > 1 ? argv[1] : STOCHGRAD_DATA_DIR;
  auto split = sp::standardized_split(sp::load_breast_cancer<float>(data + "/breast_cancer.csv"), 0.2, 1);
  const sp::logistic_regression<float> model(split.train, split.test);

  std::vector<float> w(model.dimension(), 0.0f);  // 30 weights + bias
  stochgrad::mezo<float> mezo(stochgrad::parameters<float>(std::span<float>(w)),
                              stochgrad::optim::sgd<>({.lr = 0.05}),                     // MeZO-SGD
                              stochgrad::zo::two_point<stochgrad::gaussian>({.eps = 1e-3, .seed = 7}));
  auto loss = [&](std::span<const float> x) { return model.value(x); };  // forward pass only

  for (int k = 0; k <= 3000; ++k) {
    const auto r = mezo.step(loss);  // perturb +eps, -2 eps, restore+update fused
    if (k % 1000 == 0) fmt::print("step {:4d}  L+ = {:.4f}  projected grad = {:+.4f}\n", k, r.loss_plus, r.projected_gradient);
  }
  fmt::print("train loss {:.4f}, test accuracy {:.3f}\n", model.value(w), model.test_accuracy(w));
  return model.test_accuracy(w) > 0.9 ? 0 : 1;
}
