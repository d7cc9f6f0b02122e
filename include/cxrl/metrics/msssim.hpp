/// @file
/// @brief SSIM (Wang et al. 2004) and multi-scale SSIM (Wang, Simoncelli & Bovik 2003) with the semantics
///        of pytorch-msssim 1.0 (`ssim`, `ms_ssim`), plus a documented small-image variant.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::metrics {

/// @brief Options of ssim() / ms_ssim(); names and defaults follow pytorch-msssim.
struct SsimOptions {
  double data_range = 255.0;  ///< value range R of the images (pytorch-msssim default 255; use 1 for [0,1])
  bool size_average = true;   ///< true: one scalar over the batch; false: one value per image [N]
  int64_t win_size = 11;      ///< Gaussian window length (odd)
  double win_sigma = 1.5;     ///< Gaussian window sigma
  double K1 = 0.01;           ///< C1 = (K1 R)^2
  double K2 = 0.03;           ///< C2 = (K2 R)^2
  bool nonnegative_ssim = false;  ///< ssim() only: relu on the per-channel SSIM
  /// Per-scale exponents of MS-SSIM (Wang et al. 2003, sec. 3.2), finest first.
  std::vector<double> weights{0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
};

/// @brief Normalised 1-D Gaussian window g_i ∝ exp(-(i - size//2)^2 / (2 sigma^2)), computed in float32
///        like pytorch-msssim `_fspecial_gauss_1d`, returned as [size] in @p dtype.
/// @param size window length
/// @param sigma standard deviation
/// @param dtype result dtype
inline torch::Tensor gaussian_window(int64_t size, double sigma, torch::ScalarType dtype = torch::kFloat32) {
  if (size < 1 || size % 2 == 0)
    throw std::invalid_argument("gaussian_window: window size must be odd and >= 1, got " + std::to_string(size));
  if (!(sigma > 0)) throw std::invalid_argument("gaussian_window: sigma must be > 0, got " + std::to_string(sigma));
  auto coords = torch::arange(size, torch::kFloat32) - static_cast<double>(size / 2);
  auto g = torch::exp(-(coords.pow(2)) / (2.0 * sigma * sigma));
  g = g / g.sum();
  return g.to(dtype);
}

/// @brief Per-channel SSIM and contrast-structure (cs) means of one scale, each [N, C], before any relu.
struct SsimComponents {
  torch::Tensor ssim;  ///< mean of the SSIM map
  torch::Tensor cs;    ///< mean of the cs map (2 sigma12 + C2) / (sigma1^2 + sigma2^2 + C2)
};

namespace detail {

inline void check_pair(const torch::Tensor& x, const torch::Tensor& y, const char* fn) {
  if (!x.defined() || !y.defined()) throw std::invalid_argument(std::string(fn) + ": undefined image tensor");
  if (x.dim() != 4) {
    std::ostringstream s;
    s << fn << ": images must be 4-d [N, C, H, W], got " << x.sizes();
    throw std::invalid_argument(s.str());
  }
  if (x.sizes() != y.sizes() || x.scalar_type() != y.scalar_type()) {
    std::ostringstream s;
    s << fn << ": X and Y must have the same shape and dtype, got " << x.sizes() << " " << x.scalar_type() << " and "
      << y.sizes() << " " << y.scalar_type();
    throw std::invalid_argument(s.str());
  }
  if (!x.is_floating_point()) throw std::invalid_argument(std::string(fn) + ": images must be floating point");
}

/// Separable VALID Gaussian blur, per channel: along H, then along W (pytorch-msssim 1.0 order).
inline torch::Tensor gaussian_filter(const torch::Tensor& x, const torch::Tensor& win) {
  const int64_t c = x.size(1), k = win.size(0);
  auto wh = win.view({1, 1, k, 1}).expand({c, 1, k, 1}).contiguous();
  auto ww = win.view({1, 1, 1, k}).expand({c, 1, 1, k}).contiguous();
  const torch::Tensor no_bias;
  const std::vector<int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  auto out = torch::conv2d(x, wh, no_bias, stride, padding, dilation, c);
  return torch::conv2d(out, ww, no_bias, stride, padding, dilation, c);
}

}  // namespace detail

/// @brief SSIM and cs means at one scale (pytorch-msssim `_ssim`): local statistics from a Gaussian
///        window without padding; sigma^2 = E[x^2] - mu^2 (biased); ssim = l * cs (Wang et al. 2004, eq. 13).
/// @param x images [N, C, H, W], H and W >= window length
/// @param y images, same shape and dtype
/// @param win 1-D window [K] (gaussian_window())
/// @param data_range value range R
/// @param k1 C1 = (k1 R)^2
/// @param k2 C2 = (k2 R)^2
inline SsimComponents ssim_components(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& win,
                                      double data_range, double k1 = 0.01, double k2 = 0.03) {
  detail::check_pair(x, y, "ssim");
  if (x.size(2) < win.size(0) || x.size(3) < win.size(0)) {
    std::ostringstream s;
    s << "ssim: images of size " << x.size(2) << "x" << x.size(3) << " are smaller than the " << win.size(0)
      << "-pixel window";
    throw std::invalid_argument(s.str());
  }
  const double c1 = (k1 * data_range) * (k1 * data_range);
  const double c2 = (k2 * data_range) * (k2 * data_range);
  auto w = win.to(x.device(), x.scalar_type());
  auto mu1 = detail::gaussian_filter(x, w), mu2 = detail::gaussian_filter(y, w);
  auto mu1_sq = mu1.pow(2), mu2_sq = mu2.pow(2), mu1_mu2 = mu1 * mu2;
  auto sigma1_sq = detail::gaussian_filter(x * x, w) - mu1_sq;
  auto sigma2_sq = detail::gaussian_filter(y * y, w) - mu2_sq;
  auto sigma12 = detail::gaussian_filter(x * y, w) - mu1_mu2;
  auto cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2);
  auto ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map;
  return {ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)};
}

