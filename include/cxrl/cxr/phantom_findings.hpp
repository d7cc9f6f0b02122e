/// @file
/// @brief The drawable CheXpert findings of the phantom world, each with a severity in (0,1] and a
/// laterality: their geometry (drawn once per study) and their density at a point.
///
/// | observation | drawn as |
/// | --- | --- |
/// | Cardiomegaly | heart widened to a cardiothoracic ratio 0.53 + 0.15·severity (> 0.5) |
/// | Enlarged Cardiomediastinum | widened upper mediastinum and aortic knob |
/// | Pleural Effusion | dependent fluid blunting the costophrenic angle, meniscus rising laterally |
/// | Pneumothorax | lung collapsed towards the hilum: lucent rim without markings, visceral pleural line |
/// | Consolidation | lobar homogeneous opacity (upper / middle / lower zone) with air bronchograms |
/// | Pneumonia | patchy multifocal airspace opacities |
/// | Edema | bilateral perihilar ("bat-wing") haze, Kerley B lines |
/// | Atelectasis | plate-like linear bands at the base, elevated hemidiaphragm, mediastinal shift |
/// | Lung Lesion | round nodule (small) or lobulated mass (large) |
/// | Lung Opacity | ill-defined hazy opacity |
/// | Fracture | posterior rib discontinuity with a stepped lateral fragment |
/// | Pleural Other | pleural thickening along the lateral chest wall / apical cap |
/// | Support Devices | see phantom_devices.hpp |
#pragma once

#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/phantom_anatomy.hpp>
#include <cxrl/data/rng.hpp>

#include <array>
#include <cmath>
#include <string_view>

