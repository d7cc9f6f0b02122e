/// @file
/// @brief Making a small anchor for a procedural world: diffusers configs sized for CPU training, a resumable
///        DenoiserTrainer loop, and the diffusers folder it is saved as (latent, or pixel-space without a `vae/`).
///
/// A modality's reference program pretrains its own "RoentGen" with these, so its anchor loads through the same
/// StableDiffusion::from_pretrained as a real checkpoint. Folder layout and config keys are diffusers' (0.24);
/// the schedule is DDPM's linear betas (Ho et al. 2020), see ddpm_linear_scheduler_config().
#pragma once

#include <cxrl/diffusion/denoiser_training.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::diffusion {

/**
 * @brief A small UNet2DConditionModel config (diffusers config.json keys): one ResNet layer per level, cross-attention
 *        only at levels of at most 16² positions, whose B·HW² attention scores would dominate CPU time above that.
 * @param block_out_channels channels per level (≥ 2 levels; each must be a multiple of 16, the group-norm groups)
 * @param in_channels image or latent channels (also the output channels: ε-prediction)
 * @param sample_size side of the model's input
 * @param cross_attention_dim the text encoder's hidden size
 */
inline nlohmann::json small_unet_config(const std::vector<int64_t>& block_out_channels, int64_t in_channels, int64_t sample_size,
                                        int64_t cross_attention_dim) {
  const auto n = block_out_channels.size();
  if (n < 2) throw std::invalid_argument("small_unet_config: block_out_channels needs at least 2 levels");
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
          {"block_out_channels", block_out_channels},
          {"layers_per_block", 1},
          {"cross_attention_dim", cross_attention_dim},
          {"attention_head_dim", 2},  // heads per attention layer (diffusers' legacy name)
          {"norm_num_groups", 16}};
}

/// @brief DDIMScheduler config with DDPM's linear betas (Ho et al. 2020). At small resolutions SD's scaled-linear
///        schedule leaves too much signal at t = T (ᾱ_T ≈ 0.005) and the samples' mean brightness follows it.
/// @param clip_sample clip the predicted x̂₀ to [−1, 1]: right for pixel-space models (diffusers' DDPM default), whose
///        early steps divide the ε error by √ᾱ_t ≈ 0.01 and otherwise jump to all-black or all-white images; wrong for
///        latents, which have no fixed range
inline nlohmann::json ddpm_linear_scheduler_config(bool clip_sample = false) {
  return {{"_class_name", "DDIMScheduler"}, {"_diffusers_version", "0.24.0"},
          {"num_train_timesteps", 1000},    {"beta_start", 0.0001},
          {"beta_end", 0.02},               {"beta_schedule", "linear"},
          {"clip_sample", clip_sample},     {"set_alpha_to_one", false},
          {"steps_offset", 1},              {"prediction_type", "epsilon"},
          {"timestep_spacing", "leading"}};
}

/// @brief A small CLIP text encoder over @p tok's vocabulary (CLIP's special ids and 77 positions).
/// @param tok the tokenizer
/// @param hidden hidden size (= the UNet's cross_attention_dim)
/// @param layers transformer layers
inline nn::CLIPTextConfig small_clip_text_config(const text::ClipTokenizer& tok, int64_t hidden, int64_t layers) {
  nn::CLIPTextConfig tc;
  tc.vocab_size = tok.vocab_size();
  tc.hidden_size = hidden;
  tc.intermediate_size = 4 * hidden;
  tc.num_hidden_layers = layers;
  tc.num_attention_heads = 4;
  tc.max_position_embeddings = 77;
  tc.bos_token_id = 49406;
  tc.eos_token_id = 49407;
  tc.pad_token_id = 49407;
  return tc;
}

/// @brief A module's state dict as written to a diffusers folder, floating tensors optionally as float16.
/// @param m the module
/// @param fp16 store floating tensors as float16
inline io::TensorMap weights_for_saving(torch::nn::Module& m, bool fp16) {
  io::TensorMap sd;
  for (auto& [k, v] : io::state_dict(m)) sd[k] = (fp16 && v.is_floating_point()) ? v.detach().to(torch::kFloat16) : v.detach();
  return sd;
}

