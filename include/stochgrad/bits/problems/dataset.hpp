// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Small classification datasets: CSV loading (the breast-cancer and digits files shipped in
/// examples/data), a seeded deterministic train/test split and per-feature standardisation.
///
/// The library never assumes where the data lives: every loader takes a path. (stochgrad's own
/// tests and harness pass one built from the compile definition STOCHGRAD_DATA_DIR.)
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"

namespace stochgrad::problems {

/// A data file is missing, unreadable or malformed. The message names the file, and for a
/// malformed file the line and what was wrong with it.
class data_error : public error {
 public:
  using error::error;
};

/// A labelled dataset held in memory: `rows` samples of `features` values (row-major) and an
/// integer class label per sample.
template <real_scalar T>
struct dataset {
  std::size_t rows = 0;                   ///< number of samples
  std::size_t features = 0;               ///< values per sample
  std::size_t classes = 0;                ///< labels lie in [0, classes)
  std::vector<T> x;                       ///< rows x features, row-major
  std::vector<std::int32_t> y;            ///< labels, one per row
  std::vector<std::string> class_names;   ///< names of the classes (may be empty)

  /// The features of sample i.
  std::span<const T> row(std::size_t i) const noexcept { return {x.data() + i * features, features}; }
  /// Number of samples of each class.
  std::vector<std::size_t> class_counts() const {
    std::vector<std::size_t> c(classes, 0);
    for (std::int32_t v : y) ++c[static_cast<std::size_t>(v)];
    return c;
  }
};

/// How a classification CSV file is laid out: one sample per line, comma-separated numbers,
/// the integer label in the last column.
struct csv_layout {
  /// The first line is a header "rows,features,class name 0,class name 1,..." (the layout of the
  /// files scikit-learn ships); rows and features are then checked against the data.
  bool counts_header = false;
  /// Expected number of features (0: take it from the header, or from the first data line).
  std::size_t features = 0;
  /// Number of classes (0: from the header's names, or the largest label + 1).
  std::size_t classes = 0;
};

namespace csv_detail {

inline std::string read_whole_file(const std::string& path, const char* what) {
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw data_error(std::string(what) + ": cannot open '" + path + "': " + std::strerror(errno));
  }
  std::string s;
  char buf[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f);
    s.append(buf, n);
    if (n < sizeof buf) break;
  }
  const bool bad = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (bad) throw data_error(std::string(what) + ": cannot read '" + path + "': " + std::strerror(err));
  return s;
}

inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

inline void split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t b = 0;
  for (;;) {
    const std::size_t c = line.find(',', b);
    out.push_back(trim(line.substr(b, c == std::string_view::npos ? std::string_view::npos : c - b)));
    if (c == std::string_view::npos) break;
    b = c + 1;
  }
}

inline bool parse_double(std::string_view s, double& v) noexcept {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(v);
}

