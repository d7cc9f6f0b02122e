// Must NOT compile: the reward lacks `score(images, prompts)`. The diagnostic is the Reward checker's
// static_assert: "cxrl Reward: missing `torch::Tensor score(...)` ...; see docs/concepts/reward.md".
// Adding the member below makes this file compile (verified), so it fails only because of the concept.
#include <cxrl/core/reward_sum.hpp>

#include <string_view>

struct NoScoreReward {
  static constexpr std::string_view name = "no_score";
  // torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts);  <- missing
};

int main() {
  cxrl::core::RewardSum<cxrl::core::Absolute<NoScoreReward>> sum{{NoScoreReward{}, 1.0}};
  (void)sum;
  return 0;
}
