// Data-parallel MeZO over MPI: the breast-cancer training set is split across the ranks, every rank
// holds the full logistic-regression weights and evaluates only its shard; per step the ranks
// exchange 2 losses (16 bytes each), combine them in rank order and apply the identical update.
// Built only with the MPI component (stochgrad::mpi). Run:
//   mpiexec -n 2 ./example_mpi_mezo [data dir]
#include <stochgrad/mpi.hpp>
#include <stochgrad/problems.hpp>

#include <fmt/format.h>

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace {

// Rows [begin, end) of a dataset.
template <class T>
stochgrad::problems::dataset<T> rows(const stochgrad::problems::dataset<T>& d, std::size_t begin, std::size_t end) {
  stochgrad::problems::dataset<T> s;
  s.rows = end - begin;
  s.features = d.features;
  s.classes = d.classes;
  s.class_names = d.class_names;
  s.x.assign(d.x.begin() + static_cast<std::ptrdiff_t>(begin * d.features),
             d.x.begin() + static_cast<std::ptrdiff_t>(end * d.features));
  s.y.assign(d.y.begin() + static_cast<std::ptrdiff_t>(begin), d.y.begin() + static_cast<std::ptrdiff_t>(end));
  return s;
}

int run(int argc, char** argv) {
  namespace sp = stochgrad::problems;
  stochgrad::mpi::communicator comm(MPI_COMM_WORLD);  // stochgrad works on a duplicate of it
  const std::string data = argc > 1 ? argv[1] : STOCHGRAD_DATA_DIR;
  // Every rank loads and splits the same way (same seed), then keeps its contiguous shard.
  auto split = sp::standardized_split(sp::load_breast_cancer<float>(data + "/breast_cancer.csv"), 0.2, 1);
  const auto R = static_cast<std::size_t>(comm.size()), r = static_cast<std::size_t>(comm.rank());
  const std::size_t n = split.train.rows, begin = n * r / R, end = n * (r + 1) / R;
  const sp::logistic_regression<float> shard(rows(split.train, begin, end), split.test);
  const sp::logistic_regression<float> full(split.train, split.test);  // only for the final report

  std::vector<float> w(shard.dimension(), 0.0f);
  stochgrad::mezo<float> mezo(w, {.lr = 0.05}, {.eps = 1e-3, .seed = 7});
  // Collective: checks that every rank built the same stepper (type, options, seed, weights).
  stochgrad::mpi::data_parallel dp(comm, mezo, end - begin);
  auto local_loss = [&](std::span<const float> x) { return shard.value(x); };  // mean over this shard

  std::uint64_t bytes = 0;
  for (int k = 0; k <= 3000; ++k) {
    const auto rep = dp.step(local_loss);
    bytes += dp.last_step().bytes_sent;
    if (comm.rank() == 0 && k % 1000 == 0) {
      fmt::print("step {:4d}  L+ = {:.4f}  (combined over {} ranks)\n", k, rep.loss_plus, comm.size());
    }
  }
  const double acc = full.test_accuracy(w);
  if (comm.rank() == 0) {
    fmt::print("train loss {:.4f}, test accuracy {:.3f}; rank 0 sent {} bytes in 3001 steps ({} per step)\n",
               full.value(w), acc, bytes, bytes / 3001);
  }
  return acc > 0.9 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 1;
  try {
    rc = run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
  }
  MPI_Finalize();
  return rc;
}
