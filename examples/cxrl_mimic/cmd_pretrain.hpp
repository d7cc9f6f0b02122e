// `pretrain`: trains the phantom world's anchor ("its RoentGen"): a small pixel-space
// UNet2DConditionModel and a small CLIPTextModel with the CLIP BPE tokenizer, jointly, with the DDPM
// ε-loss (Ho et al. 2020) and 10 % condition dropout for classifier-free guidance (Ho & Salimans 2022).
// The result is a diffusers folder that StableDiffusion::from_pretrained loads like RoentGen.
#pragma once

#include "config.hpp"
#include "paths.hpp"
#include "running_loss.hpp"

#include <cxrl/data/phantom_dataset.hpp>
#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/loss.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/state_dict.hpp>
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
  // Defaults = the shipped phantom anchor (assets/phantom/roentgen): 32 px, 1200 steps, about 13 min on
  // this 2-core machine with one thread.
  int resolution = 32;
  int64_t steps = 1200;
  int64_t batch_size = 32;
  double learning_rate = 1e-3;
  double cond_dropout = 0.1;
  double ema_decay = 0.0;  // 0 = no EMA
  int64_t n_train = 5000;
  uint64_t seed = 0;
  int64_t text_hidden = 32;
  int64_t text_layers = 2;
  std::vector<int64_t> block_out_channels{16, 32, 32};
  int64_t threads = 0;
  int64_t checkpoint_every = 250;
  bool save_fp16 = true;
  bool quiet = false;
};

/// The phantom anchor's UNet config, as diffusers config.json (the file is the source of truth).
inline nlohmann::json phantom_unet_config(const PretrainOptions& o) {
  const auto n = o.block_out_channels.size();
  if (n < 2) throw std::invalid_argument("pretrain: --block_out_channels needs at least 2 levels");
  // Full-resolution levels have no attention (B·HW² scores dominate CPU time); the lowest two attend.
  std::vector<std::string> down(n, "DownBlock2D"), up(n, "UpBlock2D");
  for (std::size_t i = n >= 2 ? n - 2 : 0; i < n; ++i) {
    down[i] = "CrossAttnDownBlock2D";
    up[n - 1 - i] = "CrossAttnUpBlock2D";
  }
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.24.0"},
          {"sample_size", o.resolution},
          {"in_channels", 1},
          {"out_channels", 1},
          {"down_block_types", down},
          {"up_block_types", up},
          {"block_out_channels", o.block_out_channels},
          {"layers_per_block", 1},
          {"cross_attention_dim", o.text_hidden},
          {"attention_head_dim", 4},
          {"norm_num_groups", 8}};
}

inline nlohmann::json phantom_scheduler_config() {
  // DDPM linear betas for a pixel-space model; clip x̂0 to the data range [−1, 1].
  return {{"_class_name", "DDIMScheduler"}, {"_diffusers_version", "0.24.0"},
          {"num_train_timesteps", 1000},    {"beta_start", 0.0001},
          {"beta_end", 0.02},               {"beta_schedule", "linear"},
          {"clip_sample", true},            {"clip_sample_range", 1.0},
          {"set_alpha_to_one", false},      {"steps_offset", 1},
          {"prediction_type", "epsilon"},   {"timestep_spacing", "leading"}};
}

