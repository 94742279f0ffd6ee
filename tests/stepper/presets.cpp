// SPDX-License-Identifier: Apache-2.0
// The presets index (stochgrad/presets.hpp): presets carry their papers' hyper-parameters. The
// expected numbers below are the literals of the papers' released code as the index cites them
// (BlackVIP trainers/blackvip.py + configs, DREAM src/trainer.py, ZO-AE-DS AE_DS_train.py, BNPO
// recipe/bnpo/run.sh, DAPO/GSPO/CISPO/Dr. GRPO papers), typed here, not read back from the library.
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/bitwise.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

// A preset whose policy carries a paper's defaults refuses a partial option list: the fields left
// out would silently take the generic defaults instead of the paper's.
static_assert(!std::is_constructible_v<sg::spsa_gc<float>, std::vector<float>&, sg::optim::sgd_options>);
static_assert(!std::is_constructible_v<sg::spsa_gc<float>, std::vector<float>&, sg::optim::sgd_options,
                                       sg::zo::difference_options>);
static_assert(!std::is_constructible_v<sg::rge<float>, std::vector<float>&, sg::optim::sgd_options,
                                       sg::zo::difference_options>);
// ... but accepts the paper's defaults, or a whole policy object.
static_assert(std::is_constructible_v<sg::spsa_gc<float>, std::vector<float>&>);
static_assert(std::is_constructible_v<sg::spsa_gc<float>, std::vector<float>&, sg::optim::sgd<sg::spall_gain>>);
// Presets without paper defaults keep the short form.
static_assert(std::is_constructible_v<sg::mezo<float>, std::vector<float>&, sg::optim::sgd_options,
                                      sg::zo::difference_options>);

namespace {

using sgtest::same_bits;

// Curvatures in [1, 2): BlackVIP's gains (a = 0.01 with Nesterov 0.9, an effective step of about
// 0.1) are stable here; on curvatures of tens they diverge, as plain SGD would.
double quadratic(std::span<const double> v) {
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += 0.5 * (1.0 + static_cast<double>(i) / static_cast<double>(v.size())) * v[i] * v[i];
  return s;
}

}  // namespace

TEST_CASE("presets default to their papers' hyper-parameters", "[stepper][presets]") {
  std::vector<double> x(16, 1.0);

  SECTION("spsa_gc is BlackVIP's SPSA-GC") {
    sg::spsa_gc<double> s(x);
    const auto& o = s.optimizer().options();
    CHECK(o.lr == 0.01);
    CHECK(o.momentum == 0.9);
    CHECK(o.nesterov);
    CHECK(s.optimizer().schedule().A == 1.0);
    CHECK(s.optimizer().schedule().alpha == 0.4);
    CHECK(s.estimator().options().eps == 0.01);
    CHECK(s.estimator().options().q == 5);
    CHECK(s.estimator().schedule().gamma == 0.1);
  }
  SECTION("gc_spsa is DREAM's GC-SPSA") {
    sg::gc_spsa<double> s(x);
    CHECK(s.estimator().options().eps == 1e-3);
    CHECK(s.estimator().options().q == 4);
    CHECK(s.optimizer().options().lr == 1e-6);
    CHECK(s.optimizer().options().gamma == 1.2);
  }
  SECTION("rge is ZO-AE-DS's RGE") {
    sg::rge<double> s(x);
    CHECK(s.estimator().options().eps == 0.005);
    CHECK(s.estimator().options().q == 192);
  }
  SECTION("bnpo uses BNPO's loss options") {
    sg::bnpo<double> s(x);
    const auto& o = s.estimator().loss().options();
    CHECK(o.eps_low == 0.2);
    CHECK(o.eps_high == 0.28);
    CHECK(o.dual_clip == 10.0);
    CHECK(o.aggregation == sg::loss_aggregation::seq_mean_token_sum);
  }
  SECTION("dr_grpo, dapo, gspo") {
    CHECK(sg::dr_grpo<double>(x).estimator().loss().options().aggregation == sg::loss_aggregation::dr_grpo);
    const auto dapo = sg::dapo<double>(x).estimator().loss().options();
    CHECK(dapo.eps_low == 0.2);
    CHECK(dapo.eps_high == 0.28);
    const auto gspo = sg::gspo<double>(x).estimator().loss().options();
    CHECK(gspo.level == sg::ratio_level::sequence);
    CHECK(gspo.eps_low == 3e-4);
    CHECK(gspo.eps_high == 4e-4);
    CHECK(gspo.aggregation == sg::loss_aggregation::seq_mean_token_mean);
  }
  SECTION("cispo clips only from above, at 1 + 0.28") {
    sg::cispo<double> s(x);
    const auto& mask = s.estimator().loss().mask;
    CHECK(mask.eps_low == 1.0);
    CHECK(mask.eps_high == 0.28);
  }
}

TEST_CASE("a default-constructed preset steps exactly like the composition spelled out", "[stepper][presets]") {
  using explicit_spsa_gc = sg::stepper<sg::zo::two_point<sg::segmented_uniform, sg::zo::spall_perturbation>, sg::no_baseline,
                                       sg::no_normalizer, sg::optim::sgd<sg::spall_gain>, double>;
  std::vector<double> a(40, 1.0), b = a;
  sg::spsa_gc<double> preset(a);
  explicit_spsa_gc spelled(sg::parameters<double>(std::span<double>(b)),
                           sg::optim::sgd<sg::spall_gain>({.lr = 0.01, .momentum = 0.9, .nesterov = true},
                                                          sg::spall_gain{.A = 1.0, .alpha = 0.4}),
                           sg::zo::two_point<sg::segmented_uniform, sg::zo::spall_perturbation>(
                               {.eps = 0.01, .q = 5}, sg::zo::spall_perturbation{.gamma = 0.1}));
  const double f0 = quadratic(a);
  for (int k = 0; k < 20; ++k) {
    preset.step(quadratic);
    spelled.step(quadratic);
  }
  CHECK(same_bits(a, b));
  CHECK(quadratic(a) < f0);  // BlackVIP's gains descend on this problem (it did step)
  // with_defaults changes defaults only: the saved identity is the composition's.
  CHECK(sg::spsa_gc<double>::kind() == explicit_spsa_gc::kind());
}

TEST_CASE("a whole policy object replaces a preset's defaults", "[stepper][presets]") {
  std::vector<double> x(8, 1.0);
  sg::spsa_gc<double> s(x, sg::optim::sgd<sg::spall_gain>({.lr = 0.05}, sg::spall_gain{.A = 3.0}));
  CHECK(s.optimizer().options().lr == 0.05);
  CHECK(s.optimizer().options().momentum == 0.0);  // the object's, not BlackVIP's
  CHECK(s.optimizer().schedule().A == 3.0);
  CHECK(s.estimator().options().q == 5);  // the estimator keeps BlackVIP's
}
