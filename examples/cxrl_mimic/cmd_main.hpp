// `main` and `reproduce`: the README's main job and the paper's full set of runs on the phantom world, from the
// shipped anchor, reward models and judges:
//  1. the phantom contact sheet, the data summary of its splits and the labeler round trip;
//  2. CXRL fine-tuning for --seeds seeds (reproduce: also w/o ACE and w/o RLCF per seed, and one run per single
//     reward for Table 2b), --jobs single-threaded child processes at a time;
//  3. evaluate: every model scored in child processes (the anchor once), then the tables with paired bootstrap
//     intervals against the anchor, the captioned sample sheet and each run's reward curves.
// Everything lands in --out (runs in <out>/runs). Rerunning continues unfinished runs and reuses cached scores.
#pragma once

#include "cmd_data.hpp"
#include "cmd_evaluate.hpp"
#include "cmd_finetune.hpp"
#include "cmd_phantoms.hpp"
#include "cmd_pretrain.hpp"

#include <cxrl/cxr/labeler.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/io/progress.hpp>

#include <CLI/CLI.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cerrno>
#include <cstdio>
#include <map>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace cxrl_mimic {

/// The phantom world's fine-tuning settings (docs/sweep.md, chosen on validation reports). They differ from the
/// paper's (finetune's defaults) where a CPU budget forces it: 10 DDIM steps (20) and half of the timesteps trained
/// per sample. 45 epochs of 32 samples at learning rate 5e-4 (round 3): in 15 epochs no reward moved beyond noise,
/// larger steps (1e-3 over 60 epochs, 3e-3 over 30) cost FID or made every score worse, and 45 epochs scored as well
/// as 60 under the judges in less time.
inline FinetuneOptions phantom_run() {
  FinetuneOptions r;
  r.policy.steps = 10;
  r.epochs = 45;
  r.learning_rate = 5e-4;
  r.timestep_fraction = 0.5;
  return r;
}

struct MainOptions {
  std::string out = "report";
  std::size_t label_reports = 2000;
  std::uint64_t seed = 0;  // phantom world seed
  FinetuneOptions run = phantom_run();  // settings shared by every run (out, rewards, switches, seed set per run)
  int64_t seeds = 2;       // seeds of CXRL (and of each ablation): one row, intervals over reports and seeds
  int64_t jobs = 2;        // child processes at a time (single-threaded)
  bool ablations = false;  // w/o ACE and w/o RLCF
  bool single_rewards = false;  // Table 2b: one run per reward
  int64_t n_eval = 500;
  int64_t n_diversity = 100;
  uint64_t eval_seed = 1234;
  int64_t replicates = 1000;
  bool quiet = false;
};

/// `reproduce`: every row of the paper's tables with 3 seeds, into docs/results.
inline MainOptions reproduce_defaults() {
  MainOptions o;
  o.out = (source_dir() / "docs" / "results").string();
  o.seeds = 3;
  o.ablations = true;
  o.single_rewards = true;
  return o;
}

/// One child process: `cxrl_mimic <subcommand> --config <file> --threads 1 --quiet`.
struct ChildJob {
  std::string label;      // for progress and errors
  std::string subcommand; // finetune | evaluate
  std::filesystem::path config;
  std::function<bool()> succeeded;  // checked after a zero exit status
};

