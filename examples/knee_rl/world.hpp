// The knee world: AP knee radiographs whose Kellgren–Lawrence (KL) grade is written into the anatomy (joint
// space, osteophytes, sclerosis) and into a caption. Training captions and test captions come from disjoint
// wording pools, so a tuned generator is evaluated on phrasings it never saw; parse_caption reads both pools,
// which lets a reward check an image against the grade its prompt asked for.
#pragma once

#include <cxrl/data/rng.hpp>
#include <cxrl/data/sample.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace knee_rl {

/// Which knee was imaged.
enum class Side { left, right };

/// What a caption states and a grader should recover.
struct KneeFindings {
  Side side = Side::right;  ///< imaged knee
  int kl_grade = 0;         ///< Kellgren–Lawrence grade, 0..4
  bool operator==(const KneeFindings&) const = default;
};

/// Nuisance of one exposure; never named in a caption, so a grader must be invariant to it.
struct KneePose {
  double cx = 0, cy = 0;          ///< knee centre in image units (the image spans [-1,1]²)
  double scale = 1;               ///< anatomy size factor
  double angle_rad = 0;           ///< in-plane rotation
  double bone_brightness = 0.65;  ///< bone intensity
  double soft_tissue = 0.16;      ///< soft-tissue haze intensity
  double noise = 0.02;            ///< Gaussian noise standard deviation
};

/// Caption wording pool: test captions use templates and words the training pool never uses.
enum class Phrasing { train, test };

/// One drawn study: what the image shows and how it was exposed.
struct KneeStudy {
  KneeFindings findings;  ///< ground truth
  KneePose pose;          ///< nuisance
};

/// A rendered knee image–caption pair (image float [1,R,R] in [0,1]).
using Sample = cxrl::data::Sample<KneeFindings, KneePose>;

namespace detail {

// Geometry lives in image units ([-1,1] across the image) so every width scales with the resolution; the joint
// space is specified in 32-px pixels because that is the default resolution the grades were tuned to read at.
inline constexpr std::array<double, 5> kGapPx32 = {3.5, 3.0, 2.2, 1.4, 0.5};
inline constexpr std::array<double, 5> kSpurLength = {0.0, 0.035, 0.09, 0.14, 0.19};
inline constexpr std::array<double, 5> kSclerosis = {0.0, 0.0, 0.0, 0.14, 0.24};
inline constexpr std::array<double, 5> kGradeCdf = {0.25, 0.45, 0.70, 0.90, 1.0};

using T = torch::Tensor;

inline T sd_round_box(const T& u, const T& v, double cx, double cy, double hx, double hy, double r) {
  auto qx = (u - cx).abs() - (hx - r), qy = (v - cy).abs() - (hy - r);
  return torch::sqrt(qx.clamp_min(0).square() + qy.clamp_min(0).square()) + torch::maximum(qx, qy).clamp_max(0) - r;
}

// Not an exact distance, but close enough near the boundary, which is all anti-aliasing looks at.
inline T sd_ellipse(const T& u, const T& v, double cx, double cy, double ax, double ay) {
  return (torch::sqrt(((u - cx) / ax).square() + ((v - cy) / ay).square()) - 1.0) * std::min(ax, ay);
}

// A spur tapering outward from a bone margin at u0 (m = ±1 picks the side); the max of three half-plane-like
// distances is not exact either, but its 1-Lipschitz faces keep the edges as sharp as the true shape's.
inline T sd_spur(const T& u, const T& v, double u0, double m, double cy, double len, double th) {
  auto s = m * u - u0;
  return torch::maximum(torch::maximum((v - cy).abs() - th * (1.0 - 0.75 * (s / len).clamp(0, 1)), -s - 0.05), s - len);
}

// Polynomial smooth minimum: lets the shafts flare into the epiphyses without a visible corner.
inline T smin(const T& a, const T& b, double k) {
  auto h = (k - (a - b).abs()).clamp_min(0) / k;
  return torch::minimum(a, b) - h * h * (k / 4);
}

inline void check_grade(int g) {
  if (g < 0 || g > 4) throw std::invalid_argument("knee_rl: KL grade " + std::to_string(g) + " outside 0..4");
}

}  // namespace detail

/// Joint-space width of a grade in image units (before the pose scale).
inline double joint_space(int kl_grade) {
  detail::check_grade(kl_grade);
  return detail::kGapPx32[static_cast<std::size_t>(kl_grade)] * (2.0 / 32.0);
}

