// `main`: the README's main job. It currently runs the parts of the reference pipeline that exist:
// the phantom world's contact sheet, the data summary of its splits, and the report labeler checked
// against the report writer's ground truth. Fine-tuning, evaluation and the paper's tables join it when
// their subcommands land (see the open issue "examples/cxrl_mimic").
#pragma once

#include "cmd_data.hpp"
#include "cmd_phantoms.hpp"
#include "cmd_pretrain.hpp"

#include <cxrl/cxr/labeler.hpp>
#include <cxrl/data/phantom_dataset.hpp>
#include <cxrl/io/progress.hpp>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace cxrl_mimic {

struct MainOptions {
  std::string out = "report";
  std::size_t label_reports = 2000;
  std::uint64_t seed = 0;
  bool quiet = false;
};

inline void run_main(const MainOptions& o) {
  namespace fs = std::filesystem;
  namespace cx = cxrl::cxr;
  const fs::path out = o.out;
  fs::create_directories(out);

  PhantomsOptions ph;
  ph.out = (out / "phantoms.png").string();
  ph.size = 128;
  run_phantoms(ph);

  DataOptions d;
  d.phantom = true;
  d.seed = o.seed;
  d.tokenizer_dir = default_tokenizer_dir().string();
  const auto summary = phantom_summary(d);
  write_json(out / "data.json", summary);

  // Labeler vs. the report writer's ground truth on held-out phrasing (reports the model never trains on).
  cxrl::data::PhantomDatasetOptions po;
  po.seed = o.seed;
  po.n_test = o.label_reports;
  po.tokenizer_dir = d.tokenizer_dir;
  cxrl::data::PhantomDataset test(po, cxrl::data::Split::test);
  const auto& labeler = cx::default_labeler();
  std::array<std::size_t, cx::kNumObservations> agree{}, total{};
  cxrl::io::Progress bar("label round trip", static_cast<long>(test.size()), o.quiet);
  for (std::size_t i = 0; i < test.size(); ++i) {
    const auto r = test.report(i);
    const auto got = labeler.label(r.impression);  // the writer labels the impression
    for (int k = 0; k < cx::kNumObservations; ++k) {
      ++total[static_cast<std::size_t>(k)];
      agree[static_cast<std::size_t>(k)] += got[static_cast<std::size_t>(k)] == r.labels[static_cast<std::size_t>(k)];
    }
    bar.update(static_cast<long>(i + 1));
  }
  nlohmann::json lab = nlohmann::json::object();
  std::size_t a = 0, t = 0;
  for (int k = 0; k < cx::kNumObservations; ++k) {
    const auto ks = static_cast<std::size_t>(k);
    lab[std::string(cx::kObservations[ks])] = double(agree[ks]) / double(total[ks]);
    a += agree[ks];
    t += total[ks];
  }
  lab["overall"] = double(a) / double(t);
  write_json(out / "labeler_agreement.json", lab);

  std::ofstream md(out / "README.md");
  md << "# cxrl_mimic main job (phantom world)\n\n"
     << "- `phantoms.png`: contact sheet (each observation at two severities, devices, posture extremes)\n"
     << "- `data.json`: pairs per split, views, label counts per observation\n"
     << "- `labeler_agreement.json`: CheXpert-style labeler vs. the report writer's labels on " << test.size()
     << " held-out-phrasing reports: " << 100.0 * double(a) / double(t) << " % of (report, observation) pairs\n\n"
     << "Fine-tuning (CXRL and ablations) and the paper's tables are not part of this job yet.\n";
  std::cout << "main: wrote " << out.string() << " (labeler agreement " << 100.0 * double(a) / double(t) << " %)\n";
}

inline void add_main_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("main", "The README's main job on the built-in phantom world; writes a report folder");
  auto o = std::make_shared<MainOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "report folder");
  s->add("label_reports", o->label_reports, "held-out reports for the labeler round trip");
  s->add("seed", o->seed, "phantom world seed");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_main(*o);
  });
}

}  // namespace cxrl_mimic