/// Runs @p jobs_list @p jobs at a time as single-threaded child processes. Small models use one core poorly (two
/// intra-op threads are barely faster than one), so separate processes side by side nearly double the throughput.
inline void run_in_processes(const std::vector<ChildJob>& jobs_list, int64_t jobs, bool quiet) {
  cxrl::io::install_interrupt_handler();
  std::map<pid_t, std::size_t> active;
  std::size_t next = 0, failed = 0;
  std::string failures;
  const auto t0 = std::chrono::steady_clock::now();
  auto launch = [&](std::size_t i) {
    const auto& j = jobs_list[i];
    std::vector<std::string> args{"cxrl_mimic", j.subcommand, "--config", j.config.string(), "--threads", "1", "--quiet"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("main: fork failed");
    if (pid == 0) {
      ::execv("/proc/self/exe", argv.data());
      std::perror("main: execv /proc/self/exe");
      std::_Exit(127);
    }
    active[pid] = i;
    if (!quiet) std::cerr << "main: started " << j.subcommand << " " << i + 1 << "/" << jobs_list.size() << ": " << j.label << "\n";
  };
  while (next < jobs_list.size() || !active.empty()) {
    while (next < jobs_list.size() && static_cast<int64_t>(active.size()) < jobs && !cxrl::io::interrupted()) launch(next++);
    if (active.empty()) break;
    int status = 0;
    const pid_t pid = ::wait(&status);
    if (pid < 0 && errno == EINTR) continue;  // Ctrl-C: the children checkpoint and exit; keep collecting them
    if (pid < 0) throw std::runtime_error("main: wait failed");
    const auto i = active.at(pid);
    active.erase(pid);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && jobs_list[i].succeeded();
    const auto el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ok) {
      ++failed;
      failures += " " + jobs_list[i].label;
    }
    if (!quiet) std::cerr << "main: " << jobs_list[i].label << (ok ? " finished" : " FAILED") << " (" << static_cast<long>(el) << " s elapsed)\n";
  }
  if (next < jobs_list.size()) failures += " (and " + std::to_string(jobs_list.size() - next) + " not started)";
  if (failed || next < jobs_list.size())
    throw std::runtime_error("main: " + std::to_string(failed) + " job(s) failed or were interrupted:" + failures + "; rerun to continue them");
}

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
  cxrl::cxr::PhantomDatasetOptions po;
  po.seed = o.seed;
  po.n_test = o.label_reports;
  po.tokenizer_dir = d.tokenizer_dir;
  cxrl::cxr::PhantomDataset test(po, cxrl::data::Split::test);
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

  // Fine-tuning: CXRL and the ablations per seed, then the single-reward runs of Table 2b.
  struct Plan {
    std::string dir, rewards;
    bool no_ace, no_rlcf;
    uint64_t seed;
  };
  std::vector<Plan> plan;
  for (int64_t k = 0; k < o.seeds; ++k) {
    const auto sd = static_cast<uint64_t>(k);
    const auto tag = "_seed" + std::to_string(k);
    const auto all = cxrl::cxr::CxrRewardSet::all().str();
    plan.push_back({"cxrl" + tag, all, false, false, sd});
    if (o.ablations) {
      plan.push_back({"no_ace" + tag, all, true, false, sd});
      plan.push_back({"no_rlcf" + tag, all, false, true, sd});
    }
  }
  if (o.single_rewards)
    for (auto r : cxrl::cxr::kCxrRewards) {
      const std::string name(cxrl::cxr::reward_name(r));
      plan.push_back({name + "_only_seed0", name, false, false, 0});
    }
  std::vector<FinetuneOptions> runs;
  for (const auto& p : plan) {
    auto r = o.run;
    r.out = (out / "runs" / p.dir).string();
    r.rewards = p.rewards;
    r.policy.no_ace = p.no_ace;
    r.no_rlcf = p.no_rlcf;
    r.policy.seed = p.seed;
    r.world.world_seed = o.seed;
    r.quiet = o.quiet;
    r.resume = std::filesystem::exists(std::filesystem::path(r.out) / "config.json");  // rerunning main continues
    runs.push_back(r);
  }
  std::vector<std::string> run_dirs;
  for (const auto& r : runs) run_dirs.push_back(r.out);
  const auto t0 = std::chrono::steady_clock::now();
  if (o.jobs <= 1) {
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (!o.quiet) std::cerr << "main: run " << i + 1 << "/" << runs.size() << ": " << run_dirs[i] << "\n";
      if (run_finetune(runs[i]).value("interrupted", false))
        throw std::runtime_error("main: interrupted during " + run_dirs[i] + "; rerun main to continue");
    }
  } else {
    std::vector<ChildJob> jobs;
    for (const auto& r : runs) {
      const fs::path cfg = fs::path(r.out).string() + ".config.json";
      auto j = finetune_config(r);
      j["resume"] = r.resume;
      write_json(cfg, j);
      jobs.push_back({r.out, "finetune", cfg, [out = r.out] { return fs::exists(fs::path(out) / "adapters.safetensors"); }});
    }
    run_in_processes(jobs, o.jobs, o.quiet);
  }
  const double finetune_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  EvaluateOptions e;
  e.runs = run_dirs;
  e.out = out.string();
  e.assets = o.run.assets;
  e.world = o.run.world;
  e.world.world_seed = o.seed;
  e.sampling = o.run.policy;
  e.n_eval = o.n_eval;
  e.n_diversity = o.n_diversity;
  e.eval_seed = o.eval_seed;
  e.replicates = o.replicates;
  e.quiet = o.quiet;
  e.threads = o.run.threads;
  const auto t1 = std::chrono::steady_clock::now();
  if (o.jobs > 1) {
    // Score a slice of the reports of every model (the anchor with the real images, then each run) per child
    // process, so that --jobs processes stay busy to the end whatever the number of models; the tables below merge
    // the slices.
    e.shards = o.jobs;
    std::vector<ChildJob> jobs;
    auto score_job = [&](const std::string& label, std::vector<std::string> runs_of_job) {
      for (int64_t k = 0; k < e.shards; ++k) {
        auto ej = e;
        ej.runs = runs_of_job;
        ej.score_only = true;
        ej.shard = k;
        const auto name = label + ".slice" + std::to_string(k);
        const fs::path cfg = out / "scores" / (name + ".config.json");
        write_json(cfg, evaluate_config(ej));
        jobs.push_back({"score " + name, "evaluate", cfg, [] { return true; }});
      }
    };
    score_job("anchor", {});
    for (const auto& r : run_dirs) score_job(fs::path(r).filename().string(), {r});
    run_in_processes(jobs, o.jobs, o.quiet);
  }
  const auto tables = run_evaluate(e);
  const double evaluate_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  std::ofstream md(out / "README.md");
  md << "# cxrl_mimic " << (o.ablations ? "reproduce" : "main job") << " (phantom world)\n\n"
     << "- `tables.md`, `tables.json`: the paper's Tables 1, 2a, 2b and 3 for the anchor and " << plan.size() << " run(s) ("
     << o.seeds << " seed(s) per row), on " << o.n_eval << " held-out PA test reports, scored by the judges with paired bootstrap "
     << "95 % intervals against the anchor (schema: docs/results_schema.md)\n"
     << "- `samples.png`: rows = real test images, the anchor, the first run of each row; each report under its column\n"
     << "- `runs/<name>`: each fine-tuning run (config, checkpoints, TensorBoard events, metrics.jsonl, `curves.png`, per-epoch "
     << "anchor-vs-policy grids, adapters); fine-tuning took " << static_cast<long>(finetune_s) << " s, evaluation "
     << static_cast<long>(evaluate_s) << " s\n"
     << "- `phantoms.png`: contact sheet (each observation at two severities, devices, posture extremes)\n"
     << "- `data.json`: pairs per split, views, label counts per observation\n"
     << "- `labeler_agreement.json`: CheXpert-style labeler vs. the report writer's labels on " << test.size()
     << " held-out-phrasing reports: " << 100.0 * double(a) / double(t) << " % of (report, observation) pairs\n";
  std::cout << "main: wrote " << out.string() << " (" << plan.size() << " runs, fine-tuning " << static_cast<long>(finetune_s)
            << " s, evaluation " << static_cast<long>(evaluate_s) << " s)\n";
  (void)tables;
}

