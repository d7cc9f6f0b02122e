// `evaluate`: the paper's tables for the anchor and any set of runs, on held-out test reports.
//   Table 1:  mean r_align, macro AUROC of the diagnostic classifier on generated images against the
//             reports' labels (observations with both classes), mean CXR-CLIP image–report similarity.
//   Table 2a: FID (diagnostic DenseNet features2) against real test images; MS-SSIM diversity (4
//             generations per report, mean of the 6 pairs; lower = more diverse).
//   Table 2b: FID of runs trained with a single reward and with all three.
//   Table 3:  per-observation AUROC.
// Runs with the same name (e.g. CXRL at seeds 0, 1, 2) form one row: mean ± std over seeds.
// Every model samples the same x_T and step noise per report (paired comparison).
#pragma once

#include "config.hpp"
#include "policy_setup.hpp"
#include "reward_models.hpp"
#include "settings_groups.hpp"
#include "world.hpp"

#include <cxrl/core/adapters_guard.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/metrics/auroc.hpp>
#include <cxrl/metrics/fid.hpp>
#include <cxrl/metrics/msssim.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace cxrl_mimic {

struct EvaluateOptions {
  std::vector<std::string> runs;  // run folders written by finetune
  std::string out = "report";
  AssetPaths assets;
  WorldOptions world;
  PolicySettings sampling;  // the anchor row's sampler (runs use their own steps/eta/guidance)
  int64_t n_eval = 128;       // held-out test reports (Table 1, FID, AUROC)
  int64_t n_diversity = 16;   // reports with 4 generations each (MS-SSIM)
  int64_t batch_size = 32;
  uint64_t eval_seed = 1234;
  int64_t sheet_reports = 8;  // columns of samples.png
  int64_t threads = 0;
  bool quiet = false;
};

/// One model's numbers.
struct ModelScores {
  double align = 0, auroc = 0, clip = 0, fid = 0, msssim = 0;
  std::vector<double> auroc_per_obs;  // kObservations order, NaN where undefined
};

/// Reward and feature models used for scoring (loaded once).
struct Scorers {
  cxrl::cxr::AlignReward align;
  cxrl::cxr::DiagReward diag;
  cxrl::cxr::ConsistReward consist;
  torch::Tensor real_features;  // FID reference: features2 of the real test images
};

namespace detail {

inline torch::Tensor densenet_features(cxrl::cxr::DiagReward& diag, const torch::Tensor& images01) {
  torch::NoGradGuard ng;
  auto& clf = diag.classifier();
  clf.model()->eval();
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images01.size(0); i += 64) {
    auto x = images01.narrow(0, i, std::min<int64_t>(64, images01.size(0) - i));
    out.push_back(clf.features2(cxrl::cxr::to_xrv_input(x.mean(1, true), clf.resolution())).to(torch::kFloat64));
  }
  return torch::cat(out);
}

/// Samples one image per prompt in batches; batch b uses generator seed + b, so every model sees the same
/// x_T and step noise for the same report.
template <class P>
torch::Tensor sample_images(P& policy, cxrl::core::DdimSampler& sampler, const std::vector<std::string>& prompts,
                            int64_t batch, uint64_t seed, cxrl::io::Progress& bar, long& done) {
  std::vector<torch::Tensor> out;
  for (std::size_t i = 0, b = 0; i < prompts.size(); i += static_cast<std::size_t>(batch), ++b) {
    const auto end = std::min(prompts.size(), i + static_cast<std::size_t>(batch));
    std::vector<std::string> chunk(prompts.begin() + static_cast<long>(i), prompts.begin() + static_cast<long>(end));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + b);
    out.push_back(sampler.sample(policy, chunk, gen).images);
    done += static_cast<long>(chunk.size());
    bar.update(done);
  }
  return torch::cat(out);
}

}  // namespace detail

