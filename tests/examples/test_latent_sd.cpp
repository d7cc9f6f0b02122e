// The real-model path end to end on a tiny latent Stable Diffusion: the fixtures' unet_tiny (4 latent channels,
// cross-attention width 32) and vae_tiny (RGB, 4 latent channels, ×2 per axis) with the phantom anchor's text
// encoder, tokenizer and scheduler. finetune, evaluate and generate must work at the VAE's output size (64 px RGB
// from 32² latents), with every reward and judge fed RGB images.
#include <catch2/catch.hpp>

#include "../../examples/cxrl_mimic/cmd_evaluate.hpp"
#include "../../examples/cxrl_mimic/cmd_finetune.hpp"
#include "../../examples/cxrl_mimic/cmd_generate.hpp"

#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/image.hpp>

#include <filesystem>
#include <fstream>

namespace {
namespace fs = std::filesystem;
const fs::path kData = CXRL_TEST_DATA;

/// [channels as stored in the file, height, width] of an image file.
std::vector<int64_t> stored_shape(const fs::path& png) {
  int w = 0, h = 0, c = 0;
  REQUIRE(stbi_info(png.c_str(), &w, &h, &c) == 1);
  return {c, h, w};
}
const fs::path kAssets = kData / ".." / ".." / "assets" / "phantom";

/// A diffusers folder: unet_tiny + vae_tiny + the phantom anchor's text encoder, tokenizer and scheduler.
fs::path tiny_latent_sd(const fs::path& dir) {
  fs::remove_all(dir);
  for (const char* sub : {"unet", "vae"}) fs::create_directories(dir / sub);
  for (const char* f : {"config.json", "diffusion_pytorch_model.safetensors"}) {
    fs::copy_file(kData / "unet_tiny" / f, dir / "unet" / f);
    fs::copy_file(kData / "vae_tiny" / f, dir / "vae" / f);
  }
  for (const char* sub : {"text_encoder", "tokenizer", "scheduler"})
    fs::copy(kAssets / "roentgen" / sub, dir / sub, fs::copy_options::recursive);
  std::ofstream(dir / "model_index.json") << R"({"_class_name": "StableDiffusionPipeline",
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [null, null]})";
  return dir;
}
}  // namespace

TEST_CASE("a latent SD (RGB VAE) fine-tunes, evaluates and generates at the VAE's output size", "[latent][finetune][evaluate]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_latent_sd";
  fs::remove_all(root);
  const auto model = tiny_latent_sd(root / "model");
  const auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(model);
  REQUIRE(sd.is_latent());
  CHECK(sd.sample_shape() == std::vector<int64_t>{4, 32, 32});
  CHECK(sd.image_shape() == std::vector<int64_t>{3, 64, 64});

  cxrl_mimic::AssetPaths assets;
  assets.roentgen = model.string();
  assets.rewards_dir = (kAssets / "rewards").string();
  assets.judges = (kAssets / "judges").string();
  assets.vocab = (kData / "wordpiece" / "vocab.txt").string();

  cxrl_mimic::FinetuneOptions o;
  o.out = (root / "run").string();
  o.assets = assets;
  o.world.tokenizer_dir = (kData / "clip_tokenizer").string();
  o.rewards = "diag,align,consist";  // any order: one set, one row
  o.policy.steps = 2;
  o.epochs = 2;
  o.batch_size = 2;
  o.num_batches = 1;
  o.train_batch_size = 2;
  o.n_prompts = 16;
  o.grid_prompts = 2;
  o.quiet = true;
  const auto summary = cxrl_mimic::run_finetune(o);
  CHECK(summary.at("name") == "CXRL");
  // Per-epoch grid: anchor row over policy row of 64 px RGB tiles.
  CHECK(stored_shape(fs::path(o.out) / "grids" / "epoch_2.png") == std::vector<int64_t>{3, 2 * 66 + 2, 2 * 66 + 2});
  std::ifstream jl(fs::path(o.out) / "metrics.jsonl");
  std::string first;
  std::getline(jl, first);
  const auto line = nlohmann::json::parse(first);
  CHECK(std::isfinite(line["reward/consist/policy_score"].get<double>()));

  cxrl_mimic::EvaluateOptions e;
  e.runs = {o.out};
  e.out = (root / "report").string();
  e.assets = assets;
  e.world = o.world;
  e.sampling.steps = 2;
  e.n_eval = 6;
  e.n_diversity = 2;
  e.generations = 2;
  e.batch_size = 6;
  e.replicates = 20;
  e.sheet_reports = 3;
  e.quiet = true;
  const auto t = cxrl_mimic::run_evaluate(e);
  CHECK(t["resolution"] == 64);
  // The run is in every table (its reward set was written in another order).
  for (const auto& tab : t["tables"]) {
    INFO(tab["id"]);
    REQUIRE(tab["rows"].size() >= 2);  // Tables 1 and 3 end with the real images' reference row
    CHECK(tab["rows"][1]["seeds"] == 1);
    for (const auto& [k, c] : tab["rows"][1]["metrics"].items()) {
      INFO(k);
      CHECK((c["mean"].is_number() || k.find("AUROC") != std::string::npos || tab["id"] == "3"));
    }
  }
  // samples.png: real (gray) and generated (RGB) rows of 64 px tiles upscaled ×3.
  const auto sheet = stored_shape(fs::path(e.out) / "samples.png");
  CHECK(sheet[0] == 3);
  CHECK(sheet[1] > 3 * 3 * 64);

  cxrl_mimic::GenerateCmdOptions g;
  g.model = model.string();
  g.prompt = {"Small left pleural effusion."};
  g.n = 2;
  g.steps = 2;
  g.out = (root / "generated.png").string();
  cxrl_mimic::run_generate(g);
  CHECK(stored_shape(g.out) == std::vector<int64_t>{3, 66 + 2, 2 * 66 + 2});
  fs::remove_all(root);
}
