// The CXRL policy and sampler built from an anchor folder, shared by finetune, evaluate and generate so
// that a run's adapters always load into the architecture they were trained with.
#pragma once

#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace cxrl_mimic {

/// Adapter and sampler settings of a run (the keys of its config.json with the same names).
struct PolicySettings {
  int64_t lora_rank = 4;   // CXRL / ddpo-pytorch: rank 4
  int64_t ace_tokens = 3;  // CXRL: N = 3
  bool no_ace = false;     // the "w/o ACE" ablation
  std::string ace_init = "padding";  // padding: copies of the encoder's padding outputs; random: N(0, 0.02²)
  uint64_t seed = 0;       // adapter initialisation
  int64_t steps = 20;      // DDIM steps (CXRL: 20)
  double eta = 1.0;        // DDIM η (1: DDPM-like stochastic sampling, needed for log-probs)
  double guidance = 5.0;   // CFG scale (CXRL: 5)

  /// Reads the settings back from a run's config.json.
  static PolicySettings from_run_config(const nlohmann::json& j) {
    PolicySettings s;
    s.lora_rank = j.at("lora_rank").get<int64_t>();
    s.ace_tokens = j.at("ace_tokens").get<int64_t>();
    s.no_ace = j.at("no_ace").get<bool>();
    s.ace_init = j.at("ace_init").get<std::string>();
    s.seed = j.at("seed").get<uint64_t>();
    s.steps = j.at("steps").get<int64_t>();
    s.eta = j.at("eta").get<double>();
    s.guidance = j.at("guidance").get<double>();
    return s;
  }
};

/// LoRA (+ ACE unless no_ace) on the frozen anchor; the modules of @p sd are shared, not copied.
inline cxrl::policy::LoraAcePolicy make_policy(const cxrl::diffusion::StableDiffusion& sd, const PolicySettings& s) {
  cxrl::policy::LoraAcePolicyConfig c;
  c.lora.rank = s.lora_rank;
  c.lora.alpha = static_cast<double>(s.lora_rank);  // scale 1, as diffusers' LoRA processors
  c.lora.seed = s.seed;
  c.ace.num_tokens = s.ace_tokens;
  c.ace.seed = s.seed + 1;
  c.use_ace = !s.no_ace;
  if (s.ace_init != "padding" && s.ace_init != "random")
    throw std::invalid_argument("--ace_init must be padding or random, got '" + s.ace_init + "'");
  auto p = cxrl::policy::LoraAcePolicy::from_components(sd, c);
  // Prompt tuning starts best from real embeddings (Lester et al. 2021). The encoder's outputs for "" past
  // <|startoftext|> are what every prompt already ends with, so N more of them leave the anchor's
  // prediction almost unchanged, as LoRA's zero B does; random tokens take attention mass from the report.
  if (!s.no_ace && s.ace_init == "padding") p.init_ace_from_text("");
  return p;
}

/// Stochastic DDIM with CFG over the anchor's scheduler.
inline cxrl::core::DdimSampler make_sampler(const cxrl::diffusion::StableDiffusion& sd, const PolicySettings& s) {
  cxrl::core::DdimSamplerConfig c;
  c.num_steps = s.steps;
  c.eta = s.eta;
  c.guidance_scale = s.guidance;
  c.reencode_prompts = !s.no_ace;  // ACE tokens are trained, so the condition needs their gradient
  return cxrl::core::DdimSampler(sd.make_scheduler(), c);
}

}  // namespace cxrl_mimic
