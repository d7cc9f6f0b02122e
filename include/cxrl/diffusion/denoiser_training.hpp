/// @file
/// @brief Pretraining a text-conditioned denoiser (UNet + CLIP text encoder) with the DDPM objective, in pixel
///        or latent space: the step that makes an anchor model ("a RoentGen") for a procedural world.
///
/// Ho et al. 2020 (simple ε-loss, eq. 14) with classifier-free-guidance condition dropout (Ho & Salimans 2022:
/// the empty prompt replaces the report with probability `cond_dropout`), AdamW, gradient clipping, a linear
/// warm-up then cosine learning-rate decay (diffusers `get_cosine_schedule_with_warmup`), and an optional EMA
/// of the weights (diffusers `EMAModel`). The text encoder is trained jointly: the phantom world's reports
/// are not English that a pretrained CLIP has seen.
#pragma once

#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/loss.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::diffusion {

/// @brief DenoiserTrainer settings.
struct DenoiserTrainingConfig {
  double learning_rate = 1e-3;  ///< peak AdamW learning rate
  double weight_decay = 1e-2;   ///< AdamW weight decay
  double cond_dropout = 0.1;    ///< probability of training a sample on the empty prompt (CFG)
  double max_grad_norm = 1.0;   ///< gradient norm clip
  double ema_decay = 0.0;       ///< EMA decay of the weights (0 = off)
  int64_t warmup_steps = 0;     ///< linear warm-up from 0 to learning_rate
  int64_t total_steps = 0;      ///< cosine decay to 0 over this many steps (0 = constant after warm-up)
};

/// @brief The learning rate at @p step of a linear warm-up + cosine decay schedule (diffusers'
///        `get_cosine_schedule_with_warmup` with one half-cycle).
/// @param c the settings
/// @param step zero-based optimizer step
inline double scheduled_learning_rate(const DenoiserTrainingConfig& c, int64_t step) {
  if (c.warmup_steps > 0 && step < c.warmup_steps)
    return c.learning_rate * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  if (c.total_steps <= c.warmup_steps) return c.learning_rate;
  const double p = std::min(1.0, static_cast<double>(step - c.warmup_steps) / static_cast<double>(c.total_steps - c.warmup_steps));
  return c.learning_rate * 0.5 * (1.0 + std::cos(M_PI * p));
}

/// @brief Joint DDPM training of a conditional UNet and its text encoder (see the file comment).
class DenoiserTrainer {
 public:
  /**
   * @param unet the denoiser (trained in place)
   * @param text_encoder the condition encoder (trained in place)
   * @param tokenizer its tokenizer
   * @param scheduler noise schedule and prediction type of the loss
   * @param cfg settings
   */
  DenoiserTrainer(nn::UNet2DConditionModel unet, nn::CLIPTextModel text_encoder, std::shared_ptr<const text::ClipTokenizer> tokenizer,
                  DDIMScheduler scheduler, DenoiserTrainingConfig cfg = {})
      : unet_(std::move(unet)), te_(std::move(text_encoder)), tok_(std::move(tokenizer)), sched_(std::move(scheduler)), cfg_(cfg),
        params_(collect()), opt_(params_, torch::optim::AdamWOptions(cfg.learning_rate).weight_decay(cfg.weight_decay)) {
    if (!(cfg_.learning_rate > 0)) throw std::invalid_argument("DenoiserTrainingConfig: learning_rate must be > 0");
    if (cfg_.cond_dropout < 0 || cfg_.cond_dropout > 1) throw std::invalid_argument("DenoiserTrainingConfig: cond_dropout must be in [0, 1]");
    if (cfg_.ema_decay < 0 || cfg_.ema_decay >= 1) throw std::invalid_argument("DenoiserTrainingConfig: ema_decay must be in [0, 1)");
    if (cfg_.ema_decay > 0)
      for (auto& p : params_) ema_.push_back(p.detach().clone());
  }

  /**
   * @brief One optimizer step on a batch; returns the loss (detached, 0-d).
   * @param x0 clean samples in model space [B, C, H, W] (pixels in [−1, 1], or latents × scaling_factor)
   * @param prompts the B conditions
   * @param gen generator of condition dropout, timesteps and noise
   */
  torch::Tensor step(const torch::Tensor& x0, const std::vector<std::string>& prompts, at::Generator& gen) {
    const int64_t B = x0.size(0);
    if (static_cast<int64_t>(prompts.size()) != B)
      throw std::invalid_argument("DenoiserTrainer::step: " + std::to_string(B) + " samples but " + std::to_string(prompts.size()) + " prompts");
    for (auto& g : opt_.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(scheduled_learning_rate(cfg_, step_));
    unet_->train();
    te_->train();
    const auto drop = torch::rand({B}, gen);
    auto ids = torch::empty({B, tok_->model_max_length()}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const std::string& p = drop[b].item<double>() < cfg_.cond_dropout ? empty_ : prompts[static_cast<std::size_t>(b)];
      ids[b].copy_(torch::tensor(tok_->encode_padded(p).input_ids, torch::kLong));
    }
    const auto noise = torch::randn(x0.sizes(), gen).to(x0.options());
    const auto t = torch::randint(sched_.config().num_train_timesteps, {B}, gen, torch::kLong).to(x0.device());
    const auto xt = sched_.add_noise(x0, noise, t);
    const auto cond = te_->forward(ids.to(x0.device())).last_hidden_state;
    auto loss = diffusion_loss(sched_, unet_->forward(xt, t, cond), x0, noise, t);
    opt_.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params_, cfg_.max_grad_norm);
    opt_.step();
    if (!ema_.empty()) {
      torch::NoGradGuard ng;
      for (std::size_t i = 0; i < params_.size(); ++i) ema_[i].mul_(cfg_.ema_decay).add_(params_[i].detach(), 1 - cfg_.ema_decay);
    }
    ++step_;
    return loss.detach();
  }

  /// @brief Copies the EMA weights into the modules (no-op without EMA); call once, before saving.
  void apply_ema() {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < ema_.size(); ++i) params_[i].copy_(ema_[i]);
  }

  /// @brief Optimizer steps taken (also the learning-rate schedule's position).
  int64_t steps_done() const { return step_; }
  /// @brief Sets the step counter (resume). @param s steps already taken
  void set_steps_done(int64_t s) { step_ = s; }
  /// @brief Every trained tensor: UNet parameters, then text-encoder parameters.
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  /// @brief EMA copies of parameters() (empty without EMA).
  std::vector<torch::Tensor>& ema() { return ema_; }
  /// @brief The optimizer.
  torch::optim::AdamW& optimizer() { return opt_; }

 private:
  std::vector<torch::Tensor> collect() {
    if (!unet_ || !te_ || !tok_) throw std::invalid_argument("DenoiserTrainer: unet, text encoder and tokenizer are required");
    std::vector<torch::Tensor> v;
    for (auto& p : unet_->parameters()) v.push_back(p);
    for (auto& p : te_->parameters()) v.push_back(p);
    return v;
  }

  nn::UNet2DConditionModel unet_;
  nn::CLIPTextModel te_;
  std::shared_ptr<const text::ClipTokenizer> tok_;
  DDIMScheduler sched_;
  DenoiserTrainingConfig cfg_;
  std::vector<torch::Tensor> params_;
  torch::optim::AdamW opt_;
  std::vector<torch::Tensor> ema_;
  std::string empty_;
  int64_t step_ = 0;
};

}  // namespace cxrl::diffusion
