/// @file
/// @brief A fine-tuning run's arithmetic for the anchor's UNet and the VAE decode (the policy's own passes are
///        always fp32, lora_ace_policy.hpp says why): the requested nn::Precision, with "auto" settled by timing
///        the anchor's UNet pass on this machine, agreed by every rank, and kept across a resume.
#pragma once

#include <cxrl/core/distributed.hpp>
#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>  // nn::Precision, which app/ reaches through the policy layer

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::app {

/// @brief Times one no-grad anchor predict() (adapters off) on @p rows images at a middle timestep, in fp32 and
///        in bf16 (nn::fastest_precision()), and leaves the policy in the faster one.
/// @param policy a policy with `set_precision`, `set_adapters_enabled`, `encode`, `predict` and `sample_shape`
///        (policy::LoraAcePolicy)
/// @param rows the UNet's batch in sampling: prompts per sampling call, doubled for classifier-free guidance
/// @param device where the policy runs
template <class P>
nn::PrecisionTiming time_policy_precision(P& policy, int64_t rows, const torch::Device& device) {
  torch::NoGradGuard ng;
  policy.set_adapters_enabled(false);
  auto shape = policy.sample_shape();
  shape.insert(shape.begin(), rows);
  // Fixed values, not noise: the timing must not advance the global generator a resumed run would not advance.
  const auto x = torch::full(shape, 0.5, torch::TensorOptions().device(device));
  const auto t = torch::full({rows}, 500, torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto c = policy.encode(std::vector<std::string>(static_cast<std::size_t>(rows), ""));
  auto timing = nn::fastest_precision(
      [&](nn::Precision p) {
        policy.set_precision(p);
        policy.predict(x, t, c);
      },
      device);
  policy.set_adapters_enabled(true);
  policy.set_precision(timing.chosen);
  return timing;
}

/**
 * @brief Puts @p policy in the run's precision and records it in @p resolved (the run's config.json):
 *        `precision_used`, and for "auto" `precision_timing` {fp32_s, bf16_s, rows}; also `cpu_kernels`
 *        (io::cpu_kernels_description()), since both decide the run's speed on this machine.
 *
 * "auto" is timed on rank 0 and broadcast, so every rank samples and trains in the same arithmetic; a resumed run
 * takes the `precision_used` of its config.json instead of timing again, so it continues exactly what it computed.
 * A run with a KL penalty toward the anchor (core::TrainerConfig::kl_weight) keeps the anchor in fp32: the penalty
 * is ‖μ_θ − μ_anchor‖² / (2σ_t²) (DPOK, Fan et al. 2023, Lemma 4.2), so bf16 rounding of the anchor alone, divided
 * by the last steps' small σ_t², would be penalised as if it were the policy's drift. "auto" then settles on fp32
 * without timing, and "bf16" is refused.
 * @param policy the run's policy (see time_policy_precision())
 * @param requested "auto", "fp32" or "bf16" (PolicySettings::precision)
 * @param rows the UNet batch in sampling (2 × batch_size with guidance)
 * @param run_dir the run folder
 * @param resume whether this start continues the run in @p run_dir
 * @param dist the run's process group
 * @param resolved the run's settings, written to config.json by finetune()
 * @param quiet no note on stderr
 * @param kl_weight the run's core::TrainerConfig::kl_weight
 * @return the precision in use
 * @throws std::invalid_argument for an unknown precision name here or in the saved config.json, and for "bf16"
 *         with @p kl_weight > 0
 */
template <class P>
nn::Precision choose_run_precision(P& policy, const std::string& requested, int64_t rows, const std::filesystem::path& run_dir,
                                   bool resume, core::Distributed& dist, nlohmann::json& resolved, bool quiet,
                                   double kl_weight) {
  resolved["cpu_kernels"] = io::cpu_kernels_description();
  nn::Precision p = nn::parse_precision(requested, "precision");
  std::string how = "as requested";
  if (kl_weight > 0) {
    if (p == nn::Precision::bf16)
      throw std::invalid_argument("precision bf16 with kl_weight > 0: the KL penalty compares the policy's predictions "
                                  "with the anchor's, which must then stay fp32 (precision auto keeps fp32)");
    if (p == nn::Precision::automatic) {
      p = nn::Precision::fp32;
      how = "auto, fp32 because kl_weight > 0";
    }
  }
  if (p == nn::Precision::automatic && resume && std::filesystem::exists(run_dir / "config.json")) {
    const auto cfg = run_dir / "config.json";
    const auto saved = io::read_json(cfg);
    if (saved.contains("precision_used")) {
      p = nn::parse_precision(saved.at("precision_used").get<std::string>(), cfg.string() + ": key 'precision_used'");
      if (saved.contains("precision_timing")) resolved["precision_timing"] = saved.at("precision_timing");
      how = "auto, kept from " + cfg.string();
    }
  }
  if (p == nn::Precision::automatic) {
    const auto device = policy.unet()->parameters().front().device();
    nn::PrecisionTiming t;
    if (dist.is_main()) t = time_policy_precision(policy, rows, device);
    // Rank 0's choice for every rank: the others add zeros.
    std::vector<torch::Tensor> v{torch::tensor({t.chosen == nn::Precision::bf16 ? 1.0 : 0.0, t.fp32_s, t.bf16_s}, torch::kDouble)};
    dist.all_reduce_sum(v);
    t.chosen = v[0][0].item<double>() > 0.5 ? nn::Precision::bf16 : nn::Precision::fp32;
    t.fp32_s = v[0][1].item<double>(), t.bf16_s = v[0][2].item<double>();
    p = t.chosen;
    resolved["precision_timing"] = {{"fp32_s", t.fp32_s}, {"bf16_s", t.bf16_s}, {"rows", rows}};
    char line[160];
    std::snprintf(line, sizeof line, "auto: one UNet pass of %lld rows took %.1f ms in fp32, %.1f ms in bf16",
                  static_cast<long long>(rows), 1e3 * t.fp32_s, 1e3 * t.bf16_s);
    how = line;
  }
  policy.set_precision(p);
  resolved["precision_used"] = std::string(nn::to_string(p));
  if (!quiet && dist.is_main())
    std::fprintf(stderr, "[cxrl] precision %s (%s); %s\n", std::string(nn::to_string(p)).c_str(), how.c_str(),
                 resolved.at("cpu_kernels").get<std::string>().c_str());
  return p;
}

}  // namespace cxrl::app
