// CLIPTextModel beyond the golden fixture: ViT-L/14 parameter count, checkpoints with/without position_ids,
// dtype conversion, activations, pooling rules and config/checkpoint errors.
#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/diffusers_config.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace cxrl::nn;

namespace {
const std::filesystem::path kData = CXRL_TEST_DATA;
const std::filesystem::path kTiny = kData / "clip_text_tiny";

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}
}  // namespace

TEST_CASE("CLIP ViT-L/14 text encoder has the reference parameter count", "[nn][clip_text]") {
  // sd15_configs/params.json: counts from instantiating CLIPTextModel (transformers 4.30.2):
  // 123,060,480 parameters, 197 state-dict tensors incl. the I64 buffer text_model.embeddings.position_ids.
  const auto dir = kData / "sd15_configs";
  const auto cfg = CLIPTextConfig::load(dir / "clip_vit_l14_text_config.json");
  const auto ref = read_json(dir / "params.json").at("clip_vit_l14_text_encoder");
  CHECK(cfg.hidden_act == Activation::quick_gelu);
  CLIPTextModel m(cfg);
  int64_t params = 0, tensors = 0, elements = 0;
  for (const auto& p : m->named_parameters()) params += p.value().numel(), ++tensors, elements += p.value().numel();
  for (const auto& b : m->named_buffers()) ++tensors, elements += b.value().numel();
  CHECK(params == ref.at("num_parameters").get<int64_t>());
  CHECK(params == 123060480);
  CHECK(tensors == ref.at("num_state_dict_tensors").get<int64_t>());
  CHECK(elements == ref.at("num_state_dict_elements").get<int64_t>());
  CHECK(ref.at("parameters_by_top_level_module").at("text_model").get<int64_t>() == params);
  for (const auto& b : ref.at("buffers_in_state_dict")) CHECK(m->named_buffers().contains(b.get<std::string>()));
}

TEST_CASE("CLIP text checkpoints load with or without position_ids", "[nn][clip_text]") {
  torch::NoGradGuard ng;
  const auto io = cxrl::io::load_safetensors(kTiny / "io.safetensors");
  const auto ids = io.at("input_ids");
  auto with = clip_text_model_from_pretrained(kTiny);
  const auto expected = io.at("last_hidden_state");
  CHECK(torch::allclose(with->forward(ids).last_hidden_state, expected, 1e-4, 1e-4));

  auto sd = cxrl::io::load_safetensors(kTiny / "model.safetensors");
  REQUIRE(sd.erase("text_model.embeddings.position_ids") == 1);  // transformers >= 4.31 layout
  CLIPTextModel without(CLIPTextConfig::load(kTiny));
  load_clip_text_weights(without, sd, "no_position_ids.safetensors");
  CHECK(torch::equal(without->forward(ids).last_hidden_state, with->forward(ids).last_hidden_state));
  CHECK(torch::equal(without->text_model->embeddings->position_ids, torch::arange(77).unsqueeze(0)));

  // A mis-shaped tensor is reported with its key.
  auto bad = cxrl::io::load_safetensors(kTiny / "model.safetensors");
  bad["text_model.final_layer_norm.weight"] = torch::ones({31});
  CLIPTextModel m(CLIPTextConfig::load(kTiny));
  CHECK_THROWS_WITH(load_clip_text_weights(m, bad, "bad.safetensors"),
                    Catch::Contains("text_model.final_layer_norm.weight") && Catch::Contains("bad.safetensors"));
  bad = cxrl::io::load_safetensors(kTiny / "model.safetensors");
  bad.erase("text_model.encoder.layers.4.mlp.fc2.bias");
  CHECK_THROWS_WITH(load_clip_text_weights(m, bad, "bad.safetensors"),
                    Catch::Contains("text_model.encoder.layers.4.mlp.fc2.bias"));
}

