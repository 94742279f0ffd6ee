// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the saved state of a zeroth-order stepper (MeZO).
#include "common.hpp"
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::vector<float> x(37, 0.5f);
  auto s = sgfuzz::make_zo(x);
  sgfuzz::load_or_refuse(s, data, size);
  return 0;
}
