/// @file
/// @brief Starting the ranks of a data-parallel run on this machine, as `torchrun --nproc-per-node N` does: N copies of
///        this program with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set (core/distributed.hpp).
///
/// The launcher watches its ranks: when one fails (an error exit or a signal) it names that rank and stops the
/// others (SIGTERM, then SIGKILL after a grace period) instead of leaving them blocked in a collective; Ctrl-C is
/// forwarded to every rank so that all stop after the same epoch.
#pragma once

#include <cxrl/io/interrupt.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cxrl::core {

/// @brief This process's command line (from /proc/self/cmdline), to start copies of it.
inline std::vector<std::string> this_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string a;
  for (char c; in.get(c);) {
    if (c == '\0') {
      args.push_back(a);
      a.clear();
    } else {
      a += c;
    }
  }
  if (!a.empty()) args.push_back(a);
  if (args.empty()) throw std::runtime_error("this_command_line: /proc/self/cmdline is unreadable");
  return args;
}

/// @brief A TCP port on the loopback interface that was free a moment ago (for MASTER_PORT).
inline int free_loopback_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw std::runtime_error("free_loopback_port: socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(s);
  if (!ok) throw std::runtime_error("free_loopback_port: no free port");
  return ntohs(a.sin_port);
}

/**
 * @brief Runs @p nproc copies of @p argv as local ranks and waits for them.
 * @param nproc ranks (≥ 2)
 * @param argv program and arguments (argv[0] is replaced by /proc/self/exe, i.e. this very binary)
 * @param log where the launcher reports rank failures
 * @param grace seconds between SIGTERM and SIGKILL when stopping the other ranks
 * @return 0 when every rank succeeded, 130 when the run was interrupted, else the failing rank's exit status
 */
inline int launch_local_ranks(int nproc, std::vector<std::string> argv, std::ostream& log, int grace = 10) {
  if (nproc < 2) throw std::invalid_argument("launch_local_ranks: nproc must be >= 2");
  const int port = free_loopback_port();
  io::install_interrupt_handler();
  std::map<pid_t, int> ranks;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("launch_local_ranks: fork failed");
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      ::execv("/proc/self/exe", a.data());
      std::perror("launch_local_ranks: execv /proc/self/exe");
      std::_Exit(127);
    }
    ranks[pid] = r;
  }
  int result = 0;
  bool forwarded = false, stopping = false;
  auto stop_others = [&](int sig) {
    for (const auto& [pid, r] : ranks) ::kill(pid, sig);
  };
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (!ranks.empty()) {
    if (io::interrupted() && !forwarded) {
      stop_others(SIGINT);  // every rank finishes its epoch, checkpoints and exits
      forwarded = true;
    }
    if (stopping && std::chrono::steady_clock::now() > deadline) stop_others(SIGKILL);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const int r = ranks.at(pid);
    ranks.erase(pid);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code == 0 || (forwarded && code == 130)) {
      if (code == 130) result = 130;
      continue;
    }
    if (!stopping) {
      log << "launch: rank " << r << " of " << nproc << " "
          << (WIFEXITED(status) ? "exited with status " + std::to_string(code) : "was killed by signal " + std::to_string(WTERMSIG(status)))
          << "; stopping the other ranks\n";
      result = code;
      stopping = true;
      stop_others(SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace);
    }
  }
  return result;
}

}  // namespace cxrl::core
