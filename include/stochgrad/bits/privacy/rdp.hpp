// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Rényi-DP accountant of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar,
/// Zhang 2019, arXiv 1908.10530, section 3.3), with Opacus's order grid, its RDP -> (eps, delta)
/// conversion (Balle et al. 2020, Thm 21) and its noise calibration.
///
/// design/seeds/data.md section 5.2 (opacus/accountants/analysis/rdp.py, a port of TensorFlow
/// Privacy's rdp_accountant.py; opacus/accountants/rdp.py; opacus/accountants/utils.py):
/// \f[ A_\alpha = \mathbb E_{x\sim N(0,z^2)}\Big[\big((1-q) + q\,e^{(2x-1)/(2z^2)}\big)^\alpha\Big],\qquad
///     \mathrm{RDP}(\alpha) = \frac{\log A_\alpha}{\alpha - 1}, \f]
/// evaluated for integer orders by the binomial sum
/// \f$A_\alpha = \sum_{i=0}^{\alpha}\binom{\alpha}{i} q^i (1-q)^{\alpha-i} e^{(i^2-i)/(2z^2)}\f$ and for
/// fractional orders by the two-sided erfc series about \f$z_0 = z^2\log(1/q-1) + 1/2\f$ (stopped
/// when both log-terms are below -30). Special cases: q = 0 gives RDP 0, z = 0 gives +inf, q = 1
/// gives \f$\alpha/(2z^2)\f$. Composition over steps (and phases) adds RDP; the conversion is
/// \f[ \varepsilon = \min_\alpha\ \mathrm{RDP}(\alpha) - \frac{\log\delta + \log\alpha}{\alpha-1}
///     + \log\frac{\alpha-1}{\alpha}. \f]
/// Differences from the reference: the reference's `log_erfc` goes through scipy's `log_ndtr`;
/// here it is `log(erfc(x))` for x < 20 and the asymptotic series beyond (relative error below
/// 1e-15 either way). The fractional series is capped at 100000 terms (error if it has not
/// converged; the reference loops on).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "../error.hpp"

