// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief What the ranks compare when a driver attaches to a stepper: 64-bit hashes of the stepper's
/// type, options, shapes, step state and (data parallel) parameter values, exchanged in one
/// allgather, so that ranks built differently fail on every rank with one message instead of
/// hanging or silently diverging.
///
/// Hashed:
/// - kind: `stepper::kind()` (estimator with its directions, schedule, mask and generator;
///   baseline; normalizer; optimizer; element type);
/// - options: the fields of the estimator's and the optimizer's `options()` that stochgrad's
///   policies have (lr, momentum, dampening, nesterov, weight_decay, max_grad_norm,
///   skip_nonfinite, beta1..3, eps, eps_root, no_prox, optax_compat, gamma, mu, q, seed, mode,
///   on_nonfinite, center), plus the caller's `attach_options::salt` for anything else that
///   must agree (a custom policy's parameters, the data pipeline's configuration);
/// - shape: number of tensors and, for data parallel, their sizes;
/// - state: the step counter, the estimator's seed, call counter and pending perturbation, and for
///   data parallel the bytes `stepper::save()` writes (optimizer moments included: a one-time
///   O(N) hash and buffer at attach);
/// - params (data parallel): the bits of every parameter tensor.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../error.hpp"
#include "communicator.hpp"

namespace stochgrad::mpi {

/// Options of a driver's attach step.
struct attach_options {
  /// Mixed into the options hash: set it to a hash of any configuration outside stochgrad's own
  /// options that every rank must share. Ranks with different salts refuse to attach.
  std::uint64_t salt = 0;
};

namespace detail {

/// FNV-1a (64-bit) with a final avalanche (splitmix64's), over bytes and typed values.
class hasher {
 public:
  void bytes(const void* p, std::size_t n) noexcept {
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h_ = (h_ ^ c[i]) * 0x100000001B3ull;
  }
  void word(std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
      h_ = (h_ ^ static_cast<unsigned char>(v >> (8 * i))) * 0x100000001B3ull;
    }
  }
  void text(std::string_view s) noexcept {
    word(s.size());
    bytes(s.data(), s.size());
  }
  template <class V>
  void value(const V& v) noexcept {
    if constexpr (std::is_enum_v<V>) {
      word(static_cast<std::uint64_t>(static_cast<std::underlying_type_t<V>>(v)));
    } else if constexpr (std::is_same_v<V, double>) {
      word(std::bit_cast<std::uint64_t>(v));
    } else if constexpr (std::is_same_v<V, float>) {
      word(std::bit_cast<std::uint32_t>(v));
    } else if constexpr (std::is_integral_v<V>) {
      word(static_cast<std::uint64_t>(v));
    }
  }
  std::uint64_t digest() const noexcept {
    std::uint64_t z = h_ + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t h_ = 0xCBF29CE484222325ull;
};

/// Adds option field `f` of `o` (its name, then its value) to the fingerprint `h`, when `o` has one.
#define STOCHGRAD_MPI_FIELD(f)           \
  if constexpr (requires { o.f; }) {     \
    h.text(#f);                          \
    h.value(o.f);                        \
  }
/// Hashes the option fields stochgrad's policies use (see the file comment), by name.
template <class O>
void hash_options(hasher& h, const O& o) {
  STOCHGRAD_MPI_FIELD(lr)
  STOCHGRAD_MPI_FIELD(momentum)
  STOCHGRAD_MPI_FIELD(dampening)
  STOCHGRAD_MPI_FIELD(nesterov)
  STOCHGRAD_MPI_FIELD(weight_decay)
  STOCHGRAD_MPI_FIELD(max_grad_norm)
  STOCHGRAD_MPI_FIELD(skip_nonfinite)
  STOCHGRAD_MPI_FIELD(beta1)
  STOCHGRAD_MPI_FIELD(beta2)
  STOCHGRAD_MPI_FIELD(beta3)
  STOCHGRAD_MPI_FIELD(eps)
  STOCHGRAD_MPI_FIELD(eps_root)
  STOCHGRAD_MPI_FIELD(no_prox)
  STOCHGRAD_MPI_FIELD(optax_compat)
  STOCHGRAD_MPI_FIELD(gamma)
  STOCHGRAD_MPI_FIELD(mu)
  STOCHGRAD_MPI_FIELD(q)
  STOCHGRAD_MPI_FIELD(seed)
  STOCHGRAD_MPI_FIELD(mode)
  STOCHGRAD_MPI_FIELD(on_nonfinite)
  STOCHGRAD_MPI_FIELD(center)
}
#undef STOCHGRAD_MPI_FIELD

/// What one rank sends when a driver attaches: status of its local arguments and the hashes.
/// Only 64-bit words (no padding bytes travel).
struct attach_record {
  std::uint64_t status = 0;  ///< 0, or an attach_status code for a bad local argument
  std::uint64_t kind = 0;
  std::uint64_t options = 0;
  std::uint64_t shape = 0;
  std::uint64_t state = 0;
  std::uint64_t params = 0;
  std::uint64_t weight = 0;  ///< the rank's shard size (data parallel)
};

/// Codes of attach_record::status and their texts.
enum class attach_status : std::uint64_t {
  ok = 0,
  zero_shard = 1,          ///< data parallel: shard size 0
  offsets_count = 2,       ///< sharded: the direction's offset table does not have one offset per tensor
  global_norm = 3,         ///< sharded: an optimizer option needs the global gradient (clipping, skip_nonfinite)
};

inline const char* attach_status_text(std::uint64_t s) noexcept {
  switch (static_cast<attach_status>(s)) {
    case attach_status::ok:
      return "ok";
    case attach_status::zero_shard:
      return "the shard size is 0 (each rank needs at least one sample; its loss is weighted by its shard size)";
    case attach_status::offsets_count:
      return "the sharded_direction's offset table does not have one global offset per parameter tensor";
    case attach_status::global_norm:
      return "the optimizer clips by the global gradient norm or skips on a non-finite gradient element "
             "(max_grad_norm > 0 or skip_nonfinite): a rank sees only its slice, so its decision would differ "
             "from the unsharded run";
  }
  return "unknown status";
}

/// Hashes of one stepper; `with_values`: also the save() bytes and the parameter bits (data
/// parallel, where every rank holds the full parameters and state).
template <class S>
attach_record fingerprint(const S& s, const attach_options& o, bool with_values) {
  attach_record rec;
  {
    hasher h;
    h.text(S::kind());
    rec.kind = h.digest();
  }
  {
    hasher h;
    if constexpr (requires { s.estimator().options(); }) hash_options(h, s.estimator().options());
    h.text("|");
    if constexpr (requires { s.optimizer().options(); }) hash_options(h, s.optimizer().options());
    h.word(o.salt);
    rec.options = h.digest();
  }
  {
    hasher h;
    h.word(s.params().tensors());
    if (with_values) {
      for (std::size_t t = 0; t < s.params().tensors(); ++t) h.word(s.params().tensor(t).size());
    }
    rec.shape = h.digest();
  }
  {
    hasher h;
    h.word(s.steps());
    const auto& st = s.est_state();
    if constexpr (requires { st.master_seed; st.calls; }) {
      h.word(st.master_seed);
      h.word(st.calls);
    }
    if constexpr (requires { st.pending; st.pending_seed; st.pending_scale; }) {
      h.value(st.pending);
      h.word(st.pending_seed);
      h.value(st.pending_scale);
    }
    if (with_values) {
      std::ostringstream os;
      s.save(os);
      h.text(os.str());
    }
    rec.state = h.digest();
  }
  if (with_values) {
    hasher h;
    for (std::size_t t = 0; t < s.params().tensors(); ++t) {
      const auto x = s.params().tensor(t);
      h.bytes(x.data(), x.size_bytes());
    }
    rec.params = h.digest();
  }
  return rec;
}

/// "1, 3" from a list of ranks.
inline std::string rank_list(const std::vector<int>& r) {
  std::string s;
  for (std::size_t i = 0; i < r.size(); ++i) s += (i == 0 ? "" : ", ") + std::to_string(r[i]);
  return s;
}

/// Exchanges the records (one allgather) and throws config_mismatch on every rank, with the same
/// message, when a rank reported a bad local argument or a hash differs from rank 0's.
inline void agree(communicator& comm, const attach_record& mine, std::vector<attach_record>& all, const char* who) {
  all.assign(static_cast<std::size_t>(comm.size()), attach_record{});
  comm.allgather(std::span<const attach_record>(&mine, 1), std::span<attach_record>(all));
  std::string msg;
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r].status != 0) {
      msg += "\n  rank " + std::to_string(r) + ": " + attach_status_text(all[r].status);
    }
  }
  struct field {
    std::uint64_t attach_record::*m;
    const char* text;
  };
  static constexpr field fields[] = {
      {&attach_record::kind, "the stepper type (stepper::kind(): estimator, directions, generator, policies, element type)"},
      {&attach_record::options, "the estimator's or optimizer's options (or attach_options::salt)"},
      {&attach_record::shape, "the parameter shapes (number of tensors, or their sizes)"},
      {&attach_record::state, "the step state (step counter, seed, call counter, pending perturbation, saved state)"},
      {&attach_record::params, "the parameter values"},
  };
  for (const field& f : fields) {
    std::vector<int> differ;
    for (std::size_t r = 1; r < all.size(); ++r) {
      if (all[r].*(f.m) != all[0].*(f.m)) differ.push_back(static_cast<int>(r));
    }
    if (!differ.empty()) msg += std::string("\n  ") + f.text + " differ from rank 0's on rank(s) " + rank_list(differ);
  }
  if (!msg.empty()) {
    throw config_mismatch(std::string("stochgrad::mpi::") + who + ": the " + std::to_string(all.size()) +
                          " ranks cannot run this stepper together (nothing was changed):" + msg);
  }
}

}  // namespace detail
}  // namespace stochgrad::mpi
