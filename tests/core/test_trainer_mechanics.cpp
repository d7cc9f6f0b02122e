// The trainer's RL mechanics beyond plain DDPO: no anchor when no comparative term is on, K anchor samples per
// prompt, the logged correlation of policy and anchor scores, non-finite values never reaching the weights, and
// baseline state surviving a resume.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <cxrl/core/baselines.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/epoch_log.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/core/trainer_state.hpp>
#include <cxrl/diffusion/ddim.hpp>

#include "sd_sampler.hpp"
#include "../../docs/examples/counting_sampler.cpp"
#include "../../docs/examples/region_brightness_reward.cpp"
#include "../../docs/examples/toy_policy.cpp"

using namespace cxrl::core;
using cxrl_examples::CountingSampler;
using cxrl_examples::RegionBrightness;
using cxrl_examples::ToyPolicy;

namespace {

DdimSampler sampler(int64_t steps = 4, double guidance = 1.0) { return sd_sampler(steps, guidance); }

// A reward of the prompt alone: identical for a sample and its anchor.
struct PromptLength {
  static constexpr std::string_view name = "length";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto s = torch::empty({images.size(0)});
    for (int64_t i = 0; i < images.size(0); ++i) s[i] = static_cast<double>(prompts[static_cast<size_t>(i)].size());
    return s;
  }
};

// NaN for the prompt "broken", the brightness otherwise.
struct SometimesNaN {
  static constexpr std::string_view name = "fragile";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) {
    auto s = RegionBrightness{}.score(images, prompts);
    for (int64_t i = 0; i < images.size(0); ++i)
      if (prompts[static_cast<size_t>(i)] == "broken") s[i] = std::numeric_limits<float>::quiet_NaN();
    return s;
  }
};

std::vector<std::string> prompts_of(const std::vector<std::string>& pool, int64_t n, at::Generator& gen) {
  auto pick = torch::randint(static_cast<int64_t>(pool.size()), {n}, gen, torch::kLong);
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(pool[static_cast<size_t>(pick[i].item<int64_t>())]);
  return out;
}

TrainerConfig small_config() {
  TrainerConfig c;
  c.num_batches = 2;
  c.batch_size = 8;
  c.train_batch_size = 8;
  c.learning_rate = 1e-2;
  c.seed = 3;
  return c;
}

std::vector<torch::Tensor> snapshot(ToyPolicy& p) {
  std::vector<torch::Tensor> out;
  for (auto& t : p.trainable_parameters()) out.push_back(t.detach().clone());
  return out;
}

bool identical(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return a.size() == b.size();
}

}  // namespace

TEST_CASE("A run whose comparative terms are all off samples no anchor", "[core][trainer][anchor]") {
  auto prompts = [](int64_t n, at::Generator& g) { return prompts_of({"a", "b"}, n, g); };
  for (double w : {0.0, 1.0}) {
    ToyPolicy policy(1);
    Trainer trainer(policy, CountingSampler(sampler()), RewardSum{Absolute{RegionBrightness{}}, Comparative{PromptLength{}, w}},
                    BatchWhitening{}, prompts, small_config());
    const auto st = trainer.train_epoch();
    // 16 trajectories × 4 steps for the policy, and as many again for the anchor when its term is on.
    CHECK(trainer.sampler().sampled_steps() == (w == 0.0 ? 64 : 128));
    CHECK(std::isnan(st.components[1].anchor_score_mean) == (w == 0.0));
    CHECK(st.components[1].raw_mean == 0.0);  // off: contributes nothing; on: x and x̂ share the prompt
  }
}