namespace cxrl::cxr {

/// @brief Side of a finding, in the patient's frame (right = image left).
enum class Laterality { none, right, left, bilateral };

/// @brief "right", "left", "bilateral" or "".
/// @param l laterality
inline std::string_view laterality_name(Laterality l) {
  switch (l) {
    case Laterality::right: return "right";
    case Laterality::left: return "left";
    case Laterality::bilateral: return "bilateral";
    default: return "";
  }
}

/// @brief True when @p l covers side @p side (0 patient right, 1 patient left).
/// @param l laterality
/// @param side 0 right, 1 left
inline bool covers(Laterality l, int side) {
  return l == Laterality::bilateral || (side == 0 && l == Laterality::right) || (side == 1 && l == Laterality::left);
}

/// @brief Observation indices (kObservations order) for readability.
namespace obs {
inline constexpr int atelectasis = 0, cardiomegaly = 1, consolidation = 2, edema = 3, enlarged_cardiomediastinum = 4,
                     fracture = 5, lung_lesion = 6, lung_opacity = 7, no_finding = 8, pleural_effusion = 9,
                     pleural_other = 10, pneumonia = 11, pneumothorax = 12, support_devices = 13;
}

/// @brief One observation's state in a study: label, severity (0 = absent), side, drawing variant
/// and placement (u, v, size).
struct FindingState {
  Label label = Label::blank;      ///< report label
  float severity = 0.f;            ///< 0 absent … 1 severe; uncertain findings are drawn faintly
  Laterality side = Laterality::none;  ///< laterality (none for midline findings)
  int variant = 0;                 ///< e.g. lobe for consolidation, nodule vs mass
  float u = 0.f;                   ///< placement u (lesion/opacity/fracture position)
  float v = 0.f;                   ///< placement v
  float size = 0.f;                ///< placement size
  std::uint32_t seed = 0;          ///< texture seed
  /// @brief Drawn at all.
  bool drawn() const { return severity > 0.f; }
};

/// @brief All 14 observations of one study.
using FindingStates = std::array<FindingState, kNumObservations>;

/// @brief Lobes/zones used by consolidation and pneumonia.
enum class Zone { upper = 0, middle = 1, lower = 2 };

/// @brief Change the anatomy for findings that alter geometry (heart size, mediastinum, volume loss).
/// @param a anatomy to modify
/// @param f findings of the study
inline void apply_findings_to_anatomy(Anatomy& a, const FindingStates& f) {
  const auto& ate = f[obs::atelectasis];
  if (ate.drawn() && ate.side != Laterality::bilateral) {
    // Volume loss: ipsilateral hemidiaphragm up, mediastinum towards the collapsed side.
    const int s = ate.side == Laterality::left ? 1 : 0;
    a.dia_h[s] -= 0.07f * ate.severity;
    a.med_shift += (s ? 1.f : -1.f) * 0.035f * ate.severity;
  }
  const auto& ecm = f[obs::enlarged_cardiomediastinum];
  if (ecm.drawn()) {
    a.med_hw += 0.04f + 0.08f * ecm.severity;
    a.knob_r *= 1.2f + 0.4f * ecm.severity;
  }
  const auto& cm = f[obs::cardiomegaly];
  if (cm.drawn()) {
    // Uncertain ("borderline") cardiomegaly is drawn at the upper normal limit.
    const float ctr = cm.label == Label::uncertain ? 0.49f : 0.53f + 0.15f * cm.severity;
    a.set_ctr(ctr);
  }
  if (a.view == View::AP) {  // AP projection magnifies the heart (≈ 10%)
    a.heart_a *= 1.08f;
    a.heart_b *= 1.08f;
    a.heart_cu = a.med_shift + a.heart_half_extent() / 3.f + 0.01f;
  }
  a.finalize();
}

/// @brief Draw placement parameters for the drawn findings.
/// @param f findings to complete (u, v, size, variant, seed)
/// @param rng generator (consumed)
inline void place_findings(FindingStates& f, data::Rng& rng) {
  for (int i = 0; i < kNumObservations; ++i) {
    auto& s = f[static_cast<std::size_t>(i)];
    s.seed = static_cast<std::uint32_t>(rng.next());
    s.u = static_cast<float>(rng.uniform(0.2, 0.85));  // lateral fraction
    s.v = static_cast<float>(rng.uniform(0.0, 1.0));   // vertical fraction
    s.size = static_cast<float>(rng.uniform(0.0, 1.0));
    s.variant = static_cast<int>(rng.below(3));
  }
}

namespace phantom_detail {

inline float side_sign(int side) { return side ? 1.f : -1.f; }

/// A point inside the lung of @p side from lateral fraction fu ∈ [0,1] and vertical fraction fv ∈ [0,1].
inline void lung_point(const Anatomy& a, int side, float fu, float fv, float& u, float& v) {
  v = a.lung_cy - 0.5f * a.lung_b + fv * 0.75f * a.lung_b;
  u = side_sign(side) * (a.med_hw + 0.08f + fu * (a.lung_cx + 0.8f * a.lung_a - a.med_hw - 0.16f)) + a.med_shift;
  for (int it = 0; it < 20 && a.lung_f(u, v, side) > -0.06f; ++it) {  // pull towards the lung centre
    u = 0.8f * u + 0.2f * side_sign(side) * a.lung_cx;
    v = 0.8f * v + 0.2f * a.lung_cy;
  }
}

}  // namespace phantom_detail

/// @brief Density added by the findings at canonical (u, v).
/// @param a anatomy (already modified by apply_findings_to_anatomy())
/// @param f findings
/// @param s anatomy sample at the point
/// @param u horizontal coordinate
/// @param v vertical coordinate
/// @param aa anti-aliasing half-width
inline float findings_density(const Anatomy& a, const FindingStates& f, const AnatomySample& s, float u, float v,
                              float aa) {
  using namespace phantom_detail;
  const int side = u > a.med_shift ? 1 : 0;
  const float lung = s.lung[side];
  const float luc = a.lung_lucency;
  float d = 0.f;
  if (s.body <= 0.f) return 0.f;

  // Pleural effusion: fluid fills the dependent pleural space; meniscus rises laterally.
  if (const auto& e = f[obs::pleural_effusion]; e.drawn() && covers(e.side, side)) {
    const float lat = clamp01((std::fabs(u - a.med_shift) - a.med_hw) / (a.lung_cx + a.lung_a - a.med_hw));
    const float cp = a.diaphragm_v(side_sign(side) * (a.lung_cx + a.lung_a) + a.med_shift);
    const float depth = 0.08f + 0.45f * e.severity;
    const float level = cp - depth + 0.16f * (1.f - lat) * (1.f - lat) * (0.5f + e.severity);
    const float fluid = sstep(level - 0.015f, level + 0.05f, v);
    // Fluid occupies lung and hides the diaphragm under it (pleural space follows the lung outline).
    const float lungish = inside(std::max(a.lung_f(u, v, side), v - a.diaphragm_v(u) - 0.08f), aa);
    d += luc * 1.1f * fluid * std::max(lung, lungish * (1.f - s.heart));
  }

  // Pneumothorax: the lung retracts towards the hilum; the rim is lucent and has no markings.
  if (const auto& p = f[obs::pneumothorax]; p.drawn() && covers(p.side, side) && lung > 0.f) {
    const float hu = side_sign(side) * 0.19f + a.med_shift, hv = -0.02f;
    const float k = 1.f - (0.05f + 0.22f * p.severity);
    const float cu = hu + (u - hu) / k, cv = hv + (v - hv) / k;
    const float cf = a.lung_f(cu, cv, side);
    const float collapsed = inside(cf, aa);
    const float space = lung * (1.f - collapsed);
    d -= space * (0.075f * markings(a, u, v, side) + 0.06f + 0.02f * value_noise(u * 18.f, v * 18.f, a.texture_seed));
    d += lung * collapsed * 0.05f * p.severity;             // collapsed lung is denser
    d += 0.09f * lung * band(cf, 0.6f * aa, aa);             // visceral pleural line
  }

  if (lung <= 0.f) return d;

  // Consolidation: lobar, homogeneous, with air bronchograms.
  if (const auto& c = f[obs::consolidation]; c.drawn() && covers(c.side, side)) {
    const Zone z = (c.variant == 1 && side == 1) ? Zone::lower : static_cast<Zone>(c.variant);
    float region = 0.f;
    const float lat = std::fabs(u - a.med_shift);
    if (z == Zone::upper) {
      region = sstep(-0.12f + 0.02f, -0.12f - 0.02f, v);  // bounded below by the (minor) fissure
    } else if (z == Zone::middle) {
      region = sstep(-0.05f, 0.03f, v) * sstep(a.lung_cx + 0.05f, a.lung_cx - 0.1f, lat);
    } else {
      region = sstep(0.02f, 0.14f, v);
    }
    const float tex = 0.85f + 0.3f * value_noise(u * 9.f, v * 9.f, c.seed);
    const float amount = (0.45f + 0.5f * c.severity) * tex;
    const float bronch = markings(a, u, v, side);
    d += luc * lung * region * std::min(1.f, amount) * (1.f - 0.5f * std::min(1.f, 1.5f * bronch));
  }

  // Pneumonia: patchy multifocal opacities.
  if (const auto& p = f[obs::pneumonia]; p.drawn() && covers(p.side, side)) {
    const float zv = p.variant == 0 ? -0.30f : (p.variant == 1 ? 0.0f : 0.25f);
    const float cu = side_sign(side) * (a.lung_cx - 0.05f) + a.med_shift;
    const float env = std::exp(-((u - cu) * (u - cu) / 0.05f + (v - zv) * (v - zv) / 0.035f));
    const float patch = value_noise(u * 11.f, v * 11.f, p.seed) * 0.7f + value_noise(u * 23.f, v * 23.f, p.seed + 7) * 0.3f;
    const float blob = sstep(0.62f - 0.22f * p.severity, 0.78f - 0.18f * p.severity, patch * (0.55f + 0.6f * env));
    d += luc * lung * blob * (0.45f + 0.45f * p.severity) * std::min(1.f, env * 2.5f);
  }

  // Edema: bilateral perihilar haze, indistinct vessels, Kerley B lines at the bases.
  if (const auto& e = f[obs::edema]; e.drawn()) {
    const float hu = side_sign(side) * 0.20f + a.med_shift;
    const float r2 = (u - hu) * (u - hu) / 0.07f + (v + 0.02f) * (v + 0.02f) / 0.14f;
    const float haze = std::exp(-r2) * (0.35f + 0.55f * e.severity);
    d += luc * lung * haze * (0.85f + 0.3f * value_noise(u * 14.f, v * 14.f, e.seed));
    const float lat = std::fabs(u - a.med_shift);
    if (lat > a.lung_cx + 0.12f && v > 0.15f) {
      const float kv = (v - 0.15f) / 0.045f;
      const float kerley = band(kv - std::floor(kv + 0.5f), 0.10f, 0.08f);
      d += 0.08f * e.severity * lung * kerley * sstep(a.lung_cx + 0.12f, a.lung_cx + 0.2f, lat);
    }
  }

  // Atelectasis: plate-like (discoid) bands at the base.
  if (const auto& t = f[obs::atelectasis]; t.drawn() && covers(t.side, side)) {
    const float lat = std::fabs(u - a.med_shift);
    const float base = a.diaphragm_v(u);
    const int nb = 1 + static_cast<int>(t.severity * 2.5f);
    for (int b = 0; b < nb; ++b) {
      const float bv = base - 0.08f - 0.07f * b - 0.03f * t.size + 0.10f * (lat - 0.4f) * (b % 2 ? -1.f : 1.f);
      const float seg = sstep(0.16f, 0.24f, lat) * sstep(a.lung_cx + 0.28f, a.lung_cx + 0.18f, lat);
      d += luc * lung * 0.75f * seg * band(v - bv, 0.010f + 0.012f * t.severity, aa);
    }
    d += luc * lung * 0.25f * t.severity * sstep(base - 0.12f, base, v);  // basilar volume loss
  }

  // Lung lesion: nodule (small, smooth) or mass (large, lobulated).
  if (const auto& l = f[obs::lung_lesion]; l.drawn() && covers(l.side, side)) {
    float cu, cv;
    lung_point(a, side, l.u, l.v, cu, cv);
    const bool mass = l.severity > 0.6f;
    const float r = mass ? 0.08f + 0.08f * l.severity : 0.022f + 0.05f * l.severity;
    const float phi = std::atan2(v - cv, u - cu);
    const float rr = r * (1.f + (mass ? 0.12f * std::sin(5.f * phi + l.size * 6.f) : 0.f));
    const float dist = std::sqrt((u - cu) * (u - cu) + (v - cv) * (v - cv)) - rr;
    d += luc * 1.05f * inside(dist, aa * 1.2f) * std::max(lung, 0.5f);
  }

  // Lung opacity: ill-defined hazy area.
  if (const auto& o = f[obs::lung_opacity]; o.drawn() && covers(o.side, side)) {
    float cu, cv;
    lung_point(a, side, o.u, o.v, cu, cv);
    const float r = 0.12f + 0.10f * o.size;
    const float r2 = ((u - cu) * (u - cu) + (v - cv) * (v - cv)) / (r * r);
    const float tex = 0.7f + 0.6f * value_noise(u * 12.f, v * 12.f, o.seed);
    d += luc * lung * std::exp(-r2 * r2) * (0.25f + 0.4f * o.severity) * tex;
  }

  // Pleural other: smooth pleural thickening along the lateral wall and apex.
  if (const auto& pt = f[obs::pleural_other]; pt.drawn() && covers(pt.side, side)) {
    const float th = 0.03f + 0.05f * pt.severity;
    const float lf = a.lung_f(u, v, side);
    const float rim = sstep(-th - aa, -th + aa, lf);
    const float where = v < a.lung_cy + 0.25f ? 1.f : sstep(a.lung_cy + 0.4f, a.lung_cy + 0.25f, v);
    d += luc * 1.0f * lung * rim * where * sstep(0.3f, 0.45f, std::fabs(u - a.med_shift) + (a.lung_cy - v) * 0.4f);
  }
  return d;
}

}  // namespace cxrl::cxr
