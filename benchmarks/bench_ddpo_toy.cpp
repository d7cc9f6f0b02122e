// One toy DDPO epoch split into sampling / reward / advantage / training time, images per second, and the
// overhead of the RL machinery relative to the bare denoiser cost measured in the same run:
//   sampling_overhead = sampling time / (T no-grad forward passes of the same batch)
//   training_overhead = training time / (T forward+backward passes of the same batch)
// Prints numbers and one JSON line; asserts nothing.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <cxrl/core/baselines.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>

#include "../docs/examples/region_brightness_reward.cpp"
#include "../docs/examples/toy_policy.cpp"

using namespace cxrl::core;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t size = argc > 1 ? std::stoll(argv[1]) : 32;  // image side
  const int64_t steps = 10, batch = 16, num_batches = 2, epochs = 3;
  cxrl_examples::ToyPolicy policy(1, size, 4, 32);

  cxrl::diffusion::DDIMSchedulerConfig sched;
  sched.beta_schedule = cxrl::diffusion::BetaSchedule::scaled_linear;
  sched.beta_start = 0.00085;
  sched.beta_end = 0.012;
  sched.steps_offset = 1;
  sched.set_alpha_to_one = false;
  sched.clip_sample = false;
  DdimSamplerConfig scfg;
  scfg.num_steps = steps;
  scfg.guidance_scale = 1.0;

  TrainerConfig cfg;
  cfg.num_batches = num_batches;
  cfg.batch_size = batch;
  cfg.train_batch_size = batch;
  cfg.gradient_accumulation_steps = num_batches;
  cfg.learning_rate = 1e-3;
  auto prompts = [](int64_t n, at::Generator&) { return std::vector<std::string>(static_cast<size_t>(n), "bright"); };
  Trainer trainer(policy, DdimSampler(cxrl::diffusion::DDIMScheduler{sched}, scfg),
                  RewardSum{Absolute{cxrl_examples::RegionBrightness{size / 2, size / 2}}}, BatchWhitening{}, prompts, cfg);

  trainer.train_epoch();  // warm-up
  EpochStats sum;
  for (int64_t e = 0; e < epochs; ++e) {
    auto st = trainer.train_epoch();
    sum.sampling_seconds += st.sampling_seconds / epochs;
    sum.reward_seconds += st.reward_seconds / epochs;
    sum.advantage_seconds += st.advantage_seconds / epochs;
    sum.training_seconds += st.training_seconds / epochs;
    sum.images_per_second += st.images_per_second / epochs;
  }

  // Baseline: the bare denoiser on the same number of images and steps.
  const int64_t n = batch * num_batches;
  auto x = torch::randn({batch, 1, size, size});
  auto c = policy.encode(std::vector<std::string>(static_cast<size_t>(batch), "bright"));
  auto t = torch::full({batch}, 500, torch::kLong);
  double fwd = 0, fwd_bwd = 0;
  for (int rep = 0; rep < 2; ++rep) {  // first repetition warms up
    auto t0 = std::chrono::steady_clock::now();
    {
      torch::NoGradGuard ng;
      for (int64_t i = 0; i < steps * num_batches; ++i) policy.predict(x, t, c);
    }
    fwd = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps * num_batches; ++i) policy.predict(x, t, c).square().mean().backward();
    fwd_bwd = seconds_since(t0);
  }
  for (auto& p : policy.trainable_parameters()) p.mutable_grad() = torch::Tensor();

  const double epoch_s = sum.sampling_seconds + sum.reward_seconds + sum.advantage_seconds + sum.training_seconds;
  std::printf("toy DDPO epoch: %lld images %lldx%lld, %lld DDIM steps, torch threads %d\n", static_cast<long long>(n),
              static_cast<long long>(size), static_cast<long long>(size), static_cast<long long>(steps),
              torch::get_num_threads());
  std::printf("  sampling   %.4f s   (bare forward passes %.4f s, overhead x%.2f)\n", sum.sampling_seconds, fwd,
              sum.sampling_seconds / fwd);
  std::printf("  reward     %.6f s\n", sum.reward_seconds);
  std::printf("  advantage  %.6f s\n", sum.advantage_seconds);
  std::printf("  training   %.4f s   (bare forward+backward %.4f s, overhead x%.2f)\n", sum.training_seconds, fwd_bwd,
              sum.training_seconds / fwd_bwd);
  std::printf("  epoch      %.4f s   %.1f images/s\n", epoch_s, sum.images_per_second);
  std::printf(
      "{\"bench\":\"ddpo_toy\",\"images\":%lld,\"size\":%lld,\"steps\":%lld,\"sampling_s\":%.6f,\"reward_s\":%.6f,"
      "\"advantage_s\":%.6f,\"training_s\":%.6f,\"images_per_s\":%.3f,\"bare_forward_s\":%.6f,"
      "\"bare_forward_backward_s\":%.6f,\"sampling_overhead\":%.4f,\"training_overhead\":%.4f}\n",
      static_cast<long long>(n), static_cast<long long>(size), static_cast<long long>(steps), sum.sampling_seconds,
      sum.reward_seconds, sum.advantage_seconds, sum.training_seconds, sum.images_per_second, fwd, fwd_bwd,
      sum.sampling_seconds / fwd, sum.training_seconds / fwd_bwd);
  return 0;
}
