/// @file
/// @brief Image files: PNG/JPEG decoding and encoding through stb, float tensors in [0,1], and contact
/// sheets (image grids).
///
/// stb comes from io/stb.hpp (compiled into each translation unit with internal linkage).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <cxrl/io/stb.hpp>

namespace cxrl::io {

/// @brief A decoded 8-bit image, row-major, interleaved channels.
struct ImageU8 {
  int width = 0;                ///< columns
  int height = 0;               ///< rows
  int channels = 0;             ///< 1 (gray), 3 (RGB) or 4
  std::vector<std::uint8_t> data;  ///< height*width*channels bytes
};

/// @brief Decode PNG/JPEG/BMP bytes.
/// @param bytes encoded file content
/// @param size number of bytes
/// @param channels channels wanted (1 = gray, 3 = RGB); stb converts
/// @param source name used in error messages (usually the file path)
/// @throws std::runtime_error naming @p source and stb's reason when decoding fails
inline ImageU8 decode_image_u8(const std::uint8_t* bytes, std::size_t size, int channels, const std::string& source) {
  if (channels < 1 || channels > 4)
    throw std::invalid_argument("decode_image: channels must be 1..4, got " + std::to_string(channels));
  int w = 0, h = 0, c = 0;
  stbi_uc* p = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &c, channels);
  if (!p) throw std::runtime_error(source + ": cannot decode image (" + std::string(stbi_failure_reason()) + ")");
  ImageU8 out{w, h, channels, std::vector<std::uint8_t>(p, p + static_cast<std::size_t>(w) * h * channels)};
  stbi_image_free(p);
  return out;
}

/// @brief Read and decode an image file to 8-bit pixels.
/// @param path PNG or JPEG file
/// @param channels channels wanted (1 = gray)
inline ImageU8 read_image_u8(const std::filesystem::path& path, int channels = 1) {
  auto bytes = read_file_bytes(path);
  return decode_image_u8(bytes.data(), bytes.size(), channels, path.string());
}

/// @brief Width, height and channel count from an image header without decoding the pixels.
/// @param path image file
/// @param w receives the width
/// @param h receives the height
/// @param c receives the channel count
/// @return false (and leaves the outputs unspecified) when the header is not a readable image
inline bool image_info(const std::filesystem::path& path, int& w, int& h, int& c) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const int ok = stbi_info_from_file(f, &w, &h, &c);
  std::fclose(f);
  return ok != 0;
}

/// @brief 8-bit image → float tensor [C,H,W] in [0,1].
/// @param img decoded image
inline torch::Tensor to_tensor(const ImageU8& img) {
  auto t = torch::from_blob(const_cast<std::uint8_t*>(img.data.data()), {img.height, img.width, img.channels},
                            torch::kUInt8);
  return t.permute({2, 0, 1}).to(torch::kFloat32).div_(255.0f).contiguous();
}

/// @brief Read an image file as a float tensor [C,H,W] in [0,1].
/// @param path PNG or JPEG file
/// @param channels channels wanted (1 = gray)
inline torch::Tensor read_image(const std::filesystem::path& path, int channels = 1) {
  return to_tensor(read_image_u8(path, channels));
}

/// @brief Float tensor [C,H,W] or [H,W] in [0,1] (any device/dtype) → 8-bit interleaved image.
/// @param image values are clamped to [0,1] and rounded
inline ImageU8 from_tensor(const torch::Tensor& image) {
  auto t = image.detach().to(torch::kCPU, torch::kFloat32);
  if (t.dim() == 2) t = t.unsqueeze(0);
  if (t.dim() != 3 || t.size(0) < 1 || t.size(0) > 4)
    throw std::invalid_argument("image tensor must be [C,H,W] with C in 1..4 or [H,W], got " +
                                std::to_string(t.dim()) + " dims");
  auto u8 = t.clamp(0.0, 1.0).mul(255.0).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  ImageU8 out{static_cast<int>(t.size(2)), static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), {}};
  out.data.assign(u8.data_ptr<std::uint8_t>(), u8.data_ptr<std::uint8_t>() + u8.numel());
  return out;
}

namespace detail {
inline void ensure_parent(const std::filesystem::path& path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
}
}  // namespace detail

/// @brief Write an 8-bit image as PNG (parent directories are created).
/// @param path output file
/// @param img pixels
/// @throws std::runtime_error naming the file when writing fails
inline void write_png(const std::filesystem::path& path, const ImageU8& img) {
  detail::ensure_parent(path);
  if (!stbi_write_png(path.c_str(), img.width, img.height, img.channels, img.data.data(), img.width * img.channels))
    throw std::runtime_error(path.string() + ": cannot write PNG");
}

/// @brief Write an 8-bit image as baseline JPEG (parent directories are created).
/// @param path output file
/// @param img pixels
/// @param quality 1..100
inline void write_jpeg(const std::filesystem::path& path, const ImageU8& img, int quality = 95) {
  detail::ensure_parent(path);
  if (!stbi_write_jpg(path.c_str(), img.width, img.height, img.channels, img.data.data(), quality))
    throw std::runtime_error(path.string() + ": cannot write JPEG");
}

/// @brief Write a float tensor [C,H,W] or [H,W] in [0,1] as PNG.
/// @param path output file
/// @param image tensor on any device
inline void write_png(const std::filesystem::path& path, const torch::Tensor& image) { write_png(path, from_tensor(image)); }

/// @brief Write a float tensor [C,H,W] or [H,W] in [0,1] as JPEG.
/// @param path output file
/// @param image tensor on any device
/// @param quality 1..100
inline void write_jpeg(const std::filesystem::path& path, const torch::Tensor& image, int quality = 95) {
  write_jpeg(path, from_tensor(image), quality);
}