inline bool parse_count(std::string_view s, std::size_t& v) noexcept {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

inline std::string where(const char* what, const std::string& path, std::size_t line) {
  return std::string(what) + ": " + path + ":" + std::to_string(line) + ": ";
}

// splitmix64 (Steele, Lea, Flood 2014): a small portable generator for the split permutation.
inline std::uint64_t splitmix64(std::uint64_t& s) noexcept {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace csv_detail

/// Loads a classification CSV file (see `csv_layout`).
/// @param path    file to read
/// @param layout  header and shape expectations
/// @param what    name used in error messages
/// @throws data_error if the file cannot be opened or read, is gzip-compressed, is empty, or a
///         line has the wrong number of fields, a field that is not a finite number, a label
///         that is not an integer in [0, classes), or the header's counts disagree with the data.
template <real_scalar T>
dataset<T> load_classification_csv(const std::string& path, const csv_layout& layout = {},
                                   const char* what = "load_classification_csv") {
  const std::string text = csv_detail::read_whole_file(path, what);
  if (text.size() >= 2 && static_cast<unsigned char>(text[0]) == 0x1f && static_cast<unsigned char>(text[1]) == 0x8b) {
    throw data_error(std::string(what) + ": '" + path + "' is gzip-compressed; decompress it first (gunzip)");
  }
  dataset<T> d;
  d.features = layout.features;
  d.classes = layout.classes;
  std::size_t header_rows = 0;
  bool header_pending = layout.counts_header;
  std::vector<std::string_view> fields;
  std::int32_t max_label = -1;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string_view line = csv_detail::trim(std::string_view(text).substr(pos, eol - pos));
    pos = eol + 1;
    ++line_no;
    if (line.empty()) continue;
    csv_detail::split_fields(line, fields);
    if (header_pending) {
      header_pending = false;
      std::size_t hf = 0;
      if (fields.size() < 3 || !csv_detail::parse_count(fields[0], header_rows) || !csv_detail::parse_count(fields[1], hf)) {
        throw data_error(csv_detail::where(what, path, line_no) +
                         "expected a header 'rows,features,class names...', found '" + std::string(line) + "'");
      }
      if (d.features != 0 && hf != d.features) {
        throw data_error(csv_detail::where(what, path, line_no) + "header announces " + std::to_string(hf) +
                         " features, expected " + std::to_string(d.features));
      }
      d.features = hf;
      for (std::size_t k = 2; k < fields.size(); ++k) d.class_names.emplace_back(fields[k]);
      if (d.classes != 0 && d.class_names.size() != d.classes) {
        throw data_error(csv_detail::where(what, path, line_no) + "header names " + std::to_string(d.class_names.size()) +
                         " classes, expected " + std::to_string(d.classes));
      }
      d.classes = d.class_names.size();
      continue;
    }
    if (d.features == 0) {
      if (fields.size() < 2) {
        throw data_error(csv_detail::where(what, path, line_no) + "expected features and a label, found one field");
      }
      d.features = fields.size() - 1;
    }
    if (fields.size() != d.features + 1) {
      throw data_error(csv_detail::where(what, path, line_no) + "expected " + std::to_string(d.features + 1) +
                       " comma-separated values (" + std::to_string(d.features) + " features and a label), found " +
                       std::to_string(fields.size()));
    }
    for (std::size_t k = 0; k < fields.size(); ++k) {
      double v = 0.0;
      if (!csv_detail::parse_double(fields[k], v)) {
        throw data_error(csv_detail::where(what, path, line_no) + "field " + std::to_string(k + 1) + " ('" +
                         std::string(fields[k]) + "') is not a finite number");
      }
      if (k + 1 < fields.size()) {
        d.x.push_back(static_cast<T>(v));
      } else {
        const bool integral = v == std::floor(v) && v >= 0.0 && v < 2147483647.0;
        if (!integral || (d.classes != 0 && v >= static_cast<double>(d.classes))) {
          throw data_error(csv_detail::where(what, path, line_no) + "label '" + std::string(fields[k]) +
                           "' is not an integer in [0, " +
                           (d.classes != 0 ? std::to_string(d.classes) : std::string("2^31")) + ")");
        }
        const auto label = static_cast<std::int32_t>(v);
        max_label = std::max(max_label, label);
        d.y.push_back(label);
      }
    }
    ++d.rows;
  }
  if (header_pending) throw data_error(std::string(what) + ": '" + path + "' is empty (expected a header line)");
  if (d.rows == 0) throw data_error(std::string(what) + ": '" + path + "' contains no data rows");
  if (layout.counts_header && header_rows != d.rows) {
    throw data_error(std::string(what) + ": '" + path + "': header announces " + std::to_string(header_rows) +
                     " rows but the file has " + std::to_string(d.rows) + " (truncated or corrupt?)");
  }
  if (d.classes == 0) d.classes = static_cast<std::size_t>(max_label) + 1;
  return d;
}

/// Loads Breast Cancer Wisconsin (Diagnostic) as shipped in examples/data/breast_cancer.csv:
/// header `569,30,malignant,benign`, 30 features, label 0 = malignant, 1 = benign.
/// @throws data_error (see load_classification_csv), also if the file has not 30 features and 2
///         classes.
template <real_scalar T>
dataset<T> load_breast_cancer(const std::string& path) {
  return load_classification_csv<T>(path, csv_layout{true, 30, 2}, "load_breast_cancer");
}

/// Loads the optical handwritten digits as shipped in examples/data/digits.csv: no header,
/// 64 pixel counts (8x8 image, 0..16) and the digit 0..9 per line. Class names are "0".."9".
/// @throws data_error (see load_classification_csv), also if a line has not 65 fields or a label
///         is outside 0..9.
template <real_scalar T>
dataset<T> load_digits(const std::string& path) {
  dataset<T> d = load_classification_csv<T>(path, csv_layout{false, 64, 10}, "load_digits");
  for (int k = 0; k < 10; ++k) d.class_names.push_back(std::to_string(k));
  return d;
}

/// A train part and a test part of one dataset.
template <real_scalar T>
struct train_test {
  dataset<T> train;  ///< training samples
  dataset<T> test;   ///< held-out samples
};

/// Seeded deterministic split: a Fisher-Yates permutation driven by splitmix64(seed) (integers
/// drawn by modulo, bias below rows/2^64) puts round(test_fraction * rows) samples in
/// the test part; both parts keep the original row order. The same (data, fraction, seed) gives
/// the same split on every platform.
/// @throws invalid_argument unless 0 < test_fraction < 1 and both parts are non-empty.
template <real_scalar T>
train_test<T> train_test_split(const dataset<T>& d, double test_fraction = 0.2, std::uint64_t seed = 0) {
  detail::require(test_fraction > 0.0 && test_fraction < 1.0, "train_test_split", "test_fraction", test_fraction,
                  "in (0, 1)");
  const auto n_test = static_cast<std::size_t>(std::llround(test_fraction * static_cast<double>(d.rows)));
  detail::require(n_test >= 1 && n_test < d.rows, "train_test_split", "round(test_fraction * rows)",
                  static_cast<double>(n_test), "in [1, rows - 1]");
  std::vector<std::size_t> perm(d.rows);
  for (std::size_t i = 0; i < d.rows; ++i) perm[i] = i;
  std::uint64_t state = seed;
  for (std::size_t i = d.rows - 1; i > 0; --i) {
    const std::uint64_t r = csv_detail::splitmix64(state) % (static_cast<std::uint64_t>(i) + 1);
    std::swap(perm[i], perm[static_cast<std::size_t>(r)]);
  }
  std::vector<std::size_t> test_rows(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(n_test));
  std::vector<std::size_t> train_rows(perm.begin() + static_cast<std::ptrdiff_t>(n_test), perm.end());
  std::sort(test_rows.begin(), test_rows.end());
  std::sort(train_rows.begin(), train_rows.end());
  auto take = [&d](const std::vector<std::size_t>& rows) {
    dataset<T> p;
    p.rows = rows.size();
    p.features = d.features;
    p.classes = d.classes;
    p.class_names = d.class_names;
    p.x.reserve(rows.size() * d.features);
    p.y.reserve(rows.size());
    for (std::size_t r : rows) {
      const auto src = d.row(r);
      p.x.insert(p.x.end(), src.begin(), src.end());
      p.y.push_back(d.y[r]);
    }
    return p;
  };
  return {take(train_rows), take(test_rows)};
}

/// Per-feature standardisation x' = (x - mean) / std with the statistics of one dataset (the
/// training split): mean and population standard deviation computed in double; a feature whose
/// standard deviation is below 1e-12 times (1 + |mean|) (constant, e.g. a digits border pixel)
/// is only centred.
template <real_scalar T>
class standardizer {
 public:
  /// An empty standardizer (features() == 0).
  standardizer() = default;
  /// Fits mean and standard deviation on `train`. @throws invalid_argument if train is empty.
  explicit standardizer(const dataset<T>& train) : mean_(train.features, 0.0), scale_(train.features, 1.0) {
    detail::require(train.rows >= 1, "standardizer", "rows", 0.0, ">= 1");
    const double n = static_cast<double>(train.rows);
    for (std::size_t i = 0; i < train.rows; ++i) {
      for (std::size_t j = 0; j < train.features; ++j) mean_[j] += static_cast<double>(train.x[i * train.features + j]);
    }
    for (double& m : mean_) m /= n;
    std::vector<double> ss(train.features, 0.0);
    for (std::size_t i = 0; i < train.rows; ++i) {
      for (std::size_t j = 0; j < train.features; ++j) {
        const double c = static_cast<double>(train.x[i * train.features + j]) - mean_[j];
        ss[j] += c * c;
      }
    }
    for (std::size_t j = 0; j < train.features; ++j) {
      const double sd = std::sqrt(ss[j] / n);
      scale_[j] = sd > 1e-12 * (1.0 + std::abs(mean_[j])) ? sd : 1.0;
    }
  }

  /// Number of features fitted.
  std::size_t features() const noexcept { return mean_.size(); }
  /// Per-feature means.
  std::span<const double> mean() const noexcept { return mean_; }
  /// Per-feature divisors (standard deviation, or 1 for constant features).
  std::span<const double> scale() const noexcept { return scale_; }

  /// Standardises `d` in place. @throws size_mismatch if d has another number of features.
  void apply(dataset<T>& d) const {
    detail::require_same_size("standardizer::apply", "dataset features", d.features, "fitted features", features());
    for (std::size_t i = 0; i < d.rows; ++i) {
      for (std::size_t j = 0; j < d.features; ++j) {
        T& v = d.x[i * d.features + j];
        v = static_cast<T>((static_cast<double>(v) - mean_[j]) / scale_[j]);
      }
    }
  }

 private:
  std::vector<double> mean_;
  std::vector<double> scale_;
};

/// `train_test_split` followed by standardisation of both parts with the training statistics.
template <real_scalar T>
train_test<T> standardized_split(const dataset<T>& d, double test_fraction = 0.2, std::uint64_t seed = 0) {
  train_test<T> s = train_test_split(d, test_fraction, seed);
  const standardizer<T> st(s.train);
  st.apply(s.train);
  st.apply(s.test);
  return s;
}

}  // namespace stochgrad::problems
