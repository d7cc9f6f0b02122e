/// @file
/// @brief gzip (RFC 1952) reading and writing for the MIMIC-CXR tables (`*.csv.gz`).
///
/// The DEFLATE streams are decoded and encoded with stb's zlib codec (compiled in by cxrl/io/stb.hpp; torch-free),
/// so the header-only library needs no extra link dependency; the gzip framing (header, CRC-32,
/// ISIZE) is handled here and the CRC is verified on reading.
#pragma once

#include <cxrl/io/stb.hpp>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::data {

namespace gzip_detail {
inline const std::array<std::uint32_t, 256>& crc_table() {
  static const auto t = [] {
    std::array<std::uint32_t, 256> a{};
    for (std::uint32_t n = 0; n < 256; ++n) {
      std::uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      a[n] = c;
    }
    return a;
  }();
  return t;
}
}  // namespace gzip_detail

/// @brief CRC-32 (ISO-HDLC, as used by gzip and PNG).
/// @param data bytes
/// @param n byte count
inline std::uint32_t crc32(const void* data, std::size_t n) {
  const auto& t = gzip_detail::crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/// @brief True when @p bytes start with the gzip magic 1f 8b.
/// @param bytes file content
inline bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b;
}

/// @brief Decompress a single-member gzip stream.
/// @param bytes gzip file content
/// @param source name used in error messages
/// @throws std::runtime_error naming @p source for a bad header, corrupt data or a CRC mismatch
inline std::string gunzip(const std::string& bytes, const std::string& source) {
  auto fail = [&](const std::string& why) { return std::runtime_error(source + ": invalid gzip data: " + why); };
  if (!is_gzip(bytes)) throw fail("missing 1f 8b magic");
  if (bytes.size() < 18) throw fail("truncated");
  const auto* b = reinterpret_cast<const std::uint8_t*>(bytes.data());
  if (b[2] != 8) throw fail("compression method is not DEFLATE");
  const std::uint8_t flg = b[3];
  std::size_t pos = 10;
  if (flg & 4) {  // FEXTRA
    if (pos + 2 > bytes.size()) throw fail("truncated FEXTRA");
    pos += 2 + (b[pos] | (b[pos + 1] << 8));
  }
  auto skip_z = [&] {
    while (pos < bytes.size() && b[pos] != 0) ++pos;
    ++pos;
  };
  if (flg & 8) skip_z();   // FNAME
  if (flg & 16) skip_z();  // FCOMMENT
  if (flg & 2) pos += 2;   // FHCRC
  if (pos + 8 > bytes.size()) throw fail("truncated header");
  const std::size_t tail = bytes.size() - 8;
  const std::uint32_t crc = b[tail] | (b[tail + 1] << 8) | (b[tail + 2] << 16) | (static_cast<std::uint32_t>(b[tail + 3]) << 24);
  const std::uint32_t isize = b[tail + 4] | (b[tail + 5] << 8) | (b[tail + 6] << 16) | (static_cast<std::uint32_t>(b[tail + 7]) << 24);
  if (isize == 0 && crc == 0) return {};  // empty member (stb's decoder rejects an empty final block)
  int outlen = 0;
  // The 8-byte trailer is passed along on purpose: stb's decoder (v2.27) reports a premature end when its
  // bit-buffer lookahead reaches the end of the input, so it needs slack after the final block.
  char* out = stbi_zlib_decode_noheader_malloc(bytes.data() + pos, static_cast<int>(bytes.size() - pos), &outlen);
  if (!out) throw fail("corrupt DEFLATE stream");
  std::string s(out, static_cast<std::size_t>(outlen));
  std::free(out);
  if (crc != crc32(s.data(), s.size())) throw fail("CRC-32 mismatch (multi-member or damaged file?)");
  return s;
}

/// @brief Compress @p data into a gzip stream (one member, no file name).
/// @param data uncompressed bytes
/// @param quality DEFLATE effort (stb: 5..8 sensible)
inline std::string gzip(const std::string& data, int quality = 8) {
  int zlen = 0;
  unsigned char* z = stbi_zlib_compress(reinterpret_cast<unsigned char*>(const_cast<char*>(data.data())),
                                        static_cast<int>(data.size()), &zlen, quality);
  if (!z || zlen < 6) throw std::runtime_error("gzip: compression failed");
  std::string out = std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
  out.append(reinterpret_cast<const char*>(z) + 2, static_cast<std::size_t>(zlen - 6));  // strip zlib header/adler
  STBIW_FREE(z);
  const std::uint32_t crc = crc32(data.data(), data.size());
  const auto isize = static_cast<std::uint32_t>(data.size());
  for (int k = 0; k < 4; ++k) out += static_cast<char>((crc >> (8 * k)) & 0xFF);
  for (int k = 0; k < 4; ++k) out += static_cast<char>((isize >> (8 * k)) & 0xFF);
  return out;
}

/// @brief Read a text file, transparently gunzipping it when it starts with the gzip magic.
/// @param path file
/// @throws std::runtime_error naming the file when it cannot be read or decompressed
inline std::string read_text_maybe_gz(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path.string() + ": cannot open file");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return is_gzip(bytes) ? gunzip(bytes, path.string()) : bytes;
}

/// @brief Write @p text to @p path, gzipped when the name ends in ".gz" (parent folders created).
/// @param path output file
/// @param text content
inline void write_text_maybe_gz(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path.string() + ": cannot write file");
  const std::string out = path.extension() == ".gz" ? gzip(text) : text;
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  if (!f) throw std::runtime_error(path.string() + ": write failed");
}

}  // namespace cxrl::data
