/// @file
/// @brief diffusers `AutoencoderKL` (v0.24 key names) with Encoder, Decoder, the attention mid-block and
///        DiagonalGaussianDistribution.
///
/// The KL-regularised autoencoder of latent diffusion (Rombach et al., 2022, §3.1 / appendix G).
/// `encode` / `decode` do not apply `scaling_factor`; pipelines multiply latents by it after encoding
/// and divide before decoding.
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/attention.hpp>
#include <cxrl/nn/autoencoder_kl_config.hpp>
#include <cxrl/nn/diffusers_config.hpp>
#include <cxrl/nn/layers.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/resnet_block.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cxrl::nn {


/// @brief diffusers `UNetMidBlock2D` as used by the VAE: resnet, (single-head self-attention with
///        GroupNorm and residual, resnet) — no time embedding.
class VAEMidBlockImpl : public torch::nn::Module {
 public:
  /// @brief Creates the block.
  /// @param channels channels C (attention: one head of width C)
  /// @param groups GroupNorm groups
  /// @param act activation
  VAEMidBlockImpl(int64_t channels, int64_t groups, Activation act) {
    ResnetBlock2DOptions r;
    r.in_channels = r.out_channels.emplace(channels);
    r.temb_channels = std::nullopt;
    r.groups = groups;
    r.eps = 1e-6;
    r.non_linearity = act;
    AttentionOptions a;
    a.query_dim = channels;
    a.heads = 1;  // heads = channels / attention_head_dim with attention_head_dim = channels
    a.dim_head = channels;
    a.bias = true;
    a.norm_num_groups = groups;
    a.eps = 1e-6;
    a.residual_connection = true;
    a.upcast_softmax = true;
    resnets = register_module("resnets", torch::nn::ModuleList());
    attentions = register_module("attentions", torch::nn::ModuleList());
    r0 = ResnetBlock2D(r);
    attn = Attention(a);
    r1 = ResnetBlock2D(r);
    resnets->push_back(r0);
    attentions->push_back(attn);
    resnets->push_back(r1);
  }
  /// @brief resnet → attention → resnet.
  /// @param x input [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x) { return r1(attn(r0(x))); }
  torch::nn::ModuleList resnets{nullptr};     ///< two resnets
  torch::nn::ModuleList attentions{nullptr};  ///< one Attention (keys group_norm, to_q, to_k, to_v, to_out.0)
  ResnetBlock2D r0{nullptr};                  ///< resnets.0
  Attention attn{nullptr};                    ///< attentions.0
  ResnetBlock2D r1{nullptr};                  ///< resnets.1
};
/// @brief Holder for VAEMidBlockImpl.
TORCH_MODULE(VAEMidBlock);

/// @brief diffusers `DownEncoderBlock2D` / `UpDecoderBlock2D`: resnets without time embedding, then an
///        optional Downsample2D (padding 0, i.e. pad right/bottom) or Upsample2D.
class VAEBlockImpl : public torch::nn::Module {
 public:
  /// @brief Creates the block.
  /// @param in_channels input channels
  /// @param out_channels output channels
  /// @param num_layers resnets
  /// @param groups GroupNorm groups
  /// @param act activation
  /// @param sampler 0 none, -1 Downsample2D ("downsamplers"), +1 Upsample2D ("upsamplers")
  VAEBlockImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups, Activation act,
               int sampler) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    for (int64_t i = 0; i < num_layers; ++i) {
      ResnetBlock2DOptions r;
      r.in_channels = i == 0 ? in_channels : out_channels;
      r.out_channels = out_channels;
      r.temb_channels = std::nullopt;
      r.groups = groups;
      r.eps = 1e-6;
      r.non_linearity = act;
      res_.push_back(ResnetBlock2D(r));
      resnets->push_back(res_.back());
    }
    if (sampler < 0) {
      downsamplers = register_module("downsamplers", torch::nn::ModuleList());
      down_ = Downsample2D(out_channels, out_channels, 0);
      downsamplers->push_back(down_);
    } else if (sampler > 0) {
      upsamplers = register_module("upsamplers", torch::nn::ModuleList());
      up_ = Upsample2D(out_channels, out_channels);
      upsamplers->push_back(up_);
    }
  }
  /// @brief resnets, then the sampler.
  /// @param x input [B, in, H, W]
  torch::Tensor forward(torch::Tensor x) {
    for (auto& r : res_) x = r(x);
    if (down_) x = down_(x);
    if (up_) x = up_(x);
    return x;
  }
  torch::nn::ModuleList resnets{nullptr};       ///< ResnetBlock2D × num_layers
  torch::nn::ModuleList downsamplers{nullptr};  ///< encoder blocks
  torch::nn::ModuleList upsamplers{nullptr};    ///< decoder blocks

 private:
  std::vector<ResnetBlock2D> res_;
  Downsample2D down_{nullptr};
  Upsample2D up_{nullptr};
};
/// @brief Holder for VAEBlockImpl.
TORCH_MODULE(VAEBlock);

