// Unit tests of the RL core's closed-form pieces: losses, baselines, reward sums, trajectories.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include <cxrl/core/baselines.hpp>
#include <cxrl/core/concepts.hpp>
#include <cxrl/core/losses.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trajectory.hpp>

#include "../../docs/examples/rank_baseline.cpp"

using namespace cxrl::core;

namespace {

double scalar(const torch::Tensor& t) { return t.item<double>(); }

torch::Tensor f32(std::vector<float> v) { return torch::tensor(v, torch::kFloat); }

// Dummy rewards with known closed forms, named like CXRL's three feedbacks.
struct DummyAlign {
  static constexpr std::string_view name = "align";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.mean({1, 2, 3}); }
};
struct DummyDiag {
  static constexpr std::string_view name = "diag";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return 2.0 * images.mean({1, 2, 3}); }
};
struct DummyConsist {
  static constexpr std::string_view name = "consist";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) {
    return images.flatten(1).amax(1) - 0.5;
  }
};
struct WrongShapeReward {
  static constexpr std::string_view name = "wrong";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.mean(); }
};

// The two configurations of the paper, by types alone.
using CxrlRewards = RewardSum<Absolute<DummyAlign>, Comparative<DummyDiag>, Comparative<DummyConsist>>;
using NoRlcfRewards = RewardSum<Absolute<DummyAlign>, Absolute<DummyDiag>, Absolute<DummyConsist>>;
static_assert(CxrlRewards::needs_anchor);
static_assert(!NoRlcfRewards::needs_anchor);
static_assert(CxrlRewards::names[0] == "align" && CxrlRewards::names[2] == "consist");

static_assert(Baseline<NoBaseline> && Baseline<BatchWhitening> && Baseline<PerPromptStats>);
static_assert(Baseline<ComparativeAnchor> && baseline_uses_anchor_v<ComparativeAnchor>);
static_assert(!baseline_uses_anchor_v<PerPromptStats>);
static_assert(Baseline<Chain<ComparativeAnchor, PerPromptStats>> &&
              baseline_uses_anchor_v<Chain<ComparativeAnchor, PerPromptStats>>);
static_assert(Baseline<Chain<NoBaseline, BatchWhitening>> && !baseline_uses_anchor_v<Chain<NoBaseline, BatchWhitening>>);
static_assert(Baseline<cxrl_examples::RankBaseline>);
static_assert(Reward<DummyAlign> && !Reward<int>);

// Images [B, 1, 2, 2] with a constant value per sample.
torch::Tensor const_images(std::vector<float> v) {
  return f32(v).view({-1, 1, 1, 1}).expand({-1, 1, 2, 2}).contiguous();
}

}  // namespace

