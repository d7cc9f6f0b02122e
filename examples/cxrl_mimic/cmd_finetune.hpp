// `finetune`: CXRL (paper §2–3). LoRA + ACE on the frozen anchor, stochastic DDIM with CFG, DDPO
// PPO-clip updates against RewardSum<Absolute<Align>, Comparative<Diag>, Comparative<Consist>> with
// λ = (1, 10, 10); the comparative terms score the anchor's sample from the same x_T. Ablations:
// --no-ace, --no-rlcf (every term absolute: direct feedback), --rewards (any subset; the others get λ = 0
// and are still logged).
//
// The run folder (--out) is cxrl::app's (app/run_folder.hpp has its layout).
#pragma once

#include "app.hpp"
#include "reward_models.hpp"
#include "settings_groups.hpp"
#include "world.hpp"

#include <cxrl/app/finetune.hpp>
#include <cxrl/app/precision_choice.hpp>
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/distributed.hpp>
#include <cxrl/core/launch.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/cxr/reward_set.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
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
  double kl_weight = 0.0;      // β of DPOK's KL penalty toward the anchor (CXRL: 0)
  int64_t nproc = 1;           // local ranks to start (data parallelism; batch sizes are per rank, as in ddpo-pytorch)
  int64_t dist_timeout = 300;  // seconds a rank waits for the others before failing
  int64_t n_prompts = 5000;  // training-split reports to draw prompts from
  int64_t grid_prompts = 4;  // held-out reports in the anchor-vs-policy grid (0 = none)
  int64_t grid_every = 5;    // epochs between grids (also drawn before training and after the last epoch)
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
  need(o.grid_every >= 1, "--grid_every must be >= 1");
  need(o.keep_checkpoints >= 1, "--keep_checkpoints must be >= 1");
  need(o.anchor_samples >= 1, "--anchor_samples must be >= 1");
  need(o.kl_weight >= 0, "--kl_weight must be >= 0");
  need(o.nproc >= 1 && o.nproc <= 256, "--nproc must be in [1, 256]");
  need(o.dist_timeout >= 1, "--dist_timeout must be >= 1 (seconds)");
  need(o.w_align >= 0 && o.w_diag >= 0 && o.w_consist >= 0, "reward weights must be >= 0");
}

/// How the library writes the run (folder, checkpoints, grids, progress).
inline cxrl::app::FinetuneRunOptions run_options(const FinetuneOptions& o) {
  cxrl::app::FinetuneRunOptions r;
  r.out = o.out;
  r.epochs = o.epochs;
  r.keep_checkpoints = o.keep_checkpoints;
  r.resume = o.resume;
  r.quiet = o.quiet;
  r.name = default_run_name(o);
  r.producer = "cxrl_mimic finetune";
  r.grid_seed = o.policy.seed + 7777;
  r.grid_every = o.grid_every;
  return r;
}

/// The trainer's settings of a run.
inline cxrl::core::TrainerConfig trainer_config(const FinetuneOptions& o) {
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
  tc.kl_weight = o.kl_weight;
  tc.seed = o.policy.seed;
  return tc;
}

namespace detail {

template <class RS>
nlohmann::json run_finetune_with(const FinetuneOptions& o, const nlohmann::json& resolved, RS rewards, cxrl::core::Distributed& dist) {
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(o.assets.roentgen);
  auto policy = make_policy(sd, o.policy);
  nlohmann::json cfg = resolved;  // + the precision in use and how it was chosen
  cxrl::app::choose_run_precision(policy, o.policy.precision, 2 * o.batch_size, o.out, o.resume, dist, cfg, o.quiet,
                                  o.kl_weight);
  auto sampler = make_sampler(sd, o.policy);
  auto prompt_fn = cxrl::app::uniform_prompts(impressions(o.world, cxrl::data::Split::train, static_cast<std::size_t>(o.n_prompts)));
  const auto tc = trainer_config(o);
  // Reports are (nearly) unique, so ddpo's per-prompt statistics fall back to the batch: whiten the batch.
  cxrl::core::Trainer trainer(policy, sampler, std::move(rewards), cxrl::core::BatchWhitening{}, prompt_fn, tc, &dist);

  auto ro = run_options(o);
  if (o.grid_prompts > 0) ro.grid_prompts = impressions(o.world, cxrl::data::Split::test, static_cast<std::size_t>(o.grid_prompts));
  return cxrl::app::finetune(trainer, ro, cfg, dist);
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
          {"steps", p.steps}, {"eta", p.eta}, {"guidance", p.guidance}, {"precision", p.precision},
          {"rewards", o.rewards}, {"w_align", o.w_align}, {"w_diag", o.w_diag}, {"w_consist", o.w_consist},
          {"no_rlcf", o.no_rlcf}, {"epochs", o.epochs}, {"batch_size", o.batch_size}, {"num_batches", o.num_batches},
          {"train_batch_size", o.train_batch_size}, {"num_inner_epochs", o.num_inner_epochs},
          {"gradient_accumulation_steps", o.gradient_accumulation_steps}, {"timestep_fraction", o.timestep_fraction},
          {"learning_rate", o.learning_rate}, {"clip_range", o.clip_range}, {"adv_clip_max", o.adv_clip_max},
          {"max_grad_norm", o.max_grad_norm}, {"anchor_samples", o.anchor_samples}, {"kl_weight", o.kl_weight},
          {"nproc", o.nproc}, {"dist_timeout", o.dist_timeout}, {"n_prompts", o.n_prompts},
          {"grid_prompts", o.grid_prompts}, {"grid_every", o.grid_every}, {"keep_checkpoints", o.keep_checkpoints},
          {"threads", o.threads}};
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
  check_finetune_options(o);
  check_world(o.world);
  check_assets(o.assets);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  // One process, or one rank of a run started by `--nproc N` or torchrun (RANK, WORLD_SIZE, MASTER_ADDR, …).
  return cxrl::app::run_in_folder(finetune_config(o), run_options(o), std::chrono::seconds(o.dist_timeout),
                                  [&](const nlohmann::json& resolved, cxrl::core::Distributed& dist) {
                                    return run_finetune_rewards(o, resolved, dist);
                                  });
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
  s->add("kl_weight", o->kl_weight, "β of a KL penalty toward the anchor on each trained step (DPOK; CXRL: 0)");
  s->add("nproc", o->nproc, "local ranks of one data-parallel run (batch sizes are per rank); under torchrun leave at 1");
  s->add("dist_timeout", o->dist_timeout, "seconds a rank waits for the others before it fails");
  s->add("n_prompts", o->n_prompts, "training-split reports to draw prompts from");
  s->add("grid_prompts", o->grid_prompts, "held-out reports in the anchor-vs-policy grid");
  s->add("grid_every", o->grid_every, "epochs between grids (also drawn before training and after the last epoch)");
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
