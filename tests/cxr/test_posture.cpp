// Tests of the posture-alignment model and reward (include/cxrl/cxr/posture.hpp, align_reward.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "cxrl/core/concepts.hpp"
#include "cxrl/cxr/align_reward.hpp"
#include "cxrl/cxr/phantom.hpp"
#include "cxrl/cxr/posture.hpp"

using namespace cxrl::cxr;

namespace {

torch::Tensor psi_tensor(const Posture& p) {
  auto a = p.to_array();
  return torch::tensor({a[0], a[1], a[2], a[3], a[4]}, torch::kFloat32);
}

// A posed rendering of one phantom patient, [1, S, S] in [0, 1], neutral exposure.
torch::Tensor posed_phantom(const PhantomSpec& base, const Posture& p, int size) {
  auto s = base;
  s.posture = p;
  return render_phantom(s, size, /*with_posture=*/true, /*with_exposure=*/false);
}

// Uniform postures inside the phantom world's ranges (scale ±12 %, translation ±0.1, rotation ±0.15 rad).
torch::Tensor sample_postures(int64_t n, at::Generator& gen) {
  auto u = torch::rand({n, 5}, gen) * 2 - 1;
  return torch::stack({1 + 0.12 * u.select(1, 0), 1 + 0.12 * u.select(1, 1), 0.1 * u.select(1, 2), 0.1 * u.select(1, 3),
                       0.15 * u.select(1, 4)},
                      1);
}

torch::Tensor render_batch(const PhantomSpec& base, const torch::Tensor& psi, int size) {
  std::vector<torch::Tensor> v;
  auto a = psi.accessor<float, 2>();
  for (int64_t i = 0; i < psi.size(0); ++i)
    v.push_back(posed_phantom(base, {a[i][0], a[i][1], a[i][2], a[i][3], a[i][4]}, size));
  return torch::stack(v);
}

}  // namespace

static_assert(cxrl::core::Reward<AlignReward>);

TEST_CASE("r_align closed form", "[posture]") {
  auto r = alignment_reward(torch::stack({psi_tensor({1, 1, 0, 0, 0}), psi_tensor({1.1, 0.75, 0.3, -0.4, M_PI / 2}),
                                          psi_tensor({0.9, 1.05, 0, 0, -M_PI})}));
  REQUIRE(r.sizes() == torch::IntArrayRef{3});
  CHECK(r[0].item<double>() == 0.0);
  CHECK(r[1].item<double>() == Approx(-(0.25 + 0.25 + 0.5)).margin(1e-6));
  CHECK(r[2].item<double>() == Approx(-(0.1 + 0.5)).margin(1e-6));
  // agrees with the scalar form of phantom_posture.hpp
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto psi = sample_postures(20, gen);
  auto rt = alignment_reward(psi);
  auto a = psi.accessor<float, 2>();
  for (int64_t i = 0; i < 20; ++i)
    CHECK(rt[i].item<double>() == Approx(posture_alignment_reward({a[i][0], a[i][1], a[i][2], a[i][3], a[i][4]})).margin(1e-6));
  // a single [5] posture is accepted; a wrong width is not
  CHECK(alignment_reward(psi_tensor({1, 1, 0.3, 0.4, 0})).item<double>() == Approx(-0.5));
  CHECK_THROWS_AS(alignment_reward(torch::zeros({2, 4})), std::invalid_argument);
}

