// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief DGA (Dynamic Gradient Alignment; Fan, Grangier, Ablin, arXiv 2410.02498): online
/// domain-mixture weights from the alignment of domain gradients with a specific-set gradient.
///
/// design/seeds/data.md section 3. Source quality: the paper's abstract and reviews only; no
/// official code. The update is the exponentiated-gradient (mirror-descent-on-the-simplex) step
/// the paper describes, with an exponential moving average; **[UNVERIFIED]**: the constants
/// (step size eta, reweighting period T_r, EMA weight beta), the EMA convention (which side beta
/// weights) and the treatment of Adam. They are options here, with defaults taken from the
/// spec's first worked example (eta = 1, beta = 0, T_r = 1), not from the paper.
///
/// Use, every T_r model steps: compute the alignments \f$W_i = \langle g_i, g_{\text{spe}}\rangle\f$
/// (`alignment`, optionally through `adam_diag`), call `domain_mixture::update(W)`, and sample
/// (or weight) the domains of the next model steps by `weights()`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../kernels/reduce.hpp"
#include "../optim/adam.hpp"
#include "../optim/clip.hpp"
#include "../optim/parameters.hpp"
#include "../optim/source.hpp"
#include "../parallel/thread_pool.hpp"
#include "../rng/noise.hpp"
#include "../stepper/serialize.hpp"

namespace stochgrad::data {

// ---------------------------------------------------------------------------------------------
// Alignments

/// The diagonal preconditioner of one Adam step with frozen moments (section 3.2,
/// `precondition = adam_diag`, **[stochgrad decision]**, in the spirit of LESS):
/// \f$ d = 1 / (\sqrt{\hat v} + \epsilon) \f$ with \f$ \hat v = v / (1 - \beta_2^{t}) \f$ the
/// bias-corrected second moment of the model optimizer (t = the group's step count), computed
/// as the Adam kernel computes its denominator: `madd(sqrt(v), 1 / sqrt(1 - beta2^t), eps)`.
/// Holds a reference to the state, which must outlive it.
template <real_scalar T>
class adam_diag {
 public:
  /// @param state the model optimizer's Adam state (read only)
  /// @param beta2 the optimizer's beta2, in [0, 1)
  /// @param eps   the optimizer's eps, finite and > 0
  /// @throws invalid_argument for beta2 or eps out of range.
  explicit adam_diag(const optim::adam_state<T>& state, double beta2 = 0.999, double eps = 1e-8)
      : s_(state), beta2_(beta2), eps_(eps) {
    stochgrad::detail::require(beta2 >= 0.0 && beta2 < 1.0, "adam_diag", "beta2", beta2, "in [0, 1)");
    stochgrad::detail::require(std::isfinite(eps) && eps > 0.0, "adam_diag", "eps", eps, "finite and > 0");
  }
  /// The moments.
  const optim::adam_state<T>& state() const noexcept { return s_; }
  /// beta2.
  double beta2() const noexcept { return beta2_; }
  /// eps.
  double eps() const noexcept { return eps_; }
  /// `1 / sqrt(1 - beta2^t)` of group g (t = its step count).
  /// @throws state_error when the group has taken no step (no second moment yet).
  double inv_sqrt_bc2(std::size_t g) const {
    const std::uint64_t t = s_.steps[g];
    if (t == 0)
      throw state_error("adam_diag: parameter group " + std::to_string(g) + " has no Adam step yet (v_hat undefined)");
    return 1.0 / std::sqrt(1.0 - std::pow(beta2_, static_cast<double>(t)));
  }

