/// @file
/// @brief Labelled CXR images held in memory: what the scoring models are trained on and the evaluation compares with.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief Labelled CXR images held in memory (a rendered phantom split, or decoded MIMIC images).
struct CxrImageSet {
  torch::Tensor images;              ///< [N, 1, H, W] in [0, 1]
  torch::Tensor labels;              ///< [N, 14] kObservations order: 1 positive, 0 negative, −1 uncertain, NaN blank
  torch::Tensor psi;                 ///< [N, 5] true postures, or undefined when unknown
  std::vector<std::string> reports;  ///< the N reports (impressions)
  /// @brief Number of images.
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

}  // namespace cxrl::cxr