/// The study with number @p index of world @p world_seed (deterministic; grades ≈ 25/20/25/20/10 %).
inline KneeStudy draw_study(uint64_t world_seed, uint64_t index) {
  cxrl::data::Rng r(cxrl::data::child_seed(world_seed, index));
  KneeStudy s;
  const double u = r.uniform();
  while (s.findings.kl_grade < 4 && u >= detail::kGradeCdf[static_cast<std::size_t>(s.findings.kl_grade)]) ++s.findings.kl_grade;
  s.findings.side = r.bernoulli(0.5) ? Side::left : Side::right;
  auto& p = s.pose;
  p.cx = r.uniform(-0.06, 0.06);
  p.cy = r.uniform(-0.06, 0.06);
  p.scale = r.uniform(0.9, 1.1);
  p.angle_rad = r.uniform(-1.0, 1.0) * 5.0 * 3.14159265358979 / 180.0;
  p.bone_brightness = r.uniform(0.55, 0.72);
  p.soft_tissue = r.uniform(0.10, 0.22);
  p.noise = r.uniform(0.01, 0.035);
  return s;
}

/**
 * @brief Render an AP knee radiograph.
 *
 * Drawn 4× supersampled and box-filtered, so sub-pixel joint spaces (KL 4) still darken the joint line in
 * proportion to their width instead of vanishing between pixel centres.
 * @param s study to draw
 * @param resolution output side R (≥ 16)
 * @param noise_seed seed of the image noise (the only random part)
 * @return float [1,R,R] in [0,1]
 */
inline torch::Tensor render(const KneeStudy& s, int resolution, uint64_t noise_seed) {
  if (resolution < 16) throw std::invalid_argument("knee_rl::render: resolution " + std::to_string(resolution) + " < 16");
  detail::check_grade(s.findings.kl_grade);
  using detail::T;
  const int ss = 4, n = resolution * ss;
  const auto& p = s.pose;
  const double sub = 2.0 / n, soft = 0.5 * sub / p.scale;
  auto t = torch::linspace(-1.0 + sub / 2, 1.0 - sub / 2, n, torch::kFloat32);
  auto dx = (t.view({1, n}).expand({n, n}) - p.cx) / p.scale, dy = (t.view({n, 1}).expand({n, n}) - p.cy) / p.scale;
  const double ca = std::cos(p.angle_rad), sa = std::sin(p.angle_rad);
  const T u = dx * ca + dy * sa, v = dy * ca - dx * sa;  // local frame: v points down the leg
  auto cover = [&](const T& d) { return torch::sigmoid(-d / soft); };
  const double b = p.bone_brightness;
  // A bright cortical rim over a dimmer medulla reads as bone rather than as a flat blob.
  auto bone = [&](const T& d) { return b * (0.78 * cover(d) + 0.22 * (cover(d) - cover(d + 0.05))); };

  const int g = s.findings.kl_grade;
  const double h = joint_space(g) / 2;  // condyles end at v = -h, the plateau starts at v = +h
  T femur = detail::smin(detail::sd_round_box(u, v, 0, -1.0, 0.24, 0.75, 0.02),
                         torch::minimum(detail::sd_round_box(u, v, 0, -h - 0.32, 0.42, 0.16, 0.14),
                                        torch::minimum(detail::sd_round_box(u, v, -0.25, -h - 0.17, 0.22, 0.17, 0.15),
                                                       detail::sd_round_box(u, v, 0.25, -h - 0.17, 0.22, 0.17, 0.15))),
                         0.22);
  femur = torch::maximum(femur, -detail::sd_ellipse(u, v, 0, -h, 0.07, 0.13));  // intercondylar notch
  const T tibia = detail::smin(detail::sd_round_box(u, v, 0, h + 0.13, 0.52, 0.13, 0.05),
                               detail::smin(detail::sd_round_box(u, v, 0, h + 0.36, 0.40, 0.18, 0.08),
                                            detail::sd_round_box(u, v, 0, h + 1.1, 0.23, 0.8, 0.02), 0.2),
                               0.2);
  // AP view, patient facing the viewer: a right knee's lateral side (where the fibula is) is on the image left.
  const double lat = s.findings.side == Side::right ? -1.0 : 1.0;
  const T fibula = detail::smin(detail::sd_ellipse(u, v, lat * 0.50, h + 0.40, 0.10, 0.09),
                                detail::sd_round_box(u, v, lat * 0.52, h + 1.2, 0.06, 0.75, 0.03), 0.08);
  T bones = torch::maximum(torch::maximum(bone(femur), bone(tibia)), 0.9 * bone(fibula));

  const double spur = detail::kSpurLength[static_cast<std::size_t>(g)];
  if (spur > 0) {
    // Marginal spurs sit just off the joint line (femoral above, tibial below) so they never bridge the space.
    const double th = 0.03 + 0.05 * spur;
    for (double m : {-1.0, 1.0}) {
      const T d = torch::minimum(detail::sd_spur(u, v, 0.43, m, -h - 0.07, spur + 0.02, th),
                                 detail::sd_spur(u, v, 0.50, m, h + 0.07, spur + 0.02, th));
      bones = torch::maximum(bones, 1.05 * b * cover(d));
    }
  }
  const double scl = detail::kSclerosis[static_cast<std::size_t>(g)];
  if (scl > 0) {
    const double w = 0.09, band_soft = 0.02;
    bones = bones + scl * b *
                        (cover(femur) * torch::sigmoid((v + h + w) / band_soft) +
                         cover(tibia) * torch::sigmoid((h + w - v) / band_soft));
  }
  const T patella = cover(detail::sd_ellipse(u, v, 0.02, -h - 0.30, 0.19, 0.21));
  const T tissue = torch::sigmoid(-detail::sd_round_box(u, v, 0, 0, 0.80, 1.6, 0.3) / 0.08);
  // X-ray attenuation adds up along the beam, so overlapping layers add rather than occlude.
  T img = 0.03 + p.soft_tissue * tissue + bones + 0.10 * b * patella;
  img = torch::avg_pool2d(img.view({1, 1, n, n}), ss).view({1, resolution, resolution});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(noise_seed);
  img = img + p.noise * torch::randn({1, resolution, resolution}, gen, torch::kFloat32);
  return img.clamp(0.0, 1.0).contiguous();
}

