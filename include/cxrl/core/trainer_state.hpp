/**
 * @file trainer_state.hpp
 * @brief A Trainer's full resumable state as one tensor map: the policy's trainable tensors, the AdamW
 *        moments and step counts, the trainer's generator states and the epoch counter.
 *
 * Written through io::CheckpointStore (atomic, checksummed, keep-last-K), it makes a CPU run that is
 * stopped and resumed produce the same weights, bit for bit, as one that never stopped: every source of
 * randomness is a trainer-owned generator, and nothing else changes between epochs. A baseline that keeps state
 * across epochs (PerPromptStats, a Chain holding one) saves it through `state()` / `load_state()`; the
 * stateless ones (NoBaseline, BatchWhitening, ComparativeAnchor) have none.
 */
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cxrl/core/trainer.hpp"
#include "cxrl/io/safetensors.hpp"
#include "cxrl/io/state_dict.hpp"

namespace cxrl::core {

namespace detail {
inline std::string param_key(size_t i) { return "params." + std::to_string(i); }
inline std::string adam_key(size_t i, const char* what) { return "optimizer." + std::to_string(i) + "." + what; }
inline std::string optimizer_state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }
/// Key of sampling stream @p g's generator @p what: `rng.<what>` for stream 0 (as single-process runs always wrote),
/// `rng.stream<g>.<what>` for the others.
inline std::string rng_key(int64_t g, const char* what) {
  return g == 0 ? std::string("rng.") + what : "rng.stream" + std::to_string(g) + "." + what;
}
}  // namespace detail

/**
 * @brief The trainer's resumable state.
 *
 * Keys: `params.<i>` (policy.trainable_parameters() in order), `optimizer.<i>.{step,exp_avg,exp_avg_sq}`
 * (absent before the first optimizer step), `rng.{prompts,sample,anchor,shuffle}` (uint8 generator states),
 * `rng.stream<g>.*` for the other sampling streams of a run with several shards or ranks (gathered: rank 0
 * writes every rank's), `trainer.world_size`, `trainer.sample_shards`, `trainer.epoch` (int64 [1], the next epoch),
 * `trainer.skipped_updates` and `baseline.*` (the baseline's `state()`, when it has one). Every rank calls it (the
 * gathers are collective); rank 0 writes the result.
 * @tparam T a core::Trainer whose optimizer is AdamW.
 * @param trainer the trainer.
 */
template <class T>
io::TensorMap trainer_state(T& trainer) {
  io::TensorMap m;
  const auto params = trainer.policy().trainable_parameters();
  auto& state = trainer.optimizer().state();
  for (size_t i = 0; i < params.size(); ++i) {
    m[detail::param_key(i)] = params[i].detach().cpu().clone();
    auto it = state.find(detail::optimizer_state_key(params[i]));
    if (it == state.end()) continue;
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    m[detail::adam_key(i, "step")] = torch::tensor({s.step()}, torch::kLong);
    m[detail::adam_key(i, "exp_avg")] = s.exp_avg().detach().cpu().clone();
    m[detail::adam_key(i, "exp_avg_sq")] = s.exp_avg_sq().detach().cpu().clone();
  }
  // Every rank's sampling streams (gathered: rank 0 writes the file), and the shared shuffle stream.
  const auto rng = trainer.rng_state();
  std::vector<ShardRngState> local{{rng.prompts, rng.sample, rng.anchor}};
  local.insert(local.end(), rng.more_shards.begin(), rng.more_shards.end());
  const auto S = static_cast<int64_t>(local.size());
  auto* dist = trainer.distributed();
  for (int64_t k = 0; k < S; ++k)
    for (const char* f : {"prompts", "sample", "anchor"}) {
      const auto& t = std::string(f) == "prompts" ? local[k].prompts : std::string(f) == "sample" ? local[k].sample : local[k].anchor;
      if (!dist || dist->world_size() == 1) {
        m[detail::rng_key(k, f)] = t.clone();
        continue;
      }
      const auto all = dist->all_gather_cat(t.contiguous().view({1, -1}));
      for (int64_t r = 0; r < all.size(0); ++r) m[detail::rng_key(r * S + k, f)] = all[r].clone();
    }
  m["rng.shuffle"] = rng.shuffle.clone();
  m["trainer.world_size"] = torch::tensor({static_cast<int64_t>(trainer.world_size())}, torch::kLong);
  m["trainer.sample_shards"] = torch::tensor({S}, torch::kLong);
  m["trainer.epoch"] = torch::tensor({trainer.epoch()}, torch::kLong);
  m["trainer.skipped_updates"] = torch::tensor({trainer.skipped_updates()}, torch::kLong);
  if constexpr (requires { trainer.baseline().state(); })
    for (auto& [k, v] : trainer.baseline().state()) m["baseline." + k] = v;
  return m;
}

