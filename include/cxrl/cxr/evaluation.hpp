/// @file
/// @brief The CXRL evaluation protocol: judges trained apart from the reward models score every model's images of
///        the same held-out reports, per report, and the paper's tables are built from those scores with paired
///        bootstrap intervals against the anchor (eval/bootstrap.hpp, eval/table.hpp).
///
/// **Judges and rewards.** Tables 1–3 are scored by the judges (cxr_mimic `train-judges`: the reward architectures
/// trained on another world seed, with other seeds and widths and more data) and, in separate columns, by the
/// reward models the RL optimised. A gain the rewards see and the judges do not is reward hacking. A model-free
/// check of posture, the mirror-symmetry midline (cxr/symmetry.hpp), is reported next to the judge's r_align.
///
/// **Label conventions.** r_diag, the reward, compares only the findings a report *states* (positive or negative);
/// uncertain and unmentioned findings are left out, because the RL should not be pushed towards or away from a
/// finding the report is silent about. AUROC, the judge metric, follows the CheXpert/torchxrayvision evaluation
/// instead: an unmentioned finding counts as absent (0) and only uncertain ones are left out, so that every
/// observation has negatives and the metric ranks all images. Both use the same labeler (cxr/labeler.hpp).
#pragma once

#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/cxr/reward_model_files.hpp>
#include <cxrl/cxr/reward_models.hpp>
#include <cxrl/cxr/symmetry.hpp>
#include <cxrl/eval/bootstrap.hpp>
#include <cxrl/eval/table.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/metrics/auroc.hpp>
#include <cxrl/metrics/fid.hpp>
#include <cxrl/metrics/msssim.hpp>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief The judge panel: posture net, diagnostic classifier (also FID's feature extractor), CXR-CLIP.
struct Judges {
  PostureNetModel posture;  ///< r_align of the judge
  XrvDenseNet diag;         ///< AUROC, r_diag rule and FID features (`features2`)
  CxrClipEmbedder clip;     ///< report–image similarity

  /// @brief Loads `posture_net`, `xrv_densenet` and `cxr_clip` (.safetensors with sidecars) from @p dir.
  /// @param dir folder written by `train-judges` @param vocab WordPiece vocab of the CLIP text encoder @param device model device
  static Judges load(const std::filesystem::path& dir, const std::filesystem::path& vocab, torch::Device device = torch::kCPU) {
    return {PostureNetModel(load_posture_net(dir / "posture_net.safetensors", posture_net_config_of(dir / "posture_net.safetensors"), device)),
            load_xrv_densenet_file(dir / "xrv_densenet.safetensors", device),
            CxrClipEmbedder(load_cxr_clip_file(dir / "cxr_clip.safetensors", device), cxr_clip_tokenizer(vocab))};
  }
};

/// @brief AUROC targets from labels: 1 positive, 0 negative or unmentioned, NaN uncertain (see the file comment).
/// @param labels [N, 14] 1 / 0 / −1 / NaN
inline torch::Tensor auroc_targets(const torch::Tensor& labels) {
  auto t = torch::where(labels == 1, torch::ones_like(labels), torch::zeros_like(labels));
  return torch::where(labels == -1, torch::full_like(labels, std::numeric_limits<float>::quiet_NaN()), t);
}

/// @brief Per-report scores of one model's images of the evaluation reports (all tensors on the CPU).
struct ReportScores {
  torch::Tensor judge_align;     ///< [N] r_align of the judge posture net
  torch::Tensor judge_diag;      ///< [N] r_diag's accuracy rule with the judge classifier
  torch::Tensor judge_probs;     ///< [N, 14] judge classifier outputs per observation (NaN where unmapped)
  torch::Tensor judge_clip;      ///< [N] judge CLIP cosine similarity with the report
  torch::Tensor midline;         ///< [N, 2] mirror-symmetry tilt (rad) and offset (symmetry_posture())
  torch::Tensor features;        ///< [N, F] judge DenseNet `features2` (FID)
  torch::Tensor reward_align;    ///< [N] the reward models' own scores
  torch::Tensor reward_diag;     ///< [N]
  torch::Tensor reward_consist;  ///< [N]
  torch::Tensor diversity;       ///< [M] mean MS-SSIM among the generations of each of the first M reports

  /// @brief The scores as a tensor map (for a cache file). Keys are the member names.
  io::TensorMap to_map() const {
    return {{"judge_align", judge_align}, {"judge_diag", judge_diag}, {"judge_probs", judge_probs}, {"judge_clip", judge_clip},
            {"midline", midline}, {"features", features}, {"reward_align", reward_align}, {"reward_diag", reward_diag},
            {"reward_consist", reward_consist}, {"diversity", diversity}};
  }
  /// @brief Scores from to_map(). @param m the map @param source file name for messages
  static ReportScores from_map(const io::TensorMap& m, const std::string& source) {
    auto get = [&](const char* k) {
      auto it = m.find(k);
      if (it == m.end()) throw io::CheckpointError(source + ": missing key '" + std::string(k) + "' (not a cxrl score file)");
      return it->second;
    };
    return {get("judge_align"), get("judge_diag"), get("judge_probs"), get("judge_clip"), get("midline"), get("features"),
            get("reward_align"), get("reward_diag"), get("reward_consist"), get("diversity")};
  }
};

/**
 * @brief Scores images of the evaluation reports with the judges and with the reward models.
 * @tparam A, D, C the reward types (anything with `score(images, reports)`)
 * @param judges the judge panel
 * @param align r_align reward @param diag r_diag reward @param consist r_consist reward
 * @param images [N, 1|3, H, W] in [0, 1]
 * @param reports the N reports
 * @param batch images per scoring call
 * @return every field but `diversity`
 */
