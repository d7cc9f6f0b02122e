/// @file
/// @brief The phantom chest X-ray world: a deterministic, analytic generator of frontal chest
/// radiographs with known CheXpert labels, severities, lateralities, devices, view and posture ψ.
///
/// A study is first drawn as a PhantomSpec (pure ground truth, cheap), then rendered at any square
/// resolution. Rendering evaluates the closed-form anatomy (phantom_anatomy.hpp), findings
/// (phantom_findings.hpp) and devices (phantom_devices.hpp) at the canonical coordinate of every
/// output pixel, `q = A_ψ⁻¹ x` (phantom_posture.hpp), so posture costs nothing and the same spec looks
/// the same at 64, 128 or 256 pixels. Density D becomes film brightness 1 − exp(−2.3·D), then
/// exposure (brightness, contrast, gamma) and noise are applied.
#pragma once

#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/phantom_anatomy.hpp>
#include <cxrl/cxr/phantom_devices.hpp>
#include <cxrl/cxr/phantom_findings.hpp>
#include <cxrl/cxr/phantom_posture.hpp>
#include <cxrl/data/rng.hpp>

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief Film exposure of one image.
struct Exposure {
  float brightness = 0.f;  ///< additive offset after the density → brightness map
  float contrast = 1.f;    ///< gain around mid-grey
  float gamma = 1.f;       ///< output gamma
  float noise = 0.f;       ///< std. dev. of the additive pixel noise
};

/// @brief Full ground truth of one phantom study.
struct PhantomSpec {
  std::uint64_t seed = 0;          ///< seed of the patient anatomy, placements and noise
  View view = View::PA;            ///< projection
  FindingStates findings{};        ///< the 14 observations (label, severity, side, placement)
  DeviceSet devices{};             ///< support devices
  Posture posture{};               ///< ψ (maps the posed image back to canonical)
  Exposure exposure{};             ///< exposure and noise

  /// @brief The 14 CheXpert labels in kObservations order.
  Labels labels() const {
    Labels l{};
    for (int i = 0; i < kNumObservations; ++i) l[static_cast<std::size_t>(i)] = findings[static_cast<std::size_t>(i)].label;
    return l;
  }
};

/// @brief Distribution of phantom studies.
struct PhantomConfig {
  double p_ap = 0.35;               ///< probability of an AP view (else PA)
  double p_normal = 0.30;           ///< probability of a study without pathology
  int max_findings = 3;             ///< most positive pathologies in one study
  double p_uncertain = 0.12;        ///< probability of one additional uncertain finding
  double p_devices = 0.22;          ///< probability of support devices
  double p_negative_common = 0.65;  ///< probability that a common absent finding is negated in the report
  double p_negative_rare = 0.15;    ///< same for rare findings
  double severity_min = 0.25;       ///< smallest severity of a positive finding
  PostureRanges posture_pa{};       ///< ψ ranges of PA views (near canonical)
  PostureRanges posture_ap = posture_ranges_ap();  ///< ψ ranges of AP views (portable films drift)
  bool vary_exposure = true;        ///< draw brightness/contrast/gamma/noise
  float noise_min = 0.004f;         ///< smallest noise std. dev.
  float noise_max = 0.025f;         ///< largest noise std. dev.
};

namespace phantom_detail {
/// Relative frequencies of the drawable pathologies (roughly MIMIC-CXR's order of prevalence).
inline constexpr std::array<std::pair<int, double>, 12> kPathologyWeights = {{
    {obs::pleural_effusion, 1.0}, {obs::atelectasis, 0.9}, {obs::cardiomegaly, 0.9}, {obs::lung_opacity, 0.8},
    {obs::edema, 0.6}, {obs::pneumonia, 0.5}, {obs::consolidation, 0.4}, {obs::enlarged_cardiomediastinum, 0.4},
    {obs::pneumothorax, 0.35}, {obs::lung_lesion, 0.35}, {obs::fracture, 0.3}, {obs::pleural_other, 0.25}}};

inline bool is_common(int o) {
  return o == obs::pleural_effusion || o == obs::pneumothorax || o == obs::consolidation || o == obs::edema ||
         o == obs::cardiomegaly || o == obs::pneumonia;
}

/// Laterality for observation o: midline findings have none, edema is bilateral.
inline Laterality draw_side(int o, data::Rng& rng) {
  if (o == obs::cardiomegaly || o == obs::enlarged_cardiomediastinum) return Laterality::none;
  if (o == obs::edema) return Laterality::bilateral;
  double p_bi = 0.0;
  if (o == obs::pleural_effusion) p_bi = 0.3;
  if (o == obs::atelectasis) p_bi = 0.35;
  if (o == obs::pneumonia || o == obs::lung_opacity) p_bi = 0.2;
  if (o == obs::consolidation || o == obs::pleural_other) p_bi = 0.1;
  if (rng.bernoulli(p_bi)) return Laterality::bilateral;
  return rng.bernoulli(0.5) ? Laterality::right : Laterality::left;
}
}  // namespace phantom_detail

