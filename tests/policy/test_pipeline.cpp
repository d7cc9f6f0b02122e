// StableDiffusion::from_pretrained on a tiny random pixel-space folder written here, and generate():
// image range/shape, determinism per seed, the CFG/DDIM loop re-derived by hand, log-probs with eta > 0,
// the policy on the loaded components, and errors for missing parts.
#include "tiny_models.hpp"

#include <cxrl/core/concepts.hpp>
#include <cxrl/diffusion/pipeline.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using cxrl::diffusion::GenerateOptions;
using cxrl::diffusion::StableDiffusion;
using namespace cxrl_test;
namespace fs = std::filesystem;

static_assert(cxrl::core::Policy<StableDiffusion>);

namespace {

void write_json(const fs::path& p, const nlohmann::json& j) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << j.dump(2);
}

// Writes a pixel-space SD folder from random modules; returns the modules that were saved.
struct Written {
  cxrl::nn::UNet2DConditionModel unet{nullptr};
  cxrl::nn::CLIPTextModel clip{nullptr};
};

Written write_tiny_sd(const fs::path& dir) {
  fs::remove_all(dir);
  Written w{tiny_unet(11), tiny_clip(12)};
  const auto uc = tiny_unet_config();
  write_json(dir / "unet" / "config.json",
             {{"_class_name", "UNet2DConditionModel"}, {"_diffusers_version", "0.24.0"},
              {"in_channels", uc.in_channels}, {"out_channels", uc.out_channels}, {"sample_size", *uc.sample_size},
              {"block_out_channels", uc.block_out_channels}, {"layers_per_block", uc.layers_per_block[0]},
              {"down_block_types", uc.down_block_types}, {"up_block_types", uc.up_block_types},
              {"cross_attention_dim", uc.cross_attention_dim[0]}, {"attention_head_dim", uc.attention_head_dim[0]},
              {"norm_num_groups", uc.norm_num_groups}});
  cxrl::io::save_safetensors(dir / "unet" / "diffusion_pytorch_model.safetensors", cxrl::io::state_dict(*w.unet));
  write_json(dir / "text_encoder" / "config.json", tiny_clip_config().to_json());
  cxrl::io::save_safetensors(dir / "text_encoder" / "model.safetensors", cxrl::io::state_dict(*w.clip));
  fs::create_directories(dir / "tokenizer");
  const fs::path tok = fs::path(CXRL_TEST_DATA) / "clip_tokenizer";
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    fs::copy_file(tok / f, dir / "tokenizer" / f);
  write_json(dir / "scheduler" / "scheduler_config.json",
             {{"_class_name", "DDIMScheduler"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
              {"beta_schedule", "scaled_linear"}, {"clip_sample", false}, {"set_alpha_to_one", false},
              {"steps_offset", 1}, {"num_train_timesteps", 1000}, {"prediction_type", "epsilon"}});
  write_json(dir / "model_index.json",
             {{"_class_name", "StableDiffusionPipeline"}, {"_diffusers_version", "0.24.0"},
              {"unet", {"diffusers", "UNet2DConditionModel"}}, {"vae", {nullptr, nullptr}},
              {"text_encoder", {"transformers", "CLIPTextModel"}}, {"tokenizer", {"transformers", "CLIPTokenizer"}},
              {"scheduler", {"diffusers", "DDIMScheduler"}}, {"safety_checker", {nullptr, nullptr}},
              {"feature_extractor", {nullptr, nullptr}}, {"requires_safety_checker", false}});
  return w;
}

const std::vector<std::string> kPrompts{"No acute cardiopulmonary process.", "Moderate right pleural effusion."};

}  // namespace

