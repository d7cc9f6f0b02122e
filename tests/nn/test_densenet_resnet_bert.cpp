// DenseNet, ResNet, BERT: key lists and parameter counts of the real models (reference JSONs),
// golden spot checks, strict-loading errors, bad inputs.
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/bert.hpp>
#include <cxrl/nn/densenet.hpp>
#include <cxrl/nn/resnet.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

const std::string kData = CXRL_TEST_DATA;

nlohmann::json read_json(const std::string& p) {
  std::ifstream f(p);
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

// name -> shape of parameters and buffers.
std::map<std::string, std::vector<int64_t>> shapes(const torch::nn::Module& m) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [k, t] : cxrl::io::state_dict(m)) out[k] = t.sizes().vec();
  return out;
}

std::map<std::string, std::vector<int64_t>> reference_shapes(const nlohmann::json& keys) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& e : keys) out[e[0].get<std::string>()] = e[1].get<std::vector<int64_t>>();
  return out;
}

int64_t num_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Fixture weights store 0-d num_batches_tracked as [1]; reshape them to the model's 0-d slot.
cxrl::io::TensorMap fixture_weights(const std::string& path, const torch::nn::Module& m) {
  auto sd = cxrl::io::load_safetensors(path);
  const auto slots = cxrl::io::state_dict(m);
  for (auto& [k, t] : sd)
    if (slots.count(k) && slots.at(k).dim() == 0 && t.numel() == 1) t = t.reshape({});
  return sd;
}

}  // namespace

TEST_CASE("DenseNet-121 (xrv: 1 channel, 18 classes) has the reference keys, shapes and parameter count", "[densenet]") {
  const auto ref = read_json(kData + "/densenet_small/xrv_densenet121_reference.json");
  cxrl::nn::DenseNet m(cxrl::nn::DenseNetConfig::from_json(ref["defaults"]));
  CHECK(shapes(*m) == reference_shapes(ref["state_dict_keys"]));
  CHECK(static_cast<int64_t>(shapes(*m).size()) == ref["num_state_dict_entries_without_op_threshs"].get<int64_t>());
  CHECK(num_params(*m) == ref["num_parameters"].get<int64_t>());
  // torchvision densenet121 (3 channels, 1000 classes): 7,978,856 parameters.
  cxrl::nn::DenseNet tv(cxrl::nn::DenseNetConfig::densenet121());
  CHECK(num_params(*tv) == 7978856);
}

TEST_CASE("DenseNet features2 and logits match the densenet_small golden, bad inputs are rejected", "[densenet]") {
  const auto dir = kData + "/densenet_small/";
  cxrl::nn::DenseNet m(cxrl::nn::DenseNetConfig::from_json(read_json(dir + "config.json")));
  cxrl::io::load_state_dict(*m, fixture_weights(dir + "weights.safetensors", *m));
  m->eval();
  cxrl::io::SafeTensorsFile io(dir + "io.safetensors");
  torch::NoGradGuard ng;
  const auto x = io.get("input");
  CHECK(torch::allclose(m->features2(x), io.get("eval.features"), 1e-4, 1e-4));
  CHECK(torch::allclose(m->forward(x), io.get("eval.logits"), 1e-4, 1e-4));
  // A wrong implementation detail (e.g. ReLU after norm5 missing) changes features2.
  CHECK_FALSE(torch::allclose(torch::adaptive_avg_pool2d(m->features_map(x), {1, 1}).flatten(1), io.get("eval.features"), 1e-4, 1e-4));

  CHECK_THROWS_WITH(m->forward(torch::zeros({2, 3, 64, 64})), Catch::Contains("expected images [N, 1, H, W]"));
  CHECK_THROWS_WITH(m->forward(torch::zeros({1, 64, 64})), Catch::Contains("expected images"));
  CHECK_THROWS_WITH(m->forward(torch::zeros({1, 1, 16, 16})), Catch::Contains("at least 32x32"));
}

