// DDPO end to end on a toy policy: the sampler's log-probs, the anchor pass, learning (absolute and
// comparative), learning-rate-0 invariance, determinism and callbacks. Also compiles the docs examples.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <cxrl/core/baselines.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/diffusion/ddim.hpp>

#include "../../docs/examples/counting_sampler.cpp"
#include "../../docs/examples/region_brightness_reward.cpp"
#include "../../docs/examples/toy_policy.cpp"

using namespace cxrl::core;
using cxrl_examples::CountingSampler;
using cxrl_examples::RegionBrightness;
using cxrl_examples::ToyPolicy;

namespace {

DdimSampler make_sampler(double guidance_scale, int64_t steps = 10) {
  DdimSamplerConfig cfg;
  cfg.num_steps = steps;
  cfg.eta = 1.0;
  cfg.guidance_scale = guidance_scale;
  cxrl::diffusion::DDIMSchedulerConfig sched;
  sched.steps_offset = 1;  // as Stable Diffusion: the last step (t = 1) keeps a non-zero variance
  // Stable Diffusion's schedule. (With the linear 1e-4..0.02 schedule the step into t = 1 multiplies the
  // score-function noise by ~23 instead of ~8, and 32-sample DDPO gradients point the wrong way too often.)
  sched.beta_schedule = cxrl::diffusion::BetaSchedule::scaled_linear;
  sched.beta_start = 0.00085;
  sched.beta_end = 0.012;
  sched.set_alpha_to_one = false;
  sched.clip_sample = false;
  return DdimSampler(cxrl::diffusion::DDIMScheduler{sched}, cfg);
}

std::vector<torch::Tensor> snapshot(ToyPolicy& p) {
  std::vector<torch::Tensor> out;
  for (auto& t : p.trainable_parameters()) out.push_back(t.detach().clone());
  return out;
}

bool bit_identical(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

// Two prompts, drawn uniformly from the trainer's prompt generator.
std::vector<std::string> two_prompts(int64_t n, at::Generator& gen) {
  auto pick = torch::randint(2, {n}, gen, torch::kLong);
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(pick[i].item<int64_t>() == 0 ? "bright corner" : "light corner");
  return out;
}

// Mean top-left brightness of n fresh samples (fixed evaluation noise), and its standard error.
std::pair<double, double> evaluate(ToyPolicy& policy, DdimSampler& sampler, int64_t n = 256) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
  std::vector<std::string> prompts(static_cast<size_t>(n), "bright corner");
  auto traj = sampler.sample(policy, prompts, gen);
  auto r = RegionBrightness{}.score(traj.images, prompts).to(torch::kDouble);
  return {r.mean().item<double>(), r.std().item<double>() / std::sqrt(static_cast<double>(n))};
}

void perturb_adapter(ToyPolicy& p, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& t : p.trainable_parameters()) t.add_(torch::randn(t.sizes(), gen) * 0.1);
}

TrainerConfig learning_config() {
  TrainerConfig cfg;
  cfg.num_batches = 4;
  cfg.batch_size = 16;
  cfg.train_batch_size = 8;
  cfg.gradient_accumulation_steps = 8;  // one AdamW step per epoch over all 64 trajectories × 10 steps
  cfg.learning_rate = 5e-3;
  cfg.seed = 7;
  return cfg;
}

struct RewardHistory {
  std::vector<double> rewards;
  bool on_epoch_end(const auto&, const EpochStats& st) {
    rewards.push_back(st.reward_mean);
    return false;
  }
};

// Learning tests: stop once the policy's mean score passes kTarget (the reward saturates at 1, where whitened
// advantages are pure noise), at most kMaxEpochs; require a gain of kMinGain on fresh evaluation samples.
constexpr int64_t kMaxEpochs = 40;
constexpr double kTarget = 0.9;
constexpr double kMinGain = 0.25;

// Ensmallen-style callbacks: returning true stops training.
struct StopAtScore {
  double target;
  template <class T>
  bool on_epoch_end(const T&, const EpochStats& st) { return st.components.at(0).score_mean > target; }
};
struct StopAfter {
  int64_t n;
  template <class T>
  bool on_epoch_end(const T& t, const EpochStats&) { return t.epoch() >= n; }
};
struct StopAtBegin {
  template <class T>
  bool on_epoch_begin(const T&, const EpochStats&) { return true; }
};

}  // namespace

