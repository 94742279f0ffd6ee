// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief Reader of the idx format (LeCun's MNIST files, also Fashion-MNIST): unsigned-byte
/// tensors from an uncompressed byte buffer or file, and a labelled dataset from an images file
/// and a labels file.
///
/// The format (big-endian throughout): a magic number `00 00 TT DD` (two zero bytes, the element
/// type TT, the number of dimensions DD), then DD 32-bit sizes n_0 .. n_{DD-1}, then
/// n_0 x ... x n_{DD-1} elements in row-major order. Only TT = 0x08 (unsigned byte, the type of
/// every MNIST-family file) is read. The library does not decompress: pass the bytes of an
/// uncompressed file (`gunzip` it, or decompress in the caller, e.g. with zlib as the shoot-out
/// harness does); a gzip stream is recognised and refused with a message saying so.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "dataset.hpp"

namespace stochgrad::problems {

/// An unsigned-byte tensor read from an idx file: its sizes and its elements, row-major.
struct idx_array {
  std::vector<std::size_t> shape;    ///< n_0, ..., n_{d-1} (d = shape.size() >= 1)
  std::vector<std::uint8_t> values;  ///< n_0 x ... x n_{d-1} elements, last index fastest

  /// Number of elements: the product of `shape` (1 for an empty shape).
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t s : shape) n *= s;
    return n;
  }
};

/// Parses the bytes of an uncompressed idx file.
/// @param bytes  the whole file
/// @param name   the file's name, used in every error message
/// @param dims   expected number of dimensions (0: any number >= 1)
/// @return the tensor; `values.size() == product of shape == bytes.size() - 4 - 4 dims`
/// @throws data_error naming `name` when: the buffer is shorter than the magic number or the
///         header (truncated); it starts with the gzip magic 1f 8b (compressed); the first two
///         bytes are not zero (bad magic); the element type is not 0x08; the number of
///         dimensions is 0 or differs from `dims`; the product of the sizes overflows; the
///         elements are fewer than the sizes announce (truncated) or more (trailing bytes).
inline idx_array parse_idx(std::span<const std::uint8_t> bytes, const std::string& name, std::size_t dims = 0) {
  const auto fail = [&name](const std::string& why) { throw data_error("idx file '" + name + "': " + why); };
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
    fail("is gzip-compressed; decompress it first (gunzip, or zlib in the caller)");
  }
  if (bytes.size() < 4) fail("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the 4-byte magic number");
  if (bytes[0] != 0 || bytes[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%02x %02x", bytes[0], bytes[1]);
    fail(std::string("bad magic number: starts with ") + hex + ", expected 00 00");
  }
  if (bytes[2] != 0x08) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", bytes[2]);
    fail(std::string("element type ") + hex + " is not supported (only unsigned byte, 0x08)");
  }
  const std::size_t d = bytes[3];
  if (d == 0) fail("announces 0 dimensions");
  if (dims != 0 && d != dims) {
    fail("has " + std::to_string(d) + " dimension" + (d == 1 ? "" : "s") + ", expected " + std::to_string(dims));
  }
  const std::size_t header = 4 + 4 * d;
  if (bytes.size() < header) {
    fail("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the " + std::to_string(header) +
         "-byte header of " + std::to_string(d) + " dimensions");
  }
  idx_array a;
  a.shape.resize(d);
  std::size_t n = 1;
  for (std::size_t k = 0; k < d; ++k) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * k;
    a.shape[k] = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    if (a.shape[k] != 0 && n > std::numeric_limits<std::size_t>::max() / a.shape[k]) {
      fail("the product of the sizes overflows std::size_t");
    }
    n *= a.shape[k];
  }
  const std::size_t have = bytes.size() - header;
  if (have != n) {
    std::string sizes;
    for (std::size_t s : a.shape) sizes += (sizes.empty() ? "" : " x ") + std::to_string(s);
    fail(std::string(have < n ? "truncated" : "has trailing bytes") + ": the header announces " + sizes + " = " +
         std::to_string(n) + " elements, the file holds " + std::to_string(have));
  }
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

