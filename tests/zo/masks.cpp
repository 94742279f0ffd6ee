// SPDX-License-Identifier: Apache-2.0
// Sparse MeZO's magnitude mask (algorithms.md §7.7, §11): exact thresholds (against std::
// nth_element), exactly k_l entries for distinct magnitudes, ties, a mask computed from the
// unperturbed weights, masked-out coordinates never change (not by weight decay, not by momentum,
// not by Adam), fixed masks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"
#include "zo/zo_support.hpp"

using namespace stochgrad;

namespace {

template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed, bool with_specials) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(noise_at<gaussian>(noise_key{seed, 0, 0}, i));
  if (with_specials && n > 8) {
    x[0] = T(0);
    x[1] = -T(0);
    x[2] = std::numeric_limits<T>::denorm_min();
    x[3] = -std::numeric_limits<T>::infinity();
    x[4] = x[5];  // a tie
    x[6] = -x[7];  // a tie of magnitudes
    x[8] = std::numeric_limits<T>::max();
  }
  return x;
}

bool bit(const std::vector<std::uint64_t>& w, std::size_t off, std::size_t i) { return (w[off + i / 64] >> (i % 64)) & 1u; }

}  // namespace

TEMPLATE_TEST_CASE("k-th smallest magnitude: exact against nth_element", "[zo][mask]", float, double) {
  using T = TestType;
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{13}, std::size_t{1000}, std::size_t{65537}}) {
    const std::vector<T> x = random_values<T>(n, n, true);
    std::vector<T> mags(n);
    for (std::size_t i = 0; i < n; ++i) mags[i] = std::abs(x[i]);
    for (std::size_t k : {std::size_t{1}, n / 3 + 1, n / 2 + 1, n}) {
      if (k > n) continue;
      std::vector<T> m = mags;
      std::nth_element(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(k - 1), m.end());
      const T h = zo::kth_smallest_magnitude<T>(x, k);
      CHECK(zo_test::bits(h) == zo_test::bits(m[k - 1]));
    }
  }
  std::vector<T> one = {T(-3)};
  CHECK(zo::kth_smallest_magnitude<T>(one, 1) == T(3));
  CHECK_THROWS_AS(zo::kth_smallest_magnitude<T>(one, 2), invalid_argument);
  CHECK_THROWS_AS(zo::kth_smallest_magnitude<T>(one, 0), invalid_argument);
}

TEMPLATE_TEST_CASE("masks select exactly k_l entries per tensor when magnitudes are distinct; ties select all", "[zo][mask]",
                   float, double) {
  using T = TestType;
  const std::vector<std::size_t> sizes = {1, 2, 7, 64, 1000, 130};
  for (double sparsity : {0.0, 0.5, 0.75, 0.99}) {
    std::vector<std::vector<T>> data;
    parameters<T> p;
    for (std::size_t t = 0; t < sizes.size(); ++t) data.push_back(random_values<T>(sizes[t], 100 + t, false));
    for (auto& d : data) p.add(std::span<T>(d));
    const zo::magnitude_mask m{.sparsity = sparsity};
    zo::detail::mask_state<T> st;
    st.init(p, true, false);
    st.compute(p, m);
    std::size_t total = 0;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      std::size_t count = 0, wrong = 0, padding = 0;
      for (std::size_t i = 0; i < sizes[t]; ++i) {
        const bool on = bit(st.words, st.offsets[t], i);
        count += on ? 1 : 0;
        wrong += on != (std::abs(data[t][i]) <= st.thresholds[t]) ? 1 : 0;
      }
      for (std::size_t i = sizes[t]; i % 64 != 0; ++i) padding += bit(st.words, st.offsets[t], i) ? 1 : 0;
      CHECK(wrong == 0);
      CHECK(count == m.kept(sizes[t]));  // Gaussian values: distinct magnitudes
      CHECK(padding == 0);               // padding bits clear
      total += count;
    }
    CHECK(st.selected == total);
  }
  // Ties at the threshold are all selected (deterministic; may exceed k).
  std::vector<T> x = {T(1), T(-1), T(1), T(2), T(3), T(-1), T(5), T(0.5)};
  parameters<T> p{std::span<T>(x)};
  zo::detail::mask_state<T> st;
  st.init(p, true, false);
  st.compute(p, zo::magnitude_mask{.sparsity = 0.75});  // k = 2: h = 1, ties select 1, -1, 1, -1
  CHECK(st.thresholds[0] == T(1));
  CHECK(st.words[0] == 0b10100111u);
  CHECK(st.selected == 5);
}

