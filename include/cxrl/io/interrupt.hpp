/// @file
/// @brief SIGINT/SIGTERM as a polled flag, so long jobs finish their step, checkpoint and exit cleanly.
#pragma once

#include <atomic>
#include <csignal>

namespace cxrl::io {

namespace detail {
inline std::atomic<int>& interrupt_count() {
  static std::atomic<int> n{0};
  return n;
}
extern "C" inline void cxrl_on_signal(int) {
  // A second Ctrl-C means "now": restore the default action so the next one kills the process.
  if (interrupt_count().fetch_add(1) >= 1) std::signal(SIGINT, SIG_DFL);
}
}  // namespace detail

/// @brief Installs the handler for SIGINT and SIGTERM (idempotent). The first signal only sets the
/// flag; a second SIGINT terminates as usual.
inline void install_interrupt_handler() {
  std::signal(SIGINT, detail::cxrl_on_signal);
  std::signal(SIGTERM, detail::cxrl_on_signal);
}

/// @brief True once SIGINT or SIGTERM arrived after install_interrupt_handler().
inline bool interrupted() { return detail::interrupt_count().load() > 0; }

/// @brief Clears the flag (tests, or a program that handles one interruption and carries on).
inline void reset_interrupt() { detail::interrupt_count().store(0); }

}  // namespace cxrl::io
