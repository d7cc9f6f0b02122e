/**
 * @file trajectory.hpp
 * @brief One batch of denoising trajectories recorded by a Sampler for DDPO.
 *
 * Layout follows ddpo-pytorch's `scripts/train.py` sample dict: latents x_T…x_0 stacked on dim 1,
 * the scheduler timesteps per step and the per-step log-probabilities of the sampled transition.
 */
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::core {

/**
 * @brief A batch of B denoising trajectories of T steps.
 *
 * Tensors that are optional are left undefined (`!t.defined()`) when absent:
 * `unconditional` without classifier-free guidance, `anchor_*` without an anchor pass.
 */
struct Trajectory {
  std::vector<std::string> prompts;  ///< B prompt texts.
  torch::Tensor conditions;          ///< [B, L, D] encoder hidden states of `prompts`.
  torch::Tensor unconditional;       ///< [B, L, D] encoding of "" (CFG), undefined when guidance is off.
  torch::Tensor latents;             ///< [B, T+1, C, H, W]: x_T (index 0) … x_0 (index T).
  torch::Tensor timesteps;           ///< [B, T] int64 scheduler timesteps, descending.
  torch::Tensor log_probs;           ///< [B, T] log p(x_{t-1} | x_t) of the sampled transitions (no grad).
  torch::Tensor images;              ///< [B, C', H', W'] decoded x_0 in [0, 1].
  torch::Tensor anchor_latents;      ///< [B, C, H, W] anchor's x̂_0 from the same x_T ([B, K, …] for K samples), or undefined.
  torch::Tensor anchor_images;       ///< [B, C', H', W'] decoded anchor samples ([B, K, …] for K samples), or undefined.

  /// @brief Number of trajectories B.
  int64_t batch_size() const { return latents.defined() ? latents.size(0) : 0; }
  /// @brief Number of denoising steps T.
  int64_t num_steps() const { return timesteps.defined() ? timesteps.size(1) : 0; }
  /// @brief Whether the anchor's samples are present.
  bool has_anchor() const { return anchor_images.defined(); }
  /// @brief Whether classifier-free guidance data is present.
  bool has_guidance() const { return unconditional.defined(); }

  /**
   * @brief The trajectories at batch positions `index` (in that order).
   * @param index int64 [K] indices into the batch dimension.
   */
  Trajectory select(const torch::Tensor& index) const {
    Trajectory out;
    auto idx = index.to(torch::kLong);
    auto pick = [&](const torch::Tensor& t) {
      return t.defined() ? t.index_select(0, idx.to(t.device())) : torch::Tensor{};
    };
    auto cpu_idx = idx.to(torch::kCPU).contiguous();
    const int64_t* p = cpu_idx.data_ptr<int64_t>();
    out.prompts.reserve(static_cast<size_t>(cpu_idx.numel()));
    for (int64_t i = 0; i < cpu_idx.numel(); ++i) {
      if (p[i] < 0 || p[i] >= static_cast<int64_t>(prompts.size()))
        throw std::out_of_range("cxrl::core::Trajectory::select: index " + std::to_string(p[i]) +
                                " outside [0, " + std::to_string(prompts.size()) + ")");
      out.prompts.push_back(prompts[static_cast<size_t>(p[i])]);
    }
    out.conditions = pick(conditions);
    out.unconditional = pick(unconditional);
    out.latents = pick(latents);
    out.timesteps = pick(timesteps);
    out.log_probs = pick(log_probs);
    out.images = pick(images);
    out.anchor_latents = pick(anchor_latents);
    out.anchor_images = pick(anchor_images);
    return out;
  }

  /**
   * @brief Concatenates batches along the batch dimension.
   * @param parts trajectories with the same T and the same optional fields present.
   * @throws std::invalid_argument when the parts disagree on T or on which optional fields exist.
   */
  static Trajectory cat(const std::vector<Trajectory>& parts) {
    if (parts.empty()) throw std::invalid_argument("cxrl::core::Trajectory::cat: no parts given");
    Trajectory out;
    for (const auto& p : parts) {
      if (p.num_steps() != parts.front().num_steps())
        throw std::invalid_argument("cxrl::core::Trajectory::cat: parts have different step counts (" +
                                    std::to_string(p.num_steps()) + " vs " +
                                    std::to_string(parts.front().num_steps()) + ")");
      out.prompts.insert(out.prompts.end(), p.prompts.begin(), p.prompts.end());
    }
    auto join = [&](auto member, const char* name) {
      std::vector<torch::Tensor> ts;
      for (const auto& p : parts) {
        const torch::Tensor& t = p.*member;
        if (t.defined() != (parts.front().*member).defined())
          throw std::invalid_argument(std::string("cxrl::core::Trajectory::cat: field '") + name +
                                      "' is present in some parts only");
        if (t.defined()) ts.push_back(t);
      }
      return ts.empty() ? torch::Tensor{} : torch::cat(ts, 0);
    };
    out.conditions = join(&Trajectory::conditions, "conditions");
    out.unconditional = join(&Trajectory::unconditional, "unconditional");
    out.latents = join(&Trajectory::latents, "latents");
    out.timesteps = join(&Trajectory::timesteps, "timesteps");
    out.log_probs = join(&Trajectory::log_probs, "log_probs");
    out.images = join(&Trajectory::images, "images");
    out.anchor_latents = join(&Trajectory::anchor_latents, "anchor_latents");
    out.anchor_images = join(&Trajectory::anchor_images, "anchor_images");
    return out;
  }
};

}  // namespace cxrl::core
