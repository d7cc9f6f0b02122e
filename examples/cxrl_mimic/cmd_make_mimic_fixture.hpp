// `cxrl_mimic make-mimic-fixture`: write a small MIMIC-CXR-JPG-shaped tree made from phantoms.
#pragma once

#include <cxrl/cxr/mimic_fixture.hpp>

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>

namespace cxrl_mimic {

struct MakeMimicFixtureOptions {
  std::string out;
  std::size_t studies = 24;
  std::uint64_t seed = 0;
  int resolution = 128;
  bool faults = false;
  std::string tokenizer_dir;
};

inline void run_make_mimic_fixture(const MakeMimicFixtureOptions& o) {
  cxrl::cxr::MimicFixtureOptions fo;
  fo.studies = o.studies;
  fo.seed = o.seed;
  fo.resolution = o.resolution;
  fo.inject_faults = o.faults;
  fo.tokenizer_dir = o.tokenizer_dir;
  const auto fx = cxrl::cxr::make_mimic_fixture(o.out, fo);
  nlohmann::json j;
  j["root"] = fx.root.string();
  j["studies"] = fx.specs.size();
  j["expected_pairs"] = fx.expected.size();
  std::map<std::string, std::size_t> per;
  for (const auto& r : fx.expected) ++per[std::string(cxrl::data::split_name(r.split))];
  j["expected_pairs_per_split"] = per;
  j["expected_issues"] = fx.expected_issues;
  std::cout << j.dump() << "\n";
}

inline void add_make_mimic_fixture_command(CLI::App& app) {
  auto o = std::make_shared<MakeMimicFixtureOptions>();
  auto* c = app.add_subcommand("make-mimic-fixture",
                               "Write a small MIMIC-CXR-JPG-shaped tree from phantoms (JPEGs, gzipped tables, reports)");
  c->add_option("--out", o->out, "output folder")->required();
  c->add_option("--studies", o->studies, "number of studies")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--seed", o->seed, "phantom world seed")->capture_default_str();
  c->add_option("--resolution", o->resolution, "phantom side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  c->add_flag("--faults", o->faults, "inject faults (bad rows, missing files, odd headers, CRLF, plain CSV)");
  c->add_option("--tokenizer", o->tokenizer_dir, "CLIP tokenizer folder (vocab.json, merges.txt) for the 74-token budget");
  c->callback([o] { run_make_mimic_fixture(*o); });
}

}  // namespace cxrl_mimic
