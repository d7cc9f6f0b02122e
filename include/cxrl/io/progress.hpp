/// @file
/// @brief Progress output for long work: a redrawn bar with ETA on a terminal, plain lines otherwise.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace cxrl::io {

/// @brief Progress over a known number of units (epochs, steps, images).
///
/// On a TTY the line is redrawn in place (`\r`); when stdout/stderr is a file or pipe one plain
/// line is printed per update at most every `plain_every_s` seconds, so logs stay readable.
class Progress {
 public:
  /// @param label what is being done, e.g. "finetune cxrl"
  /// @param total number of units
  /// @param quiet print nothing at all
  /// @param stream where to print (stderr by default, so stdout can carry JSON)
  Progress(std::string label, long total, bool quiet = false, std::FILE* stream = stderr)
      : label_(std::move(label)), total_(total), quiet_(quiet), out_(stream),
        tty_(::isatty(::fileno(stream)) != 0), start_(clock::now()), last_(start_ - std::chrono::hours(1)) {}

  /// @brief Reports that @p done units are finished; @p status is free text (phase, running reward).
  /// @param done units finished so far
  /// @param status short text shown after the counter
  void update(long done, const std::string& status = {}) {
    if (quiet_) return;
    const auto now = clock::now();
    const double el = std::chrono::duration<double>(now - start_).count();
    const bool final = done >= total_;
    if (!tty_ && !final && std::chrono::duration<double>(now - last_).count() < plain_every_s) return;
    last_ = now;
    const long here = done - first_;  // units done by this process: a resumed run's rate is measured from its restart
    const double eta = here > 0 ? el / static_cast<double>(here) * static_cast<double>(total_ - done) : 0.0;
    if (tty_) {
      const int width = 24;
      const int fill = total_ > 0 ? static_cast<int>(width * std::min(1.0, double(done) / double(total_))) : 0;
      std::string bar(static_cast<std::size_t>(fill), '#');
      bar.resize(width, '.');
      std::fprintf(out_, "\r\033[K%s [%s] %ld/%ld  %s  elapsed %s  eta %s", label_.c_str(), bar.c_str(), done, total_,
                   status.c_str(), hms(el).c_str(), hms(eta).c_str());
      if (final) std::fputc('\n', out_);
    } else {
      std::fprintf(out_, "%s %ld/%ld  %s  elapsed %s  eta %s\n", label_.c_str(), done, total_, status.c_str(),
                   hms(el).c_str(), hms(eta).c_str());
    }
    std::fflush(out_);
  }

  /// @brief Declares @p done units finished before this process started (a resumed run), so that the ETA comes
  ///        from the rate of this process alone. @param done units already done
  void start_at(long done) { first_ = done; }

  /// @brief Seconds between plain-line updates when not on a terminal.
  double plain_every_s = 5.0;

 private:
  using clock = std::chrono::steady_clock;
  long first_ = 0;
  static std::string hms(double s) {
    const long t = static_cast<long>(s + 0.5);
    char b[32];
    if (t >= 3600) std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
    return b;
  }
  std::string label_;
  long total_;
  bool quiet_;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_, last_;
};

}  // namespace cxrl::io
