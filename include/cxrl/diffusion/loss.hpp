/// @file
/// @brief DDPM training loss ("simple" objective of Ho et al. 2020, eq. 14) for epsilon, v and x0 targets.
#pragma once

#include <cxrl/diffusion/ddim.hpp>

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

namespace cxrl::diffusion {

/// @brief The regression target of the denoiser for the scheduler's `prediction_type`:
///        epsilon -> @p noise; v_prediction -> sqrt(abar_t) noise - sqrt(1-abar_t) x0 (Salimans & Ho 2022);
///        sample -> @p x0.
/// @param s scheduler (provides alphas_cumprod and prediction_type)
/// @param x0 clean samples [B, ...]
/// @param noise the noise used to form x_t = add_noise(x0, noise, t)
/// @param t int64 timesteps, 0-d or [B]
inline torch::Tensor diffusion_target(const DDIMScheduler& s, const torch::Tensor& x0, const torch::Tensor& noise,
                                      const torch::Tensor& t) {
  switch (s.config().prediction_type) {
    case PredictionType::epsilon: return noise;
    case PredictionType::v_prediction: return s.get_velocity(x0, noise, t);
    case PredictionType::sample: return x0;
  }
  throw std::invalid_argument("diffusion_target: unknown prediction_type");
}

/// @brief Mean squared error between the model output on x_t = add_noise(x0, noise, t) and the target of
///        the scheduler's prediction type, computed in float32 (as diffusers' train_text_to_image.py).
/// @param s scheduler
/// @param model_output the model's prediction for x_t, shape of @p x0
/// @param x0 clean samples [B, ...]
/// @param noise the noise of x_t
/// @param t int64 timesteps, 0-d or [B]
/// @return 0-d loss (differentiable in @p model_output)
inline torch::Tensor diffusion_loss(const DDIMScheduler& s, const torch::Tensor& model_output, const torch::Tensor& x0,
                                    const torch::Tensor& noise, const torch::Tensor& t) {
  if (!model_output.defined() || !x0.defined() || !noise.defined())
    throw std::invalid_argument("diffusion_loss: undefined tensor argument");
  if (model_output.sizes() != x0.sizes() || noise.sizes() != x0.sizes()) {
    std::ostringstream o;
    o << "diffusion_loss: model_output " << model_output.sizes() << ", x0 " << x0.sizes() << " and noise "
      << noise.sizes() << " must have the same shape";
    throw std::invalid_argument(o.str());
  }
  auto target = diffusion_target(s, x0, noise, t);
  return torch::mse_loss(model_output.to(torch::kFloat32), target.to(torch::kFloat32));
}

}  // namespace cxrl::diffusion
