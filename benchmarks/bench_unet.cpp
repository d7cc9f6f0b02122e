// UNet2DConditionModel throughput, in fp32 and in bf16 (autocast, as LoraAcePolicy runs it): forward and
// forward+backward for the shipped phantom anchor's UNet at main's sampling batch (16 prompts, doubled for CFG, on
// 16² latents), the unet_gray fixture config, and a ~75M-parameter SD-shaped config at 32x32 latents. Reports
// images/s, achieved GFLOP/s (matmul + conv FLOPs counted by cxrl::nn::FlopCounter during one forward; backward
// counted as 2x forward), the GFLOP/s of a square GEMM in the same precision measured in this process, their
// ratio, bf16's speed-up over fp32, and peak RSS. Runs on CUDA when available.
// Also the attention core at the shipped phantom anchor's shapes (batch 64 = 32 prompts with CFG, 2 heads): the
// no-grad path (each head on its strided columns) against the autograd path's forward (head-major copies) on the
// same inputs, which is what sampling ran before the no-grad path existed.
// Usage: bench_unet [path/to/unet_gray/config.json] [seconds per measurement]
#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/nn/attention.hpp>
#include <cxrl/nn/precision.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

namespace fs = std::filesystem;
using cxrl::nn::UNet2DConditionConfig;
using cxrl::nn::UNet2DConditionModel;
using Clock = std::chrono::steady_clock;

namespace {

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Runs f repeatedly for at least `seconds` (after one warm-up call); returns seconds per call.
template <class F>
double time_per_call(F&& f, const torch::Device& dev, double seconds) {
  f();
  sync(dev);
  int n = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    f();
    sync(dev);
    ++n;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < seconds);
  return el / n;
}

double gemm_gflops(const torch::Device& dev, double seconds, torch::ScalarType dtype) {
  const int64_t n = dev.is_cuda() ? 4096 : 1024;
  auto opts = torch::TensorOptions().device(dev).dtype(dtype);
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  torch::Tensor c;
  const double s = time_per_call([&] { c = torch::mm(a, b); }, dev, seconds);
  return 2.0 * n * n * n / s / 1e9;
}

struct Result {
  std::string name;
  cxrl::nn::Precision precision = cxrl::nn::Precision::fp32;
  int64_t params = 0, batch = 0, size = 0;
  double fwd_s = 0, fwdbwd_s = 0, gflop_fwd = 0;
};

Result run(const std::string& name, const UNet2DConditionConfig& cfg, int64_t batch, int64_t size, int64_t ctx_len,
           cxrl::nn::Precision precision, const torch::Device& dev, double seconds) {
  Result r;
  r.name = name;
  r.precision = precision;
  r.batch = batch;
  r.size = size;
  cxrl::nn::ParamScope scope(dev);
  UNet2DConditionModel unet(cfg);
  r.params = cxrl::nn::count_parameters(*unet).parameters;
  auto opts = torch::TensorOptions().device(dev);
  auto x = torch::randn({batch, cfg.in_channels, size, size}, opts);
  auto t = torch::randint(0, 1000, {batch}, opts.dtype(torch::kInt64));
  auto c = torch::randn({batch, ctx_len, cfg.cross_attention_dim[0]}, opts);
  {
    torch::NoGradGuard ng;
    cxrl::nn::FlopCounter fc;
    unet(x, t, c);
    r.gflop_fwd = fc.flops() / 1e9;
  }
  r.fwd_s = time_per_call(
      [&] {
        torch::NoGradGuard ng;
        cxrl::nn::Autocast ac(precision, dev);
        unet(x, t, c);
      },
      dev, seconds);
  r.fwdbwd_s = time_per_call(
      [&] {
        unet->zero_grad();
        torch::Tensor loss;
        {
          cxrl::nn::Autocast ac(precision, dev);
          loss = unet(x, t, c).to(torch::kFloat).square().mean();
        }
        loss.backward();
      },
      dev, seconds);
  return r;
}

}  // namespace

