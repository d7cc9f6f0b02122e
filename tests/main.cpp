// Catch2 main, kept out of the precompiled header. Each test runner first re-executes itself under the CPU
// kernels the programs choose (io/cpu_kernels.hpp), so the goldens are checked under the same BLAS core and ATen
// kernel level that cxrl_mimic and knee_rl run with.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cxrl/io/cpu_kernels.hpp>

int main(int argc, char** argv) {
  cxrl::io::use_best_cpu_kernels(argv);
  return Catch::Session().run(argc, argv);
}