TEMPLATE_TEST_CASE("masked-out coordinates never change; the mask comes from the unperturbed weights", "[zo][mask]",
                   float, double) {
  using T = TestType;
  const std::size_t n = 777;
  std::vector<T> x = random_values<T>(n, 5, false), y = x, z = x;
  using E = zo::two_point<gaussian, constant_schedule, zo::magnitude_mask>;
  auto check_run = [&](auto& s, std::vector<T>& v) {
    std::vector<T> before(n);
    std::vector<T> seen(n);
    bool first_eval = true;
    auto f = [&](std::span<const T> w) {
      if (first_eval) std::copy(w.begin(), w.end(), seen.begin());  // theta + eps m.*z
      first_eval = false;
      double r = 0;
      for (T e : w) r += static_cast<double>(e) * static_cast<double>(e) * (1.0 + static_cast<double>(e));
      return r;
    };
    for (int k = 0; k < 25; ++k) {
      before = v;
      first_eval = true;
      // The mask expected from the unperturbed weights of this step.
      std::vector<T> mags(n);
      for (std::size_t i = 0; i < n; ++i) mags[i] = std::abs(before[i]);
      const std::size_t kk = s.estimator().mask().kept(n);
      std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(kk - 1), mags.end());
      const T h = mags[kk - 1];
      s.step(f);
      const auto& st = s.est_state().mask;
      CHECK(st.thresholds[0] == h);
      std::size_t changed_outside = 0, perturbed_outside = 0, wrong = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const bool on = std::abs(before[i]) <= h;
        wrong += on != bit(st.words, 0, i) ? 1 : 0;
        if (!on && zo_test::bits(v[i]) != zo_test::bits(before[i])) ++changed_outside;
        if (!on && zo_test::bits(seen[i]) != zo_test::bits(before[i])) ++perturbed_outside;
      }
      CHECK(wrong == 0);
      CHECK(changed_outside == 0);
      CHECK(perturbed_outside == 0);
    }
  };
  SECTION("SGD with momentum and weight decay") {
    stepper<E, no_baseline, no_normalizer, optim::sgd<>, T> s(
        parameters<T>(std::span<T>(x)), optim::sgd<>({.lr = 1e-2, .momentum = 0.9, .weight_decay = 0.1}),
        E({.eps = 1e-3, .seed = 1}, {}, {.sparsity = 0.8}));
    check_run(s, x);
  }
  SECTION("AdamW (decoupled decay)") {
    stepper<E, no_baseline, no_normalizer, optim::adamw<>, T> s(parameters<T>(std::span<T>(y)),
                                                                optim::adamw<>({.lr = 1e-3, .weight_decay = 0.1}),
                                                                E({.eps = 1e-3, .seed = 2}, {}, {.sparsity = 0.5}));
    check_run(s, y);
  }
  SECTION("fixed mask: the selection of the first step is kept") {
    stepper<E, no_baseline, no_normalizer, optim::sgd<>, T> s(parameters<T>(std::span<T>(z)), optim::sgd<>({.lr = 1e-1}),
                                                              E({.eps = 1e-3, .seed = 3}, {}, {.sparsity = 0.9, .dynamic = false}));
    auto f = [](std::span<const T> w) {
      double r = 0;
      for (T e : w) r += static_cast<double>(e) * static_cast<double>(e);
      return r;
    };
    s.step(f);
    const std::vector<std::uint64_t> first = s.est_state().mask.words;
    const std::vector<T> after_first = z;
    for (int k = 0; k < 20; ++k) s.step(f);
    CHECK(s.est_state().mask.words == first);
    std::size_t changed = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!bit(first, 0, i) && zo_test::bits(z[i]) != zo_test::bits(after_first[i])) ++changed;
    }
    CHECK(changed == 0);
  }
}

TEST_CASE("unit-sphere directions inside a fixed mask: unbiased for the masked gradient", "[zo][mask][stats]") {
  // RGE restricted to the selected coordinates S (|S| = k): u uniform on the unit sphere of R^S,
  // ghat = k (u.g) u has E[ghat] = g on S and 0 elsewhere (E[u u'] = I_S / k). Linear f: exact
  // forward differences. Mean over 1e5 estimates within 4 standard errors per coordinate.
  const std::vector<double> c = {0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 0.1, -0.3};
  std::vector<double> x = {0.01, 5.0, -0.02, 3.0, 0.03, -4.0, 0.04, 6.0};  // the 4 small ones are selected
  using E = zo::one_sided<unit_sphere, constant_schedule, zo::magnitude_mask>;
  stepper<E, no_baseline, no_normalizer, optim::sgd<>, double> s(parameters<double>(std::span<double>(x)), optim::sgd<>{},
                                                                 E({.eps = 1e-3, .seed = 21}, {}, {.sparsity = 0.5}));
  auto f = [&](std::span<const double> v) {
    double r = 0;
    for (std::size_t i = 0; i < 8; ++i) r += c[i] * v[i];
    return r;
  };
  const std::size_t n = 100000;
  std::vector<double> g(8), sum(8, 0.0), sum2(8, 0.0);
  for (std::size_t k = 0; k < n; ++k) {
    zo::estimate(s, f, std::span<double>(g));
    for (std::size_t i = 0; i < 8; ++i) {
      sum[i] += g[i];
      sum2[i] += g[i] * g[i];
    }
  }
  CHECK(s.est_state().mask.selected == 4);
  for (std::size_t i = 0; i < 8; ++i) {
    const double mean = sum[i] / n;
    const double se = std::sqrt((sum2[i] - sum[i] * sum[i] / n) / (n - 1) / n);
    const bool selected = std::abs(x[i]) < 1.0;
    if (selected) {
      CHECK(std::abs(mean - c[i]) <= 4 * se);
    } else {
      CHECK(sum2[i] == 0.0);  // never perturbed, never in the estimate
    }
  }
}
