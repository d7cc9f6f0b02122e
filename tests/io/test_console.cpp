#include <cxrl/io/cpu_kernels.hpp>
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
  // Zen 5 under 0.3.21 is detected as Haswell; its AVX-512 BF16 allows the Cooperlake kernels (2x fp32 GEMM there).
  CHECK(better_openblas_core("Haswell", sapphire) == std::optional<std::string>("Cooperlake"));
}

TEST_CASE("ATen's AVX2 kernels are replaced by its AVX-512 ones only where the CPU has AVX-512 F, DQ, BW and VL") {
  using cxrl::io::better_aten_capability;
  using cxrl::io::CpuFeatures;
  const CpuFeatures avx512{true, true, true, false}, avx2{true, true, false, false};
  CHECK(better_aten_capability("AVX2", avx512) == std::optional<std::string>("avx512"));
  CHECK(better_aten_capability("DEFAULT", avx512) == std::optional<std::string>("avx512"));
  CHECK_FALSE(better_aten_capability("AVX512", avx512));
  CHECK_FALSE(better_aten_capability("AVX2", avx2));
  CHECK_FALSE(better_aten_capability("VSX", avx512));  // another architecture's name is left alone
}

TEST_CASE("the CPU kernel line names the BLAS core and the ATen kernel level this process runs") {
  const auto core = cxrl::io::openblas_core();
  const std::string line = cxrl::io::cpu_kernels_description();
  if (core) CHECK_THAT(line, Catch::StartsWith("BLAS: OpenBLAS core " + *core));
  else CHECK_THAT(line, Catch::StartsWith("BLAS: not OpenBLAS"));
  const auto cap = cxrl::io::aten_cpu_capability();
  REQUIRE(cap);  // LibTorch 1.13's configuration string carries it
  CHECK_THAT(line, Catch::Contains("; ATen kernels: " + *cap));
  // The test runner re-executes itself under the chosen kernels (tests/main.cpp), so on a CPU with AVX-512 this
  // process runs ATen's AVX-512 kernels unless the environment chose another level.
  const char* chosen = std::getenv("ATEN_CPU_CAPABILITY");
  if (cxrl::io::cpu_features().avx512 && (!chosen || std::string(chosen) == "avx512")) CHECK(*cap == "AVX512");
}
