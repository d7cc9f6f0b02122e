// Flag groups shared by finetune, evaluate and generate, so the same asset or policy setting has the same
// name (and JSON key) everywhere.
#pragma once

#include "app.hpp"
#include "reward_models.hpp"
#include "world.hpp"

namespace cxrl_mimic {

/// Binds the asset flags shared by finetune, evaluate and generate.
inline void add_asset_settings(Settings& s, AssetPaths& a, bool rewards = true) {
  s.add("roentgen", a.roentgen, "anchor: a diffusers text-to-image folder (phantom default or RoentGen)");
  if (!rewards) return;
  s.add("rewards_dir", a.rewards_dir, "folder with the phantom reward models written by train-rewards");
  s.add("posture_net", a.posture_net, "posture model, .safetensors or TorchScript .pt (default: <rewards_dir>/posture_net.safetensors)");
  s.add("xrv_densenet", a.xrv_densenet, "diagnostic classifier, .safetensors or TorchScript .pt (default: <rewards_dir>/xrv_densenet.safetensors)");
  s.add("cxr_clip", a.cxr_clip, "CXR-CLIP, .safetensors or TorchScript .pt (default: <rewards_dir>/cxr_clip.safetensors)");
  s.add("vocab", a.vocab, "CXR-CLIP WordPiece vocab.txt");
  s.add("judges", a.judges, "folder with the judge models written by train-judges (evaluate)");
}

/// Binds the data-source flags.
inline void add_world_settings(Settings& s, WorldOptions& w) {
  s.add("mimic_root", w.mimic_root, "MIMIC-CXR-JPG root (default: the built-in phantom world)");
  s.add("reports_root", w.reports_root, "MIMIC-CXR reports root (default: --mimic-root)");
  s.add("world_seed", w.world_seed, "phantom world seed (the shipped models use 0)");
}

}  // namespace cxrl_mimic