/// Scores one model (the policy as it is: adapters on for a run, off for the anchor).
template <class P>
ModelScores score_model(P& policy, cxrl::core::DdimSampler& sampler, const EvalSet& test, Scorers& sc,
                        const EvaluateOptions& o, const std::string& label, torch::Tensor* sheet_images) {
  const auto n_div = std::min<int64_t>(o.n_diversity, static_cast<int64_t>(test.reports.size()));
  cxrl::io::Progress bar("evaluate " + label, static_cast<long>(test.reports.size() + static_cast<std::size_t>(4 * n_div)), o.quiet);
  long done = 0;
  ModelScores s;
  const auto images = detail::sample_images(policy, sampler, test.reports, o.batch_size, o.eval_seed, bar, done);
  if (sheet_images) *sheet_images = images.narrow(0, 0, std::min<int64_t>(o.sheet_reports, images.size(0)));

  s.align = sc.align.score(images, test.reports).mean().template item<double>();
  s.clip = sc.consist.score(images, test.reports).mean().template item<double>();
  const auto det = sc.diag.evaluate(images, test.reports);
  // AUROC over the observations the classifier maps (predicted is NaN for the others).
  std::vector<int64_t> cols;
  for (int64_t k = 0; k < cxrl::cxr::kNumObservations; ++k)
    if (!std::isnan(det.predicted[0][k].template item<float>())) cols.push_back(k);
  const auto idx = torch::tensor(cols, torch::kLong);
  const auto m = cxrl::metrics::macro_auroc(test.labels.index_select(1, idx), det.predicted.index_select(1, idx));
  s.auroc = m.mean;
  s.auroc_per_obs.assign(cxrl::cxr::kNumObservations, std::nan(""));
  for (std::size_t j = 0; j < cols.size(); ++j) s.auroc_per_obs[static_cast<std::size_t>(cols[j])] = m.per_task[j];
  s.fid = cxrl::metrics::fid_from_features(detail::densenet_features(sc.diag, images), sc.real_features);

  // Diversity: 4 generations of each of the first n_div reports, MS-SSIM over the 6 pairs.
  std::vector<std::string> rep;
  for (int64_t i = 0; i < n_div; ++i)
    for (int k = 0; k < 4; ++k) rep.push_back(test.reports[static_cast<std::size_t>(i)]);
  const auto div = detail::sample_images(policy, sampler, rep, o.batch_size, o.eval_seed + 1000003, bar, done);
  cxrl::metrics::SsimOptions so;
  so.data_range = 1.0;
  so.size_average = false;
  std::vector<torch::Tensor> a, b;
  for (int64_t i = 0; i < n_div; ++i)
    for (int p = 0; p < 4; ++p)
      for (int q = p + 1; q < 4; ++q) {
        a.push_back(div[4 * i + p]);
        b.push_back(div[4 * i + q]);
      }
  s.msssim = cxrl::metrics::ms_ssim_fit(torch::stack(a).to(torch::kFloat64), torch::stack(b).to(torch::kFloat64), so).mean().template item<double>();
  return s;
}

namespace detail {

struct RowGroup {
  std::string name;
  nlohmann::json config;  // of the first run
  std::vector<std::string> runs;
  std::vector<ModelScores> scores;
};

inline std::pair<double, double> mean_std(const std::vector<double>& v) {
  double m = 0;
  int n = 0;
  for (double x : v)
    if (!std::isnan(x)) m += x, ++n;
  if (n == 0) return {std::nan(""), std::nan("")};
  m /= n;
  double q = 0;
  for (double x : v)
    if (!std::isnan(x)) q += (x - m) * (x - m);
  return {m, n > 1 ? std::sqrt(q / (n - 1)) : 0.0};
}

inline std::string cell(const std::vector<double>& v, int prec = 3) {
  const auto [m, s] = mean_std(v);
  if (std::isnan(m)) return "–";
  char buf[64];
  if (v.size() > 1) std::snprintf(buf, sizeof buf, "%.*f ± %.*f", prec, m, prec, s);
  else std::snprintf(buf, sizeof buf, "%.*f", prec, m);
  return buf;
}

template <class F>
std::vector<double> collect(const RowGroup& g, F f) {
  std::vector<double> v;
  for (const auto& s : g.scores) v.push_back(f(s));
  return v;
}

inline nlohmann::json stat_json(const std::vector<double>& v) {
  const auto [m, s] = mean_std(v);
  auto num = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  nlohmann::json per = nlohmann::json::array();
  for (double x : v) per.push_back(num(x));
  return {{"mean", num(m)}, {"std", num(s)}, {"per_seed", per}};
}

inline bool all_rewards(const RowGroup& g) {
  return g.name == "Anchor" || g.config.value("rewards", std::string()) == "align,diag,consist";
}

}  // namespace detail

