// `cxrl_mimic phantoms`: a PNG contact sheet of the phantom world — a normal PA and AP study, every
// drawable observation at a mild and a severe grade, each support device, and posture extremes.
#pragma once

#include <cxrl/cxr/phantom.hpp>
#include <cxrl/io/image.hpp>

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace cxrl_mimic {

struct PhantomsOptions {
  std::string out = "phantoms.png";
  int size = 128;
  int columns = 8;
  std::uint64_t seed = 7;
  bool exposure = false;
  std::size_t max_tiles = 0;
  std::vector<std::size_t> select;
};

inline void run_phantoms(const PhantomsOptions& o) {
  namespace cx = cxrl::cxr;
  std::vector<torch::Tensor> tiles;
  std::vector<std::string> legend;
  auto add = [&](const cx::PhantomSpec& s, const std::string& name) {
    tiles.push_back(cx::render_phantom(s, o.size, true, o.exposure));
    legend.push_back(name);
  };
  add(cx::normal_phantom_spec(o.seed, cx::View::PA), "normal PA");
  add(cx::normal_phantom_spec(o.seed, cx::View::AP), "normal AP");
  for (int i = 0; i < cx::kNumObservations; ++i) {
    if (i == cx::obs::no_finding || i == cx::obs::support_devices) continue;
    for (float sev : {0.35f, 0.95f}) {
      auto s = cx::normal_phantom_spec(o.seed, cx::View::PA);
      cx::set_finding(s, i, sev, cx::Laterality::right);
      add(s, std::string(cx::kObservations[static_cast<std::size_t>(i)]) + (sev < 0.5f ? " mild" : " severe") +
                 (cx::laterality_name(s.findings[static_cast<std::size_t>(i)].side).empty()
                      ? ""
                      : " " + std::string(cx::laterality_name(s.findings[static_cast<std::size_t>(i)].side))));
    }
  }
  for (int d = 0; d < cx::kNumDevices; ++d) {
    auto s = cx::normal_phantom_spec(o.seed, cx::View::PA);
    cx::set_finding(s, cx::obs::support_devices, 1.f);
    s.devices.add(static_cast<cx::Device>(d));
    s.devices.et_tip_above_carina = 0.08f;
    add(s, "device: " + std::string(cx::device_name(static_cast<cx::Device>(d))));
  }
  const cx::PostureRanges pr = cx::posture_ranges_ap();  // the widest poses of the world
  const std::vector<std::pair<cx::Posture, std::string>> poses = {
      {{pr.scale_min, pr.scale_min, 0, 0, 0}, "posture s=min"}, {{pr.scale_max, pr.scale_max, 0, 0, 0}, "posture s=max"},
      {{1, 1, 0, 0, -pr.rotate}, "posture theta=-max"},         {{1, 1, 0, 0, pr.rotate}, "posture theta=+max"},
      {{1, 1, pr.translate, pr.translate, 0}, "posture t=+max"}, {{1, 1, -pr.translate, -pr.translate, 0}, "posture t=-max"}};
  for (const auto& [psi, name] : poses) {
    auto s = cx::normal_phantom_spec(o.seed, cx::View::PA);
    s.posture = psi;
    add(s, name);
  }
  // A few random studies with exposure and noise.
  cx::PhantomConfig cfg;
  for (int k = 0; k < 4; ++k) {
    auto s = cx::sample_phantom_spec(cfg, o.seed * 1000 + static_cast<std::uint64_t>(k));
    tiles.push_back(cx::render_phantom(s, o.size));
    legend.push_back("random study " + std::to_string(k) + " (" + cx::view_name(s.view) + ")");
  }
  if (!o.select.empty()) {
    std::vector<torch::Tensor> t;
    std::vector<std::string> l;
    for (auto i : o.select)
      if (i < tiles.size()) {
        t.push_back(tiles[i]);
        l.push_back(legend[i]);
      }
    if (t.empty()) throw std::invalid_argument("phantoms: --select names no existing tile");
    tiles = t;
    legend = l;
  }
  if (o.max_tiles > 0 && tiles.size() > o.max_tiles) {
    tiles.resize(o.max_tiles);
    legend.resize(o.max_tiles);
  }
  cxrl::io::write_png(o.out, cxrl::io::make_grid(tiles, o.columns, 2, 1.0f));
  std::cout << "wrote " << o.out << " (" << tiles.size() << " tiles, " << o.size << " px, " << o.columns
            << " per row, row-major):\n";
  for (std::size_t i = 0; i < legend.size(); ++i) std::cout << "  [" << i / o.columns << "," << i % o.columns << "] " << legend[i] << "\n";
}

inline void add_phantoms_command(CLI::App& app) {
  auto o = std::make_shared<PhantomsOptions>();
  auto* c = app.add_subcommand("phantoms", "Write a PNG contact sheet of the phantom world (each observation at two "
                                           "severities, devices, posture extremes)");
  c->add_option("--out", o->out, "output PNG")->capture_default_str();
  c->add_option("--size", o->size, "tile resolution (pixels)")->capture_default_str()->check(CLI::Range(16, 1024));
  c->add_option("--columns", o->columns, "tiles per row")->capture_default_str()->check(CLI::Range(1, 64));
  c->add_option("--seed", o->seed, "anatomy seed")->capture_default_str();
  c->add_option("--select", o->select, "keep only these tile indices (row-major, as listed)");
  c->add_option("--max-tiles", o->max_tiles, "keep only the first N tiles (0 = all)");
  c->add_flag("--exposure", o->exposure, "apply each study's exposure and noise to the finding tiles");
  c->callback([o] { run_phantoms(*o); });
}

}  // namespace cxrl_mimic
