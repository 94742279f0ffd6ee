// Interop: the weights live in a buffer owned by someone else (here a toy "inference engine" that
// allocated one flat float array, as libtorch's data_ptr() or an engine's weight blob would give).
// stochgrad borrows the memory as (pointer, length) tensors, puts the bias in a group without
// weight decay, and fine-tunes through a callback that runs the engine's forward pass. Nothing
// is copied and no gradient or noise buffer is allocated.
#include <stochgrad/stochgrad.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

namespace {

// A linear model y = W x + b over a fixed synthetic dataset; weights in one malloc'ed blob.
class toy_engine {
 public:
  static constexpr std::size_t in = 16, out = 4, rows = 256;
  toy_engine() : blob_(static_cast<float*>(std::calloc(in * out + out, sizeof(float))), &std::free) {
    // Data from a hidden teacher, via stochgrad's counter-based noise (any RNG would do).
    for (std::size_t i = 0; i < rows * in; ++i) x_.push_back(stochgrad::noise_at<stochgrad::gaussian>({1, 0, 0}, i));
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t o = 0; o < out; ++o) {
        float y = 0.1f * static_cast<float>(o);
        for (std::size_t i = 0; i < in; ++i) {
          y += x_[r * in + i] * std::sin(static_cast<float>(o * in + i));
        }
        y_.push_back(y);
      }
    }
  }
  float* weights() { return blob_.get(); }              // out x in, row-major
  float* bias() { return blob_.get() + in * out; }      // out
  // The engine's own forward pass: mean squared error over the dataset.
  double forward_loss() const {
    const float* w = blob_.get();
    const float* b = w + in * out;
    double loss = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t o = 0; o < out; ++o) {
        double p = b[o];
        for (std::size_t i = 0; i < in; ++i) p += static_cast<double>(w[o * in + i]) * x_[r * in + i];
        loss += (p - y_[r * out + o]) * (p - y_[r * out + o]);
      }
    }
    return loss / (rows * out);
  }

 private:
  std::unique_ptr<float, decltype(&std::free)> blob_;
  std::vector<float> x_, y_;
};

}  // namespace

int main() {
  toy_engine engine;

  stochgrad::parameters<float> params;                     // group 0: weights, default options
  const std::size_t no_decay = params.add_group({.name = "bias", .decay = false});
  params.add(engine.weights(), toy_engine::in * toy_engine::out);      // tensor 0 -> noise stream 0
  params.add(engine.bias(), toy_engine::out, no_decay);               // tensor 1 -> noise stream 1

  stochgrad::mezo<float> mezo(std::move(params), stochgrad::optim::sgd<>({.lr = 0.02, .weight_decay = 1e-4}),
                              stochgrad::zo::two_point<stochgrad::gaussian>({.eps = 1e-3, .seed = 11}));
  const double before = engine.forward_loss();
  for (int k = 0; k < 4000; ++k) {
    mezo.step([&] { return engine.forward_loss(); });  // the stepper perturbs the engine's memory in place
  }
  const double after = engine.forward_loss();
  fmt::print("engine loss {:.4f} -> {:.3e} after {} MeZO steps\n", before, after, mezo.steps());
  return after < 0.01 * before ? 0 : 1;
}
