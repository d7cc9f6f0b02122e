// `evaluate`: the paper's tables for the anchor and any set of runs, on held-out PA test reports, scored by the
// judges (models trained apart from the rewards) with the reward models' own scores in separate columns, and every
// row's difference to the anchor as a paired bootstrap 95 % interval over reports (and seeds). The protocol is
// library code (cxr/evaluation.hpp, eval/bootstrap.hpp, eval/table.hpp); this command samples and composes.
//   Table 1:  posture (judge r_align, mirror-symmetry tilt and offset), diagnosis (judge AUROC, judge r_diag rule),
//             consistency (judge CXR-CLIP similarity); rewards: r_align, r_diag, r_consist.
//   Table 2a: FID (judge DenseNet features2 against the real PA test images) and MS-SSIM diversity.
//   Table 2b: FID of runs trained with a single reward and with all three.
//   Table 3:  judge AUROC per observation.
//   Table 4:  per-report agreement (correlation) of each reward model with its judge, on every model's images and
//             on the real test images, whose scores are kept in <out>/scores/real.safetensors.
// Runs with the same name (e.g. CXRL at seeds 0, 1, 2) form one row. Every model samples the same x_T and step
// noise per report. Per-model scores are cached in <out>/scores/ (keyed by model and settings), so a rerun, or a
// second evaluation sharing the anchor, does not sample again; --score_only fills the cache for one run (the main
// job scores models in parallel child processes).
#pragma once

#include "app.hpp"
#include "reward_models.hpp"
#include "settings_groups.hpp"
#include "world.hpp"

#include <cxrl/cxr/evaluation.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/reward_set.hpp>
#include <cxrl/eval/table.hpp>
#include <cxrl/io/figure.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace cxrl_mimic {

struct EvaluateOptions {
  std::vector<std::string> runs;  // run folders written by finetune
  std::string out = "report";
  AssetPaths assets;
  WorldOptions world;
  PolicySettings sampling;       // the anchor row's sampler (runs use their own steps/eta/guidance)
  int64_t n_eval = 500;          // held-out PA test reports (the paper: 1,000)
  std::string split = "test";    // a cxrl::data::Split name: test, or validate to choose settings without the test reports
  int64_t n_diversity = 100;     // reports with `generations` images each (MS-SSIM)
  int64_t generations = 4;
  int64_t batch_size = 32;
  uint64_t eval_seed = 1234;
  int64_t replicates = 1000;     // bootstrap replicates
  int64_t sheet_reports = 6;     // columns of samples.png
  int64_t threads = 0;
  bool score_only = false;       // fill the score cache for --runs (and the anchor when no run is given); no tables
  bool quiet = false;
};

namespace detail {

/// Samples one image per prompt in batches; batch b uses generator seed + b, so every model sees the same
/// x_T and step noise for the same report.
template <class P>
torch::Tensor sample_images(P& policy, cxrl::core::DdimSampler& sampler, const std::vector<std::string>& prompts, int64_t batch,
                            uint64_t seed, cxrl::io::Progress& bar, long& done) {
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

/// One model to score: the anchor, or one run.
struct ModelEntry {
  std::string row;      // row name ("Anchor", or the run's name)
  std::string run;      // run folder ("" for the anchor)
  nlohmann::json config = nlohmann::json::object();  // the run's config.json
};

inline std::string cache_file_name(const ModelEntry& m) {
  std::string s = m.run.empty() ? "anchor" : std::filesystem::path(m.run).filename().string() + "_" +
                                                  std::to_string(std::hash<std::string>{}(std::filesystem::absolute(m.run).string()) % 100000);
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  return s + ".safetensors";
}

/// What the cached scores depend on: the model (anchor folder, adapters file) and the evaluation settings.
inline std::string cache_key(const EvaluateOptions& o, const ModelEntry& m) {
  nlohmann::json k{{"n_eval", o.n_eval}, {"n_diversity", o.n_diversity}, {"generations", o.generations}, {"batch_size", o.batch_size},
                   {"eval_seed", o.eval_seed}, {"mimic_root", o.world.mimic_root}, {"world_seed", o.world.world_seed},
                   {"split", o.split}, {"judges", std::filesystem::absolute(o.assets.judges).string()},
                   {"rewards", {o.assets.posture_file().string(), o.assets.densenet_file().string(), o.assets.clip_file().string()}}};
  if (m.run.empty()) {
    k["anchor"] = {std::filesystem::absolute(o.assets.roentgen).string(), o.sampling.steps, o.sampling.guidance, o.sampling.eta};
  } else {
    const auto ad = std::filesystem::path(m.run) / "adapters.safetensors";
    k["run"] = {std::filesystem::absolute(m.run).string(), std::filesystem::file_size(ad),
                std::filesystem::last_write_time(ad).time_since_epoch().count()};
  }
  return k.dump();
}

/// The models: the anchor, then runs grouped by name in the order given.
inline std::vector<ModelEntry> model_entries(const EvaluateOptions& o) {
  namespace fs = std::filesystem;
  std::vector<ModelEntry> v{{"Anchor", "", nlohmann::json::object()}};
  for (const auto& r : o.runs) {
    const fs::path cfg = fs::path(r) / "config.json", ad = fs::path(r) / "adapters.safetensors";
    if (!fs::exists(cfg)) throw std::invalid_argument("evaluate: " + r + " is not a finetune run folder (no config.json)");
    if (!fs::exists(ad)) throw std::invalid_argument("evaluate: " + ad.string() + " missing (the run has not finished; resume it with finetune --resume)");
    std::ifstream in(cfg);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      PolicySettings::from_run_config(j);
      cxrl::cxr::CxrRewardSet::parse(j.at("rewards").get<std::string>(), cfg.string() + ": key 'rewards'");
    } catch (const std::exception& e) {
      throw std::invalid_argument(cfg.string() + ": not a finetune config (" + e.what() + ")");
    }
    v.push_back({j.value("name", r), r, j});
  }
  return v;
}

}  // namespace detail

