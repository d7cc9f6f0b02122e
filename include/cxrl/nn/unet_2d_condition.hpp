/// @file
/// @brief diffusers `UNet2DConditionModel` (v0.24 semantics) with its config struct and `from_pretrained`.
///
/// Text-conditioned denoiser of latent diffusion (Rombach et al., 2022): a UNet of ResNet blocks with
/// sinusoidal time embedding and spatial transformers that cross-attend to encoder hidden states.
/// Parameter names equal the diffusers state_dict keys, so `diffusion_pytorch_model.safetensors` loads
/// strictly without renaming.
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/diffusers_config.hpp>
#include <cxrl/nn/unet_2d_condition_config.hpp>
#include <cxrl/nn/embeddings.hpp>
#include <cxrl/nn/layers.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/unet_blocks.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief Callback that receives named intermediate outputs (e.g. "down_blocks.0") during a forward pass.
using DebugTap = std::function<void(const std::string&, const torch::Tensor&)>;

class UNet2DConditionModel;

/// @brief diffusers `UNet2DConditionModel`: conv_in → down blocks → mid block → up blocks (with skips)
///        → GroupNorm → SiLU → conv_out, conditioned on a timestep embedding and encoder hidden states.
class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  /// @brief Builds the model (parameters on `param_options()`' device; see meta.hpp).
  /// @param cfg validated config
  explicit UNet2DConditionModelImpl(UNet2DConditionConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    const auto& c = cfg_;
    const size_t n = c.down_block_types.size();
    const auto& boc = c.block_out_channels;
    const auto heads = c.heads_per_block();
    const auto layers = per_block(c.layers_per_block, n, "layers_per_block", "config");
    const auto xdim = per_block(c.cross_attention_dim, n, "cross_attention_dim", "config");
    const auto tlayers = per_block(c.transformer_layers_per_block, n, "transformer_layers_per_block", "config");
    const auto only_x = per_block(c.only_cross_attention, n, "only_cross_attention", "config");

    conv_in = register_module("conv_in", Conv2d(c.in_channels, boc[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2));
    const int64_t temb = c.time_embedding_dim.value_or(boc[0] * 4);
    time_proj = register_module("time_proj", Timesteps(boc[0], c.flip_sin_to_cos, c.freq_shift));
    time_embedding = register_module("time_embedding",
                                     TimestepEmbedding(boc[0], temb, c.act_fn, std::nullopt, c.timestep_post_act));

    auto base = [&](size_t i) {
      UNetBlockOptions o;
      o.temb_channels = temb;
      o.resnet_eps = c.norm_eps;
      o.resnet_act_fn = c.act_fn;
      o.resnet_groups = c.norm_num_groups;
      o.resnet_time_scale_shift = c.resnet_time_scale_shift;
      o.downsample_padding = c.downsample_padding;
      o.dropout = c.dropout;
      o.cross_attention_dim = xdim[i];
      o.num_attention_heads = heads[i];
      o.transformer_layers_per_block = tlayers[i];
      o.use_linear_projection = c.use_linear_projection;
      o.only_cross_attention = only_x[i];
      o.upcast_attention = c.upcast_attention;
      return o;
    };

    down_blocks = register_module("down_blocks", torch::nn::ModuleList());
    int64_t out_ch = boc[0];
    for (size_t i = 0; i < n; ++i) {
      auto o = base(i);
      o.in_channels = out_ch;
      out_ch = boc[i];
      o.out_channels = out_ch;
      o.num_layers = layers[i];
      o.add_sampler = i + 1 < n;
      down_.push_back(c.down_block_types[i] == "CrossAttnDownBlock2D" ? CrossAttnDownBlock2D(o) : DownBlock2D(o));
      down_blocks->push_back(down_.back());
    }

    if (c.mid_block_type) {
      auto o = base(n - 1);
      o.in_channels = o.out_channels = boc.back();
      o.num_layers = 1;
      o.output_scale_factor = c.mid_block_scale_factor;
      mid_block = register_module("mid_block", UNetMidBlock2DCrossAttn(o));
    }

    up_blocks = register_module("up_blocks", torch::nn::ModuleList());
    out_ch = boc.back();
    for (size_t i = 0; i < n; ++i) {
      const size_t r = n - 1 - i;  // reversed index into per-block lists
      auto o = base(r);
      o.prev_output_channel = out_ch;
      out_ch = boc[r];
      o.out_channels = out_ch;
      o.in_channels = boc[r == 0 ? 0 : r - 1];
      o.num_layers = layers[r] + 1;
      o.add_sampler = i + 1 < n;
      up_.push_back(c.up_block_types[i] == "CrossAttnUpBlock2D" ? CrossAttnUpBlock2D(o) : UpBlock2D(o));
      up_blocks->push_back(up_.back());
    }

    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc[0], c.norm_eps));
    conv_out = register_module("conv_out", Conv2d(boc[0], c.out_channels, c.conv_out_kernel, 1, (c.conv_out_kernel - 1) / 2));
  }

  /// @brief Loads `config.json` + `diffusion_pytorch_model.safetensors` (or its shard index) strictly.
  /// @param dir model directory (a diffusers `unet/` folder)
  /// @param device device of the parameters
  /// @param dtype floating dtype of the parameters
  static UNet2DConditionModel from_pretrained(const std::filesystem::path& dir, torch::Device device = torch::kCPU,
                                              torch::ScalarType dtype = torch::kFloat32);

  /// @brief Time embedding `emb` for @p timestep (0-d or [B], broadcast to @p batch).
  /// @param timestep diffusion timesteps
  /// @param batch batch size
  /// @param dtype dtype of the result (the sinusoid itself is float32)
  torch::Tensor time_embed(const torch::Tensor& timestep, int64_t batch, torch::ScalarType dtype) {
    auto t = timestep.reshape({-1});
    if (t.numel() == 1) t = t.expand({batch});
    TORCH_CHECK(t.numel() == batch, "UNet2DConditionModel: timestep has ", t.numel(), " entries for batch ", batch);
    auto emb = time_embedding(time_proj(t.to(conv_in->weight.device())).to(dtype));
    return cfg_.time_embedding_act_fn ? activation(*cfg_.time_embedding_act_fn, emb) : emb;
  }

  /// @brief Predicts the model output (noise, v or x0, per training) for a noisy @p sample.
  /// @param sample noisy input [B, in_channels, H, W]
  /// @param timestep 0-d or [B] timesteps (integer or float)
  /// @param encoder_hidden_states context [B, L, cross_attention_dim]
  /// @param tap optional callback for intermediate outputs ("conv_in", "down_blocks.i", "mid_block",
  ///        "up_blocks.i", "conv_norm_out")
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                        const torch::Tensor& encoder_hidden_states, const DebugTap& tap = {}) {
    TORCH_CHECK(sample.dim() == 4 && sample.size(1) == cfg_.in_channels, "UNet2DConditionModel: sample must be [B, ",
                cfg_.in_channels, ", H, W], got ", sample.sizes());
    auto x = cfg_.center_input_sample ? sample * 2.0 - 1.0 : sample;
    const auto emb = time_embed(timestep, x.size(0), x.scalar_type());
    const auto& ctx = encoder_hidden_states;
    auto emit = [&](const std::string& name, const torch::Tensor& t) {
      if (tap) tap(name, t);
    };

    x = conv_in(x);
    emit("conv_in", x);
    std::vector<torch::Tensor> skips{x};
    for (size_t i = 0; i < down_.size(); ++i) {
      x = down_[i](x, emb, ctx, skips);
      emit("down_blocks." + std::to_string(i), x);
    }
    if (mid_block) {
      x = mid_block(x, emb, ctx);
      emit("mid_block", x);
    }
    for (size_t i = 0; i < up_.size(); ++i) {
      // Upsample to the size of the next skip, so odd sizes (not multiples of 2^levels) round-trip.
      std::vector<int64_t> size;
      const auto k = static_cast<size_t>(up_[i]->num_resnets());
      if (up_[i]->has_upsampler() && skips.size() > k) {
        const auto& next = skips[skips.size() - k - 1];
        size = {next.size(2), next.size(3)};
      }
      x = up_[i](x, skips, emb, ctx, size);
      emit("up_blocks." + std::to_string(i), x);
    }
    x = conv_norm_out(x);
    emit("conv_norm_out", x);
    return conv_out(activation(cfg_.act_fn, x));
  }

  /// @brief The config the model was built from.
  const UNet2DConditionConfig& config() const { return cfg_; }

  Conv2d conv_in{nullptr};                        ///< input conv
  Timesteps time_proj{nullptr};                   ///< sinusoid (no parameters)
  TimestepEmbedding time_embedding{nullptr};      ///< time MLP
  torch::nn::ModuleList down_blocks{nullptr};     ///< UNetDownBlock per level
  UNetMidBlock2DCrossAttn mid_block{nullptr};     ///< bottleneck
  torch::nn::ModuleList up_blocks{nullptr};       ///< UNetUpBlock per level
  GroupNorm conv_norm_out{nullptr};               ///< output GroupNorm
  Conv2d conv_out{nullptr};                       ///< output conv

 private:
  UNet2DConditionConfig cfg_;
  std::vector<UNetDownBlock> down_;
  std::vector<UNetUpBlock> up_;
};

/// @brief Holder for UNet2DConditionModelImpl.
TORCH_MODULE(UNet2DConditionModel);

namespace detail {
inline std::filesystem::path diffusers_weights_file(const std::filesystem::path& dir) {
  for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"})
    if (std::filesystem::exists(dir / name)) return dir / name;
  throw io::CheckpointError(dir.string() +
                            ": no diffusion_pytorch_model.safetensors (or .safetensors.index.json); only safetensors "
                            "weights are supported (convert .bin files with diffusers first)");
}
}  // namespace detail

inline UNet2DConditionModel UNet2DConditionModelImpl::from_pretrained(const std::filesystem::path& dir,
                                                                      torch::Device device, torch::ScalarType dtype) {
  auto cfg = UNet2DConditionConfig::load(dir);
  const auto weights = detail::diffusers_weights_file(dir);
  ParamScope scope(device, dtype);
  UNet2DConditionModel m(cfg);
  io::LoadOptions opt;
  opt.source = weights.string();
  io::load_state_dict(*m, weights, opt);
  return m;
}

}  // namespace cxrl::nn
