/// @file
/// @brief Before/after on held-out prompts: the tuned policy and its frozen anchor sample every prompt from the
///        same x_T, every reward term scores both, and each term's mean difference gets a paired bootstrap
///        interval over prompts (eval/bootstrap.hpp).
///
/// Pairing by prompt and initial noise removes the between-prompt variance that dominates an unpaired
/// comparison (the CXRL paper's tables compare models on the same test reports). Several noise seeds per prompt
/// are averaged before resampling prompts, so the interval reflects prompts, not one lucky draw of x_T.
#pragma once

#include <cxrl/core/reward_sum.hpp>
#include <cxrl/eval/bootstrap.hpp>
#include <cxrl/io/progress.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::app {

/// @brief One reward's held-out scores and their paired difference.
struct HeldoutTerm {
  std::string name;            ///< the reward's name, or "weighted sum" (Σ λ_i score_i)
  std::vector<double> anchor;  ///< per prompt, the anchor's score (mean over seeds)
  std::vector<double> policy;  ///< per prompt, the policy's score (mean over seeds)
  eval::PairedDelta delta;     ///< policy − anchor with its interval over prompts
};

/// @brief The before/after comparison of one run.
struct HeldoutComparison {
  std::vector<std::string> prompts;  ///< the held-out prompts
  int64_t seeds = 0;                 ///< noise seeds per prompt
  std::vector<HeldoutTerm> terms;    ///< every reward of the sum, then "weighted sum"

  /// @brief A Markdown table: reward, anchor, policy, Δ and its interval.
  std::string table() const {
    std::string s = "| reward | anchor | policy | Δ policy − anchor [95% CI] |\n| --- | ---: | ---: | --- |\n";
    char buf[256];
    for (const auto& t : terms) {
      std::snprintf(buf, sizeof buf, "| %s | %.4f | %.4f | %+.4f [%+.4f, %+.4f]%s |\n", t.name.c_str(), t.delta.reference,
                    t.delta.value, t.delta.delta, t.delta.lo, t.delta.hi, t.delta.excludes_zero() ? " *" : "");
      s += buf;
    }
    return s + "\n" + std::to_string(prompts.size()) + " held-out prompts × " + std::to_string(seeds) +
           " noise seeds; paired bootstrap over prompts; * = the interval excludes 0.\n";
  }

  /// @brief Every number, for scripts.
  nlohmann::json to_json() const {
    nlohmann::json j{{"prompts", prompts.size()}, {"seeds", seeds}, {"terms", nlohmann::json::array()}};
    for (const auto& t : terms)
      j["terms"].push_back({{"name", t.name}, {"anchor", t.delta.reference}, {"policy", t.delta.value}, {"delta", t.delta.delta},
                            {"lo", t.delta.lo}, {"hi", t.delta.hi}, {"per_prompt_anchor", t.anchor}, {"per_prompt_policy", t.policy}});
    return j;
  }
};

/**
 * @brief Scores the policy against its anchor on held-out prompts (see the file comment).
 *
 * Batch b of seed s draws x_T from generator `seed·1000003 + b` and the anchor's step noise from the next one,
 * so a run and its evaluation settings always give the same numbers.
 * @param policy the tuned policy (adapters on; the sampler switches them off for the anchor pass)
 * @param sampler the run's sampler (`sample`, `sample_anchor`)
 * @param rewards the rewards to compare under (each term's absolute score is used, whatever its mode)
 * @param prompts held-out prompts
 * @param batch prompts per sampling call
 * @param seeds noise seeds per prompt
 * @param boot bootstrap settings
 * @param quiet no progress bar
 */
template <class P, class S, class RS>
HeldoutComparison compare_with_anchor(P& policy, S& sampler, RS& rewards, const std::vector<std::string>& prompts, int64_t batch,
                                      const std::vector<uint64_t>& seeds, const eval::BootstrapOptions& boot = {}, bool quiet = false) {
  if (prompts.empty()) throw std::invalid_argument("compare_with_anchor: no held-out prompts");
  if (seeds.empty()) throw std::invalid_argument("compare_with_anchor: no noise seeds");
  if (batch < 1) throw std::invalid_argument("compare_with_anchor: batch must be >= 1");
  const std::size_t n = prompts.size(), k = RS::size + 1;  // every term, then the weighted sum
  std::vector<std::vector<double>> pol(k, std::vector<double>(n, 0.0)), anc(k, std::vector<double>(n, 0.0));
  io::Progress bar("held-out before/after", static_cast<long>(n * seeds.size()), quiet);
  long done = 0;
  for (const uint64_t seed : seeds)
    for (std::size_t i = 0, b = 0; i < n; i += static_cast<std::size_t>(batch), ++b) {
      const std::size_t end = std::min(n, i + static_cast<std::size_t>(batch));
      const std::vector<std::string> chunk(prompts.begin() + static_cast<long>(i), prompts.begin() + static_cast<long>(end));
      auto g1 = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003 + 2 * b);
      auto g2 = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003 + 2 * b + 1);
      auto traj = sampler.sample(policy, chunk, g1);
      sampler.sample_anchor(policy, traj, g2);
      const auto rb = rewards.score(traj.images, chunk, traj.anchor_images);
      for (std::size_t t = 0; t < RS::size; ++t) {
        const auto& c = rb.components[t];
        const auto ps = c.score.to(torch::kDouble).contiguous(), as = c.anchor_score.to(torch::kDouble).contiguous();
        for (std::size_t r = 0; r < chunk.size(); ++r) {
          const double x = ps[static_cast<int64_t>(r)].template item<double>(), y = as[static_cast<int64_t>(r)].template item<double>();
          pol[t][i + r] += x / static_cast<double>(seeds.size());
          anc[t][i + r] += y / static_cast<double>(seeds.size());
          pol[k - 1][i + r] += c.weight * x / static_cast<double>(seeds.size());
          anc[k - 1][i + r] += c.weight * y / static_cast<double>(seeds.size());
        }
      }
      done += static_cast<long>(chunk.size());
      bar.update(done);
    }
  HeldoutComparison out;
  out.prompts = prompts;
  out.seeds = static_cast<int64_t>(seeds.size());
  for (std::size_t t = 0; t < k; ++t) {
    HeldoutTerm term;
    term.name = t < RS::size ? std::string(RS::names[t]) : "weighted sum";
    term.anchor = anc[t];
    term.policy = pol[t];
    term.delta = eval::paired_bootstrap(eval::mean_of(anc[t]), {eval::mean_of(pol[t])}, static_cast<int64_t>(n), boot);
    out.terms.push_back(std::move(term));
  }
  return out;
}

}  // namespace cxrl::app