inline void add_main_like_command(CLI::App& app, const std::string& name, const std::string& help, MainOptions defaults) {
  auto* cmd = app.add_subcommand(name, help);
  auto o = std::make_shared<MainOptions>(std::move(defaults));
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "report folder");
  s->add("label_reports", o->label_reports, "held-out reports for the labeler round trip");
  s->add("seed", o->seed, "phantom world seed");
  add_asset_settings(*s, o->run.assets);
  s->add("seeds", o->seeds, "seeds of CXRL and of each ablation");
  s->add("jobs", o->jobs, "child processes at a time (> 1: single-threaded fine-tuning and scoring processes)");
  s->add("ablations", o->ablations, "also run w/o ACE and w/o RLCF (true/false)");
  s->add("single_rewards", o->single_rewards, "also run one model per reward for Table 2b (true/false)");
  s->add("epochs", o->run.epochs, "epochs per run");
  s->add("batch_size", o->run.batch_size, "prompts per sampling call");
  s->add("num_batches", o->run.num_batches, "sampling calls per epoch");
  s->add("steps", o->run.policy.steps, "DDIM steps");
  s->add("train_batch_size", o->run.train_batch_size, "samples per training minibatch");
  s->add("timestep_fraction", o->run.timestep_fraction, "fraction of the denoising steps trained per sample");
  s->add("learning_rate", o->run.learning_rate, "AdamW learning rate");
  s->add("clip_range", o->run.clip_range, "PPO clip range");
  s->add("anchor_samples", o->run.anchor_samples, "anchor samples per prompt for the comparative terms");
  s->add("n_eval", o->n_eval, "held-out PA test reports in the tables");
  s->add("eval_seed", o->eval_seed, "seed of the evaluation noise and of the bootstrap");
  s->add("n_diversity", o->n_diversity, "reports with 4 generations each for MS-SSIM");
  s->add("replicates", o->replicates, "bootstrap replicates of each interval");
  s->add("threads", o->run.threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_main(*o);
  });
}

inline void add_main_command(CLI::App& app) {
  add_main_like_command(app, "main", "The README's main job: CXRL against the anchor on the phantom world, judged apart from the rewards", {});
  add_main_like_command(app, "reproduce",
                        "The paper's Tables 1, 2a, 2b and 3 with 3 seeds of CXRL, w/o ACE and w/o RLCF and the single-reward runs "
                        "(into docs/results)",
                        reproduce_defaults());
}

}  // namespace cxrl_mimic
