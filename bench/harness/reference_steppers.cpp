// SPDX-License-Identifier: Apache-2.0
// The harness's own reference loops, written from library primitives (kernels only, no library
// stepper): they exercise the pipeline end to end and are the baselines the library steppers are
// compared with. Named `ref-*` everywhere so nobody mistakes them for the library's presets.
#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include "harness.hpp"

#include <fmt/format.h>

#include <cmath>
#include <vector>

namespace harness {
namespace {

/// Plain gradient descent x <- x - lr * grad f(x) with the problem's exact gradient.
template <class T>
class ref_gd final : public driver<T> {
 public:
  explicit ref_gd(const run_setup& s) : lr_(static_cast<T>(s.hp("lr"))), g_(s.dimension), ex_(s.ex) {
    if (!(s.hp("lr") > 0.0)) throw std::invalid_argument(fmt::format("ref-gd: lr = {}, must be > 0", s.hp("lr")));
  }
  void step(std::span<T> x, oracle<T>& f) override {
    f.loss_and_gradient(x, std::span<T>(g_));
    stochgrad::axpy<T>(-lr_, std::span<const T>(g_), x, ex_);
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t /*sample*/, std::span<T> g) override {
    f.loss_and_gradient(x, g);  // the exact gradient: cosine 1, variance 0
    return true;
  }

 private:
  T lr_;
  std::vector<T> g_;
  stochgrad::executor ex_;
};

/// Two-point Gaussian zeroth-order SGD (the MeZO recipe written out with the perturb kernel):
/// z = z(seed, stream 0, draw k); x += eps z; L+ = f(x); x -= 2 eps z; L- = f(x); x += eps z;
/// g_proj = (L+ - L-) / (2 eps); x -= lr g_proj z. The estimate g_proj z has mean grad f + O(eps^2)
/// and second moment ~ (d + 2) |grad f|^2, hence the dimension-scaled step lr = lr_scaled / (d + 2)
/// unless `lr` is given.
template <class T>
class ref_zo_sgd final : public driver<T> {
 public:
  explicit ref_zo_sgd(const run_setup& s) : seed_(s.seed), ex_(s.ex) {
    const double eps = s.hp("eps");
    const double lr = s.hyper.count("lr") ? s.hp("lr") : s.hp("lr_scaled") / (static_cast<double>(s.dimension) + 2.0);
    if (!(eps > 0.0)) throw std::invalid_argument(fmt::format("ref-zo-sgd: eps = {}, must be > 0", eps));
    if (!(lr > 0.0)) throw std::invalid_argument(fmt::format("ref-zo-sgd: lr = {}, must be > 0", lr));
    eps_ = static_cast<T>(eps);
    lr_ = static_cast<T>(lr);
  }
  void step(std::span<T> x, oracle<T>& f) override {
    const stochgrad::noise_key key{seed_, 0, step_++};
    const double pg = projected_gradient(x, f, key);
    stochgrad::perturb<stochgrad::gaussian>(x, static_cast<T>(-static_cast<double>(lr_) * pg), key, 0, ex_);
  }
  bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t sample, std::span<T> g) override {
    // A stream of its own (stream 1), so quality samples never reuse the run's directions.
    const stochgrad::noise_key key{seed_, 1, static_cast<std::uint32_t>(sample)};
    const double pg = projected_gradient(x, f, key);
    stochgrad::generate<stochgrad::gaussian>(g, key, 0, ex_);
    stochgrad::scale(g, static_cast<T>(pg), ex_);
    return true;
  }

 private:
  double projected_gradient(std::span<T> x, oracle<T>& f, const stochgrad::noise_key& key) {
    stochgrad::perturb<stochgrad::gaussian>(x, eps_, key, 0, ex_);
    const double lp = f.loss(x);
    stochgrad::perturb<stochgrad::gaussian>(x, static_cast<T>(-2 * eps_), key, 0, ex_);
    const double lm = f.loss(x);
    stochgrad::perturb<stochgrad::gaussian>(x, eps_, key, 0, ex_);
    return (lp - lm) / (2.0 * static_cast<double>(eps_));
  }

  std::uint64_t seed_;
  std::uint32_t step_ = 0;
  T eps_{}, lr_{};
  stochgrad::executor ex_;
};

}  // namespace

void register_reference_steppers(registry& r) {
  r.add_stepper<ref_gd>({
      .name = "ref-gd",
      .fam = family::first_order,
      .description = "harness reference: plain gradient descent x -= lr grad f(x) (exact gradient, axpy kernel)",
      .reference = true,
      // lr = 1/L on the quadratic (L = 1); below 2/L_max elsewhere (Rosenbrock: Hessian norm
      // ~1e3 near the path; logistic: L < 7.8 for standardised features).
      .hyper = {{"quadratic", {{"lr", 1.0}}},
                {"rosenbrock", {{"lr", 1e-3}}},
                {"logreg", {{"lr", 0.25}}},
                {"fmnist-softmax", {{"lr", 0.25}}},  // as logreg (not swept on Fashion-MNIST)
                {"mlp", {{"lr", 0.5}}},
                {"fmnist-mlp", {{"lr", 0.5}}}},  // fmnist: as mlp (not swept)
  });
  r.add_stepper<ref_zo_sgd>({
      .name = "ref-zo-sgd",
      .fam = family::zeroth_order,
      .description = "harness reference: two-point Gaussian ZO-SGD from stochgrad::perturb (+eps, -2eps, +eps, "
                     "-lr g z), lr = lr_scaled / (d + 2)",
      .reference = true,
      // The library's mezo is the same algorithm: the same values (reasons in library_steppers.cpp).
      .hyper = {{"*", {{"eps", 1e-3}}},
                {"quadratic", {{"lr_scaled", 4.0}}},
                {"rosenbrock", {{"lr_scaled", 1e-3}}},
                {"rosenbrock-2", {{"lr_scaled", 2e-3}}},
                {"logreg", {{"lr_scaled", 4.0}}},
                {"fmnist-softmax", {{"lr_scaled", 4.0}}},  // as logreg (not swept on Fashion-MNIST)
                {"mlp", {{"lr_scaled", 32.0}}},
                {"fmnist-mlp", {{"lr_scaled", 32.0}}}},  // fmnist: as mlp (not swept)
  });
}

}  // namespace harness
