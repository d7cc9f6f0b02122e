// `cxrl_mimic data`: index MIMIC-CXR-JPG (or the phantom world) and print one JSON object: pairs per
// split, views, positive/negative/uncertain counts per observation, skipped items by reason and the
// first few with file:line. The skip summary also goes to stderr.
#pragma once

#include <cxrl/cxr/canonical.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace cxrl_mimic {

struct DataOptions {
  std::string mimic_root, reports_root, tokenizer_dir;
  bool phantom = false;
  std::vector<std::string> views{"PA", "AP"}, test_views;
  std::size_t n_train = 5000, n_validate = 0, n_test = 1000;
  std::uint64_t seed = 0;
  std::size_t first = 10;
  std::string canonical;  // write the canonical CXR (mean of 500 random train images) here
  int resolution = 64;
  std::size_t canonical_n = 500;
};

inline nlohmann::json phantom_summary(const DataOptions& o) {
  namespace cd = cxrl::data;
  cxrl::cxr::PhantomDatasetOptions po;
  po.seed = o.seed;
  po.n_train = o.n_train;
  po.n_validate = o.n_validate;
  po.n_test = o.n_test;
  po.tokenizer_dir = o.tokenizer_dir;
  po.resolution = o.resolution;
  nlohmann::json j;
  j["source"] = "phantom";
  if (!o.canonical.empty()) {
    const auto c = cxrl::cxr::canonical_cxr(cxrl::cxr::PhantomDataset(po, cd::Split::train), o.canonical_n, o.seed);
    cxrl::io::write_png(o.canonical, c);
    j["canonical"] = o.canonical;
  }
  for (auto s : {cd::Split::train, cd::Split::validate, cd::Split::test}) {
    cxrl::cxr::PhantomDataset d(po, s);
    std::map<std::string, std::size_t> views;
    std::array<std::array<std::size_t, 4>, cxrl::cxr::kNumObservations> counts{};
    for (std::size_t i = 0; i < d.size(); ++i) {  // specs and reports only: no rendering needed
      const auto spec = d.spec(i);
      const auto rep = d.report(i);
      ++views[cxrl::cxr::view_name(spec.view)];
      for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) {
        const auto l = rep.labels[static_cast<std::size_t>(k)];
        ++counts[static_cast<std::size_t>(k)][l == cxrl::cxr::Label::positive ? 0 : l == cxrl::cxr::Label::negative ? 1 : l == cxrl::cxr::Label::uncertain ? 2 : 3];
      }
    }
    nlohmann::json js;
    js["pairs"] = d.size();
    js["views"] = views;
    for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) {
      const auto& c = counts[static_cast<std::size_t>(k)];
      js["labels"][std::string(cxrl::cxr::kObservations[static_cast<std::size_t>(k)])] = {
          {"positive", c[0]}, {"negative", c[1]}, {"uncertain", c[2]}, {"blank", c[3]}};
    }
    j["splits"][std::string(cd::split_name(s))] = js;
  }
  j["skipped"] = {{"total", 0}, {"by_reason", nlohmann::json::object()}, {"first", nlohmann::json::array()}};
  return j;
}

inline void run_data(const DataOptions& o) {
  if (o.phantom == !o.mimic_root.empty())
    throw std::invalid_argument("data: give exactly one of --mimic-root DIR or --phantom");
  nlohmann::json j;
  if (o.phantom) {
    j = phantom_summary(o);
  } else {
    cxrl::cxr::MimicOptions mo;
    mo.root = o.mimic_root;
    mo.reports_root = o.reports_root;
    mo.views = o.views;
    mo.test_views = o.test_views;
    mo.n_train = o.n_train;
    mo.n_validate = o.n_validate;
    mo.n_test = o.n_test;
    mo.seed = o.seed;
    mo.tokenizer_dir = o.tokenizer_dir;
    mo.resolution = o.resolution;
    const auto idx = cxrl::cxr::build_mimic_index(mo);
    j = idx.summary(o.first);
    if (!o.canonical.empty()) {
      const cxrl::cxr::MimicDataset train(idx, cxrl::data::Split::train);
      cxrl::io::write_png(o.canonical, cxrl::cxr::canonical_cxr(train, o.canonical_n, o.seed));
      j["canonical"] = o.canonical;
    }
    j["source"] = "mimic-cxr-jpg";
    j["root"] = o.mimic_root;
    std::cerr << "data: " << idx.issues.summary() << "\n";
  }
  std::cout << j.dump() << "\n";
}

inline void add_data_command(CLI::App& app) {
  auto o = std::make_shared<DataOptions>();
  auto* c = app.add_subcommand("data", "Index MIMIC-CXR-JPG (or the phantom world) and print a JSON summary");
  c->add_option("--mimic-root", o->mimic_root, "MIMIC-CXR-JPG root (tables and files/)");
  c->add_option("--reports-root", o->reports_root, "MIMIC-CXR reports root (default: the JPG root)");
  c->add_flag("--phantom", o->phantom, "summarise the phantom world instead");
  c->add_option("--views", o->views, "ViewPosition values kept")->capture_default_str();
  c->add_option("--test-views", o->test_views, "views of the test split (default: --views; the paper: PA)");
  c->add_option("--n-train", o->n_train, "train pairs sampled")->capture_default_str();
  c->add_option("--n-validate", o->n_validate, "validate pairs sampled")->capture_default_str();
  c->add_option("--n-test", o->n_test, "test pairs sampled")->capture_default_str();
  c->add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer_dir, "CLIP tokenizer folder (vocab.json, merges.txt) for the 74-token filter");
  c->add_option("--first", o->first, "skipped items listed in full")->capture_default_str();
  c->add_option("--canonical", o->canonical, "write the canonical CXR (mean of --canonical-n random train images) as PNG");
  c->add_option("--canonical-n", o->canonical_n, "images averaged for --canonical")->capture_default_str();
  c->add_option("--resolution", o->resolution, "image side for --canonical")->capture_default_str()->check(CLI::Range(8, 4096));
  c->callback([o] { run_data(*o); });
}

}  // namespace cxrl_mimic
