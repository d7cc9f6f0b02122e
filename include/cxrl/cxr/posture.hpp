/**
 * @file posture.hpp
 * @brief Posture alignment network (CXRL §2.3.1): a ResNet-18 that regresses ψ = (s_x, s_y, t_x, t_y, θ),
 * the spatial-transformer warp it drives, its unsupervised training objective, and r_align(ψ).
 *
 * After Liu et al., "Align, Attend and Locate: Chest X-ray Diagnosis via Contrast Induced Attention
 * Network with Limited Supervision" (ICCV 2019): a spatial transformer (Jaderberg et al., NeurIPS 2015)
 * is trained to warp every CXR onto a *canonical CXR*, the pixel mean of (in CXRL) 500 random training
 * images, with an L2 loss between the warped image and the canonical one.
 *
 * **Direction of ψ (the same convention as cxr/phantom_posture.hpp).** ψ maps the given (posed) image
 * *to the canonical pose*: with A_ψ = [[s_x cos θ, −s_y sin θ, t_x], [s_x sin θ, s_y cos θ, t_y]] in
 * normalised coordinates (x right, y down, `align_corners = false`), the aligned image is
 * `aligned(p) = image(A_ψ p)` = `grid_sample(image, affine_grid(A_ψ))`. A perfectly posed image needs no
 * correction, the network predicts ψ = identity (1, 1, 0, 0, 0), and r_align(ψ) = 0 exactly; any
 * misalignment gives r_align < 0. A phantom rendered with `apply_posture(canonical, ψ)` is aligned by ψ.
 */
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cxrl/cxr/phantom_posture.hpp"
#include "cxrl/io/safetensors.hpp"
#include "cxrl/io/state_dict.hpp"
#include "cxrl/nn/resnet.hpp"

