// The three CXRL reward models and the anchor, located and checked before any long work starts.
//
// Each reward model is a safetensors file in the key layout of its real checkpoint. Its architecture comes
// from a JSON sidecar of the same stem (`xrv_densenet.json` next to `xrv_densenet.safetensors`), which
// `train-rewards` writes for the phantom models. A real checkpoint without a sidecar gets the released
// architecture: DenseNet-121 at 224 px (torchxrayvision `densenet121-res224-all`), CXR-CLIP ResNet-50 +
// Bio_ClinicalBERT, and a ResNet-18 PostureNet at 224 px.
#pragma once

#include "paths.hpp"

#include <cxrl/cxr/align_reward.hpp>
#include <cxrl/cxr/consist_reward.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

namespace cxrl_mimic {

/// Where the anchor and the reward models come from (phantom defaults; each real asset overrides one).
struct AssetPaths {
  std::string roentgen = (default_assets_dir() / "roentgen").string();  // diffusers folder
  std::string rewards_dir = (default_assets_dir() / "rewards").string();
  std::string posture_net;   // "" = <rewards_dir>/posture_net.safetensors
  std::string xrv_densenet;  // "" = <rewards_dir>/xrv_densenet.safetensors
  std::string cxr_clip;      // "" = <rewards_dir>/cxr_clip.safetensors
  std::string vocab = default_wordpiece_vocab().string();  // CXR-CLIP WordPiece vocab.txt

  std::filesystem::path posture_file() const { return pick(posture_net, "posture_net.safetensors"); }
  std::filesystem::path densenet_file() const { return pick(xrv_densenet, "xrv_densenet.safetensors"); }
  std::filesystem::path clip_file() const { return pick(cxr_clip, "cxr_clip.safetensors"); }

 private:
  std::filesystem::path pick(const std::string& given, const char* name) const {
    return given.empty() ? std::filesystem::path(rewards_dir) / name : std::filesystem::path(given);
  }
};

namespace detail {

inline std::optional<nlohmann::json> read_sidecar(const std::filesystem::path& weights) {
  auto p = weights;
  p.replace_extension(".json");
  if (!std::filesystem::exists(p)) return std::nullopt;
  std::ifstream in(p);
  try {
    auto j = nlohmann::json::parse(in);
    if (!j.is_object()) throw std::invalid_argument("expected a JSON object");
    j["__path"] = p.string();
    return j;
  } catch (const std::exception& e) {
    throw std::invalid_argument(p.string() + ": not a valid architecture file: " + e.what());
  }
}

/// j[key] as T, with an error naming the file and the key.
template <class T>
T field(const nlohmann::json& j, const std::string& key) {
  const std::string src = j.value("__path", std::string("config"));
  if (!j.contains(key)) throw std::invalid_argument(src + ": missing key '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception& e) {
    throw std::invalid_argument(src + ": key '" + key + "' has the wrong type: " + e.what());
  }
}

inline void need_file(const std::filesystem::path& p, const std::string& what, const std::string& flag) {
  if (!std::filesystem::is_regular_file(p))
    throw std::invalid_argument(what + " not found: " + p.string() + " (pass " + flag +
                                ", or run `cxrl_mimic train-rewards` to regenerate the phantom models)");
}

}  // namespace detail

/// Throws before any long work when an asset is missing: names the file and the flag that sets it.
inline void check_assets(const AssetPaths& a, bool need_rewards = true) {
  namespace fs = std::filesystem;
  const fs::path sd = a.roentgen;
  for (const char* sub : {"model_index.json", "unet/config.json", "text_encoder/config.json", "tokenizer/vocab.json"})
    if (!fs::exists(sd / sub))
      throw std::invalid_argument("anchor (diffusers folder) " + sd.string() + ": missing " + sub +
                                  " (pass --roentgen DIR, or run `cxrl_mimic pretrain` to regenerate the phantom anchor)");
  if (!need_rewards) return;
  detail::need_file(a.posture_file(), "PostureNet weights", "--posture-net FILE");
  detail::need_file(a.densenet_file(), "torchxrayvision DenseNet weights", "--xrv-densenet FILE.safetensors");
  detail::need_file(a.clip_file(), "CXR-CLIP weights", "--cxr-clip FILE.safetensors");
  detail::need_file(a.vocab, "CXR-CLIP WordPiece vocab", "--vocab FILE");
}

/// r_align with the PostureNet of @p a.
inline cxrl::cxr::AlignReward load_align_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  cxrl::cxr::PostureNetConfig c;
  if (auto j = detail::read_sidecar(a.posture_file())) {
    c.width = detail::field<int64_t>(*j, "width");
    c.layers = detail::field<std::vector<int64_t>>(*j, "layers");
    c.in_channels = detail::field<int64_t>(*j, "in_channels");
    c.image_size = detail::field<int64_t>(*j, "image_size");
  }
  return cxrl::cxr::AlignReward::load(a.posture_file(), c, device);
}