TEST_CASE("PPO clip loss: closed forms", "[core][losses]") {
  SECTION("adv = -1, ratio = 1, clip_range = 1e-4 gives loss 1") {
    auto logp = f32({0.3f});
    auto out = ppo_clip_loss(logp, logp.clone(), f32({-1.0f}), 1e-4);
    CHECK(scalar(out.loss) == Approx(1.0).margin(1e-7));
    CHECK(scalar(out.approx_kl) == 0.0);
    CHECK(scalar(out.clipfrac) == 0.0);
  }
  SECTION("the pessimistic side of the clip is taken") {
    const double r_hi = 1.5, r_lo = 0.5, eps = 0.2;
    auto old = f32({0, 0, 0, 0});
    auto logp = torch::tensor({std::log(r_hi), std::log(r_hi), std::log(r_lo), std::log(r_lo)}, torch::kFloat)
                    .requires_grad_(true);
    auto adv = f32({1, -1, 1, -1});
    auto out = ppo_clip_loss(logp, old, adv, eps);
    // max(-A r, -A clamp(r)) per element: -1.2, 1.5, -0.5, 0.8.
    CHECK(scalar(out.loss) == Approx((-1.2 + 1.5 - 0.5 + 0.8) / 4).epsilon(1e-6));
    out.loss.backward();
    auto g = logp.grad();
    // Clipped elements (0 and 3) carry no gradient; the others -A r / 4.
    CHECK(g[0].item<double>() == 0.0);
    CHECK(g[1].item<double>() == Approx(1.5 / 4).epsilon(1e-6));
    CHECK(g[2].item<double>() == Approx(-0.5 / 4).epsilon(1e-6));
    CHECK(g[3].item<double>() == 0.0);
    CHECK(scalar(out.clipfrac) == 1.0);
    const double d2 = std::log(r_hi) * std::log(r_hi) + std::log(r_lo) * std::log(r_lo);
    CHECK(scalar(out.approx_kl) == Approx(0.5 * (2 * d2) / 4).epsilon(1e-6));
  }
  SECTION("advantages are clamped to ±adv_clip_max") {
    auto logp = f32({0, 0});
    auto out = ppo_clip_loss(logp, logp.clone(), f32({10, -7}), 1e-4, 5.0);
    CHECK(scalar(out.loss) == Approx((-5.0 + 5.0) / 2).margin(1e-7));
    auto out2 = ppo_clip_loss(logp, logp.clone(), f32({10, 1}), 1e-4, 5.0);
    CHECK(scalar(out2.loss) == Approx((-5.0 - 1.0) / 2).epsilon(1e-6));
  }
  SECTION("clipfrac counts |ratio - 1| > clip_range") {
    auto old = f32({0, 0, 0, 0});
    auto logp = torch::tensor({0.0, 5e-5, 2e-4, -3e-4}, torch::kFloat);
    CHECK(scalar(ppo_clip_loss(logp, old, f32({1, 1, 1, 1}), 1e-4).clipfrac) == Approx(0.5));
  }
  SECTION("shape mismatch is rejected") {
    CHECK_THROWS_AS(ppo_clip_loss(f32({0, 0}), f32({0}), f32({1, 1})), std::invalid_argument);
  }
}

TEST_CASE("REINFORCE loss: -A log p and its gradient", "[core][losses]") {
  auto logp = f32({-1.0f, -2.0f}).requires_grad_(true);
  auto out = reinforce_loss(logp, f32({-1.0f, -2.0f}), f32({2.0f, -1.0f}));
  CHECK(scalar(out.loss) == Approx((2.0 * 1.0 + (-1.0) * 2.0) / 2).margin(1e-7));
  out.loss.backward();
  CHECK(logp.grad()[0].item<double>() == Approx(-1.0));
  CHECK(logp.grad()[1].item<double>() == Approx(0.5));
}

TEST_CASE("Baselines: none, batch whitening, comparative anchor, chains", "[core][baselines]") {
  std::vector<std::string> p{"a", "b", "c", "d"};
  auto r = f32({1, 2, 3, 6});
  CHECK(torch::equal(NoBaseline{}.advantages(r, p), r));

  const double mean = 3.0, std0 = std::sqrt((4.0 + 1.0 + 0.0 + 9.0) / 4.0);
  auto w = BatchWhitening{}.advantages(r, p);
  for (int i = 0; i < 4; ++i)
    CHECK(w[i].item<double>() == Approx((r[i].item<double>() - mean) / (std0 + 1e-8)).epsilon(1e-6));

  auto anchor = f32({1.5, 1.0, 3.0, 2.0});
  auto c = ComparativeAnchor{}.advantages(r, p, anchor);
  CHECK(torch::allclose(c, f32({-0.5, 1.0, 0.0, 4.0})));

  // Comparative then whitening: whitening of the differences.
  auto chained = Chain<ComparativeAnchor, BatchWhitening>{}.advantages(r, p, anchor);
  CHECK(torch::allclose(chained, BatchWhitening{}.advantages(c, p)));

  CHECK_THROWS_AS(NoBaseline{}.advantages(r, {"a"}), std::invalid_argument);
  CHECK_THROWS_AS(ComparativeAnchor{}.advantages(r, p, f32({1})), std::invalid_argument);

  auto ranks = cxrl_examples::RankBaseline{}.advantages(f32({0.3f, -1.0f, 2.0f}), {"x", "y", "z"});
  CHECK(torch::allclose(ranks, f32({0.0f, -1.0f, 1.0f})));
}

