// SPDX-License-Identifier: Apache-2.0
// Large-batch training rules (bits/optim/large_batch.hpp; design/seeds/optimizers.md section 6):
// the worked examples of section 6.4 (square-root learning-rate scaling, the adapted CIFAR ResNet
// regime, ghost batch normalisation and its running statistics, clipping of the ghost-averaged
// gradient), the identities of section 8 ("Hoffer"), the geometric schedule of section 7.4, and
// refusal of bad input with nothing changed. Closed-form numbers use algorithms.md section 0.4's
// double tolerance (relative 1e-12, absolute 1e-15 near zero).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <stochgrad/bits/optim/optim.hpp>
#include <stochgrad/bits/optim/large_batch.hpp>

#include "support/catch.hpp"
#include "support/near.hpp"

using namespace stochgrad;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

using vd = std::vector<double>;

using sg_test::check_close;

// The learning rate an sgd with schedule S uses at step k (one update of a one-element parameter).
template <class S>
double lr_at(const optim::sgd<S>& opt, std::uint64_t k) {
  vd x{0.0};
  const vd g{1.0};
  parameters<double> p(std::span<double>(x.data(), x.size()));
  auto s = opt.init(p);
  return opt.update(p, s, dense_gradient<double>(std::span<const double>(g)), {.step = k}).lr;
}

// The CIFAR ResNet regime of bigBatch: {0: 0.1, 81: 0.01, 122: 0.001, 164: 1e-4} with lr0 = 0.1.
piecewise_constant cifar_regime() { return {{0, 81, 122, 164}, {1.0, 0.1, 0.01, 0.001}}; }

// Section 6.4's 8 x 2 batch (row-major), gamma and beta.
const vd X8 = {1, 0.5, 2, -1, 0, 0, 3, 1.5, -1, 2, 0.5, 0.5, 1.5, -0.5, 2.5, 1};
const vd gamma2 = {1, 2}, beta2 = {0, 0.1};

}  // namespace

TEST_CASE("sqrt_batch_scaling: section 6.4 learning rates", "[optim][large_batch]") {
  using S = sqrt_batch_scaling<>;
  // main_gbn.py: B = 2048, B_ref = ghost batch 128 -> 0.1 * 4; main_normal.py: 4096 / 256 -> 0.4.
  CHECK_THAT(lr_at(optim::sgd<S>({.lr = 0.1}, S{.batch = 2048, .reference_batch = 128}), 0), WithinRel(0.4, 1e-12));
  CHECK_THAT(lr_at(optim::sgd<S>({.lr = 0.1}, S{.batch = 4096, .reference_batch = 256}), 7), WithinRel(0.4, 1e-12));
  // Section 8: the identity at B = B_ref; a wrapped schedule is multiplied.
  const sqrt_batch_scaling<step_decay> id{.batch = 256, .reference_batch = 256, .inner = {.every = 10, .gamma = 0.5}};
  for (std::uint64_t k : {0u, 9u, 10u, 35u}) CHECK(id(k) == step_decay{.every = 10, .gamma = 0.5}(k));
  CHECK(std::string(optim::sgd<sqrt_batch_scaling<regime_adaptation<piecewise_constant>>>::name) ==
        "sgd<sqrt_batch_scaling<regime_adaptation<piecewise_constant>>>");
}

