// The three CXRL reward models and the anchor, located and checked before any long work starts.
//
// Each reward model is a file: native safetensors in the key layout of its real checkpoint, or a TorchScript
// `.pt`, each with an optional JSON sidecar of the same stem (cxr/reward_model_files.hpp has the format;
// `train-rewards` writes sidecars for the phantom models).
#pragma once

#include "paths.hpp"

#include <cxrl/cxr/align_reward.hpp>
#include <cxrl/cxr/consist_reward.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/reward_model_files.hpp>

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
  std::string judges = (default_assets_dir() / "judges").string();  // evaluation models trained apart (train-judges)

  std::filesystem::path posture_file() const { return pick(posture_net, "posture_net.safetensors"); }
  std::filesystem::path densenet_file() const { return pick(xrv_densenet, "xrv_densenet.safetensors"); }
  std::filesystem::path clip_file() const { return pick(cxr_clip, "cxr_clip.safetensors"); }

 private:
  std::filesystem::path pick(const std::string& given, const char* name) const {
    return given.empty() ? std::filesystem::path(rewards_dir) / name : std::filesystem::path(given);
  }
};

namespace detail {

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
  detail::need_file(a.posture_file(), "posture model", "--posture-net FILE.safetensors|.pt");
  detail::need_file(a.densenet_file(), "torchxrayvision DenseNet", "--xrv-densenet FILE.safetensors|.pt");
  detail::need_file(a.clip_file(), "CXR-CLIP model", "--cxr-clip FILE.safetensors|.pt");
  detail::need_file(a.vocab, "CXR-CLIP WordPiece vocab", "--vocab FILE");
}

/// The reward types of the reference program: each model is chosen at run time from its file (native
/// safetensors or a TorchScript `.pt`, see cxr/reward_model_files.hpp).
using Align = cxrl::cxr::BasicAlignReward<cxrl::cxr::AnyPostureModel>;
using Diag = cxrl::cxr::BasicDiagReward<cxrl::cxr::AnyFindingClassifier>;
using Consist = cxrl::cxr::BasicConsistReward<cxrl::cxr::AnyReportEmbedder>;

/// r_align with the posture model of @p a.
inline Align load_align_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  return Align(cxrl::cxr::load_posture_model(a.posture_file(), device));
}

/// r_diag with the classifier of @p a.
inline Diag load_diag_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  return Diag(cxrl::cxr::load_finding_classifier(a.densenet_file(), device));
}

/// r_consist with the CXR-CLIP model of @p a.
inline Consist load_consist_reward(const AssetPaths& a, torch::Device device = torch::kCPU) {
  return Consist(cxrl::cxr::load_report_embedder(a.clip_file(), a.vocab, device));
}

}  // namespace cxrl_mimic
