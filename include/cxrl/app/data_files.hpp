/// @file
/// @brief Where a reference program finds the data files the repository ships (tokenizer vocabularies, phantom
///        checkpoints): `$CXRL_HOME` when set, else the source tree the program was built from.
#pragma once

#include <cstdlib>
#include <filesystem>

/// The source tree a program was built from; examples/CMakeLists.txt defines it per program.
#ifndef CXRL_SOURCE_DIR
#define CXRL_SOURCE_DIR "."
#endif

namespace cxrl::app {

/// @brief The repository root: `$CXRL_HOME` when set (an installed program), else the source tree.
inline std::filesystem::path source_dir() {
  if (const char* h = std::getenv("CXRL_HOME")) return h;
  return CXRL_SOURCE_DIR;
}

/// @brief CLIP BPE vocab.json + merges.txt (the standard CLIP files, kept with the golden fixtures).
inline std::filesystem::path default_tokenizer_dir() { return source_dir() / "tests" / "data" / "clip_tokenizer"; }

}  // namespace cxrl::app
