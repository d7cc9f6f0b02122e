// Complete example of a cxrl::core::Baseline (docs/concepts/baseline.md): centred ranks in [-1, 1],
// robust to reward outliers. Compiled (and checked) by tests/core/test_core_units.cpp.
#include <torch/torch.h>

#include <string>
#include <vector>

#include <cxrl/core/concepts.hpp>

namespace cxrl_examples {

struct RankBaseline {
  // rewards [B] → advantages [B]: rank 0 (lowest) → -1, rank B-1 (highest) → +1. Ties keep batch order.
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts) {
    const auto b = rewards.size(0);
    if (b < 2) return torch::zeros_like(rewards);
    auto order = std::get<1>(rewards.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
    auto ranks = torch::empty_like(order);
    ranks.index_put_({order}, torch::arange(b, order.options()));
    return ranks.to(rewards.scalar_type()) * (2.0 / static_cast<double>(b - 1)) - 1.0;
  }
};

static_assert(cxrl::core::Baseline<RankBaseline>);

}  // namespace cxrl_examples
