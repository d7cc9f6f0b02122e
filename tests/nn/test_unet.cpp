// UNet2DConditionModel: real SD v1.5 parameter counts on the meta device, config errors, strict loading,
// the two Transformer2DModel projection forms, chunked attention and odd spatial sizes.
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/attention.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/transformer_2d.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace cxrl;

namespace {

const fs::path kData = CXRL_TEST_DATA;

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

int64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

int64_t module_params(const torch::nn::Module& m) { return nn::count_parameters(m).parameters; }

fs::path write_config(const nlohmann::json& j, const std::string& name) {
  auto dir = fs::temp_directory_path() / ("cxrl_test_unet_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto p = dir / name;
  std::ofstream(p) << j.dump(2);
  return p;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("SD v1.5 UNet and VAE parameter counts equal diffusers' (meta device, no allocation)", "[unet][meta]") {
  const auto params = read_json(kData / "sd15_configs" / "params.json");
  const int64_t rss0 = rss_bytes();
  {
    nn::ParamScope scope(torch::Device("meta"));
    nn::UNet2DConditionModel unet(nn::UNet2DConditionConfig::load(kData / "sd15_configs" / "sd15_unet_config.json"));
    CHECK(unet->conv_in->weight.device().type() == c10::DeviceType::Meta);
    const auto c = nn::count_parameters(*unet);
    const auto& ref = params.at("sd15_unet");
    CHECK(c.parameters == ref.at("num_parameters").get<int64_t>());
    CHECK(c.state_tensors == ref.at("num_state_dict_tensors").get<int64_t>());
    CHECK(c.buffer_elements == 0);
    for (const auto& [name, n] : ref.at("parameters_by_top_level_module").items()) {
      auto children = unet->named_children();
      if (!children.contains(name)) {
        CHECK(n.get<int64_t>() == 0);  // conv_act: a function here, not a module
        continue;
      }
      INFO(name);
      CHECK(module_params(*children[name]) == n.get<int64_t>());
    }

    nn::AutoencoderKL vae(nn::AutoencoderKLConfig::load(kData / "sd15_configs" / "sd15_vae_config.json"));
    const auto v = nn::count_parameters(*vae);
    const auto& vref = params.at("sd15_vae");
    CHECK(v.parameters == vref.at("num_parameters").get<int64_t>());
    CHECK(v.state_tensors == vref.at("num_state_dict_tensors").get<int64_t>());
    for (const auto& [name, n] : vref.at("parameters_by_top_level_module").items()) {
      INFO(name);
      CHECK(module_params(*vae->named_children()[name]) == n.get<int64_t>());
    }
  }
  // 860M float32 parameters would be 3.4 GB; on the meta device the growth is bookkeeping only.
  const int64_t grown = rss_bytes() - rss0;
  WARN("RSS growth while building SD v1.5 UNet + VAE on the meta device: " << grown / (1 << 20) << " MiB");
  CHECK(grown < (int64_t{256} << 20));
}

TEST_CASE("UNet config: unsupported values are errors naming file, key and allowed values", "[unet][config]") {
  auto j = read_json(kData / "unet_tiny" / "config.json");

  auto bad = j;
  bad["down_block_types"][0] = "SimpleCrossAttnDownBlock2D";
  auto p = write_config(bad, "bad_down.json");
  auto msg = error_of([&] { nn::UNet2DConditionConfig::load(p); });
  CHECK_THROWS_AS(nn::UNet2DConditionConfig::load(p), nn::ConfigError);
  CHECK_THAT(msg, Catch::Contains(p.string()) && Catch::Contains("down_block_types") &&
                      Catch::Contains("SimpleCrossAttnDownBlock2D") && Catch::Contains("CrossAttnDownBlock2D") &&
                      Catch::Contains("DownBlock2D"));

  bad = j;
  bad["class_embed_type"] = "timestep";
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "x/config.json"); });
  CHECK_THAT(msg, Catch::Contains("x/config.json") && Catch::Contains("class_embed_type") && Catch::Contains("null"));

  bad = j;
  bad["up_block_types"] = {"UpBlock2D"};
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "c.json"); });
  CHECK_THAT(msg, Catch::Contains("c.json") && Catch::Contains("up_block_types"));

  bad = j;
  bad["attention_head_dim"] = {8, 8, 8};
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "c.json"); });
  CHECK_THAT(msg, Catch::Contains("attention_head_dim"));

  bad = j;
  bad["attention_head_dim"] = 7;  // 7 heads do not divide 32 channels
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "c.json"); });
  CHECK_THAT(msg, Catch::Contains("attention_head_dim") && Catch::Contains("heads"));

  bad = j;
  bad["act_fn"] = "tanh";
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "c.json"); });
  CHECK_THAT(msg, Catch::Contains("act_fn") && Catch::Contains("silu"));

  bad = j;
  bad["_class_name"] = "AutoencoderKL";
  msg = error_of([&] { nn::UNet2DConditionConfig::from_json(bad, "c.json"); });
  CHECK_THAT(msg, Catch::Contains("_class_name") && Catch::Contains("UNet2DConditionModel"));

  // Informational fields are ignored; per-block lists are accepted.
  auto ok = j;
  ok["sample_size"] = 77;
  ok["some_future_informational_field"] = 1;
  ok["attention_head_dim"] = {4, 8};
  const auto cfg = nn::UNet2DConditionConfig::from_json(ok, "ok.json");
  CHECK(cfg.heads_per_block() == std::vector<int64_t>{4, 8});
}

