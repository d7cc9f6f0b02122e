// Data-parallel scaling of one DDPO run on the phantom configuration (issue 12). Prints a table and one JSON line;
// asserts nothing.
//
// It runs `cxrl_mimic finetune` on the shipped phantom checkpoints with the same global batch four ways:
//   1 rank x 1 thread, 1 rank x 2 threads, 2 ranks x 1 thread (--nproc 2, per-rank batches halved),
//   and, for the reference program's `main`, two independent 1-thread runs side by side.
// Per configuration the figure is the mean epoch time over epochs 2.. (epoch 1 warms the allocator) taken from
// the run's metrics.jsonl (sampling + reward + advantage + training seconds, as rank 0 measured them).
// The scaling efficiency of 2 ranks over 1 is t(1 rank x 1 thread) / (2 * t(2 ranks x 1 thread)). Two runs side
// by side beat one run on 2 ranks when their common epoch time is below 2 * t(2 ranks).
//
// usage: bench_distributed [PATH/TO/cxrl_mimic] [epochs (default 3)] [batch_size per epoch, global (default 32)]
// Other processes on the machine distort the figures: run it on an idle machine.
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

pid_t start(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (!std::freopen(log.c_str(), "w", stdout) || !std::freopen(log.c_str(), "a", stderr)) std::_Exit(126);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

void wait_ok(pid_t pid, const fs::path& log) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("finetune failed, see " + log.string());
}

// Mean epoch seconds over epochs 2.. from a run folder's metrics.jsonl.
double epoch_seconds(const fs::path& run) {
  std::ifstream in(run / "metrics.jsonl");
  if (!in) throw std::runtime_error("no metrics.jsonl in " + run.string());
  std::vector<double> t;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("time/sampling_s")) continue;
    t.push_back(j["time/sampling_s"].get<double>() + j["time/reward_s"].get<double>() + j["time/advantage_s"].get<double>() +
                j["time/training_s"].get<double>());
  }
  if (t.size() < 2) throw std::runtime_error(run.string() + ": fewer than 2 epochs logged");
  double s = 0;
  for (std::size_t i = 1; i < t.size(); ++i) s += t[i];
  return s / static_cast<double>(t.size() - 1);
}

}  // namespace

int main(int argc, char** argv) try {
  const fs::path self = fs::canonical("/proc/self/exe");
  const std::string bin = argc > 1 ? argv[1] : (self.parent_path().parent_path() / "examples" / "cxrl_mimic").string();
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 3;
  const int global = argc > 3 ? std::atoi(argv[3]) : 32;
  if (!fs::exists(bin)) throw std::runtime_error(bin + " not found (pass the path of cxrl_mimic as the first argument)");
  if (epochs < 2 || global < 4 || global % 4) throw std::runtime_error("need epochs >= 2 and a global batch divisible by 4");
  const fs::path root = fs::temp_directory_path() / ("cxrl_bench_distributed_" + std::to_string(::getpid()));
  fs::create_directories(root);

  // The phantom main job's sampler settings; 2 minibatches per epoch per rank.
  auto args = [&](const std::string& name, int threads, int nproc) {
    const int per_rank = global / nproc;
    return std::vector<std::string>{bin, "finetune", "--out", (root / name).string(), "--epochs", std::to_string(epochs),
                                    "--steps", "10", "--timestep_fraction", "0.5", "--grid_prompts", "0", "--quiet",
                                    "--threads", std::to_string(threads), "--nproc", std::to_string(nproc),
                                    "--batch_size", std::to_string(per_rank / 2), "--num_batches", "2",
                                    "--train_batch_size", std::to_string(per_rank / 4)};
  };
  auto run_one = [&](const std::string& name, int threads, int nproc) {
    const auto log = root / (name + ".log");
    std::printf("running %s ...\n", name.c_str());
    std::fflush(stdout);
    wait_ok(start(args(name, threads, nproc), log), log);
    return epoch_seconds(root / name);
  };

  const double t11 = run_one("1rank_1thread", 1, 1);
  const double t12 = run_one("1rank_2threads", 2, 1);
  const double t21 = run_one("2ranks_1thread", 1, 2);
  std::printf("running 2 runs side by side ...\n");
  std::fflush(stdout);
  const pid_t a = start(args("side_a", 1, 1), root / "side_a.log");
  const pid_t b = start(args("side_b", 1, 1), root / "side_b.log");
  wait_ok(a, root / "side_a.log");
  wait_ok(b, root / "side_b.log");
  const double tside = 0.5 * (epoch_seconds(root / "side_a") + epoch_seconds(root / "side_b"));

  std::printf("\nglobal batch %d, epochs %d (mean over epochs 2..%d)\n", global, epochs, epochs);
  std::printf("%-28s %10s %10s\n", "configuration", "epoch s", "speed-up");
  std::printf("%-28s %10.2f %10.2f\n", "1 rank x 1 thread", t11, 1.0);
  std::printf("%-28s %10.2f %10.2f\n", "1 rank x 2 threads", t12, t11 / t12);
  std::printf("%-28s %10.2f %10.2f\n", "2 ranks x 1 thread", t21, t11 / t21);
  std::printf("%-28s %10.2f %10.2f  (runs/s per run pair: %.4f vs 2 ranks sequential %.4f)\n", "2 runs side by side", tside,
              t11 / tside, 2.0 / tside, 1.0 / t21);
  std::printf("scaling efficiency of 2 ranks over 1: %.2f; 2 threads over 1: %.2f\n", t11 / (2 * t21), t11 / (2 * t12));
  std::printf("for `main`: %s\n", 2 * t21 < tside ? "one run on 2 ranks at a time is faster" : "two 1-thread runs side by side are faster");

  nlohmann::json out{{"bench", "distributed"},
                     {"global_batch", global},
                     {"epochs", epochs},
                     {"epoch_s_1rank_1thread", t11},
                     {"epoch_s_1rank_2threads", t12},
                     {"epoch_s_2ranks_1thread", t21},
                     {"epoch_s_side_by_side", tside},
                     {"efficiency_2ranks", t11 / (2 * t21)},
                     {"efficiency_2threads", t11 / (2 * t12)},
                     {"main_prefers_2ranks", 2 * t21 < tside}};
  std::printf("%s\n", out.dump().c_str());
  fs::remove_all(root);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_distributed: %s\n", e.what());
  return 1;
}
