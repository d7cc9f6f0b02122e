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
// second evaluation sharing the anchor, does not sample again; --score_only fills the cache for one run, or one
// --shard slice of its reports (the main job scores slices of every model in parallel child processes).
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
#include <string_view>
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
  bool score_only = false;       // fill the score cache for --runs (the anchor and real images when no run is given); no tables
  int64_t shards = 1;            // slices of each model's reports scored apart and merged (main: one per child process)
  int64_t shard = -1;            // with score_only: score only this slice (0-based); -1: every slice, then merge
  bool quiet = false;
};

namespace detail {

/// Samples one image per prompt in batches; batch b uses generator seed + first_batch + b, so every model sees the
/// same x_T and step noise for the same report, and a slice that starts at batch first_batch draws what the whole
/// set would.
template <class P>
torch::Tensor sample_images(P& policy, cxrl::core::DdimSampler& sampler, const std::vector<std::string>& prompts, int64_t batch,
                            uint64_t seed, int64_t first_batch, cxrl::io::Progress& bar, long& done) {
  std::vector<torch::Tensor> out;
  for (std::size_t i = 0, b = 0; i < prompts.size(); i += static_cast<std::size_t>(batch), ++b) {
    const auto end = std::min(prompts.size(), i + static_cast<std::size_t>(batch));
    std::vector<std::string> chunk(prompts.begin() + static_cast<long>(i), prompts.begin() + static_cast<long>(end));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<uint64_t>(first_batch) + b);
    out.push_back(sampler.sample(policy, chunk, gen).images);
    done += static_cast<long>(chunk.size());
    bar.update(done);
  }
  return torch::cat(out);
}

/// What a score cache holds: the real test images, or the samples of the anchor or of one run.
enum class ModelKind { real, anchor, run };

/// One set of images to score: the real test images, the anchor, or one run.
struct ModelEntry {
  std::string row;      // row name ("Anchor", or the run's name)
  std::string run;      // run folder ("" unless kind is run)
  nlohmann::json config = nlohmann::json::object();  // the run's config.json
  ModelKind kind = ModelKind::run;
};

inline ModelEntry real_entry(const std::string& split) { return {"Real PA " + split + " images (reference)", "", nlohmann::json::object(), ModelKind::real}; }
inline ModelEntry anchor_entry() { return {"Anchor", "", nlohmann::json::object(), ModelKind::anchor}; }

/// The cache file of a model's scores; slice k of S (S > 1) has its own file until the slices are merged.
inline std::string cache_file_name(const ModelEntry& m, int64_t slice = 0, int64_t slices = 1) {
  std::string s = m.kind == ModelKind::real     ? "real"
                  : m.kind == ModelKind::anchor ? "anchor"
                                                : std::filesystem::path(m.run).filename().string() + "_" +
                                                      std::to_string(std::hash<std::string>{}(std::filesystem::absolute(m.run).string()) % 100000);
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  if (slices > 1) s += ".slice" + std::to_string(slice) + "of" + std::to_string(slices);
  return s + ".safetensors";
}

/// What the cached scores depend on: the model (anchor folder, adapters file) and the evaluation settings. The
/// adapters count by content, not by date: rerunning `main` resumes finished runs, which rewrite the same adapters.
inline std::string cache_key(const EvaluateOptions& o, const ModelEntry& m) {
  nlohmann::json k{{"n_eval", o.n_eval}, {"n_diversity", o.n_diversity}, {"generations", o.generations}, {"batch_size", o.batch_size},
                   {"eval_seed", o.eval_seed}, {"mimic_root", o.world.mimic_root}, {"world_seed", o.world.world_seed},
                   {"split", o.split}, {"judges", std::filesystem::absolute(o.assets.judges).string()},
                   {"rewards", {o.assets.posture_file().string(), o.assets.densenet_file().string(), o.assets.clip_file().string()}}};
  if (m.kind == ModelKind::real) {
    k["real"] = true;
  } else if (m.kind == ModelKind::anchor) {
    k["anchor"] = {std::filesystem::absolute(o.assets.roentgen).string(), o.sampling.steps, o.sampling.guidance, o.sampling.eta};
  } else {
    const auto ad = std::filesystem::path(m.run) / "adapters.safetensors";
    const auto bytes = cxrl::io::read_file_bytes(ad);
    k["run"] = {std::filesystem::absolute(m.run).string(), bytes.size(),
                std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()))};
  }
  return k.dump();
}

