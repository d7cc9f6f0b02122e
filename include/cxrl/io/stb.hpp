/// @file
/// @brief stb_image, stb_image_write and their zlib codec, compiled into every translation unit that includes this
///        header with internal linkage (`STB_IMAGE_STATIC`, `STB_IMAGE_WRITE_STATIC`): the header-only library needs no
///        stb library at link time and cannot clash with a user's own stb implementation unit. Torch-free, so that
///        the parsers built on it (images, gzip) can be fuzzed with clang. Also the one file reader they share.
#pragma once

#if defined(STBI_INCLUDE_STB_IMAGE_H) || defined(INCLUDE_STB_IMAGE_WRITE_H)
#error "cxrl/io/stb.hpp must be included before any other inclusion of stb_image.h / stb_image_write.h"
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

namespace cxrl::io {

/// @brief Read a whole file into memory.
/// @param path file to read
/// @throws std::runtime_error naming the file when it cannot be opened
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path.string() + ": cannot open file");
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace cxrl::io
