// Where the reports and test images come from: the phantom world by default, MIMIC-CXR-JPG with
// --mimic-root. Fine-tuning prompts are training-split impressions; evaluation uses the test split, whose
// phantom reports are written from the held-out phrasing pool (never seen in pretraining or fine-tuning).
#pragma once

#include "paths.hpp"

#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/image_set.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/io/progress.hpp>

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl_mimic {

/// The data source of a run or an evaluation.
struct WorldOptions {
  std::string mimic_root;    // "" = phantom world
  std::string reports_root;  // MIMIC-CXR reports root ("" = mimic_root)
  uint64_t world_seed = 0;   // phantom world seed (the shipped anchor and rewards use 0)
  std::string tokenizer_dir = default_tokenizer_dir().string();  // CLIP tokenizer (impression token budget)
};

namespace detail {

inline cxrl::cxr::MimicOptions mimic_options(const WorldOptions& w, int resolution, std::size_t n_train, std::size_t n_test,
                                              std::size_t n_validate = 0) {
  cxrl::cxr::MimicOptions o;
  o.root = w.mimic_root;
  o.reports_root = w.reports_root;
  o.test_views = {"PA"};  // CXRL evaluates on PA views
  o.n_train = n_train;
  o.n_validate = n_validate;
  o.n_test = n_test;
  o.seed = w.world_seed;
  o.resolution = resolution;
  o.tokenizer_dir = w.tokenizer_dir;
  return o;
}

inline cxrl::cxr::PhantomDatasetOptions phantom_options(const WorldOptions& w, int resolution, std::size_t n_train,
                                                         std::size_t n_test, std::size_t n_validate = 500) {
  cxrl::cxr::PhantomDatasetOptions o;
  o.seed = w.world_seed;
  o.resolution = resolution;
  o.n_train = n_train;
  o.n_validate = n_validate;
  o.n_test = n_test;
  o.tokenizer_dir = w.tokenizer_dir;
  return o;
}
}  // namespace detail

/// Throws before any long work when --mimic-root does not look like MIMIC-CXR-JPG.
inline void check_world(const WorldOptions& w) {
  if (w.mimic_root.empty()) return;
  if (!std::filesystem::is_directory(w.mimic_root))
    throw std::invalid_argument("--mimic-root " + w.mimic_root + ": not a folder");
}

/// The first @p n impressions of a split (text only: nothing is rendered or decoded). Fine-tuning draws
/// its prompts from the training split; repeated reports are sampled as often as they occur.
inline std::vector<std::string> impressions(const WorldOptions& w, cxrl::data::Split split, std::size_t n) {
  namespace cd = cxrl::data;
  auto want = [&](cd::Split s) { return split == s ? n : std::size_t{2}; };
  std::vector<std::string> v;
  if (w.mimic_root.empty()) {
    cxrl::cxr::PhantomDataset d(detail::phantom_options(w, 64, want(cd::Split::train), want(cd::Split::test), want(cd::Split::validate)), split);
    for (std::size_t i = 0; i < d.size(); ++i) v.push_back(d.report(i).impression);
  } else {
    const auto idx = cxrl::cxr::build_mimic_index(detail::mimic_options(w, 64, want(cd::Split::train), want(cd::Split::test), want(cd::Split::validate)));
    for (const auto& r : idx.of(split)) v.push_back(r.impression);
  }
  if (v.empty())
    throw std::invalid_argument("no " + std::string(cd::split_name(split)) + " reports found" +
                                (w.mimic_root.empty() ? std::string() : " under " + w.mimic_root));
  return v;
}

/// The first @p n PA pairs of @p split (test, or validate for choosing hyper-parameters without touching the
/// test reports) at @p resolution (images rendered or decoded now): the paper evaluates on PA views of the test
/// split. Labels are the reports' own (1 / 0 / −1 / NaN, kObservations order).
inline cxrl::cxr::CxrImageSet eval_set(const WorldOptions& w, std::size_t n, int resolution, bool quiet,
                                       cxrl::data::Split split = cxrl::data::Split::test) {
  namespace cd = cxrl::data;
  if (split == cd::Split::train) throw std::invalid_argument("evaluate: --split must be validate or test (training reports are not held out)");
  const std::string name(cd::split_name(split));
  cxrl::cxr::CxrImageSet e;
  std::vector<torch::Tensor> imgs, labs;
  auto add = [&](const cxrl::cxr::Sample& s) {
    e.reports.push_back(s.prompt);
    imgs.push_back(s.image);
    auto l = torch::empty({cxrl::cxr::kNumObservations}, torch::kFloat32);
    for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) l[k] = cxrl::cxr::to_float(s.labels[static_cast<std::size_t>(k)]);
    labs.push_back(l);
  };
  cxrl::io::Progress bar("load PA " + name + " pairs", static_cast<long>(n), quiet);
  if (w.mimic_root.empty()) {
    // Views are drawn per study (35 % AP): 3n studies hold n PA views with overwhelming probability.
    const std::size_t studies = 3 * n + 16;
    cxrl::cxr::PhantomDataset d(detail::phantom_options(w, resolution, 2, studies, studies), split);
    for (std::size_t i = 0; i < d.size() && e.reports.size() < n; ++i)
      if (d.spec(i).view == cxrl::cxr::View::PA) {
        add(d.get(i));
        bar.update(static_cast<long>(e.reports.size()));
      }
  } else {
    auto mo = detail::mimic_options(w, resolution, 0, split == cd::Split::test ? n : 0, split == cd::Split::validate ? n : 0);
    mo.views = {"PA"};
    const auto idx = cxrl::cxr::build_mimic_index(mo);
    cxrl::cxr::MimicDataset d(idx, split);
    for (std::size_t i = 0; i < d.size(); ++i, bar.update(static_cast<long>(i))) add(d.get(i));
  }
  if (e.reports.empty()) throw std::invalid_argument("no PA " + name + " pairs found" + (w.mimic_root.empty() ? std::string() : " under " + w.mimic_root));
  e.images = torch::stack(imgs);
  e.labels = torch::stack(labs);
  return e;
}

}  // namespace cxrl_mimic
