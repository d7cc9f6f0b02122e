/// @file
/// @brief The dataset API: a `SampleSource` concept (size + lazy get), deterministic shuffling and
/// sampling, subsets, lazy range-v3 views over samples and batches, and collation into tensors.
#pragma once

#include <cxrl/cxr/phantom_rng.hpp>
#include <cxrl/data/sample.hpp>

#include <range/v3/view/iota.hpp>
#include <range/v3/view/transform.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::data {

/// @brief A random-access source of samples; `get(i)` renders/decodes the image on access.
template <class D>
concept SampleSource = requires(const D& d, std::size_t i) {
  { d.size() } -> std::convertible_to<std::size_t>;
  { d.get(i) } -> std::same_as<Sample>;
};

/// @brief The permutation of 0..n−1 drawn by a Fisher–Yates shuffle from @p seed (same seed, same order,
/// on every platform).
/// @param n number of items
/// @param seed shuffle seed
inline std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  cxr::Rng rng(cxr::child_seed(seed, 0x5A3F1E));
  for (std::size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[rng.below(i)]);
  return idx;
}

/// @brief @p k distinct indices of 0..n−1 drawn uniformly without replacement (the first k of
/// shuffled_indices()); all n when k ≥ n.
/// @param n population size
/// @param k sample size
/// @param seed sampling seed
inline std::vector<std::size_t> sample_indices(std::size_t n, std::size_t k, std::uint64_t seed) {
  auto idx = shuffled_indices(n, seed);
  if (k < n) idx.resize(k);
  return idx;
}

/// @brief A view of a source restricted to (and reordered by) a list of indices.
/// @tparam D the underlying source (held by reference; it must outlive the subset)
template <SampleSource D>
class Subset {
 public:
  /// @brief Subset of @p d.
  /// @param d source
  /// @param indices indices into @p d (each < d.size())
  Subset(const D& d, std::vector<std::size_t> indices) : d_(&d), idx_(std::move(indices)) {
    for (auto i : idx_)
      if (i >= d.size())
        throw std::out_of_range("Subset: index " + std::to_string(i) + " >= source size " + std::to_string(d.size()));
  }
  /// @brief Number of samples.
  std::size_t size() const { return idx_.size(); }
  /// @brief Sample @p i of the subset.
  /// @param i position in the subset
  Sample get(std::size_t i) const { return d_->get(idx_.at(i)); }

 private:
  const D* d_;
  std::vector<std::size_t> idx_;
};

/// @brief Lazy range over all samples of @p d (each image is produced when the element is read).
/// @param d source (must outlive the range)
template <SampleSource D>
auto samples(const D& d) {
  return ranges::views::iota(std::size_t{0}, static_cast<std::size_t>(d.size())) |
         ranges::views::transform([&d](std::size_t i) { return d.get(i); });
}

/// @brief A collated batch.
struct Batch {
  torch::Tensor images;                 ///< float [B,1,H,W]
  torch::Tensor labels;                 ///< float [B,14]: 1, 0, −1, NaN for blank
  torch::Tensor posture;                ///< float [B,5] ψ, NaN rows where unknown
  std::vector<std::string> prompts;     ///< impressions (the generation prompts)
  std::vector<std::string> findings;    ///< findings texts
  std::vector<std::string> views;       ///< view positions
  std::vector<std::string> ids;         ///< dicom ids
};

/// @brief Stack samples into a Batch (all images must have the same size).
/// @param s samples (non-empty)
inline Batch collate(const std::vector<Sample>& s) {
  if (s.empty()) throw std::invalid_argument("collate: empty batch");
  Batch b;
  std::vector<torch::Tensor> ims;
  const auto n = static_cast<int64_t>(s.size());
  b.labels = torch::empty({n, cxr::kNumObservations}, torch::kFloat32);
  b.posture = torch::full({n, 5}, std::numeric_limits<float>::quiet_NaN(), torch::kFloat32);
  auto L = b.labels.accessor<float, 2>();
  auto P = b.posture.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& x = s[static_cast<std::size_t>(i)];
    if (!x.image.defined()) throw std::invalid_argument("collate: sample " + std::to_string(i) + " has no image");
    if (!ims.empty() && x.image.sizes() != ims.front().sizes())
      throw std::invalid_argument("collate: sample " + std::to_string(i) + " has a different image size");
    ims.push_back(x.image);
    for (int k = 0; k < cxr::kNumObservations; ++k) L[i][k] = cxr::to_float(x.labels[static_cast<std::size_t>(k)]);
    if (x.posture)
      for (int k = 0; k < 5; ++k) P[i][k] = static_cast<float>((*x.posture)[static_cast<std::size_t>(k)]);
    b.prompts.push_back(x.impression);
    b.findings.push_back(x.findings);
    b.views.push_back(x.view);
    b.ids.push_back(x.dicom_id);
  }
  b.images = torch::stack(ims);
  return b;
}

/// @brief Lazy range of batches over @p d.
/// @param d source (must outlive the range)
/// @param batch_size samples per batch (≥ 1)
/// @param shuffle_seed when set, the order is shuffled_indices(size, seed); else 0..n−1
/// @param drop_last drop a final incomplete batch
template <SampleSource D>
auto batches(const D& d, std::size_t batch_size, std::optional<std::uint64_t> shuffle_seed = std::nullopt,
             bool drop_last = false) {
  if (batch_size == 0) throw std::invalid_argument("batches: batch_size must be >= 1");
  const std::size_t n = d.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (shuffle_seed) order = shuffled_indices(n, *shuffle_seed);
  const std::size_t nb = drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
  return ranges::views::iota(std::size_t{0}, nb) |
         ranges::views::transform([&d, order = std::move(order), batch_size](std::size_t b) {
           std::vector<Sample> s;
           for (std::size_t i = b * batch_size; i < std::min(order.size(), (b + 1) * batch_size); ++i) s.push_back(d.get(order[i]));
           return collate(s);
         });
}

}  // namespace cxrl::data
