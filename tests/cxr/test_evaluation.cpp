// The CXR evaluation protocol's pieces: the mirror-symmetry posture check, AUROC label convention, generation
// diversity and the score cache format.
#include <catch2/catch.hpp>

#include <cxrl/cxr/evaluation.hpp>
#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/symmetry.hpp>

#include <cmath>
#include <limits>

using namespace cxrl::cxr;

TEST_CASE("mirror symmetry recovers the tilt and lateral offset of a posed phantom", "[cxr][evaluation][symmetry]") {
  std::vector<torch::Tensor> imgs;
  const std::vector<std::pair<double, double>> poses{{0.0, 0.0}, {0.12, 0.0}, {-0.12, 0.0}, {0.0, 0.08}, {0.08, -0.06}};
  for (auto [theta, tx] : poses) {
    auto s = normal_phantom_spec(11, View::PA);
    s.posture = Posture{1.0, 1.0, tx, 0.0, theta};
    imgs.push_back(render_phantom(s, 64, /*with_posture=*/true, /*with_exposure=*/false));
  }
  const auto est = symmetry_posture(torch::stack(imgs));
  REQUIRE(est.sizes() == torch::IntArrayRef({5, 2}));
  for (std::size_t i = 0; i < poses.size(); ++i) {
    INFO("pose " << i << ": theta " << poses[i].first << " tx " << poses[i].second << " -> " << est[static_cast<int64_t>(i)]);
    CHECK(est[static_cast<int64_t>(i)][0].item<double>() == Approx(poses[i].first).margin(0.025));
    CHECK(est[static_cast<int64_t>(i)][1].item<double>() == Approx(poses[i].second).margin(0.025));
  }
  // Monotone in the true angle: a larger tilt is measured larger.
  CHECK(est[1][0].item<double>() > est[0][0].item<double>());
  CHECK(est[2][0].item<double>() < est[0][0].item<double>());
}

TEST_CASE("AUROC targets: unmentioned counts as absent, uncertain is left out", "[cxr][evaluation]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto t = auroc_targets(torch::tensor({1.f, 0.f, -1.f, nan}).view({1, 4}));
  CHECK(t[0][0].item<float>() == 1.f);
  CHECK(t[0][1].item<float>() == 0.f);
  CHECK(std::isnan(t[0][2].item<float>()));
  CHECK(t[0][3].item<float>() == 0.f);
}

TEST_CASE("generation diversity: identical generations score 1, different ones less", "[cxr][evaluation]") {
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto a = torch::rand({1, 1, 64, 64}, g);
  const auto same = a.expand({4, 1, 64, 64}).contiguous();
  const auto mixed = torch::cat({same, torch::rand({4, 1, 64, 64}, g)});
  const auto d = generation_diversity(mixed, 4);
  REQUIRE(d.sizes() == torch::IntArrayRef({2}));
  CHECK(d[0].item<double>() == Approx(1.0));
  CHECK(d[1].item<double>() < 0.5);
  CHECK_THROWS_AS(generation_diversity(mixed.narrow(0, 0, 7), 4), std::invalid_argument);
}

TEST_CASE("AUROC and FID statistics over resampled reports, score maps round-trip", "[cxr][evaluation]") {
  ReportScores s;
  const int64_t n = 40;
  auto y = torch::zeros({n, kNumObservations});
  y.select(1, obs::cardiomegaly).narrow(0, 0, 20).fill_(1.f);
  s.judge_probs = torch::full({n, kNumObservations}, std::numeric_limits<float>::quiet_NaN());
  s.judge_probs.select(1, obs::cardiomegaly).copy_(y.select(1, obs::cardiomegaly) * 0.8f + 0.1f);  // perfect ranking
  const auto auroc = auroc_statistic(s, auroc_targets(y));
  CHECK(auroc(cxrl::eval::all_items(n)) == Approx(1.0));
  std::vector<int64_t> only_negatives(10, 30);
  CHECK(std::isnan(auroc(only_negatives)));  // one class in the sample: undefined, left out by the bootstrap
  auto g = at::make_generator<at::CPUGeneratorImpl>(2);
  s.features = torch::randn({n, 3}, g, torch::kDouble);
  CHECK(fid_statistic(s, s.features)(cxrl::eval::all_items(n)) == Approx(0.0).margin(1e-6));
  for (auto* t : {&s.judge_align, &s.judge_diag, &s.judge_clip, &s.reward_align, &s.reward_diag, &s.reward_consist, &s.diversity})
    *t = torch::rand({n}, g);
  s.midline = torch::rand({n, 2}, g);
  const auto back = ReportScores::from_map(s.to_map(), "x");
  CHECK(torch::equal(back.features, s.features));
  CHECK(torch::equal(back.midline, s.midline));
  auto m = s.to_map();
  m.erase("features");
  CHECK_THROWS_WITH(ReportScores::from_map(m, "scores/cxrl.safetensors"), Catch::Contains("scores/cxrl.safetensors") && Catch::Contains("features"));
}
