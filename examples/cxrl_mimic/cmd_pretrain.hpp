// `pretrain`: trains the phantom world's anchor ("its RoentGen"), a latent diffusion model like Stable
// Diffusion 1.x in miniature. Stage 1 trains an AutoencoderKL (diffusion/vae_training.hpp) and measures its
// latent scaling factor; stage 2 trains a UNet2DConditionModel and a CLIPTextModel jointly on the scaled latents
// (diffusion/denoiser_training.hpp). The result is a diffusers folder that StableDiffusion::from_pretrained
// loads like RoentGen. Both stages checkpoint and resume; SIGINT writes a checkpoint and exits.
#pragma once

#include "app.hpp"
#include "paths.hpp"
#include "running_loss.hpp"

#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/anchor_pretraining.hpp>
#include <cxrl/diffusion/denoiser_training.hpp>
#include <cxrl/diffusion/vae_training.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace cxrl_mimic {

struct PretrainOptions {
  std::string out = (default_assets_dir() / "roentgen").string();
  std::string tokenizer = default_tokenizer_dir().string();
  // Defaults = the shipped phantom anchor (assets/phantom/roentgen): a latent model at 64 px, like RoentGen
  // (Stable Diffusion 1.x) in miniature. The README gives the time it took.
  int resolution = 64;
  int64_t n_train = 5000;
  uint64_t seed = 0;
  // First stage: AutoencoderKL, one downsampling per level after the first (3 levels: f = 4).
  std::vector<int64_t> vae_block_out_channels{16, 32, 64};
  int64_t latent_channels = 4;
  int64_t vae_steps = 3000;
  int64_t vae_batch_size = 32;
  double vae_learning_rate = 1e-3;
  // Second stage: UNet + CLIP text encoder on the scaled latents (the library's defaults are this anchor's).
  cxrl::diffusion::DenoiserSettings denoiser;
  int64_t threads = 0;
  bool quiet = false;
};

