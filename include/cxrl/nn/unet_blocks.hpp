/// @file
/// @brief diffusers `unet_2d_blocks.py` blocks of UNet2DConditionModel: DownBlock2D, CrossAttnDownBlock2D,
///        UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D.
///
/// Down blocks return their output and push every resnet (and downsampler) output onto the skip stack;
/// up blocks pop one skip per resnet and concatenate it on channels (Ronneberger et al., 2015).
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/resnet_block.hpp>
#include <cxrl/nn/transformer_2d.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief Shared options of the UNet blocks (diffusers `get_down_block` / `get_up_block` arguments).
struct UNetBlockOptions {
  int64_t in_channels = 0;           ///< input channels (up blocks: channels of the deepest skip)
  int64_t out_channels = 0;          ///< output channels
  int64_t prev_output_channel = 0;   ///< up blocks: channels coming from the block below
  int64_t temb_channels = 0;         ///< time-embedding width
  int64_t num_layers = 1;            ///< resnets (up blocks: layers_per_block + 1)
  int64_t transformer_layers_per_block = 1;  ///< BasicTransformerBlocks per Transformer2DModel
  bool add_sampler = true;           ///< add a Downsample2D / Upsample2D
  double resnet_eps = 1e-5;          ///< resnet GroupNorm eps
  Activation resnet_act_fn = Activation::silu;  ///< resnet activation
  int64_t resnet_groups = 32;        ///< resnet and transformer GroupNorm groups
  TimeEmbeddingNorm resnet_time_scale_shift = TimeEmbeddingNorm::add;  ///< time-embedding injection of the resnets
  double output_scale_factor = 1.0;  ///< resnet output divisor
  int64_t downsample_padding = 1;    ///< Downsample2D padding
  double dropout = 0.0;              ///< resnet / attention dropout
  std::optional<int64_t> cross_attention_dim;  ///< context channels
  int64_t num_attention_heads = 1;   ///< heads of each Transformer2DModel
  bool use_linear_projection = false;  ///< Transformer2DModel projection type
  bool only_cross_attention = false;   ///< attn1 attends to the context
  bool upcast_attention = false;       ///< float32 scores for half inputs
};

namespace detail {
inline ResnetBlock2D make_resnet(const UNetBlockOptions& o, int64_t in, int64_t out) {
  ResnetBlock2DOptions r;
  r.in_channels = in;
  r.out_channels = out;
  r.temb_channels = o.temb_channels;
  r.groups = o.resnet_groups;
  r.eps = o.resnet_eps;
  r.dropout = o.dropout;
  r.non_linearity = o.resnet_act_fn;
  r.time_embedding_norm = o.resnet_time_scale_shift;
  r.output_scale_factor = o.output_scale_factor;
  return ResnetBlock2D(r);
}
inline Transformer2DModel make_transformer(const UNetBlockOptions& o, int64_t channels) {
  if (o.num_attention_heads <= 0 || channels % o.num_attention_heads != 0)
    throw std::invalid_argument("UNet block: " + std::to_string(channels) + " channels are not divisible into " +
                                std::to_string(o.num_attention_heads) + " attention heads");
  Transformer2DModelOptions t;
  t.num_attention_heads = o.num_attention_heads;
  t.attention_head_dim = channels / o.num_attention_heads;
  t.in_channels = channels;
  t.num_layers = o.transformer_layers_per_block;
  t.cross_attention_dim = o.cross_attention_dim;
  t.norm_num_groups = o.resnet_groups;
  t.use_linear_projection = o.use_linear_projection;
  t.only_cross_attention = o.only_cross_attention;
  t.upcast_attention = o.upcast_attention;
  t.dropout = o.dropout;
  return Transformer2DModel(t);
}
}  // namespace detail

