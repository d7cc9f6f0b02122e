// What one DDPO step costs at RoentGen's size: Stable Diffusion 1.5's UNet, VAE and CLIP ViT-L/14 text encoder (the
// released configs, random weights: the cost does not depend on the values), 512 px images from 64² latents, batch 1,
// LoRA (rank 4) + ACE (N = 3) as CXRL trains them. Measures, each after a warm-up:
//   sample step   one stochastic DDIM step of the policy with classifier-free guidance (a batch of 2 through the UNet)
//   anchor step   the same step with the adapters off (RLCF's anchor pass)
//   decode        the VAE decoder on one latent (done once per sample, for the policy and for the anchor)
//   train step    log p of one recorded step with gradient, and its backward into LoRA + ACE (one DDPO timestep)
// and the peak RSS after each, with ratios against the anchor step. Prints a table and one JSON line; asserts nothing. docs/cost.md turns these into the
// cost of a CXRL epoch on CPU and on a GPU. Usage: bench_sd15 [sd15_configs dir] [tokenizer dir]
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/malloc_tuning.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double peak_rss_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);
}
template <class F>
double seconds(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
nlohmann::json read(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error(p.string() + ": not found");
  return nlohmann::json::parse(in);
}
}  // namespace

int main(int argc, char** argv) {
  cxrl::io::retain_freed_memory();
  const fs::path cfg_dir = argc > 1 ? argv[1] : fs::path(CXRL_SOURCE_DIR) / "tests" / "data" / "sd15_configs";
  const fs::path tok_dir = argc > 2 ? argv[2] : fs::path(CXRL_SOURCE_DIR) / "tests" / "data" / "clip_tokenizer";
  const torch::Device dev = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const int threads = torch::get_num_threads();
  torch::manual_seed(0);

  cxrl::diffusion::StableDiffusion sd;
  sd.unet = cxrl::nn::UNet2DConditionModel(cxrl::nn::UNet2DConditionConfig::from_json(read(cfg_dir / "sd15_unet_config.json"), "sd15_unet_config.json"));
  sd.vae = cxrl::nn::AutoencoderKL(cxrl::nn::AutoencoderKLConfig::from_json(read(cfg_dir / "sd15_vae_config.json"), "sd15_vae_config.json"));
  sd.text_encoder = cxrl::nn::CLIPTextModel(cxrl::nn::CLIPTextConfig::from_json(read(cfg_dir / "clip_vit_l14_text_config.json"), "clip_vit_l14_text_config.json"));
  sd.tokenizer = std::make_shared<const cxrl::text::ClipTokenizer>(cxrl::text::ClipTokenizer::from_pretrained(tok_dir));
  sd.scheduler_config.steps_offset = 1;
  sd.scheduler_config.beta_schedule = cxrl::diffusion::BetaSchedule::scaled_linear;
  sd.scheduler_config.beta_start = 0.00085;
  sd.scheduler_config.beta_end = 0.012;
  sd.scheduler_config.clip_sample = false;
  sd.scheduler_config.set_alpha_to_one = false;
  sd.unet->to(dev);
  sd.vae->to(dev);
  sd.text_encoder->to(dev);
  const auto unet_params = cxrl::nn::count_parameters(*sd.unet).parameters;

  cxrl::policy::LoraAcePolicyConfig pc;
  pc.lora.rank = 4;
  pc.lora.alpha = 4;
  pc.ace.num_tokens = 3;
  auto policy = cxrl::policy::LoraAcePolicy::from_components(sd, pc);
  int64_t trainable = 0;
  for (const auto& p : policy.trainable_parameters()) trainable += p.numel();
  const double rss_loaded = peak_rss_gib();

  cxrl::core::DdimSamplerConfig sc;
  sc.num_steps = 1;  // one step per sampler call: the cost of a step
  sc.eta = 1.0;
  sc.guidance_scale = 5.0;
  sc.reencode_prompts = true;
  cxrl::core::DdimSampler sampler(sd.make_scheduler(), sc);
  const std::vector<std::string> prompt{"Moderate right pleural effusion. Mild cardiomegaly."};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);

  // Warm-up (allocator, kernels), then measure. sample() = text encoding + 1 UNet step (CFG) + VAE decode.
  cxrl::core::Trajectory traj;
  const double t_first = seconds([&] { traj = sampler.sample(policy, prompt, gen); });
  double t_sample_decode = 0, t_decode = 0, t_anchor_decode = 0, t_train = 0;
  t_sample_decode = seconds([&] { traj = sampler.sample(policy, prompt, gen); });
  const double rss_sample = peak_rss_gib();
  {
    torch::NoGradGuard ng;
    const auto x0 = traj.latents.select(1, 1);
    t_decode = seconds([&] { (void)policy.decode(x0); });
  }
  t_anchor_decode = seconds([&] { sampler.sample_anchor(policy, traj, gen); });
  auto steps = torch::zeros({1}, torch::kLong);
  t_train = seconds([&] {
    auto lp = sampler.log_prob(policy, traj, steps);
    lp.sum().backward();
  });
  t_train = seconds([&] {
    for (auto& p : policy.trainable_parameters()) p.mutable_grad() = torch::Tensor();
    auto lp = sampler.log_prob(policy, traj, steps);
    lp.sum().backward();
  });
  const double rss_train = peak_rss_gib();
  const double t_step = t_sample_decode - t_decode, t_anchor = t_anchor_decode - t_decode;

  std::printf("SD 1.5 (UNet %.0fM parameters; LoRA rank 4 + ACE N=3: %lld trainable), 512 px, batch 1, CFG 5, %s, %d threads\n",
              unet_params / 1e6, static_cast<long long>(trainable), dev.is_cuda() ? "CUDA" : "CPU", threads);
  std::printf("%-44s %10s %14s\n", "phase", "seconds", "peak RSS GiB");
  std::printf("%-44s %10.2f %14.2f\n", "weights loaded (fp32)", 0.0, rss_loaded);
  std::printf("%-44s %10.2f %14s\n", "first call (warm-up)", t_first, "");
  std::printf("%-44s %10.2f %14.2f\n", "sample step: policy UNet with CFG", t_step, rss_sample);
  std::printf("%-44s %10.2f %14s\n", "anchor step: the same, adapters off", t_anchor, "");
  std::printf("%-44s %10.2f %14s\n", "VAE decode (per sample)", t_decode, "");
  std::printf("%-44s %10.2f %14.2f\n", "train step: log p with grad + backward", t_train, rss_train);
  // Ratios against the anchor step measured in this run: what the adapters add to a step, and what a training step
  // (forward with grad + backward) costs relative to sampling.
  std::printf("ratios: policy/anchor step %.3f, train/sample step %.2f\n", t_step / t_anchor, t_train / t_step);
  nlohmann::json j{{"bench", "sd15_ddpo_step"}, {"policy_over_anchor", t_step / t_anchor}, {"train_over_sample", t_train / t_step}, {"device", dev.is_cuda() ? "cuda" : "cpu"}, {"threads", threads},
                   {"unet_parameters", unet_params}, {"trainable_parameters", trainable},
                   {"sample_step_s", t_step}, {"anchor_step_s", t_anchor}, {"decode_s", t_decode}, {"train_step_s", t_train},
                   {"peak_rss_gib", {{"loaded", rss_loaded}, {"sampling", rss_sample}, {"training", rss_train}}}};
  std::cout << j.dump() << "\n";
  return 0;
}
