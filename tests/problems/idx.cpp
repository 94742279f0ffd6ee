// SPDX-License-Identifier: Apache-2.0
// The idx reader (MNIST / Fashion-MNIST format) on crafted buffers: a good 2 x 3 x 3 tensor reads
// back exactly (through the buffer, an uncompressed file and the labelled-dataset builder), and
// every malformed input is refused with a data_error naming the file and the defect. Also the
// softmax regression problem built on such data: log(classes) at zero, exact gradient.
#include "support/catch.hpp"

#include <stochgrad/problems.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace sp = stochgrad::problems;

namespace {

using bytes = std::vector<std::uint8_t>;

// The message of the data_error that f() throws ("" if it throws nothing; other exceptions escape).
template <class F>
std::string refusal(F f) {
  try {
    f();
  } catch (const sp::data_error& e) {
    return e.what();
  }
  return {};
}

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// An idx header: 00 00 type dims, then each size as a big-endian 32-bit integer.
bytes header(std::uint8_t type, const std::vector<std::uint32_t>& shape) {
  bytes b = {0, 0, type, static_cast<std::uint8_t>(shape.size())};
  for (std::uint32_t s : shape) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(s >> shift));
  }
  return b;
}

// 2 images of 3 x 3 with distinct values 0, 7, 14, ..., 119 (element k = 7 k).
bytes good_images() {
  bytes b = header(0x08, {2, 3, 3});
  for (std::uint32_t k = 0; k < 18; ++k) b.push_back(static_cast<std::uint8_t>(7 * k));
  return b;
}

void expect_refusal(const bytes& b, std::size_t dims, const std::string& needle) {
  const std::string name = "crafted/file-" + std::to_string(b.size()) + ".idx";
  INFO("expected a refusal containing '" << needle << "'");
  const std::string msg = refusal([&] { sp::parse_idx(b, name, dims); });
  INFO("message: " << msg);
  REQUIRE(has(msg, name));
  REQUIRE(has(msg, needle));
}

std::string write_temp(const std::string& stem, const bytes& b) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("stochgrad-idx-" + stem + "-" + std::to_string(reinterpret_cast<std::uintptr_t>(&b)));
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  f.close();
  REQUIRE(f.good());
  return path.string();
}

}  // namespace

TEST_CASE("idx: a good 2x3x3 buffer reads back exactly", "[problems][idx]") {
  const bytes b = good_images();
  REQUIRE(b.size() == 4 + 3 * 4 + 18);
  const sp::idx_array a = sp::parse_idx(b, "good", 3);
  REQUIRE(a.shape == std::vector<std::size_t>{2, 3, 3});
  REQUIRE(a.size() == 18);
  REQUIRE(a.values.size() == 18);
  for (std::size_t k = 0; k < 18; ++k) REQUIRE(a.values[k] == 7 * k);
  // dims = 0 accepts any count; the big-endian sizes above 255 are decoded byte by byte.
  REQUIRE(sp::parse_idx(b, "good").shape.size() == 3);
  bytes big = header(0x08, {0x00010203u});
  big.resize(big.size() + 0x00010203u, 5);
  const sp::idx_array v = sp::parse_idx(big, "big", 1);
  REQUIRE(v.shape == std::vector<std::size_t>{0x00010203u});
  REQUIRE(v.values.back() == 5);
}

TEST_CASE("idx: each malformed buffer is refused, naming the file", "[problems][idx]") {
  const bytes good = good_images();
  SECTION("bad magic") {
    bytes b = good;
    b[0] = 0x12;
    expect_refusal(b, 3, "bad magic number: starts with 12 00");
    b = good;
    b[1] = 0x01;
    expect_refusal(b, 3, "bad magic number");
  }
  SECTION("gzip-compressed input") {
    expect_refusal({0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0}, 3, "gzip-compressed");
  }
  SECTION("unsupported element type") {
    bytes b = good;
    b[2] = 0x0d;  // float
    expect_refusal(b, 3, "element type 0x0d is not supported");
  }
  SECTION("wrong number of dimensions") {
    expect_refusal(good, 1, "has 3 dimensions, expected 1");
    expect_refusal(header(0x08, {}), 0, "announces 0 dimensions");
  }
  SECTION("sizes disagree with the byte count") {
    bytes b = good;
    b.push_back(0);  // one trailing byte
    expect_refusal(b, 3, "has trailing bytes: the header announces 2 x 3 x 3 = 18 elements, the file holds 19");
    bytes wrong = header(0x08, {3, 3, 3});  // announces 27 elements, holds 18
    wrong.insert(wrong.end(), good.begin() + 16, good.end());
    expect_refusal(wrong, 3, "truncated: the header announces 3 x 3 x 3 = 27 elements, the file holds 18");
  }
  SECTION("truncated file") {
    expect_refusal(bytes(good.begin(), good.end() - 1), 3, "truncated: the header announces 2 x 3 x 3 = 18 elements, the file holds 17");
    expect_refusal(bytes(good.begin(), good.begin() + 10), 3, "shorter than the 16-byte header of 3 dimensions");
    expect_refusal(bytes(good.begin(), good.begin() + 3), 3, "shorter than the 4-byte magic number");
    expect_refusal(bytes{}, 3, "truncated: 0 bytes");
  }
  SECTION("sizes whose product overflows") {
    expect_refusal(header(0x08, {0xffffffffu, 0xffffffffu, 0xffffffffu}), 3, "overflows");
  }
}

