/// @file
/// @brief The canonical chest X-ray: the pixel-wise mean of 500 random training images (CXRL §2.3.1,
/// following Liu et al.), the target pose of the posture-alignment model. Works for any sample source —
/// the phantom world or MIMIC-CXR-JPG.
#pragma once

#include <cxrl/data/dataset.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>

namespace cxrl::cxr {

/// @brief Mean image of @p n samples of @p d drawn without replacement (sample_indices(size, n, seed)).
/// @tparam D a data::SampleSource (e.g. cxr::PhantomDataset, cxr::MimicDataset)
/// @param d training split
/// @param n number of images (CXRL: 500); all of @p d when it has fewer
/// @param seed sampling seed
/// @return float [1,H,W] in [0,1]
template <data::SampleSource D>
torch::Tensor canonical_cxr(const D& d, std::size_t n = 500, std::uint64_t seed = 0) {
  if (d.size() == 0) throw std::invalid_argument("canonical_cxr: the dataset is empty");
  if (n == 0) throw std::invalid_argument("canonical_cxr: n must be >= 1");
  const auto idx = data::sample_indices(d.size(), n, seed);
  torch::Tensor sum;
  for (auto i : idx) {
    auto im = d.get(i).image.to(torch::kFloat64);
    if (!sum.defined()) sum = torch::zeros_like(im);
    if (im.sizes() != sum.sizes()) throw std::invalid_argument("canonical_cxr: images differ in size");
    sum += im;
  }
  return (sum / static_cast<double>(idx.size())).to(torch::kFloat32);
}

}  // namespace cxrl::cxr
