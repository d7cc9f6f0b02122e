/// @file
/// @brief The RL loop's positive control: fine-tune an anchor against mean image brightness alone and measure the
///        held-out gain as a paired interval.
///
/// When a run against real rewards shows no gain, the first question is whether the loop (sampler log-probs,
/// advantages, PPO, adapters) can move the model at all with that anchor and those settings. Brightness answers
/// it: a working policy gradient raises it far within a CXRL run's budget, because every sample's reward is exact
/// and every adapter weight can shift intensity. ddpo-pytorch keeps JPEG (in)compressibility for the same purpose
/// (Black et al. 2023, §6.1). A gain of a few per-sample standard deviations here, and none on a real reward
/// at the same budget, says the real reward's signal is the limit, not the loop.
#pragma once

#include <cxrl/app/heldout.hpp>
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/eval/bootstrap.hpp>
#include <cxrl/eval/table.hpp>
#include <cxrl/io/progress.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::app {

/// @brief Mean pixel value of each image (images in [0, 1]): a reward with no model and no noise.
struct MeanBrightness {
  static constexpr std::string_view name = "brightness";  ///< reward name in logs
  /// @brief Per-image mean. @param images [B, C, H, W] @param prompts unused (one per image)
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) const {
    (void)prompts;
    return images.to(torch::kFloat32).mean({1, 2, 3});
  }
};

/// @brief What check_learning() measured on the held-out prompts (policy and anchor from the same x_T).
struct LearningCheck {
  int64_t epochs = 0;            ///< epochs trained
  int64_t n_heldout = 0;         ///< held-out prompts
  double anchor_sd = 0;          ///< sample standard deviation of the anchor's per-prompt brightness
  eval::PairedDelta delta;       ///< policy − anchor mean brightness, paired bootstrap interval over prompts
  /// @brief The gain in per-sample standard deviations of the anchor (how far the distribution moved).
  double gain_sd() const { return anchor_sd > 0 ? delta.delta / anchor_sd : std::nan(""); }
};

/**
 * @brief Trains @p policy against MeanBrightness for @p epochs and returns its held-out gain over the anchor.
 *
 * The gain is app::compare_with_anchor's: policy and anchor (adapters off) sample every held-out prompt from the
 * same x_T, and the interval is paired per prompt. Advantages are whitened over the batch, as in a CXRL run, so
 * the control differs from a real run in the reward only.
 * @param policy a policy with fresh adapters (it is trained in place)
 * @param sampler its sampler (with `sample_anchor`)
 * @param prompts the trainer's prompt function (training prompts)
 * @param heldout prompts the gain is measured on (≥ 2)
 * @param cfg trainer settings
 * @param epochs epochs to train (≥ 1)
 * @param eval_seed seed of the held-out noise and of the bootstrap
 * @param quiet no progress output
 * @throws std::invalid_argument for fewer than 2 held-out prompts or epochs < 1
 */
template <class P, class S>
LearningCheck check_learning(P& policy, S sampler, std::function<std::vector<std::string>(int64_t, at::Generator&)> prompts,
                             const std::vector<std::string>& heldout, const core::TrainerConfig& cfg, int64_t epochs,
                             uint64_t eval_seed = 1234, bool quiet = false) {
  if (heldout.size() < 2) throw std::invalid_argument("check_learning: need at least 2 held-out prompts");
  if (epochs < 1) throw std::invalid_argument("check_learning: epochs must be >= 1");
  auto reward = core::RewardSum(core::Absolute{MeanBrightness{}, 1.0});
  core::Trainer trainer(policy, sampler, reward, core::BatchWhitening{}, std::move(prompts), cfg);
  io::Progress bar("check-learning (brightness)", static_cast<long>(epochs), quiet);
  for (int64_t e = 0; e < epochs; ++e) {
    const auto st = trainer.train_epoch();
    bar.update(static_cast<long>(e + 1), "brightness " + std::to_string(st.components.at(0).score_mean));
  }
  eval::BootstrapOptions bo;
  bo.seed = eval_seed;
  const auto cmp = compare_with_anchor(policy, sampler, reward, heldout, std::max<int64_t>(cfg.batch_size, 1), {eval_seed}, bo, quiet);
  const HeldoutTerm& t = cmp.terms.at(0);
  LearningCheck c;
  c.epochs = epochs;
  c.n_heldout = static_cast<int64_t>(heldout.size());
  c.anchor_sd = eval::mean_and_std(t.anchor).second;
  c.delta = t.delta;
  return c;
}

}  // namespace cxrl::app
