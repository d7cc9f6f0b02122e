/// @file
/// @brief Data parallelism over torch's c10d process groups (Gloo on CPU, NCCL on CUDA): the context a Trainer takes
///        to run one DDPO run across processes, GPUs and machines (ddpo-pytorch does the same through accelerate).
///
/// A Distributed is made from torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
/// `MASTER_PORT`) or from explicit options. Rank 0 serves a TCPStore at MASTER_ADDR:MASTER_PORT through which the
/// ranks find each other; the process group then runs the collectives. One process is the world-size-1 case: no
/// store, no group, every collective returns its input.
///
/// Failures are errors, never hangs: every collective waits at most `timeout` (Gloo/NCCL), and an error names this
/// rank, the operation and what the other side did (exited, hung, refused).
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::core {

/// @brief The collective backend.
enum class DistributedBackend {
  gloo,  ///< CPU tensors (and CUDA tensors through host copies); every LibTorch build has it
  nccl,  ///< CUDA tensors; LibTorch builds with CUDA only
};

/// @brief How to join a process group.
struct DistributedOptions {
  int rank = 0;                        ///< this process, 0 … world_size − 1
  int world_size = 1;                  ///< processes in the run
  int local_rank = 0;                  ///< rank on this machine (selects the GPU)
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's store
  int master_port = 29500;             ///< port of rank 0's store
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  ///< limit of every wait (connect and collectives)
  DistributedBackend backend = DistributedBackend::gloo;        ///< collectives

  /// @brief From torchrun's variables; absent ones keep their defaults (one process).
  /// @throws std::invalid_argument naming the variable and what was expected
  static DistributedOptions from_env() {
    DistributedOptions o;
    auto num = [](const char* var, int lo, int hi, int& out) {
      const char* v = std::getenv(var);
      if (!v || !*v) return false;
      char* end = nullptr;
      const long x = std::strtol(v, &end, 10);
      if (*end != '\0' || x < lo || x > hi)
        throw std::invalid_argument(std::string("environment variable ") + var + "='" + v + "': expected an integer in [" +
                                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out = static_cast<int>(x);
      return true;
    };
    const bool has_ws = num("WORLD_SIZE", 1, 1 << 20, o.world_size);
    const bool has_rank = num("RANK", 0, (1 << 20) - 1, o.rank);
    if (has_ws != has_rank) throw std::invalid_argument("RANK and WORLD_SIZE must be set together (torchrun sets both)");
    if (o.rank >= o.world_size)
      throw std::invalid_argument("RANK=" + std::to_string(o.rank) + " must be below WORLD_SIZE=" + std::to_string(o.world_size));
    num("LOCAL_RANK", 0, 1 << 16, o.local_rank);
    num("MASTER_PORT", 1, 65535, o.master_port);
    if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.master_addr = a;
    return o;
  }
};

/// @brief A process group, or the single-process case (see the file comment).
class Distributed {
 public:
  /// @brief One process: rank 0 of 1, collectives are identities.
  Distributed() = default;

  /// @brief Joins the group described by @p o (no-op for world_size 1).
  /// @throws std::runtime_error naming the address, the port and this rank when the store cannot be served or reached
  explicit Distributed(const DistributedOptions& o) : opt_(o) {
    if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
      throw std::invalid_argument("Distributed: rank " + std::to_string(o.rank) + " is not in [0, world_size = " + std::to_string(o.world_size) + ")");
    if (o.world_size == 1) return;
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<std::size_t>(o.world_size);
    so.waitWorkers = true;
    so.timeout = o.timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(o.rank) + ": " +
                               (o.rank == 0 ? "cannot serve the rendezvous store on " : "cannot reach rank 0's rendezvous store at ") +
                               o.master_addr + ":" + std::to_string(o.master_port) + " within " + std::to_string(o.timeout.count() / 1000) +
                               " s (" + (o.rank == 0 ? "is the port already in use? set MASTER_PORT" : "did rank 0 start? is MASTER_ADDR right?") +
                               "): " + first_line(e.what()));
    }
    if (o.backend == DistributedBackend::nccl) {
#if defined(USE_C10D_NCCL)
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = o.timeout;
      pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, o.rank, o.world_size, no);
#else
      throw std::invalid_argument("Distributed: the NCCL backend needs a LibTorch built with CUDA and NCCL (this one has Gloo only)");
#endif
    } else {
      auto go = c10d::ProcessGroupGloo::Options::create();
      go->timeout = o.timeout;
      // On one machine the ranks talk over loopback; across machines Gloo picks the interface of this host's name
      // (GLOO_SOCKET_IFNAME overrides, as in PyTorch).
      const bool local = o.master_addr == "localhost" || o.master_addr.rfind("127.", 0) == 0;
      go->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                  : c10d::ProcessGroupGloo::createDefaultDevice());
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, o.rank, o.world_size, go);
    }
  }

  /// @brief This process's rank.
  int rank() const { return opt_.rank; }
  /// @brief Processes in the group.
  int world_size() const { return opt_.world_size; }
  /// @brief Rank on this machine.
  int local_rank() const { return opt_.local_rank; }
  /// @brief Whether this is rank 0 (the one that writes files).
  bool is_main() const { return opt_.rank == 0; }
  /// @brief The options.
  const DistributedOptions& options() const { return opt_; }

  /// @brief Element-wise sum over ranks, in place (one collective for the whole list: the tensors travel in one
  ///        flat buffer). @param ts tensors, each of the same shape and dtype on every rank
  void all_reduce_sum(std::vector<torch::Tensor>& ts) {
    if (!pg_ || ts.empty()) return;
    const auto dtype = ts.front().scalar_type();
    std::vector<torch::Tensor> flat;
    for (const auto& t : ts) flat.push_back(t.detach().reshape({-1}).to(dtype));
    std::vector<torch::Tensor> buf{torch::cat(flat)};
    run("all_reduce", [&] { return pg_->allreduce(buf); });
    int64_t off = 0;
    torch::NoGradGuard ng;
    for (auto& t : ts) {
      t.copy_(buf[0].narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }

  /// @brief The rows of every rank's @p local concatenated in rank order (each rank must pass the same shape).
  /// @param local [n, …]
  torch::Tensor all_gather_cat(const torch::Tensor& local) {
    if (!pg_) return local;
    auto in = local.contiguous();
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(in));
    std::vector<at::Tensor> inputs{in};
    run("all_gather", [&] { return pg_->allgather(out, inputs); });
    return torch::cat(out[0]);
  }

  /// @brief Every rank's strings, concatenated in rank order (the counts may differ between ranks).
  /// @param local this rank's strings
  std::vector<std::string> all_gather_strings(const std::vector<std::string>& local) {
    if (!pg_) return local;
    std::string joined;
    std::vector<int64_t> lens;
    for (const auto& s : local) {
      joined += s;
      lens.push_back(static_cast<int64_t>(s.size()));
    }
    // Sizes first (count, bytes), then the bytes padded to the largest.
    auto sizes = all_gather_cat(torch::tensor({static_cast<int64_t>(local.size()), static_cast<int64_t>(joined.size())}, torch::kLong).view({1, 2}));
    const int64_t max_n = sizes.select(1, 0).max().item<int64_t>(), max_b = sizes.select(1, 1).max().item<int64_t>();
    auto l = torch::zeros({1, std::max<int64_t>(max_n, 1)}, torch::kLong);
    for (std::size_t i = 0; i < lens.size(); ++i) l[0][static_cast<int64_t>(i)] = lens[i];
    auto b = torch::zeros({1, std::max<int64_t>(max_b, 1)}, torch::kUInt8);
    if (!joined.empty()) std::memcpy(b.data_ptr<uint8_t>(), joined.data(), joined.size());
    const auto all_l = all_gather_cat(l), all_b = all_gather_cat(b);
    std::vector<std::string> out;
    for (int r = 0; r < world_size(); ++r) {
      const auto n = sizes[r][0].item<int64_t>();
      const auto* bytes = reinterpret_cast<const char*>(all_b[r].data_ptr<uint8_t>());
      int64_t off = 0;
      for (int64_t i = 0; i < n; ++i) {
        const auto len = all_l[r][i].item<int64_t>();
        out.emplace_back(bytes + off, static_cast<std::size_t>(len));
        off += len;
      }
    }
    return out;
  }

  /// @brief Throws unless every rank passes the same @p value (e.g. a run's resolved settings).
  /// @param what what the value is, for the message
  /// @param value this rank's value
  void require_same(const std::string& what, const std::string& value) {
    if (!pg_) return;
    const auto all = all_gather_strings({value});
    std::string differ;
    for (int r = 0; r < world_size(); ++r)
      if (all[static_cast<std::size_t>(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
    if (!differ.empty())
      throw std::runtime_error("rank " + std::to_string(rank()) + ": " + what + " differs between ranks: rank(s) " + differ +
                               " disagree with rank 0 (every rank must be started with the same settings)");
  }

  /// @brief Waits for every rank.
  void barrier() {
    if (pg_) run("barrier", [&] { return pg_->barrier(); });
  }

 private:
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  template <class F>
  void run(const char* op, F&& start) {
    try {
      start()->wait(opt_.timeout);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + ": " + op +
                               " failed: another rank exited, crashed or did not arrive within " +
                               std::to_string(opt_.timeout.count() / 1000) + " s (" + first_line(e.what()) + ")");
    }
  }

  DistributedOptions opt_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
};

}  // namespace cxrl::core