 private:
  const optim::adam_state<T>& s_;
  double beta2_, eps_;
};

namespace detail {

// Sum over the tensors of sum_e a_e b_e [/ den_e], in double, with the fixed leaf/tree order of
// kernels/reduce.hpp (thread-count independent). Each source sees its own copy of the parameter
// registers.
template <real_scalar T, class A, class Bs, bool Pre>
double dot_sources(const parameters<T>& p, const A& a, const Bs& b, const optim::adam_state<T>* st,
                   std::span<const double> ibc, double eps, const executor& ex) {
  double total = 0.0;
  for (std::size_t t = 0; t < p.tensors(); ++t) {
    const T* theta = p.tensor(t).data();
    const std::size_t n = p.tensor(t).size();
    const T ib = Pre ? static_cast<T>(ibc[p.group_of(t)]) : T(1);
    const T ep = static_cast<T>(eps);
    const T* v = Pre ? st->exp_avg_sq[t].data() : nullptr;
    auto leaf = [&](std::size_t lo, std::size_t hi) {
      using B = xsimd::batch<T>;
      using Dd = xsimd::batch<double>;
      constexpr std::size_t C = simd::chunk, NB = simd::chunk_batches<T>, W = B::size;
      Dd acc(0.0);
      std::size_t i = lo;
      for (; i + C <= hi; i += C) {
        B tha[NB], thb[NB], ga[NB], gb[NB];
        for (std::size_t r = 0; r < NB; ++r) tha[r] = thb[r] = B::load_unaligned(theta + i + r * W);
        a.load_chunk(t, i, tha, ga);
        b.load_chunk(t, i, thb, gb);
        for (std::size_t r = 0; r < NB; ++r) {
          B prod = ga[r] * gb[r];
          if constexpr (Pre)
            prod = prod / simd::madd(optim::detail::vsqrt(B::load_unaligned(v + i + r * W)), B(ib), B(ep));
          if constexpr (std::is_same_v<T, float>) {
            Dd x0, x1;
            stochgrad::detail::widen(prod, x0, x1);
            acc = acc + x0;
            acc = acc + x1;
          } else {
            acc = acc + prod;
          }
        }
      }
      double tail = 0.0;
      for (; i < hi; ++i) {
        T tha = theta[i], thb = theta[i];
        T prod = static_cast<T>(a.at(t, i, tha)) * static_cast<T>(b.at(t, i, thb));
        if constexpr (Pre) prod = prod / simd::madd(optim::detail::vsqrt(v[i]), ib, ep);
        tail += static_cast<double>(prod);
      }
      return simd::reduce_add(acc) + tail;
    };
    total += stochgrad::detail::tree_reduce<double>(ex, n, 0.0, leaf, stochgrad::detail::add_d);
  }
  return total;
}

}  // namespace detail

/// The alignment \f$ W = \langle g_a, g_b \rangle = \sum_t \sum_e g_{a,t,e}\, g_{b,t,e} \f$ of two
/// gradient sources (one pass, nothing materialised): e.g. a domain gradient and the
/// specific-set gradient. Products in the parameter type, sums in double, in the fixed leaf/tree
/// order of kernels/reduce.hpp (the same bits for any thread count).
/// @throws size_mismatch (or what the sources' checks throw) when a source does not fit `p`.
template <real_scalar T, class A, class Bs>
double alignment(const parameters<T>& p, const A& a, const Bs& b, const executor& ex = {}) {
  static_assert(gradient_source<A, T> && gradient_source<Bs, T>, "alignment: A and B must be gradient sources for T");
  a.check(p);
  b.check(p);
  return detail::dot_sources<T, A, Bs, false>(p, a, b, nullptr, {}, 0.0, ex);
}

/// The Adam-preconditioned alignment \f$ W = \sum_t \sum_e g_{a,t,e}\, g_{b,t,e} / (\sqrt{\hat v_{t,e}} + \epsilon) \f$
/// (section 3.2, `precondition = adam_diag`): \f$ g_a \f$ multiplied by the preconditioner of
/// `adam_diag` before the dot product. Same order of operations as `alignment`, the product
/// divided by the denominator in the parameter type.
/// @throws state_error when the Adam state does not fit `p` or a group has no step yet;
///         size_mismatch from the sources' checks.
template <real_scalar T, class A, class Bs>
double alignment(const parameters<T>& p, const A& a, const Bs& b, const adam_diag<T>& pre, const executor& ex = {}) {
  static_assert(gradient_source<A, T> && gradient_source<Bs, T>, "alignment: A and B must be gradient sources for T");
  a.check(p);
  b.check(p);
  pre.state().check(p);
  std::vector<double> ibc(p.groups());
  for (std::size_t g = 0; g < p.groups(); ++g) ibc[g] = pre.inv_sqrt_bc2(g);
  return detail::dot_sources<T, A, Bs, true>(p, a, b, &pre.state(), ibc, pre.eps(), ex);
}

// ---------------------------------------------------------------------------------------------
// The mixture

/// Options of `domain_mixture`. **[UNVERIFIED]** constants: the paper's values were not
/// retrievable (design/seeds/data.md sections 3.2, 8.1); the defaults are the spec's first worked
/// example, not the authors'.
struct domain_mixture_options {
  double eta = 1.0;  ///< step size of the exponentiated-gradient step, finite and > 0 [UNVERIFIED default]
  double beta =
      0.0;  ///< EMA weight of the previous mixture, in [0, 1); 0 disables the EMA [UNVERIFIED default and convention]
  std::uint64_t period = 1;  ///< reweighting period T_r in model steps (see `due`), >= 1 [UNVERIFIED default]
  double floor = 1e-300;     ///< smallest weight kept after the step (underflow guard, then renormalised), in (0, 1/k]
};

/// The saved part of a `domain_mixture`: a plain aggregate.
struct domain_mixture_state {
  std::vector<double> alpha;   ///< current weights (a point of the simplex)
  std::vector<double> alpha0;  ///< initial weights
  std::uint64_t updates = 0;   ///< updates applied so far

