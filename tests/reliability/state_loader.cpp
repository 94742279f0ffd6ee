// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 1: the state reader bounds every read by the payload end (the 8 checksum bytes are
// not payload) and checks counts against the bytes left before allocating. Crafted inputs with a
// valid (recomputed) checksum must give state_error, never an over-read, length_error or bad_alloc.
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <stochgrad/stochgrad.hpp>

#include "support/catch.hpp"

namespace sg = stochgrad;

namespace {

// Builds a state image: magic, endian marker, `payload`, then the FNV-1a checksum of everything
// before it (so the reader gets past the checksum and the field parser is what is exercised).
std::string image(const std::string& payload) {
  std::string b(sg::detail::state_magic, sizeof sg::detail::state_magic);
  const std::uint32_t e = sg::detail::state_endian;
  b.append(reinterpret_cast<const char*>(&e), 4);
  b += payload;
  const std::uint64_t h = sg::detail::fnv1a64(b.data(), b.size());
  b.append(reinterpret_cast<const char*>(&h), 8);
  return b;
}

std::string head(char kind, const std::string& name) {
  std::string b(1, kind);
  const auto n = static_cast<std::uint16_t>(name.size());
  b.append(reinterpret_cast<const char*>(&n), 2);
  return b + name;
}

template <class T>
std::string raw(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

TEST_CASE("a length field running into the checksum is refused", "[reliability][state]") {
  // The array count is the last 4 payload bytes plus the first 4 checksum bytes: before the fix the
  // count read past the payload end, `end - pos` wrapped and the huge count was allocated/copied.
  for (const char kind : {'f', 'D', 'U'}) {
    std::istringstream is(image(head(kind, "x") + raw<std::uint32_t>(7)));
    sg::state_reader r(is);
    std::vector<float> vf;
    std::vector<double> vd;
    std::vector<std::uint64_t> vu;
    if (kind == 'f') REQUIRE_THROWS_AS(r.field("x", vf), sg::state_error);
    if (kind == 'D') REQUIRE_THROWS_AS(r.field("x", vd), sg::state_error);
    if (kind == 'U') REQUIRE_THROWS_AS(r.field("x", vu), sg::state_error);
  }
  std::istringstream is(image(head('s', "x") + raw<std::uint32_t>(7)));
  sg::state_reader r(is);
  std::string s = "untouched";
  REQUIRE_THROWS_AS(r.field("x", s), sg::state_error);
  CHECK(s == "untouched");
}

TEST_CASE("a scalar read into the checksum is refused", "[reliability][state]") {
  // A 'u' record whose u64 value would be the checksum bytes: the payload ends right after the name.
  std::istringstream is(image(head('u', "x")));
  sg::state_reader r(is);
  std::uint64_t v = 42;
  REQUIRE_THROWS_AS(r.field("x", v), sg::state_error);
  CHECK(v == 42);
}

TEST_CASE("an impossible nested count is refused before allocating", "[reliability][state]") {
  // 2^40 inner vectors declared in a payload of a few dozen bytes: refused, not resized.
  std::istringstream is(image(head('u', "v") + raw<std::uint64_t>(std::uint64_t{1} << 40) + std::string(16, '\0')));
  sg::state_reader r(is);
  std::vector<std::vector<float>> v;
  REQUIRE_THROWS_AS(r.field("v", v), sg::state_error);
  CHECK(v.empty());
}

TEST_CASE("every truncation of a real state with a recomputed checksum gives state_error", "[reliability][state]") {
  std::vector<float> x(6, 0.5f);
  sg::mezo<float> st(x, {.lr = 1e-3}, {.eps = 1e-3});
  auto obj = [](std::span<const float> p) {
    double s = 0;
    for (float v : p) s += double(v) * v;
    return s;
  };
  st.step(obj);
  std::ostringstream os;
  st.save(os);
  const std::string full = os.str();
  const std::string payload = full.substr(12, full.size() - 20);
  std::ostringstream before;
  st.save(before);
  for (std::size_t cut = 0; cut < payload.size(); ++cut) {
    std::istringstream is(image(payload.substr(0, cut)));
    REQUIRE_THROWS_AS(st.load(is), sg::state_error);
  }
  std::ostringstream after;
  st.save(after);
  CHECK(before.str() == after.str());  // refused loads leave the stepper untouched
  std::istringstream ok(full);
  REQUIRE_NOTHROW(st.load(ok));
}

TEST_CASE("a replay log with an impossible entry count is refused before allocating", "[reliability][state][replay]") {
  // Found by the fuzz target replay_log (fuzz/corpus/replay_log/c_huge_count): on main the count
  // 2^40 went straight to entries_.assign() (an 80 TB request, std::bad_alloc / length_error).
  sg::zo::replay_log empty;
  std::ostringstream os;
  empty.save(os);
  std::string payload = os.str().substr(sizeof sg::detail::state_magic + 4);
  payload.resize(payload.size() - 16);  // drop the count (u64 0) and the checksum
  std::istringstream is(image(payload + raw<std::uint64_t>(std::uint64_t{1} << 40)));
  sg::zo::replay_log log;
  REQUIRE_THROWS_AS(log.load(is), sg::state_error);
  CHECK(log.empty());
}
