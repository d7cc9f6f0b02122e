/// @file
/// @brief The arithmetic precision of a model's forward pass: fp32, or bf16 through LibTorch's autocast, chosen
///        per machine by measurement.
///
/// Why autocast and not bf16 weights: the trainable adapters and their optimiser state must stay fp32 (a bf16
/// Adam step of 1e-4·lr on a weight of O(1) rounds to nothing), and the frozen weights in fp32 keep the anchor
/// what it was trained as. Autocast casts each matrix product's and convolution's operands to bf16 and leaves
/// every other op in the precision of its inputs; cxrl's GroupNorm and LayerNorm run in fp32 on such inputs
/// (the fp32 list of PyTorch's CUDA autocast, `torch/csrc/autograd/autocast_mode.cpp`). Whether bf16 pays
/// depends on the CPU: with AMX tiles (Sapphire Rapids) oneDNN's bf16 GEMM is several times fp32's, with only
/// AVX-512 BF16 (Zen 4, or a Xeon whose hypervisor hides AMX) it is about as fast or slower once the casts are
/// counted. So `Precision::automatic` is settled by timing the model itself (fastest_precision()).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::nn {

/// @brief The precision of matrix products and convolutions in a forward pass.
enum class Precision {
  automatic,  ///< whichever of fp32 and bf16 runs the model faster here (fastest_precision())
  fp32,       ///< everything in float32
  bf16,       ///< matrix products and convolutions in bfloat16 (autocast); norms, softmax inputs' sums and all
              ///< log-probabilities stay float32
};

/// @brief "auto", "fp32" or "bf16".
/// @param p a precision
inline std::string_view to_string(Precision p) {
  switch (p) {
    case Precision::automatic: return "auto";
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
  }
  throw std::invalid_argument("cxrl::nn::to_string: invalid Precision value " + std::to_string(static_cast<int>(p)));
}

/// @brief Parses "auto", "fp32" or "bf16" (the command-line and config.json spelling).
/// @param s the text
/// @param where what is being parsed (a flag or file and key), named in the error
/// @throws std::invalid_argument naming @p where and the accepted values
inline Precision parse_precision(std::string_view s, std::string_view where = "precision") {
  for (auto p : {Precision::automatic, Precision::fp32, Precision::bf16})
    if (s == to_string(p)) return p;
  throw std::invalid_argument(std::string(where) + ": expected auto, fp32 or bf16, got \"" + std::string(s) + "\"");
}

/// @brief RAII: matrix products and convolutions on @p device run in @p precision until the scope ends
///        (LibTorch autocast to bfloat16 for Precision::bf16; nothing for fp32). Nests: the previous state comes back.
class Autocast {
 public:
  /// @brief Enters the precision.
  /// @param precision fp32 or bf16 (automatic must be resolved first, with fastest_precision())
  /// @param device where the model runs (CPU autocast or CUDA autocast)
  Autocast(Precision precision, const torch::Device& device) : cuda_(device.is_cuda()) {
    if (precision == Precision::automatic)
      throw std::invalid_argument("cxrl::nn::Autocast: resolve Precision::automatic with fastest_precision() first");
    was_enabled_ = cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
    was_dtype_ = cuda_ ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
    const bool on = precision == Precision::bf16;
    if (cuda_) {
      at::autocast::set_enabled(on);
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    } else {
      at::autocast::set_cpu_enabled(on);
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    }
    if (on) at::autocast::increment_nesting();
    counted_ = on;
  }
  ~Autocast() {
    // The cast cache holds bf16 copies of trainable leaves for one forward; it is dropped when the outermost
    // scope ends, as torch.autocast does, so an optimizer step is never hidden behind a stale copy.
    if (counted_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(was_enabled_);
      at::autocast::set_autocast_gpu_dtype(was_dtype_);
    } else {
      at::autocast::set_cpu_enabled(was_enabled_);
      at::autocast::set_autocast_cpu_dtype(was_dtype_);
    }
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool cuda_;
  bool was_enabled_ = false;
  bool counted_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

/// @brief fastest_precision()'s measurement.
struct PrecisionTiming {
  Precision chosen = Precision::fp32;  ///< the faster one (fp32 unless bf16 wins by the margin)
  double fp32_s = 0;                   ///< seconds per call in fp32 (best of the repeats)
  double bf16_s = 0;                   ///< seconds per call in bf16 (best of the repeats)
};

/// @brief Resolves Precision::automatic by timing @p run (the model's own forward pass at its working batch size,
///        in the precision it is given) in fp32 and in bf16: best of @p repeats calls each, after one warm-up call.
///
/// bf16 is chosen only when it is at least @p margin faster: its samples differ from fp32's by bf16 rounding,
/// which is worth taking for a clear gain, not for a tie inside timing noise.
/// @param run `run(Precision)` runs the model once in that precision (under no-grad, say); its result is discarded
/// @param device where it runs (CUDA work is synchronised before each clock reading)
/// @param repeats timed calls per precision
/// @param margin the fraction by which bf16 must beat fp32
template <class F>
PrecisionTiming fastest_precision(F&& run, const torch::Device& device, int repeats = 3, double margin = 0.1) {
  auto best_of = [&](Precision p) {
    run(p);
    double best = 1e300;
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      run(p);
      if (device.is_cuda()) torch::cuda::synchronize();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  PrecisionTiming t;
  t.fp32_s = best_of(Precision::fp32);
  t.bf16_s = best_of(Precision::bf16);
  t.chosen = t.bf16_s < (1.0 - margin) * t.fp32_s ? Precision::bf16 : Precision::fp32;
  return t;
}

}  // namespace cxrl::nn