namespace detail {
inline constexpr std::array<const char*, 5> kTrainFinding = {
    "no joint space narrowing and no osteophytes", "doubtful joint space narrowing with possible osteophytic lipping",
    "possible joint space narrowing with definite osteophytes",
    "moderate joint space narrowing with multiple osteophytes and some sclerosis",
    "severe joint space narrowing with large osteophytes and marked sclerosis"};
inline constexpr std::array<const char*, 5> kTrainVerdict = {"no osteoarthritis", "doubtful osteoarthritis",
                                                             "minimal osteoarthritis", "moderate osteoarthritis",
                                                             "severe osteoarthritis"};
inline constexpr std::array<const char*, 5> kTestFinding = {
    "Joint space preserved, no spurs", "Questionable narrowing, tiny spur at most", "Possible narrowing, definite osteophytes",
    "Definite narrowing, several spurs, subchondral sclerosis", "Bone-on-bone contact, large spurs, dense sclerosis"};
inline constexpr std::array<const char*, 5> kTestVerdict = {"no degenerative change", "equivocal degenerative change",
                                                            "mild arthrosis", "moderate arthrosis", "end-stage arthrosis"};
// Roman numerals have no zero, and radiologists write "grade 0" anyway.
inline constexpr std::array<const char*, 5> kRoman = {"0", "I", "II", "III", "IV"};
}  // namespace detail

/// A short caption (< 25 words) naming the side and the KL grade; @p seed picks the template within the pool.
inline std::string caption(const KneeFindings& f, Phrasing p, uint64_t seed) {
  detail::check_grade(f.kl_grade);
  const auto g = static_cast<std::size_t>(f.kl_grade);
  const std::string side = f.side == Side::left ? "left" : "right", Side_cap = f.side == Side::left ? "Left" : "Right";
  const std::string num = std::to_string(f.kl_grade), roman = detail::kRoman[g];
  cxrl::data::Rng r(cxrl::data::child_seed(seed, 0x4B4E4545ull));
  if (p == Phrasing::train) {
    const std::string finding = detail::kTrainFinding[g], verdict = detail::kTrainVerdict[g];
    switch (r.below(4)) {
      case 0: return Side_cap + " knee, AP view. Kellgren-Lawrence grade " + num + ": " + finding + ".";
      case 1: return "AP radiograph of the " + side + " knee. KL " + num + ", " + verdict + ".";
      case 2: return Side_cap + " knee radiograph showing " + finding + ", consistent with KL grade " + num + ".";
      default: return "Frontal view of the " + side + " knee: " + verdict + " (Kellgren-Lawrence " + num + ").";
    }
  }
  const std::string finding = detail::kTestFinding[g], verdict = detail::kTestVerdict[g];
  switch (r.below(4)) {
    case 0: return Side_cap + " knee: KL grade " + roman + ". " + finding + ".";
    case 1: return "Kellgren Lawrence " + num + ": " + verdict + " in the " + side + " knee.";
    case 2: return Side_cap + " knee AP film, grade " + roman + " (Kellgren Lawrence). " + finding + ".";
    default: return "Standing film, " + side + " knee: " + verdict + ", KL " + roman + ".";
  }
}

