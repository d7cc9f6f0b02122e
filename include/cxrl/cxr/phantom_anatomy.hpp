/// @file
/// @brief Analytic chest anatomy of the phantom world: body outline and soft tissue, lungs with
/// vascular markings, heart and mediastinum, trachea, diaphragm domes and costophrenic angles,
/// clavicles, posterior and anterior ribs, spine, humeral heads.
///
/// Everything is a closed-form function of the canonical coordinate (u, v) ∈ [−1,1]² (u to the image
/// right = the patient's left, v down), so a renderer can evaluate it at any resolution and through
/// any posture warp. Values are X-ray *densities* (line integrals of attenuation, ≈0 for air, ≈0.5 for
/// the full-thickness soft tissue of the chest); phantom.hpp maps density to film brightness.
#pragma once

#include <cxrl/data/rng.hpp>

#include <algorithm>
#include <cmath>

namespace cxrl::cxr {

/// @brief Radiographic projection.
enum class View { PA, AP };

/// @brief "PA" / "AP".
/// @param v view
inline const char* view_name(View v) { return v == View::PA ? "PA" : "AP"; }

namespace phantom_detail {

inline float clamp01(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
/// Hermite smoothstep from e0 to e1 (e0 may exceed e1 for a falling edge).
inline float sstep(float e0, float e1, float x) {
  const float t = clamp01((x - e0) / (e1 - e0));
  return t * t * (3.f - 2.f * t);
}
/// Soft "inside" indicator of an implicit function f (< 0 inside), edge width aa.
inline float inside(float f, float aa) { return sstep(aa, -aa, f); }
/// Soft band indicator |x| < half_width.
inline float band(float x, float half_width, float aa) { return inside(std::fabs(x) - half_width, aa); }

/// Approximate signed distance to an axis-aligned ellipse centred at (cu, cv).
inline float ellipse_f(float u, float v, float cu, float cv, float a, float b) {
  const float du = (u - cu) / a, dv = (v - cv) / b;
  return (std::sqrt(du * du + dv * dv) - 1.f) * std::min(a, b);
}

/// Distance from (u,v) to the segment (a,b).
inline float seg_dist(float u, float v, float au, float av, float bu, float bv) {
  const float du = bu - au, dv = bv - av;
  const float len2 = du * du + dv * dv;
  float t = len2 > 0 ? ((u - au) * du + (v - av) * dv) / len2 : 0.f;
  t = clamp01(t);
  const float eu = u - (au + t * du), ev = v - (av + t * dv);
  return std::sqrt(eu * eu + ev * ev);
}

/// sin(2π·t) for any t (parabolic approximation with one refinement step, |error| < 1e-3): texture only.
inline float sin_turns(float t) {
  t -= std::floor(t + 0.5f);  // [-0.5, 0.5]
  float y = 8.f * t - 16.f * t * std::fabs(t);
  return 0.225f * (y * std::fabs(y) - y) + y;
}
/// Fast sin(x) (radians) for textures.
inline float fast_sin(float x) { return sin_turns(x * 0.15915494f); }
/// Fast cos(x) (radians) for textures.
inline float fast_cos(float x) { return sin_turns(x * 0.15915494f + 0.25f); }
/// Fast atan2 (|error| < 0.005 rad) for textures.
inline float fast_atan2(float y, float x) {
  const float ax = std::fabs(x), ay = std::fabs(y);
  const float mx = std::max(ax, ay), mn = std::min(ax, ay);
  const float a = mn / (mx + 1e-20f);
  const float q = a * a;
  float r = ((-0.0464964749f * q + 0.15931422f) * q - 0.327622764f) * q * a + a;
  if (ay > ax) r = 1.57079637f - r;
  if (x < 0) r = 3.14159274f - r;
  return y < 0 ? -r : r;
}

/// Cheap integer hash → uniform float in [0,1).
inline float hash01(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

/// Smooth 2-D value noise in [0,1] on a lattice of spacing 1 (for textures).
inline float value_noise(float x, float y, std::uint32_t seed) {
  const float fx = std::floor(x), fy = std::floor(y);
  const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);
  float tx = x - fx, ty = y - fy;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  auto h = [seed](int a, int b) {
    return hash01(static_cast<std::uint32_t>(a) * 0x8da6b343U ^ static_cast<std::uint32_t>(b) * 0xd8163841U ^ seed);
  };
  const float a = h(ix, iy), b = h(ix + 1, iy), c = h(ix, iy + 1), d = h(ix + 1, iy + 1);
  return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}

}  // namespace phantom_detail

/// @brief Geometry of one phantom chest (jittered per patient; all lengths in normalised units).
///
/// Side index 0 is the patient's right (image left, u < 0), 1 the patient's left (u > 0).
struct Anatomy {
  View view = View::PA;       ///< projection
  float body_hw = 0.92f;      ///< half-width of the trunk
  float body_top = -0.70f;    ///< top of the shoulders
  float neck_hw = 0.20f;      ///< half-width of the neck
  float soft = 0.50f;         ///< soft-tissue density at the body centre
  float lung_cx = 0.42f;      ///< |u| of the lung centres
  float lung_cy = 0.04f;      ///< v of the lung centres
  float lung_a = 0.34f;       ///< lung half-width at the centre level
  float lung_b = 0.70f;       ///< lung half-height (apex at lung_cy − lung_b)
  float lung_lucency = 0.34f; ///< density removed by aerated lung
  float dia_h[2] = {0.40f, 0.46f};  ///< v of the hemidiaphragm domes (right higher)
  float dia_k = 1.6f;         ///< dome curvature
  float dia_peak = 0.36f;     ///< |u| of the dome summits
  float med_hw = 0.105f;      ///< upper mediastinum half-width
  float med_shift = 0.f;      ///< mediastinal shift (u), e.g. from volume loss
  float heart_cu = 0.08f;     ///< heart centre u
  float heart_cv = 0.30f;     ///< heart centre v
  float heart_a = 0.30f;      ///< heart semi-axis along its long axis
  float heart_b = 0.22f;      ///< heart semi-axis across
  float heart_phi = 0.50f;    ///< long-axis tilt (radians, apex down and to the patient's left)
  float knob_r = 0.055f;      ///< aortic knob radius
  float carina_v = -0.20f;    ///< v of the carina
  float rib_v1 = -0.80f;      ///< v of the first posterior rib at the spine
  float rib_sp = 0.112f;      ///< posterior rib spacing at the spine
  float rib_grow = 0.0035f;   ///< spacing growth per rib
  float clav_v = -0.62f;      ///< v of the clavicles' medial ends
  float vert_sp = 0.093f;     ///< vertebral body spacing
  float marking_phase[2] = {0.f, 1.f};  ///< vascular-pattern phases
  std::uint32_t texture_seed = 1;       ///< seed of the lung texture
  float heart_cos = 0.f;      ///< cos(heart_phi), cached by finalize()
  float heart_sin = 0.f;      ///< sin(heart_phi), cached by finalize()

