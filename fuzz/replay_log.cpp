// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: zo::replay_log::load.
#include <stochgrad/stochgrad.hpp>

#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  stochgrad::zo::replay_log log;
  sgfuzz::load_or_refuse(log, data, size);
  return 0;
}
