/// @file
/// @brief A fine-tuning run of any modality: a core::Trainer driven epoch by epoch into a run folder, with
///        TensorBoard scalars, metrics.jsonl, anchor-vs-policy grids, reward curves, atomic checkpoints,
///        `--resume` from the newest intact one, progress output and Ctrl-C, on one process or many ranks.
///
/// What a program still chooses is what differs between modalities: the anchor, the rewards, the prompt pool
/// and the settings. The folder layout is documented in app/run_folder.hpp; the checkpoint content in
/// core/trainer_state.hpp. Logging follows ddpo-pytorch (one record per epoch, its wandb key names) and
/// accelerate (only the main process writes, every process takes part in collectives).
#pragma once

#include <cxrl/app/run_folder.hpp>
#include <cxrl/core/distributed.hpp>
#include <cxrl/core/epoch_log.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/core/trainer_state.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/event_log.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/io/plot.hpp>
#include <cxrl/io/progress.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::app {

/// @brief How a run is written and driven (what it computes is the trainer's).
struct FinetuneRunOptions {
  std::filesystem::path out = "runs/run";  ///< the run folder
  int64_t epochs = 1;                      ///< total epochs, also when resuming
  int keep_checkpoints = 3;                ///< checkpoints kept in the folder
  bool resume = false;                     ///< continue from the newest intact checkpoint
  bool quiet = false;                      ///< no progress output
  std::string name = "run";                ///< the progress bar's label
  std::string producer = "cxrl finetune";  ///< recorded in every checkpoint's metadata
  std::vector<std::string> grid_prompts;   ///< held-out prompts drawn, anchor vs policy (empty: no grids)
  uint64_t grid_seed = 7777;               ///< the grid's fixed noise
  /// Draw the grid before training, after every grid_every-th epoch (≥ 1) and after the last. Its policy row costs
  /// about a quarter of one sampling batch, so drawing it every epoch of a short CPU run costs ~3 % of the run.
  int64_t grid_every = 1;
};

/// @brief The trainer's prompt function over a fixed pool: `n` uniform draws with replacement from @p gen (a pool
///        with repeated prompts is sampled as often as they occur, as ddpo-pytorch's prompt functions do).
/// @param pool the training prompts (not empty)
inline auto uniform_prompts(std::vector<std::string> pool) {
  if (pool.empty()) throw std::invalid_argument("uniform_prompts: the prompt pool is empty");
  return [pool = std::move(pool)](int64_t n, at::Generator& gen) {
    auto idx = torch::randint(static_cast<int64_t>(pool.size()), {n}, gen, torch::kLong);
    std::vector<std::string> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(pool[static_cast<std::size_t>(idx[i].item<int64_t>())]);
    return v;
  };
}

/// @brief Anchor (top row) vs policy (bottom row) on fixed prompts: the same x_T per column, fixed seeds, so that
///        the grids of successive epochs show what the adapters changed.
/// @param policy the policy (its adapters are switched off for the anchor row and restored)
/// @param sampler the run's sampler
/// @param prompts one column each
/// @param seed noise seed
/// @param anchor_row cache of the anchor row (or null): the frozen anchor draws the same row from the same noise at
///        every epoch, so a run samples it once (half of the grid's cost)
template <class P, class S>
torch::Tensor anchor_policy_grid(P& policy, S& sampler, const std::vector<std::string>& prompts, uint64_t seed,
                                 torch::Tensor* anchor_row = nullptr) {
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto traj = sampler.sample(policy, prompts, g1);
  if (!anchor_row || !anchor_row->defined()) {
    auto g2 = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
    sampler.sample_anchor(policy, traj, g2);
    if (anchor_row) *anchor_row = traj.anchor_images;
  }
  const auto& anchor = anchor_row ? *anchor_row : traj.anchor_images;
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < traj.batch_size(); ++i) tiles.push_back(anchor[i]);
  for (int64_t i = 0; i < traj.batch_size(); ++i) tiles.push_back(traj.images[i]);
  return io::make_grid(tiles, static_cast<int>(prompts.size()), 2, 1.0f);
}

namespace detail {

/// Logs, draws grids, checkpoints, reports progress, and stops on SIGINT; one per run.
template <class T>
struct FinetuneCallbacks {
  const FinetuneRunOptions& o;
  std::filesystem::path run;
  T& trainer;
  std::optional<io::EventWriter> events;  // rank 0 only
  io::CheckpointStore store;
  io::Progress bar;
  std::string last_status;
  bool main_rank = true;  // only rank 0 writes files and shows progress
  bool curves_warned = false;
  torch::Tensor grid_anchor_row;  // sampled at the first grid, then reused

