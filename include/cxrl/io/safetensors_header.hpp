/// @file
/// @brief The safetensors header, parsed and validated without LibTorch (so that it can be fuzzed with clang):
///        the 8-byte length, the JSON table of tensors and `__metadata__`, every size computed with overflow checks.
///
/// Format (https://github.com/huggingface/safetensors): u64 little-endian header length N (at most 100 MB, as the
/// reference enforces), N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`,
/// then the row-major byte buffer the offsets index into. Every tensor's byte span must equal its element count
/// times its element size, lie inside the buffer, and not overlap another tensor.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::io {

/// @brief Any problem with a checkpoint file; the message names the file and, where known, the tensor.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief The `__metadata__` table of a safetensors file.
using Metadata = std::map<std::string, std::string>;

/// @brief Upper bound on the JSON header, as the reference implementation enforces (100 MB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

/// @brief The dtypes of the format and their element sizes.
struct SafetensorsDtype {
  const char* name;   ///< "F32", …
  std::size_t size;   ///< bytes per element
};

/// @brief Every dtype cxrl reads, in the format's spelling.
inline constexpr SafetensorsDtype kSafetensorsDtypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                          {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};

/// @brief One tensor's entry of the header.
struct HeaderEntry {
  std::string dtype;                 ///< format spelling ("F32")
  std::size_t element_size = 0;      ///< bytes per element
  std::vector<std::uint64_t> shape;  ///< dimensions
  std::uint64_t begin = 0;           ///< byte offset into the data buffer
  std::uint64_t end = 0;             ///< one past the last byte
};

/// @brief A validated header.
struct SafetensorsHeader {
  std::uint64_t data_start = 0;                   ///< file offset of the data buffer (8 + N)
  std::map<std::string, HeaderEntry> entries;     ///< by tensor name
  std::vector<std::string> order;                 ///< tensor names by data offset
  Metadata metadata;                              ///< `__metadata__`
};

/// @brief The allowed dtype names, comma-separated.
inline std::string safetensors_dtype_names() {
  std::string s;
  for (const auto& d : kSafetensorsDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

/**
 * @brief Parses and validates the header of a safetensors file held in memory.
 * @param data the file's bytes (at least the header; the data buffer is only measured)
 * @param size the file's size in bytes
 * @param where the file name, for messages
 * @param hint text appended to JSON errors (e.g. "this looks like a pickle…")
 * @throws CheckpointError naming @p where, the tensor and the violated rule
 */
inline SafetensorsHeader parse_safetensors_header(const std::uint8_t* data, std::uint64_t size, const std::string& where,
                                                  const std::string& hint = {}) {
  if (size < 8)
    throw CheckpointError(where + ": truncated file (" + std::to_string(size) + " bytes; a safetensors file starts with an 8-byte header length)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian
  if (n > kMaxHeaderBytes) throw CheckpointError(where + ": header length " + std::to_string(n) + " exceeds the 100 MB limit" + hint);
  if (n > size - 8)
    throw CheckpointError(where + ": header length " + std::to_string(n) + " is larger than the file (" + std::to_string(size) +
                          " bytes); the file is truncated or not safetensors");
  SafetensorsHeader h;
  h.data_start = 8 + n;
  const std::uint64_t data_len = size - h.data_start;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data + 8, data + 8 + n);
  } catch (const std::exception& e) {
    throw CheckpointError(where + ": header is not valid JSON (" + e.what() + ")" + hint);
  }
  if (!j.is_object()) throw CheckpointError(where + ": header must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw CheckpointError(where + ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw CheckpointError(where + ": __metadata__['" + m.key() + "'] must be a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = where + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw CheckpointError(ctx + ": entry needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) throw CheckpointError(ctx + ": dtype must be a string");
    HeaderEntry e;
    e.dtype = v["dtype"].get<std::string>();
    for (const auto& d : kSafetensorsDtypes)
      if (e.dtype == d.name) e.element_size = d.size;
    if (e.element_size == 0) throw CheckpointError(ctx + ": unknown dtype '" + e.dtype + "' (allowed: " + safetensors_dtype_names() + ")");
    if (!v["shape"].is_array()) throw CheckpointError(ctx + ": shape must be an array");
    if (v["shape"].size() > 64) throw CheckpointError(ctx + ": shape has " + std::to_string(v["shape"].size()) + " dimensions (at most 64)");
    std::uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw CheckpointError(ctx + ": shape entries must be non-negative integers");
      const auto dim = d.get<std::uint64_t>();
      if (dim > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        throw CheckpointError(ctx + ": shape " + v["shape"].dump() + " has more elements than 2^64");
      e.shape.push_back(dim);
    }
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(e.element_size), &bytes))
      throw CheckpointError(ctx + ": shape " + v["shape"].dump() + " × " + std::to_string(e.element_size) + " bytes overflows 2^64 bytes");
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw CheckpointError(ctx + ": data_offsets must be [begin, end] of non-negative integers");
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (e.end < e.begin) throw CheckpointError(ctx + ": data_offsets end < begin");
    if (e.end > data_len)
      throw CheckpointError(ctx + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] run past the end of the data (" +
                            std::to_string(data_len) + " bytes); the file is truncated");
    if (bytes != e.end - e.begin)
      throw CheckpointError(ctx + ": shape x element size = " + std::to_string(bytes) + " bytes but data_offsets span " +
                            std::to_string(e.end - e.begin));
    h.entries.emplace(name, std::move(e));
  }
  for (const auto& [name, e] : h.entries) h.order.push_back(name);
  std::sort(h.order.begin(), h.order.end(), [&](const auto& a, const auto& b) {
    const auto& ia = h.entries.at(a);
    const auto& ib = h.entries.at(b);
    return ia.begin != ib.begin ? ia.begin < ib.begin : ia.end < ib.end;
  });
  for (std::size_t i = 1; i < h.order.size(); ++i)
    if (h.entries.at(h.order[i]).begin < h.entries.at(h.order[i - 1]).end)
      throw CheckpointError(where + ": tensors '" + h.order[i - 1] + "' and '" + h.order[i] + "' have overlapping data_offsets");
  return h;
}

}  // namespace cxrl::io
