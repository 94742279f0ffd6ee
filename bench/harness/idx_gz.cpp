// SPDX-License-Identifier: Apache-2.0
// The harness's gzip idx loader (Fashion-MNIST ships as .gz files): zlib decompresses, the
// library's parse_idx checks and parses. Built without zlib (STOCHGRAD_HARNESS_ZLIB = 0), the
// Fashion-MNIST problems are skipped with the reason instead.
#include "harness.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#if STOCHGRAD_HARNESS_ZLIB
#include <zlib.h>
#endif

namespace harness {

bool have_zlib() noexcept { return STOCHGRAD_HARNESS_ZLIB != 0; }

stochgrad::problems::idx_array read_idx_gz(const std::string& path, std::size_t dims) {
  namespace sp = stochgrad::problems;
#if STOCHGRAD_HARNESS_ZLIB
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw sp::data_error("idx file '" + path + "': cannot open: " + (errno != 0 ? std::strerror(errno) : "out of memory"));
  }
  gzbuffer(f, 1 << 17);
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint8_t> buf(1 << 17);
  for (;;) {
    const int got = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (got < 0) {
      int code = 0;
      const std::string why = gzerror(f, &code);
      gzclose(f);
      throw sp::data_error("idx file '" + path + "': cannot decompress: " + why);
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), buf.begin(), buf.begin() + got);
  }
  // A gzip stream cut short reads as a short file plus Z_BUF_ERROR at its end.
  int code = 0;
  const std::string why = gzerror(f, &code);
  gzclose(f);
  if (code != Z_OK && code != Z_STREAM_END) {
    throw sp::data_error("idx file '" + path + "': truncated or corrupt gzip stream: " + why);
  }
  return sp::parse_idx(std::span<const std::uint8_t>(bytes), path, dims);
#else
  (void)dims;
  throw sp::data_error("idx file '" + path + "': this harness was built without zlib (install zlib1g-dev)");
#endif
}

}  // namespace harness