  /// @brief Cache derived values; call after changing the geometry.
  void finalize() {
    heart_cos = std::cos(heart_phi);
    heart_sin = std::sin(heart_phi);
  }

  /// @brief Heart's horizontal half-extent of the rotated ellipse.
  float heart_half_extent() const {
    const float c = std::cos(heart_phi), s = std::sin(heart_phi);
    return std::sqrt(heart_a * heart_a * c * c + heart_b * heart_b * s * s);
  }
  /// @brief v of the hemidiaphragm under (u): a parabola per side.
  /// @param u horizontal coordinate
  float diaphragm_v(float u) const {
    const int side = u > med_shift ? 1 : 0;
    const float d = std::fabs(u - med_shift) - dia_peak;
    return dia_h[side] + dia_k * d * d;
  }
  /// @brief Lung implicit function (< 0 inside) without the heart, for side @p side.
  /// @param u horizontal coordinate
  /// @param v vertical coordinate
  /// @param side 0 right, 1 left
  float lung_f(float u, float v, int side) const {
    const float sgn = side ? 1.f : -1.f;
    const float a = lung_a * (1.f + 0.16f * (v - lung_cy) / lung_b);
    const float e = phantom_detail::ellipse_f(u, v, sgn * lung_cx + med_shift * 0.5f, lung_cy, std::max(a, 0.05f), lung_b);
    const float dia = v - diaphragm_v(u);
    const float med = med_hw - sgn * (u - med_shift);
    return std::max(std::max(e, dia), med);
  }
  /// @brief Widest lateral lung extent |u| (the inner rib margins; thoracic half-width).
  float thoracic_half_width() const {
    float best = 0.f;
    for (int i = 0; i <= 200; ++i) {
      const float v = lung_cy - lung_b + 2.f * lung_b * static_cast<float>(i) / 200.f;
      const float a = lung_a * (1.f + 0.16f * (v - lung_cy) / lung_b);
      const float dv = (v - lung_cy) / lung_b;
      if (dv * dv >= 1.f) continue;
      const float lat = lung_cx + a * std::sqrt(1.f - dv * dv);
      // only levels above the lateral diaphragm count
      if (v < diaphragm_v(lat) && v < diaphragm_v(-lat)) best = std::max(best, lat);
    }
    return best;
  }
  /// @brief Set the heart size so that heart width / thoracic width equals @p ctr.
  /// @param ctr cardiothoracic ratio
  void set_ctr(float ctr) {
    const float c = std::cos(heart_phi), s = std::sin(heart_phi);
    const float ratio = heart_b / heart_a;
    const float unit = std::sqrt(c * c + ratio * ratio * s * s);
    heart_a = ctr * thoracic_half_width() / unit;
    heart_b = ratio * heart_a;
    heart_cu = med_shift + heart_half_extent() * (1.f / 3.f) + 0.01f;
  }
};

/// @brief Draw a jittered patient anatomy.
/// @param rng generator (consumed)
/// @param view projection; AP raises the clavicles, lowers inspiration and magnifies the heart
inline Anatomy make_anatomy(data::Rng& rng, View view) {
  Anatomy a;
  a.view = view;
  auto j = [&](float x, float spread) { return x + static_cast<float>(rng.uniform(-spread, spread)); };
  a.body_hw = j(0.92f, 0.03f);
  a.soft = j(0.50f, 0.04f);
  a.lung_cx = j(0.42f, 0.015f);
  a.lung_cy = j(0.04f, 0.02f);
  a.lung_a = j(0.34f, 0.015f);
  a.lung_b = j(0.70f, 0.03f);
  a.lung_lucency = j(0.34f, 0.03f);
  const float dome = j(0.41f, 0.03f);
  a.dia_h[0] = dome;
  a.dia_h[1] = dome + j(0.05f, 0.02f);
  a.dia_k = j(1.6f, 0.2f);
  a.med_hw = j(0.105f, 0.01f);
  a.heart_phi = j(0.50f, 0.08f);
  a.heart_b = 0.85f * a.heart_a;
  a.heart_cv = j(0.24f, 0.02f);
  a.carina_v = j(-0.20f, 0.03f);
  a.rib_v1 = j(-0.80f, 0.02f);
  a.rib_sp = j(0.112f, 0.006f);
  a.clav_v = j(-0.62f, 0.03f);
  a.marking_phase[0] = static_cast<float>(rng.uniform(0, 6.283));
  a.marking_phase[1] = static_cast<float>(rng.uniform(0, 6.283));
  a.texture_seed = static_cast<std::uint32_t>(rng.next());
  if (view == View::AP) {  // supine/portable: poorer inspiration, clavicles projected higher
    a.dia_h[0] -= 0.05f;
    a.dia_h[1] -= 0.05f;
    a.clav_v -= 0.07f;
    a.med_hw *= 1.12f;
  }
  a.set_ctr(static_cast<float>(rng.uniform(0.38, 0.45)));
  a.finalize();
  return a;
}

/// @brief Per-pixel intermediate results of the anatomy that findings reuse.
struct AnatomySample {
  float density = 0;   ///< total anatomical density at the point
  float lung[2] = {0, 0};  ///< soft lung masks (heart excluded) per side
  float heart = 0;     ///< soft heart mask
  float body = 0;      ///< soft body mask
};

namespace phantom_detail {

/// Posterior (and faint anterior) ribs on one side; returns density.
/// fracture: rib index with a discontinuity at lateral fraction fx (−1 = none), gap and step size.
inline float ribs_density(const Anatomy& a, float u, float v, int side, float aa, int frac_rib, float frac_x,
                          float frac_gap, float frac_step) {
  const float d = std::fabs(u - a.med_shift * 0.3f);
  if (d > 0.86f || d < 0.03f) return 0.f;
  const float x = (d - 0.03f) / 0.76f;
  // Posterior rib centreline: rises slightly from the spine, then sweeps down laterally.
  const float f = -0.13f * x + 0.52f * x * x;
  float w = v - f - a.rib_v1;
  if (w < -0.05f) return 0.f;
  // Invert the growing spacing: position k with w = k*sp + grow*k^2/2.
  const float g = a.rib_grow;
  float k = g > 1e-6f ? (-a.rib_sp + std::sqrt(a.rib_sp * a.rib_sp + 2.f * g * w)) / g : w / a.rib_sp;
  int ki = static_cast<int>(std::floor(k + 0.5f));
  if (frac_rib >= 0 && ki == frac_rib && x > frac_x) {
    w -= frac_step;
    k = g > 1e-6f ? (-a.rib_sp + std::sqrt(std::max(0.f, a.rib_sp * a.rib_sp + 2.f * g * w))) / g : w / a.rib_sp;
  }
  float out = 0.f;
  if (ki >= 0 && ki < 10) {
    const float sp = a.rib_sp + a.rib_grow * ki;
    const float off = (k - std::floor(k + 0.5f)) * sp;  // distance from the nearest rib centre
    const float hw = 0.017f + 0.0012f * ki;              // lower ribs are broader
    float r = band(off, hw, aa);
    // cortical rims: slightly denser edges
    r *= 0.75f + 0.25f * sstep(hw * 0.4f, hw, std::fabs(off));
    // the first ribs are short; lateral ends fade into the chest wall
    const float len = ki < 1 ? 0.45f : 1.0f;
    r *= sstep(len + 0.05f, len - 0.05f, x);
    if (frac_rib >= 0 && ki == frac_rib && std::fabs(x - frac_x) < frac_gap) r *= 0.05f;
    out += 0.075f * r;
  }
  // Anterior ribs: fainter, sloping down towards the midline (from lateral ends).
  if (x > 0.25f) {
    const float fa = 0.34f * (1.f - x) * (1.f - x) - 0.10f;
    const float wa = v - fa - (a.rib_v1 + 0.16f);
    const float spa = a.rib_sp * 1.05f;
    const float ka = wa / spa;
    const int kai = static_cast<int>(std::floor(ka + 0.5f));
    if (kai >= 0 && kai < 6) {
      const float off = (ka - static_cast<float>(kai)) * spa;
      out += 0.045f * band(off, 0.024f, aa) * sstep(0.25f, 0.45f, x);
    }
  }
  return out;
}

/// Clavicle density on one side.
inline float clavicle_density(const Anatomy& a, float u, float v, float aa) {
  if (std::fabs(v - a.clav_v) > 0.25f) return 0.f;
  const float d = std::fabs(u);
  if (d < 0.02f || d > 0.70f) return 0.f;
  const float x = (d - 0.02f) / 0.62f;
  const float c = a.clav_v - 0.10f * x + 0.045f * std::sin(3.14159f * x) + (a.view == View::AP ? 0.03f * x : 0.f);
  const float hw = 0.030f - 0.006f * x;
  float r = band(v - c, hw, aa);
  r *= 0.8f + 0.2f * sstep(hw * 0.3f, hw, std::fabs(v - c));
  return 0.22f * r * sstep(0.05f, 0.0f, x - 0.98f);
}

/// Thoracic spine: vertebral bodies, disc spaces, pedicles (seen faintly through the mediastinum).
inline float spine_density(const Anatomy& a, float u, float v, float aa) {
  if (std::fabs(u) > 0.10f) return 0.f;
  const float col = band(u, 0.062f, aa);
  const float ph = (v + 1.f) / a.vert_sp;
  const float fr = ph - std::floor(ph);                 // 0..1 within one vertebra
  const float disc = band(fr - 0.5f, 0.10f, 0.04f);     // disc space darker
  float dens = 0.05f * col * (1.f - 0.6f * disc);
  // pedicles: small ovals either side of the midline
  const float pv = (fr - 0.25f) * a.vert_sp;
  const float pr = std::min(ellipse_f(u, pv, -0.045f, 0.f, 0.014f, 0.020f), ellipse_f(u, pv, 0.045f, 0.f, 0.014f, 0.020f));
  dens += 0.035f * inside(pr, aa);
  return dens;
}

/// Vascular markings: branching vessels radiating from the hilum, tapering and fading to the
/// periphery (the lateral third of a normal lung is almost free of visible vessels).
inline float markings(const Anatomy& a, float u, float v, int side) {
  const float sgn = side ? 1.f : -1.f;
  const float hu = sgn * (a.med_hw + 0.03f) + a.med_shift, hv = -0.04f;  // hilum at the mediastinal border
  const float du = u - hu, dv = v - hv;
  const float r = std::sqrt(du * du + dv * dv);
  if (r < 0.02f) return 0.f;
  const float phi = fast_atan2(dv, du * sgn);
  const float ph = a.marking_phase[side];
  const float wob = 0.35f * fast_sin(9.f * r + ph) + 0.18f * fast_sin(23.f * r + 2.f * ph);
  float c1 = 0.5f + 0.5f * fast_cos(13.f * phi + 4.f * wob + ph);
  c1 = c1 * c1;
  c1 = c1 * c1 * c1;  // ^6: thin bright lines
  float c2 = 0.5f + 0.5f * fast_cos(29.f * phi - 5.f * wob + 2.f * ph);
  c2 = c2 * c2;
  c2 = c2 * c2 * c2 * c2;  // ^8: finer branches further out
  const float fall = std::exp(-r * 3.2f) * sstep(0.04f, 0.16f, r);  // no visible convergence point
  return fall * (c1 + 0.6f * c2 * sstep(0.08f, 0.25f, r));
}

}  // namespace phantom_detail

/// @brief Evaluate the normal anatomy at canonical (u, v).
/// @param a geometry
/// @param u horizontal coordinate
/// @param v vertical coordinate
/// @param aa anti-aliasing half-width (≈ half a pixel in normalised units)
/// @param frac_rib rib index with a fracture, −1 for none (only on side @p frac_side)
/// @param frac_side side of the fracture
/// @param frac_x lateral position (0 spine … 1 chest wall) of the fracture
/// @param frac_gap half-width of the gap (fraction of the rib length)
/// @param frac_step displacement of the lateral fragment
inline AnatomySample anatomy_at(const Anatomy& a, float u, float v, float aa, int frac_rib = -1, int frac_side = 0,
                                float frac_x = 0.f, float frac_gap = 0.f, float frac_step = 0.f) {
  using namespace phantom_detail;
  AnatomySample s;
  // Body: rounded trunk (superellipse) + neck + shoulders/upper arms, which reach the image edge above
  // the axillae; thickness falls off towards the flanks like a cylinder.
  const float tu = u / a.body_hw, tv = (v - 0.30f) / (0.30f - a.body_top);
  const float tu2 = tu * tu, tv2 = tv * tv;
  const float trunk = std::sqrt(std::sqrt(tu2 * tu2 + tv2 * tv2));
  const float au = std::fabs(u);
  const float shoulder_line = a.body_top - 0.02f + 0.10f * std::max(0.f, au - a.neck_hw) - 0.06f * std::max(0.f, au - 0.75f);
  const float axilla = -0.42f + 0.25f * std::max(0.f, au - a.body_hw);
  const float shoulders = std::max(std::max(shoulder_line - v, v - axilla), au - 1.3f);
  const float body_f = std::min(std::min((trunk - 1.f) * 0.9f, (v < -0.55f) ? au - a.neck_hw : 10.f), shoulders);
  s.body = inside(body_f, aa * 1.5f);
  // Humeral heads at the upper corners.
  const float hh = (au > 0.8f && v < -0.42f)
                       ? std::min(ellipse_f(u, v, -0.97f, -0.60f, 0.12f, 0.13f), ellipse_f(u, v, 0.97f, -0.60f, 0.12f, 0.13f))
                       : 1.f;
  if (s.body <= 0.f) return s;
  const float thick = std::sqrt(std::max(0.f, 1.f - 0.85f * tu2));
  float dens = a.soft * (0.45f + 0.55f * thick) * s.body;
  dens = std::max(dens, 0.36f * s.body);  // shoulders and arms are not thin at the edge
  dens += 0.14f * inside(hh, aa);
  // Abdomen below the diaphragm is uniformly dense (liver on the right).
  const float dia = a.diaphragm_v(u);
  dens += 0.06f * sstep(dia - aa, dia + 0.05f, v) * s.body;
  // Heart (rotated ellipse) and the upper mediastinum with the aortic knob.
  const float c = a.heart_cos, sn = a.heart_sin;
  const float hu = u - a.heart_cu, hv = v - a.heart_cv;
  const float ru = c * hu + sn * hv, rv = -sn * hu + c * hv;
  s.heart = inside(ellipse_f(ru, rv, 0.f, 0.f, a.heart_a, a.heart_b), aa);
  // Lungs: aerated lung removes density; the heart and mediastinum occlude them.
  const int side = u > a.med_shift ? 1 : 0;
  const float lf = a.lung_f(u, v, side);
  const float knob = (std::fabs(v + 0.30f) < 0.2f && std::fabs(u - a.med_shift - a.med_hw) < 0.2f)
                         ? ellipse_f(u, v, a.med_shift + a.med_hw + 0.02f, -0.30f, a.knob_r, a.knob_r * 1.1f)
                         : 1.f;
  const float occl = std::max(s.heart, inside(knob, aa));
  const float lung = inside(lf, aa) * (1.f - occl);
  s.lung[side] = lung;
  dens -= a.lung_lucency * lung;
  // Pulmonary vessels on the aerated lung; hila a little denser.
  if (lung > 0.f) {
    dens += 0.11f * lung * markings(a, u, v, side);
    // fine parenchymal texture
    const float n = value_noise(u * 18.f, v * 18.f, a.texture_seed) - 0.5f;
    dens += 0.02f * n * lung;
  }
  if (std::fabs(std::fabs(u - a.med_shift) - 0.17f) < 0.16f && std::fabs(v + 0.04f) < 0.2f) {
    const float hil = ellipse_f(u, v, (side ? 1.f : -1.f) * 0.17f + a.med_shift, -0.04f, 0.06f, 0.10f);
    dens += 0.05f * inside(hil, 0.05f);
  }
  // Trachea and main bronchi: air column over the mediastinum.
  if (v < a.carina_v) {
    dens -= 0.17f * band(u - a.med_shift * 0.5f, 0.034f, aa) * sstep(-1.05f, -0.85f, v);
  } else if (v < a.carina_v + 0.16f) {
    const float dv = v - a.carina_v;
    const float br = std::min(std::fabs(u - a.med_shift * 0.5f + 0.75f * dv), std::fabs(u - a.med_shift * 0.5f - 0.95f * dv));
    dens -= 0.13f * band(br, 0.026f, aa) * (1.f - dv / 0.16f);
  }
  // Bones.
  dens += spine_density(a, u - a.med_shift * 0.3f, v, aa);
  dens += ribs_density(a, u, v, side, aa, frac_side == side ? frac_rib : -1, frac_x, frac_gap, frac_step) * s.body;
  dens += clavicle_density(a, u, v, aa);
  // Gastric bubble under the left hemidiaphragm.
  if (std::fabs(u - a.dia_peak) < 0.15f && std::fabs(v - a.dia_h[1] - 0.11f) < 0.1f) {
    const float gb = ellipse_f(u, v, a.dia_peak + 0.02f, a.dia_h[1] + 0.11f, 0.09f, 0.05f);
    dens -= 0.12f * inside(gb, aa) * sstep(a.dia_h[1] + 0.02f, a.dia_h[1] + 0.05f, v);
  }
  s.density = dens;
  return s;
}

}  // namespace cxrl::cxr