  void write_grid(int64_t epoch) {
    if (o.grid_prompts.empty() || !main_rank) return;
    if (epoch % o.grid_every != 0 && epoch != o.epochs) return;
    const auto png = run / "grids" / ("epoch_" + std::to_string(epoch) + ".png");
    const auto grid = anchor_policy_grid(trainer.policy(), trainer.sampler(), o.grid_prompts, o.grid_seed, &grid_anchor_row);
    io::write_png(png, grid);
    events->image("grid/anchor_top_policy_bottom", io::read_file_bytes(png), static_cast<int>(grid.size(1)),
                  static_cast<int>(grid.size(2)), static_cast<int>(grid.size(0)), epoch);
  }

  void write_curves() {
    if (!main_rank) return;
    try {
      const auto panels = core::reward_curves(read_jsonl(run / "metrics.jsonl"));
      io::write_png(run / "curves.png", io::render_panels(panels, 3));
    } catch (const std::runtime_error& e) {
      if (!curves_warned) std::cerr << "\nfinetune: no curves.png: " << e.what() << "\n";
      curves_warned = true;
    }
  }

  template <class U>
  void on_phase(U& t, core::Phase phase) {
    if (!main_rank) return;
    std::ostringstream s;
    s << "epoch " << t.epoch() + 1 << "/" << o.epochs << " " << core::phase_name(phase) << last_status;
    bar.update(static_cast<long>(t.epoch()), s.str());
  }

  template <class U>
  bool on_epoch_end(U& t, const core::EpochStats& st) {
    const auto state = core::trainer_state(t);  // collective across ranks: every rank takes part
    if (!main_rank) return io::interrupted();
    if (st.skipped_updates > 0)
      std::cerr << "\nfinetune: epoch " << st.epoch + 1 << ": " << st.skipped_updates << " update(s) skipped: " << st.skip_reason << "\n";
    auto j = core::epoch_record(st, t.config().learning_rate);
    const int64_t step = st.epoch + 1;
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "epoch" && it->is_number()) events->scalar(it.key(), it->template get<double>(), step);
    events->flush();
    {
      std::ofstream f(run / "metrics.jsonl", std::ios::app);
      f << j.dump() << '\n';
    }
    write_grid(step);
    write_curves();
    store.save(t.epoch(), state, {{"producer", o.producer}});
    char buf[160];
    if (std::isnan(st.anchor_reward_mean))  // no anchor sampled (every term absolute)
      std::snprintf(buf, sizeof buf, " | reward %.4f kl %.2e", st.reward_mean, st.approx_kl);
    else
      std::snprintf(buf, sizeof buf, " | reward %.4f (anchor %.4f) kl %.2e", st.reward_mean, st.anchor_reward_mean, st.approx_kl);
    last_status = buf;
    if (std::isfinite(st.anchor_kl)) {
      std::snprintf(buf, sizeof buf, " KL(anchor) %.2e", st.anchor_kl);
      last_status += buf;
    }
    bar.update(static_cast<long>(t.epoch()), "epoch " + std::to_string(step) + "/" + std::to_string(o.epochs) + last_status);
    if (io::interrupted()) {
      std::cerr << "\nfinetune: interrupted; checkpoint of epoch " << step << " written to " << (run / "checkpoints").string()
                << "; continue with --resume\n";
      return true;
    }
    return false;
  }
};

}  // namespace detail

/**
 * @brief Joins the ranks of this run (torchrun's environment, or one process), opens its folder on rank 0 (locked;
 *        a resume must not change the settings, see RunFolder), then calls @p body.
 * @param resolved the run's settings; `world_size` is added (batch sizes are per rank, as in ddpo-pytorch, so
 *        the rank count is part of what the run computes)
 * @param o where and how the run is written
 * @param timeout how long a rank waits for the others
 * @param body `nlohmann::json(const nlohmann::json& resolved, core::Distributed&)`: loads the models, builds the
 *        trainer and calls finetune()
 * @throws std::invalid_argument when the ranks' settings differ or the folder holds another run
 */