TEST_CASE("DdimSampler: recorded log-probs are reproduced with gradient by log_prob", "[core][sampler]") {
  ToyPolicy policy(1);
  perturb_adapter(policy, 2);
  for (double w : {1.0, 3.0}) {
    auto sampler = make_sampler(w, 6);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    auto traj = sampler.sample(policy, {"a", "b", "c"}, gen);
    REQUIRE(traj.latents.sizes() == torch::IntArrayRef({3, 7, 1, 8, 8}));
    REQUIRE(traj.log_probs.sizes() == torch::IntArrayRef({3, 6}));
    CHECK(traj.has_guidance() == (w != 1.0));
    CHECK(traj.images.min().item<float>() >= 0.0f);
    CHECK(traj.images.max().item<float>() <= 1.0f);
    // Per-sample step indices: sample i at step (i + k) mod T.
    for (int64_t k = 0; k < 6; ++k) {
      auto steps = (torch::arange(3, torch::kLong) + k).remainder(6);
      auto lp = sampler.log_prob(policy, traj, steps);
      auto recorded = traj.log_probs.gather(1, steps.unsqueeze(1)).squeeze(1);
      INFO("w=" << w << " k=" << k << " steps=" << steps << " lp=" << lp << " rec=" << recorded);
      CHECK(torch::allclose(lp.detach(), recorded, 1e-5, 1e-5));
      CHECK(lp.requires_grad());
    }
    // The gradient reaches the adapter.
    auto params = policy.trainable_parameters();
    sampler.log_prob(policy, traj, int64_t{2}).sum().backward();
    double g = 0;
    for (auto& p : params) g += p.grad().abs().sum().item<double>(), p.mutable_grad() = torch::Tensor();
    CHECK(g > 0);
  }
  auto sampler = make_sampler(1.0, 4);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto traj = sampler.sample(policy, {"a"}, gen);
  CHECK_THROWS_AS(sampler.log_prob(policy, traj, int64_t{4}), std::out_of_range);
  CHECK_THROWS_AS(sampler.log_prob(policy, traj, torch::zeros({2}, torch::kLong)), std::invalid_argument);
}

TEST_CASE("DdimSampler: the anchor runs with adapters off from the trajectory's own x_T", "[core][sampler]") {
  ToyPolicy policy(1);
  perturb_adapter(policy, 5);
  auto sampler = make_sampler(2.0, 5);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto traj = sampler.sample(policy, {"a", "b"}, gen);

  auto run_anchor = [&](Trajectory t) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(99);
    sampler.sample_anchor(policy, t, g);
    return t;
  };
  auto a = run_anchor(traj);
  CHECK(policy.adapters_enabled());  // restored by the RAII guard
  REQUIRE(a.has_anchor());
  CHECK(a.anchor_images.sizes() == traj.images.sizes());
  // Depends on x_T only (not on the policy's later latents) ...
  auto later_changed = traj;
  later_changed.latents = traj.latents.clone();
  later_changed.latents.narrow(1, 1, 5).fill_(0.25);
  CHECK(torch::equal(run_anchor(later_changed).anchor_latents, a.anchor_latents));
  // ... and is the adapter-free policy: the same with the adapters already off (and left off afterwards).
  policy.set_adapters_enabled(false);
  auto off = run_anchor(traj);
  CHECK_FALSE(policy.adapters_enabled());
  policy.set_adapters_enabled(true);
  CHECK(torch::equal(off.anchor_latents, a.anchor_latents));
  // A different x_T gives a different anchor sample.
  auto other_start = traj;
  other_start.latents = traj.latents.clone();
  other_start.latents.select(1, 0).mul_(-1.0);
  CHECK_FALSE(torch::equal(run_anchor(other_start).anchor_latents, a.anchor_latents));
  // The adapters matter: the policy's own final sample differs from the anchor's.
  CHECK_FALSE(torch::allclose(a.anchor_latents, traj.latents.select(1, 5)));
}

