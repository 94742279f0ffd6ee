// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Exception types thrown by stochgrad and the argument checks that throw them.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

namespace stochgrad {

/// Base of every exception stochgrad throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A hyper-parameter or argument is outside its allowed range. The message names the parameter,
/// the value received and the allowed range.
class invalid_argument : public error {
 public:
  using error::error;
};

/// Two ranges that must have the same length (parameters, gradients, state, rewards ...) do not.
class size_mismatch : public error {
 public:
  using error::error;
};

/// Loading saved state failed: the input is truncated, corrupt, of another version or does not
/// match the object it is loaded into. The object is left untouched.
class state_error : public error {
 public:
  using error::error;
};

/// An objective returned a non-finite value and the caller asked for an exception instead of a
/// skipped step.
class nonfinite_error : public error {
 public:
  using error::error;
};

namespace detail {

inline std::string num_to_string(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

/// Throws invalid_argument "`what`: `name` = value, must be `rule`" unless `ok`.
inline void require(bool ok, const char* what, const char* name, double value, const char* rule) {
  if (!ok) {
    throw invalid_argument(std::string(what) + ": " + name + " = " + num_to_string(value) + ", must be " + rule);
  }
}

/// Throws size_mismatch unless `a == b`.
inline void require_same_size(const char* what, const char* name_a, std::size_t a, const char* name_b,
                              std::size_t b) {
  if (a != b) {
    throw size_mismatch(std::string(what) + ": " + name_a + " has " + std::to_string(a) + " elements but " + name_b +
                        " has " + std::to_string(b));
  }
}

/// `a * b` for sizes given by the caller. @throws invalid_argument naming both sizes when the
/// product does not fit in std::size_t (a wrapped product would pass the size checks after it).
inline std::size_t checked_product(const char* what, const char* name_a, std::size_t a, const char* name_b,
                                   std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) {
    throw invalid_argument(std::string(what) + ": " + name_a + " x " + name_b + " = " + std::to_string(a) + " x " +
                           std::to_string(b) + " overflows std::size_t");
  }
  return a * b;
}

/// Throws invalid_argument when a non-empty range has a null data pointer.
inline void require_data(const char* what, const char* name, const void* data, std::size_t n) {
  if (n != 0 && data == nullptr) {
    throw invalid_argument(std::string(what) + ": " + name + " has null data and length " + std::to_string(n));
  }
}

}  // namespace detail
}  // namespace stochgrad
