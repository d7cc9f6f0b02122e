// Rewards over any model that satisfies their concept: TorchScript traces (tests/data/torchscript) loaded from
// files with sidecars, native models, type-erased holders; the reward set; the input adapter.
#include <catch2/catch.hpp>

#include <cxrl/core/concepts.hpp>
#include <cxrl/cxr/align_reward.hpp>
#include <cxrl/cxr/consist_reward.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/reward_model_files.hpp>
#include <cxrl/cxr/reward_set.hpp>
#include <cxrl/io/safetensors.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace cxrl::cxr;
namespace fs = std::filesystem;

static_assert(PostureModel<PostureNetModel> && PostureModel<AnyPostureModel>);
static_assert(FindingClassifier<XrvDenseNet> && FindingClassifier<AnyFindingClassifier>);
static_assert(ReportImageEmbedder<CxrClipEmbedder> && ReportImageEmbedder<AnyReportEmbedder>);
static_assert(!FindingClassifier<PostureNetModel> && !PostureModel<XrvDenseNet>);
static_assert(cxrl::core::Reward<BasicDiagReward<FindingsFromClassifier<cxrl::nn::TorchScriptClassifier>>>);
static_assert(cxrl::core::Reward<BasicDiagReward<FindingsFromClassifier<cxrl::nn::DenseNet>>>);  // a ModuleHolder
static_assert(cxrl::core::Reward<BasicAlignReward<AnyPostureModel>> && cxrl::core::Reward<BasicConsistReward<AnyReportEmbedder>>);

