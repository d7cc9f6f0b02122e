/**
 * @file ddim_sampler.hpp
 * @brief The DDPO sampler: stochastic DDIM over any Policy, recording latents and per-step log-probs,
 *        with classifier-free guidance, teacher-forced log-prob recomputation and the anchor pass.
 *
 * Follows ddpo-pytorch `pipeline_with_logprob` (sampling) and the training block of `scripts/train.py`
 * (log-prob of the recorded next latent under the current model).
 */
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cxrl/core/adapters_guard.hpp"
#include "cxrl/core/concepts.hpp"
#include "cxrl/core/trajectory.hpp"
#include "cxrl/diffusion/ddim.hpp"
#include "cxrl/diffusion/guidance.hpp"

namespace cxrl::core {

/// @brief Settings of DdimSampler (ddpo-pytorch `config.sample` names and defaults).
struct DdimSamplerConfig {
  int64_t num_steps = 50;        ///< DDIM inference steps T.
  double eta = 1.0;              ///< DDIM noise weight; > 0 so that transitions have a density.
  double guidance_scale = 5.0;   ///< classifier-free guidance weight w; 1 disables CFG (no unconditional pass).
  /**
   * @brief Re-encode the prompts with gradient in log_prob() (needed when the condition itself is trained,
   *        e.g. CXRL's adaptive condition embeddings); false reuses the recorded, detached conditions as
   *        ddpo-pytorch does.
   */
  bool reencode_prompts = true;
};

/**
 * @brief Stochastic DDIM sampler with log-probabilities for DDPO (models the Sampler concept).
 *
 * The anchor pass (`sample_anchor`) starts from the policy's own x_T but draws its per-step noise from the
 * generator it is given: sharing x_T pairs the comparison, while independent per-step noise keeps the
 * anchor's reward independent of the policy's actions (an unbiased baseline; with shared noise an
 * untrained policy would equal its anchor exactly and every comparative reward would be 0).
 */
class DdimSampler {
 public:
  /**
   * @brief A sampler.
   * @param scheduler the DDIM scheduler (its timesteps are set to cfg.num_steps here).
   * @param cfg sampling settings.
   * @throws std::invalid_argument for num_steps < 1, eta <= 0 or a non-finite guidance scale.
   */
  explicit DdimSampler(diffusion::DDIMScheduler scheduler, DdimSamplerConfig cfg = {})
      : scheduler_(std::move(scheduler)), cfg_(cfg) {
    if (cfg_.num_steps < 1)
      throw std::invalid_argument("cxrl::core::DdimSampler: num_steps must be >= 1, got " + std::to_string(cfg_.num_steps));
    if (!(cfg_.eta > 0.0))
      throw std::invalid_argument("cxrl::core::DdimSampler: eta must be > 0 (log-probs need a stochastic step), got " +
                                  std::to_string(cfg_.eta));
    if (!std::isfinite(cfg_.guidance_scale))
      throw std::invalid_argument("cxrl::core::DdimSampler: guidance_scale must be finite");
    scheduler_.set_timesteps(cfg_.num_steps);
    // ddpo-pytorch clamps the last step's previous timestep to 0; if that step starts at t = 0 too, the
    // transition has zero variance and its log-density is NaN. Stable Diffusion avoids it with steps_offset = 1.
    if (scheduler_.timesteps().min().item<int64_t>() <= 0)
      throw std::invalid_argument(
          "cxrl::core::DdimSampler: the scheduler's last timestep is 0, where the stochastic DDIM step has zero "
          "variance and no log-probability; use steps_offset = 1 (Stable Diffusion's scheduler_config.json) or "
          "timestep_spacing = trailing");
  }

  /// @brief Whether classifier-free guidance is on (guidance_scale != 1).
  bool guidance_enabled() const { return cfg_.guidance_scale != 1.0; }
  /// @brief The settings.
  const DdimSamplerConfig& config() const { return cfg_; }
  /// @brief The scheduler.
  const diffusion::DDIMScheduler& scheduler() const { return scheduler_; }
  /// @brief Number of denoising steps T.
  int64_t num_steps() const { return scheduler_.timesteps().size(0); }

