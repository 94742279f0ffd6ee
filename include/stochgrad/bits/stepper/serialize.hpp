// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief The saved-state format: a versioned, checksummed binary archive of named fields.
///
/// Layout (all integers little-endian, as written by a little-endian host; other hosts refuse):
/// ```
/// "SGSTATE1"                      8 bytes magic (the digit is the format version)
/// u32 endian marker 0x01020304
/// records, each:  u8 kind | u16 name length | name bytes | payload
///     kind 'u': u64          kind 'd': f64          kind 's': u64 length + bytes
///     kind 'f': u64 count + f32 array                kind 'D': u64 count + f64 array
///     kind 'U': u64 count + u64 array
/// u64 FNV-1a 64 checksum of every byte before it
/// ```
/// Components describe themselves once, with `template <class Ar> void serialize(Ar& ar)` calling
/// `ar.field("name", member)`; the same function saves and loads. Loading checks the magic,
/// version, checksum, each field's name, kind and (for arrays) any expected length, and throws
/// state_error with a message naming the first problem.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <istream>
#include <iterator>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "../error.hpp"

namespace stochgrad {

namespace detail {
inline constexpr char state_magic[8] = {'S', 'G', 'S', 'T', 'A', 'T', 'E', '1'};
inline constexpr std::uint32_t state_endian = 0x01020304u;

inline std::uint64_t fnv1a64(const char* p, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}
}  // namespace detail

/// Writes fields into a buffer; `finish(os)` appends the checksum and writes it out.
class state_writer {
 public:
  /// False: `serialize(ar)` is saving (components may test `Ar::loading` to, e.g., resize on load).
  static constexpr bool loading = false;

  /// An archive holding only the magic "SGSTATE1" and the endian marker.
  state_writer() {
    buf_.append(detail::state_magic, sizeof detail::state_magic);
    put(detail::state_endian);
  }

  /// Appends a record of kind 'u' named `name` holding `v` (the reference is not modified).
  void field(const char* name, std::uint64_t& v) { head('u', name), put(v); }
  /// Appends a record of kind 'd' holding the f64 bits of `v` (NaN and infinities round-trip).
  void field(const char* name, double& v) { head('d', name), put(v); }
  /// Appends `v` as a 'u' record holding 0 or 1.
  void field(const char* name, bool& v) {
    std::uint64_t u = v ? 1 : 0;
    field(name, u);
  }
  /// Appends a record of kind 's': the byte length, then the bytes of `s`.
  void field(const char* name, std::string& s) {
    head('s', name);
    put(static_cast<std::uint64_t>(s.size()));
    buf_.append(s);
  }
  /// Appends a record of kind 'f': the element count, then the f32 array.
  void field(const char* name, std::vector<float>& v) { array('f', name, v); }
  /// Appends a record of kind 'D': the element count, then the f64 array.
  void field(const char* name, std::vector<double>& v) { array('D', name, v); }
  /// Appends a record of kind 'U': the element count, then the u64 array.
  void field(const char* name, std::vector<std::uint64_t>& v) { array('U', name, v); }
  /// A vector of vectors: a count, then each element as its own field.
  template <class T>
  void field(const char* name, std::vector<std::vector<T>>& v) {
    std::uint64_t n = v.size();
    field(name, n);
    for (auto& x : v) field(name, x);
  }

  /// Appends the checksum and writes everything to `os`.
  /// @throws state_error if the stream fails.
  void finish(std::ostream& os) {
    const std::uint64_t h = detail::fnv1a64(buf_.data(), buf_.size());
    put(h);
    os.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    if (!os) throw state_error("save: writing the state failed");
  }

 private:
  template <class T>
  void put(const T& v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    buf_.append(b, sizeof(T));
  }
  void head(char kind, const char* name) {
    buf_.push_back(kind);
    const auto n = static_cast<std::uint16_t>(std::strlen(name));
    put(n);
    buf_.append(name, n);
  }
  template <class T>
  void array(char kind, const char* name, std::vector<T>& v) {
    head(kind, name);
    put(static_cast<std::uint64_t>(v.size()));
    if (!v.empty()) buf_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string buf_;
};

/// Reads fields back in the order they were written, into the objects passed to `field`.
class state_reader {
 public:
  /// True: `serialize(ar)` is loading (fields are overwritten with the saved values).
  static constexpr bool loading = true;

  /// Reads the whole stream and verifies magic, endianness and checksum.
  /// @throws state_error for a truncated, corrupt or foreign input.
  explicit state_reader(std::istream& is) {
    // Plain read() loop: GCC 12 reports a false -Wnull-dereference inside istreambuf_iterator.
    char block[4096];
    while (is.read(block, sizeof block) || is.gcount() > 0) buf_.append(block, static_cast<std::size_t>(is.gcount()));
    if (buf_.size() < sizeof detail::state_magic + 4 + 8) throw state_error("load: input too short to be stochgrad state");
    if (std::memcmp(buf_.data(), "SGSTATE", 7) != 0) throw state_error("load: not a stochgrad state (bad magic)");
    if (buf_[7] != detail::state_magic[7]) {
      throw state_error(std::string("load: unsupported state format version '") + buf_[7] + "' (this build reads '1')");
    }
    pos_ = sizeof detail::state_magic;
    end_ = buf_.size() - 8;
    std::uint32_t e = 0;
    get(e);
    if (e != detail::state_endian) throw state_error("load: state written on a host with another byte order");
    std::uint64_t h = 0;
    std::memcpy(&h, buf_.data() + end_, 8);
    if (h != detail::fnv1a64(buf_.data(), end_)) throw state_error("load: checksum mismatch (truncated or corrupt)");
  }

