/// @file
/// @brief Makes OpenBLAS and ATen use the best kernels the CPU supports, when their own detection fell back to
///        generic ones.
///
/// OpenBLAS built with DYNAMIC_ARCH picks its kernels once, when the library loads, from the CPU's family and model
/// (driver/others/dynamic.c). A model newer than the library, such as a Sapphire Rapids Xeon under Debian's 0.3.21,
/// is not in its table, and it falls back to the SSE3 "Prescott" core. Measured on that Xeon (1 thread, fp32 GEMM
/// 1024²): 31 GFLOP/s as detected, 107 with `OPENBLAS_CORETYPE=SkylakeX`, 155 with `Cooperlake`. LibTorch's CPU
/// matmuls and convolution fallbacks go through this BLAS, so the misdetection alone cost the DDPO epoch 1.7×.
///
/// ATen (LibTorch's own element-wise, softmax and reduction kernels) has the same failure one level up: Debian's
/// LibTorch 1.13 carries AVX-512 builds of them but dispatches to the AVX2 ones on both CPUs this project has run
/// on (an Emerald Rapids Xeon and a Zen 5 EPYC, both with AVX-512 F/DQ/BW/VL). Measured on the EPYC (1 thread,
/// Python torch 1.13.1, `ATEN_CPU_CAPABILITY=avx512` against the default): exp 3.9×, SiLU 3.5×, softmax 2.4×,
/// GELU 1.25× faster; on the Xeon GELU 1.5×, softmax 1.6×, SiLU 2.0×.
///
/// Neither choice can be changed after load, so the fix is to re-execute the program once with
/// `OPENBLAS_CORETYPE` and `ATEN_CPU_CAPABILITY` set. A user's own setting of either always wins, and so does a
/// detection at least as good as what the CPU's features allow. Like retain_freed_memory(), programs (and the test
/// runners, so the goldens are checked under the kernels the programs use) call this at start; a library never
/// re-executes a user's process behind their back.
#pragma once

#include <ATen/Version.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#if defined(__linux__)
#include <dlfcn.h>
#include <unistd.h>
#endif

namespace cxrl::io {

namespace detail {
// Kernel names are compared case-insensitively ("Haswell" from OpenBLAS, "AVX2" from ATen, users' spellings).
inline std::string ascii_lower(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return lower;
}
}  // namespace detail

/// @brief The vector and matrix extensions that decide which OpenBLAS x86-64 kernel family can run.
struct CpuFeatures {
  bool avx = false;
  bool avx2_fma = false;    ///< AVX2 with FMA3: Haswell-class kernels
  bool avx512 = false;      ///< AVX-512 F, DQ, BW and VL: SkylakeX kernels
  bool avx512_bf16 = false; ///< AVX-512 BF16 on top: Cooperlake kernels (OpenBLAS's sbgemm)
};

/// @brief This CPU's features, read through the compiler's cpuid builtins; all false off x86-64.
inline CpuFeatures cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx = __builtin_cpu_supports("avx");
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
#endif
  return f;
}

/// @brief The tier of an OpenBLAS x86-64 core name, by the widest instructions its kernels use: 1 SSE, 2 AVX,
///        3 AVX2, 4 AVX-512, 5 AVX-512 BF16; 0 for a name this table does not know (never replaced).
/// Names as `openblas_get_corename()` returns them and `OPENBLAS_CORETYPE` accepts them (OpenBLAS 0.3.21,
/// driver/others/dynamic.c, corename[]), compared case-insensitively.
inline int openblas_core_tier(std::string_view name) {
  struct Tier { std::string_view name; int tier; };
  static constexpr std::array<Tier, 25> table{{
      {"katmai", 1}, {"coppermine", 1}, {"northwood", 1}, {"prescott", 1}, {"banias", 1}, {"atom", 1},
      {"core2", 1}, {"penryn", 1}, {"dunnington", 1}, {"nehalem", 1}, {"athlon", 1}, {"opteron", 1},
      {"opteron_sse3", 1}, {"barcelona", 1}, {"nano", 1}, {"sandybridge", 2}, {"bulldozer", 2},
      {"piledriver", 2}, {"haswell", 3}, {"zen", 3}, {"steamroller", 3}, {"excavator", 3}, {"skylakex", 4},
      {"cooperlake", 5}, {"sapphirerapids", 5}}};
  const std::string lower = detail::ascii_lower(name);
  for (const Tier& t : table)
    if (t.name == lower) return t.tier;
  return 0;
}

/// @brief The OpenBLAS core to force, or nullopt to keep the detected one: only when the detection is a known
///        name of a lower tier than the best kernel family the CPU's features allow.
inline std::optional<std::string> better_openblas_core(std::string_view detected, const CpuFeatures& cpu) {
  const int have = openblas_core_tier(detected);
  if (have == 0) return std::nullopt;
  struct Choice { bool ok; const char* name; };
  for (const Choice& c : {Choice{cpu.avx512_bf16, "Cooperlake"}, Choice{cpu.avx512, "SkylakeX"},
                          Choice{cpu.avx2_fma, "Haswell"}, Choice{cpu.avx, "Sandybridge"}})
    if (c.ok) return openblas_core_tier(c.name) > have ? std::optional<std::string>(c.name) : std::nullopt;
  return std::nullopt;
}

