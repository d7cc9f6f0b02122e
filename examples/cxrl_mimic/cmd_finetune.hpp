// `finetune`: CXRL (paper §2–3). LoRA + ACE on the frozen anchor, stochastic DDIM with CFG, DDPO
// PPO-clip updates against RewardSum<Absolute<Align>, Comparative<Diag>, Comparative<Consist>> with
// λ = (1, 10, 10); the comparative terms score the anchor's sample from the same x_T. Ablations:
// --no-ace, --no-rlcf (every term absolute: direct feedback), --rewards (any subset; the others get λ = 0
// and are still logged).
//
// Run folder (--out):
//   config.json                      resolved settings (a resumed run must match them)
//   checkpoints/ckpt-<epoch>.safetensors   adapters + AdamW + RNG + epoch, atomic, last --keep_checkpoints
//   events.out.tfevents.*            TensorBoard scalars and anchor-vs-policy image grids
//   metrics.jsonl                    one JSON object per epoch (the same scalars, for scripts)
//   grids/epoch_<k>.png              fixed held-out reports: anchor (top) vs policy (bottom) after k epochs
//   curves.png                       reward curves: policy and anchor score per term per epoch (± SE), KL, clipping
//   adapters.safetensors             final LoRA + ACE (policy::LoraAcePolicy::load_adapters)
//   metrics.json                     summary of the run
#pragma once

#include "config.hpp"
#include "policy_setup.hpp"
#include "reward_models.hpp"
#include "settings_groups.hpp"
#include "world.hpp"

#include <cxrl/core/baselines.hpp>
#include <cxrl/core/distributed.hpp>
#include <cxrl/core/launch.hpp>
#include <cxrl/core/epoch_log.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/core/trainer_state.hpp>
#include <cxrl/cxr/reward_set.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/event_log.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace cxrl_mimic {

struct FinetuneOptions {
  std::string out = "runs/cxrl";
  std::string name;  // row label for `evaluate`; "" = CXRL / w/o ACE / w/o RLCF / the reward subset
  AssetPaths assets;
  WorldOptions world;
  PolicySettings policy;
  std::string rewards = "align,diag,consist";
  double w_align = 1.0, w_diag = 10.0, w_consist = 10.0;  // CXRL λ
  bool no_rlcf = false;
  // DDPO (ddpo-pytorch config/base.py names; CXRL: lr 3e-4, PPO clip)
  int64_t epochs = 15;
  int64_t batch_size = 16;
  int64_t num_batches = 2;
  int64_t train_batch_size = 8;
  int64_t num_inner_epochs = 1;
  int64_t gradient_accumulation_steps = 1;
  double timestep_fraction = 1.0;
  double learning_rate = 3e-4;
  double clip_range = 1e-4;
  double adv_clip_max = 5.0;
  double max_grad_norm = 1.0;
  int64_t anchor_samples = 1;  // anchor samples per prompt for the comparative terms (CXRL: 1)
  int64_t nproc = 1;           // local ranks to start (data parallelism; batch sizes are per rank, as in ddpo-pytorch)
  int64_t dist_timeout = 300;  // seconds a rank waits for the others before failing
  int64_t n_prompts = 5000;  // training-split reports to draw prompts from
  int64_t grid_prompts = 4;  // held-out reports in the per-epoch anchor-vs-policy grid (0 = none)
  int keep_checkpoints = 3;
  bool resume = false;
  int64_t threads = 0;
  bool quiet = false;
};

/// The evaluate row label of a run.
inline std::string default_run_name(const FinetuneOptions& o) {
  if (!o.name.empty()) return o.name;
  const auto r = cxrl::cxr::CxrRewardSet::parse(o.rewards);
  if (!r.is_all())
    return r.str("+") + " only" + (o.no_rlcf ? " (w/o RLCF)" : "") + (o.policy.no_ace ? " (w/o ACE)" : "");
  if (o.no_rlcf && o.policy.no_ace) return "w/o ACE, w/o RLCF";
  if (o.no_rlcf) return "w/o RLCF";
  if (o.policy.no_ace) return "w/o ACE";
  return "CXRL";
}