  /// Saves/loads the fields (format: stepper/serialize.hpp).
  template <class Ar>
  void serialize(Ar& ar) {
    ar.field("dga.alpha", alpha);
    ar.field("dga.alpha0", alpha0);
    ar.field("dga.updates", updates);
  }
};

/// Online domain-mixture weights by gradient alignment (DGA, design/seeds/data.md section 3.2).
/// With alignments \f$W_i = \langle g_i, g_{\text{spe}}\rangle\f$ of the k domain gradients with the
/// specific-set gradient (`alignment`), one update is
/// \f[ \hat\alpha_i = \frac{\alpha_i\, e^{\eta W_i}}{\sum_j \alpha_j\, e^{\eta W_j}}, \qquad
///     \alpha \leftarrow (1-\beta)\,\hat\alpha + \beta\,\alpha, \f]
/// then \f$\alpha_i \leftarrow \max(\alpha_i, \text{floor})\f$ and renormalisation when a weight
/// was raised. **[stochgrad decision]** (section 3.2): \f$\hat\alpha\f$ is computed in log space,
/// \f$ l_i = \log\alpha_i + \eta W_i \f$, \f$ \hat\alpha_i = e^{l_i - \max l} / \sum_j e^{l_j - \max l} \f$,
/// so a large \f$\eta W\f$ cannot overflow; beta weights the previous mixture. The whole state is
/// `state()` (weights, initial weights, update count): `save`/`load` (or `serialize` inside a
/// larger archive) resume bit-identically.
class domain_mixture {
 public:
  /// @param alpha0 initial weights, k >= 1 values, finite and > 0 (uniform, or the natural domain
  ///               sizes); normalised to sum 1
  /// @param o      options
  /// @throws invalid_argument for bad options or weights.
  explicit domain_mixture(std::span<const double> alpha0, const domain_mixture_options& o = {}) : o_(o) {
    const char* what = "domain_mixture";
    stochgrad::detail::require(!alpha0.empty(), what, "domains", 0.0, ">= 1");
    stochgrad::detail::require(std::isfinite(o.eta) && o.eta > 0.0, what, "eta", o.eta, "finite and > 0");
    stochgrad::detail::require(o.beta >= 0.0 && o.beta < 1.0, what, "beta", o.beta, "in [0, 1)");
    stochgrad::detail::require(o.period >= 1, what, "period", 0.0, ">= 1");
    stochgrad::detail::require(o.floor > 0.0 && o.floor <= 1.0 / static_cast<double>(alpha0.size()), what, "floor",
                               o.floor, "in (0, 1/k]");
    double sum = 0.0;
    for (double a : alpha0) {
      stochgrad::detail::require(std::isfinite(a) && a > 0.0, what, "alpha0", a, "finite and > 0");
      sum += a;
    }
    stochgrad::detail::require(std::isfinite(sum), what, "sum of alpha0", sum, "finite");
    s_.alpha0.assign(alpha0.begin(), alpha0.end());
    for (double& a : s_.alpha0) a /= sum;
    s_.alpha = s_.alpha0;
    lbuf_.resize(alpha0.size());
  }
  /// Uniform initial weights over k domains.
  /// @throws invalid_argument for k = 0 or bad options.
  explicit domain_mixture(std::size_t k, const domain_mixture_options& o = {})
      : domain_mixture(std::vector<double>(k, 1.0), o) {}

  /// Number of domains k.
  std::size_t domains() const noexcept { return s_.alpha.size(); }
  /// The current weights alpha (sum 1).
  std::span<const double> weights() const noexcept { return s_.alpha; }
  /// The initial weights (normalised).
  std::span<const double> initial_weights() const noexcept { return s_.alpha0; }
  /// Updates applied so far.
  std::uint64_t updates() const noexcept { return s_.updates; }
  /// The options.
  const domain_mixture_options& options() const noexcept { return o_; }
  /// The whole saved state.
  const domain_mixture_state& state() const noexcept { return s_; }
  /// Whether model step `step` (from 0) is a reweighting step: `step % period == 0`.
  bool due(std::uint64_t step) const noexcept { return step % o_.period == 0; }