TEST_CASE("CLIP text model in float64 keeps integer position_ids and matches float32", "[nn][clip_text]") {
  torch::NoGradGuard ng;
  const auto io = cxrl::io::load_safetensors(kTiny / "io.safetensors");
  auto m = clip_text_model_from_pretrained(kTiny, torch::kCPU, torch::kFloat64);
  CHECK(m->text_model->embeddings->position_ids.scalar_type() == torch::kLong);
  CHECK(m->text_model->final_layer_norm->weight.scalar_type() == torch::kFloat64);
  auto out = m->forward(io.at("input_ids"), io.at("attention_mask"));
  CHECK(out.last_hidden_state.scalar_type() == torch::kFloat64);
  CHECK(torch::allclose(out.last_hidden_state.to(torch::kFloat32), io.at("last_hidden_state_masked"), 1e-4, 1e-4));
}

TEST_CASE("CLIP activations, pooling rules and causal mask", "[nn][clip_text]") {
  auto x = torch::linspace(-4, 4, 101, torch::kFloat64);
  CHECK(torch::allclose(activation(Activation::quick_gelu, x), x / (1 + torch::exp(-1.702 * x))));
  CHECK(torch::allclose(activation(Activation::gelu, x), 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0)))));
  CHECK(torch::allclose(activation(Activation::gelu_tanh, x),
                        0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3)))), 1e-9, 1e-9));
  CHECK(torch::allclose(activation(Activation::silu, x), x / (1 + torch::exp(-x))));
  CHECK(torch::allclose(activation(Activation::mish, x), x * torch::tanh(torch::log1p(torch::exp(x)))));
  CHECK(torch::equal(activation(Activation::relu, x), x.clamp_min(0)));

  CLIPTextConfig c;
  c.vocab_size = 50, c.hidden_size = 8, c.intermediate_size = 16, c.num_hidden_layers = 1, c.num_attention_heads = 2;
  c.eos_token_id = 7;
  CLIPTextModel m(c);
  auto ids = torch::tensor({0, 9, 7, 9, 7, 1, 3, 0, 5, 2}, torch::kLong).view({2, 5});
  CHECK(torch::equal(m->pooling_index(ids), torch::tensor({1, 3}, torch::kLong)));  // first largest id
  CHECK(torch::equal(CLIPTextModelImpl::first_position(ids, 7), torch::tensor({2, -1}, torch::kLong)));
  m->config.pooling = ClipPooling::eos_token;
  CHECK_THROWS_WITH(m->pooling_index(ids), Catch::Contains("eos_token_id 7"));
  CHECK(torch::equal(m->pooling_index(ids.index({torch::indexing::Slice(0, 1)})), torch::tensor({2}, torch::kLong)));

  m->config.pooling = ClipPooling::argmax_id;
  // Causality: changing a later token leaves earlier positions unchanged.
  torch::NoGradGuard ng;
  auto a = torch::tensor({{0, 4, 5, 6}}, torch::kLong), b = torch::tensor({{0, 4, 5, 9}}, torch::kLong);
  auto ha = m->forward(a).last_hidden_state, hb = m->forward(b).last_hidden_state;
  CHECK(torch::equal(ha.narrow(1, 0, 3), hb.narrow(1, 0, 3)));
  CHECK_FALSE(torch::allclose(ha.narrow(1, 3, 1), hb.narrow(1, 3, 1)));
  auto mask = clip_causal_mask(1, 3, torch::TensorOptions().dtype(torch::kFloat32));
  CHECK(mask[0][0][0][1].item<float>() == std::numeric_limits<float>::lowest());
  CHECK(mask[0][0][1][0].item<float>() == 0.0f);
  CHECK_THROWS_AS(m->forward(torch::zeros({1, 78}, torch::kLong)), std::invalid_argument);
}

