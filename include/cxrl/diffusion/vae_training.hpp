/// @file
/// @brief Training an AutoencoderKL for a latent diffusion model: reconstruction + KL loss and an AdamW step.
///
/// Rombach et al. 2022 (§3, appendix G) train the first stage with L1 + LPIPS + a patch GAN and a KL weight of
/// 1e-6. Neither LPIPS nor a discriminator exists for grey phantom radiographs, so the perceptual terms are
/// replaced by an L1 loss on image gradients: it is what keeps thin structures (lines, rib edges, tube tips)
/// from being averaged away by a pure pixel loss.
#pragma once

#include <cxrl/nn/autoencoder_kl.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::diffusion {

/// @brief VaeTrainer settings.
struct VaeTrainingConfig {
  double learning_rate = 1e-3;   ///< AdamW learning rate
  double weight_decay = 0.0;     ///< AdamW weight decay
  double kl_weight = 1e-6;       ///< weight of KL(q(z|x) ‖ N(0, I)) per latent element (LDM: 1e-6)
  double gradient_weight = 1.0;  ///< weight of the L1 loss on horizontal and vertical image differences
  double max_grad_norm = 1.0;    ///< gradient norm clip
};

/// @brief The terms of one VAE loss evaluation (0-d tensors; `total` carries the gradient).
struct VaeLoss {
  torch::Tensor total;           ///< reconstruction + gradient_weight·gradient + kl_weight·kl
  torch::Tensor reconstruction;  ///< mean |x̂ − x|
  torch::Tensor gradient;        ///< mean |∇x̂ − ∇x| over both axes
  torch::Tensor kl;              ///< mean KL per latent element
};

/**
 * @brief Loss of an AutoencoderKL on images in [−1, 1]: encode, sample z with @p gen, decode.
 * @param vae the autoencoder
 * @param x images [B, C, H, W] in [−1, 1] (C = vae in_channels)
 * @param cfg weights of the terms
 * @param gen generator of the posterior sample
 */
inline VaeLoss vae_loss(nn::AutoencoderKL& vae, const torch::Tensor& x, const VaeTrainingConfig& cfg, at::Generator& gen) {
  if (x.dim() != 4 || x.size(1) != vae->config().in_channels)
    throw std::invalid_argument("vae_loss: expected images [B, " + std::to_string(vae->config().in_channels) +
                                ", H, W], got " + c10::str(x.sizes()));
  const auto post = vae->encode(x);
  const auto z = post.sample(torch::randn(post.mean.sizes(), gen, post.mean.options()));
  const auto y = vae->decode(z);
  VaeLoss l;
  l.reconstruction = (y - x).abs().mean();
  auto dx = [](const torch::Tensor& t) { return t.narrow(3, 1, t.size(3) - 1) - t.narrow(3, 0, t.size(3) - 1); };
  auto dy = [](const torch::Tensor& t) { return t.narrow(2, 1, t.size(2) - 1) - t.narrow(2, 0, t.size(2) - 1); };
  l.gradient = 0.5 * ((dx(y) - dx(x)).abs().mean() + (dy(y) - dy(x)).abs().mean());
  l.kl = post.kl().sum() / static_cast<double>(post.mean.numel());
  l.total = l.reconstruction + cfg.gradient_weight * l.gradient + cfg.kl_weight * l.kl;
  return l;
}

/// @brief AdamW training of an AutoencoderKL with vae_loss(); the state is the module and the optimizer.
class VaeTrainer {
 public:
  /// @param vae the autoencoder to train (shared holder)
  /// @param cfg settings
  VaeTrainer(nn::AutoencoderKL vae, VaeTrainingConfig cfg = {})
      : vae_(std::move(vae)),
        cfg_(cfg),
        opt_(vae_->parameters(), torch::optim::AdamWOptions(cfg.learning_rate).weight_decay(cfg.weight_decay)) {
    if (!(cfg_.learning_rate > 0)) throw std::invalid_argument("VaeTrainingConfig: learning_rate must be > 0");
    if (cfg_.kl_weight < 0 || cfg_.gradient_weight < 0) throw std::invalid_argument("VaeTrainingConfig: loss weights must be >= 0");
  }

  /// @brief One optimizer step on a batch; returns its loss terms (detached).
  /// @param x images [B, C, H, W] in [−1, 1]
  /// @param gen generator of the posterior samples
  VaeLoss step(const torch::Tensor& x, at::Generator& gen) {
    vae_->train();
    auto l = vae_loss(vae_, x, cfg_, gen);
    opt_.zero_grad();
    l.total.backward();
    torch::nn::utils::clip_grad_norm_(vae_->parameters(), cfg_.max_grad_norm);
    opt_.step();
    return {l.total.detach(), l.reconstruction.detach(), l.gradient.detach(), l.kl.detach()};
  }

  /// @brief The autoencoder.
  nn::AutoencoderKL& vae() { return vae_; }
  /// @brief The optimizer (for checkpoints).
  torch::optim::AdamW& optimizer() { return opt_; }

 private:
  nn::AutoencoderKL vae_;
  VaeTrainingConfig cfg_;
  torch::optim::AdamW opt_;
};

/**
 * @brief The latent scale of Stable Diffusion: 1 / std of the posterior means of @p images, so that the
 *        scaled latents have unit variance (Rombach et al. 2022, §4.3.2; SD 1.x's 0.18215 was found this way).
 * @param vae the trained autoencoder
 * @param images [N, C, H, W] in [−1, 1]
 * @param batch encoder batch size
 */
inline double latent_scaling_factor(nn::AutoencoderKL& vae, const torch::Tensor& images, int64_t batch = 64) {
  torch::NoGradGuard ng;
  vae->eval();
  std::vector<torch::Tensor> z;
  for (int64_t i = 0; i < images.size(0); i += batch)
    z.push_back(vae->encode(images.narrow(0, i, std::min(batch, images.size(0) - i))).mean);
  const double s = torch::cat(z).to(torch::kDouble).std().item<double>();
  if (!(s > 0) || !std::isfinite(s)) throw std::runtime_error("latent_scaling_factor: latents have no spread (std " + std::to_string(s) + ")");
  return 1.0 / s;
}

}  // namespace cxrl::diffusion
