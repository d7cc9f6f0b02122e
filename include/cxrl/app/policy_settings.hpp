/// @file
/// @brief The adapter and sampler settings of a fine-tuning run, and the LoRA + ACE policy and stochastic DDIM
///        sampler built from them over a loaded anchor. Every program that fine-tunes, evaluates or samples a run
///        builds both here, so a run's adapters always load into the architecture they were trained with.
#pragma once

#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::app {

/// @brief How the ACE tokens start.
enum class AceInit {
  padding,  ///< copies of the frozen encoder's outputs for "" past the start token (the default)
  random    ///< N(0, 0.02²), as CXRL's learnable context embeddings
};

/// @brief Parses an AceInit name ("padding", "random").
/// @param name the setting's value
/// @throws std::invalid_argument listing the allowed names
inline AceInit parse_ace_init(std::string_view name) {
  if (name == "padding") return AceInit::padding;
  if (name == "random") return AceInit::random;
  throw std::invalid_argument("ace_init: unknown value '" + std::string(name) + "' (allowed: padding, random)");
}

/// @brief Adapter and sampler settings of a run; the keys of its config.json have the same names.
struct PolicySettings {
  int64_t lora_rank = 4;             ///< CXRL / ddpo-pytorch: rank 4
  int64_t ace_tokens = 3;            ///< CXRL: N = 3
  bool no_ace = false;               ///< the "w/o ACE" ablation
  std::string ace_init = "padding";  ///< an AceInit name (kept as text: it is a config-file value)
  uint64_t seed = 0;                 ///< adapter initialisation and every trainer generator
  int64_t steps = 20;                ///< DDIM steps (CXRL: 20)
  double eta = 1.0;                  ///< DDIM η; 1 is DDPM-like sampling, and η > 0 is needed for log-probs
  double guidance = 5.0;             ///< CFG scale (CXRL: 5)
  /// arithmetic of the anchor's UNet and the VAE decode (the policy's passes are fp32): an nn::Precision name
  /// (kept as text: it is a config-file value), "fp32", "bf16", or "auto", which fine-tuning commands settle by
  /// timing with choose_run_precision() (make_policy() starts it in fp32). fp32 is the default because a timed
  /// choice near the margin can differ between runs on a loaded machine (seen in one `reproduce`: 1 run of 6
  /// took bf16), and runs compared in one table should share the anchor's arithmetic.
  std::string precision = "fp32";

  /// @brief Reads the settings back from a run's config.json.
  /// @param j the run's config
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
    // Not the run's training precision: evaluation and generation sample every model, the anchor included, in
    // fp32, so a run trained in bf16 is compared with the anchor under the same arithmetic.
    s.precision = "fp32";
    return s;
  }

  /// @brief The settings under their config.json keys.
  nlohmann::json to_json() const {
    return {{"lora_rank", lora_rank}, {"ace_tokens", ace_tokens}, {"no_ace", no_ace}, {"ace_init", ace_init},
            {"seed", seed},           {"steps", steps},           {"eta", eta},       {"guidance", guidance},
            {"precision", precision}};
  }

  /// @brief Throws std::invalid_argument naming the first bad setting.
  void check() const {
    if (lora_rank < 1) throw std::invalid_argument("lora_rank must be >= 1");
    if (!no_ace && ace_tokens < 1) throw std::invalid_argument("ace_tokens must be >= 1 (or set no_ace)");
    if (steps < 1) throw std::invalid_argument("steps must be >= 1");
    if (!(eta > 0)) throw std::invalid_argument("eta must be > 0 (DDPO needs stochastic transitions)");
    parse_ace_init(ace_init);
    nn::parse_precision(precision, "precision");
  }
};

/// @brief LoRA (+ ACE unless no_ace) on the frozen anchor; the modules of @p sd are shared, not copied.
/// @param sd the anchor
/// @param s the run's settings
inline policy::LoraAcePolicy make_policy(const diffusion::StableDiffusion& sd, const PolicySettings& s) {
  policy::LoraAcePolicyConfig c;
  c.lora.rank = s.lora_rank;
  c.lora.alpha = static_cast<double>(s.lora_rank);  // scale 1, as diffusers' LoRA processors
  c.lora.seed = s.seed;
  c.ace.num_tokens = s.ace_tokens;
  c.ace.seed = s.seed + 1;
  c.use_ace = !s.no_ace;
  // "auto" starts in fp32 until choose_run_precision() has timed both on this machine.
  if (const auto p = nn::parse_precision(s.precision, "precision"); p != nn::Precision::automatic) c.precision = p;
  const auto init = parse_ace_init(s.ace_init);
  auto p = policy::LoraAcePolicy::from_components(sd, c);
  // Prompt tuning starts best from real embeddings (Lester et al. 2021). The encoder's outputs for "" past
  // <|startoftext|> are what every prompt already ends with, so N more of them leave the anchor's
  // prediction almost unchanged, as LoRA's zero B does; random tokens take attention mass from the prompt.
  if (!s.no_ace && init == AceInit::padding) p.init_ace_from_text("");
  return p;
}

/// @brief Stochastic DDIM with CFG over the anchor's scheduler (ddpo-pytorch's sampling, CXRL §3 settings).
/// @param sd the anchor
/// @param s the run's settings
inline core::DdimSampler make_sampler(const diffusion::StableDiffusion& sd, const PolicySettings& s) {
  core::DdimSamplerConfig c;
  c.num_steps = s.steps;
  c.eta = s.eta;
  c.guidance_scale = s.guidance;
  c.reencode_prompts = !s.no_ace;  // ACE tokens are trained, so the condition needs their gradient
  return core::DdimSampler(sd.make_scheduler(), c);
}

}  // namespace cxrl::app