/// Scores of every model (cached), in model_entries() order; the first sheet_reports images of each in @p sheets.
inline std::vector<cxrl::cxr::ReportScores> score_models(const EvaluateOptions& o, const std::vector<detail::ModelEntry>& models,
                                                         const cxrl::cxr::CxrImageSet& test, std::vector<torch::Tensor>& sheets) {
  namespace fs = std::filesystem;
  const fs::path cache = fs::path(o.out) / "scores";
  fs::create_directories(cache);
  std::optional<cxrl::cxr::Judges> judges;
  std::optional<Align> align;
  std::optional<Diag> diag;
  std::optional<Consist> consist;
  std::vector<cxrl::cxr::ReportScores> out;
  const auto n_div = std::min<int64_t>(o.n_diversity, static_cast<int64_t>(test.reports.size()));
  std::vector<std::string> rep;
  for (int64_t i = 0; i < n_div; ++i)
    for (int64_t k = 0; k < o.generations; ++k) rep.push_back(test.reports[static_cast<std::size_t>(i)]);
  for (const auto& m : models) {
    const auto file = cache / detail::cache_file_name(m);
    const auto key = detail::cache_key(o, m);
    if (fs::exists(file)) {
      try {
        cxrl::io::SafeTensorsFile f(file);
        if (f.metadata().count("key") && f.metadata().at("key") == key) {
          auto map = cxrl::io::load_safetensors(file);
          sheets.push_back(map.at("sheet"));
          out.push_back(cxrl::cxr::ReportScores::from_map(map, file.string()));
          if (!o.quiet) std::cerr << "evaluate: " << m.row << (m.run.empty() ? "" : " [" + m.run + "]") << ": cached scores " << file.string() << "\n";
          continue;
        }
      } catch (const std::exception& e) {
        std::cerr << "evaluate: ignoring unreadable score cache " << file.string() << " (" << e.what() << ")\n";
      }
    }
    if (!judges) {
      judges = cxrl::cxr::Judges::load(o.assets.judges, o.assets.vocab);
      align = load_align_reward(o.assets);
      diag = load_diag_reward(o.assets);
      consist = load_consist_reward(o.assets);
    }
    const auto ps = m.run.empty() ? o.sampling : PolicySettings::from_run_config(m.config);
    // A fresh model per row: LoRA is injected into the UNet in place.
    auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(m.run.empty() ? o.assets.roentgen : m.config.value("roentgen", o.assets.roentgen));
    auto policy = make_policy(sd, ps);
    if (m.run.empty()) policy.set_adapters_enabled(false);  // LoRA skipped, no ACE: exactly the frozen anchor
    else policy.load_adapters(fs::path(m.run) / "adapters.safetensors");
    auto sampler = make_sampler(sd, ps);
    cxrl::io::Progress bar("evaluate " + m.row + (m.run.empty() ? "" : " [" + fs::path(m.run).filename().string() + "]"),
                           static_cast<long>(test.reports.size() + rep.size()), o.quiet);
    long done = 0;
    const auto images = detail::sample_images(policy, sampler, test.reports, o.batch_size, o.eval_seed, bar, done);
    auto s = cxrl::cxr::score_report_images(*judges, *align, *diag, *consist, images, test.reports);
    const auto div = detail::sample_images(policy, sampler, rep, o.batch_size, o.eval_seed + 1000003, bar, done);
    s.diversity = cxrl::cxr::generation_diversity(div, o.generations);
    const auto sheet = images.narrow(0, 0, std::min<int64_t>(o.sheet_reports, images.size(0))).contiguous();
    auto map = s.to_map();
    map["sheet"] = sheet;
    cxrl::io::save_safetensors(file, map, {{"key", key}, {"row", m.row}, {"run", m.run}});
    sheets.push_back(sheet);
    out.push_back(std::move(s));
  }
  return out;
}