TEST_CASE("PerPromptStats matches ddpo-pytorch's PerPromptStatTracker across min_count", "[core][baselines]") {
  PerPromptStats tracker({/*buffer_size=*/3, /*min_count=*/3});

  // Call 1: every prompt has < 3 rewards after extending -> whole-batch mean/std (ddof 0) + 1e-6.
  auto a1 = tracker.advantages(f32({1, 2, 3}), {"a", "b", "a"});
  const double m1 = 2.0, s1 = std::sqrt(2.0 / 3.0) + 1e-6;
  CHECK(a1[0].item<double>() == Approx((1 - m1) / s1).epsilon(1e-6));
  CHECK(a1[1].item<double>() == Approx((2 - m1) / s1).margin(1e-7));
  CHECK(a1[2].item<double>() == Approx((3 - m1) / s1).epsilon(1e-6));

  // Call 2: "a" buffer = deque(maxlen=3) of [1,3,5,7] = [3,5,7] -> its own stats; "b" = [2,4] -> batch stats.
  auto a2 = tracker.advantages(f32({5, 7, 4}), {"a", "a", "b"});
  const double ma = 5.0, sa = std::sqrt(8.0 / 3.0) + 1e-6;
  const double mb = 16.0 / 3.0;
  const double sb = std::sqrt((std::pow(5 - mb, 2) + std::pow(7 - mb, 2) + std::pow(4 - mb, 2)) / 3.0) + 1e-6;
  CHECK(a2[0].item<double>() == Approx((5 - ma) / sa).margin(1e-7));
  CHECK(a2[1].item<double>() == Approx((7 - ma) / sa).epsilon(1e-6));
  CHECK(a2[2].item<double>() == Approx((4 - mb) / sb).epsilon(1e-6));

  auto st = tracker.stats();
  CHECK(st.at("a").count == 3);
  CHECK(st.at("a").mean == Approx(5.0));
  CHECK(st.at("b").count == 2);
  CHECK(st.at("b").mean == Approx(3.0));

  // A tracker restored from the buffers continues identically (checkpoint/resume).
  PerPromptStats restored({3, 3});
  restored.set_buffers(tracker.buffers());
  auto r3 = f32({1, 8, 2});
  std::vector<std::string> p3{"b", "a", "b"};
  CHECK(torch::equal(restored.advantages(r3, p3), tracker.advantages(r3, p3)));
}