inline void check_finetune_options(const FinetuneOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("finetune: " + what);
  };
  cxrl::cxr::CxrRewardSet::parse(o.rewards);
  need(o.epochs >= 1, "--epochs must be >= 1");
  need(o.policy.lora_rank >= 1, "--lora_rank must be >= 1");
  need(o.policy.no_ace || o.policy.ace_tokens >= 1, "--ace_tokens must be >= 1 (or pass --no-ace)");
  need(o.n_prompts >= 1, "--n_prompts must be >= 1");
  need(o.grid_prompts >= 0, "--grid_prompts must be >= 0");
  need(o.keep_checkpoints >= 1, "--keep_checkpoints must be >= 1");
  need(o.anchor_samples >= 1, "--anchor_samples must be >= 1");
  need(o.nproc >= 1 && o.nproc <= 256, "--nproc must be in [1, 256]");
  need(o.dist_timeout >= 1, "--dist_timeout must be >= 1 (seconds)");
  need(o.w_align >= 0 && o.w_diag >= 0 && o.w_consist >= 0, "reward weights must be >= 0");
}

namespace detail {

/// The records of a JSON-lines file (a half-written last line from a killed run is dropped).
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      v.push_back(nlohmann::json::parse(line));
    } catch (const std::exception&) {
    }
  }
  return v;
}

/// Keeps the lines of metrics.jsonl for epochs < @p next_epoch (a resumed run rewrites the rest).
inline void truncate_jsonl(const std::filesystem::path& p, int64_t next_epoch) {
  if (!std::filesystem::exists(p)) return;
  std::ifstream in(p);
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).at("epoch").get<int64_t>() <= next_epoch) keep.push_back(line);
    } catch (const std::exception&) {
      // a half-written last line from an interrupted run: dropped
    }
  }
  in.close();
  std::ofstream out(p, std::ios::trunc);
  for (const auto& l : keep) out << l << '\n';
}

/// Settings that may differ between a run and its resumption.
inline bool resumable_difference_ok(const std::string& key) {
  return key == "epochs" || key == "threads" || key == "keep_checkpoints" || key == "out" || key == "nproc" || key == "dist_timeout";
}

/// Anchor (top row) vs policy (bottom row) on fixed reports, the same x_T per column, fixed seed.
template <class P>
torch::Tensor anchor_policy_grid(P& policy, cxrl::core::DdimSampler& sampler, const std::vector<std::string>& prompts,
                                 uint64_t seed) {
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
  auto traj = sampler.sample(policy, prompts, g1);
  sampler.sample_anchor(policy, traj, g2);
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < traj.batch_size(); ++i) tiles.push_back(traj.anchor_images[i]);
  for (int64_t i = 0; i < traj.batch_size(); ++i) tiles.push_back(traj.images[i]);
  return cxrl::io::make_grid(tiles, static_cast<int>(prompts.size()), 2, 1.0f);
}

}  // namespace detail

/// An exclusive lock on a run folder (flock on `<run>/.lock`), so that two processes never write one run.
class RunFolderLock {
 public:
  explicit RunFolderLock(const std::filesystem::path& run) : path_(run / ".lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(path_.string() + ": cannot create the run lock (" + std::strerror(errno) + ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw std::runtime_error("finetune: another process is running in " + run.string() + " (it holds " + path_.string() + ")");
    }
  }
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  ~RunFolderLock() { ::close(fd_); }  // closing releases the lock

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

/// Logs, draws grids, checkpoints, reports progress, and stops on SIGINT; one per run.
template <class P>
struct FinetuneCallbacks {
  const FinetuneOptions& o;
  const std::filesystem::path run;
  P& policy;
  cxrl::core::DdimSampler& sampler;  // the trainer's
  std::vector<std::string> grid_prompts;
  std::optional<cxrl::io::EventWriter> events;  // rank 0 only
  cxrl::io::CheckpointStore store;
  cxrl::io::Progress bar;
  std::string last_status;
  bool main_rank = true;  // only rank 0 writes files and shows progress

  void write_grid(int64_t epoch) {
    if (grid_prompts.empty() || !main_rank) return;
    const auto png = run / "grids" / ("epoch_" + std::to_string(epoch) + ".png");
    const auto grid = detail::anchor_policy_grid(policy, sampler, grid_prompts, o.policy.seed + 7777);
    cxrl::io::write_png(png, grid);
    events->image("grid/anchor_top_policy_bottom", cxrl::io::read_file_bytes(png), static_cast<int>(grid.size(1)),
                 static_cast<int>(grid.size(2)), static_cast<int>(grid.size(0)), epoch);
  }

