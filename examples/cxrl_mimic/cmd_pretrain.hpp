// `pretrain`: trains the phantom world's anchor ("its RoentGen"), a latent diffusion model like Stable
// Diffusion 1.x in miniature. Stage 1 trains an AutoencoderKL (diffusion/vae_training.hpp) and measures its
// latent scaling factor; stage 2 trains a UNet2DConditionModel and a CLIPTextModel jointly on the scaled latents
// (diffusion/denoiser_training.hpp). The result is a diffusers folder that StableDiffusion::from_pretrained
// loads like RoentGen. Both stages checkpoint and resume; SIGINT writes a checkpoint and exits.
#pragma once

#include "config.hpp"
#include "paths.hpp"
#include "running_loss.hpp"

#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/diffusion/ddim.hpp>
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
  // Second stage: UNet + CLIP text encoder on the scaled latents.
  std::vector<int64_t> block_out_channels{32, 64, 64};
  int64_t text_hidden = 32;
  int64_t text_layers = 2;
  int64_t steps = 20000;
  int64_t batch_size = 64;
  double learning_rate = 5e-4;
  int64_t warmup_steps = 500;
  double cond_dropout = 0.1;
  double ema_decay = 0.999;
  int64_t threads = 0;
  int64_t checkpoint_every = 500;
  bool save_fp16 = true;
  bool quiet = false;
};

/// The phantom anchor's UNet config, as diffusers config.json (the file is the source of truth).
inline nlohmann::json phantom_unet_config(const PretrainOptions& o, int64_t in_channels, int64_t sample_size) {
  const auto n = o.block_out_channels.size();
  if (n < 2) throw std::invalid_argument("pretrain: --block_out_channels needs at least 2 levels");
  // Levels above 16² positions have no attention: its B·HW² scores dominate CPU time there.
  std::vector<std::string> down(n, "DownBlock2D"), up(n, "UpBlock2D");
  for (std::size_t i = 0; i < n; ++i)
    if ((sample_size >> i) <= 16) {
      down[i] = "CrossAttnDownBlock2D";
      up[n - 1 - i] = "CrossAttnUpBlock2D";
    }
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.24.0"},
          {"sample_size", sample_size},
          {"in_channels", in_channels},
          {"out_channels", in_channels},
          {"down_block_types", down},
          {"up_block_types", up},
          {"block_out_channels", o.block_out_channels},
          {"layers_per_block", 1},
          {"cross_attention_dim", o.text_hidden},
          {"attention_head_dim", 2},  // heads per attention layer (diffusers' legacy name); head widths of 16 and 32
          {"norm_num_groups", 16}};
}

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

inline nlohmann::json phantom_scheduler_config() {
  // DDPM linear betas (Ho et al. 2020): at 16² latents, SD's scaled-linear schedule leaves too much signal at
  // t = T (ᾱ_T ≈ 0.005) and the samples' mean brightness follows it. Latents are not clipped.
  return {{"_class_name", "DDIMScheduler"}, {"_diffusers_version", "0.24.0"},
          {"num_train_timesteps", 1000},    {"beta_start", 0.0001},
          {"beta_end", 0.02},               {"beta_schedule", "linear"},
          {"clip_sample", false},           {"set_alpha_to_one", false},
          {"steps_offset", 1},              {"prediction_type", "epsilon"},
          {"timestep_spacing", "leading"}};
}

namespace detail {
inline cxrl::io::TensorMap module_tensors(torch::nn::Module& m, bool fp16) {
  cxrl::io::TensorMap sd;
  for (auto& [k, v] : cxrl::io::state_dict(m)) sd[k] = (fp16 && v.is_floating_point()) ? v.detach().to(torch::kFloat16) : v.detach();
  return sd;
}
}  // namespace detail

