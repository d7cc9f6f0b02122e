// Must NOT compile: the policy lacks `set_adapters_enabled(bool)`, so Trainer's Policy checker fires
// "cxrl Policy: missing `void set_adapters_enabled(bool on)` ...; see docs/concepts/policy.md".
// With the member added this file compiles (verified), so it fails only because of the concept.
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>

#include <string>
#include <string_view>
#include <vector>

struct NoAdapterSwitchPolicy {
  torch::Tensor encode(const std::vector<std::string>& prompts) { return torch::zeros({(int64_t)prompts.size(), 1, 4}); }
  torch::Tensor predict(const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) { return x * w; }
  std::vector<int64_t> sample_shape() const { return {1, 4, 4}; }
  torch::Tensor decode(const torch::Tensor& x) { return x.clamp(0, 1); }
  std::vector<torch::Tensor> trainable_parameters() { return {w}; }
  // void set_adapters_enabled(bool on) {}  <- missing
  torch::Tensor w = torch::ones({1}, torch::requires_grad());
};

struct Mean {
  static constexpr std::string_view name = "mean";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.mean({1, 2, 3}); }
};

int main() {
  NoAdapterSwitchPolicy policy;
  cxrl::core::DdimSampler sampler(cxrl::diffusion::DDIMScheduler{}, {});
  cxrl::core::Trainer trainer(policy, sampler, cxrl::core::RewardSum{cxrl::core::Absolute{Mean{}}},
                              cxrl::core::NoBaseline{},
                              [](int64_t n, at::Generator&) { return std::vector<std::string>(n, "x"); });
  trainer.train(1);
  return 0;
}