// DPOK's penalty in closed form: the DDIM mean is linear in ε, μ = √ᾱ_prev·(x_t − √(1−ᾱ_t)·ε)/√ᾱ_t + √(1−ᾱ_prev−σ²)·ε,
// so μ_θ − μ_anchor = c_t·(ε_θ − ε_anchor) and KL = c_t²·mean((ε_θ − ε_anchor)²) / (2σ_t²), with the guided ε of
// each model and σ_t² = η²(1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev) (DDIM Eq. 16; previous timestep clamped to 0 as in DDPO).
TEST_CASE("DdimSampler: KL to the anchor matches the closed form, is 0 for the anchor, and its gradient pulls toward it",
          "[core][sampler][kl]") {
  ToyPolicy policy(1);
  perturb_adapter(policy, 4);
  const double w = 3.0;
  auto sampler = make_sampler(w, 5);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  const std::vector<std::string> prompts{"a", "b", "c"};
  auto traj = sampler.sample(policy, prompts, gen);
  const auto steps = torch::tensor({0, 2, 4}, torch::kLong);
  auto r = sampler.log_prob_and_anchor_kl(policy, traj, steps);
  CHECK(torch::allclose(r.log_prob.detach(), sampler.log_prob(policy, traj, steps).detach(), 1e-6, 1e-6));
  REQUIRE(r.anchor_kl.sizes() == torch::IntArrayRef({3}));

  auto guided_eps = [&](const torch::Tensor& x, const torch::Tensor& t) {
    torch::NoGradGuard ng;
    auto c = policy.encode(prompts), u = policy.encode({"", "", ""});
    auto e = policy.predict(torch::cat({x, x}), torch::cat({t, t}), torch::cat({u, c}));
    auto eu = e.narrow(0, 0, 3), ec = e.narrow(0, 3, 3);
    return eu + w * (ec - eu);
  };
  const auto& ac = sampler.scheduler().alphas_cumprod().to(torch::kDouble);
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t k = steps[i].item<int64_t>();
    auto x = traj.latents.select(1, k), t = traj.timesteps.select(1, k);
    auto e_policy = guided_eps(x, t);
    policy.set_adapters_enabled(false);
    auto e_anchor = guided_eps(x, t);
    policy.set_adapters_enabled(true);
    const int64_t ti = t[i].item<int64_t>(), prev = std::max<int64_t>(ti - 1000 / 5, 0);
    const double a_t = ac[ti].item<double>(), a_prev = ac[prev].item<double>();
    const double var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev);  // η = 1
    const double c = -std::sqrt(a_prev) * std::sqrt(1 - a_t) / std::sqrt(a_t) + std::sqrt(1 - a_prev - var);
    const double want = c * c * (e_policy[i] - e_anchor[i]).to(torch::kDouble).pow(2).mean().item<double>() / (2 * var);
    INFO("step " << k << " t " << ti);
    CHECK(want > 0);
    CHECK(r.anchor_kl[i].item<double>() == Approx(want).epsilon(1e-4));
  }

  // Its gradient moves the adapter toward the anchor: a small step along −grad lowers the KL.
  auto params = policy.trainable_parameters();
  r.anchor_kl.mean().backward();
  {
    torch::NoGradGuard ng;
    for (auto& p : params) p.sub_(1e-2 * p.grad()), p.mutable_grad() = torch::Tensor();
  }
  CHECK(sampler.log_prob_and_anchor_kl(policy, traj, steps).anchor_kl.mean().item<double>() <
        r.anchor_kl.mean().item<double>());
  // The anchor against itself: 0 exactly.
  policy.set_adapters_enabled(false);
  CHECK(sampler.log_prob_and_anchor_kl(policy, traj, steps).anchor_kl.abs().max().item<double>() == 0.0);
  policy.set_adapters_enabled(true);
}

namespace {
// A reward that ignores the image: whitened advantages are 0, so only the KL penalty moves the adapter.
struct Constant {
  static constexpr std::string_view name = "constant";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return torch::ones({images.size(0)}); }
};
}  // namespace