/// The models: the anchor, then runs grouped by name in the order given.
inline std::vector<ModelEntry> model_entries(const EvaluateOptions& o) {
  namespace fs = std::filesystem;
  std::vector<ModelEntry> v{anchor_entry()};
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
    v.push_back({j.value("name", r), r, j, ModelKind::run});
  }
  return v;
}

/// Items [begin, end) of slice k of S over n items, cut at whole sampling batches (first_batch is its first), so that
/// a slice draws the same noise as the whole set would and the merged slices equal one unsliced pass.
struct Slice {
  int64_t begin = 0, end = 0, first_batch = 0;
};
inline Slice batch_slice(int64_t n, int64_t batch, int64_t k, int64_t slices) {
  const int64_t batches = (n + batch - 1) / batch;
  const int64_t b0 = k * batches / slices, b1 = (k + 1) * batches / slices;
  return {std::min(n, b0 * batch), std::min(n, b1 * batch), b0};
}

/// Slices per model: --shards, but no more than the smaller set (evaluation or diversity reports) has batches.
inline int64_t slice_count(const EvaluateOptions& o, int64_t n_eval, int64_t n_div) {
  const auto batches = [&](int64_t n) { return (n + o.batch_size - 1) / o.batch_size; };
  return std::max<int64_t>(1, std::min({o.shards, batches(n_eval), batches(n_div * o.generations)}));
}

/// A model's scores with the first sheet_reports images (for samples.png) of what was scored.
struct ScoredSlice {
  cxrl::cxr::ReportScores scores;
  torch::Tensor sheet;
};

/// The slices of one model, in order, as one: every score field concatenated, the sheet from the front.
inline ScoredSlice merge_slices(const std::vector<ScoredSlice>& parts, int64_t sheet_reports) {
  if (parts.size() == 1) return parts.front();
  std::vector<cxrl::io::TensorMap> maps;
  for (const auto& p : parts) maps.push_back(p.scores.to_map());
  cxrl::io::TensorMap merged;
  for (const auto& kv : maps.front()) {
    std::vector<torch::Tensor> v;
    for (const auto& m : maps) v.push_back(m.at(kv.first));
    merged[kv.first] = torch::cat(v);
  }
  std::vector<torch::Tensor> sheets;
  for (const auto& p : parts) sheets.push_back(p.sheet);
  const auto all = torch::cat(sheets);
  return {cxrl::cxr::ReportScores::from_map(merged, "merged slices"),
          all.narrow(0, 0, std::min<int64_t>(sheet_reports, all.size(0))).contiguous()};
}

/// A score cache file's contents if it exists and was made with @p key; a file that does not read is reported
/// and treated as absent (it is recomputed and overwritten).
inline std::optional<ScoredSlice> read_score_cache(const std::filesystem::path& file, const std::string& key) {
  if (!std::filesystem::exists(file)) return std::nullopt;
  try {
    cxrl::io::SafeTensorsFile f(file);
    if (!f.metadata().count("key") || f.metadata().at("key") != key) return std::nullopt;
    auto map = cxrl::io::load_safetensors(file);
    return ScoredSlice{cxrl::cxr::ReportScores::from_map(map, file.string()), map.at("sheet")};
  } catch (const std::exception& e) {
    std::cerr << "evaluate: ignoring unreadable score cache " << file.string() << " (" << e.what() << ")\n";
    return std::nullopt;
  }
}

