// SPDX-License-Identifier: Apache-2.0
// Saved state names everything the trajectory depends on: a checkpoint made by one composition is
// refused by a stepper that differs in exactly one trajectory-shaping policy (generator, direction,
// perturbation schedule, mask, optimizer and its learning-rate schedule, loss), with state_error, and
// the refusing stepper is left exactly as it was (same saved bytes, steps and parameters).
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/bitwise.hpp"
#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

template <class S>
std::string saved(const S& s) {
  std::ostringstream os;
  s.save(os);
  return os.str();
}

double sphere(std::span<const double> v) {
  double s = 0;
  for (double e : v) s += e * e;
  return s;
}

// Builds stepper A and stepper B on their own parameters, steps both with `advance`, then checks
// that A's checkpoint loads into a fresh A but is refused by B with B untouched.
template <class A, class B, class Advance>
void check_refused(const char* what, Advance advance) {
  INFO(what);
  std::vector<double> xa(24, 0.5), xb(24, 0.5);
  A a(xa);
  B b(xb);
  advance(a);
  advance(b);
  const std::string from_a = saved(a);

  std::vector<double> xc = xa;
  A c(xc);
  std::istringstream ok(from_a);
  REQUIRE_NOTHROW(c.load(ok));  // control: the checkpoint itself is sound
  CHECK(saved(c) == from_a);

  const std::string before = saved(b);
  const auto steps = b.steps();
  const std::vector<double> params = xb;
  std::istringstream is(from_a);
  REQUIRE_THROWS_AS(b.load(is), sg::state_error);
  CHECK(saved(b) == before);
  CHECK(b.steps() == steps);
  CHECK(sgtest::same_bits(params, xb));
}

template <class Dir, class Sched = sg::constant_schedule, class Mask = sg::zo::no_mask,
          class Gen = sg::default_generator, class Opt = sg::optim::sgd<>>
using zo_stepper = sg::stepper<sg::zo::two_point<Dir, Sched, Mask, Gen>, sg::no_baseline, sg::no_normalizer, Opt, double>;

}  // namespace

TEST_CASE("a checkpoint is refused by a stepper that differs in one trajectory-shaping policy", "[stepper][state]") {
  const auto zo_steps = [](auto& s) {
    for (int k = 0; k < 3; ++k) s.step(sphere);
  };
  using base = zo_stepper<sg::gaussian>;
  check_refused<base, zo_stepper<sg::gaussian, sg::constant_schedule, sg::zo::no_mask, sg::philox<10>>>(
      "generator philox_icdf<7> vs philox<10>", zo_steps);
  check_refused<base, zo_stepper<sg::rademacher>>("direction gaussian vs rademacher", zo_steps);
  check_refused<base, zo_stepper<sg::gaussian, sg::zo::spall_perturbation>>("perturbation schedule", zo_steps);
  check_refused<base, zo_stepper<sg::gaussian, sg::constant_schedule, sg::zo::magnitude_mask>>("mask", zo_steps);
  check_refused<base, zo_stepper<sg::gaussian, sg::constant_schedule, sg::zo::no_mask, sg::default_generator,
                                 sg::optim::sgd<sg::spall_gain>>>("learning-rate schedule", zo_steps);

  const auto fo_steps = [](auto& s) {
    std::vector<double> g(24, 0.25);
    for (int k = 0; k < 3; ++k) s.step(std::span<const double>(g));
  };
  using adan_const = sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, sg::optim::adan<>, double>;
  using adan_cos =
      sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, sg::optim::adan<sg::cosine_schedule>, double>;
  check_refused<adan_const, adan_cos>("optimizer schedule constant vs cosine", fo_steps);
  using adam_plain = sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, sg::optim::adam<>, double>;
  using adamw_plain = sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, sg::optim::adamw<>, double>;
  check_refused<adam_plain, adamw_plain>("adam vs adamw", fo_steps);
}

TEST_CASE("policy-gradient checkpoints name their loss", "[stepper][state]") {
  // The loss is part of the estimator's name: GRPO's clipped surrogate, RLOO's sequence loss and
  // CISPO's unified estimator give three different kinds with the same outcome policies.
  using grpo_like = sg::stepper<sg::score_function<>, sg::group_mean, sg::no_normalizer, sg::optim::adam<>, double>;
  using rloo_like =
      sg::stepper<sg::score_function<sg::rloo_loss>, sg::group_mean, sg::no_normalizer, sg::optim::adam<>, double>;
  using cispo_like =
      sg::stepper<sg::score_function<sg::cispo_estimator>, sg::group_mean, sg::no_normalizer, sg::optim::adam<>, double>;
  CHECK(grpo_like::kind() != rloo_like::kind());
  CHECK(grpo_like::kind() != cispo_like::kind());
  CHECK(rloo_like::kind() != cispo_like::kind());
  const auto nothing = [](auto&) {};
  check_refused<grpo_like, rloo_like>("clipped surrogate vs rloo loss", nothing);
  check_refused<grpo_like, cispo_like>("clipped surrogate vs CISPO", nothing);
}

TEST_CASE("kind() spells out the generator and schedules", "[stepper][state]") {
  CHECK(zo_stepper<sg::gaussian, sg::constant_schedule, sg::zo::no_mask, sg::philox<10>>::kind() ==
        "two_point<gaussian,constant,no_mask,philox<10>>/no_baseline/no_normalizer/sgd<constant>/float64");
  CHECK(sg::stepper<sg::first_order, sg::no_baseline, sg::no_normalizer, sg::optim::adamw<sg::cosine_schedule>,
                    float>::kind() == "first_order/no_baseline/no_normalizer/adamw<cosine>/float32");
}
