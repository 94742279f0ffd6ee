// SPDX-License-Identifier: Apache-2.0
// Counting replacements of every global allocation function, for the "no heap allocation per
// call/step" tests. Include this header in exactly one translation unit of a test program (every
// test program here is one translation unit). `alloc_counter::allocations_of(f)` runs f and
// returns how many allocations happened meanwhile, on any thread (thread-pool workers included).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

// The replacements pair malloc/aligned_alloc with free by design; GCC's -Wmismatched-new-delete
// cannot see that once it inlines them into a new/delete pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace alloc_counter {

/// Allocations since program start (every form of operator new, on every thread).
inline std::atomic<long> count{0};

inline void* allocate(std::size_t n, std::size_t align) {
  count.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t) ? std::malloc(n) : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

inline void* allocate_nothrow(std::size_t n, std::size_t align) noexcept {
  try {
    return allocate(n, align);
  } catch (...) {
    return nullptr;
  }
}

/// Runs f() and returns the number of allocations it made.
template <class F>
long allocations_of(F&& f) {
  const long before = count.load();
  f();
  return count.load() - before;
}

}  // namespace alloc_counter

// Every replaceable form, so that no memory from the runtime's operator new reaches these
// operator deletes (AddressSanitizer checks the pairing).
void* operator new(std::size_t n) { return alloc_counter::allocate(n, 0); }
void* operator new[](std::size_t n) { return alloc_counter::allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return alloc_counter::allocate(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return alloc_counter::allocate(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return alloc_counter::allocate_nothrow(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return alloc_counter::allocate_nothrow(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return alloc_counter::allocate_nothrow(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return alloc_counter::allocate_nothrow(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
