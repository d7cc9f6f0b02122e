// Smoke test of `cxrl_mimic pretrain`: a tiny anchor trained for a few steps is written as a diffusers
// folder that StableDiffusion::from_pretrained loads strictly and samples from.
#include <catch2/catch.hpp>

#include "../../examples/cxrl_mimic/cmd_generate.hpp"
#include "../../examples/cxrl_mimic/cmd_pretrain.hpp"

#include <cxrl/diffusion/pipeline.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>

#include <filesystem>

namespace {
cxrl_mimic::PretrainOptions tiny_pretrain(const std::filesystem::path& out) {
  cxrl_mimic::PretrainOptions o;
  o.out = out.string();
  o.tokenizer = std::string(CXRL_TEST_DATA) + "/clip_tokenizer";
  o.resolution = 16;
  o.vae_block_out_channels = {16, 16};  // f = 2: 2 × 8² latents
  o.latent_channels = 2;
  o.vae_steps = 3;
  o.vae_batch_size = 2;
  o.denoiser.steps = 4;
  o.denoiser.batch_size = 2;
  o.denoiser.warmup_steps = 1;
  o.n_train = 8;
  o.denoiser.block_out_channels = {16, 16};
  o.denoiser.text_hidden = 8;
  o.denoiser.text_layers = 1;
  o.denoiser.checkpoint_every = 2;
  o.quiet = true;
  return o;
}
}  // namespace

TEST_CASE("pretrain writes a diffusers folder that loads and samples like RoentGen", "[pretrain]") {
  namespace fs = std::filesystem;
  const auto out = fs::temp_directory_path() / "cxrl_test_pretrain";
  fs::remove_all(out);
  const auto o = tiny_pretrain(out);
  cxrl_mimic::run_pretrain(o, {{"steps", o.denoiser.steps}});

  for (const char* f : {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                        "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
                        "tokenizer/merges.txt", "scheduler/scheduler_config.json", "pretrain_config.json"}) {
    INFO(f);
    CHECK(fs::exists(out / f));
  }
  CHECK_FALSE(fs::exists(out / "checkpoints"));  // resumable state is dropped once the run completes
  CHECK_FALSE(fs::exists(out / "stage1_vae"));
  CHECK(cxrl::io::SafeTensorsFile(out / "unet" / "diffusion_pytorch_model.safetensors").info("conv_in.weight").dtype ==
        torch::kFloat16);

  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(out);
  CHECK(sd.is_latent());
  CHECK(sd.sample_shape() == std::vector<int64_t>{2, 8, 8});
  CHECK(sd.image_shape() == std::vector<int64_t>{1, 16, 16});
  // The latent scale was measured (1 / std of the training latents), not SD's 0.18215.
  CHECK(sd.vae->config().scaling_factor > 0);
  CHECK(sd.vae->config().scaling_factor != Approx(0.18215));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  cxrl::diffusion::GenerateOptions g;
  g.num_inference_steps = 3;
  g.guidance_scale = 2.0;
  g.eta = 1.0;
  const auto r = cxrl::diffusion::generate(sd, sd.make_scheduler(), {"Mild cardiomegaly.", ""}, gen, g);
  CHECK(r.images.sizes() == torch::IntArrayRef({2, 1, 16, 16}));
  CHECK(r.images.min().item<float>() >= 0.0f);
  CHECK(r.images.max().item<float>() <= 1.0f);
  CHECK(torch::isfinite(r.log_probs).all().item<bool>());

  // `generate` writes one grid row per report: 2 rows x 3 tiles of 16 px with 2 px padding.
  cxrl_mimic::GenerateCmdOptions go;
  go.model = out.string();
  go.prompt = {"Small left pleural effusion.", "No acute cardiopulmonary process."};
  go.n = 3;
  go.steps = 2;
  go.out = (out / "grid.png").string();
  cxrl_mimic::run_generate(go);
  const auto grid = cxrl::io::read_image(go.out);
  CHECK(grid.sizes() == torch::IntArrayRef({1, 2 * 18 + 2, 3 * 18 + 2}));
  const auto prompts_file = out / "prompts.txt";
  std::ofstream(prompts_file) << "Mild edema.\n\nNo effusion.\n";
  go.prompt.clear();
  go.prompts_file = prompts_file.string();
  CHECK_THROWS_WITH(cxrl_mimic::run_generate(go), Catch::Contains("prompts.txt:2: empty report"));
  fs::remove_all(out);
}

TEST_CASE("pretrain names a missing tokenizer folder", "[pretrain]") {
  auto o = tiny_pretrain(std::filesystem::temp_directory_path() / "cxrl_test_pretrain_bad");
  o.tokenizer = "/nonexistent/tokenizer";
  CHECK_THROWS_WITH(cxrl_mimic::run_pretrain(o, {}), Catch::Contains("/nonexistent/tokenizer"));
}
