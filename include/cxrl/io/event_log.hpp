/// @file
/// @brief TensorBoard event files (scalars and PNG images) written without TensorFlow, plus a reader
/// that verifies every record's CRC.
///
/// Layout: TFRecord framing (`u64 len, u32 masked_crc32c(len), bytes, u32 masked_crc32c(bytes)`) of
/// `tensorflow.Event` protobufs: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
/// summary = 5 (`Summary{ repeated Value value = 1 }`, `Value{ tag = 1, simple_value = 2 (float),
/// image = 4 }`, `Image{ height = 1, width = 2, colorspace = 3, encoded_image_string = 4 }`).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace cxrl::io {

namespace detail {

inline std::uint32_t crc32c(const std::uint8_t* p, std::size_t n) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli, reflected
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/// TFRecord's masking, so that CRCs of data containing CRCs stay well distributed.
inline std::uint32_t masked_crc(const std::uint8_t* p, std::size_t n) {
  const std::uint32_t c = crc32c(p, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/// Minimal protobuf encoder for the handful of messages we emit.
class Proto {
 public:
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<std::uint8_t>(v));
  }
  void key(int field, int wire) { varint(static_cast<std::uint64_t>(field) << 3 | static_cast<unsigned>(wire)); }
  void f64(int field, double v) {
    key(field, 1);
    append_le(v);
  }
  void f32(int field, float v) {
    key(field, 5);
    append_le(v);
  }
  void i64(int field, std::int64_t v) {
    key(field, 0);
    varint(static_cast<std::uint64_t>(v));
  }
  void bytes(int field, const void* data, std::size_t n) {
    key(field, 2);
    varint(n);
    const auto* p = static_cast<const std::uint8_t*>(data);
    buf_.insert(buf_.end(), p, p + n);
  }
  void str(int field, const std::string& s) { bytes(field, s.data(), s.size()); }
  void msg(int field, const Proto& m) { bytes(field, m.buf_.data(), m.buf_.size()); }
  const std::vector<std::uint8_t>& data() const { return buf_; }

 private:
  template <class T>
  void append_le(T v) {
    std::uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // little-endian host
    buf_.insert(buf_.end(), b, b + sizeof(T));
  }
  std::vector<std::uint8_t> buf_;
};

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace detail

/// @brief Appends scalar and image summaries to a TensorBoard event file.
class EventWriter {
 public:
  /// @param dir run folder; the file is `events.out.tfevents.<unix time>.<host>` inside it
  explicit EventWriter(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    char host[256] = "localhost";
    ::gethostname(host, sizeof(host) - 1);
    path_ = dir / ("events.out.tfevents." + std::to_string(static_cast<long long>(detail::now_seconds())) + "." + host);
    out_.open(path_, std::ios::binary | std::ios::app);
    if (!out_) throw std::runtime_error(path_.string() + ": cannot open event file for writing");
    detail::Proto e;
    e.f64(1, detail::now_seconds());
    e.str(3, "brain.Event:2");
    write_record(e);
  }

  /// @brief Logs one scalar.
  /// @param tag TensorBoard tag, e.g. "reward/total"
  /// @param value the value
  /// @param step global step (epoch)
  void scalar(const std::string& tag, double value, std::int64_t step) {
    detail::Proto v;
    v.str(1, tag);
    v.f32(2, static_cast<float>(value));
    emit(v, step);
  }

  /// @brief Logs one image given as PNG bytes.
  /// @param tag TensorBoard tag
  /// @param png encoded PNG file contents
  /// @param height image height in pixels
  /// @param width image width in pixels
  /// @param channels 1 (gray), 3 (RGB) or 4 (RGBA)
  /// @param step global step
  void image(const std::string& tag, const std::vector<std::uint8_t>& png, int height, int width, int channels,
             std::int64_t step) {
    detail::Proto img;
    img.i64(1, height);
    img.i64(2, width);
    img.i64(3, channels);
    img.bytes(4, png.data(), png.size());
    detail::Proto v;
    v.str(1, tag);
    v.msg(4, img);
    emit(v, step);
  }

