/**
 * @file consist_reward.hpp
 * @brief CXRL multimodal-consistency reward: cosine similarity of CXR-CLIP image and report embeddings
 * (paper §2.3.3, r_consist = d_cos(F_visual(x), F_text(y)), made comparative by RewardSum).
 */
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

#include "cxrl/cxr/cxr_clip.hpp"
#include "cxrl/cxr/rewards.hpp"
#include "cxrl/text/wordpiece.hpp"

namespace cxrl::cxr {

/**
 * @brief r_consist: cos(F_visual(x), F_text(y)) of each image with its own report, in [−1, 1].
 *
 * The paper writes d_cosine and reports it as "CXR-CLIP distance (↑)": higher is better, i.e. the cosine
 * *similarity* of the L2-normalised CXR-CLIP projections, which is what this returns.
 * Inputs: images [B, 1|3, H, W] in [0, 1], H, W ≥ 32 (cxr_clip_preprocess(): shorter side resized to the
 * model's image_size, centre crop, gray repeated to RGB, ImageNet mean/std); prompts: the B reports
 * (WordPiece-tokenised, truncated to the model's max_length). Output: float32 [B] on the images'
 * device, no gradient, model in eval mode on its own device.
 */
class ConsistReward {
 public:
  /// @brief Reward name (RewardSum term key).
  static constexpr std::string_view name = "consist";

  /// @param model CXR-CLIP dual encoder
  /// @param tokenizer WordPiece tokenizer of its text encoder
  ConsistReward(CxrClip model, text::WordPieceTokenizer tokenizer) : model_(std::move(model)), tok_(std::move(tokenizer)) {
    if (!model_) throw std::invalid_argument("ConsistReward: CxrClip model is empty");
    model_->eval();
  }

  /// @brief Cosine similarity of each image with its report [B].
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts the B reports
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto x = check_reward_images(images, prompts, name);
    torch::NoGradGuard ng;
    model_->eval();
    const auto device = model_->logit_scale.device();
    auto img = model_->encode_image(cxr_clip_preprocess(x, model_->config().image_size).to(device));
    auto txt = model_->encode_texts(tok_, prompts);
    return (img * txt).sum(1).to(images.device(), torch::kFloat32);
  }

  /// @brief The model.
  CxrClip& model() { return model_; }
  /// @brief The tokenizer.
  const text::WordPieceTokenizer& tokenizer() const { return tok_; }

 private:
  CxrClip model_;
  text::WordPieceTokenizer tok_;
};

}  // namespace cxrl::cxr