/// @brief Draw one study's ground truth.
/// @param cfg distribution
/// @param seed study seed (same seed → same spec)
inline PhantomSpec sample_phantom_spec(const PhantomConfig& cfg, std::uint64_t seed) {
  using namespace phantom_detail;
  data::Rng rng(data::child_seed(seed, 0x5EC));
  PhantomSpec s;
  s.seed = seed;
  s.view = rng.bernoulli(cfg.p_ap) ? View::AP : View::PA;
  for (auto& f : s.findings) f = FindingState{};
  // Positive pathologies.
  if (!rng.bernoulli(cfg.p_normal)) {
    const int n = 1 + static_cast<int>(rng.below(static_cast<std::uint64_t>(std::max(1, cfg.max_findings))));
    double total = 0;
    for (const auto& [o, w] : kPathologyWeights) total += w;
    for (int k = 0; k < n; ++k) {
      double r = rng.uniform() * total;
      int pick = kPathologyWeights.back().first;
      for (const auto& [o, w] : kPathologyWeights) {
        if ((r -= w) < 0) {
          pick = o;
          break;
        }
      }
      auto& f = s.findings[static_cast<std::size_t>(pick)];
      if (f.label == Label::positive) continue;
      f.label = Label::positive;
      f.severity = static_cast<float>(rng.uniform(cfg.severity_min, 1.0));
      f.side = draw_side(pick, rng);
    }
  }
  // One uncertain finding ("cannot exclude …"), drawn faintly.
  if (rng.bernoulli(cfg.p_uncertain)) {
    const int pick = kPathologyWeights[rng.below(kPathologyWeights.size())].first;
    auto& f = s.findings[static_cast<std::size_t>(pick)];
    if (f.label == Label::blank) {
      f.label = Label::uncertain;
      f.severity = 0.18f;
      f.side = draw_side(pick, rng);
    }
  }
  // Explicit negations for some absent findings; the rest stay blank (not mentioned).
  for (const auto& [o, w] : kPathologyWeights) {
    auto& f = s.findings[static_cast<std::size_t>(o)];
    if (f.label == Label::blank && rng.bernoulli(is_common(o) ? cfg.p_negative_common : cfg.p_negative_rare))
      f.label = Label::negative;
  }
  // Support devices.
  if (rng.bernoulli(cfg.p_devices)) {
    const int n = 1 + static_cast<int>(rng.below(3));
    for (int k = 0; k < n; ++k) s.devices.add(static_cast<Device>(rng.below(kNumDevices)));
    s.devices.line_variant = static_cast<int>(rng.below(2));
    s.devices.et_tip_above_carina = static_cast<float>(rng.uniform(0.04, 0.14));
    auto& f = s.findings[obs::support_devices];
    f.label = Label::positive;
    f.severity = 1.f;
  }
  // No Finding: positive exactly when no pathology is positive or uncertain (devices allowed).
  bool any = false;
  for (const auto& [o, w] : kPathologyWeights) {
    const auto l = s.findings[static_cast<std::size_t>(o)].label;
    any = any || l == Label::positive || l == Label::uncertain;
  }
  s.findings[obs::no_finding].label = any ? Label::blank : Label::positive;
  place_findings(s.findings, rng);
  // Posture ψ: portable AP films drift much further from the canonical pose than PA films.
  const auto& pr = s.view == View::AP ? cfg.posture_ap : cfg.posture_pa;
  if (!rng.bernoulli(pr.p_identity)) {
    const double sc = rng.uniform(pr.scale_min, pr.scale_max);
    const double an = rng.uniform(-pr.anisotropy, pr.anisotropy);
    s.posture = Posture{sc * (1 + an / 2), sc * (1 - an / 2), rng.uniform(-pr.translate, pr.translate),
                        rng.uniform(-pr.translate, pr.translate), rng.uniform(-pr.rotate, pr.rotate)};
  }
  if (cfg.vary_exposure) {
    s.exposure.brightness = static_cast<float>(rng.uniform(-0.06, 0.06));
    s.exposure.contrast = static_cast<float>(rng.uniform(0.85, 1.2));
    s.exposure.gamma = static_cast<float>(rng.uniform(0.8, 1.25));
    s.exposure.noise = static_cast<float>(rng.uniform(cfg.noise_min, cfg.noise_max));
  }
  return s;
}