template <class A, class D, class C>
ReportScores score_report_images(Judges& judges, A& align, D& diag, C& consist, const torch::Tensor& images,
                                 const std::vector<std::string>& reports, int64_t batch = 64) {
  torch::NoGradGuard ng;
  DiagReward judge_diag(judges.diag);  // the reward's rule, with the judge's classifier
  std::vector<torch::Tensor> ja, jd, jp, jc, ml, ft, ra, rd, rc;
  for (int64_t i = 0; i < images.size(0); i += batch) {
    const auto n = std::min<int64_t>(batch, images.size(0) - i);
    const auto x = images.narrow(0, i, n).to(torch::kFloat32);
    const std::vector<std::string> r(reports.begin() + i, reports.begin() + i + n);
    ja.push_back(alignment_reward(judges.posture.posture(x)).cpu());
    const auto det = judge_diag.evaluate(x, r);
    jd.push_back(det.accuracy.cpu());
    jp.push_back(det.predicted.cpu());
    jc.push_back((judges.clip.embed_images(x) * judges.clip.embed_reports(r)).sum(1).cpu());
    ml.push_back(symmetry_posture(x).cpu());
    const auto gray = x.size(1) == 3 ? x.mean(1, true) : x;
    ft.push_back(judges.diag.features2(to_xrv_input(gray, judges.diag.resolution())).to(torch::kFloat64).cpu());
    ra.push_back(align.score(x, r).cpu());
    rd.push_back(diag.score(x, r).cpu());
    rc.push_back(consist.score(x, r).cpu());
  }
  ReportScores s;
  s.judge_align = torch::cat(ja);
  s.judge_diag = torch::cat(jd);
  s.judge_probs = torch::cat(jp);
  s.judge_clip = torch::cat(jc);
  s.midline = torch::cat(ml);
  s.features = torch::cat(ft);
  s.reward_align = torch::cat(ra);
  s.reward_diag = torch::cat(rd);
  s.reward_consist = torch::cat(rc);
  return s;
}

/**
 * @brief Diversity of repeated generations: for each report, the mean MS-SSIM over all pairs of its G generations
 *        (lower = more diverse; the scales that fit the image, see metrics::ms_ssim_fit).
 * @param generations [M·G, 1|3, H, W] in [0, 1], the G generations of report m at rows m·G … m·G + G − 1
 * @param per_report G
 * @return [M]
 */
inline torch::Tensor generation_diversity(const torch::Tensor& generations, int64_t per_report) {
  if (per_report < 2 || generations.size(0) % per_report != 0)
    throw std::invalid_argument("generation_diversity: need G >= 2 generations per report and a multiple of G images");
  metrics::SsimOptions so;
  so.data_range = 1.0;
  so.size_average = false;
  const int64_t M = generations.size(0) / per_report;
  std::vector<int64_t> a, b;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t p = 0; p < per_report; ++p)
      for (int64_t q = p + 1; q < per_report; ++q) {
        a.push_back(m * per_report + p);
        b.push_back(m * per_report + q);
      }
  const auto x = generations.to(torch::kFloat64);
  const auto v = metrics::ms_ssim_fit(x.index_select(0, torch::tensor(a)), x.index_select(0, torch::tensor(b)), so);
  return v.view({M, -1}).mean(1).to(torch::kFloat64);
}

/// @brief The per-report values of @p t [N] (or column @p col of [N, K]) as doubles.
inline std::vector<double> values_of(const torch::Tensor& t, int64_t col = -1) {
  auto x = (col >= 0 ? t.select(1, col) : t).to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(x.data_ptr<double>(), x.data_ptr<double>() + x.numel());
}

/// @brief Macro AUROC of the judge over the resampled reports (observations with both classes in the sample).
/// @param s scores @param targets [N, 14] auroc_targets() @param obs observation index, or −1 for the macro mean
inline eval::Statistic auroc_statistic(const ReportScores& s, const torch::Tensor& targets, int64_t obs = -1) {
  // Only observations the judge maps (its predicted column is not NaN) take part.
  std::vector<int64_t> cols;
  for (int64_t k = 0; k < kNumObservations; ++k)
    if ((obs < 0 || obs == k) && !std::isnan(s.judge_probs[0][k].item<float>())) cols.push_back(k);
  const auto ci = torch::tensor(cols, torch::kLong);
  const auto y = targets.index_select(1, ci).to(torch::kFloat64), p = s.judge_probs.index_select(1, ci).to(torch::kFloat64);
  return [y, p](const std::vector<int64_t>& idx) {
    if (y.size(1) == 0) return std::nan("");
    const auto ix = torch::tensor(idx, torch::kLong);
    try {
      return metrics::macro_auroc(y.index_select(0, ix), p.index_select(0, ix)).mean;
    } catch (const std::invalid_argument&) {
      return std::nan("");  // no observation with both classes in this sample
    }
  };
}

/// @brief FID of the resampled generated images' judge features against all real test images' features.
/// @param s scores @param real_features [N_real, F]
inline eval::Statistic fid_statistic(const ReportScores& s, const torch::Tensor& real_features) {
  const auto f = s.features.to(torch::kFloat64);
  const auto real = metrics::activation_statistics(real_features.to(torch::kFloat64));
  return [f, real](const std::vector<int64_t>& idx) {
    const auto g = metrics::activation_statistics(f.index_select(0, torch::tensor(idx, torch::kLong)));
    return metrics::frechet_distance(g.mu, g.sigma, real.mu, real.sigma);
  };
}

}  // namespace cxrl::cxr
