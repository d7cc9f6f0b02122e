// torchxrayvision DenseNet wrapper (op_norm, preprocessing, loading, bad input) and CXR-CLIP
// (key prefixes, eos pooling against the bert_tiny golden, image features against resnet_small).
#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace {

const std::string kData = CXRL_TEST_DATA;

nlohmann::json read_json(const std::string& p) {
  std::ifstream f(p);
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

std::filesystem::path temp_file(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("cxrl_test_xrv_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d / name;
}

// Fixture weights keep 0-d num_batches_tracked as [1]: reshape to 0-d (what a real state dict holds).
cxrl::io::TensorMap fixture_weights(const std::string& path) {
  auto sd = cxrl::io::load_safetensors(path);
  for (auto& [k, t] : sd)
    if (k.size() > 19 && k.compare(k.size() - 19, 19, "num_batches_tracked") == 0) t = t.reshape({});
  return sd;
}

}  // namespace

TEST_CASE("op_norm maps thresholds to 0.5 and NaN thresholds to 0.5", "[xrv]") {
  auto p = torch::tensor({{0.05f, 0.1f, 0.55f, 0.3f}});
  auto t = torch::tensor({0.1f, 0.1f, 0.1f, std::numeric_limits<float>::quiet_NaN()});
  auto y = cxrl::cxr::op_norm(p, t);
  CHECK(y[0][0].item<float>() == Approx(0.25));                    // p/(2t)
  CHECK(y[0][1].item<float>() == Approx(0.5));                     // at the threshold
  CHECK(y[0][2].item<float>() == Approx(1 - 0.45 / (2 * 0.9)));    // 1-(1-p)/(2(1-t))
  CHECK(y[0][3].item<float>() == 0.5f);
  CHECK_THROWS_WITH(cxrl::cxr::op_norm(p, torch::zeros({3})), Catch::Contains("op_threshs [K]"));
}

TEST_CASE("XrvDenseNet loads a state dict with op_threshs and reproduces the densenet_small op_norm outputs", "[xrv]") {
  const auto dir = kData + "/densenet_small/";
  cxrl::io::SafeTensorsFile io(dir + "io.safetensors");
  auto sd = fixture_weights(dir + "weights.safetensors");
  sd["op_threshs"] = io.get("op_threshs_chex");
  const auto file = temp_file("xrv_small.safetensors");
  cxrl::io::save_safetensors(file, sd, {});
  const auto cfg = cxrl::nn::DenseNetConfig::from_json(read_json(dir + "config.json"));
  auto m = cxrl::cxr::XrvDenseNet::load(file, cfg, torch::kCPU);
  REQUIRE(m.op_threshs().defined());
  CHECK(m.pathologies().size() == 18);
  CHECK(m.pathologies()[cxrl::cxr::xrv_pathology_index("Effusion")] == "Effusion");
  torch::NoGradGuard ng;
  // The fixture ran at 64x64 without fix_resolution; use a 64-resolution wrapper for the exact comparison.
  cxrl::cxr::XrvDenseNet m64(cfg, 64);
  cxrl::io::load_state_dict(*m64.model(), fixture_weights(dir + "weights.safetensors"));
  m64.set_op_threshs(io.get("op_threshs_chex"));
  CHECK(torch::allclose(m64.forward(io.get("input")), io.get("eval.op_norm_chex"), 1e-4, 1e-4));
  CHECK(torch::allclose(m64.features2(io.get("input")), io.get("eval.features"), 1e-4, 1e-4));
  m64.set_op_threshs({});
  CHECK(torch::allclose(m64.forward(io.get("input")), io.get("eval.sigmoid"), 1e-4, 1e-4));

  // The 224 model resizes a square input (xrv fix_resolution) and maps [0,1] generator images.
  auto imgs = torch::rand({2, 1, 96, 96});
  auto xin = cxrl::cxr::to_xrv_input(imgs);
  CHECK(xin.sizes() == torch::IntArrayRef({2, 1, 224, 224}));
  CHECK(xin.min().item<float>() >= -1024.f);
  CHECK(xin.max().item<float>() <= 1024.f);
  CHECK(torch::allclose(m.predict_images(imgs), m.forward(xin)));
  CHECK(m.forward(xin).sizes() == torch::IntArrayRef({2, 18}));
  std::filesystem::remove_all(file.parent_path());
}

TEST_CASE("XrvDenseNet rejects bad images and bad checkpoints with clear messages", "[xrv]") {
  using cxrl::cxr::to_xrv_input;
  CHECK_THROWS_WITH(to_xrv_input(torch::rand({2, 3, 64, 64})), Catch::Contains("1 channel"));
  CHECK_THROWS_WITH(to_xrv_input(torch::rand({2, 1, 64, 80})), Catch::Contains("square"));
  CHECK_THROWS_WITH(to_xrv_input(torch::rand({1, 64, 64})), Catch::Contains("[N, 1, H, W]"));
  CHECK_THROWS_WITH(to_xrv_input(torch::rand({1, 1, 64, 64}) * 255), Catch::Contains("expected values in [0, 1]"));
  CHECK_THROWS_WITH(cxrl::cxr::xrv_normalize(torch::full({4, 4}, 300.0), 255), Catch::Contains("exceeds maxval"));

  const auto dir = kData + "/densenet_small/";
  const auto cfg = cxrl::nn::DenseNetConfig::from_json(read_json(dir + "config.json"));
  cxrl::cxr::XrvDenseNet m(cfg, 64);
  CHECK_THROWS_WITH(m.forward(torch::rand({1, 1, 64, 64}) * 4000), Catch::Contains("[-1024, 1024]"));
  CHECK_THROWS_WITH(m.forward(torch::zeros({1, 3, 64, 64})), Catch::Contains("expected [N, 1, H, W]"));

  auto sd = fixture_weights(dir + "weights.safetensors");
  sd["features.conv0.weight"] = torch::zeros({16, 3, 7, 7});
  sd.erase("classifier.bias");
  const auto file = temp_file("bad.safetensors");
  cxrl::io::save_safetensors(file, sd, {});
  try {
    cxrl::cxr::XrvDenseNet::load(file, cfg);
    FAIL("bad checkpoint accepted");
  } catch (const cxrl::io::CheckpointError& e) {
    const std::string w = e.what();
    CHECK_THAT(w, Catch::Contains("bad.safetensors"));
    CHECK_THAT(w, Catch::Contains("features.conv0.weight"));
    CHECK_THAT(w, Catch::Contains("classifier.bias"));
  }
  sd = fixture_weights(dir + "weights.safetensors");
  sd["op_threshs"] = torch::zeros({5});
  cxrl::io::save_safetensors(file, sd, {});
  CHECK_THROWS_WITH(cxrl::cxr::XrvDenseNet::load(file, cfg), Catch::Contains("'op_threshs' has shape"));
  std::filesystem::remove_all(file.parent_path());
}

TEST_CASE("xrv preprocessing reproduces normalize, center crop, fix_resolution and XRayResizer", "[xrv]") {
  cxrl::io::SafeTensorsFile pp(kData + "/densenet_small/preprocess.safetensors");
  auto norm = cxrl::cxr::xrv_normalize(pp.get("raw_uint8"), 255);
  CHECK(torch::equal(norm, pp.get("normalized")));
  auto crop = cxrl::cxr::xrv_center_crop(norm.unsqueeze(0));
  CHECK(torch::equal(crop, pp.get("center_cropped")));
  CHECK(torch::allclose(cxrl::cxr::xrv_fix_resolution(crop.unsqueeze(0), 64), pp.get("fix_resolution_64"), 1e-4, 1e-4));
  CHECK(torch::allclose(cxrl::cxr::xrv_xray_resize(crop, 64), pp.get("xrayresizer_skimage_64"), 1e-4, 1e-4));
  // Without the anti-aliasing prefilter the skimage result is not reproduced.
  namespace F = torch::nn::functional;
  auto plain = F::interpolate(crop.unsqueeze(0), F::InterpolateFuncOptions().size(std::vector<int64_t>{64, 64}).mode(torch::kBilinear).align_corners(false));
  CHECK_FALSE(torch::allclose(plain.squeeze(0), pp.get("xrayresizer_skimage_64"), 1e-4, 1e-4));
}

namespace {
cxrl::cxr::CxrClipConfig small_clip_config() {
  cxrl::cxr::CxrClipConfig c;
  c.image = cxrl::nn::ResNetConfig::from_json(read_json(kData + "/resnet_small/bottleneck_3ch/config.json"));
  c.image.include_fc = false;
  c.text = cxrl::nn::BertConfig::from_json(read_json(kData + "/bert_tiny/config.json"));
  c.projection_dim = 16;
  c.max_length = 64;
  return c;
}
}  // namespace

TEST_CASE("CXR-CLIP: checkpoint key prefixes, eos pooling and image features match the goldens", "[cxr_clip]") {
  cxrl::cxr::CxrClip clip(small_clip_config());
  const auto keys = cxrl::io::state_dict(*clip);
  CHECK(keys.count("logit_scale"));
  CHECK(keys.count("image_encoder.resnet.conv1.weight"));
  CHECK(keys.count("image_encoder.resnet.fc.weight") == 0);
  CHECK(keys.count("text_encoder.text_encoder.embeddings.word_embeddings.weight"));
  CHECK(keys.count("text_encoder.text_encoder.pooler.dense.weight"));
  CHECK(keys.count("image_projection.projection.weight"));
  CHECK(keys.count("text_projection.projection.bias"));
  CHECK(clip->logit_scale.item<double>() == Approx(std::log(1 / 0.07)));

  // Assemble a checkpoint "model" dict from the resnet_small and bert_tiny fixtures with CXR-CLIP prefixes.
  cxrl::io::TensorMap sd;
  for (auto& [k, t] : fixture_weights(kData + "/resnet_small/bottleneck_3ch/weights.safetensors"))
    if (k.rfind("fc.", 0) != 0) sd["image_encoder.resnet." + k] = t;
  for (auto& [k, t] : cxrl::io::load_safetensors(kData + "/bert_tiny/weights.safetensors")) sd["text_encoder.text_encoder." + k] = t;
  sd["text_encoder.text_encoder.embeddings.position_ids"] = torch::arange(64).unsqueeze(0);  // transformers 4.26 saves it
  torch::manual_seed(7);
  sd["image_projection.projection.weight"] = torch::randn({16, 512});
  sd["image_projection.projection.bias"] = torch::randn({16});
  sd["text_projection.projection.weight"] = torch::randn({16, 32});
  sd["text_projection.projection.bias"] = torch::randn({16});
  sd["logit_scale"] = torch::tensor(2.5f).reshape({});
  const auto file = temp_file("clip.safetensors");
  cxrl::io::save_safetensors(file, sd, {});
  clip->load(file);
  clip->eval();
  torch::NoGradGuard ng;

  cxrl::io::SafeTensorsFile bert(kData + "/bert_tiny/io.safetensors");
  const auto ids = bert.get("a.input_ids"), mask = bert.get("a.attention_mask");
  CHECK(torch::allclose(clip->text_features(ids, mask), bert.get("a.masked.eos_pooled"), 1e-4, 1e-4));
  auto te = clip->encode_text(ids, mask);
  auto expect_te = torch::nn::functional::linear(bert.get("a.masked.eos_pooled"), sd["text_projection.projection.weight"],
                                                 sd["text_projection.projection.bias"]);
  expect_te = expect_te / expect_te.norm(2, 1, true);
  CHECK(torch::allclose(te, expect_te, 1e-4, 1e-4));

  cxrl::io::SafeTensorsFile res(kData + "/resnet_small/bottleneck_3ch/io.safetensors");
  CHECK(torch::allclose(clip->image_features(res.get("input")), res.get("eval.features"), 1e-4, 1e-4));
  auto ie = clip->encode_image(res.get("input"));
  CHECK(torch::allclose(ie.norm(2, 1), torch::ones({2}), 1e-5, 1e-5));
  auto logits = clip->logits(ie, te);
  CHECK(logits.sizes() == torch::IntArrayRef({2, 3}));
  CHECK(torch::allclose(logits, std::exp(2.5) * ie.matmul(te.t()), 1e-5, 1e-5));

  // Strict loading names the stray key.
  sd["image_encoder.resnet.fc.weight"] = torch::zeros({7, 512});
  cxrl::io::save_safetensors(file, sd, {});
  CHECK_THROWS_WITH(clip->load(file), Catch::Contains("image_encoder.resnet.fc.weight"));
  std::filesystem::remove_all(file.parent_path());
}

TEST_CASE("CXR-CLIP preprocessing: cxr-clip's default normalisation, 3 channels, 224, bad images rejected", "[cxr_clip]") {
  auto g = torch::full({1, 1, 300, 250}, 0.8);
  // The released checkpoints were trained with cxr-clip's default normalize="huggingface": (x − 0.5) / 0.5.
  CHECK(cxrl::cxr::CxrClipConfig{}.normalize == cxrl::cxr::ClipNormalize::huggingface);
  auto x = cxrl::cxr::cxr_clip_preprocess(g);
  CHECK(x.sizes() == torch::IntArrayRef({1, 3, 224, 224}));
  CHECK(x[0][0][100][100].item<double>() == Approx(0.6).epsilon(1e-5));
  CHECK(x[0][2][100][100].item<double>() == Approx(0.6).epsilon(1e-5));
  x = cxrl::cxr::cxr_clip_preprocess(g, 224, cxrl::cxr::ClipNormalize::imagenet);
  CHECK(x[0][0][100][100].item<double>() == Approx((0.8 - 0.485) / 0.229).epsilon(1e-5));
  CHECK(x[0][2][100][100].item<double>() == Approx((0.8 - 0.406) / 0.225).epsilon(1e-5));
  CHECK(cxrl::cxr::parse_clip_normalize("imagenet", "f") == cxrl::cxr::ClipNormalize::imagenet);
  CHECK_THROWS_WITH(cxrl::cxr::parse_clip_normalize("clip", "cxr_clip.json: key 'normalize'"),
                    Catch::Contains("cxr_clip.json: key 'normalize'") && Catch::Contains("huggingface"));
  CHECK_THROWS_WITH(cxrl::cxr::cxr_clip_preprocess(torch::rand({1, 2, 64, 64})), Catch::Contains("1 or 3"));
  CHECK_THROWS_WITH(cxrl::cxr::cxr_clip_preprocess(torch::rand({1, 1, 64, 64}) + 2), Catch::Contains("[0, 1]"));

  // Text embeddings of a padded row are unit vectors of projection_dim.
  cxrl::cxr::CxrClip clip(small_clip_config());
  clip->eval();
  torch::NoGradGuard ng;
  auto e = clip->encode_text(torch::tensor({{2, 5, 7, 3, 0}}), torch::tensor({{1, 1, 1, 1, 0}}));
  CHECK(e.sizes() == torch::IntArrayRef({1, 16}));
  CHECK(e.norm().item<double>() == Approx(1.0));
}

TEST_CASE("CXR-CLIP contrastive loss: closed form, and training the small model lowers it", "[cxr_clip]") {
  // Two orthogonal pairs at scale 1: each row's CE is log(1 + e^{-1}).
  auto img = torch::eye(2), txt = torch::eye(2);
  auto l = cxrl::cxr::clip_contrastive_loss(img, txt, torch::zeros({}));
  CHECK(l.item<double>() == Approx(std::log(1 + std::exp(-1.0))));
  CHECK_THROWS_WITH(cxrl::cxr::clip_contrastive_loss(img, torch::eye(3), torch::zeros({})), Catch::Contains("matching [N, D]"));

  torch::manual_seed(11);
  auto cfg = small_clip_config();
  cfg.image.width = 8;
  cxrl::cxr::CxrClip clip(cfg);
  clip->train();
  auto pixels = torch::randn({4, 3, 32, 32});
  auto ids = torch::randint(4, 99, {4, 6}, torch::kLong);
  auto mask = torch::ones({4, 6}, torch::kLong);
  torch::optim::Adam opt(clip->parameters(), torch::optim::AdamOptions(1e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    auto loss = cxrl::cxr::clip_contrastive_loss(clip->encode_image(pixels), clip->encode_text(ids, mask), clip->logit_scale);
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  CHECK(last < 0.5 * first);
}