/// @brief Single-scale SSIM (pytorch-msssim `ssim`): mean over channels (and over the batch when
///        `size_average`).
/// @param x images [N, C, H, W]
/// @param y images, same shape
/// @param opt options (data_range defaults to 255 as in the reference)
inline torch::Tensor ssim(const torch::Tensor& x, const torch::Tensor& y, const SsimOptions& opt = {}) {
  auto comp = ssim_components(x, y, gaussian_window(opt.win_size, opt.win_sigma), opt.data_range, opt.K1, opt.K2);
  auto s = opt.nonnegative_ssim ? torch::relu(comp.ssim) : comp.ssim;
  return opt.size_average ? s.mean() : s.mean(1);
}

/// @brief How many scales ms_ssim_details() uses.
enum class MsSsimScales {
  reference,  ///< all `weights`; requires min(H, W) > (win_size - 1) * 2^4, exactly like pytorch-msssim
  fit,        ///< the most scales L that fit, min(H, W) > (win_size - 1) * 2^(L-1); weights renormalised
};

/// @brief MS-SSIM value plus the per-scale terms (for debugging and golden checks).
struct MsSsimResult {
  torch::Tensor value;      ///< 0-d when size_average, else [N]
  torch::Tensor cs_levels;  ///< [L-1, N, C] mean cs of scales 0..L-2, before relu
  torch::Tensor ssim_last;  ///< [N, C] mean SSIM of the coarsest scale, before relu
  torch::Tensor weights;    ///< [L] exponents used
};

