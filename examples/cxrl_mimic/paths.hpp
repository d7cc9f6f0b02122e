// Default locations of the data files the reference program ships with (relative to the source tree).
#pragma once

#include <cstdlib>
#include <filesystem>

#ifndef CXRL_SOURCE_DIR
#define CXRL_SOURCE_DIR "."
#endif

namespace cxrl_mimic {

/// The repository root: $CXRL_HOME when set, else the source tree this program was built from.
inline std::filesystem::path source_dir() {
  if (const char* h = std::getenv("CXRL_HOME")) return h;
  return CXRL_SOURCE_DIR;
}

/// CLIP BPE vocab.json + merges.txt (the standard CLIP files, kept with the golden fixtures).
inline std::filesystem::path default_tokenizer_dir() { return source_dir() / "tests" / "data" / "clip_tokenizer"; }

/// BERT WordPiece vocab.txt (bert-base-cased, which Bio_ClinicalBERT inherits).
inline std::filesystem::path default_wordpiece_vocab() { return source_dir() / "tests" / "data" / "wordpiece" / "vocab.txt"; }

/// Where `pretrain` / `train-rewards` put the phantom world's shipped checkpoints.
inline std::filesystem::path default_assets_dir() { return source_dir() / "assets" / "phantom"; }

}  // namespace cxrl_mimic
