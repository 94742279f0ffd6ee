// SPDX-License-Identifier: Apache-2.0
// The library's steppers in the shoot-out. Each is a driver<T> (see harness.hpp) plus one
// registration; the harness does the loop, timing, memory, curves and gradient-quality scoring.
//
// Planned entries (issue 6, as the steppers land): adan, mezo, spsa, grpo, bnpo, and the
// compositions mezo+adan, es (SPSA directions + group-mean baseline over q queries), sparse-mezo,
// grpo-adv+sgd. How to add one (example for a zeroth-order preset):
//
//   template <class T>
//   class mezo_driver final : public driver<T> {
//    public:
//     explicit mezo_driver(const run_setup& s)
//         : st_({.lr = s.hp("lr"), .eps = s.hp("eps"), .seed = s.seed}, s.ex) {}
//     void step(std::span<T> x, oracle<T>& f) override {
//       st_.step(x, [&](std::span<const T> p) { return f.loss(p); });
//     }
//     bool estimate(std::span<T> x, oracle<T>& f, std::uint64_t k, std::span<T> g) override {
//       ...  // one estimate g = g_proj * z from the step report, with a seed derived from k
//       return true;
//     }
//    private:
//     stochgrad::mezo<T> st_;
//   };
//
//   r.add_stepper<mezo_driver>({.name = "mezo", .fam = family::zeroth_order,
//                               .description = "stochgrad::mezo (two-point Gaussian x SGD)",
//                               .hyper = {{"*", {{"eps", 1e-3}}}, {"quadratic", {{"lr", 1e-6}}}}});
//
// `applies` restricts a stepper further (e.g. to problems above some dimension); first-order
// steppers are only paired with problems that have an exact gradient, zeroth-order ones with any
// objective problem, policy-gradient ones with reward tasks.
#include "harness.hpp"

namespace harness {

void register_library_steppers(registry& /*r*/) {
  // Library steppers are registered here as they land (see the comment at the top).
}

}  // namespace harness