namespace cxrl::cxr {

/// @brief The identity posture (1, 1, 0, 0, 0) as a [5] tensor.
/// @param options dtype/device of the result
inline torch::Tensor identity_posture(const torch::TensorOptions& options = torch::kFloat32) {
  return torch::tensor({1.0, 1.0, 0.0, 0.0, 0.0}, options);
}

/// @brief Checks that @p psi is [B, 5] (or [5]) and returns it as [B, 5].
/// @param psi postures (s_x, s_y, t_x, t_y, θ)
/// @param who caller name for the message
inline torch::Tensor check_posture_tensor(const torch::Tensor& psi, const char* who) {
  if (!psi.defined()) throw std::invalid_argument(std::string(who) + ": posture tensor is undefined");
  auto p = psi.dim() == 1 ? psi.unsqueeze(0) : psi;
  if (p.dim() != 2 || p.size(1) != 5)
    throw std::invalid_argument(std::string(who) + ": expected postures [B, 5] = (s_x, s_y, t_x, t_y, theta), got " +
                                c10::str(psi.sizes()));
  if (!p.is_floating_point()) throw std::invalid_argument(std::string(who) + ": postures must be floating point");
  return p;
}

/**
 * @brief Batched, differentiable A_ψ (the `theta` of `affine_grid`) from ψ; row-for-row equal to
 * posture_matrix() of phantom_posture.hpp.
 * @param psi [B, 5] postures (s_x, s_y, t_x, t_y, θ)
 * @return [B, 2, 3]
 */
inline torch::Tensor posture_matrices(const torch::Tensor& psi) {
  auto p = check_posture_tensor(psi, "posture_matrices");
  auto sx = p.select(1, 0), sy = p.select(1, 1), tx = p.select(1, 2), ty = p.select(1, 3), th = p.select(1, 4);
  auto c = torch::cos(th), s = torch::sin(th);
  auto row0 = torch::stack({sx * c, -sy * s, tx}, 1);
  auto row1 = torch::stack({sx * s, sy * c, ty}, 1);
  return torch::stack({row0, row1}, 1);
}

/// @brief What the warp samples outside the image.
enum class WarpPadding {
  border,  ///< the nearest edge pixel (default: an unbiased training target, see warp_to_canonical())
  zeros,   ///< black, as phantom_posture.hpp's affine_warp()
};

/**
 * @brief Spatial-transformer warp to the canonical pose: `grid_sample(images, affine_grid(A_ψ))`
 * (bilinear, `align_corners = false`); differentiable in images and ψ.
 *
 * Border padding is the default because CXRs are bright at their lower edge (abdomen): with zero
 * padding, aligning an image whose posture pushed anatomy out of the frame pulls black into the
 * bright bottom rows, and the L2 objective then prefers a smaller s_y / shifted t_y than the true ψ.
 * @param images [B, C, H, W]
 * @param psi [B, 5] postures of the images
 * @param padding what to sample outside the image
 */
inline torch::Tensor warp_to_canonical(const torch::Tensor& images, const torch::Tensor& psi,
                                       WarpPadding padding = WarpPadding::border) {
  namespace F = torch::nn::functional;
  if (images.dim() != 4) throw std::invalid_argument("warp_to_canonical: expected images [B, C, H, W], got " + c10::str(images.sizes()));
  auto p = check_posture_tensor(psi, "warp_to_canonical");
  if (p.size(0) != images.size(0))
    throw std::invalid_argument("warp_to_canonical: " + std::to_string(images.size(0)) + " images but " +
                                std::to_string(p.size(0)) + " postures");
  auto theta = posture_matrices(p).to(images.device(), images.scalar_type());
  auto grid = F::affine_grid(theta, images.sizes(), /*align_corners=*/false);
  auto opts = F::GridSampleFuncOptions().mode(torch::kBilinear).align_corners(false);
  if (padding == WarpPadding::border) opts = opts.padding_mode(torch::kBorder);
  else opts = opts.padding_mode(torch::kZeros);
  return F::grid_sample(images, grid, opts);
}

/**
 * @brief CXRL posture-alignment reward r_align(ψ) = −(max(|s_x − 1|, |s_y − 1|) + |θ|/(2π) + √(t_x² + t_y²))
 * (paper §2.3.1), per sample. 0 for the identity, negative otherwise.
 * @param psi [B, 5] (or [5]) postures
 * @return [B]
 */
inline torch::Tensor alignment_reward(const torch::Tensor& psi) {
  auto p = check_posture_tensor(psi, "alignment_reward");
  auto scale = torch::maximum((p.select(1, 0) - 1).abs(), (p.select(1, 1) - 1).abs());
  auto rot = p.select(1, 4).abs() / (2 * M_PI);
  auto trans = torch::sqrt(p.select(1, 2).square() + p.select(1, 3).square());
  return -(scale + rot + trans);
}

/// @brief PostureNet hyper-parameters.
struct PostureNetConfig {
  int64_t width = 64;                        ///< ResNet base width (64 = torchvision resnet18)
  std::vector<int64_t> layers{2, 2, 2, 2};   ///< BasicBlocks per stage (ResNet-18)
  int64_t in_channels = 1;                   ///< image channels (grayscale CXRs)
  int64_t image_size = 224;                  ///< square input side; other square sizes are resized (bilinear)

  /// @brief Throws std::invalid_argument naming the bad field.
  void validate() const {
    if (width < 1) throw std::invalid_argument("PostureNetConfig.width must be >= 1, got " + std::to_string(width));
    if (in_channels < 1) throw std::invalid_argument("PostureNetConfig.in_channels must be >= 1, got " + std::to_string(in_channels));
    if (image_size < 32) throw std::invalid_argument("PostureNetConfig.image_size must be >= 32 (ResNet stride), got " + std::to_string(image_size));
    if (layers.size() != 4) throw std::invalid_argument("PostureNetConfig.layers needs 4 stages");
  }
};

/**
 * @brief ResNet-18 posture regressor (CXRL implementation details: "a posture alignment model ... using
 * ResNet-18"). Keys: `backbone.{conv1,bn1,layer1..4,fc}.*` (torchvision ResNet keys under `backbone`).
 *
 * The `fc` head (5 outputs) starts at zero weights with bias = (1, 1, 0, 0, 0), so an untrained network
 * predicts the identity pose for every image (the spatial-transformer initialisation of Jaderberg et al.).
 */
class PostureNetImpl : public torch::nn::Module {
 public:
  /// @param cfg hyper-parameters (validated)
  explicit PostureNetImpl(PostureNetConfig cfg = {}) : cfg_(std::move(cfg)) {
    cfg_.validate();
    nn::ResNetConfig rc = nn::ResNetConfig::resnet18(5);
    rc.width = cfg_.width;
    rc.layers = cfg_.layers;
    rc.in_channels = cfg_.in_channels;
    backbone = register_module("backbone", nn::ResNet(rc));
    reset_head();
  }