/// @brief What save_text_to_image_pipeline() writes.
struct PipelineParts {
  nn::UNet2DConditionModel unet{nullptr};  ///< the denoiser
  nlohmann::json unet_config;              ///< its config.json
  nn::CLIPTextModel text_encoder{nullptr}; ///< the condition encoder (its config comes from the module)
  nn::AutoencoderKL vae{nullptr};          ///< first stage, or null for a pixel-space model (no `vae/` folder)
  nlohmann::json vae_config;               ///< its config.json (ignored without a vae)
  std::filesystem::path tokenizer_dir;     ///< CLIP vocab.json + merges.txt (+ optional tokenizer configs), copied
  nlohmann::json scheduler_config = ddpm_linear_scheduler_config();  ///< scheduler_config.json
  bool fp16 = true;                        ///< store floating tensors as float16 (halves the files; loads as float32)
  std::string producer = "cxrl";           ///< safetensors metadata
};

/// @brief Writes a diffusers StableDiffusionPipeline folder that StableDiffusion::from_pretrained (and diffusers)
///        load; every file atomically.
/// @param dir the folder
/// @param p its parts
inline void save_text_to_image_pipeline(const std::filesystem::path& dir, PipelineParts p) {
  namespace fs = std::filesystem;
  if (!p.unet || !p.text_encoder) throw std::invalid_argument("save_text_to_image_pipeline: unet and text_encoder are required");
  const io::Metadata meta{{"format", "pt"}, {"producer", p.producer}};
  io::write_json(dir / "unet" / "config.json", p.unet_config);
  io::save_safetensors(dir / "unet" / "diffusion_pytorch_model.safetensors", weights_for_saving(*p.unet, p.fp16), meta);
  if (p.vae) {
    io::write_json(dir / "vae" / "config.json", p.vae_config);
    io::save_safetensors(dir / "vae" / "diffusion_pytorch_model.safetensors", weights_for_saving(*p.vae, p.fp16), meta);
  }
  io::write_json(dir / "text_encoder" / "config.json", p.text_encoder->config.to_json());
  io::save_safetensors(dir / "text_encoder" / "model.safetensors", weights_for_saving(*p.text_encoder, p.fp16), meta);
  fs::create_directories(dir / "tokenizer");
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(p.tokenizer_dir / f)) fs::copy_file(p.tokenizer_dir / f, dir / "tokenizer" / f, fs::copy_options::overwrite_existing);
  io::write_json(dir / "scheduler" / "scheduler_config.json", p.scheduler_config);
  nlohmann::json index{{"_class_name", "StableDiffusionPipeline"},
                       {"_diffusers_version", "0.24.0"},
                       {"unet", {"diffusers", "UNet2DConditionModel"}},
                       {"text_encoder", {"transformers", "CLIPTextModel"}},
                       {"tokenizer", {"transformers", "CLIPTokenizer"}},
                       {"scheduler", {"diffusers", "DDIMScheduler"}},
                       {"safety_checker", {nullptr, nullptr}},
                       {"feature_extractor", {nullptr, nullptr}}};
  if (p.vae) index["vae"] = {"diffusers", "AutoencoderKL"};
  io::write_json(dir / "model_index.json", index);
}

/// @brief Settings of train_denoiser().
struct DenoiserLoopOptions {
  int64_t steps = 1000;           ///< total optimizer steps (also when resuming)
  int64_t checkpoint_every = 500; ///< steps between checkpoints (0: only on interruption)
  bool quiet = false;             ///< no progress bar
  std::string label = "pretrain denoiser";  ///< the progress bar's label
};

/// @brief How train_denoiser() ended.
struct DenoiserLoopResult {
  bool interrupted = false;  ///< stopped by SIGINT (a checkpoint was written)
  double running_loss = 0;   ///< exponential moving average of the loss (weight 0.02 per step)
};