/// The phantom anchor's first stage, as diffusers config.json.
inline nlohmann::json phantom_vae_config(const PretrainOptions& o, double scaling_factor) {
  const auto n = o.vae_block_out_channels.size();
  if (n < 1) throw std::invalid_argument("pretrain: --vae_block_out_channels needs at least 1 level");
  return {{"_class_name", "AutoencoderKL"},
          {"_diffusers_version", "0.24.0"},
          {"in_channels", 1},
          {"out_channels", 1},
          {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
          {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
          {"block_out_channels", o.vae_block_out_channels},
          {"layers_per_block", 1},
          {"latent_channels", o.latent_channels},
          {"norm_num_groups", 16},
          {"sample_size", o.resolution},
          {"scaling_factor", scaling_factor}};
}

namespace detail {

/// Stage 1: trains (or resumes, or reloads once finished) the autoencoder; returns it with its config.
inline std::pair<cxrl::nn::AutoencoderKL, nlohmann::json> pretrain_vae(const PretrainOptions& o, const torch::Tensor& images) {
  namespace fs = std::filesystem;
  const fs::path out = o.out, done = out / "stage1_vae";
  if (fs::exists(done / "config.json")) {
    std::ifstream in(done / "config.json");
    const auto cfg = nlohmann::json::parse(in);
    std::fprintf(stderr, "pretrain: stage 1 (autoencoder) already done: %s\n", done.c_str());
    return {cxrl::nn::AutoencoderKLImpl::from_pretrained(done), cfg};
  }
  auto cfg = phantom_vae_config(o, 1.0);
  cxrl::nn::AutoencoderKL vae(cxrl::nn::AutoencoderKLConfig::from_json(cfg, "phantom vae config"));
  cxrl::diffusion::VaeTrainingConfig tc;
  tc.learning_rate = o.vae_learning_rate;
  cxrl::diffusion::VaeTrainer trainer(vae, tc);
  std::fprintf(stderr, "pretrain: stage 1: AutoencoderKL %lld parameters, %d px -> %lld x %lld² latents, %lld steps x batch %lld\n",
               static_cast<long long>(cxrl::nn::count_parameters(*vae).parameters), o.resolution,
               static_cast<long long>(o.latent_channels), static_cast<long long>(o.resolution >> (o.vae_block_out_channels.size() - 1)),
               static_cast<long long>(o.vae_steps), static_cast<long long>(o.vae_batch_size));
  cxrl::io::CheckpointStore ckpts(out / "checkpoints" / "vae", 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 29);
  int64_t step = 0;
  if (auto c = ckpts.load_latest(std::cerr)) {
    cxrl::io::TensorMap sd;
    for (auto& [k, v] : c->tensors)
      if (k.rfind("vae.", 0) == 0) sd[k.substr(4)] = v;
    cxrl::io::LoadOptions lo;
    lo.source = c->file.string();
    cxrl::io::load_state_dict(*vae, sd, lo);
    gen.set_state(c->tensors.at("rng"));
    step = c->step;
    std::fprintf(stderr, "pretrain: stage 1 resumed from %s (step %lld)\n", c->file.c_str(), static_cast<long long>(step));
  }
  auto save_ckpt = [&] {
    cxrl::io::TensorMap m;
    for (auto& [k, v] : cxrl::io::state_dict(*vae)) m["vae." + k] = v;
    m["rng"] = gen.get_state();
    ckpts.save(step, m);
  };
  cxrl::io::Progress bar("pretrain autoencoder", o.vae_steps, o.quiet);
  bar.start_at(step);
  RunningLoss running;
  while (step < o.vae_steps && !cxrl::io::interrupted()) {
    const auto idx = torch::randint(images.size(0), {o.vae_batch_size}, gen, torch::kLong);
    const auto l = trainer.step(images.index_select(0, idx) * 2.0 - 1.0, gen);
    ++step;
    bar.update(step, running.add(step, l.reconstruction.item<double>()) + " (L1)");
    if (o.denoiser.checkpoint_every > 0 && step % o.denoiser.checkpoint_every == 0) save_ckpt();
  }
  if (cxrl::io::interrupted()) {
    save_ckpt();
    return {nullptr, {}};
  }
  torch::NoGradGuard ng;
  vae->eval();
  const double scale = cxrl::diffusion::latent_scaling_factor(vae, images * 2.0 - 1.0);
  cfg = phantom_vae_config(o, scale);
  write_json(done / "config.json", cfg);
  cxrl::io::save_safetensors(done / "diffusion_pytorch_model.safetensors", cxrl::diffusion::weights_for_saving(*vae, false), {{"format", "pt"}});
  fs::remove_all(out / "checkpoints" / "vae");
  std::fprintf(stderr, "pretrain: stage 1 done: L1 %.4f, latent scaling_factor %.5f\n", running.value, scale);
  return {cxrl::nn::AutoencoderKLImpl::from_pretrained(done), cfg};
}

}  // namespace detail

inline void run_pretrain(const PretrainOptions& o, const nlohmann::json& resolved) {
  namespace fs = std::filesystem;
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  torch::manual_seed(o.seed);
  const fs::path out = o.out;
  fs::create_directories(out);
  write_json(out / "pretrain_config.json", resolved);
  cxrl::io::install_interrupt_handler();

  // The training set is rendered once: 5000 images at 64 px are 82 MB.
  auto tok = std::make_shared<const cxrl::text::ClipTokenizer>(cxrl::text::ClipTokenizer::from_pretrained(o.tokenizer));
  cxrl::cxr::PhantomDatasetOptions dopt;
  dopt.resolution = o.resolution;
  dopt.seed = o.seed;
  dopt.n_train = static_cast<std::size_t>(o.n_train);
  dopt.tokenizer_dir = o.tokenizer;
  cxrl::cxr::PhantomDataset train(dopt, cxrl::data::Split::train);
  std::vector<std::string> prompts;
  torch::Tensor images;
  {
    std::vector<torch::Tensor> v;
    cxrl::io::Progress bar("render training set", static_cast<long>(train.size()), o.quiet);
    for (std::size_t i = 0; i < train.size(); ++i) {
      const auto s = train.get(i);
      v.push_back(s.image);
      prompts.push_back(s.prompt);
      bar.update(static_cast<long>(i + 1));
    }
    images = torch::stack(v);
  }

  auto [vae, vae_cfg] = detail::pretrain_vae(o, images);
  if (cxrl::io::interrupted()) {
    std::fprintf(stderr, "pretrain: interrupted in stage 1; checkpoint written, rerun the same command to resume\n");
    return;
  }
  const double scale = vae_cfg.at("scaling_factor").get<double>();
  // Posterior moments of every training image; each step draws z = μ + σ·ε from them, as SD's training does.
  torch::Tensor post_mean, post_std;
  {
    torch::NoGradGuard ng;
    vae->eval();
    std::vector<torch::Tensor> m, sd;
    for (int64_t i = 0; i < images.size(0); i += 64) {
      const auto p = vae->encode(images.narrow(0, i, std::min<int64_t>(64, images.size(0) - i)) * 2.0 - 1.0);
      m.push_back(p.mean);
      sd.push_back(p.std);
    }
    post_mean = torch::cat(m);
    post_std = torch::cat(sd);
  }
  const int64_t latent_side = post_mean.size(2);

  cxrl::diffusion::PipelineParts first_stage;
  first_stage.vae = vae;
  first_stage.vae_config = vae_cfg;
  first_stage.producer = "cxrl_mimic pretrain";
  const auto r = cxrl::diffusion::pretrain_text_to_image(
      out, o.denoiser, tok, o.tokenizer, o.latent_channels, latent_side, o.seed + 17,
      [&](at::Generator& g, int64_t B) {
        const auto idx = torch::randint(post_mean.size(0), {B}, g, torch::kLong);
        std::vector<std::string> p;
        for (int64_t b = 0; b < B; ++b) p.push_back(prompts[static_cast<std::size_t>(idx[b].item<int64_t>())]);
        const auto eps = torch::randn({B, post_mean.size(1), latent_side, latent_side}, g);
        return std::make_pair((post_mean.index_select(0, idx) + post_std.index_select(0, idx) * eps) * scale, std::move(p));
      },
      first_stage, o.quiet);
  if (!r.interrupted) fs::remove_all(out / "stage1_vae");
}

inline void add_pretrain_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "Train the phantom world's anchor text-to-CXR latent diffusion model (its RoentGen)");
  auto o = std::make_shared<PretrainOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "output diffusers folder");
  s->add("tokenizer", o->tokenizer, "folder with CLIP vocab.json + merges.txt");
  s->add("resolution", o->resolution, "image side in pixels");
  s->add("n_train", o->n_train, "phantom training studies");
  s->add("seed", o->seed, "seed of the phantom world and of training");
  s->add("vae_block_out_channels", o->vae_block_out_channels, "autoencoder channels per level (downsampling x2 per extra level)");
  s->add("latent_channels", o->latent_channels, "latent channels");
  s->add("vae_steps", o->vae_steps, "autoencoder optimizer steps (stage 1)");
  s->add("vae_batch_size", o->vae_batch_size, "images per autoencoder step");
  s->add("vae_learning_rate", o->vae_learning_rate, "autoencoder AdamW learning rate");
  cxrl::app::add_denoiser_settings(*s, o->denoiser);
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_pretrain(*o, s->resolved());
  });
}

}  // namespace cxrl_mimic