TEST_CASE("K anchor samples: one batch of K·B from the same x_T, scores averaged per prompt", "[core][sampler][anchor]") {
  ToyPolicy policy(2);
  auto s = sampler(5, 2.0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  auto traj = s.sample(policy, {"a", "b", "c"}, gen);
  auto g = at::make_generator<at::CPUGeneratorImpl>(9);
  s.sample_anchor(policy, traj, g, 3);
  REQUIRE(traj.anchor_images.sizes() == torch::IntArrayRef({3, 3, 1, 8, 8}));
  // Independent step noise: the three anchor samples of a prompt differ.
  CHECK_FALSE(torch::equal(traj.anchor_images[0][0], traj.anchor_images[0][1]));
  // K = 1 keeps the single-sample layout [B, …].
  auto t1 = traj;
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(9);
  s.sample_anchor(policy, t1, g1);
  CHECK(t1.anchor_images.sizes() == torch::IntArrayRef({3, 1, 8, 8}));

  // RewardSum averages the K anchor scores of each prompt.
  RewardSum sum{Comparative{RegionBrightness{}, 2.0}};
  const auto rb = sum.score(traj.images, traj.prompts, traj.anchor_images);
  auto mean_anchor = torch::zeros({3});
  for (int64_t k = 0; k < 3; ++k) mean_anchor += RegionBrightness{}.score(traj.anchor_images.select(1, k), traj.prompts) / 3.0;
  CHECK(torch::allclose(rb.components[0].anchor_score, mean_anchor, 1e-6, 1e-6));
  CHECK(torch::allclose(rb.total, 2.0 * (RegionBrightness{}.score(traj.images, traj.prompts) - mean_anchor), 1e-6, 1e-6));
  CHECK_THROWS_WITH(sum.score(traj.images, traj.prompts, traj.anchor_images.narrow(0, 0, 2)), Catch::Contains("[B, K, ...]"));

  // The trainer samples K anchors per prompt when asked; a sampler without the K form is refused up front.
  auto cfg = small_config();
  cfg.anchor_samples = 4;
  ToyPolicy p2(1);
  auto prompts = [](int64_t n, at::Generator& gg) { return prompts_of({"a", "b"}, n, gg); };
  Trainer trainer(p2, sampler(), RewardSum{Comparative{RegionBrightness{}}}, BatchWhitening{}, prompts, cfg);
  CHECK(std::isfinite(trainer.train_epoch().components[0].anchor_score_mean));
  CHECK_THROWS_WITH(Trainer(p2, CountingSampler(sampler()), RewardSum{Comparative{RegionBrightness{}}}, BatchWhitening{}, prompts, cfg),
                    Catch::Contains("anchor_samples > 1"));
}

TEST_CASE("The trainer logs corr(score(x), score(x̂)) of each term", "[core][trainer][anchor]") {
  ToyPolicy policy(1);
  auto prompts = [](int64_t n, at::Generator& g) { return prompts_of({"short", "a much longer report"}, n, g); };
  Trainer trainer(policy, sampler(), RewardSum{Comparative{PromptLength{}}, Comparative{RegionBrightness{}, 0.5}}, BatchWhitening{},
                  prompts, small_config());
  const auto st = trainer.train_epoch();
  CHECK(st.components[0].anchor_corr == Approx(1.0));  // a reward of the prompt alone: x and x̂ score the same
  CHECK(st.components[1].anchor_corr >= -1.0);
  CHECK(st.components[1].anchor_corr < 0.999);          // images drawn with independent step noise
}

namespace {
/// Records the phases it is told about and stops the run after the first epoch.
struct PhaseRecorder {
  std::vector<std::string> seen;
  template <class T>
  void on_phase(T&, cxrl::core::Phase p) { seen.emplace_back(cxrl::core::phase_name(p)); }
  template <class T>
  bool on_epoch_end(T&, const cxrl::core::EpochStats&) { return true; }
};
}  // namespace

TEST_CASE("Callbacks see the phases in order, as enums, and can stop the run", "[core][trainer][callbacks]") {
  ToyPolicy policy(1);
  auto prompts = [](int64_t n, at::Generator& g) { return prompts_of({"short", "a much longer report"}, n, g); };
  Trainer trainer(policy, sampler(), RewardSum{Absolute{PromptLength{}}}, BatchWhitening{}, prompts, small_config());
  PhaseRecorder rec;
  trainer.train_epoch(rec);
  CHECK(rec.seen == std::vector<std::string>{"sampling", "rewards", "training"});
  CHECK(trainer.stopped());
}

TEST_CASE("Non-finite rewards never reach the weights, the run stops after max_skipped_updates", "[core][trainer][nan]") {
  ToyPolicy policy(1);
  auto cfg = small_config();
  cfg.max_skipped_updates = 2;
  bool broken = false;
  auto prompts = [&](int64_t n, at::Generator& g) {
    auto v = prompts_of({"a", "b"}, n, g);
    if (broken) v[3] = "broken";
    return v;
  };
  Trainer trainer(policy, sampler(), RewardSum{Absolute{SometimesNaN{}}}, BatchWhitening{}, prompts, cfg);
  auto st = trainer.train_epoch();
  CHECK(st.skipped_updates == 0);
  CHECK(st.optimizer_steps == 2);
  broken = true;
  const auto before = snapshot(policy);
  st = trainer.train_epoch();
  CHECK(st.skipped_updates == 1);
  CHECK(st.optimizer_steps == 0);
  CHECK(st.skip_reason.find("reward term 'fragile' gave 2 non-finite scores of 16") != std::string::npos);
  CHECK(std::isfinite(st.reward_mean));  // the mean of the finite scores is still logged
  CHECK(identical(before, snapshot(policy)));
  trainer.train_epoch();
  CHECK(trainer.skipped_updates() == 2);
  CHECK_THROWS_WITH(trainer.train_epoch(), Catch::Contains("reward term 'fragile'") && Catch::Contains("max_skipped_updates = 2"));
  CHECK(identical(before, snapshot(policy)));
}

TEST_CASE("PerPromptStats state round-trips, and a resumed run with it matches an uninterrupted one", "[core][trainer][resume]") {
  PerPromptStats a(PerPromptStatsConfig{4, 2});
  a.advantages(torch::tensor({1.0, 2.0, 3.0, 5.0, 8.0}), {"x", "y", "x", "y", "z"});
  PerPromptStats b(PerPromptStatsConfig{4, 2});
  b.load_state(a.state(), "test");
  CHECK(b.buffers() == a.buffers());
  auto bad = a.state();
  bad["counts"] = torch::tensor({1, 1}, torch::kLong);
  CHECK_THROWS_WITH(b.load_state(bad, "ckpt.safetensors"), Catch::Contains("ckpt.safetensors") && Catch::Contains("inconsistent"));

  // Few prompts and a small min_count: per-prompt statistics drive the advantages from the second epoch on.
  auto prompts = [](int64_t n, at::Generator& g) { return prompts_of({"a", "b", "c"}, n, g); };
  auto cfg = small_config();
  using B = PerPromptStats;
  auto make = [&](ToyPolicy& p) {
    return Trainer(p, sampler(), RewardSum{Absolute{RegionBrightness{}}}, B(PerPromptStatsConfig{16, 4}), prompts, cfg);
  };
  ToyPolicy straight(1);
  auto t0 = make(straight);
  t0.train(3);

  ToyPolicy first(1);
  auto t1 = make(first);
  t1.train(1);
  const auto state = trainer_state(t1);
  CHECK(state.count("baseline.values"));
  ToyPolicy resumed(1);
  auto t2 = make(resumed);
  load_trainer_state(t2, state, "memory");
  t2.train(2);
  CHECK(identical(snapshot(straight), snapshot(resumed)));

  // Without the baseline's buffers the resumed run differs (so the check above can fail).
  auto no_baseline = state;
  for (auto it = no_baseline.begin(); it != no_baseline.end();)
    it = it->first.rfind("baseline.", 0) == 0 ? no_baseline.erase(it) : std::next(it);
  ToyPolicy lost(1);
  auto t3 = make(lost);
  CHECK_THROWS_WITH(load_trainer_state(t3, no_baseline, "old.safetensors"), Catch::Contains("old.safetensors") && Catch::Contains("baseline"));
  t3.baseline().clear();
  auto partial = no_baseline;
  for (auto& [k, v] : PerPromptStats(PerPromptStatsConfig{16, 4}).state()) partial["baseline." + k] = v;
  load_trainer_state(t3, partial, "memory");
  t3.train(2);
  CHECK_FALSE(identical(snapshot(straight), snapshot(lost)));
}

TEST_CASE("reward_curves: a panel per term with the anchor only where it was sampled, KL and clipping on their own axes", "[core][curves]") {
  std::vector<nlohmann::json> h;
  for (int e = 1; e <= 3; ++e)
    h.push_back({{"epoch", e}, {"reward/total", 0.1 * e}, {"train/approx_kl", 1e-4 * e}, {"train/clipfrac", 0.6},
                 {"reward/align/policy_score", -0.1}, {"reward/align/policy_score_se", 0.01},
                 {"reward/diag/policy_score", 0.5 + 0.1 * e}, {"reward/diag/policy_score_se", 0.02},
                 {"reward/diag/anchor_score", 0.5}, {"reward/diag/anchor_score_se", 0.02}});
  const auto p = cxrl::core::reward_curves(h);
  REQUIRE(p.size() == 5);  // align, diag, training reward, KL, clip fraction
  CHECK(p[0].series.size() == 1);  // align: never compared, no anchor curve
  REQUIRE(p[1].series.size() == 2);
  CHECK(p[1].series[0].y == std::vector<double>{0.6, 0.7, 0.8});
  CHECK(p[1].series[1].se == std::vector<double>{0.02, 0.02, 0.02});
  CHECK(p[3].series[0].y[2] == Approx(3e-4));
  CHECK(p[4].series[0].y == std::vector<double>{0.6, 0.6, 0.6});
}
