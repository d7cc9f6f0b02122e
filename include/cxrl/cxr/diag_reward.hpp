/**
 * @file diag_reward.hpp
 * @brief CXRL diagnostic-condition reward: accuracy of a CXR classifier's predictions against the labels
 * parsed from the report (paper §2.3.2, r_diag = accuracy(G(x)), made comparative by RewardSum).
 */
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cxrl/cxr/labeler.hpp"
#include "cxrl/cxr/observations.hpp"
#include "cxrl/cxr/reward_models.hpp"
#include "cxrl/cxr/reward_set.hpp"
#include "cxrl/cxr/rewards.hpp"
#include "cxrl/cxr/xrv_densenet.hpp"

namespace cxrl::cxr {

/**
 * @brief Default CheXpert observation → torchxrayvision output mapping (by name).
 *
 * Ten observations have an xrv output of the same name; "Pleural Effusion" is xrv "Effusion" (the same
 * finding under its NIH name). Not mapped: "No Finding" and "Support Devices" (no xrv output) and
 * "Pleural Other" (xrv "Pleural_Thickening" is only one of its findings; add the pair to
 * DiagRewardConfig::mapping to use it anyway).
 */
inline std::vector<std::pair<std::string, std::string>> default_diag_mapping() {
  return {{"Atelectasis", "Atelectasis"},
          {"Cardiomegaly", "Cardiomegaly"},
          {"Consolidation", "Consolidation"},
          {"Edema", "Edema"},
          {"Enlarged Cardiomediastinum", "Enlarged Cardiomediastinum"},
          {"Fracture", "Fracture"},
          {"Lung Lesion", "Lung Lesion"},
          {"Lung Opacity", "Lung Opacity"},
          {"Pleural Effusion", "Effusion"},
          {"Pneumonia", "Pneumonia"},
          {"Pneumothorax", "Pneumothorax"}};
}

/// @brief DiagReward settings.
struct DiagRewardConfig {
  /// Decision threshold on the classifier output. xrv pretrained weights apply op_norm, which moves each
  /// output's operating point to 0.5, so 0.5 is the calibrated default.
  double threshold = 0.5;
  /// (CheXpert observation, classifier output name) pairs; see default_diag_mapping().
  std::vector<std::pair<std::string, std::string>> mapping = default_diag_mapping();
  /// Score of a report that states (positive or negative) none of the mapped observations. 0 by default:
  /// such a sample carries no diagnostic signal, and in the comparative form 0 − 0 = 0.
  double empty_score = 0.0;
};

/// @brief Per-sample breakdown of a DiagReward evaluation (all tensors on the images' device).
struct DiagDetails {
  torch::Tensor accuracy;   ///< float [B]: correct / checked, or empty_score when checked = 0
  torch::Tensor checked;    ///< int64 [B]: observations compared
  torch::Tensor correct;    ///< int64 [B]: observations where the thresholded prediction equals the report
  torch::Tensor stated;     ///< float [B, 14]: 1 / 0 for stated observations, NaN otherwise (kObservations order)
  torch::Tensor predicted;  ///< float [B, 14]: classifier output of the mapped observations, NaN for unmapped
};

/**
 * @brief r_diag: how many of the findings a report states are visible to a diagnostic classifier.
 *
 * For each image and its report: the labeler (cxr/labeler.hpp) parses the report's 14 CheXpert labels;
 * the observations stated positive (1) or negative (0) *and* mapped to a classifier output are compared
 * with the thresholded classifier output (≥ threshold ⇒ present); uncertain (−1) and unmentioned (blank)
 * observations are excluded, as are mapped outputs the classifier does not have (name absent) or was not
 * trained for (NaN op_threshs). The reward is the accuracy over the compared observations, in [0, 1];
 * a report with none gets DiagRewardConfig::empty_score.
 *
 * Inputs: images [B, 1|3, H, W] in [0, 1], square, H, W ≥ 32 (the classifier adapts them: the native xrv
 * DenseNet averages RGB to gray, resizes to its resolution and maps to [−1024, 1024]); prompts: the B reports.
 * Output: float32 [B] on the images' device, no gradient.
 * @tparam M a FindingClassifier (cxr/reward_models.hpp): cxr::XrvDenseNet, FindingsFromClassifier over any
 *         nn::ImageClassifier, or AnyFindingClassifier
 */
template <class M>
class BasicDiagReward {
  static_assert(FindingClassifier<M>, "cxrl Reward diag: the classifier needs `probabilities(images)` → [B, K] and "
                                      "`output_names()`; wrap an nn::ImageClassifier in FindingsFromClassifier (cxr/reward_models.hpp)");