TEST_CASE("Activation names of diffusers and transformers parse once, with the allowed names in errors", "[nn][activation]") {
  const std::vector<std::pair<std::string, Activation>> diffusers{
      {"silu", Activation::silu}, {"swish", Activation::silu}, {"mish", Activation::mish},
      {"gelu", Activation::gelu}, {"relu", Activation::relu}};
  const std::vector<std::pair<std::string, Activation>> transformers{
      {"quick_gelu", Activation::quick_gelu}, {"gelu", Activation::gelu}, {"gelu_new", Activation::gelu_tanh},
      {"gelu_pytorch_tanh", Activation::gelu_tanh}, {"relu", Activation::relu}};
  CHECK(activation_names(ActivationNaming::diffusers).size() == diffusers.size());
  CHECK(activation_names(ActivationNaming::transformers).size() == transformers.size());
  for (const auto& [s, a] : diffusers) {
    CHECK(parse_diffusers_activation(s) == a);
    nlohmann::json j{{"act_fn", s}, {"time_embedding_act_fn", s}};
    DiffusersConfigReader r(j, "x/config.json");
    CHECK(r.activation("act_fn", Activation::relu) == a);
    CHECK(r.opt_activation("time_embedding_act_fn") == a);
  }
  for (const auto& [s, a] : transformers) {
    CHECK(parse_transformers_activation(s) == a);
    // Written back under its canonical name, which reads back as the same activation.
    CHECK(parse_transformers_activation(name(a)) == a);
    CLIPTextConfig c;
    c.hidden_act = a;
    CHECK(CLIPTextConfig::from_json(c.to_json()).hidden_act == a);
  }
  CHECK(name(Activation::gelu_tanh) == "gelu_pytorch_tanh");
  CHECK_THROWS_WITH(parse_diffusers_activation("tanh"),
                    Catch::Contains("\"tanh\"") && Catch::Contains("allowed: silu, swish, mish, gelu, relu"));
  CHECK_THROWS_WITH(parse_transformers_activation("swish"),
                    Catch::Contains("allowed: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu"));
  CHECK_THROWS_AS(parse_diffusers_activation("quick_gelu"), std::invalid_argument);

  nlohmann::json j{{"act_fn", "tanh"}, {"t", nullptr}, {"norm", "film"}, {"num", 3}};
  DiffusersConfigReader r(j, "x/config.json");
  CHECK_THROWS_WITH(r.activation("act_fn", Activation::silu),
                    Catch::Contains("x/config.json") && Catch::Contains("'act_fn'") &&
                        Catch::Contains("allowed: silu, swish, mish, gelu, relu"));
  CHECK_THROWS_WITH(r.activation("num", Activation::silu), Catch::Contains("'num'") && Catch::Contains("allowed: silu"));
  CHECK(r.activation("absent", Activation::mish) == Activation::mish);
  CHECK_FALSE(r.opt_activation("t").has_value());
  CHECK_FALSE(r.opt_activation("absent").has_value());
  CHECK(r.time_embedding_norm("absent", TimeEmbeddingNorm::add) == TimeEmbeddingNorm::add);
  CHECK_THROWS_WITH(r.time_embedding_norm("norm", TimeEmbeddingNorm::add),
                    Catch::Contains("'norm'") && Catch::Contains("allowed: default, scale_shift"));
  CHECK(parse_time_embedding_norm("default") == TimeEmbeddingNorm::add);
  CHECK(parse_time_embedding_norm(name(TimeEmbeddingNorm::scale_shift)) == TimeEmbeddingNorm::scale_shift);
  CHECK_THROWS_WITH(parse_time_embedding_norm("add"), Catch::Contains("allowed: default, scale_shift"));
}

TEST_CASE("CLIPTextConfig errors name the field", "[nn][clip_text]") {
  auto j = read_json(kTiny / "config.json");
  j["hidden_act"] = "swish";
  CHECK_THROWS_WITH(CLIPTextConfig::from_json(j, "cfg.json"), Catch::Contains("hidden_act") && Catch::Contains("quick_gelu"));
  j = read_json(kTiny / "config.json");
  j["num_attention_heads"] = 5;
  CHECK_THROWS_WITH(CLIPTextConfig::from_json(j, "cfg.json"), Catch::Contains("num_attention_heads"));
  j = read_json(kTiny / "config.json");
  j["hidden_size"] = "32";
  CHECK_THROWS_WITH(CLIPTextConfig::from_json(j, "cfg.json"), Catch::Contains("hidden_size"));
  // A CLIPConfig with a nested text_config is accepted; to_json round-trips.
  const auto tiny = CLIPTextConfig::load(kTiny);
  nlohmann::json full{{"text_config", read_json(kTiny / "config.json")}};
  CHECK(CLIPTextConfig::from_json(full).hidden_size == 32);
  const auto back = CLIPTextConfig::from_json(tiny.to_json());
  CHECK(back.to_json() == tiny.to_json());
  CHECK_THROWS_WITH(clip_text_model_from_pretrained(kData / "does_not_exist"), Catch::Contains("config.json"));
}
