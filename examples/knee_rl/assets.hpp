// Where the knee program's shipped checkpoints live (assets/knee, produced by this program's own commands; the
// README says how to regenerate them).
#pragma once

#include <cxrl/app/data_files.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace knee_rl {

inline std::filesystem::path assets_dir() { return cxrl::app::source_dir() / "assets" / "knee"; }

/// Throws before any long work when an asset is missing: names the file, the flag and how to make it.
inline void need_asset(const std::filesystem::path& p, const std::string& what, const std::string& flag, const std::string& make) {
  if (!std::filesystem::exists(p))
    throw std::invalid_argument(what + " not found: " + p.string() + " (pass " + flag + ", or regenerate it: " + make + ")");
}

}  // namespace knee_rl