  /**
   * @brief Samples one batch under no-grad: x_T ~ N(0, I) from @p gen, then T stochastic DDIM steps.
   * @tparam P a Policy.
   * @param policy the policy (adapters as they are).
   * @param prompts B prompts.
   * @param gen generator for x_T and every step's noise.
   */
  template <class P>
  Trajectory sample(P& policy, const std::vector<std::string>& prompts, at::Generator& gen) {
    static_assert(check_policy<P>());
    if (prompts.empty()) throw std::invalid_argument("cxrl::core::DdimSampler::sample: no prompts given");
    torch::NoGradGuard no_grad;
    const auto b = static_cast<int64_t>(prompts.size());
    Trajectory traj;
    traj.prompts = prompts;
    traj.conditions = policy.encode(prompts);
    if (guidance_enabled()) traj.unconditional = encode_unconditional(policy, b);

    std::vector<int64_t> shape{b};
    for (int64_t d : std::vector<int64_t>(policy.sample_shape())) shape.push_back(d);
    const auto opts = latent_options(traj.conditions);
    auto x_T = torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat).device(gen.device()))
                   .to(opts.device(), opts.dtype().toScalarType());
    auto [latents, log_probs] = denoise(policy, x_T, traj.conditions, traj.unconditional, gen);
    traj.latents = latents;
    traj.log_probs = log_probs;
    traj.timesteps = scheduler_.timesteps().to(x_T.device()).unsqueeze(0).expand({b, num_steps()}).contiguous();
    traj.images = policy.decode(latents.select(1, num_steps()));
    return traj;
  }

  /**
   * @brief Runs the anchor (policy with adapters disabled) from the trajectory's own x_T and stores its
   *        final latents and images in `traj.anchor_latents` / `traj.anchor_images`.
   *
   * With @p samples = K > 1 the anchor is run K times from each x_T, with independent step noise, in one batch
   * of K·B; the results are stored as [B, K, …]. Their mean score estimates the anchor's expected reward for
   * the report and x_T: a lower-variance comparative baseline than one sample (CXRL's RLCF with K = 1).
   * @tparam P a Policy.
   * @param policy the policy; its adapters are disabled for the call and restored after.
   * @param traj a trajectory returned by sample().
   * @param gen generator for the anchor's per-step noise (independent of the policy's; see the class notes).
   * @param samples anchor samples per trajectory, K ≥ 1.
   */
  template <class P>
  void sample_anchor(P& policy, Trajectory& traj, at::Generator& gen, int64_t samples = 1) {
    static_assert(check_policy<P>());
    if (!traj.latents.defined()) throw std::invalid_argument("cxrl::core::DdimSampler::sample_anchor: empty trajectory");
    if (samples < 1) throw std::invalid_argument("cxrl::core::DdimSampler::sample_anchor: samples must be >= 1");
    torch::NoGradGuard no_grad;
    AdaptersDisabled<P> anchor(policy);
    const int64_t b = traj.batch_size();
    // Condition encoded by the anchor too: trained condition embeddings are adapters as well.
    auto cond = condition(policy, traj, /*anchor=*/true);
    torch::Tensor uncond = guidance_enabled() ? encode_unconditional(policy, b * samples) : torch::Tensor{};
    auto x_T = traj.latents.select(1, 0);
    if (samples > 1) {
      x_T = x_T.repeat_interleave(samples, 0);  // row i·K + k: the k-th anchor sample of trajectory i
      cond = cond.repeat_interleave(samples, 0);
    }
    auto [latents, log_probs] = denoise(policy, x_T, cond, uncond, gen);
    auto x0 = latents.select(1, num_steps()).contiguous();
    auto images = policy.decode(x0);
    if (samples > 1) {
      auto split = [&](const torch::Tensor& t) {
        std::vector<int64_t> shape{b, samples};
        for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
        return t.reshape(shape);
      };
      x0 = split(x0);
      images = split(images);
    }
    traj.anchor_latents = x0;
    traj.anchor_images = images;
  }

  /**
   * @brief log p_θ(x_{t-1} | x_t, c) of the recorded transitions at per-sample step indices, with gradient.
   *
   * Teacher-forced on the recorded next latent, with CFG when the trajectory carries an unconditional
   * embedding (ddpo-pytorch `train.cfg`).
   * @tparam P a Policy.
   * @param policy the policy being trained.
   * @param traj recorded trajectories (B of them).
   * @param steps int64 [B] step index per sample in [0, T).
   * @return [B] log-probabilities.
   */
  template <class P>
  torch::Tensor log_prob(P& policy, const Trajectory& traj, const torch::Tensor& steps) {
    static_assert(check_policy<P>());
    const auto in = recorded_step(traj, steps, "log_prob");
    auto out = guided_prediction(policy, in.x_t, in.t, condition(policy, traj, false), unconditional(policy, traj, false));
    return scheduler_.step_with_logprob(out, in.t, in.x_t, cfg_.eta, in.x_prev).log_prob;
  }

  /// @brief log_prob_and_anchor_kl()'s result.
  struct LogProbAndKl {
    torch::Tensor log_prob;   ///< [B] as log_prob(), with gradient
    torch::Tensor anchor_kl;  ///< [B] KL(p_θ(x_{t-1}|x_t) ‖ p_anchor(x_{t-1}|x_t)) per latent element, with gradient
  };

  /**
   * @brief log_prob() and the KL divergence of the policy's transition from the anchor's at the same recorded x_t.
   *
   * Both transitions are Gaussians with the step's σ_t, so the divergence is closed-form,
   * ‖μ_θ − μ_anchor‖² / (2σ_t²) (DPOK, Fan et al. 2023, Lemma 4.2: the sum over steps bounds the KL of the final
   * images); it is averaged over latent elements, as log_prob is. The anchor (adapters disabled, its own condition
   * encoding, as in sample_anchor) runs without gradient, so the divergence pulls only the policy toward it.
   * @tparam P a Policy.
   * @param policy the policy being trained.
   * @param traj recorded trajectories (B of them).
   * @param steps int64 [B] step index per sample in [0, T).
   */
  template <class P>
  LogProbAndKl log_prob_and_anchor_kl(P& policy, const Trajectory& traj, const torch::Tensor& steps) {
    static_assert(check_policy<P>());
    const auto in = recorded_step(traj, steps, "log_prob_and_anchor_kl");
    auto out = guided_prediction(policy, in.x_t, in.t, condition(policy, traj, false), unconditional(policy, traj, false));
    auto step = scheduler_.step_with_logprob(out, in.t, in.x_t, cfg_.eta, in.x_prev);
    torch::Tensor anchor_mean;
    {
      torch::NoGradGuard no_grad;
      AdaptersDisabled<P> anchor(policy);
      auto a = guided_prediction(policy, in.x_t, in.t, condition(policy, traj, true), unconditional(policy, traj, true));
      anchor_mean = scheduler_.step_with_logprob(a, in.t, in.x_t, cfg_.eta, in.x_prev).mean;
    }
    std::vector<int64_t> dims;
    for (int64_t d = 1; d < in.x_t.dim(); ++d) dims.push_back(d);
    auto var = step.std_dev_t.pow(2).reshape({-1});
    auto kl = (step.mean - anchor_mean).pow(2).mean(dims) / (2.0 * var);
    return {step.log_prob, kl};
  }

  /**
   * @brief log_prob() at the same step index for every sample.
   * @tparam P a Policy.
   * @param policy the policy being trained.
   * @param traj recorded trajectories.
   * @param step step index in [0, T).
   */
  template <class P>
  torch::Tensor log_prob(P& policy, const Trajectory& traj, int64_t step) {
    return log_prob(policy, traj, torch::full({traj.batch_size()}, step, torch::kLong));
  }

 private:
  struct RecordedStep {
    torch::Tensor x_t, x_prev, t;
  };

  // The recorded transition x_t → x_{t-1} of each sample at its step index.
  static RecordedStep recorded_step(const Trajectory& traj, const torch::Tensor& steps, const char* who) {
    const int64_t b = traj.batch_size();
    if (!steps.defined() || steps.dim() != 1 || steps.size(0) != b)
      throw std::invalid_argument(std::string("cxrl::core::DdimSampler::") + who + ": steps must be int64 [B] with B = " +
                                  std::to_string(b));
    auto idx = steps.to(traj.latents.device(), torch::kLong);
    if (b > 0 && (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= traj.num_steps()))
      throw std::out_of_range(std::string("cxrl::core::DdimSampler::") + who + ": step index outside [0, " +
                              std::to_string(traj.num_steps()) + ")");
    auto rows = torch::arange(b, idx.options());
    return {traj.latents.index({rows, idx}), traj.latents.index({rows, idx + 1}), traj.timesteps.index({rows, idx})};
  }

  // The condition of the recorded prompts: re-encoded (with gradient into trained condition embeddings) when
  // reencode_prompts is on or for the anchor, whose encoding differs from the policy's recorded one.
  template <class P>
  torch::Tensor condition(P& policy, const Trajectory& traj, bool anchor) {
    return cfg_.reencode_prompts || anchor ? policy.encode(traj.prompts) : traj.conditions;
  }
  template <class P>
  torch::Tensor unconditional(P& policy, const Trajectory& traj, bool anchor) {
    if (!traj.unconditional.defined()) return {};
    return cfg_.reencode_prompts || anchor ? encode_unconditional(policy, traj.batch_size()) : traj.unconditional;
  }

  static torch::TensorOptions latent_options(const torch::Tensor& cond) {
    auto dtype = cond.is_floating_point() ? cond.scalar_type() : torch::kFloat;
    return torch::TensorOptions().dtype(dtype).device(cond.device());
  }

  template <class P>
  static torch::Tensor encode_unconditional(P& policy, int64_t b) {
    auto u = policy.encode(std::vector<std::string>{""});
    return u.expand({b, u.size(1), u.size(2)});
  }

  // ε/v/x0 prediction with CFG as one doubled forward pass [uncond; cond] (diffusers/ddpo-pytorch).
  template <class P>
  torch::Tensor guided_prediction(P& policy, const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cond,
                                  const torch::Tensor& uncond) {
    if (!uncond.defined()) return policy.predict(x, t, cond);
    auto out = policy.predict(torch::cat({x, x}), torch::cat({t, t}), torch::cat({uncond, cond}));
    return diffusion::classifier_free_guidance(out, cfg_.guidance_scale);
  }

  template <class P>
  std::pair<torch::Tensor, torch::Tensor> denoise(P& policy, const torch::Tensor& x_T, const torch::Tensor& cond,
                                                  const torch::Tensor& uncond, at::Generator& gen) {
    const int64_t b = x_T.size(0);
    std::vector<torch::Tensor> latents{x_T}, log_probs;
    latents.reserve(static_cast<size_t>(num_steps() + 1));
    auto x = x_T;
    const auto& ts = scheduler_.timesteps();
    for (int64_t i = 0; i < num_steps(); ++i) {
      auto t = ts[i].to(x.device()).expand({b}).contiguous();
      auto out = guided_prediction(policy, x, t, cond, uncond);
      auto step = scheduler_.step_with_logprob(out, t, x, cfg_.eta, {}, gen);
      x = step.prev_sample;
      latents.push_back(x);
      log_probs.push_back(step.log_prob);
    }
    return {torch::stack(latents, 1), torch::stack(log_probs, 1)};
  }

  diffusion::DDIMScheduler scheduler_;
  DdimSamplerConfig cfg_;
};

}  // namespace cxrl::core