/// @brief The core OpenBLAS runs in this process ("Zen", "Prescott", …), or nullopt when the process's BLAS is not
///        OpenBLAS. Looked up by symbol, so nothing links against OpenBLAS directly.
inline std::optional<std::string> openblas_core() {
#if defined(__linux__)
  using CoreName = char* (*)();
  if (auto* fn = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
    if (const char* name = fn()) return std::string(name);
#endif
  return std::nullopt;
}

/// @brief ATen's kernel level in this process, as `torch.__config__.show()` prints it ("AVX2", "AVX512",
///        "DEFAULT"), or nullopt where the configuration string does not say.
inline std::optional<std::string> aten_cpu_capability() {
  const std::string cfg = at::show_config();
  const std::string key = "CPU capability usage: ";
  const auto at = cfg.find(key);
  if (at == std::string::npos) return std::nullopt;
  const auto from = at + key.size();
  const auto to = cfg.find_first_of(" \n", from);
  return cfg.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

/// @brief The `ATEN_CPU_CAPABILITY` to force, or nullopt to keep the detected level: "avx512" when ATen runs its
///        AVX2 or default kernels on a CPU with AVX-512 F, DQ, BW and VL (what its AVX512 build requires,
///        aten/src/ATen/native/DispatchStub.cpp).
inline std::optional<std::string> better_aten_capability(std::string_view detected, const CpuFeatures& cpu) {
  if (!cpu.avx512) return std::nullopt;
  const std::string lower = detail::ascii_lower(detected);
  return lower == "avx2" || lower == "default" ? std::optional<std::string>("avx512") : std::nullopt;
}

/// @brief One line for a run's log and a benchmark's header: which BLAS core and ATen kernel level this process
///        uses, and whether each was detected or set.
inline std::string cpu_kernels_description() {
  auto origin = [](const char* var) {
    const char* v = std::getenv(var);
    return v ? std::string(" (") + var + "=" + v + ")" : std::string(" (as detected)");
  };
  const auto core = openblas_core();
  std::string line = core ? "BLAS: OpenBLAS core " + *core + origin("OPENBLAS_CORETYPE")
                          : "BLAS: not OpenBLAS (kernel choice left to the library)";
  const auto cap = aten_cpu_capability();
  return line + "; ATen kernels: " + cap.value_or("unknown") + origin("ATEN_CPU_CAPABILITY");
}

/// @brief Re-executes the program once with `OPENBLAS_CORETYPE` and/or `ATEN_CPU_CAPABILITY` set when OpenBLAS or
///        ATen fell back to kernels below what the CPU supports and the user has not chosen; otherwise returns.
///        Prints each choice to stderr first.
/// Call at the top of main(), before any thread starts. Returns (without re-executing) where /proc/self/exe is
/// unavailable; the program then runs on the detected kernels, only slower.
inline void use_best_cpu_kernels(char** argv) {
#if defined(__linux__)
  const CpuFeatures cpu = cpu_features();
  std::optional<std::string> core, blas, cap, aten;
  if (!std::getenv("OPENBLAS_CORETYPE") && (core = openblas_core())) blas = better_openblas_core(*core, cpu);
  if (!std::getenv("ATEN_CPU_CAPABILITY") && (cap = aten_cpu_capability())) aten = better_aten_capability(*cap, cpu);
  if (!blas && !aten) return;
  if (blas)
    std::fprintf(stderr, "[cxrl] BLAS: OpenBLAS detected core %s on a CPU that supports %s kernels; "
                         "re-running with OPENBLAS_CORETYPE=%s (set it yourself to choose another)\n",
                 core->c_str(), blas->c_str(), blas->c_str());
  if (aten)
    std::fprintf(stderr, "[cxrl] ATen: LibTorch chose its %s kernels on a CPU with AVX-512; re-running with "
                         "ATEN_CPU_CAPABILITY=%s (set it yourself to choose another)\n",
                 cap->c_str(), aten->c_str());
  std::fflush(stderr);
  if ((blas && setenv("OPENBLAS_CORETYPE", blas->c_str(), 1) != 0) ||
      (aten && setenv("ATEN_CPU_CAPABILITY", aten->c_str(), 1) != 0))
    return;
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "[cxrl] re-running failed; continuing on the detected kernels\n");
  if (blas) unsetenv("OPENBLAS_CORETYPE");
  if (aten) unsetenv("ATEN_CPU_CAPABILITY");
#else
  (void)argv;
#endif
}

}  // namespace cxrl::io
