// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Optional MPI component (CMake target `stochgrad::mpi`, links MPI::MPI_CXX): training past
/// one machine. Not included by `<stochgrad/stochgrad.hpp>`; no core header includes `<mpi.h>`.
///
/// - `mpi::communicator` (bits/mpi/communicator.hpp): a duplicate of the caller's MPI_Comm with
///   MPI errors turned into `mpi::mpi_error`, counting what it sends;
/// - `mpi::data_parallel`, `mpi::sharded` (bits/mpi/zo.hpp): zeroth-order steppers over ranks
///   that exchange only the per-evaluation losses (O(q) scalars per step), combined in rank
///   order, so all ranks stay bit-identical and equal a single-process run;
/// - `mpi::sharded_direction`, `mpi::shard_of` (bits/mpi/sharded_direction.hpp): slices of each
///   tensor perturbed by exactly the unsharded tensor's z (generator indexed by global position);
/// - `mpi::gradient_reducer` (bits/mpi/first_order.hpp): first-order data parallelism, a bucketed
///   rank-order sum / average of gradients, the same bits on every rank (no ZeRO state sharding);
/// - `mpi::advantages`, `mpi::dapo_options` (bits/mpi/pg.hpp): policy-gradient advantages of a
///   batch whose samples and groups are spread over the ranks (bitwise the single-process batch's),
///   and DAPO's global token count from the communicator.
///
/// @code
/// MPI_Init(&argc, &argv);
/// {
///   stochgrad::mpi::communicator comm(MPI_COMM_WORLD);
///   stochgrad::mezo<float> m(w, {.lr = 1e-3}, {.eps = 1e-3, .seed = 7});
///   stochgrad::mpi::data_parallel dp(comm, m, shard.size());
///   for (int k = 0; k < 1000; ++k) dp.step([&](std::span<const float> x) { return loss(x, shard); });
/// }
/// MPI_Finalize();
/// @endcode
#pragma once

#include "stochgrad.hpp"
#include "bits/mpi/communicator.hpp"
#include "bits/mpi/fingerprint.hpp"
#include "bits/mpi/first_order.hpp"
#include "bits/mpi/pg.hpp"
#include "bits/mpi/sharded_direction.hpp"
#include "bits/mpi/zo.hpp"
#include "bits/mpi/zero1.hpp"
