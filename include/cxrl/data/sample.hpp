/// @file
/// @brief One image–report pair of a CXR data set (real or phantom) and the split names.
#pragma once

#include <cxrl/cxr/observations.hpp>

#include <torch/torch.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::data {

/// @brief Official data split.
enum class Split { train, validate, test };

/// @brief "train" / "validate" / "test" (MIMIC-CXR-JPG split.csv spelling).
/// @param s split
inline std::string_view split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::validate: return "validate";
    default: return "test";
  }
}

/// @brief Parse a split name ("train", "validate"/"val"/"valid"/"validation", "test").
/// @param name split name
/// @throws std::invalid_argument listing the allowed names
inline Split parse_split(std::string_view name) {
  if (name == "train") return Split::train;
  if (name == "validate" || name == "val" || name == "valid" || name == "validation") return Split::validate;
  if (name == "test") return Split::test;
  throw std::invalid_argument("unknown split '" + std::string(name) + "' (allowed: train, validate, test)");
}

/// @brief One image–report pair.
struct Sample {
  torch::Tensor image;          ///< float [1,H,W] in [0,1] (CPU)
  std::string findings;         ///< FINDINGS text (may be empty)
  std::string impression;       ///< IMPRESSION text (the generation prompt; ≤ 74 CLIP tokens)
  cxr::Labels labels{};         ///< the 14 CheXpert labels (kObservations order)
  std::string view;             ///< "PA", "AP", …
  std::optional<std::array<double, 5>> posture;  ///< ψ = (s_x, s_y, t_x, t_y, θ) when known (phantoms)
  std::string subject_id;       ///< patient id ("p10000032" for MIMIC, "phantom" for phantoms)
  std::string study_id;         ///< study id ("s50414267")
  std::string dicom_id;         ///< image id
  Split split = Split::train;   ///< split it came from
};

}  // namespace cxrl::data
