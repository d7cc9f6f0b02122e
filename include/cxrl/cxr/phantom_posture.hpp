/// @file
/// @brief Posture ψ = (s_x, s_y, t_x, t_y, θ): the affine misalignment of a chest X-ray and the
/// spatial-transformer warp that undoes it (CXRL §2.3.1, after Liu et al.'s canonical-CXR alignment).
///
/// **Direction.** ψ maps the *posed* image back to the canonical pose. In normalised coordinates
/// p ∈ [−1,1]² (x to the right, y down, `align_corners = false`), with
///   A_ψ = [[s_x cos θ, −s_y sin θ, t_x], [s_x sin θ, s_y cos θ, t_y]]  (q = R(θ)·diag(s)·p + t),
/// the aligned image is `aligned(p) = posed(A_ψ p)`, i.e. `grid_sample(posed, affine_grid(A_ψ))`, and
/// a perfect ψ makes `aligned` equal the canonical image. Hence a posed phantom is rendered as
/// `posed(x) = canonical(A_ψ⁻¹ x)`. The identity ψ = (1, 1, 0, 0, 0) is perfectly posed, and CXRL's
/// reward r_align(ψ) = −(max(|s_x−1|,|s_y−1|) + |θ|/2π + √(t_x²+t_y²)) is 0 exactly there.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

namespace cxrl::cxr {

/// @brief Posture parameters ψ (see the file comment for the direction convention).
struct Posture {
  double sx = 1.0;     ///< horizontal scale s_x
  double sy = 1.0;     ///< vertical scale s_y
  double tx = 0.0;     ///< horizontal translation t_x (normalised units, image width = 2)
  double ty = 0.0;     ///< vertical translation t_y (normalised units, image height = 2)
  double theta = 0.0;  ///< rotation θ in radians

