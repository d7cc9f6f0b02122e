/// @file
/// @brief Where newly built parameters live (e.g. the meta device: shapes without storage) and
///        parameter/tensor counting that works on such models.
///
/// LibTorch 1.13 has no "default device" for module construction, so the cxrl layers
/// (`layers.hpp`, `lora_linear.hpp`) ask `param_options()` for the options of every parameter they
/// create. `ParamScope scope(torch::Device("meta"));` then builds a full-size model (e.g. the 860M-
/// parameter SD v1.5 UNet) without allocating its weights, which is enough to count parameters and
/// check checkpoint key sets.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace cxrl::nn {

namespace detail {
inline torch::TensorOptions& param_options_slot() {
  thread_local torch::TensorOptions opts = torch::TensorOptions().dtype(torch::kFloat32);
  return opts;
}
}  // namespace detail

/// @brief Options (device, dtype) for parameters created by cxrl layers on this thread.
inline torch::TensorOptions param_options() { return detail::param_options_slot(); }

/// @brief RAII: parameters created by cxrl layers in this scope get @p device / @p dtype.
class ParamScope {
 public:
  /// @brief Sets the construction device (and dtype) until the scope ends.
  /// @param device device of new parameters, e.g. `torch::Device("meta")`
  /// @param dtype floating dtype of new parameters
  explicit ParamScope(torch::Device device, torch::ScalarType dtype = torch::kFloat32)
      : saved_(detail::param_options_slot()) {
    detail::param_options_slot() = torch::TensorOptions().device(device).dtype(dtype);
  }
  ~ParamScope() { detail::param_options_slot() = saved_; }
  ParamScope(const ParamScope&) = delete;
  ParamScope& operator=(const ParamScope&) = delete;

 private:
  torch::TensorOptions saved_;
};

/// @brief Counts the floating-point operations of matrix products and convolutions run by cxrl layers on
///        this thread while in scope (2 per multiply-add; norms, activations and element-wise ops are not
///        counted). Used by benchmarks to report achieved GFLOP/s; costs one branch per layer call otherwise.
class FlopCounter {
 public:
  FlopCounter() : saved_(slot()) { slot() = this; }
  ~FlopCounter() { slot() = saved_; }
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;
  /// @brief FLOPs counted so far.
  double flops() const { return flops_; }
  /// @brief Adds @p f FLOPs to the innermost active counter, if any.
  /// @param f floating-point operations
  static void add(double f) {
    if (auto* c = slot()) c->flops_ += f;
  }
  /// @brief Whether a counter is active on this thread.
  static bool active() { return slot() != nullptr; }

 private:
  static FlopCounter*& slot() {
    thread_local FlopCounter* c = nullptr;
    return c;
  }
  FlopCounter* saved_;
  double flops_ = 0;
};

/// @brief Sizes of a module's state: counts only, no tensor data read (works on meta tensors).
struct ParameterCount {
  int64_t parameters = 0;        ///< elements over all parameters
  int64_t parameter_tensors = 0; ///< number of parameter tensors
  int64_t buffer_elements = 0;   ///< elements over all buffers
  int64_t state_tensors = 0;     ///< parameters + buffers, i.e. state_dict entries
};

/// @brief Counts parameters and state-dict tensors of @p m (recursively).
/// @param m the module
inline ParameterCount count_parameters(const torch::nn::Module& m) {
  ParameterCount c;
  for (const auto& p : m.named_parameters(true)) {
    c.parameters += p.value().numel();
    ++c.parameter_tensors;
  }
  for (const auto& b : m.named_buffers(true)) {
    c.buffer_elements += b.value().numel();
    ++c.state_tensors;
  }
  c.state_tensors += c.parameter_tensors;
  return c;
}

}  // namespace cxrl::nn
