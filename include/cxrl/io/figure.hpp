/// @file
/// @brief Captioned image sheets: rows of samples (real | anchor | fine-tuned | …), upscaled to a viewable size,
///        each row labelled and each column captioned with its report.
#pragma once

#include <cxrl/io/font.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::io {

/// @brief One row of a sheet.
struct SheetRow {
  std::string label;     ///< at the left of the row
  torch::Tensor images;  ///< [N, 1|3, H, W] in [0, 1], one per column
};

/**
 * @brief A sheet: rows of N images upscaled by @p scale (bilinear), labels on the left, the column captions
 *        (e.g. the reports) wrapped under the last row.
 * @param rows the rows (same N, H, W)
 * @param captions one per column (may be empty)
 * @param scale upscaling factor
 * @param font text renderer
 * @return [3, H', W'] float RGB
 */
inline torch::Tensor captioned_sheet(const std::vector<SheetRow>& rows, const std::vector<std::string>& captions, int scale = 3,
                                     const Font& font = Font::shared()) {
  if (rows.empty()) throw std::invalid_argument("captioned_sheet: no rows");
  const auto N = rows.front().images.size(0), h = rows.front().images.size(2) * scale, w = rows.front().images.size(3) * scale;
  for (const auto& r : rows)
    if (r.images.dim() != 4 || r.images.size(0) != N || r.images.size(2) * scale != h || r.images.size(3) * scale != w)
      throw std::invalid_argument("captioned_sheet: row '" + r.label + "' differs in count or size from the first row");
  const int gap = 6, label_w = 120;
  const float cap_px = 12;
  std::vector<std::vector<std::string>> wrapped;
  std::size_t max_lines = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(N); ++i) {
    wrapped.push_back(font.wrap(i < captions.size() ? captions[i] : std::string(), cap_px, static_cast<int>(w)));
    max_lines = std::max(max_lines, wrapped.back().size());
  }
  const int64_t line_h = 15, cap_h = static_cast<int64_t>(max_lines) * line_h + gap;
  const int64_t H = static_cast<int64_t>(rows.size()) * (h + gap) + gap + cap_h, W = label_w + N * (w + gap) + gap;
  auto img = torch::ones({3, H, W});
  namespace F = torch::nn::functional;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto up = F::interpolate(rows[r].images.to(torch::kFloat32).clamp(0, 1),
                             F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false))
                  .clamp(0, 1);
    if (up.size(1) == 1) up = up.expand({-1, 3, -1, -1});
    const int64_t y = gap + static_cast<int64_t>(r) * (h + gap);
    for (int64_t i = 0; i < N; ++i) img.narrow(1, y, h).narrow(2, label_w + gap + i * (w + gap), w).copy_(up[i]);
    for (const auto& [k, line] : [&] {
           std::vector<std::pair<int, std::string>> v;
           const auto ls = font.wrap(rows[r].label, 13, label_w - 8);
           for (std::size_t j = 0; j < ls.size(); ++j) v.emplace_back(static_cast<int>(j), ls[j]);
           return v;
         }())
      font.draw(img, 6, static_cast<int>(y + h / 2 - 8 + k * 16), line, 13);
  }
  const int64_t cy = gap + static_cast<int64_t>(rows.size()) * (h + gap);
  for (int64_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < wrapped[static_cast<std::size_t>(i)].size(); ++j)
      font.draw(img, static_cast<int>(label_w + gap + i * (w + gap)), static_cast<int>(cy + static_cast<int64_t>(j) * line_h),
                wrapped[static_cast<std::size_t>(i)][j], cap_px, {0.15f, 0.15f, 0.15f});
  return img;
}

}  // namespace cxrl::io
