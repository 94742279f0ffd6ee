// Compositions beyond the presets: the same four policy slots, other choices.
//   mezo+adan : Gaussian two-point directions read lazily by the Adan kernel (no gradient buffer)
//   es        : antithetic evolution strategies = two-point Gaussian over q pairs, group-mean
//               baseline and group-std normalizer over the 2q losses, Adam
//   spsa+adamw: Rademacher directions into AdamW
#include <stochgrad/stochgrad.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <span>
#include <string>
#include <vector>

namespace sg = stochgrad;

template <class Stepper, class F>
void train(Stepper& s, const F& loss, int steps) {
  for (int k = 0; k < steps; ++k) s.step(loss);
}

int main(int argc, char** argv) {
  namespace sp = sg::problems;
  const std::string data = argc > 1 ? argv[1] : STOCHGRAD_DATA_DIR;
  auto split = sp::standardized_split(sp::load_breast_cancer<double>(data + "/breast_cancer.csv"), 0.2, 1);
  const sp::logistic_regression<double> model(split.train, split.test);
  auto loss = [&](std::span<const double> x) { return model.value(x); };
  const std::size_t d = model.dimension();

  using mezo_adan = sg::stepper<sg::zo::two_point<sg::gaussian>, sg::no_baseline, sg::no_normalizer, sg::optim::adan<>, double>;
  using es = sg::stepper<sg::zo::two_point<sg::gaussian>, sg::group_mean, sg::group_std, sg::optim::adam<>, double>;
  using spsa_adamw = sg::stepper<sg::zo::two_point<sg::rademacher>, sg::no_baseline, sg::no_normalizer, sg::optim::adamw<>, double>;

  std::vector<double> a(d, 0.0), b(d, 0.0), c(d, 0.0);
  mezo_adan s1(sg::parameters<double>(std::span<double>(a)), sg::optim::adan<>({.lr = 0.01}),
               sg::zo::two_point<sg::gaussian>({.eps = 1e-3, .seed = 1}));
  es s2(sg::parameters<double>(std::span<double>(b)), sg::optim::adam<>({.lr = 0.01}),
        sg::zo::two_point<sg::gaussian>({.eps = 1e-2, .q = 8, .seed = 2}), sg::group_mean{}, sg::group_std{});
  spsa_adamw s3(sg::parameters<double>(std::span<double>(c)), sg::optim::adamw<>({.lr = 0.01, .weight_decay = 1e-3}),
                sg::zo::two_point<sg::rademacher>({.eps = 1e-3, .seed = 3}));

  train(s1, loss, 2000);
  train(s2, loss, 250);  // 8 pairs per step: the same 4000 loss evaluations
  train(s3, loss, 2000);
  fmt::print("{:<12} {:>10} {:>10}\n", "stepper", "loss", "test acc");
  fmt::print("{:<12} {:>10.4f} {:>10.3f}\n", "mezo+adan", model.value(a), model.test_accuracy(a));
  fmt::print("{:<12} {:>10.4f} {:>10.3f}\n", "es", model.value(b), model.test_accuracy(b));
  fmt::print("{:<12} {:>10.4f} {:>10.3f}\n", "spsa+adamw", model.value(c), model.test_accuracy(c));
  const bool ok = model.test_accuracy(a) > 0.9 && model.test_accuracy(b) > 0.9 && model.test_accuracy(c) > 0.9;
  return ok ? 0 : 1;
}
