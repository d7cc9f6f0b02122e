/// @file
/// @brief Diffusion timestep embeddings: the sinusoidal projection (`Timesteps`) and the MLP
///        (`TimestepEmbedding`), as in diffusers `embeddings.py`.
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/layers.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <optional>

namespace cxrl::nn {

/// @brief Sinusoidal timestep embedding (Vaswani et al., 2017, §3.5; DDPM's "transformer sinusoidal
///        position embedding"), diffusers `get_timestep_embedding`.
///
/// With half = dim/2: freq_i = exp(-ln(max_period) · i / (half − freq_shift)), arg = scale · t · freq,
/// emb = [sin(arg), cos(arg)] or [cos(arg), sin(arg)] when @p flip_sin_to_cos; an odd @p dim is zero-padded.
/// Computed in float32 whatever the model dtype, like the reference.
/// @param timesteps 1-D tensor [B] (integer or float)
/// @param dim embedding width
/// @param flip_sin_to_cos put cosines first
/// @param freq_shift downscale_freq_shift of the reference
/// @param scale multiplier of the argument
/// @param max_period the longest period
inline torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                        double freq_shift, double scale = 1.0, double max_period = 10000.0) {
  TORCH_CHECK(timesteps.dim() == 1, "timestep_embedding: timesteps must be 1-D, got ", timesteps.sizes());
  const int64_t half = dim / 2;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device());
  auto exponent = torch::arange(0, half, f32) * (-std::log(max_period));
  exponent = exponent / (static_cast<double>(half) - freq_shift);
  auto arg = timesteps.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0) * scale;
  auto emb = flip_sin_to_cos ? torch::cat({torch::cos(arg), torch::sin(arg)}, -1)
                             : torch::cat({torch::sin(arg), torch::cos(arg)}, -1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1});
  return emb;
}

/// @brief diffusers `Timesteps`: the parameter-free sinusoid as a module.
class TimestepsImpl : public torch::nn::Module {
 public:
  /// @brief Creates the projection.
  /// @param num_channels embedding width
  /// @param flip_sin_to_cos put cosines first
  /// @param freq_shift downscale_freq_shift
  TimestepsImpl(int64_t num_channels, bool flip_sin_to_cos, double freq_shift)
      : dim_(num_channels), flip_(flip_sin_to_cos), shift_(freq_shift) {}
  /// @brief Embeds @p timesteps [B] → [B, num_channels] (float32).
  /// @param timesteps 1-D timesteps
  torch::Tensor forward(const torch::Tensor& timesteps) { return timestep_embedding(timesteps, dim_, flip_, shift_); }

 private:
  int64_t dim_;
  bool flip_;
  double shift_;
};
/// @brief Holder for TimestepsImpl.
TORCH_MODULE(Timesteps);

/// @brief diffusers `TimestepEmbedding`: linear_1 → act → linear_2 (→ optional post activation).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  /// @brief Creates the MLP.
  /// @param in_channels sinusoid width
  /// @param time_embed_dim hidden width
  /// @param act_fn activation between the linears
  /// @param out_dim output width (default @p time_embed_dim)
  /// @param post_act_fn optional activation after linear_2
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim, Activation act_fn = Activation::silu,
                        std::optional<int64_t> out_dim = std::nullopt,
                        std::optional<Activation> post_act_fn = std::nullopt)
      : act_(act_fn), post_act_(post_act_fn) {
    linear_1 = register_module("linear_1", Linear(in_channels, time_embed_dim));
    linear_2 = register_module("linear_2", Linear(time_embed_dim, out_dim.value_or(time_embed_dim)));
  }
  /// @brief Maps the sinusoid [B, in] to the embedding [B, out].
  /// @param sample sinusoidal embedding
  torch::Tensor forward(const torch::Tensor& sample) {
    auto h = linear_2(activation(act_, linear_1(sample)));
    return post_act_ ? activation(*post_act_, h) : h;
  }
  Linear linear_1{nullptr};  ///< in → time_embed_dim
  Linear linear_2{nullptr};  ///< time_embed_dim → out

 private:
  Activation act_;
  std::optional<Activation> post_act_;
};
/// @brief Holder for TimestepEmbeddingImpl.
TORCH_MODULE(TimestepEmbedding);

}  // namespace cxrl::nn