  /// @brief Head to the identity: zero weights, bias (1, 1, 0, 0, 0).
  void reset_head() {
    torch::NoGradGuard ng;
    backbone->fc->weight.zero_();
    backbone->fc->bias.copy_(identity_posture(backbone->fc->bias.options()));
  }

  /// @brief Predicts ψ for images in [0, 1].
  ///
  /// The images are mapped to [−1, 1] and resized to image_size × image_size when needed.
  /// @param images [B, in_channels, H, W] in [0, 1], square
  /// @return ψ [B, 5] = (s_x, s_y, t_x, t_y, θ), mapping each image to the canonical pose
  torch::Tensor forward(const torch::Tensor& images) {
    if (images.dim() != 4 || images.size(1) != cfg_.in_channels)
      throw std::invalid_argument("PostureNet: expected images [B, " + std::to_string(cfg_.in_channels) +
                                  ", H, W] in [0, 1], got " + c10::str(images.sizes()));
    if (images.size(2) != images.size(3))
      throw std::invalid_argument("PostureNet: expected square images, got " + c10::str(images.sizes()));
    auto x = images * 2 - 1;
    if (x.size(2) != cfg_.image_size)
      x = torch::nn::functional::interpolate(
          x, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{cfg_.image_size, cfg_.image_size})
                 .mode(torch::kBilinear)
                 .align_corners(false));
    return backbone->forward(x);
  }

  /// @brief The configuration.
  const PostureNetConfig& config() const { return cfg_; }

  nn::ResNet backbone{nullptr};  ///< ResNet-18 trunk with a 5-output `fc`

 private:
  PostureNetConfig cfg_;
};
TORCH_MODULE(PostureNet);

/// @brief One training batch for train_posture_net().
struct PostureBatch {
  torch::Tensor images;  ///< [B, C, H, W] in [0, 1]
  torch::Tensor psi;     ///< optional [B, 5] true postures (used only when psi_weight > 0)
};

/// @brief Options of train_posture_net().
struct PostureTrainOptions {
  int64_t steps = 1000;        ///< optimiser steps (one batch each)
  double lr = 1e-3;            ///< Adam learning rate
  double weight_decay = 0.0;   ///< Adam weight decay
  double final_lr_fraction = 1.0;  ///< cosine decay of the learning rate to lr · this at the last step (1 = constant)
  /// Weight of an optional supervised term ‖ψ̂ − ψ‖² when batches carry true ψ (e.g. the phantom world).
  /// 0 (default) = the paper's purely unsupervised objective.
  double psi_weight = 0.0;
  WarpPadding padding = WarpPadding::border;           ///< padding of the training warp
  int64_t log_every = 0;                               ///< call on_log every N steps (0 = never)
  std::function<void(int64_t, double)> on_log;         ///< (step, loss) logger
};

/// @brief Losses of a posture training run.
struct PostureTrainResult {
  std::vector<double> losses;  ///< per-step training loss
};

/**
 * @brief Trains @p net to warp images onto @p canonical: loss = mean((warp_to_canonical(x, net(x)) − canonical)²)
 * (Liu et al. 2019; CXRL §2.3.1), plus psi_weight · mean((ψ̂ − ψ)²) when asked. Adam; the net is left in eval mode.
 * @param net the network (trained in place, on its own device)
 * @param canonical [C, H, W] canonical CXR in [0, 1] (cxr/canonical.hpp: the mean of 500 training images),
 * same C, H, W as the batches
 * @param next_batch callback (step index → batch); it decides sampling, augmentation and device
 * @param opt options
 */
