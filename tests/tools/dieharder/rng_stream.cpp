// SPDX-License-Identifier: Apache-2.0
// Streams raw generator output to stdout for `dieharder -g 200` (stdin_input_raw): 32-bit words,
// native byte order, forever (until the reader closes the pipe) or for --words N words.
//
//   rng_stream [--generator philox10|philox7|default|philox1] [--seed S] [--mode counter|streams]
//              [--words N]
//
// `philox1` (one round, hopeless by design) is the negative control that shows the dieharder
// CTests can fail.
//
// mode counter (default): the words of blocks 0, 1, 2, ... of the noise vector (seed, stream 0,
//   draw 0) in counter order: block b gives out[0..3] of Philox(counter (b, b >> 32, 0, 0), key).
//   This is exactly the bit source behind element 4b + lane of that noise vector.
// mode streams: word 0 of block 0 of streams 0, 1, 2, ... (draw 0), i.e. the same element of
//   consecutive parameter tensors: tests independence across the stream id.
#include <stochgrad/bits/rng/noise.hpp>
#include <stochgrad/bits/rng/philox.hpp>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

template <int Rounds>
int run(std::uint64_t seed, bool streams, std::uint64_t words) {
  const stochgrad::philox_key key{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  constexpr std::size_t buf_words = 1 << 14;
  static std::uint32_t buf[buf_words];
  std::uint64_t emitted = 0, block = 0;
  while (words == 0 || emitted < words) {
    for (std::size_t i = 0; i < buf_words; i += 4, ++block) {
      if (streams) {
        for (std::size_t k = 0; k < 4; ++k) {
          const auto s = static_cast<std::uint32_t>(4 * block + k);
          buf[i + k] = stochgrad::philox4x32<Rounds>({0u, 0u, s, 0u}, key)[0];
        }
      } else {
        const stochgrad::philox_block o = stochgrad::philox4x32<Rounds>(
            {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0u, 0u}, key);
        std::memcpy(buf + i, o.data(), sizeof o);
      }
    }
    std::size_t n = buf_words;
    if (words != 0 && words - emitted < n) n = static_cast<std::size_t>(words - emitted);
    if (std::fwrite(buf, sizeof(std::uint32_t), n, stdout) != n) return 0;  // reader went away
    emitted += n;
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_DFL);  // end quietly when dieharder closes the pipe
  std::string gen = "default", mode = "counter";
  std::uint64_t seed = 42, words = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rng_stream: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--generator") {
      gen = value();
    } else if (a == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 0);
    } else if (a == "--mode") {
      mode = value();
    } else if (a == "--words") {
      words = std::strtoull(value().c_str(), nullptr, 0);
    } else {
      std::fprintf(stderr,
                   "usage: rng_stream [--generator philox10|philox7|default|philox1] [--seed S] [--mode counter|streams] "
                   "[--words N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (mode != "counter" && mode != "streams") {
    std::fprintf(stderr, "rng_stream: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  const bool streams = mode == "streams";
  if (gen == "philox10") return run<10>(seed, streams, words);
  if (gen == "philox7") return run<7>(seed, streams, words);
  if (gen == "default") return run<stochgrad::default_generator::rounds>(seed, streams, words);
  if (gen == "philox1") return run<1>(seed, streams, words);
  std::fprintf(stderr, "rng_stream: unknown generator '%s'\n", gen.c_str());
  return 2;
}
