// Tests of the diagnostic and consistency rewards (include/cxrl/cxr/diag_reward.hpp, consist_reward.hpp) on
// small models trained in-test on constructed, clearly separable images.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cxrl/core/concepts.hpp"
#include "cxrl/core/reward_sum.hpp"
#include "cxrl/cxr/align_reward.hpp"
#include "cxrl/cxr/consist_reward.hpp"
#include "cxrl/cxr/diag_reward.hpp"

using namespace cxrl::cxr;

static_assert(cxrl::core::Reward<DiagReward>);
static_assert(cxrl::core::Reward<ConsistReward>);

namespace {

// 32x32 gray image in [0, 1]: a noisy mid-grey field; "effusion" = a bright band over the bottom quarter,
// "cardiomegaly" = a bright central disc.
torch::Tensor pattern(bool effusion, bool cardiomegaly, at::Generator& gen) {
  const int S = 32;
  auto img = 0.35 + 0.05 * torch::rand({1, S, S}, gen);
  if (effusion) img.narrow(1, 24, 8).fill_(0.9);
  if (cardiomegaly) {
    auto ys = torch::arange(S).view({S, 1}).to(torch::kFloat32) - 15.5;
    auto xs = torch::arange(S).view({1, S}).to(torch::kFloat32) - 15.5;
    auto disc = ((ys.square() + xs.square()) < 64).to(torch::kFloat32).unsqueeze(0);
    img = img * (1 - disc) + 0.85 * disc;
  }
  return img.clamp(0, 1);
}

torch::Tensor batch_of(const std::vector<std::pair<bool, bool>>& kinds, at::Generator& gen) {
  std::vector<torch::Tensor> v;
  for (auto [e, c] : kinds) v.push_back(pattern(e, c, gen));
  return torch::stack(v);
}

// A small xrv-layout DenseNet (1 channel, 18 outputs) trained to read the two patterns as
// xrv "Effusion" (7) and "Cardiomegaly" (10); every other output is trained towards 0.
XrvDenseNet trained_classifier() {
  torch::manual_seed(3);
  cxrl::nn::DenseNetConfig c;
  c.growth_rate = 4;
  c.block_config = {1, 1, 1};
  c.num_init_features = 8;
  c.bn_size = 2;
  c.num_classes = 18;
  c.in_channels = 1;
  XrvDenseNet clf(c, 32);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  torch::optim::Adam adam(clf.model()->parameters(), torch::optim::AdamOptions(1e-2));
  clf.model()->train();
  for (int step = 0; step < 150; ++step) {
    auto flags = torch::randint(0, 2, {16, 2}, gen, torch::kLong);
    std::vector<std::pair<bool, bool>> kinds;
    for (int i = 0; i < 16; ++i) kinds.push_back({flags[i][0].item<int64_t>() == 1, flags[i][1].item<int64_t>() == 1});
    auto x = batch_of(kinds, gen);
    auto target = torch::zeros({16, 18});
    target.select(1, 7).copy_(flags.select(1, 0).to(torch::kFloat32));
    target.select(1, 10).copy_(flags.select(1, 1).to(torch::kFloat32));
    auto loss = torch::binary_cross_entropy_with_logits(clf.logits(to_xrv_input(x, 32)), target);
    adam.zero_grad();
    loss.backward();
    adam.step();
  }
  clf.model()->eval();
  return clf;
}

}  // namespace