namespace stochgrad::privacy {

/// Opacus's DEFAULT_ALPHAS: `1 + x/10` for x = 1..99 (computed as `1 + x / 10.0`), then 12..63.
inline std::vector<double> default_orders() {
  std::vector<double> a;
  a.reserve(99 + 52);
  for (int x = 1; x < 100; ++x) a.push_back(1.0 + static_cast<double>(x) / 10.0);
  for (int x = 12; x < 64; ++x) a.push_back(static_cast<double>(x));
  return a;
}

namespace detail {

inline constexpr double neg_inf = -std::numeric_limits<double>::infinity();

/// log(exp(x) + exp(y)).
inline double log_add(double x, double y) noexcept {
  const double a = std::min(x, y), b = std::max(x, y);
  if (a == neg_inf) return b;
  return std::log1p(std::exp(a - b)) + b;
}

/// log(exp(x) - exp(y)) for x >= y.
inline double log_sub(double x, double y) {
  if (x < y) throw error("subsampled_gaussian_rdp: the fractional series went negative (log_sub)");
  if (y == neg_inf) return x;
  if (x == y) return neg_inf;
  const double d = std::expm1(x - y);
  if (!std::isfinite(d)) return x;
  return std::log(d) + y;
}

/// log(erfc(x)) without underflow: direct for x < 20, else
/// \f$-x^2 - \log x - \tfrac12\log\pi + \log(1 + \sum_k (-1)^k (2k-1)!!/(2x^2)^k)\f$ (7 terms).
inline double log_erfc(double x) noexcept {
  if (x < 20.0) return std::log(std::erfc(x));
  const double r = 1.0 / (2.0 * x * x);
  double term = 1.0, sum = 0.0;
  for (int k = 1; k <= 7; ++k) {
    term *= -static_cast<double>(2 * k - 1) * r;
    sum += term;
  }
  return -x * x - std::log(x) - 0.5 * std::log(std::numbers::pi) + std::log1p(sum);
}

/// log A_alpha for integer alpha (binomial sum).
inline double log_a_int(double q, double sigma, int alpha) noexcept {
  double log_a = neg_inf, binom = 1.0;
  const double two_s2 = 2.0 * (sigma * sigma);
  for (int i = 0; i <= alpha; ++i) {
    if (i > 0) binom = binom * static_cast<double>(alpha - i + 1) / static_cast<double>(i);
    const double fi = static_cast<double>(i);
    const double log_coef = std::log(binom) + fi * std::log(q) + static_cast<double>(alpha - i) * std::log(1.0 - q);
    const double s = log_coef + (fi * fi - fi) / two_s2;
    log_a = log_add(log_a, s);
  }
  return log_a;
}

/// log A_alpha for fractional alpha (the two-sided erfc series about z0).
inline double log_a_frac(double q, double sigma, double alpha) {
  double log_a0 = neg_inf, log_a1 = neg_inf, coef = 1.0;
  const double z0 = sigma * sigma * std::log(1.0 / q - 1.0) + 0.5;
  const double two_s2 = 2.0 * (sigma * sigma), sq2s = std::sqrt(2.0) * sigma;
  for (int i = 0; i < 100000; ++i) {
    if (i > 0) coef = coef * (alpha - static_cast<double>(i - 1)) / static_cast<double>(i);
    const double log_coef = std::log(std::abs(coef));
    const double fi = static_cast<double>(i), j = alpha - fi;
    const double log_t0 = log_coef + fi * std::log(q) + j * std::log(1.0 - q);
    const double log_t1 = log_coef + j * std::log(q) + fi * std::log(1.0 - q);
    const double log_e0 = std::log(0.5) + log_erfc((fi - z0) / sq2s);
    const double log_e1 = std::log(0.5) + log_erfc((z0 - j) / sq2s);
    const double log_s0 = log_t0 + (fi * fi - fi) / two_s2 + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;
    if (coef > 0) {
      log_a0 = log_add(log_a0, log_s0);
      log_a1 = log_add(log_a1, log_s1);
    } else {
      log_a0 = log_sub(log_a0, log_s0);
      log_a1 = log_sub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30.0) return log_add(log_a0, log_a1);
  }
  throw error("subsampled_gaussian_rdp: the fractional series did not converge in 100000 terms");
}

inline void check_rdp_args(const char* what, double q, double noise_multiplier) {
  stochgrad::detail::require(q >= 0.0 && q <= 1.0, what, "q", q, "in [0, 1]");
  stochgrad::detail::require(noise_multiplier >= 0.0 && std::isfinite(noise_multiplier), what, "noise_multiplier",
                             noise_multiplier, "finite and >= 0 (0: no privacy, RDP = inf)");
}

inline void check_delta(const char* what, double delta) {
  stochgrad::detail::require(delta > 0.0 && delta < 1.0, what, "delta", delta, "in (0, 1)");
}

}  // namespace detail

/// RDP of one step of the subsampled Gaussian mechanism at order `alpha` (formula in the file
/// comment): 0 for q = 0, +inf for noise_multiplier = 0 (q > 0), `alpha / (2 z^2)` for q = 1,
/// +inf for alpha = +inf. An integer-valued alpha takes the binomial sum, any other the series.
/// @param q                sampling rate in [0, 1]
/// @param noise_multiplier z >= 0 (noise std / sensitivity)
/// @param alpha            order > 1
/// @throws invalid_argument for arguments outside those ranges; error if the series fails.
inline double subsampled_gaussian_rdp(double q, double noise_multiplier, double alpha) {
  detail::check_rdp_args("subsampled_gaussian_rdp", q, noise_multiplier);
  stochgrad::detail::require(alpha > 1.0, "subsampled_gaussian_rdp", "alpha", alpha, "> 1");
  if (q == 0.0) return 0.0;
  if (noise_multiplier == 0.0) return std::numeric_limits<double>::infinity();
  if (q == 1.0) return alpha / (2.0 * (noise_multiplier * noise_multiplier));
  if (std::isinf(alpha)) return std::numeric_limits<double>::infinity();
  const double la = (alpha == std::floor(alpha) && alpha < 2147483647.0)
                        ? detail::log_a_int(q, noise_multiplier, static_cast<int>(alpha))
                        : detail::log_a_frac(q, noise_multiplier, alpha);
  return la / (alpha - 1.0);
}

/// RDP after `steps` steps at each order: `steps * subsampled_gaussian_rdp(q, z, orders[j])`.
/// @param q                sampling rate in [0, 1]
/// @param noise_multiplier z >= 0
/// @param steps            number of steps
/// @param orders           orders, each > 1
/// @returns one value per order.
/// @throws invalid_argument as subsampled_gaussian_rdp.
inline std::vector<double> compute_rdp(double q, double noise_multiplier, std::uint64_t steps,
                                       std::span<const double> orders) {
  std::vector<double> r(orders.size());
  for (std::size_t j = 0; j < orders.size(); ++j) {
    r[j] = subsampled_gaussian_rdp(q, noise_multiplier, orders[j]) * static_cast<double>(steps);
  }
  return r;
}

/// An (eps, delta) guarantee and the order that gave it.
struct privacy_spent {
  double epsilon = 0.0;      ///< the smallest eps over the orders (+inf when every order gives +inf)
  double best_order = 0.0;   ///< the minimising order (the first one on ties; NaN if every eps is NaN)
  bool at_boundary = false;  ///< the minimiser is the first or last order (the grid may be too narrow; Opacus warns)
};

/// RDP -> (eps, delta) by Balle et al. 2020 Thm 21, minimised over the orders:
/// \f$\varepsilon_j = \mathrm{rdp}_j - (\log\delta + \log\alpha_j)/(\alpha_j - 1) + \log((\alpha_j-1)/\alpha_j)\f$;
/// NaN entries are ignored (numpy nanargmin).
/// @param orders orders alpha_j > 1
/// @param rdp    total RDP at each order
/// @param delta  in (0, 1)
/// @throws invalid_argument for delta outside (0, 1), no orders or an order <= 1; size_mismatch.
inline privacy_spent privacy_from_rdp(std::span<const double> orders, std::span<const double> rdp, double delta) {
  detail::check_delta("privacy_from_rdp", delta);
  stochgrad::detail::require_same_size("privacy_from_rdp", "orders", orders.size(), "rdp", rdp.size());
  if (orders.empty()) throw invalid_argument("privacy_from_rdp: no orders");
  privacy_spent best{std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(), false};
  std::size_t idx = orders.size();
  for (std::size_t j = 0; j < orders.size(); ++j) {
    const double a = orders[j];
    stochgrad::detail::require(a > 1.0, "privacy_from_rdp", "order", a, "> 1");
    const double e = rdp[j] - (std::log(delta) + std::log(a)) / (a - 1.0) + std::log((a - 1.0) / a);
    if (std::isnan(e)) continue;
    if (idx == orders.size() || e < best.epsilon) {
      best.epsilon = e;
      best.best_order = a;
      idx = j;
    }
  }
  best.at_boundary = idx == 0 || idx + 1 == orders.size();
  return best;
}

/// One phase of training: `steps` steps at sampling rate q and noise multiplier z.
struct rdp_phase {
  double noise_multiplier = 0.0;  ///< z
  double sample_rate = 0.0;       ///< q
  std::uint64_t steps = 0;        ///< number of steps
};

/// The RDP accountant (Opacus `RDPAccountant`): a history of phases; consecutive steps with the
/// same (z, q) merge into one phase. The RDP of the phases adds up.
class rdp_accountant {
 public:
  /// Records `n` steps with noise multiplier z and sampling rate q.
  /// @param noise_multiplier z >= 0, finite
  /// @param sample_rate      q in [0, 1]
  /// @param n                number of steps
  /// @throws invalid_argument for arguments outside those ranges (nothing is recorded).
  void step(double noise_multiplier, double sample_rate, std::uint64_t n = 1) {
    detail::check_rdp_args("rdp_accountant::step", sample_rate, noise_multiplier);
    if (!history_.empty() && history_.back().noise_multiplier == noise_multiplier &&
        history_.back().sample_rate == sample_rate) {
      history_.back().steps += n;
    } else {
      history_.push_back({noise_multiplier, sample_rate, n});
    }
  }
  /// (eps, best order) for `delta` over `orders` (default: default_orders()).
  /// @param delta  in (0, 1)
  /// @param orders orders > 1
  /// @throws invalid_argument for delta outside (0, 1) or a bad order.
  privacy_spent spent(double delta, std::span<const double> orders) const {
    std::vector<double> total(orders.size(), 0.0);
    for (const rdp_phase& ph : history_) {
      const std::vector<double> r = compute_rdp(ph.sample_rate, ph.noise_multiplier, ph.steps, orders);
      for (std::size_t j = 0; j < r.size(); ++j) total[j] += r[j];
    }
    return privacy_from_rdp(orders, total, delta);
  }
  /// (eps, best order) for `delta` over default_orders().
  /// @param delta in (0, 1)
  /// @throws invalid_argument for delta outside (0, 1).
  privacy_spent spent(double delta) const {
    const std::vector<double> o = default_orders();
    return spent(delta, o);
  }
  /// The epsilon spent so far at `delta` (default orders).
  /// @param delta in (0, 1)
  double epsilon(double delta) const { return spent(delta).epsilon; }
  /// The recorded phases.
  std::span<const rdp_phase> history() const noexcept { return history_; }
  /// Replaces the history (e.g. when resuming a run).
  /// @param h the phases (validated; nothing changes on error)
  /// @throws invalid_argument for a phase with q outside [0, 1] or a bad z.
  void set_history(std::vector<rdp_phase> h) {
    for (const rdp_phase& ph : h) detail::check_rdp_args("rdp_accountant::set_history", ph.sample_rate, ph.noise_multiplier);
    history_ = std::move(h);
  }