/// @brief diffusers `Encoder` (double_z): conv_in → DownEncoderBlock2Ds → mid block → GN → act → conv_out (2·latent).
class VAEEncoderImpl : public torch::nn::Module {
 public:
  /// @brief Creates the encoder.
  /// @param c config
  explicit VAEEncoderImpl(const AutoencoderKLConfig& c) : act_(c.act_fn) {
    const auto& boc = c.block_out_channels;
    conv_in = register_module("conv_in", Conv2d(c.in_channels, boc[0], 3, 1, 1));
    down_blocks = register_module("down_blocks", torch::nn::ModuleList());
    int64_t out = boc[0];
    for (size_t i = 0; i < boc.size(); ++i) {
      const int64_t in = out;
      out = boc[i];
      blocks_.push_back(VAEBlock(in, out, c.layers_per_block, c.norm_num_groups, c.act_fn, i + 1 < boc.size() ? -1 : 0));
      down_blocks->push_back(blocks_.back());
    }
    mid_block = register_module("mid_block", VAEMidBlock(boc.back(), c.norm_num_groups, c.act_fn));
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc.back(), 1e-6));
    conv_out = register_module("conv_out", Conv2d(boc.back(), 2 * c.latent_channels, 3, 1, 1));
  }
  /// @brief Encodes images to moment maps (before quant_conv).
  /// @param x images [B, in, H, W]
  /// @param tap optional callback for "conv_in", "down_blocks.i", "mid_block", "conv_out"
  torch::Tensor forward(const torch::Tensor& x, const DebugTap& tap = {}) {
    auto h = conv_in(x);
    if (tap) tap("conv_in", h);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      h = blocks_[i](h);
      if (tap) tap("down_blocks." + std::to_string(i), h);
    }
    h = mid_block(h);
    if (tap) tap("mid_block", h);
    h = conv_out(activation(act_, conv_norm_out(h)));
    if (tap) tap("conv_out", h);
    return h;
  }
  Conv2d conv_in{nullptr};                     ///< input conv
  torch::nn::ModuleList down_blocks{nullptr};  ///< DownEncoderBlock2D per level
  VAEMidBlock mid_block{nullptr};              ///< attention mid block
  GroupNorm conv_norm_out{nullptr};            ///< output GroupNorm
  Conv2d conv_out{nullptr};                    ///< to 2·latent channels

 private:
  Activation act_;
  std::vector<VAEBlock> blocks_;
};
/// @brief Holder for VAEEncoderImpl.
TORCH_MODULE(VAEEncoder);

