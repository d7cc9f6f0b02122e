/// @file
/// @brief Support devices of the phantom world: cardiac pacemaker with leads, median sternotomy wires,
/// central venous line (internal jugular or PICC), endotracheal tube, nasogastric tube.
///
/// Devices are polylines and small shapes in canonical coordinates with metal- or tube-like
/// densities; they are rasterised with an anti-aliased distance test and a bounding-box cull.
#pragma once

#include <cxrl/cxr/phantom_anatomy.hpp>
#include <cxrl/data/rng.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace cxrl::cxr {

/// @brief The device kinds.
enum class Device : std::uint8_t { pacemaker = 0, sternal_wires = 1, central_line = 2, et_tube = 3, ng_tube = 4 };

/// @brief Number of device kinds.
inline constexpr int kNumDevices = 5;

/// @brief Short name of a device kind.
/// @param d device
inline std::string_view device_name(Device d) {
  constexpr std::array<std::string_view, kNumDevices> n = {"pacemaker", "sternal wires", "central line", "ET tube",
                                                           "NG tube"};
  return n[static_cast<std::size_t>(d)];
}

/// @brief A set of devices (bit i = Device i) plus variants.
struct DeviceSet {
  std::uint8_t bits = 0;     ///< presence bits
  int line_variant = 0;      ///< central line: 0 right internal jugular, 1 right PICC
  float et_tip_above_carina = 0.f;  ///< ET tube tip distance above the carina (normalised units)
  /// @brief True when @p d is present.
  /// @param d device kind
  bool has(Device d) const { return (bits >> static_cast<int>(d)) & 1u; }
  /// @brief Add @p d.
  /// @param d device kind
  void add(Device d) { bits = static_cast<std::uint8_t>(bits | (1u << static_cast<int>(d))); }
  /// @brief True when no device is present.
  bool empty() const { return bits == 0; }
};

/// @brief A rasterisable device primitive.
struct DevicePrim {
  enum Kind { segment, box, ring } kind = segment;  ///< shape
  float au = 0, av = 0, bu = 0, bv = 0;  ///< segment end points, or box/ring centre (au,av) and half sizes (bu,bv)
  float half_width = 0.006f;             ///< line half-width (or ring wall)
  float density = 1.f;                   ///< added density
  float bb[4] = {0, 0, 0, 0};            ///< bounding box u0, v0, u1, v1
};

namespace phantom_detail {
inline void add_polyline(std::vector<DevicePrim>& out, std::initializer_list<std::array<float, 2>> pts, float hw, float dens) {
  const std::array<float, 2>* prev = nullptr;
  for (const auto& p : pts) {
    if (prev) {
      DevicePrim s;
      s.kind = DevicePrim::segment;
      s.au = (*prev)[0];
      s.av = (*prev)[1];
      s.bu = p[0];
      s.bv = p[1];
      s.half_width = hw;
      s.density = dens;
      out.push_back(s);
    }
    prev = &p;
  }
}
}  // namespace phantom_detail