/// @brief Common interface of the down blocks, so a UNet can hold a config-chosen mix of them.
class UNetDownBlockImpl : public torch::nn::Module {
 public:
  /// @brief Creates resnets (+ attentions) and the optional downsampler.
  /// @param o block options
  /// @param cross_attention whether a Transformer2DModel follows each resnet
  UNetDownBlockImpl(const UNetBlockOptions& o, bool cross_attention) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    if (cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i) {
      res_.push_back(detail::make_resnet(o, i == 0 ? o.in_channels : o.out_channels, o.out_channels));
      resnets->push_back(res_.back());
      if (cross_attention) {
        attn_.push_back(detail::make_transformer(o, o.out_channels));
        attentions->push_back(attn_.back());
      }
    }
    if (o.add_sampler) {
      downsamplers = register_module("downsamplers", torch::nn::ModuleList());
      down_ = Downsample2D(o.out_channels, o.out_channels, o.downsample_padding);
      downsamplers->push_back(down_);
    }
  }
  /// @brief Runs the block; appends each resnet/attention output and the downsampled output to @p skips.
  /// @param x input [B, in, H, W]
  /// @param temb time embedding [B, temb]
  /// @param context encoder hidden states (ignored without attentions)
  /// @param skips skip-connection stack
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips) {
    for (size_t i = 0; i < res_.size(); ++i) {
      x = res_[i](x, temb);
      if (!attn_.empty()) x = attn_[i](x, context);
      skips.push_back(x);
    }
    if (down_) {
      x = down_(x);
      skips.push_back(x);
    }
    return x;
  }
  /// @brief Number of resnets (= skips pushed before downsampling).
  int64_t num_resnets() const { return static_cast<int64_t>(res_.size()); }

  torch::nn::ModuleList resnets{nullptr};       ///< ResnetBlock2D × num_layers
  torch::nn::ModuleList attentions{nullptr};    ///< Transformer2DModel × num_layers (cross-attention blocks)
  torch::nn::ModuleList downsamplers{nullptr};  ///< [Downsample2D] or absent

 private:
  std::vector<ResnetBlock2D> res_;
  std::vector<Transformer2DModel> attn_;
  Downsample2D down_{nullptr};
};
/// @brief Holder for UNetDownBlockImpl.
TORCH_MODULE(UNetDownBlock);

/// @brief diffusers `DownBlock2D`: resnets only.
/// @param o block options
inline UNetDownBlock DownBlock2D(const UNetBlockOptions& o) { return UNetDownBlock(o, false); }
/// @brief diffusers `CrossAttnDownBlock2D`: resnet → Transformer2DModel pairs.
/// @param o block options
inline UNetDownBlock CrossAttnDownBlock2D(const UNetBlockOptions& o) { return UNetDownBlock(o, true); }

/// @brief diffusers `UNetMidBlock2DCrossAttn`: resnet, then (Transformer2DModel, resnet) × num_layers.
class UNetMidBlock2DCrossAttnImpl : public torch::nn::Module {
 public:
  /// @brief Creates the block on in_channels (out_channels is ignored, as in the reference).
  /// @param o block options (num_layers = transformer/resnet pairs, 1 in SD)
  explicit UNetMidBlock2DCrossAttnImpl(const UNetBlockOptions& o) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    attentions = register_module("attentions", torch::nn::ModuleList());
    res_.push_back(detail::make_resnet(o, o.in_channels, o.in_channels));
    resnets->push_back(res_.back());
    for (int64_t i = 0; i < o.num_layers; ++i) {
      attn_.push_back(detail::make_transformer(o, o.in_channels));
      attentions->push_back(attn_.back());
      res_.push_back(detail::make_resnet(o, o.in_channels, o.in_channels));
      resnets->push_back(res_.back());
    }
  }
  /// @brief Applies the block.
  /// @param x input [B, C, H, W]
  /// @param temb time embedding
  /// @param context encoder hidden states
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context) {
    x = res_[0](x, temb);
    for (size_t i = 0; i < attn_.size(); ++i) x = res_[i + 1](attn_[i](x, context), temb);
    return x;
  }
  torch::nn::ModuleList resnets{nullptr};     ///< num_layers + 1 resnets
  torch::nn::ModuleList attentions{nullptr};  ///< num_layers transformers

 private:
  std::vector<ResnetBlock2D> res_;
  std::vector<Transformer2DModel> attn_;
};
/// @brief Holder for UNetMidBlock2DCrossAttnImpl.
TORCH_MODULE(UNetMidBlock2DCrossAttn);