TEST_CASE("a tiny pixel-space SD folder loads and generates deterministic images in [0,1]", "[policy][pipeline]") {
  const auto dir = fs::temp_directory_path() / "cxrl_tiny_sd";
  auto written = write_tiny_sd(dir);
  auto sd = StableDiffusion::from_pretrained(dir);
  REQUIRE_FALSE(sd.is_latent());
  CHECK(sd.sample_shape() == std::vector<int64_t>{1, 16, 16});
  CHECK(sd.scheduler_config.steps_offset == 1);
  CHECK(torch::equal(sd.unet->conv_out->weight, written.unet->conv_out->weight));
  CHECK(torch::equal(sd.text_encoder->text_model->final_layer_norm->weight,
                     written.clip->text_model->final_layer_norm->weight));

  GenerateOptions opt;
  opt.num_inference_steps = 4;
  opt.guidance_scale = 3.0;
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(123);
  auto out = cxrl::diffusion::generate(sd, sd.make_scheduler(), kPrompts, g1, opt);
  CHECK(out.images.sizes() == torch::IntArrayRef({2, 1, 16, 16}));
  CHECK(out.images.min().item<float>() >= 0.0f);
  CHECK(out.images.max().item<float>() <= 1.0f);
  CHECK(out.images.std().item<float>() > 0.0f);
  CHECK(out.latents.sizes() == torch::IntArrayRef({2, 5, 1, 16, 16}));
  CHECK_FALSE(out.log_probs.defined());  // eta = 0
  CHECK(torch::equal(out.timesteps, torch::tensor({751, 501, 251, 1}, torch::kLong)));

  auto g2 = at::make_generator<at::CPUGeneratorImpl>(123);
  CHECK(torch::equal(cxrl::diffusion::generate(sd, sd.make_scheduler(), kPrompts, g2, opt).images, out.images));
  auto g3 = at::make_generator<at::CPUGeneratorImpl>(124);
  CHECK_FALSE(torch::equal(cxrl::diffusion::generate(sd, sd.make_scheduler(), kPrompts, g3, opt).images, out.images));

  // The loop re-derived: x_T from the generator, eps = eps_u + w (eps_c - eps_u), deterministic DDIM steps.
  torch::NoGradGuard ng;
  auto g4 = at::make_generator<at::CPUGeneratorImpl>(123);
  auto sched = sd.make_scheduler();
  sched.set_timesteps(4);
  auto x = torch::randn({2, 1, 16, 16}, g4);
  CHECK(torch::equal(x, out.latents.select(1, 0)));
  const auto c = sd.encode(kPrompts), u = sd.encode({"", ""});
  for (int64_t i = 0; i < 4; ++i) {
    auto t = sched.timesteps()[i];
    auto eu = sd.unet->forward(x, t, u), ec = sd.unet->forward(x, t, c);
    x = sched.step(eu + 3.0 * (ec - eu), t, x).prev_sample;
    // 1e-4, not exact: the pipeline runs both CFG branches in one batch of 4, this loop in two batches of 2, and
    // the GEMM blocking (so the float32 rounding) differs with the batch; 4 steps compound it to about 1e-5.
    CHECK((x - out.latents.select(1, i + 1)).abs().max().item<double>() < 1e-4);
  }
  CHECK((((x / 2 + 0.5).clamp(0, 1)) - out.images).abs().max().item<double>() < 1e-4);
  fs::remove_all(dir);
}

