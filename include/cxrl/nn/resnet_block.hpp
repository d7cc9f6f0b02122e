/// @file
/// @brief diffusers `resnet.py`: ResnetBlock2D (with time-embedding injection), Downsample2D, Upsample2D.
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/layers.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace cxrl::nn {

/// @brief Options of ResnetBlock2D, named as in diffusers.
struct ResnetBlock2DOptions {
  int64_t in_channels = 0;                  ///< input channels
  std::optional<int64_t> out_channels;      ///< default: in_channels
  std::optional<int64_t> temb_channels = 512;  ///< time-embedding width; nullopt = no time embedding
  int64_t groups = 32;                      ///< GroupNorm groups of norm1
  std::optional<int64_t> groups_out;        ///< GroupNorm groups of norm2 (default: groups)
  double eps = 1e-6;                        ///< GroupNorm eps
  double dropout = 0.0;                     ///< dropout before conv2 (training only)
  Activation non_linearity = Activation::silu;  ///< activation (diffusers default "swish")
  TimeEmbeddingNorm time_embedding_norm = TimeEmbeddingNorm::add;  ///< add (diffusers "default") or FiLM
  bool skip_time_act = false;               ///< skip the activation on the time embedding
  double output_scale_factor = 1.0;         ///< (x + h) / output_scale_factor
  std::optional<bool> use_in_shortcut;      ///< default: in != out
  bool conv_shortcut_bias = true;           ///< bias of the 1×1 shortcut
};

/// @brief Pre-activation residual block: GN→act→conv1 (+time) → GN→act→dropout→conv2, plus a 1×1 shortcut
///        when channels change (Ho et al., 2020, DDPM's Wide-ResNet block; diffusers `ResnetBlock2D`).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  /// @brief Creates the block.
  /// @param o options (diffusers names)
  explicit ResnetBlock2DImpl(const ResnetBlock2DOptions& o) : o_(o) {
    const int64_t out = o.out_channels.value_or(o.in_channels);
    norm1 = register_module("norm1", GroupNorm(o.groups, o.in_channels, o.eps));
    conv1 = register_module("conv1", Conv2d(o.in_channels, out, 3, 1, 1));
    if (o.temb_channels)
      time_emb_proj = register_module(
          "time_emb_proj", Linear(*o.temb_channels, o.time_embedding_norm == TimeEmbeddingNorm::scale_shift ? 2 * out : out));
    norm2 = register_module("norm2", GroupNorm(o.groups_out.value_or(o.groups), out, o.eps));
    conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1));
    if (o.use_in_shortcut.value_or(o.in_channels != out))
      conv_shortcut = register_module("conv_shortcut", Conv2d(o.in_channels, out, 1, 1, 0, o.conv_shortcut_bias));
  }

  /// @brief Applies the block.
  /// @param x input [B, in, H, W]
  /// @param temb time embedding [B, temb_channels] (may be undefined when the block has none)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {}) {
    auto h = conv1(activation(o_.non_linearity, norm1(x)));
    torch::Tensor scale, shift;
    if (time_emb_proj && temb.defined()) {
      auto t = o_.skip_time_act ? temb : activation(o_.non_linearity, temb);
      t = time_emb_proj(t).unsqueeze(-1).unsqueeze(-1);
      if (o_.time_embedding_norm == TimeEmbeddingNorm::add) {
        h = h + t;
      } else {
        auto parts = t.chunk(2, 1);
        scale = parts[0];
        shift = parts[1];
      }
    }
    h = norm2(h);
    if (scale.defined()) h = h * (1 + scale) + shift;
    h = activation(o_.non_linearity, h);
    if (o_.dropout > 0) h = torch::dropout(h, o_.dropout, is_training());
    h = conv2(h);
    auto skip = conv_shortcut ? conv_shortcut(x) : x;
    auto out = skip + h;
    return o_.output_scale_factor == 1.0 ? out : out / o_.output_scale_factor;
  }

  GroupNorm norm1{nullptr};         ///< first GroupNorm
  Conv2d conv1{nullptr};            ///< 3×3 in → out
  Linear time_emb_proj{nullptr};    ///< temb → out (or 2·out for scale_shift)
  GroupNorm norm2{nullptr};         ///< second GroupNorm
  Conv2d conv2{nullptr};            ///< 3×3 out → out
  Conv2d conv_shortcut{nullptr};    ///< 1×1 shortcut when channels change

 private:
  ResnetBlock2DOptions o_;
};
/// @brief Holder for ResnetBlock2DImpl.
TORCH_MODULE(ResnetBlock2D);

/// @brief diffusers `Downsample2D` with use_conv: 3×3 stride-2 conv ("conv"). padding 0 pads (0,1,0,1) first.
class Downsample2DImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param channels input channels
  /// @param out_channels output channels
  /// @param padding conv padding (1 in UNets, 0 in the VAE encoder, which pads right/bottom by one)
  Downsample2DImpl(int64_t channels, int64_t out_channels, int64_t padding) : padding_(padding) {
    conv = register_module("conv", Conv2d(channels, out_channels, 3, 2, padding));
  }
  /// @brief Halves the resolution.
  /// @param x input [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    if (padding_ == 0) return conv(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
    return conv(x);
  }
  Conv2d conv{nullptr};  ///< stride-2 conv

 private:
  int64_t padding_;
};
/// @brief Holder for Downsample2DImpl.
TORCH_MODULE(Downsample2D);

/// @brief diffusers `Upsample2D` with use_conv: nearest ×2 (or to a given size), then 3×3 conv ("conv").
class Upsample2DImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param channels input channels
  /// @param out_channels output channels
  Upsample2DImpl(int64_t channels, int64_t out_channels) {
    conv = register_module("conv", Conv2d(channels, out_channels, 3, 1, 1));
  }
  /// @brief Nearest-neighbour upsampling then conv.
  /// @param x input [B, C, H, W]
  /// @param output_size target (H, W); empty = 2H × 2W
  torch::Tensor forward(const torch::Tensor& x, std::vector<int64_t> output_size = {}) {
    torch::Tensor up;
    if (output_size.empty()) {
      up = torch::upsample_nearest2d(x, std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2});
    } else {
      up = torch::upsample_nearest2d(x, output_size);
    }
    return conv(up);
  }
  Conv2d conv{nullptr};  ///< 3×3 conv

};
/// @brief Holder for Upsample2DImpl.
TORCH_MODULE(Upsample2D);

}  // namespace cxrl::nn
