/// @file
/// @brief A model-free posture estimate of frontal chest radiographs from left–right mirror symmetry: the tilt of
///        the body's midline and its horizontal offset from the image centre.
///
/// A frontal chest film is close to mirror-symmetric about the patient's midline (spine, trachea, both lungs and
/// hemidiaphragms). The line about which the image best matches its own reflection is therefore the midline:
/// its angle to the vertical is the film's in-plane rotation and its offset the lateral mis-centring. Unlike a
/// learned posture network this cannot be fooled by samples unlike its training images, which makes it a check
/// on r_align (the heart, on the left, breaks the symmetry equally for every model and cancels in comparisons).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace cxrl::cxr {

/// @brief Search grid of symmetry_posture().
struct SymmetrySearch {
  double max_angle = 0.30;   ///< largest |tilt| tried, radians (≈17°)
  int angles = 31;           ///< angles tried (odd: 0 is one of them)
  double max_offset = 0.25;  ///< largest |offset| tried, in half image widths
  int offsets = 26;          ///< offsets tried
  double mask_radius = 0.8;  ///< only pixels within this normalised radius count (the frame edge is not anatomy)
};

/**
 * @brief For each image, the midline (tilt θ, offset c) that minimises the mean squared difference between the
 *        image and its reflection about the line through (c, 0) at angle θ to the vertical.
 * @param images [B, 1|3, H, W] in [0, 1]
 * @param s search grid
 * @return [B, 2]: tilt in radians (positive = clockwise on screen), offset in normalised units (image width = 2)
 */
inline torch::Tensor symmetry_posture(const torch::Tensor& images, const SymmetrySearch& s = {}) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw std::invalid_argument("symmetry_posture: expected images [B, 1 or 3, H, W]");
  if (s.angles < 1 || s.offsets < 1) throw std::invalid_argument("symmetry_posture: the search grid needs at least one angle and offset");
  torch::NoGradGuard ng;
  const auto x = (images.size(1) == 3 ? images.mean(1, true) : images).to(torch::kFloat32);
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  auto opts = x.options();
  // Pixel centres in normalised coordinates (align_corners = false), and the central mask.
  auto ys = (torch::arange(H, opts) * 2 + 1) / static_cast<double>(H) - 1;
  auto xs = (torch::arange(W, opts) * 2 + 1) / static_cast<double>(W) - 1;
  auto grid_y = ys.view({H, 1}).expand({H, W});
  auto grid_x = xs.view({1, W}).expand({H, W});
  const auto mask = ((grid_x.square() + grid_y.square()) <= s.mask_radius * s.mask_radius).to(torch::kFloat32);
  auto best_err = torch::full({B}, INFINITY, opts), best_a = torch::zeros({B}, opts), best_c = torch::zeros({B}, opts);
  namespace F = torch::nn::functional;
  for (int i = 0; i < s.angles; ++i) {
    const double a = s.angles == 1 ? 0.0 : -s.max_angle + 2 * s.max_angle * i / (s.angles - 1);
    // Unit normal of a line tilted by a from the vertical: n = (cos a, sin a); reflection p' = p − 2((p − q)·n)n.
    const double nx = std::cos(a), ny = std::sin(a);
    std::vector<torch::Tensor> grids;
    std::vector<double> cs;
    for (int j = 0; j < s.offsets; ++j) {
      const double c = s.offsets == 1 ? 0.0 : -s.max_offset + 2 * s.max_offset * j / (s.offsets - 1);
      auto d = (grid_x - c) * nx + grid_y * ny;
      grids.push_back(torch::stack({grid_x - 2 * d * nx, grid_y - 2 * d * ny}, -1));
      cs.push_back(c);
    }
    auto g = torch::stack(grids);  // [O, H, W, 2]
    const auto O = g.size(0);
    auto xr = x.unsqueeze(1).expand({B, O, 1, H, W}).reshape({B * O, 1, H, W});
    auto gr = g.unsqueeze(0).expand({B, O, H, W, 2}).reshape({B * O, H, W, 2});
    auto refl = F::grid_sample(xr, gr, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
    auto err = ((refl - xr).square() * mask).sum({1, 2, 3}).view({B, O}) / mask.sum();
    auto [e, k] = err.min(1);
    auto better = e < best_err;
    best_err = torch::where(better, e, best_err);
    best_a = torch::where(better, torch::full_like(best_a, a), best_a);
    best_c = torch::where(better, torch::tensor(cs, opts).index_select(0, k), best_c);
  }
  return torch::stack({best_a, best_c}, 1);
}

}  // namespace cxrl::cxr