TEST_CASE("DenseNet config errors and strict loading list every bad key", "[densenet]") {
  cxrl::nn::DenseNetConfig c;
  c.block_config = {};
  CHECK_THROWS_WITH(cxrl::nn::DenseNet(c), Catch::Contains("block_config"));
  CHECK_THROWS_WITH(cxrl::nn::DenseNetConfig::from_json(nlohmann::json{{"growth_rate", "eight"}}, "cfg.json"),
                    Catch::Contains("cfg.json"));

  const auto dir = kData + "/densenet_small/";
  cxrl::nn::DenseNet m(cxrl::nn::DenseNetConfig::from_json(read_json(dir + "config.json")));
  auto sd = fixture_weights(dir + "weights.safetensors", *m);
  sd.erase("features.norm5.running_var");
  sd["features.norm5.extra"] = torch::zeros({3});
  sd["classifier.weight"] = torch::zeros({17, 32});
  cxrl::io::LoadOptions o;
  o.source = "bad.safetensors";
  try {
    cxrl::io::load_state_dict(*m, sd, o);
    FAIL("strict loading accepted a bad checkpoint");
  } catch (const cxrl::io::CheckpointError& e) {
    const std::string w = e.what();
    CHECK_THAT(w, Catch::Contains("bad.safetensors"));
    CHECK_THAT(w, Catch::Contains("features.norm5.running_var"));
    CHECK_THAT(w, Catch::Contains("features.norm5.extra"));
    CHECK_THAT(w, Catch::Contains("classifier.weight"));
  }
}

TEST_CASE("ResNet-18/50, xrv resnet50 and the CXR-CLIP encoder have the reference keys and parameter counts", "[resnet]") {
  const auto ref = read_json(kData + "/resnet_small/real_resnet_reference.json");
  cxrl::nn::ResNet r18(cxrl::nn::ResNetConfig::resnet18());
  CHECK(shapes(*r18) == reference_shapes(ref["resnet18"]["state_dict_keys"]));
  CHECK(num_params(*r18) == ref["resnet18"]["num_parameters"].get<int64_t>());
  cxrl::nn::ResNet r50(cxrl::nn::ResNetConfig::resnet50());
  CHECK(shapes(*r50) == reference_shapes(ref["resnet50"]["state_dict_keys"]));
  CHECK(num_params(*r50) == ref["resnet50"]["num_parameters"].get<int64_t>());
  cxrl::nn::ResNet xrv(cxrl::nn::ResNetConfig::xrv_resnet50());
  CHECK(num_params(*xrv) == ref["xrv_resnet50_res512_all_architecture"]["num_parameters"].get<int64_t>());
  CHECK(xrv->conv1->weight.sizes() == torch::IntArrayRef({64, 1, 7, 7}));
  cxrl::nn::ResNet clip(cxrl::nn::ResNetConfig::cxr_clip_resnet50());
  CHECK(num_params(*clip) == ref["cxrclip_resnet50_image_encoder"]["num_parameters"].get<int64_t>());
  CHECK(cxrl::io::state_dict(*clip).count("fc.weight") == 0);
  // Without fc, forward() is the 2048-d pooled vector.
  torch::NoGradGuard ng;
  clip->eval();
  CHECK(clip->forward(torch::zeros({1, 3, 64, 64})).sizes() == torch::IntArrayRef({1, 2048}));
}

TEST_CASE("ResNet variants reproduce the resnet_small goldens, bad inputs and configs are rejected", "[resnet]") {
  for (const std::string v : {"basic_3ch", "bottleneck_3ch", "basic_1ch", "bottleneck_1ch"}) {
    DYNAMIC_SECTION(v) {
      const auto dir = kData + "/resnet_small/" + v + "/";
      const auto cfg = cxrl::nn::ResNetConfig::from_json(read_json(dir + "config.json"));
      CHECK(cfg.width == 16);
      cxrl::nn::ResNet m(cfg);
      cxrl::io::load_state_dict(*m, fixture_weights(dir + "weights.safetensors", *m));
      m->eval();
      cxrl::io::SafeTensorsFile io(dir + "io.safetensors");
      torch::NoGradGuard ng;
      const auto x = io.get("input");
      CHECK(torch::allclose(m->features(x), io.get("eval.features"), 1e-4, 1e-4));
      CHECK(torch::allclose(m->forward(x), io.get("eval.logits"), 1e-4, 1e-4));
      const auto wrong = x.size(1) == 1 ? torch::zeros({1, 3, 64, 64}) : torch::zeros({1, 1, 64, 64});
      CHECK_THROWS_WITH(m->forward(wrong), Catch::Contains("expected images [N, " + std::to_string(x.size(1))));
    }
  }
  cxrl::nn::ResNetConfig c;
  c.in_channels = 2;
  CHECK_THROWS_WITH(cxrl::nn::ResNet(c), Catch::Contains("in_channels must be 1 or 3"));
  CHECK_THROWS_WITH(cxrl::nn::ResNetConfig::from_json(nlohmann::json{{"block", "Wide"}}, "r.json"),
                    Catch::Contains("'Wide' is not one of BasicBlock, Bottleneck"));
}

