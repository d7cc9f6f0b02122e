/// @file
/// @brief The 14 CheXpert observations and their label values, shared by the phantom world, the
/// report writer, the labeler, the MIMIC loader and the diagnostic reward.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::cxr {

/// @brief Number of CheXpert observations.
inline constexpr int kNumObservations = 14;

/// @brief Observation names in the column order of `mimic-cxr-2.0.0-chexpert.csv`.
inline constexpr std::array<std::string_view, kNumObservations> kObservations = {
    "Atelectasis",      "Cardiomegaly", "Consolidation",   "Edema",
    "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity",
    "No Finding",       "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax",     "Support Devices"};

/// @brief Index of @p name in kObservations.
/// @param name exact observation name, e.g. "Pleural Effusion"
/// @throws std::invalid_argument naming the allowed values when unknown
inline int observation_index(std::string_view name) {
  for (int i = 0; i < kNumObservations; ++i)
    if (kObservations[static_cast<std::size_t>(i)] == name) return i;
  std::string allowed;
  for (auto o : kObservations) allowed += (allowed.empty() ? "" : ", ") + std::string(o);
  throw std::invalid_argument("unknown CheXpert observation '" + std::string(name) + "' (allowed: " + allowed + ")");
}

/// @brief A CheXpert label: positive 1, negative 0, uncertain −1, or blank (not mentioned).
enum class Label : std::int8_t { negative = 0, positive = 1, uncertain = -1, blank = 2 };

/// @brief CSV/tensor encoding: 1.0, 0.0, −1.0, NaN for blank.
inline float to_float(Label l) {
  switch (l) {
    case Label::positive: return 1.0f;
    case Label::negative: return 0.0f;
    case Label::uncertain: return -1.0f;
    default: return std::numeric_limits<float>::quiet_NaN();
  }
}

/// @brief Inverse of to_float().
/// @param v 1, 0, −1 or NaN
/// @throws std::invalid_argument for any other value
inline Label label_from_float(float v) {
  if (std::isnan(v)) return Label::blank;
  if (v == 1.0f) return Label::positive;
  if (v == 0.0f) return Label::negative;
  if (v == -1.0f) return Label::uncertain;
  throw std::invalid_argument("CheXpert label must be 1, 0, -1 or blank, got " + std::to_string(v));
}

/// @brief Per-study labels in kObservations order.
using Labels = std::array<Label, kNumObservations>;

}  // namespace cxrl::cxr