/// @brief Common implementation of the up blocks (UpBlock2D, CrossAttnUpBlock2D).
class UNetUpBlockImpl : public torch::nn::Module {
 public:
  /// @brief Creates resnets (+ attentions) and the optional upsampler.
  /// @param o block options; resnet i takes (i == 0 ? prev_output_channel : out) + skip channels
  /// @param cross_attention whether a Transformer2DModel follows each resnet
  UNetUpBlockImpl(const UNetBlockOptions& o, bool cross_attention) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    if (cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i) {
      const int64_t skip_ch = (i == o.num_layers - 1) ? o.in_channels : o.out_channels;
      const int64_t res_in = (i == 0) ? o.prev_output_channel : o.out_channels;
      res_.push_back(detail::make_resnet(o, res_in + skip_ch, o.out_channels));
      resnets->push_back(res_.back());
      if (cross_attention) {
        attn_.push_back(detail::make_transformer(o, o.out_channels));
        attentions->push_back(attn_.back());
      }
    }
    if (o.add_sampler) {
      upsamplers = register_module("upsamplers", torch::nn::ModuleList());
      up_ = Upsample2D(o.out_channels, o.out_channels);
      upsamplers->push_back(up_);
    }
  }
  /// @brief Runs the block, popping one skip per resnet from the back of @p skips.
  /// @param x input from the block below
  /// @param skips skip-connection stack
  /// @param temb time embedding
  /// @param context encoder hidden states (ignored without attentions)
  /// @param upsample_size target (H, W) of the upsampler (empty = ×2)
  torch::Tensor forward(torch::Tensor x, std::vector<torch::Tensor>& skips, const torch::Tensor& temb,
                        const torch::Tensor& context, std::vector<int64_t> upsample_size = {}) {
    for (size_t i = 0; i < res_.size(); ++i) {
      if (skips.empty()) throw std::logic_error("UNet up block: skip-connection stack exhausted");
      x = torch::cat({x, skips.back()}, 1);
      skips.pop_back();
      x = res_[i](x, temb);
      if (!attn_.empty()) x = attn_[i](x, context);
    }
    if (up_) x = up_(x, upsample_size);
    return x;
  }
  /// @brief Number of resnets (= skips consumed).
  int64_t num_resnets() const { return static_cast<int64_t>(res_.size()); }
  /// @brief Whether the block ends with an upsampler.
  bool has_upsampler() const { return static_cast<bool>(up_); }

  torch::nn::ModuleList resnets{nullptr};     ///< ResnetBlock2D × num_layers
  torch::nn::ModuleList attentions{nullptr};  ///< Transformer2DModel × num_layers (cross-attention blocks)
  torch::nn::ModuleList upsamplers{nullptr};  ///< [Upsample2D] or absent

 private:
  std::vector<ResnetBlock2D> res_;
  std::vector<Transformer2DModel> attn_;
  Upsample2D up_{nullptr};
};
/// @brief Holder for UNetUpBlockImpl.
TORCH_MODULE(UNetUpBlock);

/// @brief diffusers `UpBlock2D`: resnets only.
/// @param o block options
inline UNetUpBlock UpBlock2D(const UNetBlockOptions& o) { return UNetUpBlock(o, false); }
/// @brief diffusers `CrossAttnUpBlock2D`: resnet → Transformer2DModel pairs.
/// @param o block options
inline UNetUpBlock CrossAttnUpBlock2D(const UNetBlockOptions& o) { return UNetUpBlock(o, true); }

}  // namespace cxrl::nn
