/// @file
/// @brief A chest X-ray study as a data::Sample (real or phantom) and its collated batch.
#pragma once

#include <cxrl/cxr/observations.hpp>
#include <cxrl/data/dataset.hpp>
#include <cxrl/data/sample.hpp>

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief What a CXR study carries besides its image, prompt (the impression) and 14 labels.
struct StudyMeta {
  std::string findings;         ///< FINDINGS text (may be empty)
  std::string view;             ///< "PA", "AP", …
  std::optional<std::array<double, 5>> posture;  ///< ψ = (s_x, s_y, t_x, t_y, θ) when known (phantoms)
  std::string subject_id;       ///< patient id ("p10000032" for MIMIC, "phantom" for phantoms)
  std::string study_id;         ///< study id ("s50414267")
  std::string dicom_id;         ///< image id
};

/// @brief One image–report pair: the prompt is the report's IMPRESSION (≤ 74 CLIP tokens), the labels are the 14
/// CheXpert labels in kObservations order.
using Sample = data::Sample<Labels, StudyMeta>;

/// @brief A collated batch of CXR samples.
struct Batch {
  torch::Tensor images;                 ///< float [B,1,H,W]
  torch::Tensor labels;                 ///< float [B,14]: 1, 0, −1, NaN for blank
  torch::Tensor posture;                ///< float [B,5] ψ, NaN rows where unknown
  std::vector<std::string> prompts;     ///< impressions (the generation prompts)
  std::vector<std::string> findings;    ///< findings texts
  std::vector<std::string> views;       ///< view positions
  std::vector<std::string> ids;         ///< dicom ids
};

/// @brief Stacks samples into a Batch (all images must have the same size); the collate argument of
/// data::batches() for CXR sources.
/// @param s samples (non-empty)
inline Batch collate(const std::vector<Sample>& s) {
  Batch b;
  b.images = data::stack_images(s);
  const auto n = static_cast<int64_t>(s.size());
  b.labels = torch::empty({n, kNumObservations}, torch::kFloat32);
  b.posture = torch::full({n, 5}, std::numeric_limits<float>::quiet_NaN(), torch::kFloat32);
  auto L = b.labels.accessor<float, 2>();
  auto P = b.posture.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& x = s[static_cast<std::size_t>(i)];
    for (int k = 0; k < kNumObservations; ++k) L[i][k] = to_float(x.labels[static_cast<std::size_t>(k)]);
    if (x.meta.posture)
      for (int k = 0; k < 5; ++k) P[i][k] = static_cast<float>((*x.meta.posture)[static_cast<std::size_t>(k)]);
    b.prompts.push_back(x.prompt);
    b.findings.push_back(x.meta.findings);
    b.views.push_back(x.meta.view);
    b.ids.push_back(x.meta.dicom_id);
  }
  return b;
}

}  // namespace cxrl::cxr
