/**
 * @file baselines.hpp
 * @brief Baselines that turn rewards into advantages: none, batch whitening, DDPO's per-prompt
 *        statistics, the RLCF comparative anchor, and composition of two baselines.
 */
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cxrl/core/concepts.hpp"

namespace cxrl::core {

namespace detail {
inline void check_rewards(const torch::Tensor& rewards, const std::vector<std::string>& prompts, const char* who) {
  if (!rewards.defined() || rewards.dim() != 1)
    throw std::invalid_argument(std::string(who) + ": rewards must be a 1-d tensor [B]");
  if (static_cast<size_t>(rewards.size(0)) != prompts.size())
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(rewards.size(0)) + " rewards but " +
                                std::to_string(prompts.size()) + " prompts");
}
}  // namespace detail

/// @brief Advantages are the rewards themselves.
struct NoBaseline {
  /// @brief Returns `rewards` unchanged. @param rewards [B]. @param prompts B prompts.
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts) {
    detail::check_rewards(rewards, prompts, "cxrl::core::NoBaseline");
    return rewards;
  }
};

/// @brief (r − mean) / (std + 1e-8) over the batch, std with ddof 0 (ddpo-pytorch without stat tracking).
struct BatchWhitening {
  double eps = 1e-8;  ///< added to the standard deviation.
  /// @brief Whitened rewards. @param rewards [B]. @param prompts B prompts.
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts) {
    detail::check_rewards(rewards, prompts, "cxrl::core::BatchWhitening");
    auto r = rewards.to(torch::kDouble);
    auto adv = (r - r.mean()) / (r.std(/*unbiased=*/false) + eps);
    return adv.to(rewards.scalar_type());
  }
};

/// @brief Configuration of PerPromptStats (ddpo-pytorch `config.per_prompt_stat_tracking`).
struct PerPromptStatsConfig {
  size_t buffer_size = 16;  ///< rewards kept per prompt (deque maxlen).
  size_t min_count = 16;    ///< below this many, the whole batch's mean/std are used.
};

/**
 * @brief ddpo-pytorch `PerPromptStatTracker`: per-prompt running mean/std over the last buffer_size rewards.
 *
 * For each distinct prompt (in sorted order, as `np.unique`): the buffer is extended with this batch's
 * rewards of that prompt first; if it then holds fewer than min_count rewards the whole batch's mean and
 * std are used, else the buffer's. Std has ddof 0 and +1e-6. Statistics are computed in double.
 */
class PerPromptStats {
 public:
  /// @brief Per-prompt summary for logging.
  struct Stat {
    double mean;   ///< buffer mean
    double std;    ///< buffer std (ddof 0)
    size_t count;  ///< buffer length
  };

  /// @brief A tracker. @param cfg buffer size and minimum count.
  explicit PerPromptStats(PerPromptStatsConfig cfg = {}) : cfg_(cfg) {
    if (cfg_.buffer_size == 0) throw std::invalid_argument("cxrl::core::PerPromptStats: buffer_size must be > 0");
  }

