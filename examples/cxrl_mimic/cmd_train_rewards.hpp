// `train-rewards` and `train-judges`: train the phantom world's three scoring models (cxr/reward_training.hpp) and
// write them in the key layouts of the real checkpoints with their sidecars (cxr/reward_model_files.hpp), so the
// library's loaders read them unchanged:
//  - the reward models (assets/phantom/rewards) on the studies the anchor and the RL prompts come from;
//  - the judges (assets/phantom/judges) that score Tables 1–3: the same architectures trained apart, on another
//    world seed (other patients and reports), with other widths, seeds and four times the data.
// With --roundtrip DIR (a diffusers folder with a vae/, or an AutoencoderKL folder), half of each training batch is replaced by the images as
// that model's decoder renders them (encode → decode), so that the scorers are robust to generator artefacts.
// Held-out quality numbers go to train_rewards_metrics.json.
//
// Files written into --out:
//   canonical.png, canonical.safetensors ("canonical" [1, H, W] in [0, 1])
//   posture_net.safetensors + posture_net.json, xrv_densenet.safetensors + xrv_densenet.json,
//   cxr_clip.safetensors + cxr_clip.json, train_rewards_config.json, train_rewards_metrics.json
#pragma once

#include "app.hpp"
#include "paths.hpp"
#include "running_loss.hpp"

#include <cxrl/cxr/canonical.hpp>
#include <cxrl/cxr/reward_model_files.hpp>
#include <cxrl/cxr/reward_training.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl_mimic {

/// Settings of `train-rewards` / `train-judges` (every field is a `--name` option and a --config key).
struct TrainRewardsOptions {
  std::string out = (default_assets_dir() / "rewards").string();
  std::string only;  // "" = all three; else posture | diag | clip
  std::string vocab = default_wordpiece_vocab().string();
  std::string roundtrip;         // diffusers folder whose VAE renders half of each batch ("" = none)
  double roundtrip_fraction = 0.5;
  int resolution = 64;           // the shipped anchor's decoded resolution
  uint64_t world_seed = 0;       // phantom world the images come from (the anchor's: 0)
  int64_t n_train = 5000;
  int64_t n_validate = 500;
  int64_t n_test = 1000;         // held-out metrics on world 0's test split (the evaluation reports)
  int64_t canonical_n = 500;     // CXRL: the mean of 500 random training images
  uint64_t seed = 0;             // initialisation and batch sampling
  int64_t threads = 0;
  bool quiet = false;
  int64_t posture_steps = 2000;
  int64_t posture_batch_size = 32;
  double posture_lr = 1e-3;
  int64_t posture_width = 8;
  double posture_psi_weight = 1.0;
  int64_t diag_steps = 2500;
  int64_t diag_batch_size = 32;
  double diag_lr = 1e-3;
  int64_t diag_growth_rate = 8;
  std::vector<int64_t> diag_block_config{2, 2, 2, 2};
  int64_t diag_init_features = 16;
  std::string diag_threshold = "youden";
  int64_t clip_steps = 3000;
  int64_t clip_batch_size = 32;
  double clip_lr = 5e-4;
  int64_t clip_width = 8;
  int64_t clip_text_hidden = 32;
  int64_t clip_text_layers = 2;
  int64_t clip_projection_dim = 32;
  int64_t clip_max_length = 128;
  int64_t clip_eval_batch = 32;
};

/// The judges' defaults: another world seed, other initialisation seeds, twice the widths, 4× the data.
inline TrainRewardsOptions judge_defaults() {
  TrainRewardsOptions o;
  o.out = (default_assets_dir() / "judges").string();
  o.world_seed = 1;
  o.seed = 1000;
  o.n_train = 20000;
  o.posture_width = 16;
  o.posture_steps = 3000;
  o.diag_growth_rate = 12;
  o.diag_init_features = 24;
  o.diag_steps = 4000;
  o.clip_width = 16;
  o.clip_text_hidden = 48;
  o.clip_projection_dim = 48;
  o.clip_steps = 5000;
  return o;
}

/// Thrown from inside a training loop when SIGINT arrives (caught by run_train_rewards).
struct TrainRewardsInterrupted : std::runtime_error {
  TrainRewardsInterrupted() : std::runtime_error("interrupted") {}
};