  /// curves.png: each reward's policy and anchor scores per epoch (± SE), the training reward, KL and clipping.
  void write_curves() {
    if (!main_rank) return;
    try {
      const auto panels = cxrl::core::reward_curves(detail::read_jsonl(run / "metrics.jsonl"));
      cxrl::io::write_png(run / "curves.png", cxrl::io::render_panels(panels, 3));
    } catch (const std::runtime_error& e) {
      if (!curves_warned) std::cerr << "\nfinetune: no curves.png: " << e.what() << "\n";
      curves_warned = true;
    }
  }
  bool curves_warned = false;

  template <class T>
  void on_phase(T& trainer, cxrl::core::Phase phase) {
    if (!main_rank) return;
    std::ostringstream s;
    s << "epoch " << trainer.epoch() + 1 << "/" << o.epochs << " " << cxrl::core::phase_name(phase) << last_status;
    bar.update(static_cast<long>(trainer.epoch()), s.str());
  }

  template <class T>
  bool on_epoch_end(T& trainer, const cxrl::core::EpochStats& st) {
    const double lr = o.learning_rate;
    const auto state = cxrl::core::trainer_state(trainer);  // collective across ranks: every rank takes part
    if (!main_rank) return cxrl::io::interrupted();
    if (st.skipped_updates > 0)
      std::cerr << "\nfinetune: epoch " << st.epoch + 1 << ": " << st.skipped_updates << " update(s) skipped: " << st.skip_reason << "\n";
    auto j = cxrl::core::epoch_record(st, lr);
    const int64_t step = st.epoch + 1;
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "epoch" && it->is_number()) events->scalar(it.key(), it->get<double>(), step);
    events->flush();
    {
      std::ofstream f(run / "metrics.jsonl", std::ios::app);
      f << j.dump() << '\n';
    }
    write_grid(step);
    write_curves();
    store.save(trainer.epoch(), state, {{"producer", "cxrl_mimic finetune"}});
    char buf[160];
    std::snprintf(buf, sizeof buf, " | reward %.4f (anchor %.4f) kl %.2e", st.reward_mean,
                  std::isnan(st.anchor_reward_mean) ? 0.0 : st.anchor_reward_mean, st.approx_kl);
    last_status = buf;
    bar.update(static_cast<long>(trainer.epoch()), "epoch " + std::to_string(step) + "/" + std::to_string(o.epochs) + last_status);
    if (cxrl::io::interrupted()) {
      std::cerr << "\nfinetune: interrupted; checkpoint of epoch " << step << " written to " << (run / "checkpoints").string()
                << "; continue with --resume\n";
      return true;
    }
    return false;
  }
};