int main(int argc, char** argv) try {
  cxrl::io::use_best_cpu_kernels(argv);
  // Not __FILE__: ccache's CCACHE_BASEDIR makes it relative to the build folder, so the default config was found
  // only when the program ran from there.
  const fs::path root = CXRL_SOURCE_DIR;
  const fs::path gray_cfg = argc > 1 ? fs::path(argv[1]) : root / "tests" / "data" / "unet_gray" / "config.json";
  const double seconds = argc > 2 ? std::stod(argv[2]) : 3.0;
  const torch::Device dev = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  torch::manual_seed(0);
  std::printf("device %s, threads %d\n", dev.str().c_str(), torch::get_num_threads());

  const double gemm = gemm_gflops(dev, seconds, torch::kFloat32), gemm_bf16 = gemm_gflops(dev, seconds, torch::kBFloat16);
  std::printf("GEMM baseline: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s; %s\n", gemm, gemm_bf16,
              cxrl::io::cpu_kernels_description().c_str());

  auto gray = UNet2DConditionConfig::load(gray_cfg);
  // SD v1.5 layout with 0.3x channels: (96, 192, 384, 384), 8 heads, CLIP-L context width.
  UNet2DConditionConfig mini;
  mini.block_out_channels = {96, 192, 384, 384};
  mini.cross_attention_dim = {768};

  // The phantom anchor's UNet as the epoch runs it: 16 prompts with CFG on 16² latents, ACE's 3 tokens + 77.
  auto phantom = UNet2DConditionConfig::load(root / "assets" / "phantom" / "roentgen" / "unet" / "config.json");
  std::vector<Result> results;
  for (const auto p : {cxrl::nn::Precision::fp32, cxrl::nn::Precision::bf16}) {
    results.push_back(run("phantom", phantom, 32, 16, 80, p, dev, seconds));
    results.push_back(run("unet_gray", gray, dev.is_cuda() ? 32 : 4, 32, 77, p, dev, seconds));
    results.push_back(run("sd_mini", mini, dev.is_cuda() ? 16 : 2, 32, 77, p, dev, seconds));
  }

  nlohmann::json js;
  std::printf("%-24s %12s %14s %9s\n", "attention (B, N, M, C)", "no-grad ms", "autograd ms", "ratio");
  struct Shape { int64_t b, n, m, c; };
  for (const Shape& sh : {Shape{64, 256, 256, 32}, Shape{64, 256, 80, 32}, Shape{64, 64, 64, 64}, Shape{64, 64, 80, 64}}) {
    auto opts = torch::TensorOptions().device(dev);
    auto q = torch::randn({sh.b, sh.n, sh.c}, opts), k = torch::randn({sh.b, sh.m, sh.c}, opts),
         v = torch::randn({sh.b, sh.m, sh.c}, opts);
    auto qg = q.clone().requires_grad_(true);
    const double scale = 1.0 / std::sqrt(static_cast<double>(sh.c / 2));
    const double plain = time_per_call(
        [&] {
          torch::NoGradGuard ng;
          cxrl::nn::scaled_dot_product_attention(q, k, v, 2, scale);
        },
        dev, seconds / 3);
    const double graph = time_per_call([&] { cxrl::nn::scaled_dot_product_attention(qg, k, v, 2, scale); }, dev, seconds / 3);
    const std::string name = std::to_string(sh.b) + "x" + std::to_string(sh.n) + "x" + std::to_string(sh.m) + "x" + std::to_string(sh.c);
    std::printf("%-24s %12.2f %14.2f %9.3f\n", name.c_str(), plain * 1e3, graph * 1e3, plain / graph);
    js["attention"][name] = {{"no_grad_ms", plain * 1e3}, {"autograd_forward_ms", graph * 1e3}, {"ratio", plain / graph}};
  }
  js["bench"] = "unet";
  js["device"] = dev.str();
  js["threads"] = torch::get_num_threads();
  js["gemm_gflops"] = gemm;
  js["gemm_bf16_gflops"] = gemm_bf16;
  js["cpu_kernels"] = cxrl::io::cpu_kernels_description();
  std::printf("%-10s %4s %10s %5s %5s %9s %10s %10s %9s %10s %10s %9s\n", "model", "prec", "params", "batch", "HxW",
              "GFLOP/img", "fwd img/s", "fwd GF/s", "fwd/GEMM", "f+b img/s", "f+b GF/s", "f+b/GEMM");
  for (const auto& r : results) {
    const double base = r.precision == cxrl::nn::Precision::bf16 ? gemm_bf16 : gemm;  // the same precision's limit
    const double fwd_gfs = r.gflop_fwd / r.fwd_s, fb_gfs = 3.0 * r.gflop_fwd / r.fwdbwd_s;
    const std::string prec(cxrl::nn::to_string(r.precision));
    std::printf("%-10s %4s %10lld %5lld %5lld %9.2f %10.2f %10.1f %9.3f %10.2f %10.1f %9.3f\n", r.name.c_str(),
                prec.c_str(), static_cast<long long>(r.params), static_cast<long long>(r.batch),
                static_cast<long long>(r.size), r.gflop_fwd / r.batch, r.batch / r.fwd_s, fwd_gfs, fwd_gfs / base,
                r.batch / r.fwdbwd_s, fb_gfs, fb_gfs / base);
    js[r.name + "/" + prec] = {{"params", r.params},
                  {"batch", r.batch},
                  {"size", r.size},
                  {"gflop_forward", r.gflop_fwd},
                  {"forward_images_per_s", r.batch / r.fwd_s},
                  {"forward_gflops", fwd_gfs},
                  {"forward_over_gemm", fwd_gfs / base},
                  {"fwdbwd_images_per_s", r.batch / r.fwdbwd_s},
                  {"fwdbwd_gflops", fb_gfs},
                  {"fwdbwd_over_gemm", fb_gfs / base}};
  }
  for (const auto& r : results)  // bf16 against fp32, the same model measured in this run
    for (const auto& f : results)
      if (r.precision == cxrl::nn::Precision::bf16 && f.precision == cxrl::nn::Precision::fp32 && f.name == r.name) {
        std::printf("%-10s bf16 / fp32 speed: forward %.2fx, forward+backward %.2fx\n", r.name.c_str(), f.fwd_s / r.fwd_s,
                    f.fwdbwd_s / r.fwdbwd_s);
        js[r.name + "/bf16_speedup"] = {{"forward", f.fwd_s / r.fwd_s}, {"fwdbwd", f.fwdbwd_s / r.fwdbwd_s}};
      }
  js["peak_rss_mib"] = peak_rss_mib();
  std::printf("peak RSS %.0f MiB\n", peak_rss_mib());
  std::cout << js.dump() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_unet: %s\n", e.what());
  return 1;
}
