/**
 * @file losses.hpp
 * @brief DDPO policy-gradient losses: importance-sampled PPO-clip (DDPO-IS) and REINFORCE (DDPO-SF).
 *
 * Black et al., "Training Diffusion Models with Reinforcement Learning" (2023), Sec. 4.3;
 * formulas and diagnostics as in ddpo-pytorch `scripts/train.py` (the "ppo logic" block).
 */
#pragma once

#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace cxrl::core {

/// @brief Which DDPO estimator the trainer uses.
enum class PolicyGradient {
  importance_sampling,  ///< DDPO-IS: PPO-clip on the ratio p_θ / p_θ_old.
  score_function        ///< DDPO-SF: REINFORCE, −A · log p_θ.
};

/// @brief Loss of one timestep minibatch plus the diagnostics ddpo-pytorch logs.
struct PolicyLoss {
  torch::Tensor loss;       ///< 0-d scalar, differentiable.
  torch::Tensor approx_kl;  ///< 0-d, ½·mean((logp − old_logp)²), detached.
  torch::Tensor clipfrac;   ///< 0-d, mean(|ratio − 1| > clip_range), detached.
};

namespace detail {
inline void check_loss_inputs(const torch::Tensor& log_prob, const torch::Tensor& old_log_prob,
                              const torch::Tensor& advantages, const char* who) {
  if (!log_prob.defined() || !old_log_prob.defined() || !advantages.defined())
    throw std::invalid_argument(std::string(who) + ": log_prob, old_log_prob and advantages must be defined");
  if (log_prob.sizes() != old_log_prob.sizes() || log_prob.sizes() != advantages.sizes())
    throw std::invalid_argument(std::string(who) + ": log_prob, old_log_prob and advantages must have the same shape [B], got " +
                                std::to_string(log_prob.dim()) + "-d/" + std::to_string(old_log_prob.dim()) + "-d/" +
                                std::to_string(advantages.dim()) + "-d with sizes " + std::to_string(log_prob.numel()) +
                                "/" + std::to_string(old_log_prob.numel()) + "/" + std::to_string(advantages.numel()));
}

inline PolicyLoss diagnostics(torch::Tensor loss, const torch::Tensor& log_prob, const torch::Tensor& old_log_prob,
                              double clip_range) {
  torch::NoGradGuard no_grad;
  auto diff = log_prob.detach() - old_log_prob;
  auto ratio = torch::exp(diff);
  // ddpo-pytorch's estimator; Schulman's (ratio − 1) − log ratio would be less biased, kept for comparability.
  auto approx_kl = 0.5 * diff.pow(2).mean();
  auto clipfrac = ((ratio - 1.0).abs() > clip_range).to(torch::kFloat).mean();
  return {std::move(loss), approx_kl, clipfrac};
}
}  // namespace detail

/**
 * @brief DDPO-IS clipped surrogate (PPO): mean(max(−A·ratio, −A·clamp(ratio, 1−ε, 1+ε))).
 *
 * ratio = exp(log_prob − old_log_prob); A is clamped to ±adv_clip_max first (ddpo-pytorch).
 * @param log_prob log p_θ(x_{t-1}|x_t) [B] with gradient.
 * @param old_log_prob the sampling-time log-probabilities [B].
 * @param advantages advantages [B].
 * @param clip_range ε (ddpo-pytorch default 1e-4).
 * @param adv_clip_max advantage clamp (ddpo-pytorch default 5).
 */
inline PolicyLoss ppo_clip_loss(const torch::Tensor& log_prob, const torch::Tensor& old_log_prob,
                                const torch::Tensor& advantages, double clip_range = 1e-4, double adv_clip_max = 5.0) {
  detail::check_loss_inputs(log_prob, old_log_prob, advantages, "cxrl::core::ppo_clip_loss");
  if (!(clip_range >= 0.0)) throw std::invalid_argument("cxrl::core::ppo_clip_loss: clip_range must be >= 0");
  auto adv = torch::clamp(advantages, -adv_clip_max, adv_clip_max);
  auto ratio = torch::exp(log_prob - old_log_prob);
  auto unclipped = -adv * ratio;
  auto clipped = -adv * torch::clamp(ratio, 1.0 - clip_range, 1.0 + clip_range);
  auto loss = torch::maximum(unclipped, clipped).mean();
  return detail::diagnostics(std::move(loss), log_prob, old_log_prob, clip_range);
}

/**
 * @brief DDPO-SF (REINFORCE) surrogate: mean(−A · log_prob); its gradient is the score-function estimator.
 * @param log_prob log p_θ(x_{t-1}|x_t) [B] with gradient.
 * @param old_log_prob the sampling-time log-probabilities [B] (for the diagnostics only).
 * @param advantages advantages [B].
 * @param clip_range only used to report clipfrac comparably with DDPO-IS.
 * @param adv_clip_max advantage clamp.
 */
inline PolicyLoss reinforce_loss(const torch::Tensor& log_prob, const torch::Tensor& old_log_prob,
                                 const torch::Tensor& advantages, double clip_range = 1e-4, double adv_clip_max = 5.0) {
  detail::check_loss_inputs(log_prob, old_log_prob, advantages, "cxrl::core::reinforce_loss");
  auto adv = torch::clamp(advantages, -adv_clip_max, adv_clip_max);
  auto loss = (-adv * log_prob).mean();
  return detail::diagnostics(std::move(loss), log_prob, old_log_prob, clip_range);
}

/**
 * @brief Dispatches to ppo_clip_loss or reinforce_loss.
 * @param kind the estimator.
 * @param log_prob log p_θ [B] with gradient.
 * @param old_log_prob sampling-time log-probabilities [B].
 * @param advantages advantages [B].
 * @param clip_range PPO ε.
 * @param adv_clip_max advantage clamp.
 */
inline PolicyLoss policy_gradient_loss(PolicyGradient kind, const torch::Tensor& log_prob, const torch::Tensor& old_log_prob,
                                       const torch::Tensor& advantages, double clip_range, double adv_clip_max) {
  return kind == PolicyGradient::importance_sampling
             ? ppo_clip_loss(log_prob, old_log_prob, advantages, clip_range, adv_clip_max)
             : reinforce_loss(log_prob, old_log_prob, advantages, clip_range, adv_clip_max);
}

}  // namespace cxrl::core
