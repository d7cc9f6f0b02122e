/// @file
/// @brief Training checkpoints in a run folder: atomic writes, a content checksum, keep-last-K
/// rotation, and fallback to the newest intact checkpoint when the latest is corrupt.
#pragma once

#include <cxrl/io/event_log.hpp>  // crc32c
#include <cxrl/io/safetensors.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <vector>

namespace cxrl::io {

/// @brief A checkpoint read back from a CheckpointStore.
struct LoadedCheckpoint {
  std::int64_t step = 0;
  TensorMap tensors;
  Metadata metadata;
  std::filesystem::path file;
};

/// @brief `ckpt-<step>.safetensors` files in one folder.
///
/// Each file carries `__metadata__` keys `step` and `crc32c` (CRC-32C over every tensor's bytes in
/// key order), so a file that parses but was corrupted on disk is still detected.
class CheckpointStore {
 public:
  /// @param dir folder holding the checkpoints (created if absent)
  /// @param keep_last how many of the newest checkpoints to keep (>= 1)
  /// @param clean remove stale temporaries now (false for a reader that shares the folder with the writer)
  explicit CheckpointStore(std::filesystem::path dir, int keep_last = 3, bool clean = true) : dir_(std::move(dir)), keep_(keep_last) {
    if (keep_ < 1) throw std::invalid_argument("CheckpointStore: keep_last must be >= 1, got " + std::to_string(keep_));
    std::filesystem::create_directories(dir_);
    if (clean) remove_stale_temporaries();
  }

  /// @brief Deletes `ckpt-*.tmp.*` files: writes that a killed process left behind (call it only from the one process
  ///        that writes the folder: finetune holds a lock on its run folder).
  /// @return how many were removed
  int remove_stale_temporaries() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const auto f = e.path().filename().string();
      if (f.rfind("ckpt-", 0) == 0 && f.find(".tmp.") != std::string::npos) {
        std::error_code ec;
        if (std::filesystem::remove(e.path(), ec)) ++n;
      }
    }
    return n;
  }

  /// @brief Writes a checkpoint atomically, then deletes all but the newest keep_last.
  /// @param step training step or epoch number (orders the files)
  /// @param tensors what to save
  /// @param metadata extra string metadata (keys `step` and `crc32c` are set here)
  std::filesystem::path save(std::int64_t step, const TensorMap& tensors, Metadata metadata = {}) {
    metadata["step"] = std::to_string(step);
    metadata["crc32c"] = std::to_string(checksum(tensors));
    const auto path = dir_ / file_name(step);
    save_safetensors(path, tensors, metadata);
    auto all = list();
    while (static_cast<int>(all.size()) > keep_) {
      std::filesystem::remove(all.front().second);
      all.erase(all.begin());
    }
    return path;
  }

  /// @brief The newest checkpoint that reads back intact; corrupt newer ones are skipped with a
  /// warning on @p warn (they are left on disk for inspection, renamed `*.corrupt`).
  /// @param warn stream for warnings
  std::optional<LoadedCheckpoint> load_latest(std::ostream& warn) const {
    auto all = list();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        return load(it->second);
      } catch (const std::exception& e) {
        warn << "warning: checkpoint " << it->second.string() << " is corrupt (" << e.what()
             << "); falling back to the previous one\n";
        std::error_code ec;
        std::filesystem::rename(it->second, it->second.string() + ".corrupt", ec);
      }
    }
    return std::nullopt;
  }

  /// @brief Reads and verifies one checkpoint file.
  /// @param path checkpoint file
  /// @throws CheckpointError when unreadable or its checksum does not match
  static LoadedCheckpoint load(const std::filesystem::path& path) {
    SafeTensorsFile f(path);
    LoadedCheckpoint c;
    c.file = path;
    c.metadata = f.metadata();
    for (const auto& k : f.keys()) c.tensors.emplace(k, f.get(k).clone());
    auto crc = c.metadata.find("crc32c");
    auto st = c.metadata.find("step");
    if (crc == c.metadata.end() || st == c.metadata.end())
      throw CheckpointError(path.string() + ": __metadata__ lacks 'crc32c' or 'step' (not a cxrl training checkpoint)");
    if (crc->second != std::to_string(checksum(c.tensors)))
      throw CheckpointError(path.string() + ": content checksum mismatch (file corrupted after it was written)");
    c.step = std::stoll(st->second);
    return c;
  }

  const std::filesystem::path& dir() const { return dir_; }

  /// @brief CRC-32C over every tensor's bytes, in key order.
  /// @param tensors the tensors to digest
  static std::uint32_t checksum(const TensorMap& tensors) {
    std::vector<std::uint8_t> buf;
    for (const auto& [k, t0] : tensors) {
      auto t = t0.detach().to(torch::kCPU).contiguous();
      buf.insert(buf.end(), k.begin(), k.end());
      const auto* p = static_cast<const std::uint8_t*>(t.data_ptr());
      buf.insert(buf.end(), p, p + t.numel() * t.element_size());
    }
    return detail::crc32c(buf.data(), buf.size());
  }

 private:
  static std::string file_name(std::int64_t step) {
    char b[64];
    std::snprintf(b, sizeof b, "ckpt-%08lld.safetensors", static_cast<long long>(step));
    return b;
  }

  std::vector<std::pair<std::int64_t, std::filesystem::path>> list() const {
    static const std::regex re(R"(ckpt-(\d+)\.safetensors)");
    std::vector<std::pair<std::int64_t, std::filesystem::path>> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::smatch m;
      const auto name = e.path().filename().string();
      if (std::regex_match(name, m, re)) out.emplace_back(std::stoll(m[1]), e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::filesystem::path dir_;
  int keep_;
};

}  // namespace cxrl::io