inline PostureTrainResult train_posture_net(PostureNet& net, const torch::Tensor& canonical,
                                            const std::function<PostureBatch(int64_t)>& next_batch,
                                            const PostureTrainOptions& opt = {}) {
  if (!canonical.defined() || canonical.dim() != 3)
    throw std::invalid_argument("train_posture_net: canonical must be [C, H, W], got " +
                                (canonical.defined() ? c10::str(canonical.sizes()) : std::string("undefined")));
  if (!next_batch) throw std::invalid_argument("train_posture_net: next_batch callback is empty");
  if (opt.steps < 0 || opt.lr <= 0 || opt.psi_weight < 0 || opt.final_lr_fraction < 0 || opt.final_lr_fraction > 1)
    throw std::invalid_argument("train_posture_net: need steps >= 0, lr > 0, psi_weight >= 0, final_lr_fraction in [0, 1]");
  const auto params = net->parameters();
  const auto device = params.front().device();
  const auto target = canonical.to(device, torch::kFloat32).unsqueeze(0);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(opt.lr).weight_decay(opt.weight_decay));
  PostureTrainResult res;
  net->train();
  for (int64_t step = 0; step < opt.steps; ++step) {
    if (opt.final_lr_fraction < 1.0) {
      const double c = 0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(opt.steps - 1, 1))));
      const double lr = opt.lr * (opt.final_lr_fraction + (1 - opt.final_lr_fraction) * c);
      for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    }
    PostureBatch b = next_batch(step);
    if (!b.images.defined() || b.images.dim() != 4)
      throw std::invalid_argument("train_posture_net: batch " + std::to_string(step) + " images must be [B, C, H, W]");
    auto x = b.images.to(device, torch::kFloat32);
    if (x.sizes().slice(1) != target.sizes().slice(1))
      throw std::invalid_argument("train_posture_net: batch images " + c10::str(x.sizes()) + " do not match canonical " +
                                  c10::str(canonical.sizes()));
    auto psi = net->forward(x);
    auto loss = (warp_to_canonical(x, psi, opt.padding) - target).square().mean();
    if (opt.psi_weight > 0) {
      if (!b.psi.defined())
        throw std::invalid_argument("train_posture_net: psi_weight > 0 needs batches with true postures (PostureBatch.psi)");
      loss = loss + opt.psi_weight * (psi - check_posture_tensor(b.psi, "train_posture_net").to(device, torch::kFloat32)).square().mean();
    }
    adam.zero_grad();
    loss.backward();
    adam.step();
    res.losses.push_back(loss.item<double>());
    if (opt.log_every > 0 && opt.on_log && (step + 1) % opt.log_every == 0) opt.on_log(step + 1, res.losses.back());
  }
  net->eval();
  return res;
}

/// @brief Saves the weights of @p net (keys `backbone.*`, BatchNorm buffers included) as safetensors.
/// @param path output file (written atomically)
/// @param net the network
inline void save_posture_net(const std::filesystem::path& path, const PostureNet& net) {
  io::save_safetensors(path, io::state_dict(*net), {{"format", "pt"}, {"cxrl", "PostureNet"},
                                                    {"width", std::to_string(net->config().width)},
                                                    {"image_size", std::to_string(net->config().image_size)}});
}

/// @brief Loads a PostureNet strictly from safetensors (every missing/unexpected/mis-shaped key is reported).
/// @param path weights written by save_posture_net()
/// @param cfg architecture the weights were trained with
/// @param device target device
inline PostureNet load_posture_net(const std::filesystem::path& path, const PostureNetConfig& cfg,
                                   torch::Device device = torch::kCPU) {
  PostureNet net(cfg);
  io::LoadOptions o;
  o.source = path.string();
  io::load_state_dict(*net, io::load_safetensors(path), o);
  net->to(device);
  net->eval();
  return net;
}

}  // namespace cxrl::cxr
