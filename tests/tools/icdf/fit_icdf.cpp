// SPDX-License-Identifier: Apache-2.0
// Fits the coefficient table of stochgrad's inversion Gaussian (include/stochgrad/bits/rng/
// icdf_table.hpp) and prints it as C++.
//
// The transform: a 32-bit word w gives the sign (bit 31) and the odd integer x = 2 (w mod 2^31) + 1,
// i.e. the tail probability p = x 2^-33 in (0, 1/2), uniform on its grid. With k = countl_zero(x)
// (0..31), p lies in the octave [2^-(k+2), 2^-(k+1)) and t = x 2^(k-31) - 1 in [0, 1) is its
// position inside the octave (kept to 23 bits). |z| = Q(p) = Phi^-1(1 - p) is approximated on
// each octave by a polynomial of degree D in t, evaluated by Horner's rule in float with fused
// multiply-adds; z = +-|z|.
//
// Fit: Chebyshev interpolation of g_k(t) = Q(2^-(k+2) (1 + t)) at D + 1 Chebyshev nodes of [0, 1]
// (near-minimax), converted to monomial coefficients in long double and rounded to float. Q is
// computed by bisection on 0.5 erfc(q / sqrt 2) = p in long double (about 1e-18). The tool then
// evaluates the float Horner form exactly as the library does on a dense grid of every octave and
// prints the largest absolute and relative errors.
//
// Build and run: g++ -O2 -std=c++20 fit_icdf.cpp -o fit_icdf && ./fit_icdf [degree]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

long double tail_quantile(long double p) {  // Q(p) for 0 < p <= 1/2
  long double lo = 0.0L, hi = 40.0L;
  for (int i = 0; i < 200; ++i) {
    const long double mid = 0.5L * (lo + hi);
    if (0.5L * std::erfc(mid / std::sqrt(2.0L)) > p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5L * (lo + hi);
}

long double g(int k, long double t) { return tail_quantile(std::ldexp(1.0L + t, -(k + 2))); }

}  // namespace

int main(int argc, char** argv) {
  const int D = argc > 1 ? std::atoi(argv[1]) : 6;
  const int K = 32;
  const long double pi = 3.141592653589793238462643383279502884L;
  std::vector<std::vector<float>> coef(static_cast<std::size_t>(K), std::vector<float>(static_cast<std::size_t>(D + 1)));
  for (int k = 0; k < K; ++k) {
    // Chebyshev coefficients a_j of g on [0,1] (x = 2t - 1).
    const int n = D + 1;
    std::vector<long double> f(static_cast<std::size_t>(n)), a(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const long double x = std::cos(pi * (i + 0.5L) / n);
      f[static_cast<std::size_t>(i)] = g(k, 0.5L * (x + 1.0L));
    }
    for (int j = 0; j < n; ++j) {
      long double s = 0;
      for (int i = 0; i < n; ++i) s += f[static_cast<std::size_t>(i)] * std::cos(pi * j * (i + 0.5L) / n);
      a[static_cast<std::size_t>(j)] = (j == 0 ? 1.0L : 2.0L) * s / n;
    }
    // Monomial coefficients in x: T_j(x) expanded; then substitute x = 2t - 1.
    std::vector<std::vector<long double>> T(static_cast<std::size_t>(n), std::vector<long double>(static_cast<std::size_t>(n), 0));
    T[0][0] = 1;
    if (n > 1) T[1][1] = 1;
    for (int j = 2; j < n; ++j)
      for (int m = 0; m < n; ++m)
        T[static_cast<std::size_t>(j)][static_cast<std::size_t>(m)] =
            (m > 0 ? 2 * T[static_cast<std::size_t>(j - 1)][static_cast<std::size_t>(m - 1)] : 0) -
            T[static_cast<std::size_t>(j - 2)][static_cast<std::size_t>(m)];
    std::vector<long double> cx(static_cast<std::size_t>(n), 0), ct(static_cast<std::size_t>(n), 0);
    for (int j = 0; j < n; ++j)
      for (int m = 0; m < n; ++m)
        cx[static_cast<std::size_t>(m)] += a[static_cast<std::size_t>(j)] * T[static_cast<std::size_t>(j)][static_cast<std::size_t>(m)];
    // (2t - 1)^m = sum_r C(m, r) 2^r t^r (-1)^(m - r)
    for (int m = 0; m < n; ++m) {
      long double binom = 1;
      for (int r = 0; r <= m; ++r) {
        ct[static_cast<std::size_t>(r)] += cx[static_cast<std::size_t>(m)] * binom * std::ldexp(1.0L, r) * (((m - r) % 2) ? -1 : 1);
        binom = binom * (m - r) / (r + 1);
      }
    }
    for (int r = 0; r < n; ++r) coef[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)] = static_cast<float>(ct[static_cast<std::size_t>(r)]);
  }
  // Verify the float Horner evaluation (as in the library) on a grid of t = m 2^-23.
  double worst_abs = 0, worst_rel = 0;
  std::printf("// degree %d; per-octave max |error| and max relative error (grid of 2^14 points):\n", D);
  for (int k = 0; k < K; ++k) {
    double wa = 0, wr = 0;
    for (std::uint32_t m = 0; m < (1u << 23); m += (1u << 9) + 1) {
      const float t = std::ldexp(static_cast<float>(m), -23);
      float pz = coef[static_cast<std::size_t>(k)][static_cast<std::size_t>(D)];
      for (int r = D - 1; r >= 0; --r) pz = std::fma(pz, t, coef[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)]);
      const long double exact = g(k, static_cast<long double>(t));
      const double ea = static_cast<double>(std::fabs(static_cast<long double>(pz) - exact));
      wa = std::max(wa, ea);
      if (exact > 1e-3L) wr = std::max(wr, static_cast<double>(ea / exact));
    }
    std::printf("//   k = %2d: abs %.3g rel %.3g\n", k, wa, wr);
    worst_abs = std::max(worst_abs, wa);
    worst_rel = std::max(worst_rel, wr);
  }
  std::printf("// worst: abs %.3g, rel %.3g\n", worst_abs, worst_rel);
  std::printf("inline constexpr int icdf_degree = %d;\n", D);
  std::printf("alignas(64) inline constexpr float icdf_coef[%d][32] = {\n", D + 1);
  for (int r = 0; r <= D; ++r) {
    std::printf("    {");
    for (int k = 0; k < K; ++k) std::printf("%a%s", static_cast<double>(coef[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)]), k + 1 < K ? ", " : "");
    std::printf("},\n");
  }
  std::printf("};\n");
}
