// Phantom and loader throughput, single thread. Prints a table and one JSON line; asserts nothing.
//   phantom: images/s at 64, 128, 256 (random studies: anatomy + findings + devices + posture + noise),
//            against a baseline in the same run: filling the same float buffer with a constant.
//   loader:  MIMIC-CXR-JPG pairs/s on a phantom fixture tree (JPEG decode + centre crop + resize),
//            against JPEG decode alone of the same files.
#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/cxr/mimic_fixture.hpp>
#include <cxrl/io/image.hpp>

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// CPU time of this thread: robust to other processes competing for the cores (the shared 2-core box).
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
volatile float g_sink = 0;
}  // namespace

int main() {
  torch::set_num_threads(1);
  namespace cx = cxrl::cxr;
  nlohmann::json out;
  out["bench"] = "phantom";
  std::printf("%-6s %12s %16s %18s %12s\n", "size", "images/s", "images/cpu-s", "fill images/cpu-s", "ratio(cpu)");
  cx::PhantomConfig cfg;
  std::vector<cx::PhantomSpec> specs;
  for (std::uint64_t s = 0; s < 256; ++s) specs.push_back(cx::sample_phantom_spec(cfg, s));
  for (int size : {64, 128, 256}) {
    std::vector<float> buf(static_cast<std::size_t>(size) * size);
    const int n = size == 64 ? 2000 : size == 128 ? 500 : 120;
    // warm-up
    for (int i = 0; i < 8; ++i) cx::render_phantom_into(specs[static_cast<std::size_t>(i)], size, buf.data());
    double t0 = now(), c0 = cpu_now();
    for (int i = 0; i < n; ++i) cx::render_phantom_into(specs[static_cast<std::size_t>(i) % specs.size()], size, buf.data());
    const double phantom_ips = n / (now() - t0);
    const double phantom_cps = n / (cpu_now() - c0);
    g_sink = g_sink + buf[buf.size() / 2];
    const int nf = 20000;
    c0 = cpu_now();
    for (int i = 0; i < nf; ++i) {
      std::fill(buf.begin(), buf.end(), static_cast<float>(i));
      g_sink = g_sink + buf[static_cast<std::size_t>(i) % buf.size()];
    }
    const double fill_cps = nf / (cpu_now() - c0);
    std::printf("%-6d %12.1f %16.1f %18.1f %12.6f\n", size, phantom_ips, phantom_cps, fill_cps, phantom_cps / fill_cps);
    out["phantom_images_per_s"][std::to_string(size)] = phantom_ips;
    out["phantom_images_per_cpu_s"][std::to_string(size)] = phantom_cps;
    out["fill_images_per_cpu_s"][std::to_string(size)] = fill_cps;
    out["phantom_vs_fill_cpu"][std::to_string(size)] = phantom_cps / fill_cps;
  }
  // Loader on a fixture tree (phantoms at 512 px in portrait JPEGs, output 64 px).
  const auto root = std::filesystem::temp_directory_path() / ("cxrl_bench_fixture_" + std::to_string(::getpid()));
  cxrl::cxr::MimicFixtureOptions fo;
  fo.studies = 48;
  fo.resolution = 512;
  const auto fx = cxrl::cxr::make_mimic_fixture(root, fo);
  cxrl::cxr::MimicOptions mo;
  mo.root = root;
  mo.n_train = mo.n_validate = mo.n_test = cxrl::cxr::kAllPairs;
  mo.resolution = 64;
  double t0 = now();
  const auto idx = cxrl::cxr::build_mimic_index(mo);
  const double index_s = now() - t0;
  std::vector<cxrl::cxr::MimicDataset> ds;
  for (auto s : {cxrl::data::Split::train, cxrl::data::Split::validate, cxrl::data::Split::test}) ds.emplace_back(idx, s);
  std::size_t pairs = 0;
  const int reps = 4;
  t0 = cpu_now();
  for (int r = 0; r < reps; ++r)
    for (const auto& d : ds)
      for (std::size_t i = 0; i < d.size(); ++i) {
        g_sink = g_sink + d.get(i).image[0][0][0].item<float>();
        ++pairs;
      }
  const double loader_ps = pairs / (cpu_now() - t0);
  t0 = cpu_now();
  std::size_t decoded = 0;
  for (int r = 0; r < reps; ++r)
    for (const auto& d : ds)
      for (std::size_t i = 0; i < d.size(); ++i) {
        const auto img = cxrl::io::read_image_u8(d.record(i).image, 1);
        g_sink = g_sink + img.data[0];
        ++decoded;
      }
  const double decode_ps = decoded / (cpu_now() - t0);
  std::printf("loader: %zu pairs, index %.3f s, %.1f pairs/cpu-s (64 px from %dx%d JPEG), decode-only %.1f images/cpu-s, ratio %.3f\n",
              pairs / reps, index_s, loader_ps, fo.resolution, fo.resolution + fo.resolution / 8, decode_ps, loader_ps / decode_ps);
  out["loader_pairs_per_cpu_s"] = loader_ps;
  out["jpeg_decode_per_cpu_s"] = decode_ps;
  out["loader_vs_decode"] = loader_ps / decode_ps;
  out["loader_index_s"] = index_s;
  out["loader_pairs"] = pairs / reps;
  out["fixture_expected_pairs"] = fx.expected.size();
  std::filesystem::remove_all(root);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