namespace detail {

template <class RS>
nlohmann::json run_finetune_with(const FinetuneOptions& o, const nlohmann::json& resolved, RS rewards, cxrl::core::Distributed& dist) {
  namespace fs = std::filesystem;
  const fs::path run = o.out;
  const bool main_rank = dist.is_main();
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(o.assets.roentgen);
  auto policy = make_policy(sd, o.policy);
  auto sampler = make_sampler(sd, o.policy);
  const auto pool = impressions(o.world, cxrl::data::Split::train, static_cast<std::size_t>(o.n_prompts));
  // Everything loaded: from here on the folder holds a run.
  if (main_rank) write_json(run / "config.json", resolved);

  auto prompt_fn = [pool](int64_t n, at::Generator& gen) {
    auto idx = torch::randint(static_cast<int64_t>(pool.size()), {n}, gen, torch::kLong);
    std::vector<std::string> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(pool[static_cast<std::size_t>(idx[i].item<int64_t>())]);
    return v;
  };

  cxrl::core::TrainerConfig tc;
  tc.num_batches = o.num_batches;
  tc.batch_size = o.batch_size;
  tc.train_batch_size = o.train_batch_size;
  tc.num_inner_epochs = o.num_inner_epochs;
  tc.gradient_accumulation_steps = o.gradient_accumulation_steps;
  tc.timestep_fraction = o.timestep_fraction;
  tc.learning_rate = o.learning_rate;
  tc.clip_range = o.clip_range;
  tc.adv_clip_max = o.adv_clip_max;
  tc.max_grad_norm = o.max_grad_norm;
  tc.anchor_samples = o.anchor_samples;
  tc.seed = o.policy.seed;
  // Reports are (nearly) unique, so ddpo's per-prompt statistics fall back to the batch: whiten the batch.
  cxrl::core::Trainer trainer(policy, sampler, std::move(rewards), cxrl::core::BatchWhitening{}, prompt_fn, tc, &dist);

  std::vector<std::string> grid_prompts;
  if (o.grid_prompts > 0) grid_prompts = impressions(o.world, cxrl::data::Split::test, static_cast<std::size_t>(o.grid_prompts));
  // Rank 0 prepares the checkpoint folder (and drops stale temporaries) before the others look into it.
  std::optional<cxrl::io::CheckpointStore> store0;
  if (main_rank) store0.emplace(run / "checkpoints", o.keep_checkpoints);
  dist.barrier();
  FinetuneCallbacks<cxrl::policy::LoraAcePolicy> cb{o,
                                                    run,
                                                    policy,
                                                    trainer.sampler(),
                                                    grid_prompts,
                                                    main_rank ? std::optional<cxrl::io::EventWriter>(std::in_place, run) : std::nullopt,
                                                    main_rank ? std::move(*store0) : cxrl::io::CheckpointStore(run / "checkpoints", o.keep_checkpoints, false),
                                                    cxrl::io::Progress("finetune " + resolved.at("name").get<std::string>(),
                                                                       static_cast<long>(o.epochs), o.quiet || !main_rank),
                                                    {},
                                                    main_rank};
  if (o.resume) {
    // Rank 0 first: it may set a corrupt newest checkpoint aside; the others then read the same intact one.
    std::optional<cxrl::io::LoadedCheckpoint> ck;
    if (main_rank) ck = cb.store.load_latest(std::cerr);
    dist.barrier();
    if (!main_rank) {
      std::ostringstream quiet;
      ck = cb.store.load_latest(quiet);
    }
    if (ck) {
      cxrl::core::load_trainer_state(trainer, ck->tensors, ck->file.string());
      cb.bar.start_at(static_cast<long>(trainer.epoch()));
      if (!o.quiet && main_rank) std::cerr << "finetune: resumed from " << ck->file.string() << " (epoch " << trainer.epoch() << ")\n";
    } else if (!o.quiet && main_rank) {
      std::cerr << "finetune: --resume: no intact checkpoint in " << (run / "checkpoints").string() << "; starting at epoch 0\n";
    }
  }
  if (main_rank) detail::truncate_jsonl(run / "metrics.jsonl", trainer.epoch());
  if (trainer.epoch() == 0) cb.write_grid(0);

  cxrl::io::install_interrupt_handler();
  bool interrupted = false;
  while (trainer.epoch() < o.epochs) {
    trainer.train_epoch(cb);
    if (trainer.stopped()) {
      interrupted = true;
      break;
    }
  }
  if (!main_rank) return {{"name", resolved.at("name")}, {"epochs_completed", trainer.epoch()}, {"interrupted", interrupted}};
  policy.save_adapters(run / "adapters.safetensors", {{"epoch", std::to_string(trainer.epoch())}});

  // The full history (including epochs before a resume) from metrics.jsonl.
  nlohmann::json hist = detail::read_jsonl(run / "metrics.jsonl");
  nlohmann::json summary{{"name", resolved.at("name")},
                         {"epochs_completed", trainer.epoch()},
                         {"interrupted", interrupted},
                         {"adapters", (run / "adapters.safetensors").string()},
                         {"history", hist}};
  if (!hist.empty()) summary["final"] = hist.back();
  write_json(run / "metrics.json", summary);
  return summary;
}

}  // namespace detail