TEST_CASE("Trainer: kl_weight pulls a drifted policy back to the anchor and logs the KL", "[core][trainer][kl]") {
  auto run = [&](double beta) {
    ToyPolicy policy(1);
    perturb_adapter(policy, 6);
    auto cfg = learning_config();
    cfg.gradient_accumulation_steps = 1;  // 8 AdamW steps per epoch
    cfg.kl_weight = beta;
    Trainer trainer(policy, make_sampler(1.0), RewardSum{Absolute{Constant{}}}, BatchWhitening{}, two_prompts, cfg);
    std::vector<double> kl;
    for (const auto& st : trainer.train(6)) kl.push_back(st.anchor_kl);
    return kl;
  };
  const auto pulled = run(1.0);
  INFO("KL to the anchor per epoch: " << pulled.front() << " … " << pulled.back());
  REQUIRE(pulled.size() == 6);
  CHECK(pulled.front() > 0);
  CHECK(pulled.back() < 0.25 * pulled.front());
  CHECK(std::isnan(run(0.0).back()));  // not computed without the penalty
  TrainerConfig bad = learning_config();
  bad.kl_weight = -1;
  ToyPolicy policy(1);
  CHECK_THROWS_WITH(Trainer(policy, make_sampler(1.0), RewardSum{Absolute{Constant{}}}, BatchWhitening{}, two_prompts, bad),
                    Catch::Contains("kl_weight"));
}

TEST_CASE("DDPO learns: absolute reward with per-prompt stats (ddpo-pytorch defaults otherwise)", "[core][trainer][learning]") {
  ToyPolicy policy(1);
  auto eval_sampler = make_sampler(1.0);
  auto [before, se0] = evaluate(policy, eval_sampler);
  auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(policy, make_sampler(1.0), RewardSum{Absolute{RegionBrightness{}}}, PerPromptStats{}, two_prompts,
                  learning_config());
  RewardHistory hist;
  std::ostringstream log;
  auto stats = trainer.train(kMaxEpochs, hist, PrintProgress{&log}, StopAtScore{kTarget});
  auto [after, se1] = evaluate(policy, eval_sampler);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[learning/absolute] top-left brightness " << before << " ± " << se0 << " -> " << after << " ± " << se1
            << " in " << stats.size() << " epochs, " << secs << " s\n";
  if (std::getenv("CXRL_VERBOSE")) std::cout << log.str();
  CHECK(hist.rewards.size() == stats.size());
  CHECK(log.str().find("epoch " + std::to_string(stats.size() - 1) + " reward") != std::string::npos);
  // Well above the estimate's noise (standard errors < 0.01): a clear gain.
  CHECK(after - before > kMinGain);
  CHECK(after - before > 10 * (se0 + se1));
  CHECK(stats.back().optimizer_steps == 1);
  CHECK(stats.back().components.at(0).name == "brightness");
  CHECK(stats.back().sampling_seconds > 0);
}

TEST_CASE("DDPO learns against the anchor: comparative reward, CFG on, custom sampler", "[core][trainer][learning]") {
  ToyPolicy policy(1);
  auto eval_sampler = make_sampler(2.0);
  auto [before, se0] = evaluate(policy, eval_sampler);
  auto t0 = std::chrono::steady_clock::now();
  using Rewards = RewardSum<Comparative<RegionBrightness>>;
  static_assert(Rewards::needs_anchor);
  Trainer trainer(policy, CountingSampler(make_sampler(2.0)), Rewards{Comparative<RegionBrightness>{{}, 1.0}},
                  BatchWhitening{}, two_prompts, learning_config());
  static_assert(decltype(trainer)::needs_anchor);
  auto stats = trainer.train(kMaxEpochs, StopAtScore{kTarget});
  auto [after, se1] = evaluate(policy, eval_sampler);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[learning/comparative] top-left brightness " << before << " ± " << se0 << " -> " << after << " ± " << se1
            << " in " << stats.size() << " epochs, " << secs << " s; last comparative reward " << stats.back().reward_mean << "\n";
  CHECK(after - before > kMinGain);
  CHECK(after - before > 10 * (se0 + se1));
  // The anchor is untouched (adapters off = base model): its score stays at the start level ...
  CHECK(stats.back().components.at(0).anchor_score_mean ==
        Approx(stats.front().components.at(0).anchor_score_mean).margin(0.1));
  CHECK(stats.back().components.at(0).raw_mean > 0.1);  // ... and the policy now beats it.
  // Every epoch: 64 samples × 10 steps for the policy and as many for the anchor.
  CHECK(trainer.sampler().sampled_steps() == 2 * static_cast<int64_t>(stats.size()) * 64 * 10);
}