/// Writes a diffusers pixel-space text-to-image folder (no VAE).
inline void save_phantom_pipeline(const std::filesystem::path& dir, cxrl::nn::UNet2DConditionModel& unet,
                                  const nlohmann::json& unet_cfg, cxrl::nn::CLIPTextModel& te,
                                  const std::filesystem::path& tokenizer_dir, bool fp16) {
  namespace fs = std::filesystem;
  auto dump = [&](torch::nn::Module& m) {
    cxrl::io::TensorMap sd;
    for (auto& [k, v] : cxrl::io::state_dict(m))
      sd[k] = (fp16 && v.is_floating_point()) ? v.detach().to(torch::kFloat16) : v.detach();
    return sd;
  };
  const cxrl::io::Metadata meta{{"format", "pt"}, {"producer", "cxrl_mimic pretrain"}};
  write_json(dir / "unet" / "config.json", unet_cfg);
  cxrl::io::save_safetensors(dir / "unet" / "diffusion_pytorch_model.safetensors", dump(*unet), meta);
  auto tcfg = te->config.to_json();
  write_json(dir / "text_encoder" / "config.json", tcfg);
  cxrl::io::save_safetensors(dir / "text_encoder" / "model.safetensors", dump(*te), meta);
  fs::create_directories(dir / "tokenizer");
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(tokenizer_dir / f))
      fs::copy_file(tokenizer_dir / f, dir / "tokenizer" / f, fs::copy_options::overwrite_existing);
  write_json(dir / "scheduler" / "scheduler_config.json", phantom_scheduler_config());
  write_json(dir / "model_index.json", {{"_class_name", "StableDiffusionPipeline"},
                                        {"_diffusers_version", "0.24.0"},
                                        {"unet", {"diffusers", "UNet2DConditionModel"}},
                                        {"text_encoder", {"transformers", "CLIPTextModel"}},
                                        {"tokenizer", {"transformers", "CLIPTokenizer"}},
                                        {"scheduler", {"diffusers", "DDIMScheduler"}},
                                        {"vae", {nullptr, nullptr}},
                                        {"safety_checker", {nullptr, nullptr}},
                                        {"feature_extractor", {nullptr, nullptr}}});
}

