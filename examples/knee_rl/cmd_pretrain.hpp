// `export-data`: the world's images and KL grades as one safetensors file, the input of
// scripts/train_knee_classifier.py. `pretrain`: the knee anchor, a pixel-space text-to-image model at 32 px
// (UNet + CLIP text encoder, DDPM ε-loss with condition dropout and EMA), saved as a diffusers folder.
#pragma once

#include "assets.hpp"
#include "world.hpp"

#include <cxrl/app/settings.hpp>
#include <cxrl/diffusion/anchor_pretraining.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace knee_rl {

/// The first @p n samples of a split, rendered: images [n, 1, R, R] and their prompts and grades.
struct RenderedSplit {
  torch::Tensor images;
  std::vector<std::string> prompts;
  std::vector<int64_t> grades;
};

inline RenderedSplit render_split(uint64_t world_seed, cxrl::data::Split split, std::size_t n, int resolution, bool quiet) {
  KneeDataset d(world_seed, split, n, resolution);
  RenderedSplit r;
  std::vector<torch::Tensor> v;
  cxrl::io::Progress bar("render " + std::string(cxrl::data::split_name(split)) + " split", static_cast<long>(n), quiet);
  for (std::size_t i = 0; i < d.size(); ++i) {
    auto s = d.get(i);
    v.push_back(s.image);
    r.prompts.push_back(s.prompt);
    r.grades.push_back(s.labels.kl_grade);
    bar.update(static_cast<long>(i + 1));
  }
  r.images = torch::stack(v);
  return r;
}

struct ExportOptions {
  std::string out = "knee_data.safetensors";
  uint64_t world_seed = 0;
  int64_t n_train = 6000;
  int64_t n_validate = 1000;
  int resolution = 32;
  bool quiet = false;
};

inline void run_export(const ExportOptions& o) {
  auto tr = render_split(o.world_seed, cxrl::data::Split::train, static_cast<std::size_t>(o.n_train), o.resolution, o.quiet);
  auto va = render_split(o.world_seed, cxrl::data::Split::validate, static_cast<std::size_t>(o.n_validate), o.resolution, o.quiet);
  std::vector<int64_t> grades = tr.grades, split(tr.grades.size(), 0);
  grades.insert(grades.end(), va.grades.begin(), va.grades.end());
  split.insert(split.end(), va.grades.size(), 1);
  cxrl::io::save_safetensors(o.out,
                             {{"images", torch::cat({tr.images, va.images})},
                              {"kl_grade", torch::tensor(grades, torch::kLong)},
                              {"split", torch::tensor(split, torch::kLong)}},
                             {{"producer", "knee_rl export-data"}, {"world_seed", std::to_string(o.world_seed)}});
  if (!o.quiet) std::fprintf(stderr, "export-data: wrote %s (%lld train + %lld validate at %d px)\n", o.out.c_str(),
                             static_cast<long long>(o.n_train), static_cast<long long>(o.n_validate), o.resolution);
}

struct PretrainOptions {
  std::string out = (assets_dir() / "anchor").string();
  std::string tokenizer = cxrl::app::default_tokenizer_dir().string();
  uint64_t world_seed = 0;
  int resolution = 32;
  int64_t n_train = 10000;
  cxrl::diffusion::DenoiserSettings denoiser = knee_denoiser();
  int64_t threads = 0;
  bool quiet = false;

  /// The shipped anchor's settings: about 1 s a step on one core (the README has the time).
  static cxrl::diffusion::DenoiserSettings knee_denoiser() {
    cxrl::diffusion::DenoiserSettings d;
    d.block_out_channels = {16, 32, 64};
    d.steps = 2000;
    d.learning_rate = 1e-3;
    d.warmup_steps = 100;
    d.ema_decay = 0.995;
    d.checkpoint_every = 250;
    return d;
  }
};

inline void run_pretrain(const PretrainOptions& o, const nlohmann::json& resolved) {
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  torch::manual_seed(o.world_seed);
  std::filesystem::create_directories(o.out);
  cxrl::io::write_json(std::filesystem::path(o.out) / "pretrain_config.json", resolved);
  cxrl::io::install_interrupt_handler();
  auto tok = std::make_shared<const cxrl::text::ClipTokenizer>(cxrl::text::ClipTokenizer::from_pretrained(o.tokenizer));
  const auto data = render_split(o.world_seed, cxrl::data::Split::train, static_cast<std::size_t>(o.n_train), o.resolution, o.quiet);
  const auto x0_all = data.images * 2.0 - 1.0;  // pixel space: the model works in [−1, 1]
  cxrl::diffusion::PipelineParts pixel_space;   // no first stage
  pixel_space.scheduler_config = cxrl::diffusion::ddpm_linear_scheduler_config(true);
  pixel_space.producer = "knee_rl pretrain";
  cxrl::diffusion::pretrain_text_to_image(
      o.out, o.denoiser, tok, o.tokenizer, 1, o.resolution, o.world_seed + 17,
      [&](at::Generator& g, int64_t B) {
        const auto idx = torch::randint(x0_all.size(0), {B}, g, torch::kLong);
        std::vector<std::string> p;
        for (int64_t b = 0; b < B; ++b) p.push_back(data.prompts[static_cast<std::size_t>(idx[b].item<int64_t>())]);
        return std::make_pair(x0_all.index_select(0, idx), std::move(p));
      },
      pixel_space, o.quiet);
}

inline void add_pretrain_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("export-data", "write the world's images and KL grades for scripts/train_knee_classifier.py");
    auto o = std::make_shared<ExportOptions>();
    auto s = std::make_shared<cxrl::app::Settings>(cmd);
    s->add("out", o->out, "output .safetensors (images, kl_grade, split)");
    s->add("world_seed", o->world_seed, "world seed (0: the reward classifier's data, 1: the judge's)");
    s->add("n_train", o->n_train, "training studies");
    s->add("n_validate", o->n_validate, "validation studies");
    s->add("resolution", o->resolution, "image side in pixels");
    s->flag("quiet", o->quiet, "no progress output");
    cmd->callback([o, s] {
      s->resolve();
      run_export(*o);
    });
  }
  auto* cmd = app.add_subcommand("pretrain", "train the knee anchor (pixel-space UNet + CLIP text encoder) into a diffusers folder");
  auto o = std::make_shared<PretrainOptions>();
  auto s = std::make_shared<cxrl::app::Settings>(cmd);
  s->add("out", o->out, "diffusers folder to write");
  s->add("tokenizer", o->tokenizer, "CLIP tokenizer folder (vocab.json, merges.txt)");
  s->add("world_seed", o->world_seed, "world seed of the training studies");
  s->add("resolution", o->resolution, "image side in pixels");
  s->add("n_train", o->n_train, "training studies (rendered once)");
  cxrl::app::add_denoiser_settings(*s, o->denoiser);
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    run_pretrain(*o, s->resolved());
  });
}

}  // namespace knee_rl
