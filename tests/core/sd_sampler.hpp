// The stochastic DDIM sampler the core tests train with: Stable Diffusion 1.x's scheduler (scaled-linear betas
// 0.00085..0.012, steps_offset 1 so the last step keeps a variance), η = 1.
#pragma once

#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/diffusion/ddim.hpp>

#include <cstdint>

inline cxrl::core::DdimSampler sd_sampler(int64_t steps = 4, double guidance = 1.0) {
  cxrl::core::DdimSamplerConfig cfg;
  cfg.num_steps = steps;
  cfg.eta = 1.0;
  cfg.guidance_scale = guidance;
  cxrl::diffusion::DDIMSchedulerConfig sched;
  sched.steps_offset = 1;
  sched.beta_schedule = cxrl::diffusion::BetaSchedule::scaled_linear;
  sched.beta_start = 0.00085;
  sched.beta_end = 0.012;
  sched.set_alpha_to_one = false;
  sched.clip_sample = false;
  return cxrl::core::DdimSampler(cxrl::diffusion::DDIMScheduler{sched}, cfg);
}
