// Smoke test of `cxrl_mimic train-rewards`: the three phantom reward models at a tiny config are trained into
// a temp folder, loaded back strictly through the library loaders, and the metrics JSON is checked.
#include <catch2/catch.hpp>

#include "../../examples/cxrl_mimic/cmd_train_rewards.hpp"

#include <cxrl/cxr/align_reward.hpp>
#include <cxrl/cxr/consist_reward.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/reward_model_files.hpp>
#include <cxrl/cxr/reward_training.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace {

cxrl_mimic::TrainRewardsOptions tiny_options(const std::filesystem::path& out) {
  cxrl_mimic::TrainRewardsOptions o;
  o.out = out.string();
  o.vocab = std::string(CXRL_TEST_DATA) + "/wordpiece/vocab.txt";
  o.resolution = 32;
  o.n_train = 48;
  o.n_validate = 48;
  o.n_test = 64;
  o.canonical_n = 32;
  o.quiet = true;
  o.posture_steps = 3;
  o.posture_batch_size = 8;
  o.posture_width = 4;
  o.diag_steps = 3;
  o.diag_batch_size = 8;
  o.diag_growth_rate = 4;
  o.diag_block_config = {1, 1, 1, 1};
  o.diag_init_features = 8;
  o.clip_steps = 3;
  o.clip_batch_size = 8;
  o.clip_width = 4;
  o.clip_text_hidden = 8;
  o.clip_text_layers = 1;
  o.clip_projection_dim = 8;
  o.clip_max_length = 96;
  o.clip_eval_batch = 16;
  return o;
}

bool finite_in(const nlohmann::json& j, double lo, double hi) {
  if (!j.is_number()) return false;
  const double v = j.get<double>();
  return std::isfinite(v) && v >= lo && v <= hi;
}

}  // namespace