TEST_CASE("generate with eta > 0 records log-probs, the policy samples from the loaded components",
          "[policy][pipeline]") {
  const auto dir = fs::temp_directory_path() / "cxrl_tiny_sd_policy";
  write_tiny_sd(dir);
  auto sd = StableDiffusion::from_pretrained(dir);
  GenerateOptions opt;
  opt.num_inference_steps = 3;
  opt.guidance_scale = 2.0;
  opt.eta = 1.0;
  auto g = at::make_generator<at::CPUGeneratorImpl>(5);
  auto base = cxrl::diffusion::generate(sd, sd.make_scheduler(), kPrompts, g, opt);
  REQUIRE(base.log_probs.defined());
  CHECK(base.log_probs.sizes() == torch::IntArrayRef({2, 3}));
  CHECK(torch::isfinite(base.log_probs).all().item<bool>());
  // Teacher forcing the recorded transition reproduces the recorded log-prob.
  {
    torch::NoGradGuard ng;
    auto sched = sd.make_scheduler();
    sched.set_timesteps(3);
    const auto t = sched.timesteps()[1];
    auto x1 = base.latents.select(1, 1);
    auto c = torch::cat({sd.encode({"", ""}), sd.encode(kPrompts)});
    auto both = sd.unet->forward(torch::cat({x1, x1}), t, c).chunk(2);
    auto lp = sched.step_with_logprob(both[0] + 2.0 * (both[1] - both[0]), t, x1, 1.0, base.latents.select(1, 2)).log_prob;
    CHECK((lp - base.log_probs.select(1, 1)).abs().max().item<double>() < 1e-4);
  }

  // A LoRA-only policy (B = 0, no ACE) on the same modules samples exactly the base images for the same seed;
  // with ACE tokens the condition, and so the images, change. One prompt: the policy encodes each prompt on its
  // own (lora_ace_policy.hpp says why) and the pipeline a batch of them, and with a GEMM whose rows depend on the
  // row count (OpenBLAS's Haswell kernel) the two encodings of a batch of 2 differ in the last bits.
  const std::vector<std::string> one{kPrompts[0]};
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(5);
  auto base1 = cxrl::diffusion::generate(sd, sd.make_scheduler(), one, g1, opt);
  cxrl::policy::LoraAcePolicyConfig no_ace;
  no_ace.use_ace = false;
  auto policy = cxrl::policy::LoraAcePolicy::from_components(sd, no_ace);
  auto gp = at::make_generator<at::CPUGeneratorImpl>(5);
  auto pol = cxrl::diffusion::generate(policy, sd.make_scheduler(), one, gp, opt);
  CHECK(torch::equal(pol.images, base1.images));
  CHECK(torch::equal(pol.log_probs, base1.log_probs));
  fs::remove_all(dir);

  const auto dir2 = fs::temp_directory_path() / "cxrl_tiny_sd_policy2";
  write_tiny_sd(dir2);
  auto sd2 = StableDiffusion::from_pretrained(dir2);
  cxrl::policy::LoraAcePolicyConfig with_ace;
  with_ace.ace.init_std = 1.0;
  auto policy2 = cxrl::policy::LoraAcePolicy::from_components(sd2, with_ace);
  auto gq = at::make_generator<at::CPUGeneratorImpl>(5);
  auto ace = cxrl::diffusion::generate(policy2, sd2.make_scheduler(), kPrompts, gq, opt);
  CHECK(ace.images.sizes() == base.images.sizes());
  CHECK_FALSE(torch::equal(ace.images, base.images));
  fs::remove_all(dir2);
}

TEST_CASE("from_pretrained names missing subfolders and files", "[policy][pipeline]") {
  const auto dir = fs::temp_directory_path() / "cxrl_tiny_sd_errors";
  write_tiny_sd(dir);
  fs::remove(dir / "tokenizer" / "merges.txt");
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("merges.txt"));
  write_tiny_sd(dir);
  fs::remove_all(dir / "unet");
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("unet/"));
  write_tiny_sd(dir);
  auto idx = nlohmann::json::parse(std::ifstream(dir / "model_index.json"));
  idx["vae"] = {"diffusers", "AutoencoderKL"};
  write_json(dir / "model_index.json", idx);
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("vae/") && Catch::Contains("model_index.json"));
  idx["vae"] = {nullptr, nullptr};
  idx["text_encoder_2"] = {"transformers", "CLIPTextModelWithProjection"};
  write_json(dir / "model_index.json", idx);
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("text_encoder_2"));
  write_tiny_sd(dir);
  fs::remove(dir / "text_encoder" / "model.safetensors");
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("model.safetensors"));
  write_tiny_sd(dir);
  fs::remove(dir / "model_index.json");  // partial folder: still loads, pixel-space
  CHECK_FALSE(StableDiffusion::from_pretrained(dir).is_latent());
  fs::remove(dir / "scheduler" / "scheduler_config.json");
  CHECK_THROWS_WITH(StableDiffusion::from_pretrained(dir), Catch::Contains("scheduler_config.json"));
  fs::remove_all(dir);
}
