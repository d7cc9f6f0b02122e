/**
 * @file rewards.hpp
 * @brief Input checks shared by the CXR rewards (cxr/align_reward.hpp, cxr/diag_reward.hpp,
 * cxr/consist_reward.hpp).
 *
 * Every CXR reward is an *absolute* scorer satisfying cxrl::core::Reward: `score(images, prompts)` takes a
 * batch of generated images [B, C, H, W] with values in [0, 1] (C = 1 gray, or 3 identical-ish RGB channels,
 * converted to gray by the channel mean where a model wants one channel) and the B reports that conditioned
 * them, and returns float32 [B] on the images' device, without gradient, with its models in eval mode.
 * core::RewardSum turns a term comparative (score(x) − score(x̂_anchor), CXRL's RLCF) when asked.
 */
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::cxr {

/**
 * @brief Validates a reward's image batch; throws std::invalid_argument naming the reward and the problem.
 *
 * Requires a defined, floating-point 4-D tensor [B, C, H, W] with B ≥ 1, C ∈ {1, 3}, H, W ≥ @p min_side,
 * finite values in [0, 1] (1e-3 slack for decoder round-off; values are clamped afterwards), and
 * `prompts.size() == B` unless @p prompts_optional and prompts is empty.
 * @param images the batch
 * @param prompts the reports
 * @param reward reward name for messages
 * @param prompts_optional true when the reward ignores the prompts
 * @param min_side smallest allowed H and W
 * @return the images clamped to [0, 1] (float32)
 */
inline torch::Tensor check_reward_images(const torch::Tensor& images, const std::vector<std::string>& prompts,
                                         std::string_view reward, bool prompts_optional = false, int64_t min_side = 32) {
  const std::string who = std::string(reward) + " reward";
  if (!images.defined()) throw std::invalid_argument(who + ": images tensor is undefined");
  if (images.dim() != 4)
    throw std::invalid_argument(who + ": expected images [B, C, H, W] in [0, 1], got " + c10::str(images.sizes()));
  if (images.size(0) < 1) throw std::invalid_argument(who + ": empty batch");
  if (images.size(1) != 1 && images.size(1) != 3)
    throw std::invalid_argument(who + ": expected 1 (gray) or 3 (RGB) channels, got " + std::to_string(images.size(1)) +
                                " in " + c10::str(images.sizes()));
  if (images.size(2) < min_side || images.size(3) < min_side)
    throw std::invalid_argument(who + ": images must be at least " + std::to_string(min_side) + "x" + std::to_string(min_side) +
                                ", got " + c10::str(images.sizes()));
  if (!images.is_floating_point())
    throw std::invalid_argument(who + ": expected floating-point images in [0, 1] (convert uint8 with x / 255), got " +
                                std::string(c10::toString(images.scalar_type())));
  const auto mn = images.min().item<double>(), mx = images.max().item<double>();
  if (!std::isfinite(mn) || !std::isfinite(mx))
    throw std::invalid_argument(who + ": images contain NaN or Inf");
  if (mn < -1e-3 || mx > 1.0 + 1e-3)
    throw std::invalid_argument(who + ": expected values in [0, 1], got [" + std::to_string(mn) + ", " + std::to_string(mx) +
                                "] (map [-1, 1] decoder outputs with (x + 1) / 2)");
  const bool prompts_ok = prompts.size() == static_cast<std::size_t>(images.size(0)) || (prompts_optional && prompts.empty());
  if (!prompts_ok)
    throw std::invalid_argument(who + ": " + std::to_string(images.size(0)) + " images but " + std::to_string(prompts.size()) +
                                " prompts (one report per image is required)");
  return images.to(torch::kFloat32).clamp(0.0, 1.0);
}

/// @brief Gray images [B, 1, H, W]: unchanged for one channel, the channel mean for three.
/// @param images [B, 1|3, H, W]
inline torch::Tensor to_gray(const torch::Tensor& images) {
  return images.size(1) == 1 ? images : images.mean(1, /*keepdim=*/true);
}

}  // namespace cxrl::cxr