/// Writes a diffusers latent text-to-image folder.
inline void save_phantom_pipeline(const std::filesystem::path& dir, cxrl::nn::UNet2DConditionModel& unet, const nlohmann::json& unet_cfg,
                                  cxrl::nn::CLIPTextModel& te, cxrl::nn::AutoencoderKL& vae, const nlohmann::json& vae_cfg,
                                  const std::filesystem::path& tokenizer_dir, bool fp16) {
  namespace fs = std::filesystem;
  const cxrl::io::Metadata meta{{"format", "pt"}, {"producer", "cxrl_mimic pretrain"}};
  write_json(dir / "unet" / "config.json", unet_cfg);
  cxrl::io::save_safetensors(dir / "unet" / "diffusion_pytorch_model.safetensors", detail::module_tensors(*unet, fp16), meta);
  write_json(dir / "vae" / "config.json", vae_cfg);
  cxrl::io::save_safetensors(dir / "vae" / "diffusion_pytorch_model.safetensors", detail::module_tensors(*vae, fp16), meta);
  write_json(dir / "text_encoder" / "config.json", te->config.to_json());
  cxrl::io::save_safetensors(dir / "text_encoder" / "model.safetensors", detail::module_tensors(*te, fp16), meta);
  fs::create_directories(dir / "tokenizer");
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(tokenizer_dir / f)) fs::copy_file(tokenizer_dir / f, dir / "tokenizer" / f, fs::copy_options::overwrite_existing);
  write_json(dir / "scheduler" / "scheduler_config.json", phantom_scheduler_config());
  write_json(dir / "model_index.json", {{"_class_name", "StableDiffusionPipeline"},
                                        {"_diffusers_version", "0.24.0"},
                                        {"unet", {"diffusers", "UNet2DConditionModel"}},
                                        {"vae", {"diffusers", "AutoencoderKL"}},
                                        {"text_encoder", {"transformers", "CLIPTextModel"}},
                                        {"tokenizer", {"transformers", "CLIPTokenizer"}},
                                        {"scheduler", {"diffusers", "DDIMScheduler"}},
                                        {"safety_checker", {nullptr, nullptr}},
                                        {"feature_extractor", {nullptr, nullptr}}});
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
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) save_ckpt();
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
  cxrl::io::save_safetensors(done / "diffusion_pytorch_model.safetensors", module_tensors(*vae, false), {{"format", "pt"}});
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

  const auto unet_cfg = phantom_unet_config(o, o.latent_channels, latent_side);
  cxrl::nn::UNet2DConditionModel unet(cxrl::nn::UNet2DConditionConfig::from_json(unet_cfg, "phantom unet config"));
  cxrl::nn::CLIPTextConfig tc;
  tc.vocab_size = tok->vocab_size();
  tc.hidden_size = o.text_hidden;
  tc.intermediate_size = 4 * o.text_hidden;
  tc.num_hidden_layers = o.text_layers;
  tc.num_attention_heads = 4;
  tc.max_position_embeddings = 77;
  tc.bos_token_id = 49406;
  tc.eos_token_id = 49407;
  tc.pad_token_id = 49407;
  cxrl::nn::CLIPTextModel te(tc);
  cxrl::diffusion::DDIMScheduler sched(cxrl::diffusion::DDIMSchedulerConfig::from_json(phantom_scheduler_config(), "phantom scheduler"));
  cxrl::diffusion::DenoiserTrainingConfig dc;
  dc.learning_rate = o.learning_rate;
  dc.cond_dropout = o.cond_dropout;
  dc.ema_decay = o.ema_decay;
  dc.warmup_steps = o.warmup_steps;
  dc.total_steps = o.steps;
  cxrl::diffusion::DenoiserTrainer trainer(unet, te, tok, sched, dc);
  std::fprintf(stderr, "pretrain: stage 2: UNet %lld + text encoder %lld parameters on %lld x %lld² latents, %lld steps x batch %lld\n",
               static_cast<long long>(cxrl::nn::count_parameters(*unet).parameters),
               static_cast<long long>(cxrl::nn::count_parameters(*te).parameters), static_cast<long long>(o.latent_channels),
               static_cast<long long>(latent_side), static_cast<long long>(o.steps), static_cast<long long>(o.batch_size));

  cxrl::io::CheckpointStore ckpts(out / "checkpoints" / "unet", 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 17);
  const auto& params = trainer.parameters();
  if (auto c = ckpts.load_latest(std::cerr)) {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) {
      params[i].copy_(c->tensors.at("param." + std::to_string(i)));
      if (!trainer.ema().empty()) trainer.ema()[i].copy_(c->tensors.at("ema." + std::to_string(i)));
    }
    gen.set_state(c->tensors.at("rng"));
    trainer.set_steps_done(c->step);
    std::fprintf(stderr, "pretrain: stage 2 resumed from %s (step %lld; AdamW moments restart)\n", c->file.c_str(),
                 static_cast<long long>(c->step));
  }
  auto save_ckpt = [&] {
    cxrl::io::TensorMap m;
    for (std::size_t i = 0; i < params.size(); ++i) {
      m["param." + std::to_string(i)] = params[i].detach();
      if (!trainer.ema().empty()) m["ema." + std::to_string(i)] = trainer.ema()[i];
    }
    m["rng"] = gen.get_state();
    ckpts.save(trainer.steps_done(), m);
  };

  cxrl::io::Progress bar("pretrain denoiser", o.steps, o.quiet);
  bar.start_at(trainer.steps_done());
  RunningLoss running;  // smoother than the reward models' default: the DDPM loss is noisier
  running.keep = 0.98;
  running.take = 0.02;
  const auto B = o.batch_size;
  while (trainer.steps_done() < o.steps && !cxrl::io::interrupted()) {
    const auto idx = torch::randint(post_mean.size(0), {B}, gen, torch::kLong);
    std::vector<std::string> p;
    for (int64_t b = 0; b < B; ++b) p.push_back(prompts[static_cast<std::size_t>(idx[b].item<int64_t>())]);
    const auto eps = torch::randn({B, post_mean.size(1), latent_side, latent_side}, gen);
    const auto x0 = (post_mean.index_select(0, idx) + post_std.index_select(0, idx) * eps) * scale;
    const double l = trainer.step(x0, p, gen).item<double>();
    bar.update(trainer.steps_done(), running.add(trainer.steps_done(), l));
    if (o.checkpoint_every > 0 && trainer.steps_done() % o.checkpoint_every == 0) save_ckpt();
  }
  if (cxrl::io::interrupted()) {
    save_ckpt();
    std::fprintf(stderr, "pretrain: interrupted at step %lld; checkpoint written, rerun the same command to resume\n",
                 static_cast<long long>(trainer.steps_done()));
    return;
  }
  trainer.apply_ema();
  unet->eval();
  te->eval();
  save_phantom_pipeline(out, unet, unet_cfg, te, vae, vae_cfg, o.tokenizer, o.save_fp16);
  fs::remove_all(out / "checkpoints");
  fs::remove_all(out / "stage1_vae");
  std::fprintf(stderr, "pretrain: wrote %s (final loss %.4f)\n", out.c_str(), running.value);
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
  s->add("block_out_channels", o->block_out_channels, "UNet channels per level");
  s->add("text_hidden", o->text_hidden, "text encoder width (= UNet cross_attention_dim)");
  s->add("text_layers", o->text_layers, "text encoder layers");
  s->add("steps", o->steps, "denoiser optimizer steps (stage 2)");
  s->add("batch_size", o->batch_size, "latents per denoiser step");
  s->add("learning_rate", o->learning_rate, "peak denoiser AdamW learning rate (cosine decay to 0)");
  s->add("warmup_steps", o->warmup_steps, "linear learning-rate warm-up steps");
  s->add("cond_dropout", o->cond_dropout, "probability of training on the empty prompt (CFG)");
  s->add("ema_decay", o->ema_decay, "EMA decay of the denoiser weights (0 = off)");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->add("checkpoint_every", o->checkpoint_every, "steps between resumable checkpoints");
  s->add("save_fp16", o->save_fp16, "store the final weights as float16 (true/false)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_pretrain(*o, s->resolved());
  });
}

}  // namespace cxrl_mimic