  /// One update from the alignments (the formula above).
  /// @param w k alignments \f$W_i\f$
  /// @returns the new weights.
  /// @throws size_mismatch unless `w` has k values; nonfinite_error for a non-finite alignment.
  ///         The mixture is unchanged when it throws.
  std::span<const double> update(std::span<const double> w) {
    const std::size_t k = s_.alpha.size();
    stochgrad::detail::require_same_size("domain_mixture::update", "alignments", w.size(), "domains", k);
    for (std::size_t i = 0; i < k; ++i) {
      if (!std::isfinite(w[i])) {
        throw nonfinite_error("domain_mixture::update: alignment " + std::to_string(i) + " is not finite");
      }
    }
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < k; ++i) {
      lbuf_[i] = std::log(s_.alpha[i]) + o_.eta * w[i];
      mx = std::max(mx, lbuf_[i]);
    }
    if (!std::isfinite(mx)) throw nonfinite_error("domain_mixture::update: eta * W overflows");
    double z = 0.0;
    for (std::size_t i = 0; i < k; ++i) {
      lbuf_[i] = std::exp(lbuf_[i] - mx);
      z += lbuf_[i];
    }
    // Nothing above wrote the state; from here on nothing throws.
    bool raised = false;
    for (std::size_t i = 0; i < k; ++i) {
      const double hat = lbuf_[i] / z;
      double a = (1.0 - o_.beta) * hat + o_.beta * s_.alpha[i];
      if (!(a >= o_.floor)) {
        a = o_.floor;
        raised = true;
      }
      s_.alpha[i] = a;
    }
    if (raised) {
      double sum = 0.0;
      for (double a : s_.alpha) sum += a;
      for (double& a : s_.alpha) a /= sum;
    }
    ++s_.updates;
    return s_.alpha;
  }

  /// Back to the initial weights, update count 0.
  void reset() noexcept {
    s_.alpha = s_.alpha0;
    s_.updates = 0;
  }

  /// Saves/loads the state inside a larger archive (stepper/serialize.hpp), with the options as
  /// fields that loading compares: loading into a mixture of other options, or another number of
  /// domains, or weights that are not a point of the simplex, throws state_error and leaves the
  /// mixture unchanged. Call `finish()` on the reader afterwards as usual.
  template <class Ar>
  void serialize(Ar& ar) {
    domain_mixture_state img = s_;
    double eta = o_.eta, beta = o_.beta, fl = o_.floor;
    std::uint64_t period = o_.period;
    ar.field("dga.eta", eta);
    ar.field("dga.beta", beta);
    ar.field("dga.period", period);
    ar.field("dga.floor", fl);
    img.serialize(ar);
    if constexpr (Ar::loading) {
      if (eta != o_.eta || beta != o_.beta || period != o_.period || fl != o_.floor) {
        throw state_error("domain_mixture::load: the state was saved with other options (eta, beta, period, floor)");
      }
      validate_image(img);
      s_ = std::move(img);
    }
  }

  /// Writes the state (the saved-state format of stepper/serialize.hpp).
  /// @throws state_error if the stream fails.
  void save(std::ostream& os) const {
    state_writer w;
    auto* self = const_cast<domain_mixture*>(this);  // serialize() is shared with loading; saving modifies nothing
    self->serialize(w);
    w.finish(os);
  }

  /// Restores what `save` wrote; updates then continue bit-identically.
  /// @throws state_error for truncated or corrupt input, other options, another number of domains
  ///         or weights off the simplex; the mixture is then unchanged.
  void load(std::istream& is) {
    state_reader r(is);
    domain_mixture copy = *this;
    copy.serialize(r);
    r.finish();
    s_ = std::move(copy.s_);
  }

 private:
  void validate_image(const domain_mixture_state& img) const {
    const std::size_t k = s_.alpha.size();
    if (img.alpha.size() != k || img.alpha0.size() != k) {
      throw state_error("domain_mixture::load: state of " + std::to_string(img.alpha.size()) +
                        " domains cannot be loaded into a mixture of " + std::to_string(k));
    }
    for (const auto* v : {&img.alpha, &img.alpha0}) {
      double sum = 0.0;
      for (double a : *v) {
        if (!(std::isfinite(a) && a > 0.0))
          throw state_error("domain_mixture::load: a saved weight is not finite and > 0");
        sum += a;
      }
      if (std::abs(sum - 1.0) > 1e-9) throw state_error("domain_mixture::load: saved weights do not sum to 1");
    }
  }

  domain_mixture_options o_;
  domain_mixture_state s_;
  std::vector<double> lbuf_;  // workspace (not saved)
};

}  // namespace stochgrad::data