/// Reads an uncompressed idx file (see `parse_idx`).
/// @throws data_error naming `path` when it cannot be opened or read, or on any `parse_idx` error.
inline idx_array read_idx_file(const std::string& path, std::size_t dims = 0) {
  const std::string s = csv_detail::read_whole_file(path, "read_idx_file");
  return parse_idx(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()), path, dims);
}

/// A labelled dataset from an idx images tensor (n x h x w, or any n x ...) and an idx labels
/// vector (n): row i holds the features x_ij = scale * pixel_ij (row-major pixels, j < h w) and
/// the label y_i. `classes` is `class_names.size()` when names are given, else max label + 1.
/// @param images       the images, n x ... (e.g. n x 28 x 28)
/// @param labels       the labels, n
/// @param scale        factor applied to every pixel (1/255 maps bytes to [0, 1])
/// @param class_names  names of the classes by label (empty: unnamed)
/// @param images_name, labels_name  names for the error messages
/// @throws data_error naming the files when the images have fewer than 2 dimensions, the labels
///         not exactly 1, their first sizes differ, there are no rows, or a label is >= the
///         number of class names given.
template <real_scalar T>
dataset<T> idx_classification(const idx_array& images, const idx_array& labels, double scale = 1.0 / 255.0,
                              std::vector<std::string> class_names = {},
                              const std::string& images_name = "images", const std::string& labels_name = "labels") {
  const auto fail = [&](const std::string& why) {
    throw data_error("idx dataset ('" + images_name + "', '" + labels_name + "'): " + why);
  };
  if (images.shape.size() < 2) fail("the images have " + std::to_string(images.shape.size()) + " dimensions, expected >= 2");
  if (labels.shape.size() != 1) fail("the labels have " + std::to_string(labels.shape.size()) + " dimensions, expected 1");
  if (images.shape[0] != labels.shape[0]) {
    fail(std::to_string(images.shape[0]) + " images but " + std::to_string(labels.shape[0]) + " labels");
  }
  if (images.shape[0] == 0) fail("no rows");
  dataset<T> d;
  d.rows = images.shape[0];
  d.features = images.values.size() / d.rows;
  d.x.resize(images.values.size());
  for (std::size_t k = 0; k < images.values.size(); ++k) d.x[k] = static_cast<T>(scale * images.values[k]);
  std::size_t max_label = 0;
  d.y.resize(d.rows);
  for (std::size_t i = 0; i < d.rows; ++i) {
    d.y[i] = labels.values[i];
    max_label = std::max<std::size_t>(max_label, labels.values[i]);
  }
  if (!class_names.empty() && max_label >= class_names.size()) {
    fail("label " + std::to_string(max_label) + " is outside the " + std::to_string(class_names.size()) + " named classes");
  }
  d.classes = class_names.empty() ? max_label + 1 : class_names.size();
  d.class_names = std::move(class_names);
  return d;
}

/// Reads an uncompressed images/labels pair of idx files (e.g. `train-images-idx3-ubyte` and
/// `train-labels-idx1-ubyte`: 3 and 1 dimensions) into a dataset (see `idx_classification`).
/// @throws data_error naming the file (see `read_idx_file`, `idx_classification`).
template <real_scalar T>
dataset<T> load_idx_classification(const std::string& images_path, const std::string& labels_path,
                                   double scale = 1.0 / 255.0, std::vector<std::string> class_names = {}) {
  return idx_classification<T>(read_idx_file(images_path, 3), read_idx_file(labels_path, 1), scale,
                               std::move(class_names), images_path, labels_path);
}

/// The ten Fashion-MNIST classes, by label (Xiao, Rasul and Vollgraf 2017).
inline std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

}  // namespace stochgrad::problems
