/// @file
/// @brief Text → image generation with DDIM and classifier-free guidance, recording the trajectory.
///
/// The loop of diffusers' `StableDiffusionPipeline.__call__` (v0.17) as ddpo-pytorch's
/// `pipeline_with_logprob` runs it:
///  1. c = model.encode(prompts) (tokenise → frozen text encoder → ACE for a LoraAcePolicy);
///     with guidance (w > 1, diffusers' `do_classifier_free_guidance`), u = model.encode({""}) for every row;
///  2. x_T ~ N(0, I) · init_noise_sigma (= 1 for DDIM), drawn from the caller's generator;
///  3. for each t: ε = model.predict([x; x], t, [u; c]) as one batch, ε̂ = ε_u + w (ε_c − ε_u)
///     (Ho & Salimans, 2022); x_{t−1} = DDIM step (eta = 0: deterministic `step`; eta > 0: ddpo's
///     `step_with_logprob`, which also returns log p(x_{t−1} | x_t));
///  4. images = model.decode(x_0) ∈ [0, 1] (VAE decode for latent models).
/// The model is any type with encode / predict / decode / sample_shape (a `cxrl::core::Policy`, or
/// `StableDiffusion` itself).
#pragma once

#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/guidance.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::diffusion {

/// @brief What generate() needs from a model (the sampling half of `cxrl::core::Policy`).
template <class M>
concept TextToImageModel = requires(M& m, const std::vector<std::string>& prompts, const torch::Tensor& x) {
  { m.encode(prompts) } -> std::same_as<torch::Tensor>;
  { m.predict(x, x, x) } -> std::same_as<torch::Tensor>;
  { m.decode(x) } -> std::same_as<torch::Tensor>;
  { m.sample_shape() } -> std::convertible_to<std::vector<int64_t>>;
};

/// @brief Sampling settings (diffusers argument names).
struct GenerateOptions {
  int64_t num_inference_steps = 50;  ///< DDIM steps
  double guidance_scale = 7.5;       ///< w; guidance is applied when w > 1 (diffusers' rule)
  double eta = 0.0;                  ///< DDIM eta; > 0 makes the steps stochastic and records log-probs
};

/// @brief What the sampling loop recorded.
struct GenerateOutput {
  torch::Tensor images;     ///< [B, C', H', W'] in [0, 1]
  torch::Tensor latents;    ///< [B, T+1, C, H, W]: x_T (index 0) … x_0 (index T)
  torch::Tensor log_probs;  ///< [B, T] log p(x_{t−1} | x_t) per step when eta > 0, else undefined
  torch::Tensor timesteps;  ///< [T] int64, descending
};

/// @brief Generates images for @p prompts (inference: runs under no-grad).
/// @tparam Model a TextToImageModel
/// @param model the model (a policy, or a StableDiffusion)
/// @param scheduler DDIM scheduler (its timesteps are set to options.num_inference_steps on a copy)
/// @param prompts B texts
/// @param gen generator for x_T and, when eta > 0, every step's noise (same seed → same images)
/// @param options steps, guidance scale, eta
template <TextToImageModel Model>
GenerateOutput generate(Model& model, DDIMScheduler scheduler, const std::vector<std::string>& prompts,
                        at::Generator& gen, const GenerateOptions& options = {}) {
  if (prompts.empty()) throw std::invalid_argument("cxrl::diffusion::generate: no prompts given");
  if (options.num_inference_steps < 1)
    throw std::invalid_argument("cxrl::diffusion::generate: num_inference_steps must be >= 1, got " +
                                std::to_string(options.num_inference_steps));
  if (!(options.eta >= 0.0))
    throw std::invalid_argument("cxrl::diffusion::generate: eta must be >= 0, got " + std::to_string(options.eta));
  torch::NoGradGuard no_grad;
  const auto B = static_cast<int64_t>(prompts.size());
  const bool cfg = options.guidance_scale > 1.0;
  scheduler.set_timesteps(options.num_inference_steps);

  auto cond = model.encode(prompts);
  scheduler.to(cond.device());
  torch::Tensor uncond;
  if (cfg) {
    uncond = model.encode(std::vector<std::string>{""});
    uncond = uncond.expand({B, uncond.size(1), uncond.size(2)});
    if (uncond.sizes() != cond.sizes())
      throw std::invalid_argument("cxrl::diffusion::generate: the unconditional and conditional encodings differ in "
                                  "shape; guidance needs equal lengths");
  }
  std::vector<int64_t> shape{B};
  for (int64_t d : std::vector<int64_t>(model.sample_shape())) shape.push_back(d);
  auto x = (torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat32).device(gen.device())) *
            DDIMScheduler::init_noise_sigma())
               .to(cond.device(), cond.scalar_type());
  const auto context = cfg ? torch::cat({uncond, cond}) : cond;

  std::vector<torch::Tensor> latents{x}, log_probs;
  const auto ts = scheduler.timesteps();
  for (int64_t i = 0; i < ts.size(0); ++i) {
    const auto t = ts[i].to(x.device());
    torch::Tensor out;
    if (cfg) {
      auto both = model.predict(torch::cat({x, x}), t.expand({2 * B}).contiguous(), context);
      auto parts = both.chunk(2);
      out = classifier_free_guidance(parts[0], parts[1], options.guidance_scale);
    } else {
      out = model.predict(x, t.expand({B}).contiguous(), context);
    }
    if (options.eta > 0.0) {
      auto s = scheduler.step_with_logprob(out, t, x, options.eta, {}, gen);
      x = s.prev_sample;
      log_probs.push_back(s.log_prob);
    } else {
      x = scheduler.step(out, t, x).prev_sample;
    }
    latents.push_back(x);
  }
  GenerateOutput r;
  r.latents = torch::stack(latents, 1);
  if (!log_probs.empty()) r.log_probs = torch::stack(log_probs, 1);
  r.timesteps = ts;
  r.images = model.decode(x);
  return r;
}

}  // namespace cxrl::diffusion