/// Every setting of a run under its flag name: the run's config.json.
inline nlohmann::json finetune_config(const FinetuneOptions& o) {
  const auto& a = o.assets;
  const auto& p = o.policy;
  return {{"out", o.out}, {"name", default_run_name(o)},
          {"roentgen", a.roentgen}, {"rewards_dir", a.rewards_dir}, {"posture_net", a.posture_net},
          {"xrv_densenet", a.xrv_densenet}, {"cxr_clip", a.cxr_clip}, {"vocab", a.vocab},
          {"mimic_root", o.world.mimic_root}, {"reports_root", o.world.reports_root}, {"world_seed", o.world.world_seed},
          {"lora_rank", p.lora_rank}, {"ace_tokens", p.ace_tokens}, {"no_ace", p.no_ace}, {"ace_init", p.ace_init}, {"seed", p.seed},
          {"steps", p.steps}, {"eta", p.eta}, {"guidance", p.guidance},
          {"rewards", o.rewards}, {"w_align", o.w_align}, {"w_diag", o.w_diag}, {"w_consist", o.w_consist},
          {"no_rlcf", o.no_rlcf}, {"epochs", o.epochs}, {"batch_size", o.batch_size}, {"num_batches", o.num_batches},
          {"train_batch_size", o.train_batch_size}, {"num_inner_epochs", o.num_inner_epochs},
          {"gradient_accumulation_steps", o.gradient_accumulation_steps}, {"timestep_fraction", o.timestep_fraction},
          {"learning_rate", o.learning_rate}, {"clip_range", o.clip_range}, {"adv_clip_max", o.adv_clip_max},
          {"max_grad_norm", o.max_grad_norm}, {"anchor_samples", o.anchor_samples}, {"nproc", o.nproc},
          {"dist_timeout", o.dist_timeout}, {"n_prompts", o.n_prompts}, {"grid_prompts", o.grid_prompts},
          {"keep_checkpoints", o.keep_checkpoints}, {"threads", o.threads}};
}

/// Loads the rewards of the run's set and trains; the reward types depend on --no-rlcf only.
inline nlohmann::json run_finetune_rewards(const FinetuneOptions& o, const nlohmann::json& resolved, cxrl::core::Distributed& dist) {
  namespace core = cxrl::core;
  namespace cx = cxrl::cxr;
  const auto use = cx::CxrRewardSet::parse(o.rewards);
  auto w = [&](cx::CxrReward r, double x) { return use.contains(r) ? x : 0.0; };
  auto align = load_align_reward(o.assets);
  auto diag = load_diag_reward(o.assets);
  auto consist = load_consist_reward(o.assets);
  if (o.no_rlcf)
    return detail::run_finetune_with(o, resolved,
                                     core::RewardSum(core::Absolute{std::move(align), w(cx::CxrReward::align, o.w_align)},
                                                     core::Absolute{std::move(diag), w(cx::CxrReward::diag, o.w_diag)},
                                                     core::Absolute{std::move(consist), w(cx::CxrReward::consist, o.w_consist)}),
                                     dist);
  return detail::run_finetune_with(o, resolved,
                                   core::RewardSum(core::Absolute{std::move(align), w(cx::CxrReward::align, o.w_align)},
                                                   core::Comparative{std::move(diag), w(cx::CxrReward::diag, o.w_diag)},
                                                   core::Comparative{std::move(consist), w(cx::CxrReward::consist, o.w_consist)}),
                                   dist);
}

/// Runs (or resumes) a fine-tuning run; returns the metrics.json summary.
inline nlohmann::json run_finetune(const FinetuneOptions& o) {
  namespace fs = std::filesystem;
  check_finetune_options(o);
  check_world(o.world);
  check_assets(o.assets);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  // One process, or one rank of a run started by `--nproc N` or torchrun (RANK, WORLD_SIZE, MASTER_ADDR, …).
  auto dopt = cxrl::core::DistributedOptions::from_env();
  dopt.timeout = std::chrono::seconds(o.dist_timeout);
  auto resolved = finetune_config(o);
  resolved["world_size"] = dopt.world_size;  // batch sizes are per rank: the run is defined with its rank count

  const fs::path run = o.out;
  const auto cfg_path = run / "config.json";
  cxrl::core::Distributed dist(dopt);
  dist.require_same("the run's settings", resolved.dump());
  if (!dist.is_main()) {
    dist.barrier();  // rank 0 checks the folder first
    return run_finetune_rewards(o, resolved, dist);
  }
  fs::create_directories(run);
  const RunFolderLock lock(run);
  // A folder whose start failed before its first checkpoint (bad assets, Ctrl-C while loading) holds no run yet.
  auto started = [&] {
    if (fs::exists(run / "metrics.jsonl")) return true;
    if (fs::is_directory(run / "checkpoints"))
      for (const auto& e : fs::directory_iterator(run / "checkpoints"))
        if (e.path().extension() == ".safetensors") return true;
    return false;
  };
  if (fs::exists(cfg_path) && !started()) {
    if (!o.quiet) std::cerr << "finetune: " << run.string() << " holds a run that stopped before its first checkpoint; starting it again\n";
    fs::remove(cfg_path);
  }
  if (fs::exists(cfg_path)) {
    if (!o.resume)
      throw std::invalid_argument("finetune: " + run.string() + " already holds a run (config.json); pass --resume to continue it, or choose another --out");
    std::ifstream in(cfg_path);
    nlohmann::json saved;
    try {
      saved = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw std::invalid_argument(cfg_path.string() + ": not valid JSON (" + e.what() + ")");
    }
    std::string diff;
    for (auto it = resolved.begin(); it != resolved.end(); ++it)
      if (!detail::resumable_difference_ok(it.key()) && (!saved.contains(it.key()) || saved[it.key()] != *it))
        diff += "\n  " + it.key() + ": run " + (saved.contains(it.key()) ? saved[it.key()].dump() : "(absent)") + ", now " + it->dump();
    if (!diff.empty())
      throw std::invalid_argument("finetune --resume: settings differ from " + cfg_path.string() + ":" + diff);
  }
  dist.barrier();
  return run_finetune_rewards(o, resolved, dist);
}


