// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the Beta-Thompson sampler's saved state (beta_thompson::load).
#include "common.hpp"
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto sel = sgfuzz::make_sampler();
  sgfuzz::load_or_refuse(sel, data, size);
  return 0;
}
