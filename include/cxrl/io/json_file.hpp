/// @file
/// @brief JSON files written atomically (sidecars, configs, metrics), so that a crash never leaves half a file, and
///        read with errors that name the file.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace cxrl::io {

/// @brief Writes @p j as indented JSON to @p p through a temp file and a rename, creating the parent folder.
/// @throws std::runtime_error naming the file when the write fails
inline void write_json(const std::filesystem::path& p, const nlohmann::json& j) {
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  auto tmp = p;
  tmp += ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << '\n';
    if (!f) throw std::runtime_error(tmp.string() + ": write failed");
  }
  std::filesystem::rename(tmp, p);
}

/// @brief Reads a JSON file.
/// @param p the file
/// @throws std::invalid_argument naming the file when it is missing or not valid JSON
inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) throw std::invalid_argument(p.string() + ": cannot open (expected a JSON file)");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::invalid_argument(p.string() + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace cxrl::io