TEST_CASE("posture matrices and the warp invert the phantom posing", "[posture]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto psi = sample_postures(6, gen);
  auto m = posture_matrices(psi);
  auto a = psi.accessor<float, 2>();
  for (int64_t i = 0; i < 6; ++i) {
    auto ref = posture_matrix({a[i][0], a[i][1], a[i][2], a[i][3], a[i][4]});
    for (int k = 0; k < 6; ++k) CHECK(m[i][k / 3][k % 3].item<double>() == Approx(ref[static_cast<std::size_t>(k)]).margin(1e-6));
  }
  // warp_to_canonical(posed, ψ) recovers the canonical rendering (interior, up to resampling blur)
  const auto spec = normal_phantom_spec(11);
  const int S = 64;
  auto canon = render_phantom(spec, S, false, false).unsqueeze(0).expand({6, 1, S, S});
  auto posed = render_batch(spec, psi, S);
  auto aligned = warp_to_canonical(posed, psi);
  auto inner = [&](const torch::Tensor& t) { return t.narrow(2, 12, 40).narrow(3, 12, 40); };
  const double err_true = (inner(aligned) - inner(canon)).abs().mean().item<double>();
  const double err_none = (inner(posed) - inner(canon)).abs().mean().item<double>();
  std::printf("warp with true psi: mean |aligned - canonical| = %.4f (unaligned %.4f)\n", err_true, err_none);
  CHECK(err_true < 0.2 * err_none);
  CHECK_THROWS_AS(warp_to_canonical(posed, psi.narrow(0, 0, 5)), std::invalid_argument);
}

TEST_CASE("untrained PostureNet predicts the identity and AlignReward scores 0", "[posture]") {
  torch::manual_seed(1);
  PostureNetConfig cfg;
  cfg.width = 4;
  cfg.image_size = 32;
  PostureNet net(cfg);
  auto x = torch::rand({3, 1, 48, 48});
  auto psi = net->forward(x);
  CHECK(torch::allclose(psi, identity_posture().expand({3, 5})));
  AlignReward reward(net);
  auto r = reward.score(x, {});
  REQUIRE(r.sizes() == torch::IntArrayRef{3});
  CHECK(r.abs().max().item<double>() == 0.0);
  // RGB is averaged to gray; prompts may be given, one per image
  CHECK(reward.score(x.expand({3, 3, 48, 48}), {"a", "b", "c"}).abs().max().item<double>() == 0.0);
  // hand-set head: ψ = (1.1, 1, 0.3, 0.4, 0) for every image → r = -(0.1 + 0.5)
  {
    torch::NoGradGuard ng;
    net->backbone->fc->bias.copy_(psi_tensor({1.1, 1, 0.3, 0.4, 0}));
  }
  CHECK(reward.score(x, {}).mean().item<double>() == Approx(-0.6).margin(1e-5));
}

TEST_CASE("bad inputs to PostureNet and AlignReward are rejected", "[posture]") {
  PostureNetConfig cfg;
  cfg.width = 4;
  cfg.image_size = 32;
  AlignReward reward{PostureNet(cfg)};
  CHECK_THROWS_AS(reward.score(torch::rand({1, 32, 32}), {}), std::invalid_argument);          // 3-D
  CHECK_THROWS_AS(reward.score(torch::rand({1, 2, 32, 32}), {}), std::invalid_argument);       // 2 channels
  CHECK_THROWS_AS(reward.score(torch::rand({1, 1, 32, 32}) * 2, {}), std::invalid_argument);   // range
  CHECK_THROWS_AS(reward.score(torch::rand({1, 1, 16, 16}), {}), std::invalid_argument);       // too small
  CHECK_THROWS_AS(reward.score(torch::rand({1, 1, 32, 48}), {}), std::invalid_argument);       // not square
  CHECK_THROWS_AS(reward.score(torch::full({1, 1, 32, 32}, NAN), {}), std::invalid_argument);  // NaN
  CHECK_THROWS_AS(reward.score(torch::rand({2, 1, 32, 32}), {"one"}), std::invalid_argument);  // prompt count
  CHECK_THROWS_AS(reward.score(torch::randint(0, 2, {1, 1, 32, 32}, torch::kLong), {}), std::invalid_argument);  // integer
  cfg.image_size = 16;
  CHECK_THROWS_AS(PostureNet(cfg), std::invalid_argument);
  try {
    reward.score(torch::rand({1, 2, 32, 32}), {});
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("align reward") != std::string::npos);
    CHECK(std::string(e.what()).find("channels") != std::string::npos);
  }
}

