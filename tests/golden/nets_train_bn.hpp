// Shared by kind_densenet.cpp and kind_resnet.cpp: checks the train.bn.<layer>.* tensors of a fixture
// against the BatchNorm2d modules of a model after ONE train-mode forward.
#pragma once
#include "golden.hpp"

#include <cxrl/io/state_dict.hpp>

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>

namespace cxrl::golden {

/// Loads the fixture's weights strictly. (The fixtures store `num_batches_tracked` as [1]; the strict loader
/// accepts that for a 0-d slot, as PyTorch does.)
inline void load_fixture_weights(Context& ctx, torch::nn::Module& m, io::LoadOptions opt = {}) {
  if (opt.source.empty()) opt.source = ctx.file("weights").string();
  io::load_state_dict(m, io::load_safetensors(ctx.file("weights")), opt);
}

/// @param before a copy of the model's state (eval model) before the train forward
/// @param model the model after one train-mode forward
/// @param momentum BN momentum (config "batchnorm.momentum", 0.1)
inline void check_train_bn(Context& ctx, const torch::nn::Module& before, const torch::nn::Module& model, double momentum) {
  std::map<std::string, torch::nn::BatchNorm2dImpl*> bns;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* bn = item.value()->as<torch::nn::BatchNorm2d>()) bns[item.key()] = bn;
  std::map<std::string, const torch::nn::BatchNorm2dImpl*> bns0;
  for (const auto& item : before.named_modules("", false))
    if (const auto* bn = item.value()->as<torch::nn::BatchNorm2d>()) bns0[item.key()] = bn;
  std::set<std::string> seen;
  const std::string pre = "train.bn.";
  for (const auto& key : ctx.io_keys()) {
    if (key.rfind(pre, 0) != 0) continue;
    const auto dot = key.rfind('.');
    const auto layer = key.substr(pre.size(), dot - pre.size());
    const auto stat = key.substr(dot + 1);
    auto it = bns.find(layer);
    if (it == bns.end()) {
      ctx.expect(key, false, "no BatchNorm2d module named '" + layer + "' in the model");
      ctx.covered(key, "failed above");
      continue;
    }
    auto* bn = it->second;
    const auto* bn0 = bns0.at(layer);
    const double m = momentum;
    if (stat == "running_mean_after") ctx.check_io(key, bn->running_mean);
    else if (stat == "running_var_after") ctx.check_io(key, bn->running_var);
    else if (stat == "num_batches_tracked_after") {
      // The fixtures store this 0-d PyTorch buffer with shape [1]; compare the value.
      auto expected = ctx.tensor(key);
      ctx.check(key, bn->num_batches_tracked.reshape(expected.sizes()), expected);
    }
    // Batch statistics are recovered from the running-stat update r1 = (1-m) r0 + m s (unbiased var).
    else if (stat == "batch_mean") ctx.check_io(key, (bn->running_mean - (1 - m) * bn0->running_mean) / m);
    else if (stat == "batch_var_unbiased") ctx.check_io(key, (bn->running_var - (1 - m) * bn0->running_var) / m);
    else if (stat == "batch_var_biased")
      ctx.covered(key, "normalisation uses it: checked through train.features_map/features/logits");
    else {
      ctx.expect(key, false, "unknown BN statistic '" + stat + "'");
      ctx.covered(key, "failed above");
    }
    seen.insert(layer);
  }
  ctx.expect("train.bn layers found", !seen.empty() || bns.empty(), std::to_string(seen.size()) + " BN layers checked");
}

/// The flow shared by the torchvision CNN fixtures: parameter count, eval outputs, one train-mode forward
/// on a fresh copy, then its BatchNorm statistics.
/// @param load returns a freshly loaded model
/// @param check_outputs checks a model's outputs under an io prefix ("eval" / "train")
template <class Load, class CheckOutputs>
void check_cnn_fixture(Context& ctx, const nlohmann::json& cfgj, Load load, CheckOutputs check_outputs) {
  const double momentum = cfgj.contains("batchnorm") ? cfgj["batchnorm"].value("momentum", 0.1) : 0.1;
  auto model = load();
  if (cfgj.contains("num_parameters")) {
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    ctx.expect("num_parameters", n == cfgj["num_parameters"].get<int64_t>(), std::to_string(n));
  }
  model->eval();
  const auto x = ctx.tensor("input");
  {
    torch::NoGradGuard ng;
    check_outputs(model, x, "eval");
  }
  auto before = load();
  auto trained = load();
  trained->train();
  {
    torch::NoGradGuard ng;
    check_outputs(trained, x, "train");
  }
  check_train_bn(ctx, *before, *trained, momentum);
}

}  // namespace cxrl::golden
