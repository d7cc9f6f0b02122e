/// @file
/// @brief diffusers `Transformer2DModel` for continuous (image-like) inputs: GroupNorm → proj_in →
///        BasicTransformerBlocks over the H·W tokens → proj_out, plus the residual.
#pragma once

#include <cxrl/nn/attention.hpp>
#include <cxrl/nn/layers.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace cxrl::nn {

/// @brief Options of Transformer2DModel, named as in diffusers.
struct Transformer2DModelOptions {
  int64_t num_attention_heads = 16;             ///< heads
  int64_t attention_head_dim = 88;              ///< channels per head; inner_dim = heads · head_dim
  int64_t in_channels = 0;                      ///< feature-map channels
  int64_t num_layers = 1;                       ///< transformer blocks
  std::optional<int64_t> cross_attention_dim;   ///< context channels
  int64_t norm_num_groups = 32;                 ///< GroupNorm groups (eps 1e-6)
  bool use_linear_projection = false;           ///< Linear proj_in/out on tokens instead of 1×1 convs
  bool only_cross_attention = false;            ///< see BasicTransformerBlockOptions
  bool upcast_attention = false;                ///< see AttentionOptions
  double dropout = 0.0;                         ///< dropout
};

/// @brief Spatial transformer (Rombach et al., 2022, LDM §3.3 "SpatialTransformer"); keys `norm`,
///        `proj_in`, `transformer_blocks.{i}`, `proj_out`.
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  /// @brief Creates the model.
  /// @param o options (diffusers names)
  explicit Transformer2DModelImpl(const Transformer2DModelOptions& o) : linear_(o.use_linear_projection) {
    const int64_t inner = o.num_attention_heads * o.attention_head_dim;
    norm = register_module("norm", GroupNorm(o.norm_num_groups, o.in_channels, 1e-6));
    if (linear_) {
      proj_in_linear = register_module("proj_in", Linear(o.in_channels, inner));
    } else {
      proj_in_conv = register_module("proj_in", Conv2d(o.in_channels, inner, 1, 1, 0));
    }
    transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i) {
      BasicTransformerBlockOptions b;
      b.dim = inner;
      b.num_attention_heads = o.num_attention_heads;
      b.attention_head_dim = o.attention_head_dim;
      b.cross_attention_dim = o.cross_attention_dim;
      b.only_cross_attention = o.only_cross_attention;
      b.upcast_attention = o.upcast_attention;
      b.dropout = o.dropout;
      blocks_.push_back(BasicTransformerBlock(b));
      transformer_blocks->push_back(blocks_.back());
    }
    if (linear_) {
      proj_out_linear = register_module("proj_out", Linear(inner, o.in_channels));
    } else {
      proj_out_conv = register_module("proj_out", Conv2d(inner, o.in_channels, 1, 1, 0));
    }
  }

  /// @brief Applies the transformer to a feature map.
  /// @param x feature map [B, C, H, W]
  /// @param context encoder hidden states [B, M, cross_attention_dim]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {}) {
    const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
    auto h = norm(x);
    if (!linear_) h = proj_in_conv(h);
    const int64_t inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, inner});
    if (linear_) h = proj_in_linear(h);
    for (auto& blk : blocks_) h = blk(h, context);
    if (linear_) h = proj_out_linear(h);
    h = h.reshape({B, H, W, h.size(2)}).permute({0, 3, 1, 2});
    if (!linear_) h = proj_out_conv(h.contiguous());
    return h + x;
  }

  GroupNorm norm{nullptr};                      ///< input GroupNorm (eps 1e-6)
  Conv2d proj_in_conv{nullptr};                 ///< "proj_in" when !use_linear_projection
  Linear proj_in_linear{nullptr};               ///< "proj_in" when use_linear_projection
  torch::nn::ModuleList transformer_blocks{nullptr};  ///< BasicTransformerBlocks
  Conv2d proj_out_conv{nullptr};                ///< "proj_out" when !use_linear_projection
  Linear proj_out_linear{nullptr};              ///< "proj_out" when use_linear_projection

 private:
  bool linear_;
  std::vector<BasicTransformerBlock> blocks_;
};
/// @brief Holder for Transformer2DModelImpl.
TORCH_MODULE(Transformer2DModel);

}  // namespace cxrl::nn