TEST_CASE("regime_adaptation: section 6.4 adapted CIFAR ResNet regime", "[optim][large_batch]") {
  const std::uint64_t M = regime_multiplier(2048, 128);
  CHECK(M == 16);
  CHECK(regime_multiplier(2000, 128) == 16);  // ceil
  CHECK(regime_multiplier(128, 128) == 1);
  const regime_adaptation<piecewise_constant> r{.multiplier = M, .inner = cifar_regime()};
  const std::vector<std::uint64_t> want{0, 1296, 1952, 2624};
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(r.boundary(cifar_regime().boundaries[i]) == want[i]);
  CHECK(r.total_steps(200) == 3200);
  // The regime is sticky: every entry with boundary <= the adapted counter applies, in order.
  const vd lr_before{0.1, 0.1, 0.01, 0.001}, lr_at_boundary{0.1, 0.01, 0.001, 1e-4};
  // The paper's recipe: sgd{momentum 0.9, wd 1e-4, clip 5} with sqrt scaling (factor 4) of the adapted regime.
  using Sched = sqrt_batch_scaling<regime_adaptation<piecewise_constant>>;
  const optim::sgd<Sched> opt({.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .max_grad_norm = 5},
                              Sched{.batch = 2048, .reference_batch = 128, .inner = r});
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("boundary " << want[i]);
    CHECK_THAT(lr_at(opt, want[i]), WithinRel(4.0 * lr_at_boundary[i], 1e-12));
    if (want[i] > 0) CHECK_THAT(lr_at(opt, want[i] - 1), WithinRel(4.0 * lr_before[i], 1e-12));
  }
  // Section 8: multiplier 1 is the identity.
  const regime_adaptation<piecewise_constant> one{.multiplier = 1, .inner = cifar_regime()};
  for (std::uint64_t k : {0u, 80u, 81u, 121u, 122u, 500u}) CHECK(one(k) == cifar_regime()(k));
}

TEST_CASE("geometric_schedule: rho^k", "[optim][large_batch]") {
  const geometric_schedule g{.rho = 0.9};
  CHECK(g(0) == 1.0);
  CHECK_THAT(g(1), WithinRel(0.9, 1e-15));
  CHECK_THAT(g(3), WithinRel(0.729, 1e-12));
  CHECK(geometric_schedule{.rho = 1.0}(12345) == 1.0);
  CHECK_THAT(lr_at(optim::sgd<geometric_schedule>({.lr = 0.1}, {.rho = 0.9975}), 500),
             WithinRel(0.1 * 0.28605673633036893, 1e-12));  // rho^500 = 0.286 (section 7.3)
}

TEST_CASE("ghost batch statistics: section 6.4, 8 rows, 2 chunks of 4", "[optim][large_batch]") {
  const ghost_layout l = ghost_chunk_layout(8, 2);
  CHECK(l.size == 4);
  CHECK(l.count == 2);
  vd mean(4), var(4), y(16);
  const ghost_layout l2 = ghost_batch_stats<double>(X8, 8, 2, 2, mean, var);
  CHECK(l2.count == 2);
  ghost_batch_normalize<double>(X8, l2, 2, mean, var, gamma2, beta2, 1e-5, y);
  check_close(y, {-0.447211806656309, 0.6546967827170693, 0.447211806656309, -2.6734839135853465,
                  -1.3416354199689269, -0.45469678271706937, 1.3416354199689269, 2.8734839135853467,
                  -1.45010039682613, 2.8734839135853467, -0.29002007936522595, -0.45469678271706937,
                  0.48336679894204326, -2.6734839135853465, 1.2567536772493124, 0.6546967827170693});
  vd rm{0, 0}, rv{1, 1};
  ghost_update_running<double>(rm, rv, l2, mean, var, 0.1);
  check_close(rm, {0.2225, 0.0975});
  check_close(rv, {1.1829166666666666, 1.0158333333333334});
  // y may alias x.
  vd x = X8;
  ghost_batch_normalize<double>(x, l2, 2, mean, var, gamma2, beta2, 1e-5, x);
  check_close(x, std::vector<double>(y.begin(), y.end()), 1e-15);
}

TEST_CASE("ghost batch statistics: one chunk is full-batch BN (section 6.4, 8)", "[optim][large_batch]") {
  vd mean(2), var(2);
  const ghost_layout l = ghost_batch_stats<double>(X8, 8, 2, 1, mean, var);
  CHECK(l.count == 1);
  vd rm{0, 0}, rv{1, 1};
  ghost_update_running<double>(rm, rv, l, mean, var);
  check_close(rm, {0.11875, 0.05});
  check_close(rv, {1.078125, 1.0});
}

