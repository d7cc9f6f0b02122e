/**
 * @file align_reward.hpp
 * @brief CXRL posture-alignment reward: a posture model → ψ → r_align(ψ) (paper §2.3.1).
 */
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cxrl/cxr/posture.hpp"
#include "cxrl/cxr/reward_models.hpp"
#include "cxrl/cxr/reward_set.hpp"
#include "cxrl/cxr/rewards.hpp"

namespace cxrl::cxr {

/**
 * @brief r_align(ψ) = −(max(|s_x − 1|, |s_y − 1|) + |θ|/(2π) + √(t_x² + t_y²)) with ψ predicted by a frozen posture model.
 *
 * Inputs: images [B, 1|3, H, W] in [0, 1], square, H, W ≥ 32 (the model adapts channels and size). The prompts
 * are ignored (empty or B of them). Output: float32 [B] on the images' device; 0 for a perfectly posed image
 * (ψ = identity), negative otherwise. The score is absolute; the paper uses r_align directly.
 * @tparam M a PostureModel (cxr/reward_models.hpp): the native PostureNetModel, PostureFromClassifier over any
 *         nn::ImageClassifier, or AnyPostureModel
 */
template <class M>
class BasicAlignReward {
  static_assert(PostureModel<M>, "cxrl Reward align: the model needs `torch::Tensor posture(const torch::Tensor& images)` "
                                 "returning ψ [B, 5]; wrap an nn::ImageClassifier in PostureFromClassifier (cxr/reward_models.hpp)");

 public:
  /// @brief Reward name (RewardSum term key).
  static constexpr std::string_view name = reward_name(CxrReward::align);

  /// @param model the posture model
  explicit BasicAlignReward(M model) : m_(std::move(model)) {}

  /// @brief Loads a PostureNet from safetensors (see load_posture_net()).
  /// @param path weights
  /// @param cfg architecture
  /// @param device model device
  static BasicAlignReward load(const std::filesystem::path& path, const PostureNetConfig& cfg, torch::Device device = torch::kCPU)
    requires std::same_as<M, PostureNetModel>
  {
    return BasicAlignReward(PostureNetModel(load_posture_net(path, cfg, device)));
  }

  /// @brief Predicted ψ [B, 5] (on the model's device), without gradient.
  /// @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor posture(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    return m_.posture(check_reward_images(images, {}, name, /*prompts_optional=*/true));
  }

  /// @brief r_align per image [B].
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts ignored (empty or one per image)
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    torch::NoGradGuard ng;
    auto x = check_reward_images(images, prompts, name, /*prompts_optional=*/true);
    return alignment_reward(m_.posture(x)).to(images.device(), torch::kFloat32);
  }

  /// @brief The model.
  M& model() { return m_; }

 private:
  M m_;
};

/// @brief r_align with the native PostureNet (the CXRL reference model).
using AlignReward = BasicAlignReward<PostureNetModel>;

}  // namespace cxrl::cxr