/// @brief Build the device primitives for an anatomy.
/// @param a anatomy (devices follow the mediastinum, carina and heart)
/// @param ds devices present
inline std::vector<DevicePrim> build_devices(const Anatomy& a, const DeviceSet& ds) {
  using phantom_detail::add_polyline;
  std::vector<DevicePrim> out;
  const float m = a.med_shift;
  const float rv_u = a.heart_cu + 0.6f * a.heart_half_extent(), rv_v = a.heart_cv + 0.10f;
  if (ds.has(Device::pacemaker)) {
    DevicePrim g;
    g.kind = DevicePrim::box;
    g.au = 0.56f;
    g.av = -0.56f;
    g.bu = 0.085f;
    g.bv = 0.06f;
    g.density = 1.6f;
    out.push_back(g);
    add_polyline(out, {{0.50f, -0.54f}, {0.32f, -0.56f}, {0.14f, -0.47f}, {m - 0.07f, -0.30f}, {m - 0.09f, -0.05f},
                       {m - 0.08f, 0.14f}},
                 0.007f, 1.1f);  // atrial lead
    add_polyline(out, {{0.50f, -0.52f}, {0.30f, -0.53f}, {0.12f, -0.44f}, {m - 0.05f, -0.28f}, {m - 0.06f, 0.02f},
                       {m + 0.02f, 0.22f}, {rv_u - 0.1f, rv_v}, {rv_u, rv_v + 0.02f}},
                 0.007f, 1.1f);  // ventricular lead
  }
  if (ds.has(Device::sternal_wires)) {
    for (int i = 0; i < 6; ++i) {
      DevicePrim r;
      r.kind = DevicePrim::ring;
      r.au = m + 0.005f * (i % 2 ? 1 : -1);
      r.av = -0.46f + 0.105f * i;
      r.bu = 0.034f;
      r.bv = 0.016f;
      r.half_width = 0.006f;
      r.density = 1.3f;
      out.push_back(r);
    }
  }
  if (ds.has(Device::central_line)) {
    if (ds.line_variant == 0)
      add_polyline(out, {{-0.24f, -1.05f}, {-0.20f, -0.78f}, {m - 0.12f, -0.52f}, {m - 0.08f, -0.30f}, {m - 0.07f, -0.10f}},
                   0.006f, 0.7f);
    else
      add_polyline(out, {{-1.05f, -0.48f}, {-0.80f, -0.60f}, {-0.50f, -0.66f}, {-0.25f, -0.58f}, {m - 0.10f, -0.40f},
                         {m - 0.07f, -0.12f}},
                   0.006f, 0.7f);
  }
  if (ds.has(Device::et_tube)) {
    const float tip = a.carina_v - std::max(0.03f, ds.et_tip_above_carina);
    const float c = m * 0.5f;
    add_polyline(out, {{c - 0.022f, -1.05f}, {c - 0.020f, tip}}, 0.005f, 0.45f);
    add_polyline(out, {{c + 0.022f, -1.05f}, {c + 0.020f, tip}}, 0.005f, 0.45f);
    add_polyline(out, {{c - 0.020f, tip}, {c + 0.020f, tip}}, 0.005f, 0.45f);
  }
  if (ds.has(Device::ng_tube)) {
    const float dia = a.dia_h[1];
    add_polyline(out, {{m + 0.03f, -1.05f}, {m + 0.02f, -0.5f}, {m + 0.035f, 0.0f}, {m + 0.07f, dia - 0.02f},
                       {m + 0.22f, dia + 0.12f}, {m + 0.38f, dia + 0.16f}, {m + 0.44f, dia + 0.10f}},
                 0.006f, 0.6f);
  }
  for (auto& p : out) {
    const float r = p.half_width + 0.02f;
    if (p.kind == DevicePrim::segment) {
      p.bb[0] = std::min(p.au, p.bu) - r;
      p.bb[1] = std::min(p.av, p.bv) - r;
      p.bb[2] = std::max(p.au, p.bu) + r;
      p.bb[3] = std::max(p.av, p.bv) + r;
    } else {
      p.bb[0] = p.au - p.bu - r;
      p.bb[1] = p.av - p.bv - r;
      p.bb[2] = p.au + p.bu + r;
      p.bb[3] = p.av + p.bv + r;
    }
  }
  return out;
}

/// @brief Density of the devices at canonical (u, v).
/// @param prims primitives from build_devices()
/// @param u horizontal coordinate
/// @param v vertical coordinate
/// @param aa anti-aliasing half-width; lines thinner than it are widened with their density scaled down
inline float devices_density(const std::vector<DevicePrim>& prims, float u, float v, float aa) {
  using namespace phantom_detail;
  float d = 0.f;
  for (const auto& p : prims) {
    if (u < p.bb[0] || v < p.bb[1] || u > p.bb[2] || v > p.bb[3]) continue;
    const float hw = std::max(p.half_width, aa);
    const float dens = p.density * std::min(1.f, p.half_width / hw + 0.25f);
    switch (p.kind) {
      case DevicePrim::segment:
        d = std::max(d, dens * inside(seg_dist(u, v, p.au, p.av, p.bu, p.bv) - hw, aa));
        break;
      case DevicePrim::box: {
        const float qu = std::fabs(u - p.au) - p.bu + 0.02f, qv = std::fabs(v - p.av) - p.bv + 0.02f;
        const float f = std::sqrt(std::max(qu, 0.f) * std::max(qu, 0.f) + std::max(qv, 0.f) * std::max(qv, 0.f)) +
                        std::min(std::max(qu, qv), 0.f) - 0.02f;
        d = std::max(d, p.density * inside(f, aa) * (0.85f + 0.15f * inside(f + 0.012f, aa)));
        break;
      }
      case DevicePrim::ring: {
        const float f = ellipse_f(u, v, p.au, p.av, p.bu, p.bv);
        d = std::max(d, dens * inside(std::fabs(f) - hw, aa));
        break;
      }
    }
  }
  return d;
}

}  // namespace cxrl::cxr
