/// @file
/// @brief The dataset API of any modality: a `SampleSource` concept (size + lazy get), deterministic shuffling
/// and sampling, subsets, lazy range-v3 views over samples and over batches collated by the modality.
#pragma once

#include <cxrl/data/rng.hpp>
#include <cxrl/data/sample.hpp>

#include <range/v3/view/chunk.hpp>
#include <range/v3/view/iota.hpp>
#include <range/v3/view/take.hpp>
#include <range/v3/view/transform.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <numeric>
#include <optional>
#include <type_traits>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::data {

/// @brief A random-access source of samples; `get(i)` renders/decodes the image on access. The sample type is the
/// modality's (usually a data::Sample<Labels, Meta>); all the generic code reads is its `image`.
template <class D>
concept SampleSource = requires(const D& d, std::size_t i) {
  { d.size() } -> std::convertible_to<std::size_t>;
  { d.get(i).image } -> std::convertible_to<torch::Tensor>;
};

/// @brief The sample type of source @p D.
template <SampleSource D>
using sample_t = std::remove_cvref_t<decltype(std::declval<const D&>().get(std::size_t{0}))>;

/// @brief The permutation of 0..n−1 drawn by a Fisher–Yates shuffle from @p seed (same seed, same order,
/// on every platform).
/// @param n number of items
/// @param seed shuffle seed
inline std::vector<std::size_t> shuffled_indices(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  Rng rng(child_seed(seed, 0x5A3F1E));
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
  sample_t<D> get(std::size_t i) const { return d_->get(idx_.at(i)); }

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

/// @brief The images of @p s stacked into one tensor [B, C, H, W]; names the first sample without an image or
/// of another size.
/// @param s samples (non-empty), each with an `image` tensor
template <class S>
torch::Tensor stack_images(const std::vector<S>& s) {
  if (s.empty()) throw std::invalid_argument("collate: empty batch");
  std::vector<torch::Tensor> ims;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!s[i].image.defined()) throw std::invalid_argument("collate: sample " + std::to_string(i) + " has no image");
    if (!ims.empty() && s[i].image.sizes() != ims.front().sizes())
      throw std::invalid_argument("collate: sample " + std::to_string(i) + " has a different image size");
    ims.push_back(s[i].image);
  }
  return torch::stack(ims);
}

/// @brief Lazy range of batches over @p d.
/// @param d source (must outlive the range)
/// @param batch_size samples per batch (≥ 1)
/// @param collate turns a `std::vector<sample_t<D>>` into the modality's batch (e.g. cxr::collate)
/// @param shuffle_seed when set, the order is shuffled_indices(size, seed); else 0..n−1
/// @param drop_last drop a final incomplete batch
template <SampleSource D, class Collate>
  requires std::invocable<const Collate&, const std::vector<sample_t<D>>&>
auto batches(const D& d, std::size_t batch_size, Collate collate, std::optional<std::uint64_t> shuffle_seed = std::nullopt,
             bool drop_last = false) {
  if (batch_size == 0) throw std::invalid_argument("batches: batch_size must be >= 1");
  const std::size_t n = d.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (shuffle_seed) order = shuffled_indices(n, *shuffle_seed);
  const std::size_t nb = drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
  // range-v3's chunk (std::views::chunk is C++23) cuts the positions into batches, the last one possibly short.
  return ranges::views::iota(std::size_t{0}, n) | ranges::views::chunk(batch_size) | ranges::views::take(nb) |
         ranges::views::transform([&d, order = std::move(order), collate](auto positions) {
           std::vector<sample_t<D>> s;
           for (const std::size_t i : positions) s.push_back(d.get(order[i]));
           return collate(s);
         });
}

}  // namespace cxrl::data
