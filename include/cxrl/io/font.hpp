/// @file
/// @brief Text on images: a TrueType font rasterised with stb_truetype, for plot labels and figure captions.
///
/// stb_truetype is compiled into every translation unit that includes this header with internal linkage
/// (`STBTT_STATIC`), as io/image.hpp does for stb_image. The font is DejaVu Sans from Debian's fonts-dejavu-core
/// unless `$CXRL_FONT` names another TrueType file.
#pragma once

#if defined(__STB_INCLUDE_STB_TRUETYPE_H__)
#error "cxrl/io/font.hpp must be included before any other inclusion of stb_truetype.h"
#endif
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_truetype.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <torch/torch.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::io {

/// @brief The default font file: `$CXRL_FONT`, else DejaVu Sans (Debian package fonts-dejavu-core).
inline std::filesystem::path default_font_path() {
  if (const char* f = std::getenv("CXRL_FONT")) return f;
  return "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
}

/// @brief A TrueType font loaded once; draws UTF-8 text (Latin-1 and common symbols) onto RGB float images.
class Font {
 public:
  /// @brief Loads @p path. @throws std::runtime_error naming the file (and the Debian package for the default)
  explicit Font(const std::filesystem::path& path = default_font_path()) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      throw std::runtime_error("font " + path.string() + " not found (install Debian's fonts-dejavu-core, or set CXRL_FONT to a .ttf file)");
    data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!stbtt_InitFont(&info_, data_.data(), stbtt_GetFontOffsetForIndex(data_.data(), 0)))
      throw std::runtime_error("font " + path.string() + ": not a TrueType font");
  }

  /// @brief The shared default font (loaded on first use).
  static const Font& shared() {
    static const Font f;
    return f;
  }

  /// @brief Width in pixels of @p text at pixel height @p px.
  int width(const std::string& text, float px) const {
    const float s = stbtt_ScaleForPixelHeight(&info_, px);
    int w = 0;
    for (auto cp : decode(text)) {
      int adv = 0, lsb = 0;
      stbtt_GetCodepointHMetrics(&info_, cp, &adv, &lsb);
      w += static_cast<int>(adv * s + 0.5f);
    }
    return w;
  }

  /**
   * @brief Draws @p text with its top-left corner at (@p x, @p y), alpha-blended.
   * @param img [3, H, W] float in [0, 1] (modified)
   * @param x left edge @param y top edge @param text UTF-8 @param px pixel height @param rgb colour in [0, 1]
   */
  void draw(torch::Tensor& img, int x, int y, const std::string& text, float px, std::array<float, 3> rgb = {0, 0, 0}) const {
    const float s = stbtt_ScaleForPixelHeight(&info_, px);
    int ascent = 0, descent = 0, gap = 0;
    stbtt_GetFontVMetrics(&info_, &ascent, &descent, &gap);
    const int baseline = y + static_cast<int>(ascent * s + 0.5f);
    const int H = static_cast<int>(img.size(1)), W = static_cast<int>(img.size(2));
    auto a = img.accessor<float, 3>();
    float pen = static_cast<float>(x);
    for (auto cp : decode(text)) {
      int adv = 0, lsb = 0, x0 = 0, y0 = 0, x1 = 0, y1 = 0;
      stbtt_GetCodepointHMetrics(&info_, cp, &adv, &lsb);
      stbtt_GetCodepointBitmapBox(&info_, cp, s, s, &x0, &y0, &x1, &y1);
      const int gw = x1 - x0, gh = y1 - y0;
      if (gw > 0 && gh > 0) {
        std::vector<unsigned char> bm(static_cast<std::size_t>(gw * gh));
        stbtt_MakeCodepointBitmap(&info_, bm.data(), gw, gh, gw, s, s, cp);
        const int ox = static_cast<int>(pen + 0.5f) + x0, oy = baseline + y0;
        for (int j = 0; j < gh; ++j)
          for (int i = 0; i < gw; ++i) {
            const int px_ = ox + i, py = oy + j;
            if (px_ < 0 || py < 0 || px_ >= W || py >= H) continue;
            const float al = bm[static_cast<std::size_t>(j * gw + i)] / 255.f;
            for (int c = 0; c < 3; ++c) a[c][py][px_] = a[c][py][px_] * (1 - al) + rgb[static_cast<std::size_t>(c)] * al;
          }
      }
      pen += adv * s;
    }
  }

  /// @brief Splits @p text into lines no wider than @p max_width at pixel height @p px (at spaces; a longer word
  ///        stands alone).
  std::vector<std::string> wrap(const std::string& text, float px, int max_width) const {
    std::vector<std::string> lines;
    std::string line, word;
    auto flush_word = [&] {
      if (word.empty()) return;
      const std::string cand = line.empty() ? word : line + " " + word;
      if (!line.empty() && width(cand, px) > max_width) {
        lines.push_back(line);
        line = word;
      } else {
        line = cand;
      }
      word.clear();
    };
    for (char c : text) {
      if (c == ' ' || c == '\n') flush_word();
      else word += c;
    }
    flush_word();
    if (!line.empty()) lines.push_back(line);
    return lines;
  }

 private:
  static std::vector<int> decode(const std::string& s) {
    std::vector<int> out;
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      int cp = c, n = 0;
      if (c >= 0xF0) cp = c & 0x07, n = 3;
      else if (c >= 0xE0) cp = c & 0x0F, n = 2;
      else if (c >= 0xC0) cp = c & 0x1F, n = 1;
      ++i;
      for (int k = 0; k < n && i < s.size(); ++k, ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
      out.push_back(cp);
    }
    return out;
  }

  std::vector<unsigned char> data_;
  stbtt_fontinfo info_{};
};

}  // namespace cxrl::io