TEST_CASE("diagnostic reward rises when the image shows what the report states", "[rewards][diag]") {
  auto clf = trained_classifier();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  // A: effusion only, B: nothing, C: cardiomegaly only, D: both
  auto x = batch_of({{true, false}, {false, false}, {false, true}, {true, true}}, gen);
  {
    torch::NoGradGuard ng;
    auto p = clf.predict_images(x);
    INFO("classifier outputs (Effusion, Cardiomegaly): " << p.index_select(1, torch::tensor({7, 10})));
    REQUIRE(p[0][7].item<double>() > 0.8);
    REQUIRE(p[1][7].item<double>() < 0.2);
    REQUIRE(p[2][10].item<double>() > 0.8);
    REQUIRE(p[0][10].item<double>() < 0.2);
  }
  DiagReward reward(clf);
  // The report states Pleural Effusion = 1 and Cardiomegaly = 0 (No Finding is derived, never compared).
  const std::string report = "Small left pleural effusion. Heart size is normal.";
  const std::vector<std::string> prompts(4, report);
  auto d = reward.evaluate(x, prompts);
  std::printf("diag reward for 'effusion, normal heart' on [effusion, blank, cardiomegaly, both]: %.2f %.2f %.2f %.2f\n",
              d.accuracy[0].item<double>(), d.accuracy[1].item<double>(), d.accuracy[2].item<double>(),
              d.accuracy[3].item<double>());
  CHECK(d.accuracy[0].item<double>() == 1.0);
  CHECK(d.accuracy[1].item<double>() == 0.5);
  CHECK(d.accuracy[2].item<double>() == 0.0);
  CHECK(d.accuracy[3].item<double>() == 0.5);
  CHECK(d.checked.eq(2).all().item<bool>());
  const int pe = observation_index("Pleural Effusion"), ca = observation_index("Cardiomegaly"), nf = observation_index("No Finding");
  CHECK(d.stated[0][pe].item<float>() == 1.f);
  CHECK(d.stated[0][ca].item<float>() == 0.f);
  CHECK(std::isnan(d.stated[0][nf].item<float>()));
  CHECK(std::isnan(d.predicted[0][nf].item<float>()));
  CHECK(torch::allclose(reward.score(x, prompts), d.accuracy));

  // Uncertain mentions are excluded: only Cardiomegaly (negated) is compared.
  auto u = reward.evaluate(x, std::vector<std::string>(4, "Possible small effusion. Heart size is normal."));
  CHECK(u.checked.eq(1).all().item<bool>());
  CHECK(u.accuracy[0].item<double>() == 1.0);
  CHECK(u.accuracy[2].item<double>() == 0.0);

  // A report that states nothing the classifier can check scores empty_score.
  CHECK(reward.score(x, std::vector<std::string>(4, "Pacemaker in place.")).abs().max().item<double>() == 0.0);
  DiagRewardConfig cfg;
  cfg.empty_score = 0.25;
  CHECK(DiagReward(clf, cfg).score(x, std::vector<std::string>(4, "Pacemaker in place.")).eq(0.25).all().item<bool>());

  // RGB input is averaged to gray: same result.
  CHECK(torch::equal(reward.score(x.expand({4, 3, 32, 32}), prompts), d.accuracy));

  // An output the classifier was not trained for (NaN op_threshs) is not compared.
  auto th = torch::full({18}, 0.5);  // op_norm with t = 0.5 is the identity
  th[7] = NAN;
  auto clf2 = clf;
  clf2.set_op_threshs(th);
  DiagReward partial(clf2);
  CHECK(partial.output_index()[static_cast<std::size_t>(pe)] == -1);
  CHECK(partial.output_index()[static_cast<std::size_t>(ca)] == 10);
  auto pd = partial.evaluate(x, prompts);
  CHECK(pd.checked.eq(1).all().item<bool>());
  CHECK(pd.accuracy[0].item<double>() == 1.0);
  CHECK(pd.accuracy[2].item<double>() == 0.0);

  // In CXRL's reward sum (paper λ_align = 1, λ_diag = 10) with RLCF: policy image A vs anchor image B.
  PostureNetConfig pc;
  pc.width = 4;
  pc.image_size = 32;
  cxrl::core::RewardSum sum(cxrl::core::Absolute<AlignReward>{AlignReward(PostureNet(pc)), 1.0},
                            cxrl::core::Comparative<DiagReward>{reward, 10.0});
  static_assert(decltype(sum)::needs_anchor);
  auto policy = x.narrow(0, 0, 1), anchor = x.narrow(0, 1, 1);
  auto br = sum.score(policy, {report}, anchor);
  CHECK(br["diag"].raw.item<double>() == Approx(0.5));   // accuracy 1 − 0.5
  CHECK(br["align"].raw.item<double>() == 0.0);          // untrained PostureNet: identity pose
  CHECK(br.total.item<double>() == Approx(5.0));
  CHECK(sum.score(anchor, {report}, policy).total.item<double>() == Approx(-5.0));
}

TEST_CASE("diagnostic reward mapping and inputs are validated", "[rewards][diag]") {
  cxrl::nn::DenseNetConfig c;
  c.growth_rate = 4;
  c.block_config = {1, 1};
  c.num_init_features = 8;
  c.num_classes = 18;
  c.in_channels = 1;
  XrvDenseNet clf(c, 32);
  DiagReward reward(clf);
  // defaults: 11 observations mapped; No Finding, Pleural Other, Support Devices are not
  int mapped = 0;
  for (int k : reward.output_index()) mapped += k >= 0;
  CHECK(mapped == 11);
  CHECK(reward.output_index()[static_cast<std::size_t>(observation_index("Pleural Effusion"))] == xrv_pathology_index("Effusion"));
  CHECK(reward.output_index()[static_cast<std::size_t>(observation_index("Support Devices"))] == -1);
  DiagRewardConfig bad;
  bad.threshold = 1.5;
  CHECK_THROWS_AS(DiagReward(clf, bad), std::invalid_argument);
  bad = {};
  bad.mapping = {{"Pleural Effusions", "Effusion"}};
  CHECK_THROWS_AS(DiagReward(clf, bad), std::invalid_argument);
  bad.mapping = {{"No Finding", "Hernia"}};
  CHECK_THROWS_AS(DiagReward(clf, bad), std::invalid_argument);
  auto x = torch::rand({2, 1, 32, 32});
  CHECK_THROWS_AS(reward.score(x, {"only one report"}), std::invalid_argument);
  CHECK_THROWS_AS(reward.score(x * 3, {"a", "b"}), std::invalid_argument);
  CHECK_THROWS_AS(reward.score(torch::rand({2, 4, 32, 32}), {"a", "b"}), std::invalid_argument);
  CHECK_THROWS_AS(reward.score(torch::rand({2, 1, 32, 40}), {"a", "b"}), std::invalid_argument);  // xrv needs square
}