TEST_CASE("ResNet zero_init_residual zeroes the last BN of every block", "[resnet]") {
  auto c = cxrl::nn::ResNetConfig::resnet18();
  c.width = 8;
  c.zero_init_residual = true;
  cxrl::nn::ResNet m(c);
  const auto sd = cxrl::io::state_dict(*m);
  CHECK(sd.at("layer1.0.bn2.weight").abs().sum().item<double>() == 0.0);
  CHECK(sd.at("layer1.0.bn1.weight").abs().sum().item<double>() > 0.0);
}

TEST_CASE("BertModel matches bert_tiny, ignores position_ids, and validates inputs", "[bert]") {
  const auto dir = kData + "/bert_tiny/";
  const auto cfgj = read_json(dir + "config.json");
  const auto cfg = cxrl::nn::BertConfig::from_json(cfgj);
  CHECK(cfg.layer_norm_eps == 1e-12);
  cxrl::nn::BertModel m(cfg);
  CHECK(num_params(*m) == cfgj["num_parameters"].get<int64_t>());
  auto sd = cxrl::io::load_safetensors(dir + "weights.safetensors");
  // Older transformers checkpoints carry embeddings.position_ids: ignored by bert_load_options().
  sd["embeddings.position_ids"] = torch::arange(cfg.max_position_embeddings).unsqueeze(0);
  cxrl::io::load_state_dict(*m, sd, cxrl::nn::bert_load_options("bert.safetensors"));
  m->eval();
  cxrl::io::SafeTensorsFile io(dir + "io.safetensors");
  torch::NoGradGuard ng;
  const auto ids = io.get("a.input_ids"), mask = io.get("a.attention_mask");
  auto out = m(ids, mask);
  CHECK(torch::allclose(out.last_hidden_state, io.get("a.masked.last_hidden_state"), 1e-4, 1e-4));
  CHECK(torch::allclose(cxrl::nn::eos_pool(out.last_hidden_state, mask), io.get("a.masked.eos_pooled"), 1e-4, 1e-4));
  CHECK(out.hidden_states.size() == 3);
  // Without the mask the padded rows differ (padding is attended).
  auto nomask = m(ids);
  CHECK_FALSE(torch::allclose(nomask.last_hidden_state[2], out.last_hidden_state[2], 1e-4, 1e-4));

  sd["embeddings.unknown"] = torch::zeros({1});
  CHECK_THROWS_AS(cxrl::io::load_state_dict(*m, sd, cxrl::nn::bert_load_options("bert.safetensors")), cxrl::io::CheckpointError);
  CHECK_THROWS_WITH(m(ids.to(torch::kInt)), Catch::Contains("int64"));
  CHECK_THROWS_WITH(m(torch::full({1, 4}, 99, torch::kLong)), Catch::Contains("[0, 99)"));
  CHECK_THROWS_WITH(m(torch::zeros({1, 65}, torch::kLong)), Catch::Contains("max_position_embeddings"));
  CHECK_THROWS_WITH(m(ids, mask.narrow(1, 0, 5)), Catch::Contains("attention_mask shape"));
  CHECK_THROWS_WITH(cxrl::nn::eos_pool(out.last_hidden_state, torch::zeros_like(mask)), Catch::Contains("all zeros"));
  auto bad = cfgj;
  bad["bert_config_full"]["num_attention_heads"] = 5;
  CHECK_THROWS_WITH(cxrl::nn::BertConfig::from_json(bad, "c.json"), Catch::Contains("multiple of num_attention_heads"));
}

TEST_CASE("BERT additive mask uses finfo.min", "[bert]") {
  auto m = cxrl::nn::bert_additive_mask(torch::tensor({{1, 0}}), torch::kFloat32);
  CHECK(m.sizes() == torch::IntArrayRef({1, 1, 1, 2}));
  CHECK(m[0][0][0][0].item<float>() == 0.0f);
  CHECK(m[0][0][0][1].item<float>() == std::numeric_limits<float>::lowest());
}