 public:
  /// @brief Reward name (RewardSum term key).
  static constexpr std::string_view name = reward_name(CxrReward::diag);

  /**
   * @param classifier the classifier (its output_names() name the outputs)
   * @param cfg settings; the mapping is resolved here
   * @param output_names overrides classifier.output_names() (e.g. for a DenseNet with a non-default class count)
   */
  explicit BasicDiagReward(M classifier, DiagRewardConfig cfg = {}, std::vector<std::string> output_names = {})
      : clf_(std::move(classifier)), cfg_(std::move(cfg)) {
    if (!(cfg_.threshold > 0.0 && cfg_.threshold < 1.0))
      throw std::invalid_argument("DiagReward: threshold must be in (0, 1), got " + std::to_string(cfg_.threshold));
    if (output_names.empty()) output_names = clf_.output_names();
    if (output_names.empty())
      throw std::invalid_argument("DiagReward: the classifier has no output names; pass output_names");
    output_index_.assign(kNumObservations, -1);
    torch::Tensor th;
    if constexpr (requires { clf_.op_threshs(); }) {
      const torch::Tensor t = clf_.op_threshs();
      if (t.defined()) th = t.to(torch::kCPU);
    }
    for (const auto& [obs, out] : cfg_.mapping) {
      const int o = observation_index(obs);  // throws for an unknown CheXpert name
      if (obs == "No Finding") throw std::invalid_argument("DiagReward: 'No Finding' cannot be mapped (it is derived)");
      int k = -1;
      for (std::size_t i = 0; i < output_names.size(); ++i)
        if (output_names[i] == out) k = static_cast<int>(i);
      if (k < 0) continue;  // the classifier lacks this output: the observation is not compared
      if (th.defined() && std::isnan(th[k].item<double>())) continue;  // output not trained (xrv NaN threshold)
      output_index_[static_cast<std::size_t>(o)] = k;
    }
  }

  /// @brief Classifier output index per observation (kObservations order), −1 when not compared.
  const std::vector<int>& output_index() const { return output_index_; }
  /// @brief The settings.
  const DiagRewardConfig& config() const { return cfg_; }
  /// @brief The classifier.
  M& classifier() { return clf_; }

  /// @brief Accuracy per image [B] (see the class documentation).
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts the B reports
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    return evaluate(images, prompts).accuracy;
  }

  /// @brief The full breakdown behind score().
  /// @param images [B, 1|3, H, W] in [0, 1]
  /// @param prompts the B reports
  DiagDetails evaluate(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto x = check_reward_images(images, prompts, name);
    torch::Tensor probs;
    {
      torch::NoGradGuard ng;
      probs = clf_.probabilities(x).to(torch::kCPU, torch::kFloat32).contiguous();
    }
    const int64_t B = x.size(0);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto stated = torch::full({B, kNumObservations}, nan, torch::kFloat32);
    auto predicted = torch::full({B, kNumObservations}, nan, torch::kFloat32);
    auto accuracy = torch::empty({B}, torch::kFloat32);
    auto checked = torch::zeros({B}, torch::kLong);
    auto correct = torch::zeros({B}, torch::kLong);
    auto pa = probs.accessor<float, 2>();
    auto sa = stated.accessor<float, 2>();
    auto qa = predicted.accessor<float, 2>();
    const auto& labeler = default_labeler();
    for (int64_t b = 0; b < B; ++b) {
      const Labels labels = labeler.label(prompts[static_cast<std::size_t>(b)]);
      int64_t n = 0, ok = 0;
      for (int o = 0; o < kNumObservations; ++o) {
        const Label l = labels[static_cast<std::size_t>(o)];
        const int k = output_index_[static_cast<std::size_t>(o)];
        if (k >= 0) qa[b][o] = pa[b][k];
        if (l != Label::positive && l != Label::negative) continue;
        sa[b][o] = l == Label::positive ? 1.f : 0.f;
        if (k < 0) continue;
        const bool present = pa[b][k] >= cfg_.threshold;
        ++n;
        ok += present == (l == Label::positive) ? 1 : 0;
      }
      checked[b] = n;
      correct[b] = ok;
      accuracy[b] = n > 0 ? static_cast<float>(ok) / static_cast<float>(n) : static_cast<float>(cfg_.empty_score);
    }
    const auto dev = images.device();
    return {accuracy.to(dev), checked.to(dev), correct.to(dev), stated.to(dev), predicted.to(dev)};
  }

 private:
  M clf_;
  DiagRewardConfig cfg_;
  std::vector<int> output_index_;
};

/// @brief r_diag with the native torchxrayvision DenseNet (the CXRL reference classifier).
using DiagReward = BasicDiagReward<XrvDenseNet>;

}  // namespace cxrl::cxr
