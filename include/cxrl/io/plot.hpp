/// @file
/// @brief Line plots with ±SE bands rendered to RGB images (for training curves people would rather look at
///        than read): axes with 1-2-5 ticks, a title, axis labels and a legend, text through io/font.hpp.
#pragma once

#include <cxrl/io/font.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace cxrl::io {

/// @brief One curve: y over x, with an optional ±se band.
struct Series {
  std::string name;            ///< legend entry
  std::vector<double> x;       ///< abscissae
  std::vector<double> y;       ///< ordinates (NaN points are skipped)
  std::vector<double> se;      ///< half-width of the band around y (empty: no band)
  std::array<float, 3> color{0.12f, 0.47f, 0.71f};  ///< RGB in [0, 1]
};

/// @brief One set of axes.
struct Panel {
  std::string title;                ///< above the axes
  std::string xlabel;               ///< under the x axis
  std::string ylabel;               ///< above the y axis
  std::vector<Series> series;       ///< curves
};

/// @brief A qualitative palette (matplotlib's tab10).
inline std::array<float, 3> palette(std::size_t i) {
  static const std::array<std::array<float, 3>, 6> c{{{0.12f, 0.47f, 0.71f}, {1.0f, 0.50f, 0.05f}, {0.17f, 0.63f, 0.17f},
                                                      {0.84f, 0.15f, 0.16f}, {0.58f, 0.40f, 0.74f}, {0.55f, 0.34f, 0.29f}}};
  return c[i % c.size()];
}

namespace plot_detail {
/// Tick positions in [lo, hi] with a 1-2-5 step, about @p target of them (matplotlib's MaxNLocator idea).
inline std::vector<double> ticks(double lo, double hi, int target = 5) {
  if (!(hi > lo)) return {lo};
  const double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / target)));
  // The 1-2-5 step whose tick count is nearest the target (ties: the larger step).
  double num = 1, den = 1;  // step = num / den, kept as a ratio so that ticks are exact decimals (0.6, not 0.6000000000000001)
  const double inv = mag < 1 ? std::round(1 / mag) : 1, base = mag < 1 ? 1 : mag;
  int best = std::numeric_limits<int>::max();
  for (double m : {0.5, 1.0, 2.0, 5.0, 10.0}) {
    const double st = m * base / inv;
    const int n = static_cast<int>(std::floor(hi / st + 1e-9) - std::ceil(lo / st - 1e-9)) + 1;
    if (std::abs(n - target) <= best) {
      best = std::abs(n - target);
      num = m * base;
      den = inv;
    }
  }
  std::vector<double> t;
  const double st = num / den;
  for (auto k = static_cast<long long>(std::ceil(lo / st - 1e-9)); k <= static_cast<long long>(std::floor(hi / st + 1e-9)); ++k) {
    const double v = static_cast<double>(k) * num / den;
    t.push_back(v == 0 ? 0.0 : v);
  }
  return t;
}
inline std::string label(double v) {
  char b[32];
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(b, sizeof b, "%.1e", v);
  else std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}
inline void blend(torch::TensorAccessor<float, 3>& a, int x, int y, std::array<float, 3> c, float alpha, int W, int H) {
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  for (int k = 0; k < 3; ++k) a[k][y][x] = a[k][y][x] * (1 - alpha) + c[static_cast<std::size_t>(k)] * alpha;
}
/// A segment of the given width, stamped as discs every half pixel.
inline void segment(torch::TensorAccessor<float, 3>& a, double x0, double y0, double x1, double y1, std::array<float, 3> c, double w, int W, int H) {
  const double len = std::hypot(x1 - x0, y1 - y0);
  const int n = std::max(1, static_cast<int>(len * 2));
  const double r = w / 2;
  for (int i = 0; i <= n; ++i) {
    const double x = x0 + (x1 - x0) * i / n, y = y0 + (y1 - y0) * i / n;
    for (int dy = static_cast<int>(std::floor(-r - 1)); dy <= static_cast<int>(std::ceil(r + 1)); ++dy)
      for (int dx = static_cast<int>(std::floor(-r - 1)); dx <= static_cast<int>(std::ceil(r + 1)); ++dx) {
        const int px = static_cast<int>(std::floor(x)) + dx, py = static_cast<int>(std::floor(y)) + dy;
        const double d = std::hypot(px + 0.5 - x, py + 0.5 - y);
        const float cov = static_cast<float>(std::clamp(r + 0.5 - d, 0.0, 1.0));
        if (cov > 0 && px >= 0 && py >= 0 && px < W && py < H) {
          // max-blend so that overlapping stamps do not darken the line
          for (int k = 0; k < 3; ++k) {
            const float target = a[k][py][px] * (1 - cov) + c[static_cast<std::size_t>(k)] * cov;
            if (std::abs(target - c[static_cast<std::size_t>(k)]) < std::abs(a[k][py][px] - c[static_cast<std::size_t>(k)])) a[k][py][px] = target;
          }
        }
      }
  }
}
}  // namespace plot_detail

/**
 * @brief Renders one panel.
 * @param p the panel
 * @param width image width in pixels
 * @param height image height in pixels
 * @param font text renderer
 * @return [3, height, width] float RGB in [0, 1]
 */