  void flush() { out_.flush(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  void emit(const detail::Proto& value, std::int64_t step) {
    detail::Proto summary;
    summary.msg(1, value);
    detail::Proto e;
    e.f64(1, detail::now_seconds());
    e.i64(2, step);
    e.msg(5, summary);
    write_record(e);
  }

  void write_record(const detail::Proto& p) {
    const auto& d = p.data();
    const std::uint64_t n = d.size();
    std::uint8_t len[8];
    std::memcpy(len, &n, 8);
    const std::uint32_t lc = detail::masked_crc(len, 8), dc = detail::masked_crc(d.data(), d.size());
    out_.write(reinterpret_cast<const char*>(len), 8);
    out_.write(reinterpret_cast<const char*>(&lc), 4);
    out_.write(reinterpret_cast<const char*>(d.data()), static_cast<std::streamsize>(d.size()));
    out_.write(reinterpret_cast<const char*>(&dc), 4);
    out_.flush();
    if (!out_) throw std::runtime_error(path_.string() + ": write failed");
  }

  std::filesystem::path path_;
  std::ofstream out_;
};

/// @brief One decoded summary value.
struct EventValue {
  std::string tag;
  std::optional<float> simple_value;
  std::optional<std::vector<std::uint8_t>> image_png;
  int height = 0, width = 0, channels = 0;
};

/// @brief One decoded event record.
struct Event {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;
  std::vector<EventValue> values;
};

namespace detail {
struct ProtoReader {
  const std::uint8_t* p;
  const std::uint8_t* end;
  std::string where;
  bool done() const { return p >= end; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) throw std::runtime_error(where + ": truncated varint");
      const std::uint8_t b = *p++;
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error(where + ": varint too long");
  }
  template <class T>
  T fixed() {
    if (end - p < static_cast<std::ptrdiff_t>(sizeof(T))) throw std::runtime_error(where + ": truncated field");
    T v;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::pair<const std::uint8_t*, std::size_t> bytes() {
    const auto n = varint();
    if (n > static_cast<std::uint64_t>(end - p)) throw std::runtime_error(where + ": truncated bytes field");
    auto r = std::make_pair(p, static_cast<std::size_t>(n));
    p += n;
    return r;
  }
  void skip(int wire) {
    if (wire == 0) varint();
    else if (wire == 1) fixed<std::uint64_t>();
    else if (wire == 5) fixed<std::uint32_t>();
    else if (wire == 2) bytes();
    else throw std::runtime_error(where + ": unsupported wire type " + std::to_string(wire));
  }
};
}  // namespace detail

/// @brief Reads an event file, verifying the length and data CRC of every record.
/// @param path event file
/// @throws std::runtime_error naming the file and record index on a CRC or framing error
inline std::vector<Event> read_events(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path.string() + ": cannot open");
  const std::vector<std::uint8_t> all((std::istreambuf_iterator<char>(f)), {});
  std::vector<Event> events;
  std::size_t pos = 0;
  for (int idx = 0; pos < all.size(); ++idx) {
    const std::string where = path.string() + ": record " + std::to_string(idx);
    if (all.size() - pos < 12) throw std::runtime_error(where + ": truncated header");
    std::uint64_t n;
    std::uint32_t lc, dc;
    std::memcpy(&n, &all[pos], 8);
    std::memcpy(&lc, &all[pos + 8], 4);
    if (lc != detail::masked_crc(&all[pos], 8)) throw std::runtime_error(where + ": length CRC mismatch");
    if (n > all.size() - pos - 16) throw std::runtime_error(where + ": truncated data");
    const std::uint8_t* d = &all[pos + 12];
    std::memcpy(&dc, d + n, 4);
    if (dc != detail::masked_crc(d, n)) throw std::runtime_error(where + ": data CRC mismatch");
    pos += 16 + n;
    Event ev;
    detail::ProtoReader r{d, d + n, where};
    while (!r.done()) {
      const auto k = r.varint();
      const int field = static_cast<int>(k >> 3), wire = static_cast<int>(k & 7);
      if (field == 1 && wire == 1) ev.wall_time = r.fixed<double>();
      else if (field == 2 && wire == 0) ev.step = static_cast<std::int64_t>(r.varint());
      else if (field == 3 && wire == 2) {
        auto [p, m] = r.bytes();
        ev.file_version.assign(reinterpret_cast<const char*>(p), m);
      } else if (field == 5 && wire == 2) {
        auto [sp, sn] = r.bytes();
        detail::ProtoReader s{sp, sp + sn, where};
        while (!s.done()) {
          const auto sk = s.varint();
          if ((sk >> 3) != 1 || (sk & 7) != 2) {
            s.skip(static_cast<int>(sk & 7));
            continue;
          }
          auto [vp, vn] = s.bytes();
          detail::ProtoReader v{vp, vp + vn, where};
          EventValue val;
          while (!v.done()) {
            const auto vk = v.varint();
            const int vf = static_cast<int>(vk >> 3), vw = static_cast<int>(vk & 7);
            if (vf == 1 && vw == 2) {
              auto [tp, tn] = v.bytes();
              val.tag.assign(reinterpret_cast<const char*>(tp), tn);
            } else if (vf == 2 && vw == 5) {
              val.simple_value = v.fixed<float>();
            } else if (vf == 4 && vw == 2) {
              auto [ip, in] = v.bytes();
              detail::ProtoReader im{ip, ip + in, where};
              while (!im.done()) {
                const auto ik = im.varint();
                const int iff = static_cast<int>(ik >> 3), iw = static_cast<int>(ik & 7);
                if (iff == 1 && iw == 0) val.height = static_cast<int>(im.varint());
                else if (iff == 2 && iw == 0) val.width = static_cast<int>(im.varint());
                else if (iff == 3 && iw == 0) val.channels = static_cast<int>(im.varint());
                else if (iff == 4 && iw == 2) {
                  auto [bp, bn] = im.bytes();
                  val.image_png.emplace(bp, bp + bn);
                } else im.skip(iw);
              }
            } else {
              v.skip(vw);
            }
          }
          ev.values.push_back(std::move(val));
        }
      } else {
        r.skip(wire);
      }
    }
    events.push_back(std::move(ev));
  }
  return events;
}

}  // namespace cxrl::io