TEST_CASE("a small PostureNet trained on the L2-to-canonical objective recovers the posture", "[posture][train]") {
  // One phantom patient; the canonical CXR is its unposed rendering (the mean of identical images). The
  // network never sees the true ψ: the loss is only ‖warp(x, ψ̂(x)) − canonical‖².
  at::set_num_threads(1);
  torch::manual_seed(0);
  const int S = 32;
  const auto spec = normal_phantom_spec(1000);
  const auto canonical = render_phantom(spec, S, false, false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(123);
  const int64_t P = 512;
  const auto pool_psi = sample_postures(P, gen);
  const auto pool = render_batch(spec, pool_psi, S);

  PostureNetConfig cfg;
  cfg.width = 8;  // ResNet-18 layout at 1/8 of torchvision's width
  cfg.image_size = S;
  PostureNet net(cfg);
  PostureTrainOptions opt;
  opt.steps = 1000;
  opt.lr = 1e-3;
  auto batch_gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto res = train_posture_net(net, canonical, [&](int64_t) {
    auto idx = torch::randint(P, {16}, batch_gen, torch::kLong);
    return PostureBatch{pool.index_select(0, idx), {}};
  }, opt);
  REQUIRE(res.losses.size() == 1000);
  auto mean_loss = [&](std::size_t a, std::size_t b) {
    double s = 0;
    for (std::size_t i = a; i < b; ++i) s += res.losses[i];
    return s / static_cast<double>(b - a);
  };
  std::printf("posture training loss: first 50 steps %.5f, last 50 steps %.5f\n", mean_loss(0, 50), mean_loss(950, 1000));
  CHECK(mean_loss(950, 1000) < 0.5 * mean_loss(0, 50));

  // Recovery on fresh postures.
  auto test_gen = at::make_generator<at::CPUGeneratorImpl>(99);
  const auto psi = sample_postures(64, test_gen);
  AlignReward reward(net);
  const auto pred = reward.posture(render_batch(spec, psi, S));
  const auto err = (pred - psi).abs().mean(0);
  const auto base = (psi - identity_posture()).abs().mean(0);
  const char* names[5] = {"s_x", "s_y", "t_x", "t_y", "theta"};
  for (int k = 0; k < 5; ++k) {
    std::printf("posture recovery %-5s: mean abs error %.4f (identity guess %.4f)\n", names[k], err[k].item<double>(),
                base[k].item<double>());
    INFO(names[k]);
    CHECK(err[k].item<double>() < 0.5 * base[k].item<double>());
  }

  // |r_align| grows monotonically with the misalignment.
  std::vector<torch::Tensor> path;
  for (int k = 0; k <= 4; ++k) {
    const double f = k / 4.0;
    path.push_back(posed_phantom(spec, {1 + 0.11 * f, 1 - 0.09 * f, 0.08 * f, -0.08 * f, 0.14 * f}, S));
  }
  const auto r = reward.score(torch::stack(path), {});
  std::printf("r_align along a misalignment path: %.4f %.4f %.4f %.4f %.4f (true: 0 %.4f %.4f %.4f %.4f)\n",
              r[0].item<double>(), r[1].item<double>(), r[2].item<double>(), r[3].item<double>(), r[4].item<double>(),
              posture_alignment_reward({1 + 0.11 * 0.25, 1 - 0.09 * 0.25, 0.02, -0.02, 0.035}),
              posture_alignment_reward({1 + 0.11 * 0.5, 1 - 0.09 * 0.5, 0.04, -0.04, 0.07}),
              posture_alignment_reward({1 + 0.11 * 0.75, 1 - 0.09 * 0.75, 0.06, -0.06, 0.105}),
              posture_alignment_reward({1.11, 0.91, 0.08, -0.08, 0.14}));
  CHECK(std::abs(r[0].item<double>()) < 0.06);
  for (int k = 1; k <= 4; ++k) CHECK(r[k].item<double>() < r[k - 1].item<double>());

  // Save / strict load round trip gives the same predictions; a different width is refused.
  const auto file = std::filesystem::temp_directory_path() / "cxrl_test_posture_net.safetensors";
  save_posture_net(file, net);
  auto reloaded = AlignReward::load(file, cfg);
  CHECK(torch::allclose(reloaded.score(torch::stack(path), {}), r, 1e-5, 1e-6));
  auto wrong = cfg;
  wrong.width = 4;
  CHECK_THROWS_AS(load_posture_net(file, wrong), cxrl::io::CheckpointError);
  std::filesystem::remove(file);
}
