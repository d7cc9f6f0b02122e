/// @file
/// @brief A fine-tuning run's folder: one writer at a time, a resume that refuses changed settings, and the
///        per-epoch metrics.jsonl that survives a kill (its half-written last line is dropped).
///
/// Layout (what app::finetune writes into it):
/// ```
/// config.json                            resolved settings (a resumed run must match them)
/// checkpoints/ckpt-<epoch>.safetensors   adapters + AdamW + RNG + epoch, atomic, the last keep_checkpoints
/// events.out.tfevents.*                  TensorBoard scalars and anchor-vs-policy image grids
/// metrics.jsonl                          one JSON object per epoch (the same scalars, for scripts)
/// grids/epoch_<k>.png                    fixed held-out prompts: anchor (top) vs policy (bottom) after k epochs
///                                        (k = 0, every grid_every-th epoch, and the last)
/// curves.png                             reward curves: policy and anchor score per term per epoch (± SE), KL, clipping
/// adapters.safetensors                   final LoRA + ACE (policy::LoraAcePolicy::load_adapters)
/// metrics.json                           summary of the run
/// ```
#pragma once

#include <cxrl/io/json_file.hpp>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::app {

/// @brief The records of a JSON-lines file; a half-written last line from a killed run is dropped.
/// @param p the file (absent: no records)
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      v.push_back(nlohmann::json::parse(line));
    } catch (const std::exception&) {
    }
  }
  return v;
}

/// @brief Keeps the records of metrics.jsonl up to epoch @p next_epoch (1-based `epoch` keys), so that a resumed run
///        rewrites the epochs after its checkpoint instead of logging them twice.
/// @param p the file
/// @param next_epoch the resumed trainer's epoch counter
inline void truncate_jsonl(const std::filesystem::path& p, int64_t next_epoch) {
  if (!std::filesystem::exists(p)) return;
  std::ifstream in(p);
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).at("epoch").get<int64_t>() <= next_epoch) keep.push_back(line);
    } catch (const std::exception&) {
      // a half-written last line from an interrupted run: dropped
    }
  }
  in.close();
  std::ofstream out(p, std::ios::trunc);
  for (const auto& l : keep) out << l << '\n';
}

/// @brief An exclusive lock on a run folder (flock on `<run>/.lock`), so that two processes never write one run.
class RunFolderLock {
 public:
  /// @param run the run folder (must exist)
  /// @throws std::runtime_error naming the lock file when another process holds it
  explicit RunFolderLock(const std::filesystem::path& run) : path_(run / ".lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(path_.string() + ": cannot create the run lock (" + std::strerror(errno) + ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw std::runtime_error("another process is running in " + run.string() + " (it holds " + path_.string() + ")");
    }
  }
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  ~RunFolderLock() { ::close(fd_); }  // closing releases the lock

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

/// @brief Settings that may differ between a run and its resumption: how long it runs, how it is executed and how
///        often it draws grids, never what it computes.
inline const std::set<std::string>& resumable_settings() {
  static const std::set<std::string> keys{"epochs", "threads", "keep_checkpoints", "grid_every", "out", "nproc", "dist_timeout",
                                          "quiet", "resume", "precision_used", "precision_timing", "cpu_kernels"};
  return keys;
}

/// @brief Settings added after runs were first written, each with the value every earlier run used: a saved
///        config.json without the key counts as holding that value, so those runs can still be resumed.
inline const nlohmann::json& settings_added_later() {
  static const nlohmann::json defaults{{"kl_weight", 0.0}, {"precision", "fp32"}};
  return defaults;
}

/**
 * @brief Opens (creates) a run folder for writing, held locked for this object's life.
 *
 * A folder whose previous start failed before its first checkpoint (bad assets, Ctrl-C while loading) holds no
 * run yet and is started again. A folder that holds a run is refused unless @p resume, and on resume every
 * setting outside resumable_settings() must equal the saved config.json's (a key it lacks counts as its
 * settings_added_later() value), or the error lists each difference.
 */
class RunFolder {
 public:
  /**
   * @param dir the run folder
   * @param resolved this run's settings (what config.json will hold)
   * @param resume continue the run in @p dir
   * @param quiet no notes on stderr
   * @throws std::invalid_argument naming the folder and the differing keys
   */
  RunFolder(const std::filesystem::path& dir, const nlohmann::json& resolved, bool resume, bool quiet)
      : dir_((std::filesystem::create_directories(dir), dir)), lock_(dir_) {
    namespace fs = std::filesystem;
    const auto cfg = dir_ / "config.json";
    if (fs::exists(cfg) && !started()) {
      if (!quiet) std::cerr << "finetune: " << dir_.string() << " holds a run that stopped before its first checkpoint; starting it again\n";
      fs::remove(cfg);
    }
    if (!fs::exists(cfg)) return;
    if (!resume)
      throw std::invalid_argument("finetune: " + dir_.string() +
                                  " already holds a run (config.json); pass --resume to continue it, or choose another --out");
    auto saved = io::read_json(cfg);
    for (auto it = settings_added_later().begin(); it != settings_added_later().end(); ++it)
      if (!saved.contains(it.key())) saved[it.key()] = *it;
    std::string diff;
    for (auto it = resolved.begin(); it != resolved.end(); ++it)
      if (!resumable_settings().count(it.key()) && (!saved.contains(it.key()) || saved.at(it.key()) != *it))
        diff += "\n  " + it.key() + ": run " + (saved.contains(it.key()) ? saved.at(it.key()).dump() : "(absent)") + ", now " + it->dump();
    if (!diff.empty()) throw std::invalid_argument("finetune --resume: settings differ from " + cfg.string() + ":" + diff);
  }

  /// @brief The folder.
  const std::filesystem::path& dir() const { return dir_; }

 private:
  bool started() const {
    namespace fs = std::filesystem;
    if (fs::exists(dir_ / "metrics.jsonl")) return true;
    if (fs::is_directory(dir_ / "checkpoints"))
      for (const auto& e : fs::directory_iterator(dir_ / "checkpoints"))
        if (e.path().extension() == ".safetensors") return true;
    return false;
  }
  std::filesystem::path dir_;
  RunFolderLock lock_;
};

}  // namespace cxrl::app
