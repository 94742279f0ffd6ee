// SPDX-License-Identifier: Apache-2.0
// Identical noise on every ISA (issue 12). Data-parallel zeroth-order training regenerates the
// direction z on every rank from the shared seed; if an AVX2 rank and an AVX-512 rank of one job
// produced different bits, the ranks would silently diverge. This file is compiled several times
// (tests/CMakeLists.txt: test_isa_kat_sse2 with -march=x86-64, i.e. SSE2 and no FMA;
// test_isa_kat_avx2 with -march=x86-64-v3; test_isa_kat_avx512 with -march=x86-64-v4; and
// test_isa_kat, the default -march=native build) and every build must reproduce the same
// known-answer hashes.
//
// What the known answers are: FNV-1a hashes of the exact bits of each generator policy's variates
// (every distribution, float and the exact double widening) over ranges that cross block
// boundaries, start at odd offsets, use 64-bit block numbers (block >> 32 != 0) and 64-bit seeds,
// and hold the rare inversion octaves (|z| > 2.9, one lane in 256). They were recorded once, with
// STOCHGRAD_RECORD_KAT=1, from the scalar reference path (`noise_at`) of main at 0efcb6a on an
// AVX-512 machine, before the AVX2 generator work, so they also show that work changed no bit.
// They pin identity across ISAs and versions; they are not evidence that the variates are good
// (that is tests/rng/statistics.cpp, tests/rng/philox.cpp's Random123 vectors and dieharder).
//
// Each build also checks, without recorded values, that its SIMD paths (one chunk, chunk pairs,
// the range kernels at any offset) give the scalar path's bits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "support/catch.hpp"

#include <stochgrad/bits/kernels/elementwise.hpp>
#include <stochgrad/bits/rng/noise.hpp>

using namespace stochgrad;

namespace {

// The ISA this build targets, for messages.
const char* isa_built() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2+fma";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

// Whether this machine can run code built for that ISA; a build for an ISA the CPU lacks reports
// SKIPPED (never passed) instead of dying on an illegal instruction.
bool cpu_runs_build() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#if defined(__AVX512F__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd");
#elif defined(__AVX2__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
#else
  return true;
#endif
}

struct fnv {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
};

// The ranges hashed: (seed, stream, draw, first element, count).
struct range_spec {
  noise_key key;
  std::uint64_t first;
  std::size_t count;
};
const std::vector<range_spec>& ranges() {
  static const std::vector<range_spec> r = {
      {{0, 0, 0}, 0, 4099},                                      // from element 0, odd length
      {{42, 1, 3}, 13, 70000},                                   // odd start; ~270 rare octaves
      {{0x9E3779B97F4A7C15ull, 7, 0xFFFFFFFFu}, 1000003, 3001},  // 64-bit seed, largest draw
      {{5, 0xFFFFFFFFu, 11}, (std::uint64_t{1} << 34) + 1, 777}, // block >> 32 != 0
  };
  return r;
}

template <class D, class G, class T>
std::vector<T> scalar_range(const range_spec& s) {
  std::vector<T> v(s.count);
  for (std::size_t i = 0; i < s.count; ++i) v[i] = noise_value<D, G, T>(s.key, s.first + i);
  return v;
}

