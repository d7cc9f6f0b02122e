/// @file
/// @brief One epoch's statistics as a flat JSON record (the scalars a run logs to TensorBoard and metrics.jsonl,
///        named like ddpo-pytorch's wandb keys), and the reward curves of a run drawn from those records.
#pragma once

#include <cxrl/core/trainer.hpp>
#include <cxrl/io/plot.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace cxrl::core {

/**
 * @brief The record of one epoch. Keys: `epoch` (1-based), `samples`, `reward/total`, `reward/total_std`,
 *        `reward/anchor_total`, `advantage/{mean,std}`, `train/{loss,approx_kl,clipfrac,first_log_ratio_max,grad_norm,lr,optimizer_steps,
 *        skipped_updates}`, `train/anchor_kl` (when TrainerConfig::kl_weight > 0), `time/…`, and per reward term
 *        `reward/<name>/{raw,weighted,policy_score,policy_score_se,anchor_score,anchor_score_se,anchor_corr}` (anchor keys
 *        only when the anchor was sampled).
 * @param s the epoch's statistics
 * @param lr the learning rate in use
 */
inline nlohmann::json epoch_record(const EpochStats& s, double lr) {
  nlohmann::json j{{"epoch", s.epoch + 1},
                   {"samples", s.num_samples},
                   {"reward/total", s.reward_mean},
                   {"reward/total_std", s.reward_std},
                   {"advantage/mean", s.advantage_mean},
                   {"advantage/std", s.advantage_std},
                   {"train/loss", s.loss},
                   {"train/approx_kl", s.approx_kl},
                   {"train/clipfrac", s.clipfrac},
                   {"train/first_log_ratio_max", s.first_log_ratio_max},
                   {"train/grad_norm", s.grad_norm},
                   {"train/lr", lr},
                   {"train/optimizer_steps", s.optimizer_steps},
                   {"train/skipped_updates", s.skipped_updates},
                   {"time/sampling_s", s.sampling_seconds},
                   {"time/reward_s", s.reward_seconds},
                   {"time/advantage_s", s.advantage_seconds},
                   {"time/training_s", s.training_seconds},
                   {"time/images_per_s", s.images_per_second}};
  auto put = [&](const std::string& k, double v) {
    if (std::isfinite(v)) j[k] = v;
  };
  put("reward/anchor_total", s.anchor_reward_mean);
  put("train/anchor_kl", s.anchor_kl);
  for (const auto& c : s.components) {
    const std::string p = "reward/" + c.name + "/";
    put(p + "raw", c.raw_mean);
    put(p + "weighted", c.weighted_mean);
    put(p + "policy_score", c.score_mean);
    put(p + "policy_score_se", c.score_se);
    put(p + "anchor_score", c.anchor_score_mean);
    put(p + "anchor_score_se", c.anchor_score_se);
    put(p + "anchor_corr", c.anchor_corr);
  }
  return j;
}

/**
 * @brief Reward curves of a run from its epoch records: per reward term the policy's and the anchor's mean score
 *        per epoch with ±SE bands, then the training reward, the approx. KL, the KL to the anchor (when penalised)
 *        and the clip fraction.
 * @param history epoch_record()s in epoch order
 * @return one panel per plot, for io::render_panels()
 */
inline std::vector<io::Panel> reward_curves(const std::vector<nlohmann::json>& history) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& r : history)
    for (auto it = r.begin(); it != r.end(); ++it) {
      const auto& k = it.key();
      const auto suffix = std::string("/policy_score");
      if (k.rfind("reward/", 0) == 0 && k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
        const auto n = k.substr(7, k.size() - 7 - suffix.size());
        if (seen.insert(n).second) names.push_back(n);
      }
    }
  auto col = [&](const std::string& key) {
    std::vector<double> v;
    for (const auto& r : history) v.push_back(r.contains(key) && r[key].is_number() ? r[key].get<double>() : std::nan(""));
    return v;
  };
  const auto x = col("epoch");
  std::vector<io::Panel> panels;
  for (const auto& n : names) {
    io::Panel p{"r_" + n + " (mean ± SE)", "epoch", "score", {}};
    p.series.push_back({"policy", x, col("reward/" + n + "/policy_score"), col("reward/" + n + "/policy_score_se"), io::palette(0)});
    const auto anchor = col("reward/" + n + "/anchor_score");
    if (std::any_of(anchor.begin(), anchor.end(), [](double v) { return std::isfinite(v); }))
      p.series.push_back({"anchor", x, anchor, col("reward/" + n + "/anchor_score_se"), io::palette(1)});
    panels.push_back(std::move(p));
  }
  panels.push_back({"training reward (λ-weighted sum)", "epoch", "reward", {{"policy", x, col("reward/total"), {}, io::palette(0)}}});
  // KL and clip fraction on separate axes: they differ by orders of magnitude, and a shared axis hid a 0.7 clip
  // fraction under a KL spike.
  panels.push_back({"approx. KL (PPO)", "epoch", "KL", {{"approx. KL", x, col("train/approx_kl"), {}, io::palette(2)}}});
  const auto anchor_kl = col("train/anchor_kl");
  if (std::any_of(anchor_kl.begin(), anchor_kl.end(), [](double v) { return std::isfinite(v); }))
    panels.push_back({"KL to the anchor (penalised)", "epoch", "KL per element", {{"KL", x, anchor_kl, {}, io::palette(4)}}});
  panels.push_back({"clip fraction (PPO)", "epoch", "fraction", {{"clipped samples", x, col("train/clipfrac"), {}, io::palette(3)}}});
  return panels;
}

}  // namespace cxrl::core
