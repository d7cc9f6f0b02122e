// The knee program's rewards. SideReward is the one written fresh from docs/concepts/reward.md (its score is
// under 30 lines); GradeReward wraps a classifier exported from Python with torch.jit.trace
// (scripts/train_knee_classifier.py) through the library's TorchScript adapter.
#pragma once

#include "world.hpp"

#include <cxrl/core/concepts.hpp>
#include <cxrl/nn/torchscript.hpp>

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace knee_rl {

/// The side the caption names, as +1 (right) or −1 (left); an error names the prompt that has none.
inline torch::Tensor side_signs(const std::vector<std::string>& prompts) {
  auto s = torch::empty({static_cast<int64_t>(prompts.size())});
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto f = parse_caption(prompts[i]);
    if (!f) throw std::invalid_argument("knee reward: the prompt names no knee side and KL grade: '" + prompts[i] + "'");
    s[static_cast<int64_t>(i)] = f->side == Side::right ? 1.0 : -1.0;
  }
  return s;
}

/// r_side: is the fibula on the side the caption names? In an AP view a right knee's fibula lies on the image's left.
struct SideReward {
  static constexpr std::string_view name = "side";

  // Brightness beside the upper tibia, image-left minus image-right, signed by the named side: > 0 when the fibula
  // is where the anatomy puts it.
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) const {
    const auto h = images.size(2), w = images.size(3);
    const auto band = images.slice(2, h * 5 / 8, h * 7 / 8);
    const auto left = band.slice(3, 0, w / 3).mean({1, 2, 3}), right = band.slice(3, w - w / 3, w).mean({1, 2, 3});
    return (side_signs(prompts).to(images.device()) * (left - right)).to(torch::kFloat);
  }
};
static_assert(cxrl::core::Reward<SideReward>);

/// r_grade: the probability a KL classifier gives the caption's grade (a traced `forward(images [B,1,R,R] in
/// [0,1]) → logits [B,5]`).
class GradeReward {
 public:
  static constexpr std::string_view name = "grade";

  explicit GradeReward(cxrl::nn::TorchScriptClassifier classifier) : clf_(std::move(classifier)) {}

  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    std::vector<int64_t> grade;
    for (const auto& p : prompts) {
      const auto f = parse_caption(p);
      if (!f) throw std::invalid_argument("GradeReward: the prompt names no KL grade: '" + p + "'");
      grade.push_back(f->kl_grade);
    }
    const auto logits = clf_.forward(images);
    if (logits.dim() != 2 || logits.size(1) != 5)
      throw std::invalid_argument("GradeReward: the classifier must return logits [B, 5] (KL 0-4), got " + c10::str(logits.sizes()));
    const auto target = torch::tensor(grade, torch::kLong).to(logits.device()).unsqueeze(1);
    return torch::softmax(logits.to(torch::kFloat), 1).gather(1, target).squeeze(1);
  }

 private:
  cxrl::nn::TorchScriptClassifier clf_;
};
static_assert(cxrl::core::Reward<GradeReward>);

/// The same score from a classifier trained apart (another world seed, another training seed): it judges the
/// evaluation, so a gain is not only the optimised classifier being fooled.
struct GradeJudge : GradeReward {
  static constexpr std::string_view name = "judge_grade";
  using GradeReward::GradeReward;
};
static_assert(cxrl::core::Reward<GradeJudge>);

}  // namespace knee_rl