 private:
  std::vector<rdp_phase> history_;
};

/// Epsilon of `steps` steps at (q, z) for `delta`, default orders.
/// @param q                sampling rate in [0, 1]
/// @param noise_multiplier z >= 0
/// @param steps            number of steps
/// @param delta            in (0, 1)
/// @throws invalid_argument as rdp_accountant.
inline privacy_spent epsilon_spent(double q, double noise_multiplier, std::uint64_t steps, double delta) {
  rdp_accountant acc;
  acc.step(noise_multiplier, q, steps);
  return acc.spent(delta);
}

/// The noise multiplier that spends at most `target_epsilon` (Opacus `get_noise_multiplier`):
/// z_high doubles from 20 until eps(z_high) <= target, then bisection on [0, z_high] until
/// `target - eps(z_high) <= tolerance`; returns z_high (so eps(result) <= target always).
/// **[stochgrad decision]** z_high above 1e6 throws (the budget is too small).
/// @param target_epsilon eps > 0
/// @param delta          in (0, 1)
/// @param q              sampling rate in (0, 1]
/// @param steps          number of steps, > 0
/// @param tolerance      epsilon tolerance > 0 (Opacus default 0.01)
/// @throws invalid_argument for arguments outside those ranges or a budget too small.
inline double noise_multiplier_for(double target_epsilon, double delta, double q, std::uint64_t steps,
                                   double tolerance = 0.01) {
  stochgrad::detail::require(target_epsilon > 0.0 && std::isfinite(target_epsilon), "noise_multiplier_for",
                             "target_epsilon", target_epsilon, "finite and > 0");
  detail::check_delta("noise_multiplier_for", delta);
  stochgrad::detail::require(q > 0.0 && q <= 1.0, "noise_multiplier_for", "q", q, "in (0, 1]");
  stochgrad::detail::require(steps > 0, "noise_multiplier_for", "steps", 0.0, "> 0");
  stochgrad::detail::require(tolerance > 0.0, "noise_multiplier_for", "tolerance", tolerance, "> 0");
  const std::vector<double> orders = default_orders();
  auto eps = [&](double z) {
    const std::vector<double> r = compute_rdp(q, z, steps, orders);
    return privacy_from_rdp(orders, r, delta).epsilon;
  };
  double lo = 0.0, hi = 10.0, eps_hi = std::numeric_limits<double>::infinity();
  while (eps_hi > target_epsilon) {
    hi *= 2.0;
    eps_hi = eps(hi);
    if (hi > 1e6) throw invalid_argument("noise_multiplier_for: the privacy budget is too small (noise multiplier > 1e6)");
  }
  while (target_epsilon - eps_hi > tolerance) {
    const double mid = (lo + hi) / 2.0;
    const double e = eps(mid);
    if (e < target_epsilon) {
      hi = mid;
      eps_hi = e;
    } else {
      lo = mid;
    }
  }
  return hi;
}

}  // namespace stochgrad::privacy