inline void check_train_rewards_options(const TrainRewardsOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("train-rewards: " + what);
  };
  need(o.only.empty() || o.only == "posture" || o.only == "diag" || o.only == "clip",
       "--only must be posture, diag or clip (or absent for all three), got '" + o.only + "'");
  need(o.resolution >= 32, "--resolution must be >= 32 (five stride-2 stages), got " + std::to_string(o.resolution));
  need(o.n_train >= 2 && o.n_validate >= 2 && o.n_test >= 2, "--n_train, --n_validate, --n_test must be >= 2");
  need(o.canonical_n >= 1, "--canonical_n must be >= 1");
  need(o.roundtrip_fraction >= 0 && o.roundtrip_fraction <= 1, "--roundtrip_fraction must be in [0, 1]");
  need(o.posture_steps >= 0 && o.diag_steps >= 0 && o.clip_steps >= 0, "step counts must be >= 0");
  need(o.posture_batch_size >= 1 && o.diag_batch_size >= 1 && o.clip_batch_size >= 2,
       "batch sizes must be >= 1 (--clip_batch_size >= 2: the CLIP loss needs negatives)");
  need(o.posture_lr > 0 && o.diag_lr > 0 && o.clip_lr > 0, "learning rates must be > 0");
  need(o.posture_width >= 1 && o.clip_width >= 1 && o.diag_growth_rate >= 1 && o.diag_init_features >= 1, "widths must be >= 1");
  need(o.posture_psi_weight >= 0, "--posture_psi_weight must be >= 0");
  cxrl::cxr::parse_threshold_rule(o.diag_threshold, "train-rewards: --diag_threshold");
  need(o.clip_text_hidden >= 4 && o.clip_text_hidden % 4 == 0, "--clip_text_hidden must be a positive multiple of 4 (4 heads)");
  need(o.clip_text_layers >= 1 && o.clip_projection_dim >= 1, "--clip_text_layers and --clip_projection_dim must be >= 1");
  need(o.clip_max_length >= 8, "--clip_max_length must be >= 8");
  need(o.clip_eval_batch >= 2 && o.clip_eval_batch <= o.n_test, "--clip_eval_batch must be in [2, n_test]");
}

/// One split of a phantom world rendered once and kept in memory (all three models draw from it).
inline cxrl::cxr::CxrImageSet render_split(const cxrl::cxr::PhantomDataset& d, bool quiet) {
  const auto n = static_cast<int64_t>(d.size());
  cxrl::cxr::CxrImageSet r;
  std::vector<torch::Tensor> imgs;
  r.labels = torch::empty({n, cxrl::cxr::kNumObservations}, torch::kFloat32);
  r.psi = torch::empty({n, 5}, torch::kFloat32);
  cxrl::io::Progress bar("render " + std::string(cxrl::data::split_name(d.split())), n, quiet);
  for (int64_t i = 0; i < n; ++i) {
    if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
    auto s = d.get(static_cast<std::size_t>(i));
    imgs.push_back(s.image);
    for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) r.labels[i][k] = cxrl::cxr::to_float(s.labels[static_cast<std::size_t>(k)]);
    if (!s.meta.posture) throw std::runtime_error("train-rewards: phantom sample without posture");
    for (int k = 0; k < 5; ++k) r.psi[i][k] = (*s.meta.posture)[static_cast<std::size_t>(k)];
    r.reports.push_back(s.prompt);
    bar.update(i + 1);
  }
  r.images = torch::stack(imgs);
  return r;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The whole command; @p resolved is saved next to the weights.