TEST_CASE("configs are range-checked before any division or allocation (each value gets its own message)", "[unet][config]") {
  const auto j = read_json(kData / "unet_tiny" / "config.json");
  auto bad_with = [&](const char* key, nlohmann::json v) {
    auto b = j;
    b[key] = v;
    return error_of([&] { nn::UNet2DConditionConfig::from_json(b, "u/config.json"); });
  };
  // These divided by zero (SIGFPE) or cast 1e30 to int64 (undefined behaviour) before.
  CHECK_THAT(bad_with("norm_num_groups", 0), Catch::Contains("u/config.json") && Catch::Contains("'norm_num_groups'") && Catch::Contains("divide by zero"));
  CHECK_THAT(bad_with("num_attention_heads", 0), Catch::Contains("'num_attention_heads'") && Catch::Contains("[1, 65536]"));
  CHECK_THAT(bad_with("attention_head_dim", 0), Catch::Contains("'attention_head_dim'"));
  CHECK_THAT(bad_with("layers_per_block", 1e30), Catch::Contains("'layers_per_block'") && Catch::Contains("expected an integer"));
  CHECK_THAT(bad_with("layers_per_block", 18446744073709551615ULL), Catch::Contains("'layers_per_block'") && Catch::Contains("2^63"));
  CHECK_THAT(bad_with("block_out_channels", nlohmann::json::array({32, 1 << 20})), Catch::Contains("'block_out_channels'") && Catch::Contains("65536"));
  CHECK_THAT(bad_with("sample_size", -1), Catch::Contains("'sample_size'"));
  CHECK(nn::UNet2DConditionConfig::from_json(j, "ok").block_out_channels == std::vector<int64_t>{32, 64});  // 2.0-style floats stay fine
  auto fl = j;
  fl["layers_per_block"] = 2.0;
  CHECK(nn::UNet2DConditionConfig::from_json(fl, "ok").layers_per_block == std::vector<int64_t>{2});

  auto v = read_json(kData / "vae_tiny" / "config.json");
  v["norm_num_groups"] = 0;
  CHECK_THAT(error_of([&] { nn::AutoencoderKLConfig::from_json(v, "v/config.json"); }),
             Catch::Contains("v/config.json") && Catch::Contains("'norm_num_groups'"));
  v = read_json(kData / "vae_tiny" / "config.json");
  v["latent_channels"] = 0;
  CHECK_THAT(error_of([&] { nn::AutoencoderKLConfig::from_json(v, "v/config.json"); }), Catch::Contains("'latent_channels'"));
}

TEST_CASE("UNet strict loading lists every missing, unexpected and mis-shaped key in one error", "[unet][load]") {
  const auto dir = kData / "unet_tiny";
  nn::UNet2DConditionModel unet(nn::UNet2DConditionConfig::load(dir));
  auto sd = io::load_safetensors(dir / "diffusion_pytorch_model.safetensors");
  REQUIRE(sd.size() == static_cast<size_t>(nn::count_parameters(*unet).state_tensors));
  CHECK_NOTHROW(io::load_state_dict(*unet, sd));

  auto broken = sd;
  broken.erase("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight");
  broken["conv_in.weight"] = torch::zeros({32, 4, 1, 1});
  broken["down_blocks.1.attentions.0.proj_in.lora_A.weight"] = torch::zeros({4, 64});
  io::LoadOptions opt;
  opt.source = "unet_tiny/diffusion_pytorch_model.safetensors";
  const auto msg = error_of([&] { io::load_state_dict(*unet, broken, opt); });
  CHECK_THAT(msg, Catch::Contains("unet_tiny/diffusion_pytorch_model.safetensors") &&
                      Catch::Contains("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight") &&
                      Catch::Contains("conv_in.weight") &&
                      Catch::Contains("down_blocks.1.attentions.0.proj_in.lora_A.weight"));
  CHECK_THROWS_AS(io::load_state_dict(*unet, broken, opt), io::CheckpointError);
}

