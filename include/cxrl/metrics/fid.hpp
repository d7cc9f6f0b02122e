/// @file
/// @brief Fréchet distance between Gaussians fitted to feature sets (FID; Heusel et al. 2017, eq. 6),
///        with the semantics of pytorch-fid `calculate_activation_statistics` / `calculate_frechet_distance`.
///
/// All arithmetic is float64. The matrix square root is computed through symmetric eigendecompositions:
/// Tr sqrtm(S1 S2) = Tr sqrtm(S1^1/2 S2 S1^1/2), because S1 S2 and S1^1/2 S2 S1^1/2 are similar and the
/// latter is symmetric positive semi-definite. This is exact for covariance matrices, stays real for
/// singular (rank-deficient, N <= D) covariances where scipy's Schur-based `sqrtm` returns round-off
/// imaginary parts that pytorch-fid discards, and needs no eps retry in that case.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace cxrl::metrics {

/// @brief Mean and covariance of a feature set.
struct GaussianStats {
  torch::Tensor mu;     ///< [D] float64
  torch::Tensor sigma;  ///< [D, D] float64, unbiased (N - 1) covariance, like `np.cov(rowvar=False)`
};

/// @brief pytorch-fid `calculate_activation_statistics` on given features: mu = mean over rows,
///        sigma = unbiased covariance, both in float64.
/// @param features [N, D] activations (any floating dtype; cast to float64), N >= 2
inline GaussianStats activation_statistics(const torch::Tensor& features) {
  if (!features.defined() || features.dim() != 2) {
    std::ostringstream s;
    s << "activation_statistics: features must be [N, D], got "
      << (features.defined() ? features.sizes() : c10::IntArrayRef{});
    throw std::invalid_argument(s.str());
  }
  if (features.size(0) < 2)
    throw std::invalid_argument("activation_statistics: need N >= 2 feature rows for an unbiased covariance, got " +
                                std::to_string(features.size(0)));
  auto x = features.detach().to(torch::kFloat64);
  GaussianStats st;
  st.mu = x.mean(0);
  auto xc = x - st.mu;
  st.sigma = xc.t().mm(xc) / static_cast<double>(x.size(0) - 1);
  return st;
}

/// @brief Square root of a symmetric positive semi-definite matrix via eigh (negative round-off
///        eigenvalues are clamped to 0). Returns a symmetric PSD matrix R with R R = A.
/// @param a [D, D] symmetric PSD matrix (float64 recommended)
inline torch::Tensor sqrtm_psd(const torch::Tensor& a) {
  if (!a.defined() || a.dim() != 2 || a.size(0) != a.size(1))
    throw std::invalid_argument("sqrtm_psd: expected a square [D, D] matrix");
  auto sym = 0.5 * (a + a.t());  // remove asymmetric round-off before eigh
  auto [w, v] = torch::linalg::eigh(sym, "L");
  return (v * w.clamp_min(0).sqrt().unsqueeze(0)).mm(v.t());
}

/// @brief Tr sqrtm(S1 S2) for symmetric PSD S1, S2, as Tr sqrtm(S1^1/2 S2 S1^1/2).
/// @param sigma1 [D, D] covariance
/// @param sigma2 [D, D] covariance
inline double trace_sqrt_product(const torch::Tensor& sigma1, const torch::Tensor& sigma2) {
  auto s1 = sigma1.to(torch::kFloat64), s2 = sigma2.to(torch::kFloat64);
  auto r = sqrtm_psd(s1);
  auto m = r.mm(s2).mm(r);
  m = 0.5 * (m + m.t());
  auto w = torch::linalg::eigvalsh(m, "L");
  return w.clamp_min(0).sqrt().sum().item<double>();
}

/// @brief pytorch-fid `calculate_frechet_distance`:
///        ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr sqrtm(S1 S2) (Dowson & Landau 1982).
///
/// If the trace term is not finite, eps is added to both diagonals and it is recomputed (as pytorch-fid
/// does when scipy's sqrtm fails). The result may be a tiny negative number (~1e-14) for identical sets.
/// @param mu1 [D] mean of set 1
/// @param sigma1 [D, D] covariance of set 1
/// @param mu2 [D] mean of set 2
/// @param sigma2 [D, D] covariance of set 2
/// @param eps diagonal offset of the retry (pytorch-fid default 1e-6)
inline double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& sigma1, const torch::Tensor& mu2,
                               const torch::Tensor& sigma2, double eps = 1e-6) {
  auto m1 = mu1.to(torch::kFloat64).reshape({-1}), m2 = mu2.to(torch::kFloat64).reshape({-1});
  auto s1 = sigma1.to(torch::kFloat64), s2 = sigma2.to(torch::kFloat64);
  const int64_t d = m1.size(0);
  if (m2.size(0) != d)
    throw std::invalid_argument("frechet_distance: mean vectors have different lengths (" + std::to_string(d) +
                                " vs " + std::to_string(m2.size(0)) + ")");
  auto is_dxd = [d](const torch::Tensor& s) { return s.dim() == 2 && s.size(0) == d && s.size(1) == d; };
  if (!is_dxd(s1) || !is_dxd(s2)) {
    std::ostringstream o;
    o << "frechet_distance: covariances must be [" << d << ", " << d << "], got " << s1.sizes() << " and "
      << s2.sizes();
    throw std::invalid_argument(o.str());
  }
  if (!torch::isfinite(s1).all().item<bool>() || !torch::isfinite(s2).all().item<bool>() ||
      !torch::isfinite(m1).all().item<bool>() || !torch::isfinite(m2).all().item<bool>())
    throw std::invalid_argument("frechet_distance: statistics contain NaN or Inf");
  auto diff = m1 - m2;
  double tr_covmean = trace_sqrt_product(s1, s2);
  if (!std::isfinite(tr_covmean)) {
    auto off = torch::eye(d, s1.options()) * eps;
    tr_covmean = trace_sqrt_product(s1 + off, s2 + off);
  }
  return diff.dot(diff).item<double>() + s1.trace().item<double>() + s2.trace().item<double>() - 2.0 * tr_covmean;
}

/// @brief FID between two feature sets ([N1, D] and [N2, D]) via activation_statistics().
/// @param features1 activations of set 1 (e.g. Inception pool3 features of real images)
/// @param features2 activations of set 2 (e.g. of generated images)
inline double fid_from_features(const torch::Tensor& features1, const torch::Tensor& features2) {
  const auto a = activation_statistics(features1), b = activation_statistics(features2);
  return frechet_distance(a.mu, a.sigma, b.mu, b.sigma);
}

}  // namespace cxrl::metrics