TEST_CASE("train-rewards at a tiny config writes loadable rewards and sane metrics", "[examples][train_rewards]") {
  namespace fs = std::filesystem;
  torch::set_num_threads(1);
  const fs::path out = fs::temp_directory_path() / "cxrl_test_train_rewards";
  fs::remove_all(out);
  const auto o = tiny_options(out);
  cxrl_mimic::run_train_rewards(o, nlohmann::json{{"test", true}});

  for (const char* f : {"canonical.png", "canonical.safetensors", "posture_net.safetensors", "posture_net.json",
                        "xrv_densenet.safetensors", "xrv_densenet.json", "cxr_clip.safetensors", "cxr_clip.json",
                        "train_rewards_config.json", "train_rewards_metrics.json"}) {
    INFO(f);
    CHECK(fs::exists(out / f));
  }

  // Canonical CXR: one [1, 32, 32] image in [0, 1], equal to the library's canonical_cxr of the same split.
  const auto canon = cxrl::io::load_safetensors(out / "canonical.safetensors").at("canonical");
  REQUIRE(canon.sizes() == torch::IntArrayRef({1, 32, 32}));
  CHECK(canon.min().item<double>() >= 0.0);
  CHECK(canon.max().item<double>() <= 1.0);
  cxrl::cxr::PhantomDatasetOptions dopt;
  dopt.resolution = 32;
  dopt.n_train = 48;
  const cxrl::cxr::PhantomDataset train(dopt, cxrl::data::Split::train);
  CHECK(torch::allclose(canon, cxrl::cxr::canonical_cxr(train, 32, 0)));

  // Each file loads strictly through the library's own loaders and scores a phantom batch.
  std::vector<torch::Tensor> imgs;
  std::vector<std::string> reports;
  for (std::size_t i = 0; i < 4; ++i) {
    auto s = train.get(i);
    imgs.push_back(s.image);
    reports.push_back(s.prompt);
  }
  const auto batch = torch::stack(imgs);

  auto align = cxrl::cxr::AlignReward::load(out / "posture_net.safetensors", cxrl::cxr::posture_net_config_of(out / "posture_net.safetensors"));
  const auto ra = align.score(batch, reports);
  CHECK(ra.sizes() == torch::IntArrayRef({4}));
  CHECK(torch::isfinite(ra).all().item<bool>());
  CHECK((ra <= 0).all().item<bool>());

  auto clf = cxrl::cxr::load_xrv_densenet_file(out / "xrv_densenet.safetensors");
  CHECK(clf.resolution() == o.resolution);
  REQUIRE(clf.op_threshs().defined());
  // Compared outputs carry a threshold in (0, 1); the rest are NaN (untrained), as in released xrv weights.
  int calibrated = 0;
  for (auto [obs, k] : cxrl::cxr::xrv_observation_pairs()) {
    const double t = clf.op_threshs()[k].item<double>();
    CHECK(t > 0.0);
    CHECK(t < 1.0);
    ++calibrated;
  }
  CHECK(calibrated == 11);
  CHECK(std::isnan(clf.op_threshs()[cxrl::cxr::xrv_pathology_index("Hernia")].item<double>()));
  cxrl::cxr::DiagReward diag(std::move(clf));
  const auto rd = diag.score(batch, reports);
  CHECK(torch::isfinite(rd).all().item<bool>());
  CHECK((rd >= 0).all().item<bool>());
  CHECK((rd <= 1).all().item<bool>());

  const auto tok = cxrl::cxr::cxr_clip_tokenizer(o.vocab);
  auto clip = cxrl::cxr::load_cxr_clip_file(out / "cxr_clip.safetensors");
  CHECK(clip->config().normalize == cxrl::cxr::ClipNormalize::huggingface);  // recorded in the sidecar
  cxrl::cxr::ConsistReward consist(clip, tok);
  const auto rc = consist.score(batch, reports);
  CHECK(torch::isfinite(rc).all().item<bool>());
  CHECK((rc.abs() <= 1.0 + 1e-5).all().item<bool>());

  // A wrong architecture is refused by the strict loaders.
  auto wrong = cxrl::cxr::posture_net_config_of(out / "posture_net.safetensors");
  wrong.width = 8;
  CHECK_THROWS_AS(cxrl::cxr::load_posture_net(out / "posture_net.safetensors", wrong), cxrl::io::CheckpointError);

  // Metrics: finite and in range.
  std::ifstream f(out / "train_rewards_metrics.json");
  const auto m = nlohmann::json::parse(f);
  for (const char* k : {"s_x", "s_y", "t_x", "t_y", "theta"}) {
    INFO(k);
    CHECK(finite_in(m["posture"]["test_mean_abs_error"][k], 0.0, 10.0));
    CHECK(finite_in(m["posture"]["test_identity_mean_abs_error"][k], 0.0, 10.0));
  }
  CHECK(finite_in(m["posture"]["final_train_loss"], 0.0, 1e6));
  CHECK(finite_in(m["clip"]["final_train_loss"], 0.0, 1e6));
  int aurocs = 0;
  for (auto& [name, v] : m["diag"]["test_auroc"].items()) {
    INFO(name);
    CHECK((v.is_null() || finite_in(v, 0.0, 1.0)));
    aurocs += v.is_null() ? 0 : 1;
  }
  CHECK(m["diag"]["test_auroc"].size() == 11);
  CHECK(aurocs >= 1);
  CHECK(finite_in(m["diag"]["test_auroc_mean"], 0.0, 1.0));
  CHECK(finite_in(m["diag"]["test_accuracy_at_op"], 0.0, 1.0));
  CHECK(finite_in(m["clip"]["test_top1_image_to_report"], 0.0, 1.0));
  CHECK(finite_in(m["clip"]["test_top1_exact_index"], 0.0, 1.0));
  CHECK(finite_in(m["clip"]["test_top1_chance"], 1.0 / 16, 1.0));
  CHECK(finite_in(m["clip"]["logit_scale"], 0.0, std::log(100.0) + 1e-6));
  CHECK(m["clip"]["test_top1_image_to_report"].get<double>() >= m["clip"]["test_top1_exact_index"].get<double>());
  CHECK(finite_in(m["seconds_total"], 0.0, 1e9));

  // --only keeps the other models' metrics from the earlier run.
  auto only = o;
  only.only = "posture";
  cxrl_mimic::run_train_rewards(only, nlohmann::json::object());
  std::ifstream f2(out / "train_rewards_metrics.json");
  const auto m2 = nlohmann::json::parse(f2);
  CHECK(m2.contains("diag"));
  CHECK(m2.contains("clip"));
  CHECK(m2["posture"]["test_mean_abs_error"] == m["posture"]["test_mean_abs_error"]);  // same seed, same result

  only.only = "bogus";
  CHECK_THROWS_AS(cxrl_mimic::run_train_rewards(only, nlohmann::json::object()), std::invalid_argument);
  fs::remove_all(out);
}

TEST_CASE("reward training threshold calibration: Youden's J and prevalence rules", "[examples][train_rewards]") {
  // Positives {0.9, 0.8, 0.6}, negatives {0.7, 0.3, 0.2, 0.1}, one unstated row (NaN label) ignored.
  const auto y = torch::tensor({1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f, std::nanf("")});
  const auto p = torch::tensor({0.9f, 0.8f, 0.6f, 0.7f, 0.3f, 0.2f, 0.1f, 0.95f});
  // t = 0.8: J = 2/3; t = 0.6: J = 1 − 1/4 = 0.75 (best); t = 0.3: J = 1 − 2/4.
  CHECK(cxrl::cxr::calibrate_threshold(y, p, cxrl::cxr::ThresholdRule::youden) == Approx(0.6));
  // Prevalence 3/7: the 3rd highest score among stated rows (the NaN-labelled 0.95 is ignored).
  CHECK(cxrl::cxr::calibrate_threshold(y, p, cxrl::cxr::ThresholdRule::prevalence) == Approx(0.7));
  // One class only: not calibratable.
  CHECK(std::isnan(cxrl::cxr::calibrate_threshold(torch::tensor({1.f, 1.f}), torch::tensor({0.2f, 0.4f}), cxrl::cxr::ThresholdRule::youden)));
}