TEST_CASE("ghost batch statistics: torch.chunk sizing, 10 rows in 3 chunks", "[optim][large_batch]") {
  vd x = X8;
  for (double v : {0.2, -0.3, 1.1, 0.7}) x.push_back(v);
  const ghost_layout l = ghost_chunk_layout(10, 3);
  REQUIRE(l.count == 3);
  CHECK(l.rows_of(0) == 4);
  CHECK(l.rows_of(1) == 4);
  CHECK(l.rows_of(2) == 2);
  const ghost_layout l7 = ghost_chunk_layout(7, 2);
  CHECK((l7.count == 2 && l7.rows_of(0) == 4 && l7.rows_of(1) == 3));
  const ghost_layout l6 = ghost_chunk_layout(6, 4);  // torch.chunk: size 2, only 3 chunks produced
  CHECK((l6.size == 2 && l6.count == 3));
  vd mean(6), var(6), y(20);
  ghost_batch_stats<double>(x, 10, 2, 3, mean, var);
  vd rm{0, 0}, rv{1, 1};
  ghost_update_running<double>(rm, rv, l, mean, var);
  check_close(rm, {0.26525, 0.10775});
  check_close(rv, {1.105125, 0.96425});
  // gamma = 1, beta = 0: every chunk of y has mean 0 per feature.
  ghost_batch_normalize<double>(x, l, 2, mean, var, vd{1, 1}, vd{0, 0}, 1e-5, y);
  for (std::size_t c = 0; c < l.count; ++c) {
    for (std::size_t j = 0; j < 2; ++j) {
      double s = 0;
      for (std::size_t i = l.begin(c); i < l.begin(c) + l.rows_of(c); ++i) s += y[i * 2 + j];
      CHECK_THAT(s, WithinAbs(0.0, 1e-14));
    }
  }
}

TEST_CASE("ghost gradient averaging and clipping: section 6.4", "[optim][large_batch]") {
  // Summed ghost gradients [3, -4, 12] over 2 chunks: mean [1.5, -2, 6], norm 6.5, clipped at 5.
  const vd summed{3, -4, 12};
  vd x(3, 0.0);
  parameters<double> p(std::span<double>(x.data(), x.size()));
  const dense_gradient<double> sum_src(std::span<const double>(summed.data(), summed.size()));
  const ghost_layout l = ghost_chunk_layout(8, 2);
  const scaled_source<dense_gradient<double>> avg(sum_src, 1.0 / static_cast<double>(l.count));
  CHECK_THAT(optim::clip_factor(p, avg, 5.0), WithinRel(5.0 / (6.5 + 1e-6), 1e-12));
  const optim::sgd<> opt({.lr = 1.0, .max_grad_norm = 5.0});
  auto s = opt.init(p);
  const auto rep = opt.update(p, s, avg, {});
  CHECK_THAT(rep.grad_norm, WithinRel(6.5, 1e-12));
  check_close(x, {-1.1538459763313882, 1.5384613017751843, -4.615383905325553});
  // Section 8: with equal chunks, the mean of the chunk-mean gradients is the full-batch mean
  // (here: per-row "gradients" = the rows of X8, chunks of 4).
  vd mean(4), var(4);
  ghost_batch_stats<double>(X8, 8, 2, 2, mean, var);
  vd full(2), fv(2);
  ghost_batch_stats<double>(X8, 8, 2, 1, full, fv);
  for (std::size_t j = 0; j < 2; ++j) CHECK_THAT((mean[j] + mean[2 + j]) / 2.0, WithinRel(full[j], 1e-15));
}