/// The diagnostic classifier of @p a (also the FID feature extractor).
inline cxrl::cxr::XrvDenseNet load_densenet(const AssetPaths& a, torch::Device device = torch::kCPU) {
  auto c = cxrl::nn::DenseNetConfig::densenet121(1, static_cast<int64_t>(cxrl::cxr::kXrvPathologies.size()));
  int64_t resolution = 224;
  if (auto j = detail::read_sidecar(a.densenet_file())) {
    c.growth_rate = detail::field<int64_t>(*j, "growth_rate");
    c.block_config = detail::field<std::vector<int64_t>>(*j, "block_config");
    c.num_init_features = detail::field<int64_t>(*j, "num_init_features");
    c.bn_size = detail::field<int64_t>(*j, "bn_size");
    c.num_classes = detail::field<int64_t>(*j, "num_classes");
    c.in_channels = detail::field<int64_t>(*j, "in_channels");
    resolution = detail::field<int64_t>(*j, "resolution");
  }
  return cxrl::cxr::XrvDenseNet::load(a.densenet_file(), c, device, resolution);
}

/// r_diag with the classifier of @p a.
inline cxrl::cxr::DiagReward load_diag_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  return cxrl::cxr::DiagReward(load_densenet(a, device));
}

/// r_consist with the CXR-CLIP model of @p a.
inline cxrl::cxr::ConsistReward load_consist_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  cxrl::cxr::CxrClipConfig c;
  if (auto j = detail::read_sidecar(a.clip_file())) {
    const nlohmann::json img = detail::field<nlohmann::json>(*j, "image"), txt = detail::field<nlohmann::json>(*j, "text");
    auto sub = [&](const nlohmann::json& s) {
      auto x = s;
      x["__path"] = (*j)["__path"];
      return x;
    };
    const auto ji = sub(img), jt = sub(txt);
    c.image = detail::field<std::string>(ji, "block") == "Bottleneck" ? cxrl::nn::ResNetConfig::resnet50()
                                                                       : cxrl::nn::ResNetConfig::resnet18();
    c.image.layers = detail::field<std::vector<int64_t>>(ji, "layers");
    c.image.in_channels = detail::field<int64_t>(ji, "in_channels");
    c.image.width = detail::field<int64_t>(ji, "width");
    c.image.include_fc = false;
    c.text.vocab_size = detail::field<int64_t>(jt, "vocab_size");
    c.text.hidden_size = detail::field<int64_t>(jt, "hidden_size");
    c.text.num_hidden_layers = detail::field<int64_t>(jt, "num_hidden_layers");
    c.text.num_attention_heads = detail::field<int64_t>(jt, "num_attention_heads");
    c.text.intermediate_size = detail::field<int64_t>(jt, "intermediate_size");
    c.text.max_position_embeddings = detail::field<int64_t>(jt, "max_position_embeddings");
    c.projection_dim = detail::field<int64_t>(*j, "projection_dim");
    c.image_size = detail::field<int64_t>(*j, "image_size");
    c.max_length = detail::field<int64_t>(*j, "max_length");
  }
  cxrl::cxr::CxrClip model(c);
  model->load(a.clip_file(), device);
  cxrl::text::WordPieceConfig wc;
  wc.do_lower_case = true;  // Bio_ClinicalBERT as CXR-CLIP loads it (BertTokenizer default)
  return cxrl::cxr::ConsistReward(std::move(model), cxrl::text::WordPieceTokenizer::from_file(a.vocab, wc));
}

}  // namespace cxrl_mimic