TEST_CASE("RewardSum: CXRL (mixed modes) and w/o RLCF (all absolute) with dummy rewards", "[core][rewards]") {
  std::vector<std::string> prompts{"p0", "p1"};
  auto x = const_images({0.8f, 0.2f});
  auto xa = const_images({0.5f, 0.4f});

  SECTION("CXRL: align absolute, diag and consist comparative") {
    CxrlRewards sum{Absolute<DummyAlign>{{}, 1.0}, Comparative<DummyDiag>{{}, 10.0}, Comparative<DummyConsist>{{}, 10.0}};
    auto rb = sum.score(x, prompts, xa);
    REQUIRE(rb.components.size() == 3);
    // align: 0.8, 0.2 ; diag: 2(p - q) ; consist: (p - .5) - (q - .5)
    CHECK(torch::allclose(rb["align"].raw, f32({0.8f, 0.2f})));
    CHECK(torch::allclose(rb["diag"].raw, f32({0.6f, -0.4f})));
    CHECK(torch::allclose(rb["diag"].weighted, f32({6.0f, -4.0f})));
    CHECK(torch::allclose(rb["consist"].raw, f32({0.3f, -0.2f})));
    CHECK(torch::allclose(rb["consist"].score, f32({0.3f, -0.3f})));
    CHECK(torch::allclose(rb["consist"].anchor_score, f32({0.0f, -0.1f})));
    CHECK(rb["diag"].comparative);
    CHECK_FALSE(rb["align"].comparative);
    CHECK(torch::allclose(rb.total, f32({0.8f + 6.0f + 3.0f, 0.2f - 4.0f - 2.0f})));
    // The anchor's own total: only absolute terms (comparative ones are 0 for x̂ vs x̂).
    CHECK(torch::allclose(rb.anchor_total, f32({0.5f, 0.4f})));
    CHECK_THROWS_AS(sum.score(x, prompts), std::invalid_argument);  // comparative needs the anchor

    sum.set_weight("diag", 1.0);
    CHECK(sum.weight("diag") == 1.0);
    auto rb2 = sum.score(x, prompts, xa);
    CHECK(torch::allclose(rb2.total, f32({0.8f + 0.6f + 3.0f, 0.2f - 0.4f - 2.0f})));
    CHECK_THROWS_AS(sum.set_weight("fid", 1.0), std::out_of_range);
    CHECK_THROWS_AS(rb2["fid"], std::out_of_range);
  }
  SECTION("w/o RLCF: every term absolute, no anchor needed") {
    NoRlcfRewards sum{Absolute<DummyAlign>{{}, 1.0}, Absolute<DummyDiag>{{}, 10.0}, Absolute<DummyConsist>{{}, 10.0}};
    auto rb = sum.score(x, prompts);
    CHECK_FALSE(rb.anchor_total.defined());
    CHECK_FALSE(rb["diag"].anchor_score.defined());
    CHECK(torch::allclose(rb.total, f32({0.8f + 16.0f + 3.0f, 0.2f + 4.0f - 3.0f})));
    // With anchor images given anyway, the anchor total is the full weighted sum on x̂.
    auto rba = sum.score(x, prompts, xa);
    CHECK(torch::allclose(rba.total, rb.total));
    CHECK(torch::allclose(rba.anchor_total, f32({0.5f + 10.0f + 0.0f, 0.4f + 8.0f - 1.0f})));
  }
  SECTION("CTAD and bad reward output") {
    RewardSum sum{Absolute{DummyAlign{}, 2.0}, Comparative{DummyDiag{}}};
    static_assert(decltype(sum)::needs_anchor);
    CHECK(torch::allclose(sum.score(x, prompts, xa).total, f32({1.6f + 0.6f, 0.4f - 0.4f})));
    RewardSum bad{Absolute{WrongShapeReward{}}};
    CHECK_THROWS_WITH(bad.score(x, prompts), Catch::Contains("wrong") && Catch::Contains("[B]"));
  }
}

TEST_CASE("Trajectory select and cat", "[core][trajectory]") {
  Trajectory a;
  a.prompts = {"x", "y"};
  a.conditions = torch::arange(2, torch::kFloat).view({2, 1, 1});
  a.latents = torch::arange(2 * 3, torch::kFloat).view({2, 3, 1});
  a.timesteps = torch::tensor({10, 0, 10, 0}, torch::kLong).view({2, 2});
  a.log_probs = torch::zeros({2, 2});
  a.images = torch::zeros({2, 1, 1, 1});
  auto b = a.select(torch::tensor({1, 0}, torch::kLong));
  CHECK(b.prompts == std::vector<std::string>{"y", "x"});
  CHECK(b.latents[0][0].item<float>() == 3.0f);
  CHECK_FALSE(b.has_anchor());
  auto c = Trajectory::cat({a, b});
  CHECK(c.batch_size() == 4);
  CHECK(c.num_steps() == 2);
  CHECK(c.prompts[2] == "y");
  auto d = b;
  d.anchor_images = torch::zeros({2, 1, 1, 1});
  CHECK_THROWS_AS(Trajectory::cat({a, d}), std::invalid_argument);
  CHECK_THROWS_AS(a.select(torch::tensor({2}, torch::kLong)), std::out_of_range);
}
