/// @file
/// @brief Classifier-free guidance (Ho & Salimans 2022, eq. 6; diffusers StableDiffusionPipeline).
#pragma once

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

namespace cxrl::diffusion {

/// @brief Guided prediction uncond + w * (cond - uncond) (Ho & Salimans 2022, eq. 6 with w = 1 + their w).
///
/// w = 1 returns @p cond; w = 0 returns @p uncond; w > 1 extrapolates away from the unconditional output
/// (Stable Diffusion's default is 7.5). Differentiable in both inputs.
/// @param uncond model output for the empty prompt
/// @param cond model output for the prompt, same shape as @p uncond
/// @param w guidance scale
inline torch::Tensor classifier_free_guidance(const torch::Tensor& uncond, const torch::Tensor& cond, double w) {
  if (!uncond.defined() || !cond.defined())
    throw std::invalid_argument("classifier_free_guidance: undefined tensor argument");
  if (uncond.sizes() != cond.sizes()) {
    std::ostringstream s;
    s << "classifier_free_guidance: uncond has shape " << uncond.sizes() << " but cond has shape " << cond.sizes()
      << "; they must match";
    throw std::invalid_argument(s.str());
  }
  return uncond + w * (cond - uncond);
}

/// @brief Classifier-free guidance on a doubled batch [uncond; cond] (the layout diffusers feeds the UNet:
///        `noise_pred.chunk(2)` gives uncond first, then cond).
/// @param stacked model output of shape [2B, ...]
/// @param w guidance scale
inline torch::Tensor classifier_free_guidance(const torch::Tensor& stacked, double w) {
  if (!stacked.defined() || stacked.dim() < 1 || stacked.size(0) % 2 != 0) {
    std::ostringstream s;
    s << "classifier_free_guidance: expected a doubled batch [uncond; cond] with an even first dim, got shape "
      << (stacked.defined() ? stacked.sizes() : c10::IntArrayRef{});
    throw std::invalid_argument(s.str());
  }
  auto halves = stacked.chunk(2, 0);
  return classifier_free_guidance(halves[0], halves[1], w);
}

}  // namespace cxrl::diffusion