/// Evaluates the anchor and every run; writes tables.md, tables.json and samples.png into o.out.
inline nlohmann::json run_evaluate(const EvaluateOptions& o) {
  namespace fs = std::filesystem;
  check_assets(o.assets);
  check_world(o.world);
  if (o.n_eval < 2) throw std::invalid_argument("evaluate: --n_eval must be >= 2");
  if (o.n_diversity < 1) throw std::invalid_argument("evaluate: --n_diversity must be >= 1");
  if (o.batch_size < 1) throw std::invalid_argument("evaluate: --batch_size must be >= 1");
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));

  // Rows: the anchor, then runs grouped by name in the order given.
  std::vector<detail::RowGroup> groups{{"Anchor", nlohmann::json::object(), {}, {}}};
  for (const auto& r : o.runs) {
    const fs::path cfg = fs::path(r) / "config.json", ad = fs::path(r) / "adapters.safetensors";
    if (!fs::exists(cfg)) throw std::invalid_argument("evaluate: " + r + " is not a finetune run folder (no config.json)");
    if (!fs::exists(ad)) throw std::invalid_argument("evaluate: " + ad.string() + " missing (the run has not finished; resume it with finetune --resume)");
    std::ifstream in(cfg);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      PolicySettings::from_run_config(j);
    } catch (const std::exception& e) {
      throw std::invalid_argument(cfg.string() + ": not a finetune config (" + e.what() + ")");
    }
    const auto name = j.value("name", r);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.name == name; });
    if (it == groups.end()) groups.push_back({name, j, {r}, {}});
    else it->runs.push_back(r);
  }

  auto sd0 = cxrl::diffusion::StableDiffusion::from_pretrained(o.assets.roentgen);
  const int resolution = static_cast<int>(sd0.sample_shape().at(1));
  const auto test = eval_set(o.world, static_cast<std::size_t>(o.n_eval), resolution, o.quiet);
  Scorers sc{load_align_reward(o.assets), load_diag_reward(o.assets), load_consist_reward(o.assets), {}};
  sc.real_features = detail::densenet_features(sc.diag, test.images);

  std::vector<torch::Tensor> sheet_rows{test.images.narrow(0, 0, std::min<int64_t>(o.sheet_reports, test.images.size(0)))};
  std::vector<std::string> sheet_labels{"real test images"};
  for (auto& g : groups) {
    if (g.name == "Anchor") {
      auto policy = make_policy(sd0, o.sampling);
      auto sampler = make_sampler(sd0, o.sampling);
      policy.set_adapters_enabled(false);  // LoRA skipped, no ACE: exactly the frozen anchor
      torch::Tensor sheet;
      g.scores.push_back(score_model(policy, sampler, test, sc, o, g.name, &sheet));
      sheet_rows.push_back(sheet);
      sheet_labels.push_back(g.name);
      continue;
    }
    for (std::size_t i = 0; i < g.runs.size(); ++i) {
      std::ifstream in(fs::path(g.runs[i]) / "config.json");
      const auto j = nlohmann::json::parse(in);
      const auto ps = PolicySettings::from_run_config(j);
      // A fresh anchor per run: LoRA is injected into the UNet in place.
      auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(j.value("roentgen", o.assets.roentgen));
      auto policy = make_policy(sd, ps);
      policy.load_adapters(fs::path(g.runs[i]) / "adapters.safetensors");
      auto sampler = make_sampler(sd, ps);
      torch::Tensor sheet;
      g.scores.push_back(score_model(policy, sampler, test, sc, o, g.name + " [" + g.runs[i] + "]", i == 0 ? &sheet : nullptr));
      if (i == 0) {
        sheet_rows.push_back(sheet);
        sheet_labels.push_back(g.name);
      }
    }
  }

  // Tables.
  using detail::cell;
  using detail::collect;
  const auto div_scales = cxrl::metrics::ms_ssim_details(test.images.narrow(0, 0, 1).to(torch::kFloat64),
                                                         test.images.narrow(0, 0, 1).to(torch::kFloat64),
                                                         [] { cxrl::metrics::SsimOptions s; s.data_range = 1.0; return s; }(),
                                                         cxrl::metrics::MsSsimScales::fit)
                              .weights.size(0);
  std::ostringstream md;
  md << "# CXRL evaluation\n\n"
     << test.reports.size() << " held-out test reports (" << (o.world.mimic_root.empty() ? "phantom world, held-out phrasing pool" : "MIMIC-CXR-JPG test split, PA")
     << "), " << resolution << " px. Every model samples the same x_T and step noise per report. "
     << "Cells are mean ± std (sample std) over the runs of a row; `seeds` says how many.\n\n";
  md << "## Table 1: alignment, diagnostic agreement, report consistency\n\n"
     << "| Model | seeds | r_align ↑ | AUROC ↑ | CXR-CLIP sim ↑ |\n|---|---|---|---|---|\n";
  for (const auto& g : groups)
    if (detail::all_rewards(g))
      md << "| " << g.name << " | " << std::max<std::size_t>(1, g.runs.size()) << " | "
         << cell(collect(g, [](const auto& s) { return s.align; }), 4) << " | "
         << cell(collect(g, [](const auto& s) { return s.auroc; })) << " | "
         << cell(collect(g, [](const auto& s) { return s.clip; })) << " |\n";
  md << "\nAUROC: macro mean over the observations the classifier maps and whose labels have both classes in the "
     << "test reports; uncertain labels are left out, unmentioned findings count as absent.\n\n";
  md << "## Table 2a: fidelity and diversity\n\n| Model | seeds | FID ↓ | MS-SSIM ↓ |\n|---|---|---|---|\n";
  for (const auto& g : groups)
    if (detail::all_rewards(g))
      md << "| " << g.name << " | " << std::max<std::size_t>(1, g.runs.size()) << " | "
         << cell(collect(g, [](const auto& s) { return s.fid; }), 2) << " | "
         << cell(collect(g, [](const auto& s) { return s.msssim; })) << " |\n";
  md << "\nFID: Fréchet distance of the diagnostic DenseNet's `features2` between generated and real test images ("
     << test.reports.size() << " each). MS-SSIM: mean over 6 pairs of 4 generations for " << std::min<int64_t>(o.n_diversity, o.n_eval)
     << " reports; at " << resolution << " px only " << div_scales
     << " of the 5 scales fit the 11-px window, so those scales are used with their weights renormalised to sum to 1.\n\n";
  md << "## Table 2b: FID by training reward\n\n| Rewards | seeds | FID ↓ |\n|---|---|---|\n";
  for (const auto& g : groups) {
    const bool plain = g.name == "Anchor" || (!g.config.value("no_ace", false) && !g.config.value("no_rlcf", false));
    if (!plain) continue;
    const std::string label = g.name == "Anchor" ? "none (anchor)" : g.config.value("rewards", std::string());
    md << "| " << label << " | " << std::max<std::size_t>(1, g.runs.size()) << " | "
       << cell(collect(g, [](const auto& s) { return s.fid; }), 2) << " |\n";
  }
  md << "\n## Table 3: AUROC per observation\n\n| Model |";
  std::vector<int> obs;
  for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) {
    bool any = false;
    for (const auto& g : groups)
      for (const auto& s : g.scores) any = any || !std::isnan(s.auroc_per_obs[static_cast<std::size_t>(k)]);
    if (any) obs.push_back(k);
  }
  for (int k : obs) md << " " << cxrl::cxr::kObservations[static_cast<std::size_t>(k)] << " |";
  md << "\n|---|";
  for (std::size_t i = 0; i < obs.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& g : groups) {
    if (!detail::all_rewards(g)) continue;
    md << "| " << g.name << " |";
    for (int k : obs) md << " " << cell(collect(g, [k](const auto& s) { return s.auroc_per_obs[static_cast<std::size_t>(k)]; })) << " |";
    md << "\n";
  }
  md << "\n`samples.png`: rows = " ;
  for (std::size_t i = 0; i < sheet_labels.size(); ++i) md << (i ? ", " : "") << sheet_labels[i];
  md << "; columns = the first " << sheet_rows.front().size(0) << " test reports.\n";

  nlohmann::json js{{"n_eval", test.reports.size()}, {"resolution", resolution}, {"msssim_scales", div_scales},
                    {"source", std::string(o.world.mimic_root.empty() ? "phantom" : "mimic")}, {"rows", nlohmann::json::array()}};
  for (const auto& g : groups) {
    nlohmann::json r{{"name", g.name}, {"runs", g.runs}, {"seeds", std::max<std::size_t>(1, g.runs.size())},
                     {"rewards", g.name == "Anchor" ? "" : g.config.value("rewards", std::string())},
                     {"r_align", detail::stat_json(collect(g, [](const auto& s) { return s.align; }))},
                     {"auroc", detail::stat_json(collect(g, [](const auto& s) { return s.auroc; }))},
                     {"clip_similarity", detail::stat_json(collect(g, [](const auto& s) { return s.clip; }))},
                     {"fid", detail::stat_json(collect(g, [](const auto& s) { return s.fid; }))},
                     {"msssim", detail::stat_json(collect(g, [](const auto& s) { return s.msssim; }))}};
    nlohmann::json per = nlohmann::json::object();
    for (int k : obs)
      per[std::string(cxrl::cxr::kObservations[static_cast<std::size_t>(k)])] =
          detail::stat_json(collect(g, [k](const auto& s) { return s.auroc_per_obs[static_cast<std::size_t>(k)]; }));
    r["auroc_per_observation"] = per;
    js["rows"].push_back(r);
  }
  fs::create_directories(o.out);
  {
    std::ofstream f(fs::path(o.out) / "tables.md");
    f << md.str();
  }
  write_json(fs::path(o.out) / "tables.json", js);
  std::vector<torch::Tensor> tiles;
  for (const auto& row : sheet_rows)
    for (int64_t i = 0; i < row.size(0); ++i) tiles.push_back(row[i]);
  cxrl::io::write_png(fs::path(o.out) / "samples.png",
                      cxrl::io::make_grid(tiles, static_cast<int>(sheet_rows.front().size(0)), 2, 1.0f));
  if (!o.quiet) std::cout << md.str();
  return js;
}

inline void add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "The paper's tables (1, 2a, 2b, 3) for the anchor and finetune runs");
  auto o = std::make_shared<EvaluateOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("runs", o->runs, "finetune run folders (runs with the same name are seeds of one row)");
  s->add("out", o->out, "folder for tables.md, tables.json, samples.png");
  add_asset_settings(*s, o->assets);
  add_world_settings(*s, o->world);
  s->add("steps", o->sampling.steps, "DDIM steps of the anchor row (runs use their own)");
  s->add("guidance", o->sampling.guidance, "CFG scale of the anchor row (runs use their own)");
  s->add("n_eval", o->n_eval, "held-out test reports");
  s->add("n_diversity", o->n_diversity, "reports with 4 generations each for MS-SSIM");
  s->add("batch_size", o->batch_size, "images per sampling call");
  s->add("eval_seed", o->eval_seed, "seed of the evaluation noise (shared by every model)");
  s->add("sheet_reports", o->sheet_reports, "columns of samples.png");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_evaluate(*o);
  });
}

}  // namespace cxrl_mimic