  /// @brief Advantages for one batch; updates the buffers. @param rewards [B]. @param prompts B prompts.
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts) {
    detail::check_rewards(rewards, prompts, "cxrl::core::PerPromptStats");
    auto r = rewards.detach().to(torch::kCPU, torch::kDouble).contiguous();
    const double* rp = r.data_ptr<double>();
    const size_t n = prompts.size();
    std::vector<double> all(rp, rp + n);
    const auto [batch_mean, batch_std] = mean_std(all.begin(), all.end());

    std::map<std::string, std::vector<size_t>> groups;  // sorted keys, like np.unique
    for (size_t i = 0; i < n; ++i) groups[prompts[i]].push_back(i);

    std::vector<double> adv(n);
    for (const auto& [prompt, idx] : groups) {
      auto& buf = buffers_[prompt];
      for (size_t i : idx) {
        buf.push_back(rp[i]);
        if (buf.size() > cfg_.buffer_size) buf.pop_front();
      }
      double mean = batch_mean, std = batch_std;
      if (buf.size() >= cfg_.min_count) std::tie(mean, std) = mean_std(buf.begin(), buf.end());
      for (size_t i : idx) adv[i] = (rp[i] - mean) / (std + 1e-6);
    }
    return torch::tensor(adv, torch::kDouble).to(rewards.device(), rewards.scalar_type());
  }

  /// @brief Mean/std/count of every prompt's buffer (ddpo-pytorch `get_stats`).
  std::map<std::string, Stat> stats() const {
    std::map<std::string, Stat> out;
    for (const auto& [k, buf] : buffers_) {
      auto [m, s] = mean_std(buf.begin(), buf.end());
      out[k] = Stat{m, s, buf.size()};
    }
    return out;
  }

  /// @brief Forgets every buffer.
  void clear() { buffers_.clear(); }
  /// @brief The per-prompt reward buffers, oldest first (to checkpoint the tracker).
  const std::map<std::string, std::deque<double>>& buffers() const { return buffers_; }
  /**
   * @brief Restores buffers saved with buffers().
   * @param buffers per-prompt rewards, oldest first; each is truncated to the newest buffer_size values.
   */
  void set_buffers(std::map<std::string, std::deque<double>> buffers) {
    for (auto& [k, b] : buffers)
      while (b.size() > cfg_.buffer_size) b.pop_front();
    buffers_ = std::move(buffers);
  }
  /// @brief The configuration.
  const PerPromptStatsConfig& config() const { return cfg_; }

  /**
   * @brief The buffers as tensors, for checkpoints (core/trainer_state.hpp): `prompt_bytes` (uint8, the prompts
   *        concatenated in sorted order), `prompt_lengths` and `counts` (int64, one per prompt) and `values`
   *        (float64, every buffer oldest first, one after the other).
   */
  std::map<std::string, torch::Tensor> state() const {
    std::vector<uint8_t> bytes;
    std::vector<int64_t> lengths, counts;
    std::vector<double> values;
    for (const auto& [k, buf] : buffers_) {
      bytes.insert(bytes.end(), k.begin(), k.end());
      lengths.push_back(static_cast<int64_t>(k.size()));
      counts.push_back(static_cast<int64_t>(buf.size()));
      values.insert(values.end(), buf.begin(), buf.end());
    }
    auto u8 = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    if (!bytes.empty()) std::memcpy(u8.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    return {{"prompt_bytes", u8},
            {"prompt_lengths", torch::tensor(lengths, torch::kLong)},
            {"counts", torch::tensor(counts, torch::kLong)},
            {"values", torch::tensor(values, torch::kDouble)}};
  }

  /**
   * @brief Restores buffers saved with state().
   * @param m the four tensors
   * @param source file name for messages
   * @throws std::invalid_argument naming @p source and the key when a tensor is missing or inconsistent
   */
  void load_state(const std::map<std::string, torch::Tensor>& m, const std::string& source) {
    auto get = [&](const char* k) -> torch::Tensor {
      auto it = m.find(k);
      if (it == m.end()) throw std::invalid_argument(source + ": missing per-prompt statistics key '" + std::string(k) + "'");
      return it->second.to(torch::kCPU).contiguous();
    };
    const auto bytes = get("prompt_bytes").to(torch::kUInt8), lengths = get("prompt_lengths").to(torch::kLong),
               counts = get("counts").to(torch::kLong), values = get("values").to(torch::kDouble);
    if (lengths.numel() != counts.numel() || lengths.sum().item<int64_t>() != bytes.numel() || counts.sum().item<int64_t>() != values.numel())
      throw std::invalid_argument(source + ": per-prompt statistics are inconsistent (prompt_lengths, counts, prompt_bytes and values disagree)");
    std::map<std::string, std::deque<double>> b;
    const auto* pb = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
    const double* pv = values.data_ptr<double>();
    for (int64_t i = 0; i < lengths.numel(); ++i) {
      const auto len = lengths[i].item<int64_t>(), n = counts[i].item<int64_t>();
      b[std::string(pb, static_cast<size_t>(len))] = std::deque<double>(pv, pv + n);
      pb += len;
      pv += n;
    }
    set_buffers(std::move(b));
  }

 private:
  template <class It>
  static std::pair<double, double> mean_std(It b, It e) {
    double n = 0, sum = 0;
    for (It i = b; i != e; ++i) { sum += *i; n += 1; }
    if (n == 0) return {0.0, 0.0};
    double mean = sum / n, ss = 0;
    for (It i = b; i != e; ++i) ss += (*i - mean) * (*i - mean);
    return {mean, std::sqrt(ss / n)};
  }

  PerPromptStatsConfig cfg_;
  std::map<std::string, std::deque<double>> buffers_;
};

