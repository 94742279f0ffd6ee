// SPDX-License-Identifier: Apache-2.0
// Dataset loading (the files shipped in examples/data), clear errors for missing and malformed
// files, the deterministic train/test split and standardisation with training statistics.
#include "support/catch.hpp"

#include <stochgrad/bits/problems/problems.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace sp = stochgrad::problems;

namespace {

const std::string data_dir = STOCHGRAD_DATA_DIR;

// Message of the data_error thrown by f ("<no exception>" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sp::data_error& e) {
    return e.what();
  }
  return "<no exception>";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Files written by temp_file, removed at exit. Names carry the process id, so concurrent runs of
// this test (e.g. the release and sanitizer builds) do not share them.
struct temp_files {
  std::vector<std::filesystem::path> paths;
  ~temp_files() {
    for (const auto& p : paths) {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  }
} g_temp_files;

// Writes `content` to a fresh file in the temp directory and returns its path.
std::string temp_file(const std::string& name, const std::string& content) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("stochgrad_test_problems_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p, std::ios::binary) << content;
  g_temp_files.paths.push_back(p);
  return p.string();
}

}  // namespace

TEST_CASE("breast cancer: shape, classes and class counts of the shipped file", "[problems][data]") {
  const auto d = sp::load_breast_cancer<double>(data_dir + "/breast_cancer.csv");
  REQUIRE(d.rows == 569);
  REQUIRE(d.features == 30);
  REQUIRE(d.classes == 2);
  REQUIRE(d.class_names == std::vector<std::string>{"malignant", "benign"});
  REQUIRE(d.x.size() == 569 * 30);
  // Counts documented with the data (examples/data/README.md, UCI): 212 malignant, 357 benign.
  REQUIRE(d.class_counts() == std::vector<std::size_t>{212, 357});
  // First row as printed in the file: 17.99,10.38,122.8,1001,...
  REQUIRE(d.x[0] == 17.99);
  REQUIRE(d.x[3] == 1001.0);
  const auto f = sp::load_breast_cancer<float>(data_dir + "/breast_cancer.csv");
  REQUIRE(f.x[0] == 17.99f);
}

TEST_CASE("digits: shape, labels and pixel range of the shipped file", "[problems][data]") {
  const auto d = sp::load_digits<float>(data_dir + "/digits.csv");
  REQUIRE(d.rows == 1797);
  REQUIRE(d.features == 64);
  REQUIRE(d.classes == 10);
  REQUIRE(d.class_names.size() == 10);
  REQUIRE(d.class_names[7] == "7");
  std::size_t total = 0;
  for (std::size_t c : d.class_counts()) {
    REQUIRE(c >= 170);  // UCI: about 180 samples of each digit in the test part
    REQUIRE(c <= 190);
    total += c;
  }
  REQUIRE(total == 1797);
  for (float v : d.x) {
    REQUIRE(v >= 0.0f);
    REQUIRE(v <= 16.0f);
    REQUIRE(v == std::floor(v));
  }
}

TEST_CASE("loaders: missing and malformed files give clear data_errors", "[problems][data]") {
  SECTION("missing file") {
    const std::string path = data_dir + "/no_such_file.csv";
    const std::string m = error_of([&] { sp::load_digits<double>(path); });
    INFO(m);
    REQUIRE(contains(m, "load_digits"));
    REQUIRE(contains(m, path));
    REQUIRE(contains(m, "cannot open"));
  }
  SECTION("wrong number of fields, with the line number") {
    const auto p = temp_file("fields.csv", "3,2,a,b\n1,2,0\n3,4,1\n5,0\n");
    const std::string m = error_of([&] { sp::load_classification_csv<double>(p, {.counts_header = true}); });
    INFO(m);
    REQUIRE(contains(m, p + ":4:"));
    REQUIRE(contains(m, "expected 3 comma-separated values"));
    REQUIRE(contains(m, "found 2"));
  }
  SECTION("not a number") {
    const auto p = temp_file("nan.csv", "1,2,0\n1,x2,1\n");
    const std::string m = error_of([&] { sp::load_classification_csv<float>(p); });
    INFO(m);
    REQUIRE(contains(m, p + ":2:"));
    REQUIRE(contains(m, "field 2 ('x2') is not a finite number"));
    const auto q = temp_file("inf.csv", "1,inf,0\n");
    REQUIRE(contains(error_of([&] { sp::load_classification_csv<float>(q); }), "not a finite number"));
  }
  SECTION("label out of range or not an integer") {
    const auto p = temp_file("label.csv", std::string(64 * 2, ' ') + "\n");  // blank line is skipped
    const std::string row = [] {
      std::string r;
      for (int k = 0; k < 64; ++k) r += "1,";
      return r;
    }();
    const auto q = temp_file("digit10.csv", row + "3\n" + row + "10\n");
    const std::string m = error_of([&] { sp::load_digits<double>(q); });
    INFO(m);
    REQUIRE(contains(m, q + ":2:"));
    REQUIRE(contains(m, "label '10' is not an integer in [0, 10)"));
    const auto r = temp_file("halflabel.csv", "1,2,0.5\n");
    REQUIRE(contains(error_of([&] { sp::load_classification_csv<double>(r); }), "label '0.5'"));
    REQUIRE(contains(error_of([&] { sp::load_classification_csv<double>(p); }), "contains no data rows"));
  }
  SECTION("header disagreeing with the data (truncated file)") {
    const auto p = temp_file("short.csv", "3,2,a,b\n1,2,0\n3,4,1\n");
    const std::string m = error_of([&] { sp::load_classification_csv<double>(p, {.counts_header = true}); });
    INFO(m);
    REQUIRE(contains(m, "header announces 3 rows but the file has 2"));
    const auto q = temp_file("bcheader.csv", "1,29,malignant,benign\n");
    REQUIRE(contains(error_of([&] { sp::load_breast_cancer<double>(q); }), "header announces 29 features, expected 30"));
    const auto r = temp_file("badheader.csv", "rows,features\n");
    REQUIRE(contains(error_of([&] { sp::load_breast_cancer<double>(r); }), "expected a header"));
    const auto e = temp_file("empty.csv", "");
    REQUIRE(contains(error_of([&] { sp::load_breast_cancer<double>(e); }), "is empty"));
  }
  SECTION("gzip-compressed input") {
    const auto p = temp_file("gz.csv.gz", std::string("\x1f\x8b\x08\x00", 4));
    REQUIRE(contains(error_of([&] { sp::load_digits<double>(p); }), "gzip-compressed"));
  }
  SECTION("CRLF line ends and spaces are accepted") {
    const auto p = temp_file("crlf.csv", "2,2,a,b\r\n 1 , 2 ,0\r\n3,4, 1\r\n");
    const auto d = sp::load_classification_csv<double>(p, {.counts_header = true});
    REQUIRE(d.rows == 2);
    REQUIRE(d.x == std::vector<double>{1, 2, 3, 4});
    REQUIRE(d.y == std::vector<std::int32_t>{0, 1});
  }
}