inline void add_finetune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("finetune", "CXRL: RL fine-tuning of the anchor with LoRA + ACE against the three rewards");
  auto o = std::make_shared<FinetuneOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "run folder");
  s->add("name", o->name, "row label in evaluate (default from the ablation switches)");
  add_asset_settings(*s, o->assets);
  add_world_settings(*s, o->world);
  add_policy_settings(*s, o->policy);
  s->add("rewards", o->rewards, "rewards to optimise: any of align,diag,consist");
  s->add("w_align", o->w_align, "λ of r_align");
  s->add("w_diag", o->w_diag, "λ of r_diag");
  s->add("w_consist", o->w_consist, "λ of r_consist");
  s->flag("no_rlcf", o->no_rlcf, "ablation: absolute diag/consist rewards instead of comparing with the anchor");
  s->add("epochs", o->epochs, "epochs (total, also when resuming)");
  s->add("batch_size", o->batch_size, "prompts per sampling call");
  s->add("num_batches", o->num_batches, "sampling calls per epoch");
  s->add("train_batch_size", o->train_batch_size, "samples per training minibatch (0 = batch_size)");
  s->add("num_inner_epochs", o->num_inner_epochs, "passes over each epoch's samples");
  s->add("gradient_accumulation_steps", o->gradient_accumulation_steps, "minibatches per optimizer step");
  s->add("timestep_fraction", o->timestep_fraction, "fraction of the denoising steps trained per sample");
  s->add("learning_rate", o->learning_rate, "AdamW learning rate");
  s->add("clip_range", o->clip_range, "PPO clip range");
  s->add("adv_clip_max", o->adv_clip_max, "advantage clip");
  s->add("max_grad_norm", o->max_grad_norm, "gradient norm clip");
  s->add("anchor_samples", o->anchor_samples, "anchor samples per prompt; comparative terms subtract their mean score (CXRL: 1)");
  s->add("nproc", o->nproc, "local ranks of one data-parallel run (batch sizes are per rank); under torchrun leave at 1");
  s->add("dist_timeout", o->dist_timeout, "seconds a rank waits for the others before it fails");
  s->add("n_prompts", o->n_prompts, "training-split reports to draw prompts from");
  s->add("grid_prompts", o->grid_prompts, "held-out reports in the per-epoch anchor-vs-policy grid");
  s->add("keep_checkpoints", o->keep_checkpoints, "checkpoints kept in the run folder");
  s->flag("resume", o->resume, "continue the run in --out from its newest intact checkpoint");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    o->rewards = cxrl::cxr::CxrRewardSet::parse(o->rewards).str();  // one spelling per set in config.json
    if (o->nproc > 1 && !std::getenv("RANK")) {
      check_finetune_options(*o);
      const int rc = cxrl::core::launch_local_ranks(static_cast<int>(o->nproc), cxrl::core::this_command_line(), std::cerr);
      if (rc != 0) throw CLI::RuntimeError(rc);
      return;
    }
    const auto summary = run_finetune(*o);
    if (summary.value("interrupted", false)) throw CLI::RuntimeError(130);  // checkpointed; exit like a SIGINT
    if (!o->quiet) std::cout << "finetune: wrote " << o->out << " (" << summary.at("epochs_completed") << " epochs)\n";
  });
}

}  // namespace cxrl_mimic