/// Evaluates the anchor and every run; writes tables.md, tables.json and samples.png into o.out.
inline nlohmann::json run_evaluate(const EvaluateOptions& o) {
  namespace fs = std::filesystem;
  namespace cx = cxrl::cxr;
  namespace ev = cxrl::eval;
  check_assets(o.assets);
  check_world(o.world);
  if (!fs::exists(fs::path(o.assets.judges) / "xrv_densenet.safetensors"))
    throw std::invalid_argument("judges not found in " + o.assets.judges + " (pass --judges DIR, or run `cxrl_mimic train-judges`)");
  if (o.n_eval < 2) throw std::invalid_argument("evaluate: --n_eval must be >= 2");
  const auto split = cxrl::data::parse_split(o.split);
  if (o.n_diversity < 2 || o.generations < 2) throw std::invalid_argument("evaluate: --n_diversity and --generations must be >= 2");
  if (o.batch_size < 1) throw std::invalid_argument("evaluate: --batch_size must be >= 1");
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));

  auto models = detail::model_entries(o);
  if (o.score_only && !o.runs.empty()) models.erase(models.begin());  // just the runs; the anchor is scored once elsewhere
  auto sd0 = cxrl::diffusion::StableDiffusion::from_pretrained(o.assets.roentgen);
  // Test images are loaded at the size the model decodes to (a latent model's sample_size is its latent size).
  const int resolution = static_cast<int>(sd0.image_shape().at(1));
  const auto test = eval_set(o.world, static_cast<std::size_t>(o.n_eval), resolution, o.quiet, split);
  const auto N = test.size();
  std::vector<torch::Tensor> sheets;
  const auto scores = score_models(o, models, test, sheets);
  if (o.score_only) return nlohmann::json::object();

  // The real PA test images through the judges and the rewards: FID's reference set, and a reference row that shows
  // what the scorers give real radiographs of the same reports.
  cx::ReportScores real;
  {
    auto judges = cx::Judges::load(o.assets.judges, o.assets.vocab);
    auto align = load_align_reward(o.assets);
    auto diag = load_diag_reward(o.assets);
    auto consist = load_consist_reward(o.assets);
    real = cx::score_report_images(judges, align, diag, consist, test.images, test.reports);
    real.diversity = torch::zeros({0});
    cxrl::io::save_safetensors(fs::path(o.out) / "scores" / "real.safetensors", real.to_map(), {{"row", "real"}});
  }
  const torch::Tensor real_features = real.features;
  const auto targets = cx::auroc_targets(test.labels);

  // Row groups: the anchor, then runs of the same name.
  struct Group {
    std::string name;
    nlohmann::json config;
    std::vector<std::size_t> members;  // indices into models / scores
  };
  std::vector<Group> groups;
  for (std::size_t i = 0; i < models.size(); ++i) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.name == models[i].row; });
    if (it == groups.end()) groups.push_back({models[i].row, models[i].config, {i}});
    else it->members.push_back(i);
  }
  ev::BootstrapOptions bo;
  bo.replicates = o.replicates;
  bo.seed = o.eval_seed;
  using StatFn = std::function<ev::Statistic(const cx::ReportScores&)>;
  // A metric: how to turn one model's scores into a statistic over report indices, and how many items it has.
  struct Metric {
    ev::MetricSpec spec;
    StatFn stat;
    int64_t items;
  };
  auto mean_metric = [&](ev::MetricSpec spec, std::function<std::vector<double>(const cx::ReportScores&)> values) {
    return Metric{std::move(spec), [values](const cx::ReportScores& s) { return ev::mean_of(values(s)); }, N};
  };
  auto deg = [](const cx::ReportScores& s) { return cx::values_of(s.midline.select(1, 0).abs() * (180.0 / M_PI)); };
  auto off = [](const cx::ReportScores& s) { return cx::values_of(s.midline.select(1, 1).abs()); };
  using ev::MetricSource;
  const std::vector<Metric> t1{
      mean_metric({"judge_r_align", "r_align ↑", true, 4, MetricSource::judge}, [](const auto& s) { return cx::values_of(s.judge_align); }),
      mean_metric({"midline_tilt_deg", "tilt ° ↓", false, 2, MetricSource::judge}, deg),
      mean_metric({"midline_offset", "off-centre ↓", false, 4, MetricSource::judge}, off),
      Metric{{"judge_auroc", "AUROC ↑", true, 3, MetricSource::judge}, [&](const cx::ReportScores& s) { return cx::auroc_statistic(s, targets); }, N},
      mean_metric({"judge_r_diag", "r_diag ↑", true, 3, MetricSource::judge}, [](const auto& s) { return cx::values_of(s.judge_diag); }),
      mean_metric({"judge_clip", "CXR-CLIP sim ↑", true, 3, MetricSource::judge}, [](const auto& s) { return cx::values_of(s.judge_clip); }),
      mean_metric({"reward_r_align", "reward r_align ↑", true, 4, MetricSource::reward}, [](const auto& s) { return cx::values_of(s.reward_align); }),
      mean_metric({"reward_r_diag", "reward r_diag ↑", true, 3, MetricSource::reward}, [](const auto& s) { return cx::values_of(s.reward_diag); }),
      mean_metric({"reward_r_consist", "reward r_consist ↑", true, 3, MetricSource::reward}, [](const auto& s) { return cx::values_of(s.reward_consist); })};
  const auto n_div = scores.front().diversity.size(0);
  const std::vector<Metric> t2{
      Metric{{"fid", "FID ↓", false, 2, MetricSource::judge}, [&](const cx::ReportScores& s) { return cx::fid_statistic(s, real_features); }, N},
      Metric{{"msssim", "MS-SSIM ↓", false, 3, MetricSource::judge}, [](const cx::ReportScores& s) { return ev::mean_of(cx::values_of(s.diversity)); }, n_div}};
  std::vector<Metric> t3;
  for (int64_t k = 0; k < cx::kNumObservations; ++k)
    if (!std::isnan(scores.front().judge_probs[0][k].item<float>()))
      t3.push_back({{std::string(cx::kObservations[static_cast<std::size_t>(k)]), std::string(cx::kObservations[static_cast<std::size_t>(k)]), true, 2,
                     MetricSource::judge},
                    [&, k](const cx::ReportScores& s) { return cx::auroc_statistic(s, targets, k); }, N});

  // Table 4: does each reward rank a model's images as its judge does? What the two share is all a gain in the
  // reward can pass on to the judge, so a low agreement (even on real images) predicts reward gains the judges
  // do not see, and a fall on a run's samples flags images that fool one model but not the other.
  auto agreement = [&](std::string key, std::string label, torch::Tensor cx::ReportScores::*reward, torch::Tensor cx::ReportScores::*judge) {
    return Metric{{std::move(key), std::move(label), true, 2, MetricSource::reward},
                  [reward, judge](const cx::ReportScores& s) { return ev::correlation_of(cx::values_of(s.*reward), cx::values_of(s.*judge)); }, N};
  };
  const std::vector<Metric> t4{agreement("agree_align", "r_align ~ judge r_align", &cx::ReportScores::reward_align, &cx::ReportScores::judge_align),
                               agreement("agree_diag", "r_diag ~ judge r_diag", &cx::ReportScores::reward_diag, &cx::ReportScores::judge_diag),
                               agreement("agree_consist", "r_consist ~ judge CXR-CLIP sim", &cx::ReportScores::reward_consist, &cx::ReportScores::judge_clip)};

  auto plain = [](const Group& g) { return g.name == "Anchor" || (!g.config.value("no_ace", false) && !g.config.value("no_rlcf", false)); };
  auto all_rewards = [](const Group& g) {
    return g.name == "Anchor" || cx::CxrRewardSet::parse(g.config.value("rewards", std::string()), "config.json rewards").is_all();
  };
  auto build = [&](std::string id, std::string title, const std::vector<Metric>& metrics, const std::function<bool(const Group&)>& keep,
                   const std::function<std::string(const Group&)>& label, std::string note, bool with_real = false) {
    ev::Table t{std::move(id), std::move(title), {}, {}, std::move(note)};
    for (const auto& m : metrics) t.metrics.push_back(m.spec);
    for (const auto& g : groups) {
      if (!keep(g)) continue;
      ev::Row r{label(g), static_cast<int>(g.members.size()), {}};
      for (const auto& m : metrics) {
        std::vector<ev::Statistic> seeds;
        for (auto i : g.members) seeds.push_back(m.stat(scores[i]));
        const ev::Statistic ref = g.name == "Anchor" ? ev::Statistic{} : m.stat(scores.front());
        r.cells[m.spec.key] = ev::make_cell(seeds, m.items, ref, bo);
      }
      t.rows.push_back(std::move(r));
    }
    if (with_real) {
      ev::Row r{"Real PA test images (reference)", 1, {}};
      for (const auto& m : metrics)
        if (m.items == N && m.spec.key != "fid") r.cells[m.spec.key] = ev::make_cell({m.stat(real)}, m.items, {}, bo);
      t.rows.push_back(std::move(r));
    }
    return t;
  };
  auto same = [](const Group& g) { return g.name; };
  const std::string ci = "Δ: difference to the anchor with its paired bootstrap " + std::to_string(o.replicates) +
                         "-replicate 95 % interval over reports (and seeds); ✔ / ✘: the interval excludes 0 on the better / worse side.";
  std::vector<ev::Table> tables{
      build("1", "posture, diagnosis and report consistency", t1, all_rewards, same,
            "Judge columns: models trained apart from the rewards (`train-judges`). tilt and off-centre: mirror-symmetry midline "
            "(cxr/symmetry.hpp), model-free. AUROC: macro over the observations the judge maps; unmentioned findings count as absent, "
            "uncertain ones are left out. r_diag: the reward's rule (stated findings only) with the judge's classifier. Reward columns: "
            "the models the RL optimised; a gain there without one in the judge columns is reward hacking. The last row scores the "
            "real test images of the same reports (no Δ): what the scorers give real radiographs. " + ci,
            true),
      build("2a", "fidelity and diversity", t2, all_rewards, same,
            "FID: Fréchet distance of the judge DenseNet's `features2` between generated and real PA test images. MS-SSIM: mean over the "
            "pairs of " + std::to_string(o.generations) + " generations of each of " + std::to_string(n_div) + " reports (scales that fit "
            "the image, weights renormalised; lower = more diverse). " + ci),
      build("2b", "FID by training reward", {t2.front()}, plain,
            [](const Group& g) {
              return g.name == "Anchor" ? std::string("none (anchor)")
                                        : cx::CxrRewardSet::parse(g.config.value("rewards", std::string()), "config.json rewards").str();
            },
            ci),
      build("3", "judge AUROC per observation", t3, all_rewards, same, ci + " The last row: the judge on the real test images.", true),
      build("4", "agreement of each reward model with its judge", t4, all_rewards, same,
            "Per-report Pearson correlation of a reward model's score with the matching judge score on the same images. A reward "
            "gain reaches the judges only through what the two share: low agreement, even on the real test images (last row), "
            "predicts reward gains the judges do not confirm, and a fall on a run's samples marks images that fool one model but "
            "not the other. " + ci,
            true)};

  std::ostringstream md;
  const std::string split_text(cxrl::data::split_name(split));
  md << "# CXRL evaluation\n\n" << N << " held-out PA " << split_text << " reports ("
     << (o.world.mimic_root.empty() ? "phantom world, held-out phrasing pool" : "MIMIC-CXR-JPG " + split_text + " split") << "), " << resolution
     << " px. Every model samples the same x_T and step noise per report; cells are mean ± std over the runs of a row.\n\n";
  nlohmann::json js{{"n_reports", N}, {"split", split_text}, {"n_diversity_reports", n_div}, {"generations", o.generations}, {"resolution", resolution},
                    {"confidence", bo.confidence}, {"replicates", bo.replicates}, {"eval_seed", o.eval_seed},
                    {"source", std::string(o.world.mimic_root.empty() ? "phantom" : "mimic")}, {"tables", nlohmann::json::array()},
                    {"runs", nlohmann::json::array()}};
  for (const auto& t : tables) {
    md << ev::to_markdown(t) << "\n";
    js["tables"].push_back(ev::to_json(t));
  }
  for (const auto& m : models) js["runs"].push_back({{"row", m.row}, {"run", m.run}});
  // samples.png: real | anchor | each row's first run, the same reports and noise per column, upscaled ×3, with
  // each report under its column.
  const auto n_sheet = std::min<int64_t>(o.sheet_reports, N);
  std::vector<cxrl::io::SheetRow> sheet_rows{{"real", test.images.narrow(0, 0, n_sheet)}};
  for (const auto& g : groups) sheet_rows.push_back({g.name, sheets[g.members.front()].narrow(0, 0, n_sheet)});
  md << "`samples.png`: rows = real, then the first run of each row; columns = the first " << n_sheet
     << " test reports (their text under each column).\n";
  fs::create_directories(o.out);
  {
    std::ofstream f(fs::path(o.out) / "tables.md");
    f << md.str();
  }
  write_json(fs::path(o.out) / "tables.json", js);
  const std::vector<std::string> captions(test.reports.begin(), test.reports.begin() + n_sheet);
  cxrl::io::write_png(fs::path(o.out) / "samples.png", cxrl::io::captioned_sheet(sheet_rows, captions, 3));
  if (!o.quiet) std::cout << md.str();
  return js;
}