TEST_CASE("train_test_split: deterministic, disjoint, complete", "[problems][data]") {
  const auto d = sp::load_breast_cancer<double>(data_dir + "/breast_cancer.csv");
  const auto a = sp::train_test_split(d, 0.2, 42);
  const auto b = sp::train_test_split(d, 0.2, 42);
  const auto c = sp::train_test_split(d, 0.2, 43);
  REQUIRE(a.test.rows == 114);  // round(0.2 * 569)
  REQUIRE(a.train.rows == 455);
  REQUIRE(a.train.x == b.train.x);
  REQUIRE(a.test.y == b.test.y);
  REQUIRE(a.test.x != c.test.x);
  // Every original row lands in exactly one part: compare multisets of first features + labels.
  std::vector<std::pair<double, int>> all, parts;
  for (std::size_t i = 0; i < d.rows; ++i) all.emplace_back(d.x[i * 30], d.y[i]);
  for (const auto* p : {&a.train, &a.test}) {
    for (std::size_t i = 0; i < p->rows; ++i) parts.emplace_back(p->x[i * 30], p->y[i]);
  }
  std::sort(all.begin(), all.end());
  std::sort(parts.begin(), parts.end());
  REQUIRE(all == parts);
  const auto ca = a.train.class_counts(), ct = a.test.class_counts();
  REQUIRE(ca[0] + ct[0] == 212);
  REQUIRE(ct[0] > 10);  // a uniformly random 114-row test part has ~42 malignant rows
  REQUIRE(ct[1] > 10);
  REQUIRE_THROWS_AS(sp::train_test_split(d, 0.0, 1), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::train_test_split(d, 1.0, 1), stochgrad::invalid_argument);
  REQUIRE_THROWS_AS(sp::train_test_split(d, 1e-4, 1), stochgrad::invalid_argument);  // empty test part
}

TEST_CASE("standardizer: training statistics, applied to both parts", "[problems][data]") {
  const auto d = sp::load_digits<double>(data_dir + "/digits.csv");
  auto s = sp::train_test_split(d, 0.25, 7);
  const auto raw_test = s.test;
  const sp::standardizer<double> st(s.train);
  REQUIRE(st.features() == 64);
  st.apply(s.train);
  st.apply(s.test);
  const double n = static_cast<double>(s.train.rows);
  std::size_t constant = 0;
  for (std::size_t j = 0; j < 64; ++j) {
    double m = 0.0, ss = 0.0;
    for (std::size_t i = 0; i < s.train.rows; ++i) m += s.train.x[i * 64 + j];
    m /= n;
    for (std::size_t i = 0; i < s.train.rows; ++i) ss += (s.train.x[i * 64 + j] - m) * (s.train.x[i * 64 + j] - m);
    REQUIRE(std::abs(m) <= 1e-12);
    if (st.scale()[j] == 1.0 && ss == 0.0) {
      ++constant;  // a pixel that is 0 in every training image stays 0
    } else {
      REQUIRE_THAT(std::sqrt(ss / n), Catch::Matchers::WithinRel(1.0, 1e-12));
    }
  }
  REQUIRE(constant >= 1);  // the digits' corner pixel (0) is blank in every image
  // Test rows use the training mean and scale.
  for (std::size_t j : {std::size_t{10}, std::size_t{35}}) {
    REQUIRE_THAT(s.test.x[5 * 64 + j],
                 Catch::Matchers::WithinRel((raw_test.x[5 * 64 + j] - st.mean()[j]) / st.scale()[j], 1e-15));
  }
  sp::dataset<double> other;
  other.features = 3;
  REQUIRE_THROWS_AS(st.apply(other), stochgrad::size_mismatch);
  const auto both = sp::standardized_split(d, 0.25, 7);
  REQUIRE(both.train.x == s.train.x);
  REQUIRE(both.test.x == s.test.x);
}