/// @brief Tile images into one contact sheet (torchvision `make_grid` layout: row-major, padding
/// around every tile).
/// @param images tensors [C,H,W] (or [H,W]); all the same size; gray images are broadcast to the
///        largest channel count
/// @param ncol tiles per row
/// @param padding pixels between tiles and around the sheet
/// @param pad_value value of the padding, in [0,1]
/// @return float tensor [C, rows*(H+p)+p, ncol*(W+p)+p] on the CPU
inline torch::Tensor make_grid(const std::vector<torch::Tensor>& images, int ncol = 8, int padding = 2,
                               float pad_value = 1.0f) {
  if (images.empty()) throw std::invalid_argument("make_grid: no images");
  if (ncol < 1) throw std::invalid_argument("make_grid: ncol must be >= 1");
  std::vector<torch::Tensor> ims;
  int64_t c = 1;
  for (const auto& im : images) {
    auto t = im.detach().to(torch::kCPU, torch::kFloat32);
    if (t.dim() == 2) t = t.unsqueeze(0);
    if (t.dim() != 3) throw std::invalid_argument("make_grid: each image must be [C,H,W] or [H,W]");
    c = std::max(c, t.size(0));
    ims.push_back(t);
  }
  const int64_t h = ims[0].size(1), w = ims[0].size(2);
  const int64_t n = static_cast<int64_t>(ims.size());
  const int64_t cols = std::min<int64_t>(ncol, n), rows = (n + ncol - 1) / ncol;
  auto grid = torch::full({c, rows * (h + padding) + padding, cols * (w + padding) + padding}, pad_value);
  for (int64_t i = 0; i < n; ++i) {
    if (ims[i].size(1) != h || ims[i].size(2) != w)
      throw std::invalid_argument("make_grid: image " + std::to_string(i) + " has a different size");
    const int64_t r = i / ncol, q = i % ncol;
    grid.index({torch::indexing::Slice(),
                torch::indexing::Slice(padding + r * (h + padding), padding + r * (h + padding) + h),
                torch::indexing::Slice(padding + q * (w + padding), padding + q * (w + padding) + w)})
        .copy_(ims[i].expand({c, h, w}));
  }
  return grid;
}

/// @brief Centre-crop an 8-bit gray image to a square and resize it with area averaging (box filter,
/// exact for integer factors; bilinear when upsampling).
/// @param img gray image (channels == 1)
/// @param size output side length
/// @return float [size*size] in [0,1], row-major
inline std::vector<float> center_crop_resize(const ImageU8& img, int size) {
  if (img.channels != 1) throw std::invalid_argument("center_crop_resize: expects a gray image");
  if (size < 1) throw std::invalid_argument("center_crop_resize: size must be >= 1");
  const int side = std::min(img.width, img.height);
  const int x0 = (img.width - side) / 2, y0 = (img.height - side) / 2;
  std::vector<float> out(static_cast<std::size_t>(size) * size);
  const double scale = static_cast<double>(side) / size;
  if (scale >= 1.0) {
    // Separable box filter over the source footprint [i*scale, (i+1)*scale) with fractional weights.
    std::vector<int> lo(size), hi(size);
    std::vector<std::vector<float>> wts(size);
    for (int i = 0; i < size; ++i) {
      const double a = i * scale, b = (i + 1) * scale;
      lo[i] = static_cast<int>(std::floor(a));
      hi[i] = std::min(side, static_cast<int>(std::ceil(b)));
      for (int k = lo[i]; k < hi[i]; ++k)
        wts[i].push_back(static_cast<float>((std::min<double>(k + 1, b) - std::max<double>(k, a)) / scale));
    }
    std::vector<float> rows(static_cast<std::size_t>(size) * side);  // [size rows][side cols]
    for (int i = 0; i < size; ++i)
      for (int x = 0; x < side; ++x) {
        float acc = 0;
        for (int k = lo[i]; k < hi[i]; ++k)
          acc += wts[i][k - lo[i]] * img.data[static_cast<std::size_t>(y0 + k) * img.width + x0 + x];
        rows[static_cast<std::size_t>(i) * side + x] = acc;
      }
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j) {
        float acc = 0;
        for (int k = lo[j]; k < hi[j]; ++k) acc += wts[j][k - lo[j]] * rows[static_cast<std::size_t>(i) * side + k];
        out[static_cast<std::size_t>(i) * size + j] = acc / 255.0f;
      }
  } else {
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j) {
        const double sy = std::clamp((i + 0.5) * scale - 0.5, 0.0, side - 1.0);
        const double sx = std::clamp((j + 0.5) * scale - 0.5, 0.0, side - 1.0);
        const int iy = std::min(static_cast<int>(sy), side - 2 < 0 ? 0 : side - 2);
        const int ix = std::min(static_cast<int>(sx), side - 2 < 0 ? 0 : side - 2);
        const double fy = side > 1 ? sy - iy : 0, fx = side > 1 ? sx - ix : 0;
        auto at = [&](int yy, int xx) {
          return static_cast<double>(img.data[static_cast<std::size_t>(y0 + std::min(yy, side - 1)) * img.width + x0 +
                                              std::min(xx, side - 1)]);
        };
        const double v = (1 - fy) * ((1 - fx) * at(iy, ix) + fx * at(iy, ix + 1)) +
                         fy * ((1 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1));
        out[static_cast<std::size_t>(i) * size + j] = static_cast<float>(v / 255.0);
      }
  }
  return out;
}

}  // namespace cxrl::io