TEST_CASE("idx: files and the labelled dataset", "[problems][idx]") {
  bytes labels = header(0x08, {2});
  labels.push_back(4);
  labels.push_back(1);
  const std::string img = write_temp("images", good_images());
  const std::string lab = write_temp("labels", labels);
  const sp::idx_array a = sp::read_idx_file(img, 3);
  REQUIRE(a.values == sp::parse_idx(good_images(), "same", 3).values);
  const auto d = sp::load_idx_classification<double>(img, lab, 0.5);
  REQUIRE(d.rows == 2);
  REQUIRE(d.features == 9);
  REQUIRE(d.classes == 5);  // max label + 1 without names
  REQUIRE(d.y == std::vector<std::int32_t>{4, 1});
  for (std::size_t k = 0; k < 18; ++k) REQUIRE(d.x[k] == 0.5 * static_cast<double>(7 * k));
  const auto named = sp::load_idx_classification<float>(img, lab, 1.0, sp::fashion_mnist_class_names());
  REQUIRE(named.classes == 10);
  REQUIRE(named.class_names[4] == "Coat");
  // The file's name is in the message; a wrong role (labels read as images) is a dimension error.
  {
    const std::string msg = refusal([&] { sp::read_idx_file(lab, 3); });
    INFO("message: " << msg);
    REQUIRE(has(msg, lab));
    REQUIRE(has(msg, "has 1 dimension, expected 3"));
  }
  {
    const std::string msg = refusal([&] { sp::load_idx_classification<float>(img, lab, 1.0, {"a", "b"}); });
    INFO("message: " << msg);
    REQUIRE(has(msg, img));
    REQUIRE(has(msg, "label 4 is outside the 2 named classes"));
  }
  // Images and labels must agree on the number of rows.
  bytes three = header(0x08, {3});
  three.insert(three.end(), {0, 1, 2});
  {
    const std::string msg = refusal([&] { sp::idx_classification<float>(a, sp::parse_idx(three, "three", 1)); });
    INFO("message: " << msg);
    REQUIRE(has(msg, "2 images but 3 labels"));
  }
  // A truncated file on disk, and a missing one.
  const bytes good = good_images();
  const std::string cut = write_temp("cut", bytes(good.begin(), good.end() - 5));
  REQUIRE_THROWS_AS(sp::read_idx_file(cut, 3), sp::data_error);
  {
    const std::string msg = refusal([&] { sp::read_idx_file(cut, 3); });
    INFO("message: " << msg);
    REQUIRE(has(msg, cut));
    REQUIRE(has(msg, "truncated"));
  }
  {
    const std::string msg = refusal([&] { sp::read_idx_file(img + ".missing"); });
    INFO("message: " << msg);
    REQUIRE(has(msg, img + ".missing"));
    REQUIRE(has(msg, "cannot open"));
  }
  for (const std::string& f : {img, lab, cut}) std::filesystem::remove(f);
}

TEST_CASE("softmax regression: log(classes) at zero and the exact gradient", "[problems][softmax]") {
  // 40 rows of 9 features in 4 classes, values from a fixed formula.
  sp::dataset<double> d;
  d.rows = 40;
  d.features = 9;
  d.classes = 4;
  for (std::size_t i = 0; i < d.rows; ++i) {
    for (std::size_t j = 0; j < d.features; ++j) d.x.push_back(std::sin(static_cast<double>(3 * i + 7 * j + 1)));
    d.y.push_back(static_cast<std::int32_t>((i * 7) % 4));
  }
  const double l2 = GENERATE(0.0, 0.05);
  const sp::softmax_regression<double> m(d, d, {.l2 = l2});
  REQUIRE(m.dimension() == 4 * 10);
  std::vector<double> x(m.dimension(), 1.0);
  m.initial_point(std::span<double>(x));
  REQUIRE_THAT(m.value(std::span<const double>(x)), Catch::Matchers::WithinRel(std::log(4.0), 1e-14));
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = 0.3 * std::cos(static_cast<double>(k) * 1.7);
  std::vector<double> g(x.size());
  const double f = m.value_and_gradient(std::span<const double>(x), std::span<double>(g));
  REQUIRE(f == m.value(std::span<const double>(x)));
  // Central differences, h = 1e-5: truncation (h^2/6) |f'''| <~ 1e-10 for these O(1) logits, and
  // rounding ~ 40 rows x 50 operations x 1.1e-16 x |f| / h ~ 3e-8: accept 1e-6.
  const double h = 1e-5;
  for (std::size_t k = 0; k < x.size(); ++k) {
    std::vector<double> xp = x, xm = x;
    xp[k] += h;
    xm[k] -= h;
    const double fd = (m.value(std::span<const double>(xp)) - m.value(std::span<const double>(xm))) / (2 * h);
    INFO("k = " << k);
    REQUIRE(std::abs(g[k] - fd) <= 1e-6);
  }
  // At x = 0 every logit ties and the first arg-max, class 0, is predicted: 10 of the 40 rows.
  std::vector<double> zero(x.size(), 0.0);
  REQUIRE(m.test_accuracy(std::span<const double>(zero)) == 0.25);
  REQUIRE_THROWS_AS(sp::softmax_regression<double>(d, d, {.l2 = -1.0}), stochgrad::invalid_argument);
}
