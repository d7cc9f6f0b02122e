// Complete example of a cxrl::core::Reward (docs/concepts/reward.md): mean brightness of an image region.
// Compiled by tests/core/test_ddpo_trainer.cpp, where DDPO learns to brighten the top-left quadrant.
#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <cxrl/core/concepts.hpp>

namespace cxrl_examples {

struct RegionBrightness {
  static constexpr std::string_view name = "brightness";  // unique within a RewardSum
  int64_t rows = 4, cols = 4;                              // the top-left rows × cols pixels

  // images [B, C, H, W] in [0, 1] → float [B]; the trainer calls it under no-grad.
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    if (images.dim() != 4 || images.size(2) < rows || images.size(3) < cols)
      throw std::invalid_argument("RegionBrightness: expected images [B, C, H>=rows, W>=cols]");
    return images.slice(2, 0, rows).slice(3, 0, cols).mean({1, 2, 3}).to(torch::kFloat);
  }
};

static_assert(cxrl::core::Reward<RegionBrightness>);

}  // namespace cxrl_examples