/**
 * @brief RLCF as a baseline: A = r(x) − r(x̂), the anchor's reward for the same prompt and initial noise.
 *
 * The anchor sample shares x_T with the policy sample but uses its own per-step noise, so r(x̂) does not
 * depend on the policy's actions and the gradient stays unbiased (CXRL, Sec. 2, "RLCF").
 */
struct ComparativeAnchor {
  /// @brief r − r_anchor. @param rewards [B]. @param prompts B prompts. @param anchor_rewards [B].
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts,
                           const torch::Tensor& anchor_rewards) {
    detail::check_rewards(rewards, prompts, "cxrl::core::ComparativeAnchor");
    if (!anchor_rewards.defined() || anchor_rewards.sizes() != rewards.sizes())
      throw std::invalid_argument("cxrl::core::ComparativeAnchor: anchor_rewards must be defined with the shape of rewards [B]");
    return rewards - anchor_rewards;
  }
};

/**
 * @brief Composition: `Second` normalises the advantages produced by `First` (e.g. comparative then per-prompt).
 * @tparam First applied to the rewards (may use the anchor's rewards).
 * @tparam Second applied to First's output as if it were rewards.
 */
template <class First, class Second>
class Chain {
  static_assert(check_baseline<First>() && check_baseline<Second>());
  static_assert(!baseline_uses_anchor_v<Second>,
                "cxrl::core::Chain<First, Second>: only First may use the anchor's rewards");

 public:
  /// @brief Composes. @param first the first stage. @param second the second stage.
  explicit Chain(First first = {}, Second second = {}) : first_(std::move(first)), second_(std::move(second)) {}

  /// @brief Second(First(rewards)). @param rewards [B]. @param prompts B prompts.
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts)
    requires(!baseline_uses_anchor_v<First>)
  {
    return second_.advantages(first_.advantages(rewards, prompts), prompts);
  }

  /// @brief Second(First(rewards, anchor)). @param rewards [B]. @param prompts B prompts. @param anchor_rewards [B].
  torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts,
                           const torch::Tensor& anchor_rewards)
    requires(baseline_uses_anchor_v<First>)
  {
    return second_.advantages(first_.advantages(rewards, prompts, anchor_rewards), prompts);
  }

  /// @brief The stages' checkpoint state (core/trainer_state.hpp), keys prefixed `first.` and `second.`.
  std::map<std::string, torch::Tensor> state() const
    requires(requires(const First& f) { f.state(); } || requires(const Second& g) { g.state(); })
  {
    std::map<std::string, torch::Tensor> m;
    if constexpr (requires { first_.state(); })
      for (auto& [k, v] : first_.state()) m["first." + k] = v;
    if constexpr (requires { second_.state(); })
      for (auto& [k, v] : second_.state()) m["second." + k] = v;
    return m;
  }
  /// @brief Restores state(). @param m the tensors @param source file name for messages
  void load_state(const std::map<std::string, torch::Tensor>& m, const std::string& source)
    requires(requires(const First& f) { f.state(); } || requires(const Second& g) { g.state(); })
  {
    auto part = [&](const std::string& prefix) {
      std::map<std::string, torch::Tensor> p;
      for (const auto& [k, v] : m)
        if (k.rfind(prefix, 0) == 0) p[k.substr(prefix.size())] = v;
      return p;
    };
    if constexpr (requires { first_.load_state(m, source); }) first_.load_state(part("first."), source);
    if constexpr (requires { second_.load_state(m, source); }) second_.load_state(part("second."), source);
  }

  /// @brief The first stage.
  First& first() { return first_; }
  /// @brief The second stage.
  Second& second() { return second_; }

 private:
  First first_;
  Second second_;
};

}  // namespace cxrl::core
