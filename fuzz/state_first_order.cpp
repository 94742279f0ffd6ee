// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the saved state of a first-order stepper (Adan, two tensors in two groups).
#include "common.hpp"
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::vector<double> x(29, 0.25);
  auto s = sgfuzz::make_first_order(x);
  sgfuzz::load_or_refuse(s, data, size);
  return 0;
}