TEST_CASE("consistency reward prefers the matching report", "[rewards][consist]") {
  torch::manual_seed(11);
  const std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no",   "pleural", "effusion",
                                          "small", "left",  "right", "heart", "size",   "is",     "normal", "."};
  cxrl::text::WordPieceTokenizer tok(vocab);
  CxrClipConfig cfg;
  cfg.image = cxrl::nn::ResNetConfig::resnet18();
  cfg.image.width = 8;
  cfg.image.include_fc = false;
  cfg.text.vocab_size = static_cast<int64_t>(vocab.size());
  cfg.text.hidden_size = 16;
  cfg.text.num_hidden_layers = 1;
  cfg.text.num_attention_heads = 2;
  cfg.text.intermediate_size = 32;
  cfg.text.max_position_embeddings = 32;
  cfg.projection_dim = 8;
  cfg.image_size = 32;
  cfg.max_length = 32;
  CxrClip model(cfg);
  model->eval();

  const std::vector<std::string> yes = {"small left pleural effusion.", "pleural effusion.", "small right pleural effusion."};
  const std::vector<std::string> no = {"no pleural effusion.", "no effusion.", "heart size is normal."};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  std::vector<std::pair<bool, bool>> kinds;
  for (int i = 0; i < 24; ++i) kinds.push_back({i % 2 == 0, false});
  auto train_x = batch_of(kinds, gen);
  // Brief training of the two projection heads (and logit scale) on frozen random encoders: enough to tie
  // "effusion" texts to bright-bottom images.
  torch::Tensor img_f, txt_f;
  std::vector<std::string> texts = yes;
  texts.insert(texts.end(), no.begin(), no.end());
  {
    torch::NoGradGuard ng;
    img_f = model->image_features(cxr_clip_preprocess(train_x, 32));
    auto b = tok.encode_batch(texts, 32, cxrl::text::Padding::longest);
    auto ids = torch::tensor(b.input_ids, torch::kLong).view({b.batch, b.length});
    auto mask = torch::tensor(b.attention_mask, torch::kLong).view({b.batch, b.length});
    txt_f = model->text_features(ids, mask);
  }
  auto y = torch::zeros({24, 6});
  for (int i = 0; i < 24; ++i)
    for (int j = 0; j < 6; ++j) y[i][j] = ((i % 2 == 0) == (j < 3)) ? 1.0 : 0.0;
  std::vector<torch::Tensor> params;
  for (auto& p : model->image_projection->parameters()) params.push_back(p);
  for (auto& p : model->text_projection->parameters()) params.push_back(p);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 200; ++step) {
    auto pi = model->image_projection(img_f), pt = model->text_projection(txt_f);
    auto cos = torch::matmul(pi / pi.norm(2, 1, true), (pt / pt.norm(2, 1, true)).t());
    auto loss = torch::binary_cross_entropy_with_logits(8 * cos, y);
    adam.zero_grad();
    loss.backward();
    adam.step();
  }

  ConsistReward reward(model, tok);
  auto test_e = batch_of({{true, false}, {true, false}, {true, false}}, gen);
  auto test_n = batch_of({{false, false}, {false, false}, {false, false}}, gen);
  const std::vector<std::string> rep_e(3, "small left pleural effusion."), rep_n(3, "no pleural effusion.");
  auto ee = reward.score(test_e, rep_e), en = reward.score(test_e, rep_n);
  auto nn_ = reward.score(test_n, rep_n), ne = reward.score(test_n, rep_e);
  std::printf("consist reward: effusion image with matching %.3f vs mismatched %.3f; clear image with matching %.3f vs mismatched %.3f\n",
              ee.mean().item<double>(), en.mean().item<double>(), nn_.mean().item<double>(), ne.mean().item<double>());
  CHECK((ee > en).all().item<bool>());
  CHECK((nn_ > ne).all().item<bool>());
  CHECK(ee.abs().max().item<double>() <= 1.0 + 1e-5);
  REQUIRE(ee.sizes() == torch::IntArrayRef{3});
  // the score is the cosine of the model's own normalised embeddings
  {
    torch::NoGradGuard ng;
    auto manual = (model->encode_image(cxr_clip_preprocess(test_e, 32)) * model->encode_texts(tok, rep_e)).sum(1);
    CHECK(torch::allclose(manual, ee, 1e-5, 1e-6));
  }
  // gray and RGB input agree (gray is repeated to RGB by the preprocessing)
  CHECK(torch::allclose(reward.score(test_e.expand({3, 3, 32, 32}), rep_e), ee, 1e-5, 1e-6));
  CHECK_THROWS_AS(reward.score(test_e, {"one report"}), std::invalid_argument);
  CHECK_THROWS_AS(reward.score(test_e - 0.5, rep_e), std::invalid_argument);
  CHECK_THROWS_AS(reward.score(test_e.narrow(2, 0, 16), rep_e), std::invalid_argument);
}