inline void write_score_cache(const std::filesystem::path& file, const std::string& key, const ModelEntry& m, const ScoredSlice& s) {
  auto map = s.scores.to_map();
  map["sheet"] = s.sheet;
  cxrl::io::save_safetensors(file, map, {{"key", key}, {"row", m.row}, {"run", m.run}});
}

}  // namespace detail

/**
 * Scores of every model (cached), in the order given. Each model's reports are cut into slice_count() slices at
 * whole sampling batches; with o.shard >= 0 (a --score_only child) only that slice is scored, into its own cache
 * file, and nothing is returned; otherwise missing slices are scored here, and the slices are merged into the
 * model's cache file. Real images are scored as they are; the anchor and runs sample one image per report and
 * o.generations per diversity report first.
 */
inline std::vector<detail::ScoredSlice> score_models(const EvaluateOptions& o, const std::vector<detail::ModelEntry>& models,
                                                     const cxrl::cxr::CxrImageSet& test) {
  namespace fs = std::filesystem;
  using detail::ModelKind;
  const fs::path cache = fs::path(o.out) / "scores";
  fs::create_directories(cache);
  std::optional<cxrl::cxr::Judges> judges;
  std::optional<Align> align;
  std::optional<Diag> diag;
  std::optional<Consist> consist;
  std::vector<detail::ScoredSlice> out;
  const auto N = test.size();
  const auto n_div = std::min<int64_t>(o.n_diversity, N);
  std::vector<std::string> rep;
  for (int64_t i = 0; i < n_div; ++i)
    for (int64_t k = 0; k < o.generations; ++k) rep.push_back(test.reports[static_cast<std::size_t>(i)]);
  const auto slices = detail::slice_count(o, N, n_div);

  auto score_slice = [&](const detail::ModelEntry& m, int64_t k) {
    if (!judges) {
      judges = cxrl::cxr::Judges::load(o.assets.judges, o.assets.vocab);
      align = load_align_reward(o.assets);
      diag = load_diag_reward(o.assets);
      consist = load_consist_reward(o.assets);
    }
    const auto sl = detail::batch_slice(N, o.batch_size, k, slices);
    const auto dl = detail::batch_slice(static_cast<int64_t>(rep.size()), o.batch_size, k, slices);
    const std::vector<std::string> reports(test.reports.begin() + sl.begin, test.reports.begin() + sl.end);
    const std::string label = "evaluate " + m.row + (m.run.empty() ? "" : " [" + fs::path(m.run).filename().string() + "]") +
                              (slices > 1 ? " slice " + std::to_string(k + 1) + "/" + std::to_string(slices) : "");
    detail::ScoredSlice r;
    if (m.kind == ModelKind::real) {
      const auto images = test.images.narrow(0, sl.begin, sl.end - sl.begin);
      if (!o.quiet) std::cerr << label << ": " << images.size(0) << " images\n";
      r.scores = cxrl::cxr::score_report_images(*judges, *align, *diag, *consist, images, reports);
      r.scores.diversity = torch::zeros({0});
      r.sheet = images.narrow(0, 0, std::min<int64_t>(o.sheet_reports, images.size(0))).contiguous();
      return r;
    }
    const auto ps = m.kind == ModelKind::anchor ? o.sampling : PolicySettings::from_run_config(m.config);
    // A fresh model per row: LoRA is injected into the UNet in place.
    auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(m.kind == ModelKind::anchor ? o.assets.roentgen
                                                                                           : m.config.value("roentgen", o.assets.roentgen));
    auto policy = make_policy(sd, ps);
    if (m.kind == ModelKind::anchor) policy.set_adapters_enabled(false);  // LoRA skipped, no ACE: exactly the frozen anchor
    else policy.load_adapters(fs::path(m.run) / "adapters.safetensors");
    auto sampler = make_sampler(sd, ps);
    const std::vector<std::string> div_reports(rep.begin() + dl.begin, rep.begin() + dl.end);
    cxrl::io::Progress bar(label, static_cast<long>(reports.size() + div_reports.size()), o.quiet);
    long done = 0;
    const auto images = detail::sample_images(policy, sampler, reports, o.batch_size, o.eval_seed, sl.first_batch, bar, done);
    r.scores = cxrl::cxr::score_report_images(*judges, *align, *diag, *consist, images, reports);
    const auto div = detail::sample_images(policy, sampler, div_reports, o.batch_size, o.eval_seed + 1000003, dl.first_batch, bar, done);
    r.scores.diversity = cxrl::cxr::generation_diversity(div, o.generations);
    r.sheet = images.narrow(0, 0, std::min<int64_t>(o.sheet_reports, images.size(0))).contiguous();
    return r;
  };

  for (const auto& m : models) {
    const auto file = cache / detail::cache_file_name(m);
    const auto key = detail::cache_key(o, m);
    if (auto c = detail::read_score_cache(file, key)) {
      if (!o.quiet) std::cerr << "evaluate: " << m.row << (m.run.empty() ? "" : " [" + m.run + "]") << ": cached scores " << file.string() << "\n";
      if (o.shard < 0) out.push_back(std::move(*c));
      continue;
    }
    auto slice_file = [&](int64_t k) { return cache / detail::cache_file_name(m, k, slices); };
    auto slice_key = [&](int64_t k) { return key + " slice " + std::to_string(k) + "/" + std::to_string(slices); };
    if (o.shard >= 0) {  // a child: one slice into its own file
      if (o.shard < slices && !detail::read_score_cache(slice_file(o.shard), slice_key(o.shard)))
        detail::write_score_cache(slice_file(o.shard), slice_key(o.shard), m, score_slice(m, o.shard));
      continue;
    }
    std::vector<detail::ScoredSlice> parts;
    for (int64_t k = 0; k < slices; ++k) {
      auto c = slices > 1 ? detail::read_score_cache(slice_file(k), slice_key(k)) : std::nullopt;
      parts.push_back(c ? std::move(*c) : score_slice(m, k));
    }
    auto merged = detail::merge_slices(parts, o.sheet_reports);
    detail::write_score_cache(file, key, m, merged);
    if (slices > 1)
      for (int64_t k = 0; k < slices; ++k) fs::remove(slice_file(k));
    out.push_back(std::move(merged));
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
  if (o.shards < 1) throw std::invalid_argument("evaluate: --shards must be >= 1");
  if (o.shard >= o.shards || (o.shard >= 0 && !o.score_only))
    throw std::invalid_argument("evaluate: --shard must be in [0, --shards) and needs --score_only (got " + std::to_string(o.shard) + ")");
  if (o.shards > 1 && o.batch_size % o.generations != 0)
    throw std::invalid_argument("evaluate: --shards > 1 needs --batch_size a multiple of --generations (slices keep each report's generations together)");
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));

  auto models = detail::model_entries(o);
  // score_only with runs: just the runs. Without: the anchor and the real images (scored once, apart from the runs).
  if (o.score_only && !o.runs.empty()) models.erase(models.begin());
  else models.insert(models.begin(), detail::real_entry(std::string(cxrl::data::split_name(split))));
  auto sd0 = cxrl::diffusion::StableDiffusion::from_pretrained(o.assets.roentgen);
  // Test images are loaded at the size the model decodes to (a latent model's sample_size is its latent size).
  const int resolution = static_cast<int>(sd0.image_shape().at(1));
  const auto test = eval_set(o.world, static_cast<std::size_t>(o.n_eval), resolution, o.quiet, split);
  const auto N = test.size();
  auto scored = score_models(o, models, test);
  if (o.score_only) return nlohmann::json::object();
  // The real PA test images through the judges and the rewards: FID's reference set, and a reference row that shows
  // what the scorers give real radiographs of the same reports.
  const cx::ReportScores real = scored.front().scores;
  const std::string real_row = models.front().row;
  models.erase(models.begin());
  std::vector<cx::ReportScores> scores;
  std::vector<torch::Tensor> sheets;
  for (std::size_t i = 1; i < scored.size(); ++i) {
    scores.push_back(std::move(scored[i].scores));
    sheets.push_back(std::move(scored[i].sheet));
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
      ev::Row r{real_row, 1, {}};
      for (const auto& m : metrics)
        if (m.items == N && m.spec.key != "fid") r.cells[m.spec.key] = ev::make_cell({m.stat(real)}, m.items, {}, bo);
      t.rows.push_back(std::move(r));
    }
    return t;
  };
  auto same = [](const Group& g) { return g.name; };
  const std::string split_text(cxrl::data::split_name(split));
  const std::string ci = "Δ: difference to the anchor with its paired bootstrap " + std::to_string(o.replicates) +
                         "-replicate 95 % interval over reports (and seeds); ✔ / ✘: the interval excludes 0 on the better / worse side. "
                         "Better in k/S seeds: the seeds whose own Δ lies on the better side (with 2 or 3 seeds the interval cannot "
                         "see a seed-to-seed spread larger than the reports'; the count can).";
  std::vector<ev::Table> tables{
      build("1", "posture, diagnosis and report consistency", t1, all_rewards, same,
            "Judge columns: models trained apart from the rewards (`train-judges`). tilt and off-centre: mirror-symmetry midline "
            "(cxr/symmetry.hpp), model-free. AUROC: macro over the observations the judge maps; unmentioned findings count as absent, "
            "uncertain ones are left out. r_diag: the reward's rule (stated findings only) with the judge's classifier. Reward columns: "
            "the models the RL optimised; a gain there without one in the judge columns is reward hacking. The last row scores the "
            "real " + split_text + " images of the same reports (no Δ): what the scorers give real radiographs. " + ci,
            true),
      build("2a", "fidelity and diversity", t2, all_rewards, same,
            "FID: Fréchet distance of the judge DenseNet's `features2` between generated and real PA " + split_text + " images. MS-SSIM: mean over the "
            "pairs of " + std::to_string(o.generations) + " generations of each of " + std::to_string(n_div) + " reports (scales that fit "
            "the image, weights renormalised; lower = more diverse). " + ci),
      build("2b", "FID by training reward", {t2.front()}, plain,
            [](const Group& g) {
              return g.name == "Anchor" ? std::string("none (anchor)")
                                        : cx::CxrRewardSet::parse(g.config.value("rewards", std::string()), "config.json rewards").str();
            },
            ci),
      build("3", "judge AUROC per observation", t3, all_rewards, same, ci + " The last row: the judge on the real " + split_text + " images.", true),
      build("4", "agreement of each reward model with its judge", t4, all_rewards, same,
            "Per-report Pearson correlation of a reward model's score with the matching judge score on the same images. A reward "
            "gain reaches the judges only through what the two share: low agreement, even on the real " + split_text + " images (last row), "
            "predicts reward gains the judges do not confirm, and a fall on a run's samples marks images that fool one model but "
            "not the other. " + ci,
            true)};

  std::ostringstream md;
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
          {"sheet_reports", o.sheet_reports}, {"threads", o.threads}, {"score_only", o.score_only}, {"shards", o.shards},
          {"shard", o.shard}, {"split", o.split}, {"quiet", o.quiet}};
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
  s->flag("score_only", o->score_only, "only fill the score cache (for --runs, or the anchor and real images when none is given)");
  s->add("shards", o->shards, "slices of each model's reports, scored apart and merged (cut at whole batches, so each report gets the same noise)");
  s->add("shard", o->shard, "with --score_only: score only this slice (0-based) of --shards; -1: all, then merge");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    o->split = cxrl::data::split_name(cxrl::data::parse_split(o->split));  // one spelling per split in cache keys
    run_evaluate(*o);
  });
}

}  // namespace cxrl_mimic
