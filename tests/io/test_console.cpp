#include <cxrl/io/blas_kernel.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>

TEST_CASE("progress prints plain lines with counts when not on a terminal") {
  std::FILE* f = std::tmpfile();
  cxrl::io::Progress p("finetune", 4, false, f);
  p.plain_every_s = 0.0;
  p.update(1, "reward 0.10");
  p.update(4, "reward 0.30");
  std::rewind(f);
  char buf[512] = {};
  const auto n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string s(buf, n);
  CHECK_THAT(s, Catch::Contains("finetune 1/4  reward 0.10") && Catch::Contains("finetune 4/4  reward 0.30"));
  CHECK(s.find('\r') == std::string::npos);
}

TEST_CASE("quiet progress prints nothing") {
  std::FILE* f = std::tmpfile();
  cxrl::io::Progress p("x", 2, true, f);
  p.update(2);
  CHECK(std::ftell(f) == 0);
  std::fclose(f);
}

TEST_CASE("SIGINT sets the interrupt flag instead of killing the process") {
  cxrl::io::reset_interrupt();
  cxrl::io::install_interrupt_handler();
  CHECK_FALSE(cxrl::io::interrupted());
  std::raise(SIGINT);
  CHECK(cxrl::io::interrupted());
  cxrl::io::reset_interrupt();
  std::signal(SIGINT, SIG_DFL);
}

TEST_CASE("a generic OpenBLAS core is replaced by the best kernel family the CPU's features allow") {
  using cxrl::io::better_openblas_core;
  using cxrl::io::CpuFeatures;
  const CpuFeatures sapphire{true, true, true, true}, skylake{true, true, true, false}, haswell{true, true, false, false},
      old{false, false, false, false};
  // The Sapphire Rapids Xeon under OpenBLAS 0.3.21: detected as Prescott, Cooperlake kernels run 5x faster.
  CHECK(better_openblas_core("Prescott", sapphire) == std::optional<std::string>("Cooperlake"));
  CHECK(better_openblas_core("prescott", skylake) == std::optional<std::string>("SkylakeX"));
  CHECK(better_openblas_core("Sandybridge", haswell) == std::optional<std::string>("Haswell"));
  // A detection as good as the features allow, or better than this table ranks them, is kept.
  CHECK_FALSE(better_openblas_core("Cooperlake", sapphire));
  CHECK_FALSE(better_openblas_core("SkylakeX", skylake));
  CHECK_FALSE(better_openblas_core("Zen", haswell));
  CHECK_FALSE(better_openblas_core("Prescott", old));
  // A name this table does not know (a newer OpenBLAS, another architecture) is never second-guessed.
  CHECK_FALSE(better_openblas_core("NeoverseN1", sapphire));
  CHECK(cxrl::io::openblas_core_tier("SapphireRapids") == 5);
  CHECK(cxrl::io::openblas_core_tier("Haswell") == 3);
}

TEST_CASE("the BLAS kernel line names the core this process runs") {
  const auto core = cxrl::io::openblas_core();
  const std::string line = cxrl::io::blas_kernel_description();
  if (core) CHECK_THAT(line, Catch::StartsWith("BLAS: OpenBLAS core " + *core));
  else CHECK_THAT(line, Catch::StartsWith("BLAS: not OpenBLAS"));
}