TEST_CASE("DDPO learns with the comparative-anchor baseline chained with whitening", "[core][trainer][learning]") {
  ToyPolicy policy(1);
  auto eval_sampler = make_sampler(1.0);
  auto [before, se0] = evaluate(policy, eval_sampler);
  Trainer trainer(policy, make_sampler(1.0), RewardSum{Absolute{RegionBrightness{}}},
                  Chain<ComparativeAnchor, BatchWhitening>{}, two_prompts, learning_config());
  static_assert(decltype(trainer)::needs_anchor);
  auto stats = trainer.train(kMaxEpochs, StopAtScore{kTarget});
  auto [after, se1] = evaluate(policy, eval_sampler);
  std::cout << "[learning/anchor-baseline] top-left brightness " << before << " -> " << after << " in " << stats.size()
            << " epochs\n";
  CHECK(after - before > kMinGain);
  CHECK(after - before > 10 * (se0 + se1));
  CHECK_FALSE(std::isnan(stats.back().anchor_reward_mean));
}

TEST_CASE("DDPO with learning rate 0 leaves the parameters bit-identical", "[core][trainer]") {
  ToyPolicy policy(1);
  auto before = snapshot(policy);
  auto cfg = learning_config();
  cfg.learning_rate = 0.0;
  cfg.gradient_accumulation_steps = 1;  // several optimizer steps per epoch
  Trainer trainer(policy, make_sampler(2.0, 5), RewardSum{Absolute{RegionBrightness{}}}, BatchWhitening{}, two_prompts, cfg);
  auto stats = trainer.train(2);
  CHECK(stats.back().optimizer_steps == 8);
  CHECK(stats.back().grad_norm > 0);  // there were gradients, they just did not move anything
  CHECK(bit_identical(before, snapshot(policy)));
}

TEST_CASE("DDPO is deterministic for a seed, RNG state round-trips, callbacks stop training", "[core][trainer]") {
  auto run = [](uint64_t seed, int64_t epochs) {
    ToyPolicy policy(1);
    auto cfg = learning_config();
    cfg.seed = seed;
    cfg.num_inner_epochs = 2;
    cfg.timestep_fraction = 0.5;
    Trainer trainer(policy, make_sampler(1.0, 6), RewardSum{Absolute{RegionBrightness{}}}, PerPromptStats{}, two_prompts, cfg);
    trainer.train(epochs);
    return snapshot(policy);
  };
  auto a = run(3, 2), b = run(3, 2), c = run(4, 2);
  CHECK(bit_identical(a, b));
  CHECK_FALSE(bit_identical(a, c));

  ToyPolicy policy(1);
  Trainer trainer(policy, make_sampler(1.0, 4), RewardSum{Absolute{RegionBrightness{}}}, NoBaseline{}, two_prompts,
                  learning_config());
  auto saved = trainer.rng_state();
  trainer.train(1);
  auto after_one = trainer.rng_state();
  CHECK_FALSE(torch::equal(saved.sample, after_one.sample));
  trainer.set_rng_state(saved);
  CHECK(torch::equal(trainer.rng_state().sample, saved.sample));
  CHECK(torch::equal(trainer.rng_state().shuffle, saved.shuffle));

  trainer.set_epoch(0);
  auto ran = trainer.train(10, StopAfter{2});
  CHECK(ran.size() == 2);
  CHECK(trainer.stopped());
  CHECK(trainer.train(10, StopAtBegin{}).empty());
}