namespace {
const fs::path kTs = fs::path(CXRL_TEST_DATA) / "torchscript";

fs::path scratch(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("cxrl_reward_models_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}
void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
}  // namespace

TEST_CASE("reward set: any order and subset parses to one set with one spelling", "[cxr][reward_set]") {
  CHECK(CxrRewardSet::parse("diag,align,consist") == CxrRewardSet::all());
  CHECK(CxrRewardSet::parse("diag,align,consist").str() == "align,diag,consist");
  CHECK(CxrRewardSet::parse("consist,diag").str("+") == "diag+consist");
  CHECK(CxrRewardSet::parse("diag,diag").size() == 1);
  CHECK_FALSE(CxrRewardSet::parse("align").is_all());
  CHECK(CxrRewardSet::parse("align").contains(CxrReward::align));
  CHECK_THROWS_WITH(CxrRewardSet::parse("align,posture", "run.json: key 'rewards'"),
                    Catch::Contains("run.json: key 'rewards'") && Catch::Contains("'posture'") && Catch::Contains("align, diag, consist"));
  CHECK_THROWS_AS(CxrRewardSet::parse(""), std::invalid_argument);
  CHECK(AlignReward::name == "align");
  CHECK(DiagReward::name == reward_name(CxrReward::diag));
}

TEST_CASE("prepare_images maps generator images onto a network's input", "[cxr][reward_models]") {
  auto x = torch::full({2, 3, 16, 16}, 0.75);
  auto y = prepare_images(x, ImageInput{1, 8, -1024, 1024});
  CHECK(y.sizes() == torch::IntArrayRef({2, 1, 8, 8}));
  CHECK(y.min().item<double>() == Approx(512.0));
  CHECK(y.max().item<double>() == Approx(512.0));
  CHECK(prepare_images(torch::full({1, 1, 8, 8}, 0.5), ImageInput{3, 8, 0, 1}).sizes() == torch::IntArrayRef({1, 3, 8, 8}));
  CHECK_THROWS_AS(prepare_images(torch::zeros({1, 2, 8, 8}), ImageInput{}), std::invalid_argument);
}

TEST_CASE("r_diag with a traced classifier loaded from a .pt file and its sidecar", "[cxr][reward_models][torchscript]") {
  cxrl::io::SafeTensorsFile ex(kTs / "expected.safetensors");
  const auto images = ex.get("images");  // [2, 1, 32, 32] in [0, 1]
  const auto pt = scratch("clf.pt");
  fs::copy_file(kTs / "classifier.pt", pt, fs::copy_options::overwrite_existing);
  write(scratch("clf.json"), R"({"outputs": ["Effusion", "Cardiomegaly", "Pneumothorax"], "in_channels": 1, "image_size": 32,
                                 "input_range": [0, 1]})");
  auto clf = load_finding_classifier(pt);
  CHECK(clf.output_names() == std::vector<std::string>{"Effusion", "Cardiomegaly", "Pneumothorax"});
  const auto probs = torch::sigmoid(ex.get("classifier.logits"));
  CHECK(torch::allclose(clf.probabilities(images), probs, 1e-5, 1e-5));
  // r_diag compares each stated finding with the thresholded output: accuracy per report, by hand.
  BasicDiagReward<AnyFindingClassifier> diag(clf);
  const std::vector<std::string> reports{"Small left pleural effusion. No pneumothorax.", "Cardiomegaly."};
  const auto r = diag.score(images, reports);
  const auto p = probs.accessor<float, 2>();
  const double r0 = ((p[0][0] >= 0.5) + (p[0][2] < 0.5)) / 2.0, r1 = (p[1][1] >= 0.5) ? 1.0 : 0.0;
  CHECK(r[0].item<double>() == Approx(r0));
  CHECK(r[1].item<double>() == Approx(r1));
  // RGB generator output is accepted (channel mean).
  CHECK(torch::allclose(diag.score(images.expand({-1, 3, -1, -1}), reports), r));
  // A sidecar that names the wrong number of outputs fails at the first call with a clear message.
  write(scratch("clf.json"), R"({"outputs": ["Effusion"], "image_size": 32, "input_range": [0, 1]})");
  auto wrong = load_finding_classifier(pt);
  CHECK_THROWS_WITH(wrong.probabilities(images), Catch::Contains("one per output name"));
  write(scratch("clf.json"), R"({"outputs": ["Effusion"], "in_channels": 2})");
  CHECK_THROWS_WITH(load_finding_classifier(pt), Catch::Contains("clf.json") && Catch::Contains("in_channels"));
}

TEST_CASE("r_align with a traced posture regressor, r_consist with a traced dual encoder", "[cxr][reward_models][torchscript]") {
  cxrl::io::SafeTensorsFile ex(kTs / "expected.safetensors");
  const auto images = ex.get("images");
  const auto pt = scratch("posture.pt");
  fs::copy_file(kTs / "posture.pt", pt, fs::copy_options::overwrite_existing);
  write(scratch("posture.json"), R"({"in_channels": 1, "image_size": 32})");
  BasicAlignReward<AnyPostureModel> align(load_posture_model(pt));
  CHECK(torch::allclose(align.posture(images), ex.get("posture.psi"), 1e-5, 1e-5));
  CHECK(torch::allclose(align.score(images, {}), alignment_reward(ex.get("posture.psi")), 1e-5, 1e-5));

  // The embedder's vocabulary has 50 rows: a WordPiece vocab of fewer tokens keeps ids in range.
  const auto vocab = scratch("vocab.txt");
  write(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nsmall\nleft\npleural\neffusion\n.\nno\npneumothorax\ncardiomegaly\n");
  const auto emb_pt = scratch("emb.pt");
  fs::copy_file(kTs / "embedder.pt", emb_pt, fs::copy_options::overwrite_existing);
  write(scratch("emb.json"), R"({"image_size": 32, "in_channels": 1, "normalize": "imagenet", "max_length": 16})");
  BasicConsistReward<AnyReportEmbedder> consist(load_report_embedder(emb_pt, vocab));
  const std::vector<std::string> reports{"Small left pleural effusion.", "No pneumothorax."};
  const auto s = consist.score(images, reports);
  // By hand: the same preprocessing and tokenization, then the cosine of the normalised embeddings.
  auto raw = cxrl::nn::TorchScriptEmbedder::load(emb_pt);
  auto tok = cxr_clip_tokenizer(vocab);
  const auto b = tok.encode_batch(reports, 16, cxrl::text::Padding::longest);
  torch::NoGradGuard ng;
  auto ie = raw.encode_image(cxr_clip_preprocess(images, 32, ClipNormalize::imagenet).mean(1, true));
  auto te = raw.encode_text(torch::tensor(b.input_ids, torch::kLong).view({b.batch, b.length}),
                            torch::tensor(b.attention_mask, torch::kLong).view({b.batch, b.length}));
  CHECK(torch::allclose(s, (ie * te).sum(1) / (ie.norm(2, 1) * te.norm(2, 1)), 1e-5, 1e-5));
  CHECK(s.abs().max().item<double>() <= 1.0 + 1e-6);
  write(scratch("emb.json"), R"({"normalize": "clip"})");
  CHECK_THROWS_WITH(load_report_embedder(emb_pt, vocab), Catch::Contains("normalize"));
  fs::remove_all(pt.parent_path());
}
