// Default locations of the data files the reference program ships with (relative to the source tree).
#pragma once

#include <cxrl/app/data_files.hpp>

#include <filesystem>

namespace cxrl_mimic {

using cxrl::app::default_tokenizer_dir;
using cxrl::app::source_dir;

/// BERT WordPiece vocab.txt (bert-base-cased, which Bio_ClinicalBERT inherits).
inline std::filesystem::path default_wordpiece_vocab() { return source_dir() / "tests" / "data" / "wordpiece" / "vocab.txt"; }

/// Where `pretrain` / `train-rewards` put the phantom world's shipped checkpoints.
inline std::filesystem::path default_assets_dir() { return source_dir() / "assets" / "phantom"; }

}  // namespace cxrl_mimic