/// Every setting under its flag name (a config file for a child `evaluate --config`).
inline nlohmann::json evaluate_config(const EvaluateOptions& o) {
  const auto& a = o.assets;
  return {{"runs", o.runs}, {"out", o.out}, {"roentgen", a.roentgen}, {"rewards_dir", a.rewards_dir}, {"posture_net", a.posture_net},
          {"xrv_densenet", a.xrv_densenet}, {"cxr_clip", a.cxr_clip}, {"vocab", a.vocab}, {"judges", a.judges},
          {"mimic_root", o.world.mimic_root}, {"reports_root", o.world.reports_root}, {"world_seed", o.world.world_seed},
          {"steps", o.sampling.steps}, {"guidance", o.sampling.guidance}, {"n_eval", o.n_eval}, {"n_diversity", o.n_diversity},
          {"generations", o.generations}, {"batch_size", o.batch_size}, {"eval_seed", o.eval_seed}, {"replicates", o.replicates},
          {"sheet_reports", o.sheet_reports}, {"threads", o.threads}, {"score_only", o.score_only}, {"quiet", o.quiet}};
}

inline void add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "The paper's tables (1, 2a, 2b, 3) for the anchor and finetune runs, judged apart from the rewards");
  auto o = std::make_shared<EvaluateOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("runs", o->runs, "finetune run folders (runs with the same name are seeds of one row)");
  s->add("out", o->out, "folder for tables.md, tables.json, samples.png and the score cache");
  add_asset_settings(*s, o->assets);
  add_world_settings(*s, o->world);
  s->add("steps", o->sampling.steps, "DDIM steps of the anchor row (runs use their own)");
  s->add("guidance", o->sampling.guidance, "CFG scale of the anchor row (runs use their own)");
  s->add("n_eval", o->n_eval, "held-out PA test reports");
  s->add("split", o->split, "held-out split: test, or validate (choose settings on it, report on test)");
  s->add("n_diversity", o->n_diversity, "reports with --generations images each for MS-SSIM");
  s->add("generations", o->generations, "images per report for MS-SSIM");
  s->add("batch_size", o->batch_size, "images per sampling call");
  s->add("eval_seed", o->eval_seed, "seed of the evaluation noise (shared by every model) and of the bootstrap");
  s->add("replicates", o->replicates, "bootstrap replicates of each interval");
  s->add("sheet_reports", o->sheet_reports, "columns of samples.png");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("score_only", o->score_only, "only fill the score cache (for --runs, or the anchor when none is given)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    o->split = cxrl::data::split_name(cxrl::data::parse_split(o->split));  // one spelling per split in cache keys
    run_evaluate(*o);
  });
}

}  // namespace cxrl_mimic