TEST_CASE("large-batch rules refuse bad input, nothing changed", "[optim][large_batch][validation]") {
  using S = sqrt_batch_scaling<>;
  CHECK_THROWS_AS(optim::sgd<S>({.lr = 0.1}, S{.batch = 0, .reference_batch = 128}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<S>({.lr = 0.1}, S{.batch = 128, .reference_batch = 0}), invalid_argument);
  using R = regime_adaptation<step_decay>;
  CHECK_THROWS_AS(optim::sgd<R>({.lr = 0.1}, R{.multiplier = 0}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<R>({.lr = 0.1}, R{.multiplier = 2, .inner = {.every = 0}}), invalid_argument);
  CHECK_THROWS_AS(regime_multiplier(0, 128), invalid_argument);
  CHECK_THROWS_AS(regime_multiplier(128, 0), invalid_argument);
  using P = piecewise_constant;
  CHECK_THROWS_AS(optim::sgd<P>({.lr = 0.1}, P{{}, {}}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<P>({.lr = 0.1}, P{{0, 5}, {1.0}}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<P>({.lr = 0.1}, P{{1, 5}, {1.0, 0.1}}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<P>({.lr = 0.1}, P{{0, 5, 5}, {1.0, 0.1, 0.01}}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<P>({.lr = 0.1}, P{{0, 5}, {1.0, -0.1}}), invalid_argument);
  CHECK_THROWS_AS(optim::sgd<sqrt_batch_scaling<P>>({.lr = 0.1}, {.batch = 4, .reference_batch = 1, .inner = P{{}, {}}}),
                  invalid_argument);
  using G = geometric_schedule;
  for (double rho : {0.0, -0.5, 1.5, std::nan("")}) {
    INFO("rho = " << rho);
    CHECK_THROWS_AS(optim::sgd<G>({.lr = 0.1}, G{.rho = rho}), invalid_argument);
  }
  CHECK_THROWS_AS(ghost_chunk_layout(0, 2), invalid_argument);
  CHECK_THROWS_AS(ghost_chunk_layout(8, 0), invalid_argument);
}

TEST_CASE("ghost kernels refuse bad input, nothing written", "[optim][large_batch][validation]") {
  vd mean(4, -7.0), var(4, -7.0), y(16, -7.0);
  const vd sentinel4(4, -7.0), sentinel16(16, -7.0);
  CHECK_THROWS_AS(ghost_batch_stats<double>(X8, 8, 2, 2, std::span<double>(mean.data(), 3), var), size_mismatch);
  CHECK_THROWS_AS(ghost_batch_stats<double>(X8, 8, 2, 2, mean, std::span<double>(var.data(), 3)),
                  size_mismatch);
  CHECK_THROWS_AS(ghost_batch_stats<double>(X8, 7, 2, 2, mean, var), size_mismatch);  // x is 8 x 2
  CHECK_THROWS_AS(ghost_batch_stats<double>(X8, 8, 0, 2, mean, var), invalid_argument);
  CHECK((mean == sentinel4 && var == sentinel4));
  const ghost_layout l = ghost_batch_stats<double>(X8, 8, 2, 2, mean, var);
  CHECK_THROWS_AS(ghost_batch_normalize<double>(X8, l, 2, mean, var, vd{1}, beta2, 1e-5, y), size_mismatch);
  CHECK_THROWS_AS(ghost_batch_normalize<double>(X8, l, 2, mean, var, gamma2, beta2, -1.0, y), invalid_argument);
  CHECK_THROWS_AS(ghost_batch_normalize<double>(X8, l, 2, mean, var, gamma2, beta2, 1e-5, std::span<double>(y.data(), 15)),
                  size_mismatch);
  CHECK(y == sentinel16);
  vd rm{0.5, 0.5}, rv{2, 2};
  const vd rm0 = rm, rv0 = rv;
  CHECK_THROWS_AS(ghost_update_running<double>(rm, rv, l, mean, var, 1.5), invalid_argument);
  CHECK_THROWS_AS(ghost_update_running<double>(rm, std::span<double>(rv.data(), 1), l, mean, var), size_mismatch);
  // 9 rows in 2 chunks: 5 + 4; 9 rows in 5 chunks: size 2, last chunk 1 row -> refused.
  vd x9 = X8;
  x9.push_back(1.0);
  x9.push_back(2.0);
  vd m5(10), v5(10);
  const ghost_layout l5 = ghost_batch_stats<double>(x9, 9, 2, 5, m5, v5);
  REQUIRE(l5.rows_of(l5.count - 1) == 1);
  CHECK_THROWS_AS(ghost_update_running<double>(rm, rv, l5, m5, v5), invalid_argument);
  CHECK((rm == rm0 && rv == rv0));
}
