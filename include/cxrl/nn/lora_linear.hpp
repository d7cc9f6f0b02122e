/// @file
/// @brief Linear layer with an optional low-rank adapter (LoRA), used for every attention projection.
///
/// LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3):
/// h = W x + b + (alpha / r) · B A x, with A ∈ R^{r×in}, B ∈ R^{out×r}, B initialised to zero so the
/// adapted layer starts equal to the base layer. The base parameters keep nn.Linear's key names
/// ("weight", "bias"), so a checkpoint written for `torch.nn.Linear` loads without renaming; the adapter
/// registers "lora_A.weight" and "lora_B.weight" (the peft naming).
#pragma once

#include <cxrl/nn/meta.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace cxrl::nn {

/// @brief `nn.Linear` with an optional LoRA branch that can be enabled, scaled, merged and unmerged.
class LoraLinearImpl : public torch::nn::Module {
 public:
  /// @brief Creates the base layer with nn.Linear's default initialisation (uniform ±1/sqrt(in)).
  /// @param in_features input width
  /// @param out_features output width
  /// @param with_bias whether the base layer has a bias
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool with_bias)
      : in_features_(in_features), out_features_(out_features) {
    if (in_features <= 0 || out_features <= 0)
      throw std::invalid_argument("LoraLinear: in_features and out_features must be positive, got " +
                                  std::to_string(in_features) + ", " + std::to_string(out_features));
    // kaiming_uniform(a=sqrt(5)) on [out,in] reduces to U(-1/sqrt(in), 1/sqrt(in)), as in torch.nn.Linear.
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    // Built on param_options()' device (see meta.hpp), so whole models can be built on the meta device.
    weight = register_parameter("weight", torch::empty({out_features, in_features}, param_options()).uniform_(-bound, bound));
    if (with_bias) bias = register_parameter("bias", torch::empty({out_features}, param_options()).uniform_(-bound, bound));
  }

  /// @brief W x + b, plus scale · B(A(x)) when an adapter is present, enabled and not merged.
  /// @param x input [..., in_features]
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::linear(x, weight, bias);
    const bool branch = lora_A && enabled_ && !merged_;
    if (FlopCounter::active())
      FlopCounter::add(2.0 * static_cast<double>(x.numel()) *
                       (static_cast<double>(out_features_) +
                        (branch ? static_cast<double>(rank_) * (1.0 + static_cast<double>(out_features_) / in_features_) : 0.0)));
    if (branch) {
      // A scale of 1 (alpha = r, CXRL's setting) multiplies exactly, so it is skipped; without autograd the sum is
      // formed in place (linear's 3-D output is a view, which autograd would have to rebase). Each saves a pass
      // over the output, which on CPU is a few % of a sampling step.
      //
      // The down-projection has only r output columns, and for such narrow GEMMs OpenBLAS (Cooperlake and
      // Haswell kernels, measured on a Zen 5 EPYC) gives each row a few ulps that depend on how many rows the
      // call holds. One product per sample (bmm over the leading dimension) makes every row's result independent
      // of the batch it is in, so the training pass (minibatches of 2 × train_batch_size) reproduces the
      // log-probabilities the sampler recorded (2 × batch_size) bit for bit.
      auto down = x.dim() == 3 ? torch::bmm(x, lora_A->weight.t().unsqueeze(0).expand({x.size(0), in_features_, rank_}))
                               : lora_A(x);
      auto d = lora_B(down);
      if (scale_ != 1.0) d = d * scale_;
      y = torch::GradMode::is_enabled() ? y + d : y.add_(d);
    }
    return y;
  }

  /// @brief Adds the adapter: "lora_A" (in→r, no bias, N(0, (1/r)²)) and "lora_B" (r→out, zeros).
  /// @param rank adapter rank r > 0
  /// @param alpha scaling numerator; the branch is multiplied by alpha / r
  /// @param gen optional generator for A's initial values (reproducible adapters)
  void add_lora(int64_t rank, double alpha, std::optional<at::Generator> gen = std::nullopt) {
    if (rank <= 0) throw std::invalid_argument("LoraLinear::add_lora: rank must be > 0, got " + std::to_string(rank));
    if (lora_A) throw std::logic_error("LoraLinear::add_lora: this layer already has a LoRA adapter");
    const auto opts = weight.options();
    lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_features_, rank).bias(false)));
    lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out_features_).bias(false)));
    lora_A->to(opts.device(), opts.dtype().toScalarType());
    lora_B->to(opts.device(), opts.dtype().toScalarType());
    torch::NoGradGuard ng;
    // peft's init for A is kaiming-uniform; the cxrl contract uses N(0, 1/r²) (the Microsoft loralib default
    // for embeddings); B = 0 keeps the initial output identical to the base layer either way.
    auto a = gen ? torch::randn({rank, in_features_}, *gen, torch::TensorOptions().dtype(torch::kFloat32))
                 : torch::randn({rank, in_features_}, torch::TensorOptions().dtype(torch::kFloat32));
    a = a / static_cast<double>(rank);
    lora_A->weight.copy_(a);
    lora_B->weight.zero_();
    rank_ = rank;
    scale_ = alpha / static_cast<double>(rank);
  }

  /// @brief Whether an adapter was added.
  bool has_lora() const { return static_cast<bool>(lora_A); }
  /// @brief Switches the adapter branch on or off (off = the frozen base layer, bit-exact).
  /// @param on new state
  void set_lora_enabled(bool on) {
    if (merged_ && !on)
      throw std::logic_error("LoraLinear::set_lora_enabled(false): the adapter is merged into the weight; unmerge() first");
    enabled_ = on;
  }
  /// @brief Whether the adapter branch is applied.
  bool lora_enabled() const { return enabled_; }
  /// @brief Sets the branch multiplier (alpha / r after add_lora).
  /// @param s new scale
  void set_lora_scale(double s) {
    if (merged_) throw std::logic_error("LoraLinear::set_lora_scale: unmerge() before changing the scale");
    scale_ = s;
  }
  /// @brief The branch multiplier.
  double lora_scale() const { return scale_; }
  /// @brief The adapter rank (0 without adapter).
  int64_t lora_rank() const { return rank_; }

  /// @brief Folds the adapter into the base weight for inference: W ← W + scale · B A.
  void merge() {
    if (!lora_A) throw std::logic_error("LoraLinear::merge: no LoRA adapter to merge");
    if (merged_) return;
    if (!enabled_) throw std::logic_error("LoraLinear::merge: adapter is disabled; enable it before merging");
    torch::NoGradGuard ng;
    weight.add_(delta());
    merged_ = true;
  }
  /// @brief Removes a merged adapter from the base weight: W ← W − scale · B A.
  void unmerge() {
    if (!merged_) return;
    torch::NoGradGuard ng;
    weight.sub_(delta());
    merged_ = false;
  }
  /// @brief Whether the adapter is currently folded into the weight.
  bool merged() const { return merged_; }

  /// @brief Input width.
  int64_t in_features() const { return in_features_; }
  /// @brief Output width.
  int64_t out_features() const { return out_features_; }

  /// @brief Base weight [out, in] (key "weight").
  torch::Tensor weight;
  /// @brief Base bias [out] (key "bias"), undefined when constructed without bias.
  torch::Tensor bias;
  /// @brief Adapter down-projection (key "lora_A"), null until add_lora.
  torch::nn::Linear lora_A{nullptr};
  /// @brief Adapter up-projection (key "lora_B"), null until add_lora.
  torch::nn::Linear lora_B{nullptr};

 private:
  torch::Tensor delta() const {
    // Computed in float64 so merge/unmerge round-trips well inside 1e-5 even for float32 weights.
    auto d = torch::matmul(lora_B->weight.to(torch::kFloat64), lora_A->weight.to(torch::kFloat64)) * scale_;
    return d.to(weight.scalar_type());
  }

  int64_t in_features_;
  int64_t out_features_;
  int64_t rank_ = 0;
  double scale_ = 1.0;
  bool enabled_ = true;
  bool merged_ = false;
};

/// @brief Holder for LoraLinearImpl.
TORCH_MODULE(LoraLinear);

}  // namespace cxrl::nn
