// Complete example of a cxrl::core::Policy (docs/concepts/policy.md): a small convolutional ε-model on
// one-channel images with a frozen base and a gated additive adapter (the trainable part).
// Compiled by tests/core/test_ddpo_trainer.cpp, which also trains it with DDPO.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <cxrl/core/concepts.hpp>

namespace cxrl_examples {

/// ε(x_t, t, c): three 3×3 convolutions over [x_t, t/1000, mean(c)] stacked as channels. As an adapter
/// (`zero_out`) it also has a per-pixel offset map; both start at zero so the adapter starts as a no-op.
struct ToyDenoiserImpl : torch::nn::Module {
  ToyDenoiserImpl(int64_t size, int64_t hidden, bool zero_out)
      : conv_in(register_module("conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, hidden, 3).padding(1)))),
        conv_mid(register_module("conv_mid", torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, hidden, 3).padding(1)))),
        conv_out(register_module("conv_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, 1, 3).padding(1)))),
        zero_out_(zero_out) {
    if (zero_out_) bias_map = register_parameter("bias_map", torch::zeros({1, 1, size, size}));
  }

  // Deterministic init from a generator (uniform ±1/sqrt(fan_in), as torch's default scale).
  void init(at::Generator& gen) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) {
      const double fan_in = p.dim() > 1 ? static_cast<double>(p[0].numel()) : 16.0;
      p.uniform_(-1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in), gen);
    }
    if (zero_out_) {  // an adapter starts as the identity, like LoRA's zero-initialised B
      conv_out->weight.zero_();
      conv_out->bias.zero_();
      bias_map.zero_();
    }
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    auto tmap = (t.to(x.dtype()) / 1000.0).view({b, 1, 1, 1}).expand({b, 1, h, w});
    auto cmap = c.mean({1, 2}).to(x.dtype()).view({b, 1, 1, 1}).expand({b, 1, h, w});
    auto y = torch::silu(conv_in(torch::cat({x, tmap, cmap}, 1)));
    y = torch::silu(conv_mid(y));
    y = conv_out(y);
    return bias_map.defined() ? y + bias_map : y;
  }

  torch::nn::Conv2d conv_in, conv_mid, conv_out;
  torch::Tensor bias_map;
  bool zero_out_;
};
TORCH_MODULE(ToyDenoiser);

/// A Policy: frozen base ε-model + gated adapter; condition = constant embedding per prompt.
class ToyPolicy {
 public:
  explicit ToyPolicy(uint64_t seed, int64_t size = 8, int64_t dim = 4, int64_t hidden = 16)
      : size_(size), dim_(dim), base_(size, hidden, false), adapter_(size, hidden, true) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    base_->init(gen);
    adapter_->init(gen);
    for (auto& p : base_->parameters()) p.set_requires_grad(false);  // frozen base
  }

  // [B, 1, D]: ones for any real prompt, zeros for "" (the unconditional prompt of CFG).
  torch::Tensor encode(const std::vector<std::string>& prompts) {
    auto out = torch::zeros({static_cast<int64_t>(prompts.size()), 1, dim_});
    for (size_t i = 0; i < prompts.size(); ++i)
      if (!prompts[i].empty()) out[static_cast<int64_t>(i)].fill_(1.0);
    return out;
  }
  torch::Tensor predict(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    auto eps = base_->forward(x, t, c);
    return adapters_on_ ? eps + adapter_->forward(x, t, c) : eps;
  }
  std::vector<int64_t> sample_shape() const { return {1, size_, size_}; }
  // Smooth map to (0, 1): unlike a clamp it never flattens the reward into a region without signal.
  torch::Tensor decode(const torch::Tensor& x0) { return torch::sigmoid(2 * x0); }
  std::vector<torch::Tensor> trainable_parameters() { return adapter_->parameters(); }
  void set_adapters_enabled(bool on) { adapters_on_ = on; }
  bool adapters_enabled() const { return adapters_on_; }  // optional hook used by AdaptersDisabled

 private:
  int64_t size_, dim_;
  ToyDenoiser base_, adapter_;
  bool adapters_on_ = true;
};

static_assert(cxrl::core::Policy<ToyPolicy>);

}  // namespace cxrl_examples
