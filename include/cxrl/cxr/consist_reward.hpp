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
#include "cxrl/cxr/reward_models.hpp"
#include "cxrl/cxr/reward_set.hpp"
#include "cxrl/cxr/rewards.hpp"
#include "cxrl/text/wordpiece.hpp"

namespace cxrl::cxr {

/**
 * @brief r_consist: cos(F_visual(x), F_text(y)) of each image with its own report, in [−1, 1].
 *
 * The paper writes d_cosine and reports it as "CXR-CLIP distance (↑)": higher is better, i.e. the cosine
 * *similarity* of the L2-normalised projections, which is what this returns.
 * Inputs: images [B, 1|3, H, W] in [0, 1], H, W ≥ 32 (the native CXR-CLIP applies cxr_clip_preprocess() with its
 * own size and normalisation); prompts: the B reports. Output: float32 [B] on the images' device, no gradient.
 * @tparam M a ReportImageEmbedder (cxr/reward_models.hpp): CxrClipEmbedder, ReportsFromEmbedder over any
 *         nn::ImageTextEmbedder, or AnyReportEmbedder
 */
template <class M>
class BasicConsistReward {
  static_assert(ReportImageEmbedder<M>, "cxrl Reward consist: the model needs `embed_images(images)` and `embed_reports(reports)`; "
                                        "wrap an nn::ImageTextEmbedder in ReportsFromEmbedder (cxr/reward_models.hpp)");

 public:
  /// @brief Reward name (RewardSum term key).
  static constexpr std::string_view name = reward_name(CxrReward::consist);

  /// @param model the embedder
  explicit BasicConsistReward(M model) : m_(std::move(model)) {}
  /// @brief The native CXR-CLIP. @param model CXR-CLIP dual encoder @param tokenizer WordPiece tokenizer of its text encoder
  BasicConsistReward(CxrClip model, text::WordPieceTokenizer tokenizer)
    requires std::same_as<M, CxrClipEmbedder>
      : m_(std::move(model), std::move(tokenizer)) {}

  /// @brief Cosine similarity of each image with its report [B].
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts the B reports
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto x = check_reward_images(images, prompts, name);
    torch::NoGradGuard ng;
    torch::Tensor img = m_.embed_images(x);
    torch::Tensor txt = m_.embed_reports(prompts);
    return (img * txt.to(img.device())).sum(1).to(images.device(), torch::kFloat32);
  }

  /// @brief The model.
  M& model() { return m_; }

 private:
  M m_;
};

/// @brief r_consist with the native CXR-CLIP (the CXRL reference model).
using ConsistReward = BasicConsistReward<CxrClipEmbedder>;

}  // namespace cxrl::cxr
