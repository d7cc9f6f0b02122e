// `generate`: PNGs from report texts with a diffusers text-to-image folder (the phantom anchor or a real
// RoentGen). One grid row per report, `--n` samples each. With `--run DIR` (a finetune run folder) each
// row shows the anchor's n samples, then the fine-tuned model's n samples from the same noise.
#pragma once

#include "app.hpp"
#include "paths.hpp"

#include <cxrl/diffusion/pipeline.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/image.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

namespace cxrl_mimic {

struct GenerateCmdOptions {
  std::string model = (default_assets_dir() / "roentgen").string();
  std::string run;  // finetune run folder: anchor and fine-tuned side by side
  std::vector<std::string> prompt;
  std::string prompts_file;
  int64_t n = 4;
  int64_t steps = 20;
  double guidance = 5.0;
  double eta = 0.0;
  uint64_t seed = 0;
  std::string out = "generated.png";
};

inline std::vector<std::string> read_prompt_lines(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::invalid_argument(file + ": cannot open the prompts file");
  std::vector<std::string> v;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos)
      throw std::invalid_argument(file + ":" + std::to_string(no) + ": empty report (write one report per line)");
    v.push_back(line);
  }
  return v;
}

/// Anchor | fine-tuned, the same x_T and step noise per report, with the run's own sampler settings.
inline void run_generate_side_by_side(const GenerateCmdOptions& o, const std::vector<std::string>& prompts) {
  namespace fs = std::filesystem;
  const fs::path cfg = fs::path(o.run) / "config.json", ad = fs::path(o.run) / "adapters.safetensors";
  if (!fs::exists(cfg) || !fs::exists(ad))
    throw std::invalid_argument("generate --run " + o.run + ": expected a finished finetune run folder (config.json and adapters.safetensors)");
  std::ifstream in(cfg);
  const auto j = nlohmann::json::parse(in);
  const auto ps = PolicySettings::from_run_config(j);
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(j.value("roentgen", o.model));
  auto policy = make_policy(sd, ps);
  policy.load_adapters(ad);
  auto sampler = make_sampler(sd, ps);
  std::vector<torch::Tensor> tiles;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<std::string> batch(static_cast<std::size_t>(o.n), prompts[i]);
    for (bool on : {false, true}) {
      policy.set_adapters_enabled(on);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + i);
      const auto imgs = sampler.sample(policy, batch, gen).images;
      for (int64_t k = 0; k < o.n; ++k) tiles.push_back(imgs[k]);
    }
    std::cerr << "generate: [" << i << "] " << prompts[i] << '\n';
  }
  cxrl::io::write_png(o.out, cxrl::io::make_grid(tiles, static_cast<int>(2 * o.n), 2, 1.0f));
  std::cout << "wrote " << o.out << " (" << prompts.size() << " rows: " << o.n << " anchor | " << o.n << " fine-tuned)\n";
}

inline void run_generate(const GenerateCmdOptions& o) {
  auto prompts = o.prompt;
  if (!o.prompts_file.empty())
    for (auto& p : read_prompt_lines(o.prompts_file)) prompts.push_back(std::move(p));
  if (prompts.empty()) throw std::invalid_argument("generate: give --prompt TEXT (repeatable) or --prompts_file FILE");
  if (o.n < 1) throw std::invalid_argument("generate: --n must be >= 1");
  if (!o.run.empty()) return run_generate_side_by_side(o, prompts);
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(o.model);
  cxrl::diffusion::GenerateOptions g;
  g.num_inference_steps = o.steps;
  g.guidance_scale = o.guidance;
  g.eta = o.eta;
  std::vector<torch::Tensor> tiles;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    // One generator per report, so a report's images do not depend on the others in the file.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + i);
    const std::vector<std::string> batch(static_cast<std::size_t>(o.n), prompts[i]);
    const auto r = cxrl::diffusion::generate(sd, sd.make_scheduler(), batch, gen, g);
    for (int64_t k = 0; k < o.n; ++k) tiles.push_back(r.images[k]);
    std::cerr << "generate: [" << i << "] " << prompts[i] << '\n';
  }
  cxrl::io::write_png(o.out, cxrl::io::make_grid(tiles, static_cast<int>(o.n), 2, 1.0f));
  std::cout << "wrote " << o.out << " (" << prompts.size() << " rows × " << o.n << ")\n";
}

inline void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Write a PNG grid of images generated from report texts");
  auto o = std::make_shared<GenerateCmdOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("model", o->model, "diffusers folder (phantom anchor or RoentGen)");
  s->add("run", o->run, "finetune run folder: anchor and fine-tuned side by side (its own anchor and sampler settings)");
  s->add("prompt", o->prompt, "report text (repeatable)");
  s->add("prompts_file", o->prompts_file, "file with one report per line");
  s->add("n", o->n, "images per report");
  s->add("steps", o->steps, "DDIM steps");
  s->add("guidance", o->guidance, "classifier-free guidance scale (1 = off)");
  s->add("eta", o->eta, "DDIM eta (0 = deterministic)");
  s->add("seed", o->seed, "seed (report i uses seed + i)");
  s->add("out", o->out, "output PNG");
  cmd->callback([o, s] {
    s->resolve();
    run_generate(*o);
  });
}

}  // namespace cxrl_mimic