/**
 * @brief Read (side, KL grade) back from a caption of either pool, or from similar free text.
 *
 * A grade is a numeral (0–4 or I–IV, or glued as "KL2") right after "KL", "Kellgren[-/ ]Lawrence" or "grade";
 * case is ignored. Returns nullopt when no grade or no side is named, or when the text names conflicting ones.
 */
inline std::optional<KneeFindings> parse_caption(std::string_view text) {
  std::vector<std::string> words(1);
  for (char c : text) {
    const auto uc = static_cast<unsigned char>(c);
    if (std::isalnum(uc)) words.back() += static_cast<char>(std::tolower(uc));
    else if (!words.back().empty()) words.emplace_back();
  }
  auto numeral = [](const std::string& w) -> int {
    static constexpr std::array<std::string_view, 9> names = {"0", "1", "2", "3", "4", "i", "ii", "iii", "iv"};
    for (std::size_t k = 0; k < names.size(); ++k)
      if (w == names[k]) return static_cast<int>(k < 5 ? k : k - 4);
    return -1;
  };
  std::optional<Side> side;
  std::optional<int> grade;
  bool conflict = false;
  auto note_side = [&](Side s) { conflict |= side && *side != s; side = s; };
  auto note_grade = [&](int g) { conflict |= grade && *grade != g; grade = g; };
  for (std::size_t k = 0; k < words.size(); ++k) {
    const std::string& w = words[k];
    if (w == "left") note_side(Side::left);
    if (w == "right") note_side(Side::right);
    if (w.size() == 3 && w.starts_with("kl") && numeral(w.substr(2)) >= 0) note_grade(numeral(w.substr(2)));
    const bool marker = w == "kl" || w == "kellgren" || w == "lawrence" || w == "grade";
    if (marker && k + 1 < words.size() && numeral(words[k + 1]) >= 0) note_grade(numeral(words[k + 1]));
  }
  if (!side || !grade || conflict) return std::nullopt;
  return KneeFindings{*side, *grade};
}

/// A split of the knee world: @p n studies, rendered at @p resolution on demand.
class KneeDataset {
 public:
  /**
   * @param world_seed world seed (the same seed gives the same studies, images and captions)
   * @param split which split; the splits draw disjoint study streams, and only train uses the train phrasing
   * @param n number of studies
   * @param resolution image side R
   */
  KneeDataset(uint64_t world_seed, cxrl::data::Split split, std::size_t n, int resolution)
      : seed_(world_seed), split_(split), n_(n), resolution_(resolution) {
    if (resolution < 16) throw std::invalid_argument("knee_rl::KneeDataset: resolution " + std::to_string(resolution) + " < 16");
  }
  /// Number of studies.
  std::size_t size() const { return n_; }
  /// Study @p i (cheap: nothing is rendered).
  KneeStudy study(std::size_t i) const { return draw_study(seed_, index(i)); }
  /// Caption of study @p i (cheap: nothing is rendered).
  std::string prompt(std::size_t i) const {
    const Phrasing ph = split_ == cxrl::data::Split::train ? Phrasing::train : Phrasing::test;
    return caption(study(i).findings, ph, cxrl::data::child_seed(cxrl::data::child_seed(seed_, index(i)), 0x43415054ull));
  }
  /// Sample @p i: image [1,R,R], caption, findings, pose and split.
  Sample get(std::size_t i) const {
    const KneeStudy s = study(i);
    Sample out;
    out.image = render(s, resolution_, cxrl::data::child_seed(cxrl::data::child_seed(seed_, index(i)), 0x4E4F4953ull));
    out.prompt = prompt(i);
    out.labels = s.findings;
    out.meta = s.pose;
    out.split = split_;
    return out;
  }

 private:
  // 2^40 studies per split is far beyond any run, so the index streams never meet.
  uint64_t index(std::size_t i) const {
    if (i >= n_) throw std::out_of_range("knee_rl::KneeDataset: index " + std::to_string(i) + " >= size " + std::to_string(n_));
    return static_cast<uint64_t>(i) + (static_cast<uint64_t>(split_) << 40);
  }

  uint64_t seed_;
  cxrl::data::Split split_;
  std::size_t n_;
  int resolution_;
};

}  // namespace knee_rl