/**
 * @brief Runs @p trainer to `o.steps` steps, resuming from the newest intact checkpoint in @p ckpts and writing one
 *        every `o.checkpoint_every` steps and on SIGINT (install io::install_interrupt_handler() first).
 *
 * A checkpoint holds `param.<i>`, `ema.<i>` and the generator's `rng`; AdamW's moments restart on resume (they
 * would double the file, and a warm restart costs a few hundred steps of a schedule that is long by then).
 * @param trainer the denoiser trainer
 * @param ckpts where checkpoints go
 * @param gen the generator of batches, condition dropout, timesteps and noise (restored on resume)
 * @param o settings
 * @param batch `std::pair<torch::Tensor, std::vector<std::string>>(at::Generator&)`: clean samples x0 in model space
 *        and their prompts, drawn from @p gen
 */
template <class BatchFn>
DenoiserLoopResult train_denoiser(DenoiserTrainer& trainer, io::CheckpointStore& ckpts, at::Generator& gen, const DenoiserLoopOptions& o,
                                  BatchFn&& batch) {
  const auto& params = trainer.parameters();
  if (auto c = ckpts.load_latest(std::cerr)) {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) {
      params[i].copy_(c->tensors.at("param." + std::to_string(i)));
      if (!trainer.ema().empty()) trainer.ema()[i].copy_(c->tensors.at("ema." + std::to_string(i)));
    }
    gen.set_state(c->tensors.at("rng"));
    trainer.set_steps_done(c->step);
    std::fprintf(stderr, "%s: resumed from %s (step %lld; AdamW moments restart)\n", o.label.c_str(), c->file.c_str(),
                 static_cast<long long>(c->step));
  }
  auto save = [&] {
    io::TensorMap m;
    for (std::size_t i = 0; i < params.size(); ++i) {
      m["param." + std::to_string(i)] = params[i].detach();
      if (!trainer.ema().empty()) m["ema." + std::to_string(i)] = trainer.ema()[i];
    }
    m["rng"] = gen.get_state();
    ckpts.save(trainer.steps_done(), m);
  };
  io::Progress bar(o.label, o.steps, o.quiet);
  bar.start_at(trainer.steps_done());
  DenoiserLoopResult r;
  while (trainer.steps_done() < o.steps && !io::interrupted()) {
    auto [x0, prompts] = batch(gen);
    const double l = trainer.step(x0, prompts, gen).template item<double>();
    r.running_loss = trainer.steps_done() == 1 ? l : 0.98 * r.running_loss + 0.02 * l;
    char s[48];
    std::snprintf(s, sizeof s, "loss %.4f", r.running_loss);
    bar.update(trainer.steps_done(), s);
    if (o.checkpoint_every > 0 && trainer.steps_done() % o.checkpoint_every == 0) save();
  }
  if (io::interrupted()) {
    save();
    r.interrupted = true;
  }
  return r;
}

/// @brief Settings of the denoiser stage (the `pretrain` commands' flag names).
struct DenoiserSettings {
  std::vector<int64_t> block_out_channels{32, 64, 64};  ///< UNet channels per level (small_unet_config)
  int64_t text_hidden = 32;        ///< text encoder width (= the UNet's cross_attention_dim)
  int64_t text_layers = 2;         ///< text encoder layers
  int64_t steps = 20000;           ///< optimizer steps
  int64_t batch_size = 64;         ///< samples per step
  double learning_rate = 5e-4;     ///< peak AdamW learning rate (warm-up, then cosine decay to 0)
  int64_t warmup_steps = 500;      ///< linear warm-up steps
  double cond_dropout = 0.1;       ///< probability of the empty prompt (classifier-free guidance)
  double ema_decay = 0.999;        ///< EMA decay of the saved weights (0 = off)
  int64_t checkpoint_every = 500;  ///< steps between resumable checkpoints
  bool save_fp16 = true;           ///< store the final weights as float16
};