  /// Reads the next record into `v`. @throws state_error unless it is a 'u' record named `name`.
  void field(const char* name, std::uint64_t& v) { head('u', name), get(v); }
  /// Reads the next record into `v`. @throws state_error unless it is a 'd' record named `name`.
  void field(const char* name, double& v) { head('d', name), get(v); }
  /// Reads the next 'u' record into `v`. @throws state_error if it is not named `name` or not 0 / 1.
  void field(const char* name, bool& v) {
    std::uint64_t u = 0;
    field(name, u);
    if (u > 1) throw state_error(std::string("load: field '") + name + "' is not a boolean");
    v = u != 0;
  }
  /// Reads the next record into `s`. @throws state_error unless it is an 's' record named `name`
  /// whose bytes are all present.
  void field(const char* name, std::string& s) {
    head('s', name);
    std::uint64_t n = 0;
    get(n);
    need(n, name);
    s.assign(buf_.data() + pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
  }
  /// Reads the next record into `v`, resized to the saved count.
  /// @throws state_error unless it is an 'f' record named `name` with all its elements present.
  void field(const char* name, std::vector<float>& v) { array('f', name, v); }
  /// Reads the next record into `v`, resized to the saved count.
  /// @throws state_error unless it is a 'D' record named `name` with all its elements present.
  void field(const char* name, std::vector<double>& v) { array('D', name, v); }
  /// Reads the next record into `v`, resized to the saved count.
  /// @throws state_error unless it is a 'U' record named `name` with all its elements present.
  void field(const char* name, std::vector<std::uint64_t>& v) { array('U', name, v); }
  /// A vector of vectors: reads the count, resizes `v`, then reads each element as its own field.
  /// @throws state_error for a count the remaining bytes cannot hold, or a bad element record.
  template <class T>
  void field(const char* name, std::vector<std::vector<T>>& v) {
    std::uint64_t n = 0;
    field(name, n);
    // Each element takes at least its record header (kind, name length, name) and a u64 count.
    const std::size_t min_bytes = 3 + std::strlen(name) + 8;
    if (n > (end_ - pos_) / min_bytes) {
      throw state_error(std::string("load: field '") + name + "' has an impossible count");
    }
    v.resize(static_cast<std::size_t>(n));
    for (auto& x : v) field(name, x);
  }

  /// Refuses a count of `n` items of at least `min_bytes` payload bytes each that the bytes left
  /// cannot hold (call before allocating `n` items). @throws state_error naming the field
  void require_count(const char* name, std::uint64_t n, std::size_t min_bytes) const {
    if (min_bytes == 0 || n > (end_ - pos_) / min_bytes) {
      throw state_error(std::string("load: field '") + name + "' has an impossible count");
    }
  }

  /// Throws unless every byte was consumed.
  void finish() const {
    if (pos_ != end_) throw state_error("load: trailing data after the last field (state of another configuration?)");
  }

 private:
  void need(std::uint64_t n, const char* name) const {
    if (n > end_ - pos_) throw state_error(std::string("load: truncated in field '") + name + "'");
  }
  // Every read is bounded by the payload end (the checksum is not payload), so pos_ <= end_ holds
  // throughout and `end_ - pos_` never wraps.
  template <class T>
  void get(T& v) {
    if (sizeof(T) > end_ - pos_) throw state_error("load: truncated");
    std::memcpy(&v, buf_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
  }
  void head(char kind, const char* name) {
    if (3 > end_ - pos_) throw state_error(std::string("load: missing field '") + name + "'");
    const char k = buf_[pos_++];
    std::uint16_t n = 0;
    get(n);
    need(n, name);
    const std::string got(buf_.data() + pos_, n);
    pos_ += n;
    if (got != name || k != kind) {
      throw state_error(std::string("load: expected field '") + name + "' (kind " + kind + ") but found '" + got +
                        "' (kind " + k + "): state of a different stepper or version");
    }
  }
  template <class T>
  void array(char kind, const char* name, std::vector<T>& v) {
    head(kind, name);
    std::uint64_t n = 0;
    get(n);
    if (n > (end_ - pos_) / sizeof(T)) throw state_error(std::string("load: truncated in field '") + name + "'");
    v.resize(static_cast<std::size_t>(n));
    if (n != 0) std::memcpy(v.data(), buf_.data() + pos_, static_cast<std::size_t>(n) * sizeof(T));
    pos_ += static_cast<std::size_t>(n) * sizeof(T);
  }
  std::string buf_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
};

}  // namespace stochgrad