/// @brief MS-SSIM (Wang et al. 2003, eq. 7) as pytorch-msssim `ms_ssim`: scales 0..L-2 contribute
///        relu(cs)^w_l, the coarsest relu(ssim)^w_L; between scales the images are 2x2 average-pooled
///        with padding (H % 2, W % 2) and count_include_pad (zero padding counts in the mean).
///
/// With MsSsimScales::fit (for images below 161 px, e.g. the small phantom images), L is the largest
/// number of scales <= weights.size() such that min(H, W) > (win_size - 1) * 2^(L-1); when L is smaller
/// than weights.size(), the first L weights are divided by their sum so the exponents sum to 1 (the
/// full default set sums to 1.0001). For images large enough for every scale, `fit` equals `reference`.
/// Example: 128 px gives L = 4 (128 > 80, 128 <= 160), 64 px gives L = 3.
/// @param x images [N, C, H, W]
/// @param y images, same shape
/// @param opt options
/// @param scales reference (strict) or fit (small images)
inline MsSsimResult ms_ssim_details(const torch::Tensor& x, const torch::Tensor& y, const SsimOptions& opt = {},
                                    MsSsimScales scales = MsSsimScales::reference) {
  detail::check_pair(x, y, "ms_ssim");
  if (opt.weights.empty()) throw std::invalid_argument("ms_ssim: weights must not be empty");
  const int64_t smaller = std::min(x.size(2), x.size(3));
  const int64_t span = opt.win_size - 1;
  std::vector<double> w = opt.weights;
  if (scales == MsSsimScales::reference) {
    if (!(smaller > span * 16))
      throw std::invalid_argument("ms_ssim: image size " + std::to_string(x.size(2)) + "x" +
                                  std::to_string(x.size(3)) + " too small: min(H, W) must be > (win_size - 1) * 2^4 = " +
                                  std::to_string(span * 16) + " for the 4 downsamplings (use MsSsimScales::fit)");
  } else {
    size_t levels = 0;
    while (levels < w.size() && smaller > span * (int64_t{1} << levels)) ++levels;
    if (levels == 0)
      throw std::invalid_argument("ms_ssim: image size " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                                  " too small even for one scale: min(H, W) must be > win_size - 1 = " +
                                  std::to_string(span));
    if (levels < w.size()) {
      w.resize(levels);
      double sum = 0;
      for (double v : w) sum += v;
      for (double& v : w) v /= sum;
    }
  }
  const auto win = gaussian_window(opt.win_size, opt.win_sigma);
  auto weights = torch::tensor(w, torch::kFloat64).to(x.device(), x.scalar_type());
  const size_t levels = w.size();
  std::vector<torch::Tensor> cs_raw;
  torch::Tensor xs = x, ys = y, last_ssim;
  for (size_t i = 0; i < levels; ++i) {
    auto comp = ssim_components(xs, ys, win, opt.data_range, opt.K1, opt.K2);
    if (i + 1 < levels) {
      cs_raw.push_back(comp.cs);
      const std::vector<int64_t> pad{xs.size(2) % 2, xs.size(3) % 2};
      xs = torch::avg_pool2d(xs, {2, 2}, {2, 2}, pad, false, /*count_include_pad=*/true);
      ys = torch::avg_pool2d(ys, {2, 2}, {2, 2}, pad, false, /*count_include_pad=*/true);
    } else {
      last_ssim = comp.ssim;
    }
  }
  std::vector<torch::Tensor> terms;
  for (const auto& c : cs_raw) terms.push_back(torch::relu(c));
  terms.push_back(torch::relu(last_ssim));
  auto stacked = torch::stack(terms, 0);  // [L, N, C]
  auto per_channel = torch::prod(stacked.pow(weights.view({-1, 1, 1})), 0);
  MsSsimResult r;
  r.value = opt.size_average ? per_channel.mean() : per_channel.mean(1);
  r.cs_levels = cs_raw.empty() ? torch::empty({0, x.size(0), x.size(1)}, x.options()) : torch::stack(cs_raw, 0);
  r.ssim_last = last_ssim;
  r.weights = weights;
  return r;
}

/// @brief pytorch-msssim `ms_ssim` (strict size check; see ms_ssim_details()).
/// @param x images [N, C, H, W], min(H, W) > 160 for the default window
/// @param y images, same shape
/// @param opt options
inline torch::Tensor ms_ssim(const torch::Tensor& x, const torch::Tensor& y, const SsimOptions& opt = {}) {
  return ms_ssim_details(x, y, opt, MsSsimScales::reference).value;
}

/// @brief MS-SSIM with as many scales as fit and renormalised weights (MsSsimScales::fit), for images
///        below 161 px such as the phantom images of the CXR instantiation.
/// @param x images [N, C, H, W]
/// @param y images, same shape
/// @param opt options
inline torch::Tensor ms_ssim_fit(const torch::Tensor& x, const torch::Tensor& y, const SsimOptions& opt = {}) {
  return ms_ssim_details(x, y, opt, MsSsimScales::fit).value;
}

}  // namespace cxrl::metrics
