/// @file
/// @brief LoRA injection into the attention projections of a UNet, with enable / scale / merge and
///        safetensors save/load in the diffusers/PEFT key naming.
///
/// LoRA (Hu et al., 2022, eq. 3): h = W x + (alpha / r) · B A x with B = 0 at start, so the adapted UNet
/// initially equals the base UNet exactly. Every `to_q`, `to_k`, `to_v` and `to_out.0` of every `attn1`
/// (self-attention) and `attn2` (cross-attention) is adapted, as diffusers' `LoRAAttnProcessor` and the
/// PEFT `target_modules=["to_q","to_k","to_v","to_out.0"]` used by ddpo-pytorch do.
///
/// Saved keys: `<prefix>.<module path>.lora_A.weight` [r, in] and `<prefix>.<module path>.lora_B.weight`
/// [out, r], with prefix "unet" — the layout diffusers `save_lora_weights` writes with the PEFT backend, e.g.
/// `unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`. Rank and alpha go in the
/// safetensors metadata (`lora_rank`, `lora_alpha`).
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/lora_linear.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::policy {

/// @brief Which layers get adapters and how.
struct LoraConfig {
  int64_t rank = 4;      ///< r (ddpo-pytorch uses 4)
  double alpha = 4.0;    ///< branch scale alpha / r (4/4 = 1, as diffusers' LoRAAttnProcessor, which has no alpha)
  /// Projection names inside an attention module.
  std::vector<std::string> target_modules{"to_q", "to_k", "to_v", "to_out.0"};
  /// Names of the attention modules whose projections are adapted (self- and cross-attention).
  std::vector<std::string> attention_modules{"attn1", "attn2"};
  uint64_t seed = 0;     ///< seed of the CPU generator that draws every A (in named_modules order)

  /// @brief Throws std::invalid_argument for a non-positive rank/alpha or empty target lists.
  void validate() const {
    if (rank <= 0) throw std::invalid_argument("LoraConfig: rank must be > 0, got " + std::to_string(rank));
    if (!(alpha > 0.0)) throw std::invalid_argument("LoraConfig: alpha must be > 0, got " + std::to_string(alpha));
    if (target_modules.empty() || attention_modules.empty())
      throw std::invalid_argument("LoraConfig: target_modules and attention_modules must not be empty");
  }
};

/// @brief One adapted projection: its dotted path in the root module and the layer.
struct LoraTarget {
  std::string path;   ///< e.g. "mid_block.attentions.0.transformer_blocks.0.attn2.to_k"
  nn::LoraLinear layer;  ///< the layer holding lora_A / lora_B
};

/// @brief The set of LoRA adapters inside one model (e.g. the UNet); the layers stay owned by the model.
class LoraAdapters {
 public:
  LoraAdapters() = default;

  /// @brief Adds an adapter to every matching projection of @p root.
  ///
  /// A module matches when its path ends in `<attention>.<target>` for an attention name in
  /// `cfg.attention_modules` and a target in `cfg.target_modules`. Every match must be a `nn::LoraLinear`.
  /// @param root model to adapt (its LoraLinear layers gain `lora_A` / `lora_B` submodules)
  /// @param cfg rank, alpha, targets, seed
  /// @param key_prefix prefix of the saved keys ("unet")
  /// @throws std::invalid_argument when nothing matches, a match is not a LoraLinear, or it already has an adapter
  static LoraAdapters inject(torch::nn::Module& root, const LoraConfig& cfg, std::string key_prefix = "unet") {
    cfg.validate();
    LoraAdapters a(cfg, std::move(key_prefix));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed);
    for (auto& [path, layer] : find(root, cfg)) {
      if (layer->has_lora())
        throw std::invalid_argument("LoraAdapters::inject: '" + path + "' already has a LoRA adapter");
      layer->add_lora(cfg.rank, cfg.alpha, gen);
      a.targets_.push_back({path, layer});
    }
    return a;
  }

  /// @brief The adapted layers, in named_modules order.
  const std::vector<LoraTarget>& targets() const { return targets_; }
  /// @brief Number of adapted layers.
  std::size_t size() const { return targets_.size(); }
  /// @brief The configuration used by inject().
  const LoraConfig& config() const { return cfg_; }

  /// @brief Every lora_A and lora_B weight (the trainable LoRA parameters).
  std::vector<torch::Tensor> parameters() const {
    std::vector<torch::Tensor> p;
    for (const auto& t : targets_) {
      p.push_back(t.layer->lora_A->weight);
      p.push_back(t.layer->lora_B->weight);
    }
    return p;
  }

  /// @brief Switches every adapter branch on or off (off = the base model, bit-exact).
  /// @param on new state
  void set_enabled(bool on) {
    for (auto& t : targets_) t.layer->set_lora_enabled(on);
    enabled_ = on;
  }
  /// @brief Whether the adapters are applied.
  bool enabled() const { return enabled_; }

  /// @brief Sets the branch multiplier to `multiplier · alpha / r` (diffusers' `cross_attention_kwargs={"scale": s}`).
  /// @param multiplier 1 = trained strength, 0 = base model
  void set_scale(double multiplier) {
    for (auto& t : targets_) t.layer->set_lora_scale(multiplier * cfg_.alpha / static_cast<double>(cfg_.rank));
    multiplier_ = multiplier;
  }
  /// @brief The current multiplier of set_scale().
  double scale() const { return multiplier_; }

  /// @brief Folds every adapter into its base weight (inference speed); the branch is then skipped.
  ///
  /// For inference only: unmerge() restores W only up to float round-off (W + ΔW − ΔW), so after a
  /// merge/unmerge cycle the disabled model is no longer bit-identical to the base model (≤ 1e-5 apart).
  void merge() {
    for (auto& t : targets_) t.layer->merge();
  }
  /// @brief Removes merged adapters from the base weights again.
  void unmerge() {
    for (auto& t : targets_) t.layer->unmerge();
  }
  /// @brief Whether the adapters are merged.
  bool merged() const { return !targets_.empty() && targets_.front().layer->merged(); }

  /// @brief Adapter weights under `<prefix>.<path>.lora_{A,B}.weight` (shared with the model, not copies).
  io::TensorMap state_dict() const {
    io::TensorMap m;
    for (const auto& t : targets_) {
      m.emplace(key(t, "lora_A"), t.layer->lora_A->weight);
      m.emplace(key(t, "lora_B"), t.layer->lora_B->weight);
    }
    return m;
  }

  /// @brief Metadata written next to the weights: rank, alpha, targets.
  io::Metadata metadata() const {
    std::string targets;
    for (const auto& t : cfg_.target_modules) targets += (targets.empty() ? "" : ",") + t;
    std::ostringstream alpha;
    alpha.precision(17);
    alpha << cfg_.alpha;
    return {{"lora_rank", std::to_string(cfg_.rank)}, {"lora_alpha", alpha.str()}, {"lora_target_modules", targets},
            {"lora_key_prefix", prefix_}};
  }

  /// @brief Copies adapter weights from @p sd (keys with this prefix; other keys are left to the caller).
  ///
  /// Strict: every expected key must be present with the right shape, and every key under the prefix
  /// must belong to an adapter; all problems are listed in one CheckpointError.
  /// @param sd tensors (e.g. a loaded safetensors file)
  /// @param source file name for messages
  /// @param meta the file's metadata; a `lora_alpha` / `lora_rank` that differs from this config is an error
  void load_state_dict(const io::TensorMap& sd, const std::string& source, const io::Metadata& meta = {}) {
    if (merged()) throw std::logic_error("LoraAdapters::load_state_dict: unmerge() before loading new weights");
    for (const char* k : {"lora_rank", "lora_alpha"}) {
      auto it = meta.find(k);
      if (it == meta.end()) continue;
      const double mine = std::string(k) == "lora_rank" ? static_cast<double>(cfg_.rank) : cfg_.alpha;
      double theirs = 0.0;
      try {
        theirs = std::stod(it->second);
      } catch (const std::exception&) {
        throw io::CheckpointError(source + ": metadata '" + k + "' is not a number: '" + it->second + "'");
      }
      if (theirs != mine)
        throw io::CheckpointError(source + ": metadata " + k + " = " + it->second + " but the adapters were built with " +
                                  std::to_string(mine) + " (build them with the file's LoraConfig)");
    }
    auto slots = state_dict();  // shares storage with the layers
    io::LoadReport rep;
    const std::string pre = prefix_ + ".";
    for (const auto& [k, v] : sd)
      if (k.rfind(pre, 0) == 0 && !slots.count(k)) rep.unexpected.push_back(k);
    for (const auto& [k, slot] : slots) {
      auto it = sd.find(k);
      if (it == sd.end()) rep.missing.push_back(k);
      else if (it->second.sizes() != slot.sizes())
        rep.mismatched.push_back(k + ": file " + io::detail::shape_str(it->second.sizes()) + " vs adapter " +
                                 io::detail::shape_str(slot.sizes()));
    }
    if (!rep.ok()) throw io::CheckpointError(source + ": LoRA weights do not match the adapters:" + rep.describe());
    torch::NoGradGuard ng;
    for (auto& [k, slot] : slots) {
      const auto& v = sd.at(k);
      if (!v.is_floating_point())
        throw io::CheckpointError(source + ": tensor '" + k + "' has integer dtype " + c10::toString(v.scalar_type()));
      slot.copy_(v.to(slot.device(), slot.scalar_type()));
    }
  }

  /// @brief Paths of all layers in @p root that `inject` with @p cfg would adapt.
  /// @param root model
  /// @param cfg targets
  static std::vector<std::pair<std::string, nn::LoraLinear>> find(torch::nn::Module& root, const LoraConfig& cfg) {
    std::vector<std::pair<std::string, nn::LoraLinear>> out;
    for (const auto& item : root.named_modules("", /*include_self=*/false)) {
      const std::string& path = item.key();
      bool match = false;
      for (const auto& a : cfg.attention_modules)
        for (const auto& t : cfg.target_modules) match = match || ends_with_component(path, a + "." + t);
      if (!match) continue;
      auto impl = std::dynamic_pointer_cast<nn::LoraLinearImpl>(item.value());
      if (!impl)
        throw std::invalid_argument("LoraAdapters: '" + path + "' matches the LoRA targets but is a " +
                                    item.value()->name() + ", not cxrl::nn::LoraLinear");
      out.emplace_back(path, nn::LoraLinear(impl));
    }
    if (out.empty())
      throw std::invalid_argument("LoraAdapters: no module path ends in <attn1|attn2>.<to_q|to_k|to_v|to_out.0> "
                                  "(for the configured names); is this a UNet with cross-attention blocks?");
    return out;
  }

 private:
  LoraAdapters(LoraConfig cfg, std::string prefix) : cfg_(std::move(cfg)), prefix_(std::move(prefix)) {}

  static bool ends_with_component(const std::string& path, const std::string& tail) {
    if (path == tail) return true;
    return path.size() > tail.size() && path.compare(path.size() - tail.size(), tail.size(), tail) == 0 &&
           path[path.size() - tail.size() - 1] == '.';
  }
  std::string key(const LoraTarget& t, const char* which) const {
    return prefix_ + "." + t.path + "." + which + ".weight";
  }

  LoraConfig cfg_;
  std::string prefix_ = "unet";
  std::vector<LoraTarget> targets_;
  bool enabled_ = true;
  double multiplier_ = 1.0;
};

}  // namespace cxrl::policy