inline void run_pretrain(const PretrainOptions& o, const nlohmann::json& resolved) {
  namespace fs = std::filesystem;
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  torch::manual_seed(o.seed);
  const fs::path out = o.out;
  fs::create_directories(out);
  write_json(out / "pretrain_config.json", resolved);

  const auto tok = cxrl::text::ClipTokenizer::from_pretrained(o.tokenizer);
  cxrl::data::PhantomDatasetOptions dopt;
  dopt.resolution = o.resolution;
  dopt.seed = o.seed;
  dopt.n_train = static_cast<std::size_t>(o.n_train);
  dopt.tokenizer_dir = o.tokenizer;
  cxrl::data::PhantomDataset train(dopt, cxrl::data::Split::train);

  const auto unet_cfg = phantom_unet_config(o);
  cxrl::nn::UNet2DConditionModel unet(cxrl::nn::UNet2DConditionConfig::from_json(unet_cfg, "phantom unet config"));
  cxrl::nn::CLIPTextConfig tc;
  tc.vocab_size = tok.vocab_size();
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

  std::vector<torch::Tensor> params;
  for (auto& p : unet->parameters()) params.push_back(p);
  for (auto& p : te->parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.learning_rate).weight_decay(1e-2));
  int64_t nparams = 0;
  for (auto& p : params) nparams += p.numel();
  std::fprintf(stderr, "pretrain: UNet %lld + text encoder %lld parameters, %d px, %lld steps × batch %lld\n",
               static_cast<long long>(cxrl::nn::count_parameters(*unet).parameters),
               static_cast<long long>(cxrl::nn::count_parameters(*te).parameters), o.resolution,
               static_cast<long long>(o.steps), static_cast<long long>(o.batch_size));

  // EMA weights kept as plain tensors (not registered), swapped in for the final save.
  std::vector<torch::Tensor> ema;
  if (o.ema_decay > 0)
    for (auto& p : params) ema.push_back(p.detach().clone());

  cxrl::io::CheckpointStore ckpts(out / "checkpoints", 2);
  int64_t step = 0;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 17);
  if (auto c = ckpts.load_latest(std::cerr)) {
    cxrl::io::TensorMap unet_sd, te_sd;
    for (auto& [k, v] : c->tensors) {
      if (k.rfind("unet.", 0) == 0) unet_sd[k.substr(5)] = v;
      else if (k.rfind("text_encoder.", 0) == 0) te_sd[k.substr(13)] = v;
    }
    cxrl::io::load_state_dict(*unet, unet_sd, {.source = c->file.string()});
    cxrl::io::load_state_dict(*te, te_sd, {.source = c->file.string()});
    gen.set_state(c->tensors.at("rng"));
    step = c->step;
    std::fprintf(stderr, "pretrain: resumed from %s (step %lld)\n", c->file.c_str(), static_cast<long long>(step));
  }
  auto save_ckpt = [&] {
    cxrl::io::TensorMap m;
    for (auto& [k, v] : cxrl::io::state_dict(*unet)) m["unet." + k] = v;
    for (auto& [k, v] : cxrl::io::state_dict(*te)) m["text_encoder." + k] = v;
    m["rng"] = gen.get_state();
    ckpts.save(step, m);
  };

  cxrl::io::install_interrupt_handler();
  cxrl::io::Progress bar("pretrain", o.steps, o.quiet);
  RunningLoss running;  // smoother than the reward models' default: the DDPM loss is noisier
  running.keep = 0.98;
  running.take = 0.02;
  unet->train();
  te->train();
  const auto B = o.batch_size;
  while (step < o.steps && !cxrl::io::interrupted()) {
    auto idx = torch::randint(static_cast<int64_t>(train.size()), {B}, gen, torch::kLong);
    auto drop = torch::rand({B}, gen);
    std::vector<torch::Tensor> imgs;
    auto ids = torch::empty({B, 77}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const auto s = train.get(static_cast<std::size_t>(idx[b].item<int64_t>()));
      imgs.push_back(s.image);
      const std::string prompt = drop[b].item<double>() < o.cond_dropout ? std::string() : s.impression;
      ids[b] = torch::tensor(tok.encode_padded(prompt).input_ids, torch::kLong);
    }
    auto x0 = torch::stack(imgs) * 2.0 - 1.0;
    auto noise = torch::randn(x0.sizes(), gen);
    auto t = torch::randint(sched.config().num_train_timesteps, {B}, gen, torch::kLong);
    auto xt = sched.add_noise(x0, noise, t);
    auto cond = te->forward(ids).last_hidden_state;
    auto pred = unet->forward(xt, t, cond);
    auto loss = cxrl::diffusion::diffusion_loss(sched, pred, x0, noise, t);
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
    if (!ema.empty()) {
      torch::NoGradGuard ng;
      for (std::size_t i = 0; i < params.size(); ++i) ema[i].mul_(o.ema_decay).add_(params[i].detach(), 1 - o.ema_decay);
    }
    ++step;
    const double l = loss.item<double>();
    bar.update(step, running.add(step, l));
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) save_ckpt();
  }
  if (cxrl::io::interrupted()) {
    save_ckpt();
    std::fprintf(stderr, "pretrain: interrupted at step %lld; checkpoint written, rerun the same command to resume\n",
                 static_cast<long long>(step));
    return;
  }
  if (!ema.empty()) {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(ema[i]);
  }
  unet->eval();
  te->eval();
  save_phantom_pipeline(out, unet, unet_cfg, te, o.tokenizer, o.save_fp16);
  fs::remove_all(out / "checkpoints");
  std::fprintf(stderr, "pretrain: wrote %s (final loss %.4f)\n", out.c_str(), running.value);
}

inline void add_pretrain_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "Train the phantom world's anchor text-to-CXR diffusion model (its RoentGen)");
  auto o = std::make_shared<PretrainOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "output diffusers folder");
  s->add("tokenizer", o->tokenizer, "folder with CLIP vocab.json + merges.txt");
  s->add("resolution", o->resolution, "image side in pixels");
  s->add("steps", o->steps, "optimizer steps");
  s->add("batch_size", o->batch_size, "images per step");
  s->add("learning_rate", o->learning_rate, "AdamW learning rate");
  s->add("cond_dropout", o->cond_dropout, "probability of training on the empty prompt (CFG)");
  s->add("ema_decay", o->ema_decay, "EMA decay of the weights (0 = off)");
  s->add("n_train", o->n_train, "phantom training studies");
  s->add("seed", o->seed, "seed of the phantom world and of training");
  s->add("text_hidden", o->text_hidden, "text encoder width (= UNet cross_attention_dim)");
  s->add("text_layers", o->text_layers, "text encoder layers");
  s->add("block_out_channels", o->block_out_channels, "UNet channels per level");
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
