/// @file
/// @brief The phantom world as a dataset: deterministic studies per split, rendered and reported lazily.
#pragma once

#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/report_writer.hpp>
#include <cxrl/data/dataset.hpp>
#include <cxrl/cxr/sample.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace cxrl::cxr {

/// @brief Phantom dataset options.
struct PhantomDatasetOptions {
  PhantomConfig phantom{};                 ///< study distribution
  int resolution = 64;                          ///< image side length
  std::uint64_t seed = 0;                       ///< world seed
  std::size_t n_train = 5000;                   ///< train studies
  std::size_t n_validate = 500;                 ///< validate studies
  std::size_t n_test = 1000;                    ///< test studies
  PhrasingPool train_phrasing = PhrasingPool::train;   ///< phrasing of the train split
  PhrasingPool eval_phrasing = PhrasingPool::heldout;  ///< phrasing of validate/test (unseen)
  std::filesystem::path tokenizer_dir;          ///< CLIP vocab.json/merges.txt folder; empty = conservative bound
  int64_t max_impression_tokens = 74;           ///< impression budget
};

/// @brief Token counter for impressions: CLIP's when @p tokenizer_dir is set, else a conservative bound.
/// @param tokenizer_dir folder with vocab.json and merges.txt, or empty
inline TokenCounter make_token_counter(const std::filesystem::path& tokenizer_dir) {
  if (tokenizer_dir.empty()) return conservative_token_bound;
  auto tok = std::make_shared<text::ClipTokenizer>(text::ClipTokenizer::from_pretrained(tokenizer_dir));
  return [tok](std::string_view s) { return tok->count_tokens(s); };
}

/// @brief One split of the phantom world; images are rendered on access.
class PhantomDataset {
 public:
  /// @brief The @p split part of the world described by @p o.
  /// @param o options
  /// @param split which split
  PhantomDataset(PhantomDatasetOptions o, data::Split split)
      : o_(std::move(o)),
        split_(split),
        writer_(split == data::Split::train ? o_.train_phrasing : o_.eval_phrasing, make_token_counter(o_.tokenizer_dir),
                o_.max_impression_tokens) {
    if (o_.resolution < 8) throw std::invalid_argument("PhantomDataset: resolution must be >= 8");
  }
  /// @brief Number of studies in the split.
  std::size_t size() const {
    return split_ == data::Split::train ? o_.n_train : split_ == data::Split::validate ? o_.n_validate : o_.n_test;
  }
  /// @brief Ground truth of study @p i.
  /// @param i index < size()
  PhantomSpec spec(std::size_t i) const {
    check(i);
    const std::uint64_t stream = (static_cast<std::uint64_t>(split_) << 40) | static_cast<std::uint64_t>(i);
    return sample_phantom_spec(o_.phantom, data::child_seed(o_.seed, stream));
  }
  /// @brief Report of study @p i.
  /// @param i index < size()
  Report report(std::size_t i) const { return writer_.write(spec(i)); }
  /// @brief Sample @p i (image rendered now).
  /// @param i index < size()
  Sample get(std::size_t i) const {
    const auto s = spec(i);
    const auto r = writer_.write(s);
    Sample x;
    x.image = render_phantom(s, o_.resolution);
    x.meta.findings = r.findings;
    x.prompt = r.impression;
    x.labels = r.labels;
    x.meta.view = view_name(s.view);
    x.meta.posture = s.posture.to_array();
    x.meta.subject_id = "phantom";
    x.meta.study_id = "s" + std::to_string(s.seed % 100000000ull);
    x.meta.dicom_id = std::string(data::split_name(split_)) + "-" + std::to_string(i);
    x.split = split_;
    return x;
  }
  /// @brief The options.
  const PhantomDatasetOptions& options() const { return o_; }
  /// @brief The split.
  data::Split split() const { return split_; }

 private:
  void check(std::size_t i) const {
    if (i >= size())
      throw std::out_of_range("PhantomDataset(" + std::string(data::split_name(split_)) + "): index " + std::to_string(i) +
                              " >= size " + std::to_string(size()));
  }
  PhantomDatasetOptions o_;
  data::Split split_;
  ReportWriter writer_;
};

}  // namespace cxrl::cxr
