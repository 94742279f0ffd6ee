// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the saved state of a policy-gradient stepper (GRPO, two PPO iterations).
#include "common.hpp"
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::vector<float> x(23, 0.1f);
  auto s = sgfuzz::make_pg(x);
  sgfuzz::load_or_refuse(s, data, size);
  return 0;
}