/// @brief diffusers `Decoder`: conv_in → mid block → UpDecoderBlock2Ds → GN → act → conv_out.
class VAEDecoderImpl : public torch::nn::Module {
 public:
  /// @brief Creates the decoder.
  /// @param c config
  explicit VAEDecoderImpl(const AutoencoderKLConfig& c) : act_(c.act_fn) {
    const auto& boc = c.block_out_channels;
    const size_t n = boc.size();
    conv_in = register_module("conv_in", Conv2d(c.latent_channels, boc.back(), 3, 1, 1));
    mid_block = register_module("mid_block", VAEMidBlock(boc.back(), c.norm_num_groups, c.act_fn));
    up_blocks = register_module("up_blocks", torch::nn::ModuleList());
    int64_t out = boc.back();
    for (size_t i = 0; i < n; ++i) {
      const int64_t prev = out;
      out = boc[n - 1 - i];
      blocks_.push_back(VAEBlock(prev, out, c.layers_per_block + 1, c.norm_num_groups, c.act_fn, i + 1 < n ? 1 : 0));
      up_blocks->push_back(blocks_.back());
    }
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, boc[0], 1e-6));
    conv_out = register_module("conv_out", Conv2d(boc[0], c.out_channels, 3, 1, 1));
  }
  /// @brief Decodes latents (after post_quant_conv) to images.
  /// @param z latents [B, latent, h, w]
  /// @param tap optional callback for "conv_in", "mid_block", "up_blocks.i"
  torch::Tensor forward(const torch::Tensor& z, const DebugTap& tap = {}) {
    auto h = conv_in(z);
    if (tap) tap("conv_in", h);
    h = mid_block(h);
    if (tap) tap("mid_block", h);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      h = blocks_[i](h);
      if (tap) tap("up_blocks." + std::to_string(i), h);
    }
    return conv_out(activation(act_, conv_norm_out(h)));
  }
  Conv2d conv_in{nullptr};                   ///< latent → channels
  VAEMidBlock mid_block{nullptr};            ///< attention mid block
  torch::nn::ModuleList up_blocks{nullptr};  ///< UpDecoderBlock2D per level
  GroupNorm conv_norm_out{nullptr};          ///< output GroupNorm
  Conv2d conv_out{nullptr};                  ///< to image channels

 private:
  Activation act_;
  std::vector<VAEBlock> blocks_;
};
/// @brief Holder for VAEDecoderImpl.
TORCH_MODULE(VAEDecoder);

/// @brief diffusers `DiagonalGaussianDistribution` over latents: moments = [mean, logvar] on channels,
///        logvar clamped to [−30, 20] (Kingma & Welling, 2014, reparameterisation).
struct DiagonalGaussianDistribution {
  torch::Tensor parameters;  ///< the moments [B, 2C, h, w] as given (unclamped)
  torch::Tensor mean;    ///< [B, C, h, w]
  torch::Tensor logvar;  ///< clamped log-variance
  torch::Tensor std;     ///< exp(logvar / 2)
  torch::Tensor var;     ///< exp(logvar)

  /// @brief Splits @p moments [B, 2C, h, w] into mean and log-variance.
  /// @param moments quant_conv output
  explicit DiagonalGaussianDistribution(const torch::Tensor& moments) : parameters(moments) {
    auto mv = moments.chunk(2, 1);
    mean = mv[0];
    logvar = torch::clamp(mv[1], -30.0, 20.0);
    std = torch::exp(0.5 * logvar);
    var = torch::exp(logvar);
  }
  /// @brief mean + std · noise, with @p noise given (e.g. stored fixture noise).
  /// @param noise standard normal draws of mean's shape
  torch::Tensor sample(const torch::Tensor& noise) const { return mean + std * noise; }
  /// @brief mean + std · ε with ε ~ N(0, I) from @p gen.
  /// @param gen optional generator
  torch::Tensor sample(std::optional<at::Generator> gen = std::nullopt) const {
    auto opts = mean.options();
    auto eps = gen ? torch::randn(mean.sizes(), *gen, opts) : torch::randn(mean.sizes(), opts);
    return sample(eps);
  }
  /// @brief The mode (= mean).
  torch::Tensor mode() const { return mean; }
  /// @brief KL(q ‖ N(0, I)) summed over C, h, w: 0.5 Σ (μ² + σ² − 1 − log σ²).
  torch::Tensor kl() const { return 0.5 * (mean.pow(2) + var - 1.0 - logvar).sum({1, 2, 3}); }
};