/**
 * @brief Restores a state written by trainer_state() into a trainer built with the same configuration.
 * @tparam T a core::Trainer whose optimizer is AdamW.
 * @param trainer the trainer to overwrite.
 * @param m the saved map.
 * @param source file name for error messages.
 * @throws io::CheckpointError naming the key when a tensor is missing or has the wrong shape.
 */
template <class T>
void load_trainer_state(T& trainer, const io::TensorMap& m, const std::string& source) {
  auto get = [&](const std::string& k) -> const torch::Tensor& {
    auto it = m.find(k);
    if (it == m.end()) throw io::CheckpointError(source + ": missing key '" + k + "' (not a cxrl trainer checkpoint?)");
    return it->second;
  };
  auto same_shape = [&](const std::string& k, const torch::Tensor& saved, const torch::Tensor& live) {
    if (saved.sizes() != live.sizes())
      throw io::CheckpointError(source + ": key '" + k + "' has shape " + io::detail::shape_str(saved.sizes()) +
                                ", the policy expects " + io::detail::shape_str(live.sizes()) +
                                " (was the run started with other adapter settings?)");
  };
  const auto params = trainer.policy().trainable_parameters();
  size_t saved_params = 0;
  while (m.count(detail::param_key(saved_params))) ++saved_params;
  if (saved_params != params.size())
    throw io::CheckpointError(source + ": holds " + std::to_string(saved_params) + " trainable tensors, the policy has " +
                              std::to_string(params.size()) + " (was the run started with other adapter settings?)");
  auto& state = trainer.optimizer().state();
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto k = detail::param_key(i);
    const auto& p = get(k);
    same_shape(k, p, params[i]);
    params[i].copy_(p.to(params[i].device(), params[i].scalar_type()));
    const auto key = detail::optimizer_state_key(params[i]);
    if (!m.count(detail::adam_key(i, "step"))) {
      state.erase(key);
      continue;
    }
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(get(detail::adam_key(i, "step")).template item<int64_t>());
    const auto& ea = get(detail::adam_key(i, "exp_avg"));
    const auto& eas = get(detail::adam_key(i, "exp_avg_sq"));
    same_shape(detail::adam_key(i, "exp_avg"), ea, params[i]);
    same_shape(detail::adam_key(i, "exp_avg_sq"), eas, params[i]);
    s->exp_avg(ea.to(params[i].device(), params[i].scalar_type()).clone());
    s->exp_avg_sq(eas.to(params[i].device(), params[i].scalar_type()).clone());
    state[key] = std::move(s);
  }
  const int64_t saved_world = m.count("trainer.world_size") ? get("trainer.world_size").template item<int64_t>() : 1;
  const int64_t saved_shards = m.count("trainer.sample_shards") ? get("trainer.sample_shards").template item<int64_t>() : 1;
  if (saved_world != trainer.world_size() || saved_shards != trainer.config().sample_shards)
    throw io::CheckpointError(source + ": written by a run on " + std::to_string(saved_world) + " process(es) with sample_shards " +
                              std::to_string(saved_shards) + "; this one has " + std::to_string(trainer.world_size()) + " and " +
                              std::to_string(trainer.config().sample_shards) + " (resume with the same --nproc)");
  const int64_t S = trainer.config().sample_shards, g0 = static_cast<int64_t>(trainer.rank()) * S;
  TrainerRngState rs{get(detail::rng_key(g0, "prompts")).clone(), get(detail::rng_key(g0, "sample")).clone(),
                     get(detail::rng_key(g0, "anchor")).clone(), get("rng.shuffle").clone(), {}};
  for (int64_t k = 1; k < S; ++k)
    rs.more_shards.push_back({get(detail::rng_key(g0 + k, "prompts")).clone(), get(detail::rng_key(g0 + k, "sample")).clone(),
                              get(detail::rng_key(g0 + k, "anchor")).clone()});
  trainer.set_rng_state(rs);
  trainer.set_epoch(get("trainer.epoch").template item<int64_t>());
  if (m.count("trainer.skipped_updates")) trainer.set_skipped_updates(get("trainer.skipped_updates").template item<int64_t>());
  if constexpr (requires { trainer.baseline().state(); }) {
    std::map<std::string, torch::Tensor> b;
    for (const auto& [k, v] : m)
      if (k.rfind("baseline.", 0) == 0) b[k.substr(9)] = v;
    try {
      trainer.baseline().load_state(b, source);
    } catch (const std::invalid_argument& e) {
      throw io::CheckpointError(std::string(e.what()) + " (the baseline's state is missing: was the run started with another baseline?)");
    }
  }
}

}  // namespace cxrl::core
