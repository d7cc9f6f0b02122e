/**
 * @file align_reward.hpp
 * @brief CXRL posture-alignment reward: PostureNet → ψ → r_align(ψ) (paper §2.3.1).
 */
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

#include "cxrl/cxr/posture.hpp"
#include "cxrl/cxr/rewards.hpp"

namespace cxrl::cxr {

/**
 * @brief r_align(ψ) = −(max(|s_x − 1|, |s_y − 1|) + |θ|/(2π) + √(t_x² + t_y²)) with ψ predicted by a frozen PostureNet.
 *
 * Inputs: images [B, 1|3, H, W] in [0, 1], square, H, W ≥ 32 (RGB is averaged to gray when the net takes one
 * channel, gray is repeated when it takes three; any square size is resized to the net's image_size). The prompts are ignored (empty or B of them).
 * Output: float32 [B] on the images' device; 0 for a perfectly posed image (ψ = identity), negative otherwise.
 * The score is absolute; the paper uses r_align directly (it is not made comparative).
 */
class AlignReward {
 public:
  /// @brief Reward name (RewardSum term key).
  static constexpr std::string_view name = "align";

  /// @param net a trained PostureNet (kept on its device; put in eval mode)
  explicit AlignReward(PostureNet net) : net_(std::move(net)) {
    if (!net_) throw std::invalid_argument("AlignReward: PostureNet is empty");
    net_->eval();
  }

  /// @brief Loads a PostureNet from safetensors (see load_posture_net()).
  /// @param path weights
  /// @param cfg architecture
  /// @param device model device
  static AlignReward load(const std::filesystem::path& path, const PostureNetConfig& cfg, torch::Device device = torch::kCPU) {
    return AlignReward(load_posture_net(path, cfg, device));
  }

  /// @brief Predicted ψ [B, 5] (on the model's device), without gradient.
  /// @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor posture(const torch::Tensor& images) {
    auto x = check_reward_images(images, {}, name, /*prompts_optional=*/true);
    return predict(x);
  }

  /// @brief r_align per image [B].
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts ignored (empty or one per image)
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto x = check_reward_images(images, prompts, name, /*prompts_optional=*/true);
    return alignment_reward(predict(x)).to(images.device(), torch::kFloat32);
  }

  /// @brief The network.
  PostureNet& net() { return net_; }

 private:
  torch::Tensor predict(const torch::Tensor& x01) {
    torch::NoGradGuard ng;
    net_->eval();
    auto x = x01;
    if (net_->config().in_channels == 1) x = to_gray(x);
    else if (net_->config().in_channels == 3 && x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
    else if (x.size(1) != net_->config().in_channels)
      throw std::invalid_argument("align reward: the PostureNet takes " + std::to_string(net_->config().in_channels) +
                                  " channels, got " + std::to_string(x.size(1)));
    const auto device = net_->parameters().front().device();
    return net_->forward(x.to(device));
  }

  PostureNet net_;
};

}  // namespace cxrl::cxr
