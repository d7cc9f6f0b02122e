// Complete example of a cxrl::core::Sampler (docs/concepts/sampler.md): wraps DdimSampler and counts
// the denoiser evaluations it causes (e.g. to budget compute). Compiled by tests/core/test_ddpo_trainer.cpp.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include <cxrl/core/concepts.hpp>
#include <cxrl/core/ddim_sampler.hpp>

namespace cxrl_examples {

class CountingSampler {
 public:
  explicit CountingSampler(cxrl::core::DdimSampler inner) : inner_(std::move(inner)) {}

  // Required: a batch of trajectories for the prompts, all randomness from gen.
  template <class P>
  cxrl::core::Trajectory sample(P& policy, const std::vector<std::string>& prompts, at::Generator& gen) {
    sampled_ += static_cast<int64_t>(prompts.size()) * inner_.num_steps();
    return inner_.sample(policy, prompts, gen);
  }
  // Required: log p(x_{t-1} | x_t) [B] with gradient at per-sample step indices.
  template <class P>
  torch::Tensor log_prob(P& policy, const cxrl::core::Trajectory& traj, const torch::Tensor& steps) {
    rescored_ += traj.batch_size();
    return inner_.log_prob(policy, traj, steps);
  }
  // Optional: the anchor's samples from the same x_T (needed by comparative rewards / anchor baselines).
  template <class P>
  void sample_anchor(P& policy, cxrl::core::Trajectory& traj, at::Generator& gen) {
    sampled_ += traj.batch_size() * inner_.num_steps();
    inner_.sample_anchor(policy, traj, gen);
  }

  int64_t sampled_steps() const { return sampled_; }
  int64_t rescored_steps() const { return rescored_; }

 private:
  cxrl::core::DdimSampler inner_;
  int64_t sampled_ = 0, rescored_ = 0;
};

}  // namespace cxrl_examples
