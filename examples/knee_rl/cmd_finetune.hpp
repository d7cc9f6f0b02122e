// `finetune`: DDPO with LoRA + ACE on the knee anchor against RewardSum<Absolute<SideReward>, Absolute<GradeReward>>.
// `evaluate`: the run against its anchor on held-out captions (the test phrasing pool, never trained on), both
// rewards plus a judge classifier trained apart, as paired bootstrap intervals. `main`: both, the README's command.
// Everything but the world, the rewards and the defaults is the library's (cxrl/app/).
#pragma once

#include "assets.hpp"
#include "rewards.hpp"
#include "world.hpp"

#include <cxrl/app/finetune.hpp>
#include <cxrl/app/heldout.hpp>
#include <cxrl/app/policy_settings.hpp>
#include <cxrl/app/precision_choice.hpp>
#include <cxrl/app/settings.hpp>
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/json_file.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace knee_rl {

struct FinetuneOptions {
  cxrl::app::FinetuneRunOptions run;
  std::string out = "runs/knee";
  std::string anchor = (assets_dir() / "anchor").string();
  std::string classifier = (assets_dir() / "kl_classifier.pt").string();
  uint64_t world_seed = 0;
  cxrl::app::PolicySettings policy;
  cxrl::core::TrainerConfig trainer;
  double w_side = 10.0, w_grade = 1.0;  // r_side is a brightness difference of ~0.05; p(grade) spans [0, 1]
  int64_t n_prompts = 5000;
  int64_t grid_prompts = 4;
  int64_t threads = 0;
  int64_t dist_timeout = 300;

  FinetuneOptions() {
    // CPU-sized (docs/cost.md has the GPU-sized values): 10 DDIM steps, half of them trained per sample.
    run.epochs = 30;
    policy.steps = 10;
    trainer.batch_size = 16;
    trainer.num_batches = 2;
    trainer.train_batch_size = 16;
    trainer.timestep_fraction = 0.5;
    trainer.learning_rate = 1e-3;
    trainer.clip_range = 1e-3;
  }
};

/// The captions of the first @p n studies of a split (text only, nothing is rendered): training captions are the
/// prompt pool, test captions (the held-out wording pool) the grid and the evaluation.
inline std::vector<std::string> captions(uint64_t world_seed, cxrl::data::Split split, std::size_t n) {
  KneeDataset d(world_seed, split, n, 32);
  std::vector<std::string> v;
  for (std::size_t i = 0; i < d.size(); ++i) v.push_back(d.prompt(i));
  return v;
}

inline void check_finetune(const FinetuneOptions& o) {
  o.policy.check();
  need_asset(std::filesystem::path(o.anchor) / "model_index.json", "knee anchor (diffusers folder)", "--anchor DIR",
             "knee_rl pretrain");
  need_asset(o.classifier, "KL classifier (TorchScript)", "--classifier FILE.pt",
             "knee_rl export-data, then scripts/train_knee_classifier.py");
  if (o.run.epochs < 1) throw std::invalid_argument("finetune: --epochs must be >= 1");
  if (o.n_prompts < 1) throw std::invalid_argument("finetune: --n_prompts must be >= 1");
  if (o.w_side < 0 || o.w_grade < 0) throw std::invalid_argument("finetune: reward weights must be >= 0");
}

inline nlohmann::json run_finetune(FinetuneOptions o, const nlohmann::json& settings) {
  check_finetune(o);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  o.run.out = o.out;
  o.run.name = "knee_rl";
  o.run.producer = "knee_rl finetune";
  o.run.grid_seed = o.policy.seed + 7777;
  auto resolved = settings;
  resolved["name"] = "knee_rl";
  auto tc = o.trainer;
  tc.seed = o.policy.seed;  // one seed for the adapters and every trainer generator, as in cxrl_mimic
  return cxrl::app::run_in_folder(resolved, o.run, std::chrono::seconds(o.dist_timeout),
                                  [&](const nlohmann::json& resolved, cxrl::core::Distributed& dist) {
    namespace core = cxrl::core;
    auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(o.anchor);
    auto policy = cxrl::app::make_policy(sd, o.policy);
    nlohmann::json cfg = resolved;  // + the precision in use and how it was chosen
    cxrl::app::choose_run_precision(policy, o.policy.precision, 2 * o.trainer.batch_size, o.out, o.run.resume, dist, cfg,
                                    o.run.quiet, tc.kl_weight);
    core::RewardSum rewards(core::Absolute{SideReward{}, o.w_side},
                            core::Absolute{GradeReward(cxrl::nn::TorchScriptClassifier::load(o.classifier)), o.w_grade});
    // Captions repeat (5 grades × 2 sides × a few templates), so ddpo-pytorch's per-prompt statistics apply.
    core::Trainer trainer(policy, cxrl::app::make_sampler(sd, o.policy), std::move(rewards), core::PerPromptStats{},
                          cxrl::app::uniform_prompts(captions(o.world_seed, cxrl::data::Split::train, static_cast<std::size_t>(o.n_prompts))),
                          tc, &dist);
    auto ro = o.run;
    ro.grid_prompts = captions(o.world_seed, cxrl::data::Split::test, static_cast<std::size_t>(o.grid_prompts));
    return cxrl::app::finetune(trainer, ro, cfg, dist);
  });
}

struct EvaluateOptions {
  std::string run = "runs/knee";
  std::string judge = (assets_dir() / "kl_judge.pt").string();
  int64_t n_prompts = 200;
  int64_t seeds = 2;
  int64_t batch = 50;
  int64_t threads = 0;
  bool quiet = false;
};

/// Scores the run against its anchor; writes heldout.md and heldout.json into the run folder and returns the table.
inline cxrl::app::HeldoutComparison run_evaluate(const EvaluateOptions& o) {
  namespace fs = std::filesystem;
  namespace core = cxrl::core;
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  const fs::path run = o.run;
  need_asset(run / "adapters.safetensors", "the run's adapters", "--run DIR", "knee_rl finetune --out DIR");
  need_asset(o.judge, "judge KL classifier (TorchScript)", "--judge FILE.pt",
             "knee_rl export-data --world_seed 1, then scripts/train_knee_classifier.py --seed 1");
  const auto cfg = cxrl::io::read_json(run / "config.json");
  const auto ps = cxrl::app::PolicySettings::from_run_config(cfg);
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(cfg.at("anchor").get<std::string>());
  auto policy = cxrl::app::make_policy(sd, ps);
  policy.load_adapters(run / "adapters.safetensors");
  auto sampler = cxrl::app::make_sampler(sd, ps);
  // The judge's weight is 0: it is reported, not part of the weighted sum the run optimised.
  core::RewardSum rewards(
      core::Absolute{SideReward{}, cfg.at("w_side").get<double>()},
      core::Absolute{GradeReward(cxrl::nn::TorchScriptClassifier::load(cfg.at("classifier").get<std::string>())), cfg.at("w_grade").get<double>()},
      core::Absolute{GradeJudge(cxrl::nn::TorchScriptClassifier::load(o.judge)), 0.0});
  std::vector<uint64_t> seeds;
  for (int64_t s = 0; s < o.seeds; ++s) seeds.push_back(1000 + static_cast<uint64_t>(s));
  const auto prompts = captions(cfg.at("world_seed").get<uint64_t>(), cxrl::data::Split::test, static_cast<std::size_t>(o.n_prompts));
  const auto cmp = cxrl::app::compare_with_anchor(policy, sampler, rewards, prompts, o.batch, seeds, {}, o.quiet);
  std::ofstream(run / "heldout.md") << "# " << run.string() << ": held-out before/after\n\n" << cmp.table();
  cxrl::io::write_json(run / "heldout.json", cmp.to_json());
  return cmp;
}

inline void add_finetune_commands(CLI::App& app) {
  auto bind_finetune = [](cxrl::app::Settings& s, FinetuneOptions& o) {
    cxrl::app::add_run_settings(s, o.run, o.out);
    s.add("anchor", o.anchor, "anchor: a diffusers text-to-image folder");
    s.add("classifier", o.classifier, "KL classifier of r_grade (TorchScript .pt)");
    s.add("world_seed", o.world_seed, "world seed of the prompts");
    cxrl::app::add_policy_settings(s, o.policy);
    cxrl::app::add_trainer_settings(s, o.trainer);
    s.add("w_side", o.w_side, "λ of r_side");
    s.add("w_grade", o.w_grade, "λ of r_grade");
    s.add("n_prompts", o.n_prompts, "training captions to draw prompts from");
    s.add("grid_prompts", o.grid_prompts, "held-out captions in the per-epoch anchor-vs-policy grid");
    s.add("threads", o.threads, "intra-op threads (0 = LibTorch default)");
    s.add("dist_timeout", o.dist_timeout, "seconds a rank waits for the others before it fails");
  };
  {
    auto* cmd = app.add_subcommand("finetune", "DDPO with LoRA + ACE on the knee anchor against r_side and r_grade");
    auto o = std::make_shared<FinetuneOptions>();
    auto s = std::make_shared<cxrl::app::Settings>(cmd);
    bind_finetune(*s, *o);
    cmd->callback([o, s] {
      s->resolve();
      const auto summary = run_finetune(*o, s->resolved());
      if (summary.value("interrupted", false)) throw CLI::RuntimeError(130);
    });
  }
  auto bind_evaluate = [](cxrl::app::Settings& s, EvaluateOptions& o, bool with_run) {
    if (with_run) s.add("run", o.run, "run folder");
    s.add("judge", o.judge, "judge KL classifier trained apart (TorchScript .pt)");
    s.add("eval_prompts", o.n_prompts, "held-out captions");
    s.add("eval_seeds", o.seeds, "noise seeds per caption");
    s.add("eval_batch", o.batch, "captions per sampling call");
  };
  {
    auto* cmd = app.add_subcommand("evaluate", "a run against its anchor on held-out captions, with paired 95% intervals");
    auto o = std::make_shared<EvaluateOptions>();
    auto s = std::make_shared<cxrl::app::Settings>(cmd);
    bind_evaluate(*s, *o, true);
    s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
    s->flag("quiet", o->quiet, "no progress output");
    cmd->callback([o, s] {
      s->resolve();
      std::cout << run_evaluate(*o).table();
    });
  }
  auto* cmd = app.add_subcommand("main", "finetune, then evaluate on held-out captions (the README's command)");
  auto f = std::make_shared<FinetuneOptions>();
  auto e = std::make_shared<EvaluateOptions>();
  auto s = std::make_shared<cxrl::app::Settings>(cmd);
  f->out = "runs/knee_main";
  bind_finetune(*s, *f);
  bind_evaluate(*s, *e, false);
  cmd->callback([f, e, s] {
    s->resolve();
    const auto t0 = std::chrono::steady_clock::now();
    const auto summary = run_finetune(*f, s->resolved());
    if (summary.value("interrupted", false)) throw CLI::RuntimeError(130);
    e->run = f->out;
    e->threads = f->threads;
    e->quiet = f->run.quiet;
    const auto cmp = run_evaluate(*e);
    const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60;
    std::cout << "\nknee_rl main: " << f->run.epochs << " epochs, " << minutes << " min; held-out captions, anchor vs the tuned policy:\n\n"
              << cmp.table() << "\n(" << (std::filesystem::path(f->out) / "heldout.md").string() << ", curves.png, grids/)\n";
  });
}

}  // namespace knee_rl