template <class Body>
nlohmann::json run_in_folder(nlohmann::json resolved, const FinetuneRunOptions& o, std::chrono::seconds timeout, Body&& body) {
  auto dopt = core::DistributedOptions::from_env();
  dopt.timeout = timeout;
  resolved["world_size"] = dopt.world_size;
  core::Distributed dist(dopt);
  dist.require_same("the run's settings", resolved.dump());
  std::optional<RunFolder> folder;  // held (locked) until the run ends
  if (dist.is_main()) folder.emplace(o.out, resolved, o.resume, o.quiet);
  dist.barrier();  // rank 0 checked the folder before any rank loads anything
  return body(resolved, dist);
}

/**
 * @brief Trains @p trainer to `o.epochs` epochs in the run folder; returns the metrics.json summary.
 *
 * Writes config.json first (from here on the folder holds a run), resumes from the newest intact checkpoint when
 * asked (rank 0 first: it may set a corrupt newest file aside, the others then read the same intact one),
 * checkpoints after every epoch, stops cleanly on SIGINT (checkpoint written, `interrupted` in the summary), and
 * finally saves `adapters.safetensors` and metrics.json. Ranks other than 0 write nothing.
 * @param trainer a core::Trainer whose policy has `save_adapters` (policy::LoraAcePolicy)
 * @param o where and how the run is written
 * @param resolved the run's settings (config.json; its `name` labels the summary)
 * @param dist the run's process group (world size 1 for one process)
 * @throws std::invalid_argument for grid_every < 1
 */
template <class T>
nlohmann::json finetune(T& trainer, const FinetuneRunOptions& o, const nlohmann::json& resolved, core::Distributed& dist) {
  namespace fs = std::filesystem;
  if (o.grid_every < 1) throw std::invalid_argument("finetune: grid_every must be >= 1, got " + std::to_string(o.grid_every));
  const fs::path run = o.out;
  const bool main_rank = dist.is_main();
  if (main_rank) io::write_json(run / "config.json", resolved);
  // Rank 0 prepares the checkpoint folder (and drops stale temporaries) before the others look into it.
  std::optional<io::CheckpointStore> store0;
  if (main_rank) store0.emplace(run / "checkpoints", o.keep_checkpoints);
  dist.barrier();
  detail::FinetuneCallbacks<T> cb{o,
                                  run,
                                  trainer,
                                  main_rank ? std::optional<io::EventWriter>(std::in_place, run) : std::nullopt,
                                  main_rank ? std::move(*store0) : io::CheckpointStore(run / "checkpoints", o.keep_checkpoints, false),
                                  io::Progress("finetune " + o.name, static_cast<long>(o.epochs), o.quiet || !main_rank),
                                  std::string(),
                                  main_rank,
                                  false,
                                  torch::Tensor()};
  if (o.resume) {
    std::optional<io::LoadedCheckpoint> ck;
    if (main_rank) ck = cb.store.load_latest(std::cerr);
    dist.barrier();
    if (!main_rank) {
      std::ostringstream quiet;
      ck = cb.store.load_latest(quiet);
    }
    if (ck) {
      core::load_trainer_state(trainer, ck->tensors, ck->file.string());
      cb.bar.start_at(static_cast<long>(trainer.epoch()));
      if (!o.quiet && main_rank) std::cerr << "finetune: resumed from " << ck->file.string() << " (epoch " << trainer.epoch() << ")\n";
    } else if (!o.quiet && main_rank) {
      std::cerr << "finetune: --resume: no intact checkpoint in " << (run / "checkpoints").string() << "; starting at epoch 0\n";
    }
  }
  if (main_rank) truncate_jsonl(run / "metrics.jsonl", trainer.epoch());
  if (trainer.epoch() == 0) cb.write_grid(0);

  io::install_interrupt_handler();
  bool interrupted = false;
  while (trainer.epoch() < o.epochs) {
    trainer.train_epoch(cb);
    if (trainer.stopped()) {
      interrupted = true;
      break;
    }
  }
  const std::string name = resolved.value("name", o.name);
  if (!main_rank) return {{"name", name}, {"epochs_completed", trainer.epoch()}, {"interrupted", interrupted}};
  trainer.policy().save_adapters(run / "adapters.safetensors", {{"epoch", std::to_string(trainer.epoch())}});

  // The full history (including epochs before a resume) from metrics.jsonl.
  nlohmann::json hist = read_jsonl(run / "metrics.jsonl");
  nlohmann::json summary{{"name", name},
                         {"epochs_completed", trainer.epoch()},
                         {"interrupted", interrupted},
                         {"adapters", (run / "adapters.safetensors").string()},
                         {"history", hist}};
  if (!hist.empty()) summary["final"] = hist.back();
  io::write_json(run / "metrics.json", summary);
  return summary;
}

}  // namespace cxrl::app