/**
 * @brief Trains a UNet + CLIP text encoder on @p batch and writes the diffusers folder @p out (the anchor of a
 *        procedural world); resumable (checkpoints in `out/checkpoints/unet`, removed when done) and SIGINT-safe.
 * @param out the folder
 * @param s settings
 * @param tok the tokenizer (its files are copied from @p tokenizer_dir)
 * @param tokenizer_dir CLIP vocab.json + merges.txt
 * @param in_channels channels of x0 (image channels, or latent channels for a latent model)
 * @param sample_size side of x0
 * @param seed seed of the batch, dropout, timestep and noise generator
 * @param batch `std::pair<torch::Tensor, std::vector<std::string>>(at::Generator&, int64_t batch_size)`: x0 in model
 *        space ([−1, 1] pixels, or latents × scaling_factor) and prompts
 * @param first_stage the VAE and its config of a latent model (`vae` null: pixel space), and the producer tag
 * @param quiet no progress output
 * @return how the loop ended; the folder is written only when it was not interrupted
 */
template <class BatchFn>
DenoiserLoopResult pretrain_text_to_image(const std::filesystem::path& out, const DenoiserSettings& s,
                                          std::shared_ptr<const text::ClipTokenizer> tok, const std::filesystem::path& tokenizer_dir,
                                          int64_t in_channels, int64_t sample_size, uint64_t seed, BatchFn&& batch,
                                          PipelineParts first_stage, bool quiet) {
  const auto unet_cfg = small_unet_config(s.block_out_channels, in_channels, sample_size, s.text_hidden);
  nn::UNet2DConditionModel unet(nn::UNet2DConditionConfig::from_json(unet_cfg, out.string() + ": unet config"));
  nn::CLIPTextModel te(small_clip_text_config(*tok, s.text_hidden, s.text_layers));
  DDIMScheduler sched(DDIMSchedulerConfig::from_json(first_stage.scheduler_config, out.string() + ": scheduler config"));
  DenoiserTrainingConfig dc;
  dc.learning_rate = s.learning_rate;
  dc.cond_dropout = s.cond_dropout;
  dc.ema_decay = s.ema_decay;
  dc.warmup_steps = s.warmup_steps;
  dc.total_steps = s.steps;
  DenoiserTrainer trainer(unet, te, tok, sched, dc);
  int64_t n_unet = 0, n_te = 0;
  for (const auto& p : unet->parameters()) n_unet += p.numel();
  for (const auto& p : te->parameters()) n_te += p.numel();
  std::fprintf(stderr, "pretrain: UNet %lld + text encoder %lld parameters on %lld x %lld² inputs, %lld steps x batch %lld\n",
               static_cast<long long>(n_unet), static_cast<long long>(n_te), static_cast<long long>(in_channels),
               static_cast<long long>(sample_size), static_cast<long long>(s.steps), static_cast<long long>(s.batch_size));
  io::CheckpointStore ckpts(out / "checkpoints" / "unet", 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  DenoiserLoopOptions lo;
  lo.steps = s.steps;
  lo.checkpoint_every = s.checkpoint_every;
  lo.quiet = quiet;
  const int64_t b = s.batch_size;
  const auto r = train_denoiser(trainer, ckpts, gen, lo, [&](at::Generator& g) { return batch(g, b); });
  if (r.interrupted) {
    std::fprintf(stderr, "pretrain: interrupted at step %lld; checkpoint written, rerun the same command to resume\n",
                 static_cast<long long>(trainer.steps_done()));
    return r;
  }
  trainer.apply_ema();
  unet->eval();
  te->eval();
  first_stage.unet = unet;
  first_stage.unet_config = unet_cfg;
  first_stage.text_encoder = te;
  first_stage.tokenizer_dir = tokenizer_dir;
  first_stage.fp16 = s.save_fp16;
  save_text_to_image_pipeline(out, first_stage);
  std::filesystem::remove_all(out / "checkpoints");
  std::fprintf(stderr, "pretrain: wrote %s (final loss %.4f)\n", out.c_str(), r.running_loss);
  return r;
}

}  // namespace cxrl::diffusion