/// @brief A normal, perfectly posed study (labels: No Finding positive, common findings negated).
/// @param seed anatomy seed
/// @param view projection
inline PhantomSpec normal_phantom_spec(std::uint64_t seed, View view = View::PA) {
  PhantomSpec s;
  s.seed = seed;
  s.view = view;
  for (int o : {obs::pleural_effusion, obs::pneumothorax, obs::consolidation, obs::edema, obs::cardiomegaly})
    s.findings[static_cast<std::size_t>(o)].label = Label::negative;
  s.findings[obs::no_finding].label = Label::positive;
  data::Rng rng(data::child_seed(seed, 0x91AC));
  place_findings(s.findings, rng);
  return s;
}

/// @brief Set observation @p o of @p s positive with a severity and side, keeping No Finding consistent.
/// @param s spec to modify
/// @param o observation index (kObservations order; not No Finding)
/// @param severity in (0,1]
/// @param side laterality (ignored for midline findings)
inline void set_finding(PhantomSpec& s, int o, float severity, Laterality side = Laterality::right) {
  if (o < 0 || o >= kNumObservations || o == obs::no_finding)
    throw std::invalid_argument("set_finding: observation index must be a finding, got " + std::to_string(o));
  auto& f = s.findings[static_cast<std::size_t>(o)];
  f.label = Label::positive;
  f.severity = severity;
  f.side = (o == obs::cardiomegaly || o == obs::enlarged_cardiomediastinum) ? Laterality::none
           : o == obs::edema                                               ? Laterality::bilateral
                                                                           : side;
  if (o != obs::support_devices) s.findings[obs::no_finding].label = Label::blank;
}

/// @brief Everything a renderer needs, derived once per spec.
struct PhantomScene {
  Anatomy anatomy;                   ///< geometry after findings were applied
  std::vector<DevicePrim> devices;   ///< device primitives
  int frac_rib = -1;                 ///< fractured rib (−1 none)
  int frac_side = 0;                 ///< side of the fracture
  float frac_x = 0, frac_gap = 0, frac_step = 0;  ///< fracture position, gap, displacement
};

/// @brief Build the scene of a spec: anatomy (+ geometric findings), devices, fracture.
/// @param s spec
inline PhantomScene build_scene(const PhantomSpec& s) {
  data::Rng rng(data::child_seed(s.seed, 0xA4A7));
  PhantomScene sc;
  sc.anatomy = make_anatomy(rng, s.view);
  apply_findings_to_anatomy(sc.anatomy, s.findings);
  sc.devices = build_devices(sc.anatomy, s.devices);
  const auto& fr = s.findings[obs::fracture];
  if (fr.drawn()) {
    sc.frac_rib = 3 + static_cast<int>(fr.size * 4.99f);
    sc.frac_side = fr.side == Laterality::left ? 1 : 0;
    sc.frac_x = 0.45f + 0.45f * (fr.u - 0.2f) / 0.65f;
    sc.frac_gap = 0.02f + 0.03f * fr.severity;
    sc.frac_step = 0.012f + 0.035f * fr.severity;
  }
  return sc;
}

/// @brief Density at canonical (u, v) of a scene (anatomy + findings + devices).
/// @param sc scene
/// @param s spec
/// @param u horizontal coordinate
/// @param v vertical coordinate
/// @param aa anti-aliasing half-width
inline float scene_density(const PhantomScene& sc, const PhantomSpec& s, float u, float v, float aa) {
  const auto as = anatomy_at(sc.anatomy, u, v, aa, sc.frac_rib, sc.frac_side, sc.frac_x, sc.frac_gap, sc.frac_step);
  float d = as.density + findings_density(sc.anatomy, s.findings, as, u, v, aa);
  if (!sc.devices.empty()) d += devices_density(sc.devices, u, v, aa);
  return d;
}

