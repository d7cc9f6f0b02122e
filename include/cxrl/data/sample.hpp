/// @file
/// @brief A sample of any modality (image, prompt, labels, metadata) and the split names.
#pragma once

#include <torch/torch.h>

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

/**
 * @brief One image–text pair of any modality.
 *
 * The image and the prompt are what a diffusion model is trained and tuned on; what the world knows besides
 * (a CXR study's 14 CheXpert labels and pose, a skin lesion's diagnosis) differs per modality, so it is a type
 * parameter rather than fields every modality must carry.
 * @tparam Labels the modality's ground truth (e.g. cxr::Labels)
 * @tparam Meta the modality's other facts and ids (e.g. cxr::StudyMeta)
 */
template <class Labels, class Meta>
struct Sample {
  torch::Tensor image;          ///< float [C,H,W] in [0,1] (CPU)
  std::string prompt;           ///< the generation prompt (a report's impression, a caption)
  Labels labels{};              ///< ground truth
  Meta meta{};                  ///< metadata
  Split split = Split::train;   ///< split it came from
};

}  // namespace cxrl::data