TEST_CASE("Trainer rejects inconsistent configurations", "[core][trainer]") {
  ToyPolicy policy(1);
  auto make = [&](TrainerConfig cfg) {
    return Trainer(policy, make_sampler(1.0, 2), RewardSum{Absolute{RegionBrightness{}}}, NoBaseline{}, two_prompts, cfg);
  };
  auto cfg = learning_config();
  cfg.train_batch_size = 5;
  CHECK_THROWS_WITH(make(cfg), Catch::Contains("train_batch_size"));
  cfg = learning_config();
  cfg.gradient_accumulation_steps = 3;
  CHECK_THROWS_WITH(make(cfg), Catch::Contains("gradient_accumulation_steps"));
  cfg = learning_config();
  cfg.timestep_fraction = 0.0;
  CHECK_THROWS_WITH(make(cfg), Catch::Contains("timestep_fraction"));
  CHECK_THROWS_AS(make_sampler(1.0, 0), std::invalid_argument);
  CHECK_THROWS_WITH(DdimSampler(cxrl::diffusion::DDIMScheduler{}, DdimSamplerConfig{10, 1.0, 1.0, true}),
                    Catch::Contains("steps_offset"));  // last timestep 0: no log-prob
  cxrl::diffusion::DDIMSchedulerConfig sched;
  sched.steps_offset = 1;
  CHECK_THROWS_WITH(DdimSampler(cxrl::diffusion::DDIMScheduler{sched}, DdimSamplerConfig{10, 0.0, 1.0, true}),
                    Catch::Contains("eta"));
}

// The DDPO-IS gradient at ratio 1 (= REINFORCE with whitened rewards) from 1024 trajectories, checked against
// the reward itself: moving the adapter by ±0.05 along -grad changes the mean reward of 1024 evaluation samples
// (common random numbers, so the difference is not noise) upward / downward. A sign error fails this.
TEST_CASE("DDPO gradient points uphill: a small step along -grad(loss) raises the expected reward", "[core][trainer][gradient]") {
  for (uint64_t seed : {1, 2, 3}) {
    ToyPolicy policy(1);
    auto sampler = make_sampler(1.0);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    const int64_t n = 1024;
    std::vector<std::string> prompts(n, "bright corner");
    auto traj = sampler.sample(policy, prompts, gen);
    auto r = RegionBrightness{}.score(traj.images, prompts);
    auto adv = BatchWhitening{}.advantages(r, prompts);
    auto params = policy.trainable_parameters();
    for (int64_t j = 0; j < traj.num_steps(); ++j) {
      auto lp = sampler.log_prob(policy, traj, j);
      auto pl = ppo_clip_loss(lp, traj.log_probs.select(1, j), adv);
      (pl.loss / traj.num_steps()).backward();
    }
    std::vector<torch::Tensor> g;
    double norm2 = 0;
    for (auto& p : params) g.push_back(p.grad().clone()), norm2 += p.grad().pow(2).sum().item<double>();
    auto shifted = [&](double eta) {
      torch::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) params[i].sub_(g[i] * (eta / std::sqrt(norm2)));
      auto [m, se] = evaluate(policy, sampler, 1024);
      for (size_t i = 0; i < params.size(); ++i) params[i].add_(g[i] * (eta / std::sqrt(norm2)));
      return m;
    };
    const double r0 = shifted(0.0), rp = shifted(0.05), rm = shifted(-0.05);
    std::cout << "[gradient] seed " << seed << " |g| " << std::sqrt(norm2) << " r(-) " << rm << " r(0) " << r0 << " r(+) " << rp << "\n";
    CHECK(rp > r0);
    CHECK(rm < r0);
  }
}

// With one optimizer step per epoch every ratio is 1 when its gradient is taken, and ∇ratio = ∇log p there,
// so DDPO-IS and DDPO-SF (REINFORCE) must move the parameters identically (up to float rounding).
TEST_CASE("DDPO-IS equals DDPO-SF when each epoch is one optimizer step", "[core][trainer]") {
  auto run = [](PolicyGradient estimator) {
    ToyPolicy policy(1);
    auto cfg = learning_config();
    cfg.estimator = estimator;
    Trainer trainer(policy, make_sampler(1.0, 4), RewardSum{Absolute{RegionBrightness{}}}, BatchWhitening{}, two_prompts, cfg);
    auto stats = trainer.train(2);
    CHECK(stats.back().clipfrac == 0.0);
    return snapshot(policy);
  };
  ToyPolicy fresh(1);
  auto start = snapshot(fresh);
  auto is = run(PolicyGradient::importance_sampling), sf = run(PolicyGradient::score_function);
  CHECK_FALSE(bit_identical(is, start));
  for (size_t i = 0; i < is.size(); ++i) CHECK(torch::allclose(is[i], sf[i], 1e-4, 1e-6));
}
