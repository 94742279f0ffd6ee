// SPDX-License-Identifier: Apache-2.0
// Catch2 runner of the MPI tests: MPI_Init, one stochgrad::mpi::communicator over MPI_COMM_WORLD
// shared by the test cases (support.hpp), MPI_Finalize. Every rank runs every test case; mpiexec
// returns non-zero when any rank fails.
#define CATCH_CONFIG_RUNNER
#include "support/catch.hpp"

#include <stochgrad/mpi.hpp>

#include <cstdio>
#include <memory>

#include "mpi/support.hpp"

namespace sg_mpi_test {
stochgrad::mpi::communicator* world_ptr = nullptr;
}

int main(int argc, char** argv) {
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    std::fprintf(stderr, "MPI_Init failed\n");
    return 2;
  }
  int rc = 0;
  {
    auto world = std::make_unique<stochgrad::mpi::communicator>(MPI_COMM_WORLD);
    sg_mpi_test::world_ptr = world.get();
    std::printf("stochgrad mpi tests: rank %d of %d\n", world->rank(), world->size());
    rc = Catch::Session().run(argc, argv);
    sg_mpi_test::world_ptr = nullptr;
  }
  MPI_Finalize();
  return rc;
}
