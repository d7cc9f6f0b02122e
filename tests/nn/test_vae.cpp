// AutoencoderKL: posterior closed forms, from_pretrained, and config errors.
#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace cxrl;

TEST_CASE("DiagonalGaussianDistribution: clamp, std, sample, KL closed form", "[vae]") {
  auto mean = torch::tensor({0.5f, -1.0f, 0.0f, 2.0f}).view({1, 4, 1, 1});
  auto logvar = torch::tensor({0.0f, 50.0f, -40.0f, std::log(4.0f)}).view({1, 4, 1, 1});
  nn::DiagonalGaussianDistribution d(torch::cat({mean, logvar}, 1));
  CHECK(torch::equal(d.parameters, torch::cat({mean, logvar}, 1)));
  CHECK(d.logvar.flatten()[1].item<float>() == 20.0f);
  CHECK(d.logvar.flatten()[2].item<float>() == -30.0f);
  CHECK(d.std.flatten()[3].item<float>() == Approx(2.0f));
  auto noise = torch::full({1, 4, 1, 1}, 0.5f);
  CHECK(d.sample(noise).flatten()[3].item<float>() == Approx(3.0f));
  CHECK(torch::equal(d.mode(), mean));
  // KL(N(μ,σ²) || N(0,1)) per element = 0.5 (μ² + σ² − 1 − log σ²)
  nn::DiagonalGaussianDistribution u(torch::cat({mean.narrow(1, 0, 1), torch::zeros({1, 1, 1, 1})}, 1));
  CHECK(u.kl().item<float>() == Approx(0.5 * 0.25));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(3), g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  CHECK(torch::equal(d.sample(g1), d.sample(g2)));
}

TEST_CASE("AutoencoderKL from_pretrained encodes and decodes like the reference", "[vae]") {
  torch::NoGradGuard ng;
  const fs::path dir = fs::path(CXRL_TEST_DATA) / "vae_tiny";
  auto vae = nn::AutoencoderKLImpl::from_pretrained(dir);
  io::SafeTensorsFile io(dir / "io.safetensors");
  auto post = vae->encode(io.get("image"));
  CHECK(torch::allclose(post.mean, io.get("latent_mean"), 1e-4, 1e-4));
  CHECK(torch::allclose(vae->forward(io.get("image")), io.get("reconstruction_mode"), 1e-4, 1e-4));
  CHECK(vae->config().scaling_factor == Approx(0.18215));
}

TEST_CASE("AutoencoderKL config errors name file, key and allowed values", "[vae][config]") {
  std::ifstream in(fs::path(CXRL_TEST_DATA) / "vae_tiny" / "config.json");
  auto j = nlohmann::json::parse(in);
  auto bad = j;
  bad["up_block_types"][1] = "AttnUpDecoderBlock2D";
  std::string msg;
  try {
    nn::AutoencoderKLConfig::from_json(bad, "vae/config.json");
  } catch (const nn::ConfigError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Catch::Contains("vae/config.json") && Catch::Contains("up_block_types") &&
                      Catch::Contains("AttnUpDecoderBlock2D") && Catch::Contains("UpDecoderBlock2D"));
  bad = j;
  bad["block_out_channels"] = {32, 48};  // 48 not divisible by 32 groups
  CHECK_THROWS_AS(nn::AutoencoderKLConfig::from_json(bad, "c.json"), nn::ConfigError);
}