TEST_CASE("UNet from_pretrained reproduces the golden output, odd sizes round-trip", "[unet][load]") {
  torch::NoGradGuard ng;
  const auto dir = kData / "unet_gray";
  auto unet = nn::UNet2DConditionModelImpl::from_pretrained(dir);
  io::SafeTensorsFile io(dir / "io.safetensors");
  const auto out = unet(io.get("sample"), io.get("timestep"), io.get("encoder_hidden_states"));
  CHECK(torch::allclose(out, io.get("out"), 1e-4, 1e-4));
  // A float timestep and a 0-d one broadcast like integers.
  const auto out_f = unet(io.get("sample"), io.get("timestep").to(torch::kFloat32), io.get("encoder_hidden_states"));
  CHECK(torch::allclose(out_f, out, 1e-6, 1e-6));
  // 3 levels => 2 up-samplings; 13x21 is not a multiple of 4 and must still come back at 13x21.
  const auto odd = unet(torch::randn({1, 1, 13, 21}), torch::tensor(5), torch::randn({1, 5, 64}));
  CHECK(odd.sizes() == torch::IntArrayRef({1, 1, 13, 21}));
  CHECK_THROWS(nn::UNet2DConditionModelImpl::from_pretrained(kData / "sd15_configs"));
}

TEST_CASE("Transformer2DModel: linear projection equals 1x1-conv projection with the same weights", "[unet][attention]") {
  torch::NoGradGuard ng;
  torch::manual_seed(5);
  nn::Transformer2DModelOptions o;
  o.num_attention_heads = 4;
  o.attention_head_dim = 8;
  o.in_channels = 32;
  o.cross_attention_dim = 16;
  o.norm_num_groups = 8;
  nn::Transformer2DModel conv(o);
  o.use_linear_projection = true;
  nn::Transformer2DModel lin(o);
  auto sd = io::state_dict(*conv);
  CHECK(sd.at("proj_in.weight").dim() == 4);
  CHECK(io::state_dict(*lin).at("proj_in.weight").sizes() == torch::IntArrayRef({32, 32}));
  for (auto& [k, v] : sd) {
    v = v.clone().normal_().mul_(0.3);
    if (k == "proj_in.weight" || k == "proj_out.weight") v = v.flatten(1);
  }
  io::load_state_dict(*lin, sd);
  for (auto& [k, v] : sd)
    if (k == "proj_in.weight" || k == "proj_out.weight") v = v.view({v.size(0), v.size(1), 1, 1});
  io::load_state_dict(*conv, sd);
  const auto x = torch::randn({2, 32, 5, 7});
  const auto ctx = torch::randn({2, 9, 16});
  const auto a = conv(x, ctx), b = lin(x, ctx);
  CHECK((a - x).abs().max().item<float>() > 1e-2f);
  CHECK(torch::allclose(a, b, 1e-5, 1e-5));
}

TEST_CASE("Chunked attention equals the naive formula", "[unet][attention]") {
  torch::manual_seed(9);
  const int64_t heads = 4;
  auto q = torch::randn({2, 37, heads * 8}), k = torch::randn({2, 11, heads * 8}), v = torch::randn({2, 11, heads * 6});
  const double scale = 1.0 / std::sqrt(8.0);
  // Naive reference in float64.
  auto qh = q.to(torch::kFloat64).view({2, 37, heads, 8}).permute({0, 2, 1, 3});
  auto kh = k.to(torch::kFloat64).view({2, 11, heads, 8}).permute({0, 2, 1, 3});
  auto vh = v.to(torch::kFloat64).view({2, 11, heads, 6}).permute({0, 2, 1, 3});
  auto ref = torch::softmax(torch::matmul(qh, kh.transpose(-1, -2)) * scale, -1).matmul(vh);
  ref = ref.permute({0, 2, 1, 3}).reshape({2, 37, heads * 6}).to(torch::kFloat32);
  // Budgets: everything at once; 2 heads × all rows per block; one head × 5 rows per block (ragged tail).
  for (int64_t budget : {int64_t{1} << 20, int64_t{2 * 37 * 11}, int64_t{5 * 11}}) {
    INFO("budget " << budget);
    torch::Tensor out;
    {
      torch::NoGradGuard ng;
      out = nn::scaled_dot_product_attention(q, k, v, heads, scale, budget);
    }
    CHECK(torch::allclose(out, ref, 1e-5, 1e-5));
    // The autograd path (no out= kernels) gives the same values and the gradient of the naive formula.
    auto qg = q.clone().requires_grad_(true);
    auto og = nn::scaled_dot_product_attention(qg, k, v, heads, scale, budget);
    CHECK(torch::allclose(og, ref, 1e-5, 1e-5));
    (og * ref).sum().backward();
    auto qd = q.to(torch::kFloat64).requires_grad_(true);
    auto qdh = qd.view({2, 37, heads, 8}).permute({0, 2, 1, 3});
    auto r2 = torch::softmax(torch::matmul(qdh, kh.transpose(-1, -2)) * scale, -1).matmul(vh);
    (r2.permute({0, 2, 1, 3}).reshape({2, 37, heads * 6}) * ref.to(torch::kFloat64)).sum().backward();
    CHECK(torch::allclose(qg.grad(), qd.grad().to(torch::kFloat32), 1e-4, 1e-5));
  }
}