template <class T>
std::uint64_t hash_of(const std::vector<T>& v) {
  fnv f;
  f.add(v.data(), v.size() * sizeof(T));
  return f.h;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Recorded hashes (see the file comment): name "generator/distribution/type" -> hash over ranges().
const std::map<std::string, std::uint64_t>& recorded() {
  static const std::map<std::string, std::uint64_t> r = {
#include "isa/kat_vectors.inc"
  };
  return r;
}

bool recording() {
  const char* v = std::getenv("STOCHGRAD_RECORD_KAT");
  return v != nullptr && *v == '1';
}

template <class D, class G, class T>
void check_one(const std::string& name) {
  fnv all;
  for (const range_spec& s : ranges()) {
    const std::vector<T> ref = scalar_range<D, G, T>(s);
    all.add(ref.data(), ref.size() * sizeof(T));
    // The range kernel (SIMD chunks, chunk pairs and the partial chunks at both ends).
    std::vector<T> simd(s.count);
    if (s.count != 0) detail::generate_range<D, G, T>(simd.data(), 0, s.count, s.key, s.first);
    INFO(name << " on " << isa_built() << ", key (" << s.key.seed << ", " << s.key.stream << ", " << s.key.draw
              << "), first " << s.first);
    CHECK(same_bits(ref, simd));
    // One chunk and a chunk pair at an aligned element, against the scalar values.
    const std::uint64_t e0 = (s.first + 3) & ~std::uint64_t{3};
    xsimd::batch<T> one[simd::chunk_batches<T>], two[2 * simd::chunk_batches<T>];
    noise_chunk<D, G>(s.key, e0, one);
    noise_chunk_pair<D, G>(s.key, e0, two);
    alignas(64) T a[simd::chunk], b[2 * simd::chunk];
    for (std::size_t r = 0; r < simd::chunk_batches<T>; ++r) one[r].store_aligned(a + r * xsimd::batch<T>::size);
    for (std::size_t r = 0; r < 2 * simd::chunk_batches<T>; ++r) two[r].store_aligned(b + r * xsimd::batch<T>::size);
    bool chunk_ok = true, pair_ok = true;
    for (std::size_t i = 0; i < 2 * simd::chunk; ++i) {
      const T want = noise_value<D, G, T>(s.key, e0 + i);
      if (i < simd::chunk && std::memcmp(&a[i], &want, sizeof(T)) != 0) chunk_ok = false;
      if (std::memcmp(&b[i], &want, sizeof(T)) != 0) pair_ok = false;
    }
    CHECK(chunk_ok);
    CHECK(pair_ok);
  }
  if (recording()) {
    std::printf("    {\"%s\", 0x%016llxull},\n", name.c_str(), static_cast<unsigned long long>(all.h));
    return;
  }
  const auto it = recorded().find(name);
  INFO(name << " on " << isa_built());
  REQUIRE(it != recorded().end());
  CHECK(all.h == it->second);
}

template <class G>
void check_generator(const std::string& g) {
  check_one<gaussian, G, float>(g + "/gaussian/float");
  check_one<gaussian, G, double>(g + "/gaussian/double");
  check_one<rademacher, G, float>(g + "/rademacher/float");
  check_one<rademacher, G, double>(g + "/rademacher/double");
  check_one<uniform, G, float>(g + "/uniform/float");
  check_one<segmented_uniform, G, float>(g + "/segmented_uniform/float");
}

}  // namespace

TEST_CASE("noise: identical bits on every ISA (known-answer hashes)", "[isa][rng]") {
  if (!cpu_runs_build()) {
    std::printf("SKIPPED: this CPU cannot run the %s build\n", isa_built());
    return;
  }
  check_generator<philox<10>>("philox<10>");
  check_generator<philox<7>>("philox<7>");
  check_generator<philox_icdf<7>>("philox_icdf<7>");
  check_generator<philox_icdf<10>>("philox_icdf<10>");
}

TEST_CASE("noise: the rare inversion octaves are in the known-answer ranges", "[isa][rng]") {
  // The AVX2 inversion takes a separate path for lanes of octave >= 8 (tail probability below
  // 2^-9, |z| > 2.88); the hashed ranges must contain such lanes or the hashes would not cover it.
  const range_spec& s = ranges()[1];
  std::size_t rare = 0;
  for (std::size_t i = 0; i < s.count; ++i)
    if (std::abs(noise_at<gaussian, philox_icdf<7>>(s.key, s.first + i)) > 2.9f) ++rare;
  // Expected 70000 * P(|z| > 2.9) = 70000 * 0.00373 = 261, standard deviation about 16.
  CHECK(rare > 150);
}
