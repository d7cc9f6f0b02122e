/**
 * @file trainer_state.hpp
 * @brief A Trainer's full resumable state as one tensor map: the policy's trainable tensors, the AdamW
 *        moments and step counts, the trainer's generator states and the epoch counter.
 *
 * Written through io::CheckpointStore (atomic, checksummed, keep-last-K), it makes a CPU run that is
 * stopped and resumed produce the same weights, bit for bit, as one that never stopped: every source of
 * randomness is a trainer-owned generator, and nothing else changes between epochs. Baseline state is not
 * included; the stateless baselines (NoBaseline, BatchWhitening, ComparativeAnchor) need none.
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
}  // namespace detail

/**
 * @brief The trainer's resumable state.
 *
 * Keys: `params.<i>` (policy.trainable_parameters() in order), `optimizer.<i>.{step,exp_avg,exp_avg_sq}`
 * (absent before the first optimizer step), `rng.{prompts,sample,anchor,shuffle}` (uint8 generator states)
 * and `trainer.epoch` (int64 [1], the next epoch).
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
  const auto rng = trainer.rng_state();
  m["rng.prompts"] = rng.prompts.clone();
  m["rng.sample"] = rng.sample.clone();
  m["rng.anchor"] = rng.anchor.clone();
  m["rng.shuffle"] = rng.shuffle.clone();
  m["trainer.epoch"] = torch::tensor({trainer.epoch()}, torch::kLong);
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
  trainer.set_rng_state({get("rng.prompts").clone(), get("rng.sample").clone(), get("rng.anchor").clone(),
                         get("rng.shuffle").clone()});
  trainer.set_epoch(get("trainer.epoch").template item<int64_t>());
}

}  // namespace cxrl::core