  /// @brief ψ as {s_x, s_y, t_x, t_y, θ}.
  std::array<double, 5> to_array() const { return {sx, sy, tx, ty, theta}; }
  /// @brief ψ from {s_x, s_y, t_x, t_y, θ}.
  /// @param a the five values in that order
  static Posture from_array(const std::array<double, 5>& a) { return {a[0], a[1], a[2], a[3], a[4]}; }
  /// @brief True for the identity pose (within @p tol).
  /// @param tol absolute tolerance on every component
  bool is_identity(double tol = 1e-12) const {
    return std::abs(sx - 1) <= tol && std::abs(sy - 1) <= tol && std::abs(tx) <= tol && std::abs(ty) <= tol &&
           std::abs(theta) <= tol;
  }
};

/// @brief 2×3 affine matrix of ψ, row-major: the `theta` argument of `affine_grid` that aligns a posed image.
/// @param psi posture
inline std::array<double, 6> posture_matrix(const Posture& psi) {
  const double c = std::cos(psi.theta), s = std::sin(psi.theta);
  return {psi.sx * c, -psi.sy * s, psi.tx, psi.sx * s, psi.sy * c, psi.ty};
}

/// @brief Inverse of posture_matrix(): maps canonical coordinates to posed ones.
/// @param psi posture (s_x, s_y must be non-zero)
inline std::array<double, 6> posture_matrix_inverse(const Posture& psi) {
  if (psi.sx == 0 || psi.sy == 0) throw std::invalid_argument("posture: s_x and s_y must be non-zero");
  const auto m = posture_matrix(psi);
  const double det = m[0] * m[4] - m[1] * m[3];
  const double i00 = m[4] / det, i01 = -m[1] / det, i10 = -m[3] / det, i11 = m[0] / det;
  return {i00, i01, -(i00 * m[2] + i01 * m[5]), i10, i11, -(i10 * m[2] + i11 * m[5])};
}

/// @brief CXRL posture-alignment reward r_align(ψ) = −(max(|s_x−1|,|s_y−1|) + |θ|/2π + √(t_x²+t_y²)).
/// @param psi posture
inline double posture_alignment_reward(const Posture& psi) {
  return -(std::max(std::abs(psi.sx - 1), std::abs(psi.sy - 1)) + std::abs(psi.theta) / (2 * M_PI) +
           std::sqrt(psi.tx * psi.tx + psi.ty * psi.ty));
}

/// @brief Warp images with per-sample 2×3 matrices: out(p) = in(M p) (bilinear, zero padding,
/// `align_corners = false`).
/// @param images [B,C,H,W] or [C,H,W]
/// @param theta [B,2,3] (or [2,3]) matrices on any device
inline torch::Tensor affine_warp(const torch::Tensor& images, const torch::Tensor& theta) {
  const bool single = images.dim() == 3;
  auto x = single ? images.unsqueeze(0) : images;
  auto th = theta.dim() == 2 ? theta.unsqueeze(0) : theta;
  th = th.to(x.device(), x.scalar_type());
  if (th.size(0) != x.size(0)) throw std::invalid_argument("affine_warp: batch of images and matrices differ");
  auto grid = torch::nn::functional::affine_grid(th, x.sizes(), /*align_corners=*/false);
  auto out = torch::nn::functional::grid_sample(
      x, grid, torch::nn::functional::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
  return single ? out.squeeze(0) : out;
}

/// @brief Align a posed image with its ψ: the result shows the canonical pose.
/// @param posed [C,H,W] or [B,C,H,W]
/// @param psi posture of the image (the same for the whole batch)
inline torch::Tensor align_posture(const torch::Tensor& posed, const Posture& psi) {
  const auto m = posture_matrix(psi);
  auto th = torch::tensor({m[0], m[1], m[2], m[3], m[4], m[5]}, torch::kFloat64).view({2, 3});
  if (posed.dim() == 4) th = th.unsqueeze(0).expand({posed.size(0), 2, 3}).contiguous();
  return affine_warp(posed, th);
}

/// @brief Pose a canonical image with ψ (the inverse warp of align_posture()).
/// @param canonical [C,H,W] or [B,C,H,W]
/// @param psi posture to apply
inline torch::Tensor apply_posture(const torch::Tensor& canonical, const Posture& psi) {
  const auto m = posture_matrix_inverse(psi);
  auto th = torch::tensor({m[0], m[1], m[2], m[3], m[4], m[5]}, torch::kFloat64).view({2, 3});
  if (canonical.dim() == 4) th = th.unsqueeze(0).expand({canonical.size(0), 2, 3}).contiguous();
  return affine_warp(canonical, th);
}

/// @brief Ranges of a random posture; ψ is drawn uniformly inside them.
///
/// The defaults are the PA (posteroanterior, standing) ranges: a departmental PA film is taken with the patient
/// positioned against the detector, so it is close to canonical. posture_ranges_ap() gives the wider ranges of
/// portable AP films (supine or semi-upright, rotated, off-centre). Reports rarely state the view, so a
/// generator trained on both learns AP-like drift for PA reports: RoentGen's posture fault (CXRL §2.3.1).
struct PostureRanges {
  double p_identity = 0.4;    ///< probability of the perfect pose ψ = identity
  double scale_min = 0.95;    ///< smallest s_x, s_y
  double scale_max = 1.05;    ///< largest s_x, s_y
  double anisotropy = 0.02;   ///< max |s_x/s_y − 1|
  double translate = 0.04;    ///< max |t_x|, |t_y|
  double rotate = 0.05;       ///< max |θ| (radians, ≈3°)
};

/// @brief Posture ranges of portable AP films: rarely canonical, ±20 % scale, ±0.15 shift, ±12°.
inline PostureRanges posture_ranges_ap() {
  PostureRanges r;
  r.p_identity = 0.1;
  r.scale_min = 0.8;
  r.scale_max = 1.2;
  r.anisotropy = 0.06;
  r.translate = 0.15;
  r.rotate = 0.21;
  return r;
}

}  // namespace cxrl::cxr