inline void run_train_rewards(const TrainRewardsOptions& o, const nlohmann::json& resolved) {
  namespace fs = std::filesystem;
  namespace cx = cxrl::cxr;
  check_train_rewards_options(o);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out = o.out;
  fs::create_directories(out);
  write_json(out / "train_rewards_config.json", resolved);
  const bool all = o.only.empty();
  const auto rule = cx::parse_threshold_rule(o.diag_threshold, "--diag_threshold");
  std::optional<cxrl::text::WordPieceTokenizer> tok;
  if (all || o.only == "clip") tok = cx::cxr_clip_tokenizer(o.vocab);  // fail early on a bad --vocab
  cxrl::nn::AutoencoderKL decoder{nullptr};
  if (!o.roundtrip.empty()) {
    const fs::path rt = o.roundtrip;
    if (fs::exists(rt / "vae" / "config.json")) decoder = cxrl::nn::AutoencoderKLImpl::from_pretrained(rt / "vae");
    else if (fs::exists(rt / "config.json")) decoder = cxrl::nn::AutoencoderKLImpl::from_pretrained(rt);
    else throw std::invalid_argument("--roundtrip " + o.roundtrip + ": neither a diffusers folder with vae/ nor an AutoencoderKL folder");
  }

  cxrl::cxr::PhantomDatasetOptions dopt;
  dopt.resolution = o.resolution;
  dopt.seed = o.world_seed;
  dopt.n_train = static_cast<std::size_t>(o.n_train);
  dopt.n_validate = static_cast<std::size_t>(o.n_validate);
  cxrl::cxr::PhantomDataset train_ds(dopt, cxrl::data::Split::train);
  cxrl::cxr::PhantomDataset validate_ds(dopt, cxrl::data::Split::validate);
  auto test_opt = dopt;  // held-out metrics on the evaluation reports of the anchor's world
  test_opt.seed = 0;
  test_opt.n_test = static_cast<std::size_t>(o.n_test);
  cxrl::cxr::PhantomDataset test_ds(test_opt, cxrl::data::Split::test);

  // Metrics of models not retrained (--only) are kept from an earlier run.
  nlohmann::json metrics = nlohmann::json::object();
  const auto metrics_file = out / "train_rewards_metrics.json";
  if (!all && fs::exists(metrics_file)) {
    std::ifstream f(metrics_file);
    try {
      metrics = nlohmann::json::parse(f);
    } catch (const std::exception&) {
      metrics = nlohmann::json::object();
    }
  }
  auto running = std::make_shared<RunningLoss>();  // of the model in training; reported as final_train_loss
  running->precision = 5;
  auto progress = [&](const std::string& what, int64_t steps) {
    auto bar = std::make_shared<cxrl::io::Progress>("train " + what, steps, o.quiet);
    running->value = 0;
    return [bar, running](int64_t step, double loss) {
      if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
      bar->update(step, running->add(step, loss));
    };
  };
  cxrl::io::install_interrupt_handler();
  try {
    const auto train = render_split(train_ds, o.quiet);
    const auto test = render_split(test_ds, o.quiet);
    // Half of each batch (roundtrip_fraction) as the generator's decoder renders those very images.
    cx::ImageAugment augment;
    if (decoder) {
      auto rendered = std::make_shared<torch::Tensor>();
      {
        torch::NoGradGuard ng;
        auto& vae = decoder;
        vae->eval();
        std::vector<torch::Tensor> v;
        cxrl::io::Progress bar("render with the decoder", train.size(), o.quiet);
        for (int64_t i = 0; i < train.size(); i += 64) {
          const auto x = train.images.narrow(0, i, std::min<int64_t>(64, train.size() - i));
          const auto y = vae->decode(vae->encode((x * 2 - 1).expand({-1, vae->config().in_channels, -1, -1})).mean);
          v.push_back((y.mean(1, true) / 2 + 0.5).clamp(0, 1));
          bar.update(i + x.size(0));
        }
        *rendered = torch::cat(v);
      }
      augment = [rendered, f = o.roundtrip_fraction](const torch::Tensor& batch, const torch::Tensor& idx, at::Generator& gen) {
        const auto pick = (torch::rand({batch.size(0)}, gen) < f).view({-1, 1, 1, 1});
        return torch::where(pick, rendered->index_select(0, idx), batch);
      };
    }
    if (all || o.only == "posture") {
      const auto t = std::chrono::steady_clock::now();
      // The canonical CXR: the pixel mean of canonical_n random training images (CXRL §2.3.1).
      const auto canonical = cx::canonical_cxr(train_ds, static_cast<std::size_t>(o.canonical_n), o.seed);
      cxrl::io::write_png(out / "canonical.png", canonical);
      cxrl::io::save_safetensors(out / "canonical.safetensors", {{"canonical", canonical.contiguous()}},
                                 {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"},
                                  {"n_images", std::to_string(std::min<int64_t>(o.canonical_n, o.n_train))}});
      cx::PostureTrainingSettings s;
      s.steps = o.posture_steps;
      s.batch_size = o.posture_batch_size;
      s.lr = o.posture_lr;
      s.width = o.posture_width;
      s.psi_weight = o.posture_psi_weight;
      s.seed = o.seed;
      auto net = cx::train_posture_model(s, train, canonical, augment, progress("posture", s.steps));
      cx::save_posture_net(out / "posture_net.safetensors", net);
      cx::save_posture_net_sidecar(out / "posture_net.safetensors", net->config());
      auto m = cx::posture_metrics(net, test);
      m["steps"] = s.steps;
      m["final_train_loss"] = running->value;
      m["seconds"] = seconds_since(t);
      metrics["posture"] = m;
      write_json(metrics_file, metrics);
    }
    if (all || o.only == "diag") {
      const auto t = std::chrono::steady_clock::now();
      const auto validate = render_split(validate_ds, o.quiet);
      cx::DiagTrainingSettings s;
      s.steps = o.diag_steps;
      s.batch_size = o.diag_batch_size;
      s.lr = o.diag_lr;
      s.growth_rate = o.diag_growth_rate;
      s.block_config = o.diag_block_config;
      s.init_features = o.diag_init_features;
      s.threshold = rule;
      s.seed = o.seed;
      auto clf = cx::train_xrv_densenet(s, train, validate, augment, progress("diag", s.steps));
      auto sd = cxrl::io::state_dict(*clf.model());
      sd["op_threshs"] = clf.op_threshs();
      cxrl::io::save_safetensors(out / "xrv_densenet.safetensors", sd,
                                 {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"},
                                  {"resolution", std::to_string(o.resolution)}, {"threshold_rule", o.diag_threshold}});
      cx::save_xrv_densenet_sidecar(out / "xrv_densenet.safetensors", clf);
      auto m = cx::diag_metrics(clf, test);
      m["threshold_rule"] = o.diag_threshold;
      m["steps"] = s.steps;
      m["final_train_loss"] = running->value;
      m["seconds"] = seconds_since(t);
      metrics["diag"] = m;
      write_json(metrics_file, metrics);
    }
    if (all || o.only == "clip") {
      const auto t = std::chrono::steady_clock::now();
      cx::ClipTrainingSettings s;
      s.steps = o.clip_steps;
      s.batch_size = o.clip_batch_size;
      s.lr = o.clip_lr;
      s.width = o.clip_width;
      s.text_hidden = o.clip_text_hidden;
      s.text_layers = o.clip_text_layers;
      s.projection_dim = o.clip_projection_dim;
      s.max_length = o.clip_max_length;
      s.seed = o.seed;
      auto model = cx::train_cxr_clip(s, train, *tok, augment, progress("clip", s.steps));
      cxrl::io::save_safetensors(out / "cxr_clip.safetensors", cxrl::io::state_dict(*model),
                                 {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"}});
      cx::save_cxr_clip_sidecar(out / "cxr_clip.safetensors", model->config());
      auto m = cx::clip_metrics(model, *tok, test, o.clip_eval_batch);
      m["steps"] = s.steps;
      m["final_train_loss"] = running->value;
      m["seconds"] = seconds_since(t);
      metrics["clip"] = m;
      write_json(metrics_file, metrics);
    }
  } catch (const TrainRewardsInterrupted&) {
    std::fprintf(stderr,
                 "train-rewards: interrupted; models finished before the signal are written, the one in training is "
                 "not (rerun with --only to train it)\n");
    return;
  }
  metrics["seconds_total"] = seconds_since(t0);
  write_json(metrics_file, metrics);
  if (!o.quiet) std::fprintf(stderr, "train-rewards: wrote %s\n%s\n", out.c_str(), metrics.dump(2).c_str());
}

/// Registers `name` (train-rewards or train-judges) with @p defaults.
inline void add_train_models_command(CLI::App& app, const std::string& name, const std::string& help, TrainRewardsOptions defaults) {
  auto* cmd = app.add_subcommand(name, help);
  auto o = std::make_shared<TrainRewardsOptions>(std::move(defaults));
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "output folder for the weights and train_rewards_metrics.json");
  s->add("only", o->only, "train one model only: posture, diag or clip (default: all three)");
  s->add("vocab", o->vocab, "BERT WordPiece vocab.txt of the CXR-CLIP text encoder (lower-cased)");
  s->add("roundtrip", o->roundtrip, "diffusers folder whose VAE renders part of each training batch (robustness to its artefacts)");
  s->add("roundtrip_fraction", o->roundtrip_fraction, "fraction of each batch rendered by the --roundtrip decoder");
  s->add("resolution", o->resolution, "phantom image side in pixels (>= 32)");
  s->add("world_seed", o->world_seed, "phantom world of the training and validate studies");
  s->add("n_train", o->n_train, "phantom training studies (rendered once, shared by the three models)");
  s->add("n_validate", o->n_validate, "phantom validate studies (DenseNet threshold calibration)");
  s->add("n_test", o->n_test, "held-out studies of world 0's test split for the metrics");
  s->add("canonical_n", o->canonical_n, "training images averaged into the canonical CXR");
  s->add("seed", o->seed, "seed of initialisation and batch sampling");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  s->add("posture_steps", o->posture_steps, "PostureNet optimizer steps");
  s->add("posture_batch_size", o->posture_batch_size, "PostureNet images per step");
  s->add("posture_lr", o->posture_lr, "PostureNet Adam learning rate (cosine-decayed to 1/10)");
  s->add("posture_width", o->posture_width, "PostureNet ResNet-18 base width (torchvision: 64)");
  s->add("posture_psi_weight", o->posture_psi_weight, "weight of the supervised |psi_hat - psi|^2 term (0 = paper's unsupervised loss)");
  s->add("diag_steps", o->diag_steps, "DenseNet optimizer steps");
  s->add("diag_batch_size", o->diag_batch_size, "DenseNet images per step");
  s->add("diag_lr", o->diag_lr, "DenseNet AdamW learning rate");
  s->add("diag_growth_rate", o->diag_growth_rate, "DenseNet growth rate (DenseNet-121: 32)");
  s->add("diag_block_config", o->diag_block_config, "DenseNet layers per dense block (DenseNet-121: 6 12 24 16)");
  s->add("diag_init_features", o->diag_init_features, "DenseNet stem channels (DenseNet-121: 64)");
  s->add("diag_threshold", o->diag_threshold, "op_threshs rule on the validate split: youden (max TPR-FPR) or prevalence");
  s->add("clip_steps", o->clip_steps, "CXR-CLIP optimizer steps");
  s->add("clip_batch_size", o->clip_batch_size, "CXR-CLIP pairs per step (>= 2)");
  s->add("clip_lr", o->clip_lr, "CXR-CLIP AdamW learning rate");
  s->add("clip_width", o->clip_width, "CXR-CLIP ResNet-18 base width");
  s->add("clip_text_hidden", o->clip_text_hidden, "CXR-CLIP BERT hidden size (multiple of 4)");
  s->add("clip_text_layers", o->clip_text_layers, "CXR-CLIP BERT layers");
  s->add("clip_projection_dim", o->clip_projection_dim, "CXR-CLIP projection width");
  s->add("clip_max_length", o->clip_max_length, "CXR-CLIP WordPiece max length (= BERT max positions)");
  s->add("clip_eval_batch", o->clip_eval_batch, "test studies in the image->report retrieval batch");
  cmd->callback([o, s] {
    s->resolve();
    run_train_rewards(*o, s->resolved());
  });
}

inline void add_train_rewards_command(CLI::App& app) {
  add_train_models_command(app, "train-rewards", "Train the phantom world's reward models (PostureNet, xrv DenseNet, CXR-CLIP)", {});
  add_train_models_command(app, "train-judges",
                           "Train the phantom world's judges: the reward architectures trained apart (world seed 1, other seeds and "
                           "widths, 4x the data); they score evaluate's tables",
                           judge_defaults());
}

}  // namespace cxrl_mimic