/// @brief Render a spec into a caller-provided buffer (row-major size×size floats in [0,1]).
/// @param s spec
/// @param size side length in pixels (≥ 8)
/// @param out buffer of size*size floats
/// @param with_posture false renders the canonical pose (ψ ignored)
/// @param with_exposure false renders with neutral exposure and no noise
inline void render_phantom_into(const PhantomSpec& s, int size, float* out, bool with_posture = true,
                                bool with_exposure = true) {
  if (size < 8) throw std::invalid_argument("render_phantom: size must be >= 8, got " + std::to_string(size));
  const PhantomScene sc = build_scene(s);
  const Posture psi = with_posture ? s.posture : Posture{};
  const auto m = posture_matrix_inverse(psi);  // posed pixel → canonical point
  const float inv = 1.f / static_cast<float>(size);
  const float aa = 0.75f * 2.f * inv / static_cast<float>(std::min(std::abs(psi.sx), std::abs(psi.sy)));
  const Exposure ex = with_exposure ? s.exposure : Exposure{};
  const std::uint32_t nseed = static_cast<std::uint32_t>(data::child_seed(s.seed, 0x4015E));
  const float ns = ex.noise * 1.7320508f;  // sum of 4 uniforms − 2 has variance 1/3
  // Tone curve density → brightness (film response, contrast, gamma) as a lookup table: exp and pow
  // per pixel would dominate the render time.
  constexpr int kLut = 2048;
  constexpr float kMaxD = 4.f;
  std::array<float, kLut + 1> lut{};
  for (int k = 0; k <= kLut; ++k) {
    const float d = kMaxD * static_cast<float>(k) / kLut;
    float b = 1.f - std::exp(-2.3f * d);
    b = phantom_detail::clamp01((b - 0.5f) * ex.contrast + 0.5f + ex.brightness);
    if (ex.gamma != 1.f) b = std::pow(b, ex.gamma);
    lut[static_cast<std::size_t>(k)] = b;
  }
  for (int i = 0; i < size; ++i) {
    const float y = (2.f * static_cast<float>(i) + 1.f) * inv - 1.f;
    for (int j = 0; j < size; ++j) {
      const float x = (2.f * static_cast<float>(j) + 1.f) * inv - 1.f;
      const float u = static_cast<float>(m[0] * x + m[1] * y + m[2]);
      const float v = static_cast<float>(m[3] * x + m[4] * y + m[5]);
      const float d = std::min(std::max(0.f, scene_density(sc, s, u, v, aa)), kMaxD) * (kLut / kMaxD);
      const int k = std::min(static_cast<int>(d), kLut - 1);
      const float f = d - static_cast<float>(k);
      float b = lut[static_cast<std::size_t>(k)] + f * (lut[static_cast<std::size_t>(k) + 1] - lut[static_cast<std::size_t>(k)]);
      if (ns > 0.f) {
        const std::uint32_t k = nseed ^ (static_cast<std::uint32_t>(i * size + j) * 0x9E3779B1U);
        const float g = phantom_detail::hash01(k) + phantom_detail::hash01(k ^ 0x68E31DA4U) +
                        phantom_detail::hash01(k ^ 0xB5297A4DU) + phantom_detail::hash01(k ^ 0x1B56C4E9U) - 2.f;
        b += ns * g;
      }
      out[static_cast<std::size_t>(i) * size + j] = phantom_detail::clamp01(b);
    }
  }
}

/// @brief Render a spec as a float tensor [1, size, size] in [0,1].
/// @param s spec
/// @param size side length in pixels
/// @param with_posture false renders the canonical pose
/// @param with_exposure false renders with neutral exposure and no noise
inline torch::Tensor render_phantom(const PhantomSpec& s, int size = 64, bool with_posture = true,
                                    bool with_exposure = true) {
  auto t = torch::empty({1, size, size}, torch::kFloat32);
  render_phantom_into(s, size, t.data_ptr<float>(), with_posture, with_exposure);
  return t;
}

}  // namespace cxrl::cxr
