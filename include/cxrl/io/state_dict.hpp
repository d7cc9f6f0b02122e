/// @file
/// @brief Strict state-dict loading into a `torch::nn::Module`, with one error listing every problem.
#pragma once

#include <cxrl/io/safetensors.hpp>

#include <torch/torch.h>

#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace cxrl::io {

/// @brief How load_state_dict() treats the checkpoint.
struct LoadOptions {
  bool strict = true;  ///< throw on any missing, unexpected or mis-shaped key
  /// Regexes (std::regex_search) of checkpoint keys that may be present without a module slot,
  /// e.g. `"position_ids$"` for transformers checkpoints older than 4.31.
  std::vector<std::string> ignore_unexpected;
  std::optional<torch::Device> device;      ///< move loaded tensors here (default: the slot's device)
  std::optional<torch::ScalarType> dtype;   ///< cast floating tensors to this (default: the slot's dtype)
  std::string source;                       ///< file name used in messages
};

/// @brief What did not match; empty lists mean a perfect match.
struct LoadReport {
  std::vector<std::string> missing;     ///< in the module, absent from the checkpoint
  std::vector<std::string> unexpected;  ///< in the checkpoint, absent from the module
  std::vector<std::string> mismatched;  ///< "key: checkpoint [a, b] vs module [c, d]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  /// @brief Multi-line listing of every problem.
  std::string describe() const {
    std::ostringstream s;
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      s << "\n  " << v.size() << ' ' << what << ':';
      for (const auto& k : v) s << "\n    " << k;
    };
    list("missing key(s) (expected by the model, absent from the checkpoint)", missing);
    list("unexpected key(s) (in the checkpoint, unknown to the model)", unexpected);
    list("shape mismatch(es)", mismatched);
    return s.str();
  }
};

namespace detail {
inline std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}
}  // namespace detail

/// @brief Whether checkpoint tensor @p v fits model slot @p slot: equal shapes, or a one-element [1]
/// tensor for a 0-d slot, which PyTorch's `load_state_dict` also accepts (old BatchNorm
/// `num_batches_tracked`, as in the torchvision/xrv fixtures).
/// @param v checkpoint tensor
/// @param slot model parameter or buffer
inline bool shapes_match(const torch::Tensor& v, const torch::Tensor& slot) {
  return v.sizes() == slot.sizes() || (slot.dim() == 0 && v.dim() == 1 && v.numel() == 1);
}

/// @brief Parameters and persistent buffers of @p m by dotted name, like PyTorch's `state_dict()`.
/// @param m module to read (tensors are shared, not copied)
inline TensorMap state_dict(const torch::nn::Module& m) {
  TensorMap out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) out.emplace(p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out.emplace(b.key(), b.value());
  return out;
}

/// @brief Copies @p sd into the parameters and buffers of @p m.
///
/// Every missing, unexpected and mis-shaped key is collected first; in strict mode one
/// CheckpointError lists them all and the module is left untouched. In non-strict mode the
/// matching keys are loaded and the report is returned.
/// @param m destination module
/// @param sd checkpoint tensors by key
/// @param opt strictness, ignore patterns, device/dtype conversion, source name
inline LoadReport load_state_dict(torch::nn::Module& m, const TensorMap& sd, const LoadOptions& opt = {}) {
  LoadReport rep;
  auto slots = state_dict(m);
  std::vector<std::regex> ignore;
  for (const auto& r : opt.ignore_unexpected) ignore.emplace_back(r);
  for (const auto& [k, t] : sd) {
    if (slots.count(k)) continue;
    bool skip = false;
    for (const auto& r : ignore) skip = skip || std::regex_search(k, r);
    if (!skip) rep.unexpected.push_back(k);
  }
  for (const auto& [k, slot] : slots) {
    auto it = sd.find(k);
    if (it == sd.end()) {
      rep.missing.push_back(k);
    } else if (!shapes_match(it->second, slot)) {
      rep.mismatched.push_back(k + ": checkpoint " + detail::shape_str(it->second.sizes()) + " vs model " +
                               detail::shape_str(slot.sizes()));
    }
  }
  const std::string src = opt.source.empty() ? std::string("state dict") : opt.source;
  if (opt.strict && !rep.ok())
    throw CheckpointError(src + ": checkpoint does not match the model (" + std::to_string(slots.size()) +
                          " model tensors, " + std::to_string(sd.size()) + " checkpoint tensors):" + rep.describe());
  torch::NoGradGuard ng;
  for (auto& [k, slot] : slots) {
    auto it = sd.find(k);
    if (it == sd.end() || !shapes_match(it->second, slot)) continue;
    auto v = it->second.reshape(slot.sizes());
    if (slot.is_floating_point() && !v.is_floating_point())
      throw CheckpointError(src + ": tensor '" + k + "' has integer dtype " + c10::toString(v.scalar_type()) +
                            " but the model expects floating point");
    const auto dtype = slot.is_floating_point() && opt.dtype ? *opt.dtype : slot.scalar_type();
    const auto device = opt.device.value_or(slot.device());
    if (device != slot.device() || dtype != slot.scalar_type()) {
      // set_data keeps the Parameter object (and any optimizer reference) but swaps its storage.
      slot.set_data(v.to(device, dtype).clone());
    } else {
      slot.copy_(v);
    }
  }
  return rep;
}

/// @brief Loads a safetensors file (or shard index) strictly into @p m.
/// @param m destination module
/// @param path `*.safetensors` or `*.safetensors.index.json`
/// @param opt options; `source` defaults to @p path
inline LoadReport load_state_dict(torch::nn::Module& m, const std::filesystem::path& path, LoadOptions opt = {}) {
  if (opt.source.empty()) opt.source = path.string();
  return load_state_dict(m, load_safetensors(path), opt);
}

}  // namespace cxrl::io