class AutoencoderKL;

/// @brief diffusers `AutoencoderKL`: encoder + quant_conv → DiagonalGaussianDistribution; post_quant_conv + decoder.
class AutoencoderKLImpl : public torch::nn::Module {
 public:
  /// @brief Builds the model (parameters on `param_options()`' device; see meta.hpp).
  /// @param cfg config
  explicit AutoencoderKLImpl(AutoencoderKLConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    encoder = register_module("encoder", VAEEncoder(cfg_));
    decoder = register_module("decoder", VAEDecoder(cfg_));
    quant_conv = register_module("quant_conv", Conv2d(2 * cfg_.latent_channels, 2 * cfg_.latent_channels, 1));
    post_quant_conv = register_module("post_quant_conv", Conv2d(cfg_.latent_channels, cfg_.latent_channels, 1));
  }
  /// @brief Loads `config.json` + `diffusion_pytorch_model.safetensors` strictly.
  /// @param dir model directory (a diffusers `vae/` folder)
  /// @param device device of the parameters
  /// @param dtype floating dtype of the parameters
  static AutoencoderKL from_pretrained(const std::filesystem::path& dir, torch::Device device = torch::kCPU,
                                       torch::ScalarType dtype = torch::kFloat32);

  /// @brief Posterior q(z | x); no scaling_factor applied.
  /// @param x images [B, in, H, W] in [−1, 1]
  /// @param tap optional callback for encoder intermediates ("encoder.*")
  DiagonalGaussianDistribution encode(const torch::Tensor& x, const DebugTap& tap = {}) {
    DebugTap sub;
    if (tap) sub = [&](const std::string& n, const torch::Tensor& t) { tap("encoder." + n, t); };
    return DiagonalGaussianDistribution(quant_conv(encoder(x, sub)));
  }
  /// @brief Decodes latents (no scaling_factor applied).
  /// @param z latents [B, latent, h, w]
  /// @param tap optional callback for decoder intermediates ("decoder.*")
  torch::Tensor decode(const torch::Tensor& z, const DebugTap& tap = {}) {
    DebugTap sub;
    if (tap) sub = [&](const std::string& n, const torch::Tensor& t) { tap("decoder." + n, t); };
    return decoder(post_quant_conv(z), sub);
  }
  /// @brief Reconstruction: decode(sample or mode of encode(x)).
  /// @param x images
  /// @param sample_posterior draw z instead of taking the mean
  /// @param gen generator for the draw
  torch::Tensor forward(const torch::Tensor& x, bool sample_posterior = false,
                        std::optional<at::Generator> gen = std::nullopt) {
    auto post = encode(x);
    return decode(sample_posterior ? post.sample(gen) : post.mode());
  }
  /// @brief The config the model was built from.
  const AutoencoderKLConfig& config() const { return cfg_; }

  VAEEncoder encoder{nullptr};     ///< image → moments
  VAEDecoder decoder{nullptr};     ///< latents → image
  Conv2d quant_conv{nullptr};      ///< 1×1 on moments
  Conv2d post_quant_conv{nullptr}; ///< 1×1 on latents

 private:
  AutoencoderKLConfig cfg_;
};
/// @brief Holder for AutoencoderKLImpl.
TORCH_MODULE(AutoencoderKL);

inline AutoencoderKL AutoencoderKLImpl::from_pretrained(const std::filesystem::path& dir, torch::Device device,
                                                        torch::ScalarType dtype) {
  auto cfg = AutoencoderKLConfig::load(dir);
  const auto weights = detail::diffusers_weights_file(dir);
  ParamScope scope(device, dtype);
  AutoencoderKL m(cfg);
  io::LoadOptions opt;
  opt.source = weights.string();
  io::load_state_dict(*m, weights, opt);
  return m;
}

}  // namespace cxrl::nn