inline torch::Tensor render_panel(const Panel& p, int width = 440, int height = 300, const Font& font = Font::shared()) {
  using namespace plot_detail;
  auto img = torch::ones({3, height, width});
  const int L = 62, R = 12, T = 34, B = 42;
  const int pw = width - L - R, ph = height - T - B;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& s : p.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (std::isnan(s.y[i])) continue;
      const double e = i < s.se.size() && std::isfinite(s.se[i]) ? s.se[i] : 0.0;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i] - e), yhi = std::max(yhi, s.y[i] + e);
    }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (xhi <= xlo) xhi = xlo + 1;
  if (yhi <= ylo) yhi = ylo + std::max(1e-6, std::abs(ylo) * 0.1), ylo -= std::max(1e-6, std::abs(ylo) * 0.1);
  const double pad = 0.06 * (yhi - ylo);
  ylo -= pad, yhi += pad;
  auto X = [&](double x) { return L + (x - xlo) / (xhi - xlo) * pw; };
  auto Y = [&](double y) { return T + (yhi - y) / (yhi - ylo) * ph; };
  auto a = img.accessor<float, 3>();
  const std::array<float, 3> grey{0.85f, 0.85f, 0.85f}, black{0.1f, 0.1f, 0.1f};
  for (double t : ticks(ylo, yhi)) {
    const int y = static_cast<int>(Y(t));
    for (int x = L; x < L + pw; ++x) blend(a, x, y, grey, 1, width, height);
    const auto s = label(t);
    font.draw(img, L - 6 - font.width(s, 11), y - 7, s, 11, black);
  }
  for (double t : ticks(xlo, xhi)) {
    const int x = static_cast<int>(X(t));
    for (int y = T + ph; y < T + ph + 4; ++y) blend(a, x, y, black, 1, width, height);
    const auto s = label(t);
    font.draw(img, x - font.width(s, 11) / 2, T + ph + 6, s, 11, black);
  }
  for (int x = L; x <= L + pw; ++x) blend(a, x, T + ph, black, 1, width, height);
  for (int y = T; y <= T + ph; ++y) blend(a, L, y, black, 1, width, height);
  // Bands first, then lines on top.
  for (const auto& s : p.series) {
    if (s.se.empty()) continue;
    for (std::size_t i = 0; i + 1 < s.x.size() && i + 1 < s.y.size(); ++i) {
      if (std::isnan(s.y[i]) || std::isnan(s.y[i + 1]) || i + 1 >= s.se.size()) continue;
      const int x0 = static_cast<int>(std::round(X(s.x[i]))), x1 = static_cast<int>(std::round(X(s.x[i + 1])));
      for (int x = x0; x <= x1; ++x) {
        const double f = x1 == x0 ? 0 : static_cast<double>(x - x0) / (x1 - x0);
        const double y = s.y[i] + f * (s.y[i + 1] - s.y[i]), e = s.se[i] + f * (s.se[i + 1] - s.se[i]);
        for (int py = static_cast<int>(Y(y + e)); py <= static_cast<int>(Y(y - e)); ++py) blend(a, x, py, s.color, 0.18f, width, height);
      }
    }
  }
  for (const auto& s : p.series)
    for (std::size_t i = 0; i + 1 < s.x.size() && i + 1 < s.y.size(); ++i)
      if (!std::isnan(s.y[i]) && !std::isnan(s.y[i + 1])) segment(a, X(s.x[i]), Y(s.y[i]), X(s.x[i + 1]), Y(s.y[i + 1]), s.color, 2.0, width, height);
  font.draw(img, L, 6, p.title, 14, black);
  if (!p.ylabel.empty()) font.draw(img, 4, 20, p.ylabel, 11, {0.3f, 0.3f, 0.3f});
  if (!p.xlabel.empty()) font.draw(img, L + pw / 2 - font.width(p.xlabel, 11) / 2, height - 16, p.xlabel, 11, {0.3f, 0.3f, 0.3f});
  int ly = T + 4;
  for (const auto& s : p.series) {
    if (s.name.empty()) continue;
    const int lx = L + pw - 8 - font.width(s.name, 11) - 18;
    for (int x = lx; x < lx + 14; ++x)
      for (int y = ly + 5; y < ly + 8; ++y) blend(a, x, y, s.color, 1, width, height);
    font.draw(img, lx + 18, ly, s.name, 11, black);
    ly += 15;
  }
  return img;
}

/**
 * @brief Panels in a grid, row by row.
 * @param panels the panels
 * @param cols panels per row
 * @param width, height size of each panel
 * @return [3, rows·height, cols·width]
 */
inline torch::Tensor render_panels(const std::vector<Panel>& panels, int cols, int width = 440, int height = 300) {
  if (panels.empty() || cols < 1) throw std::invalid_argument("render_panels: need panels and cols >= 1");
  const int n = static_cast<int>(panels.size()), rows = (n + cols - 1) / cols;
  auto out = torch::ones({3, rows * height, std::min(n, cols) * width});
  for (int i = 0; i < n; ++i)
    out.narrow(1, (i / cols) * height, height).narrow(2, (i % cols) * width, width).copy_(render_panel(panels[static_cast<std::size_t>(i)], width, height));
  return out;
}

}  // namespace cxrl::io
