/// @file
/// @brief safetensors reading (mmap, validated, sharded) and atomic writing.
///
/// Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of
/// JSON `{name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}`, then the
/// little-endian row-major byte buffer that the offsets index into.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cxrl::io {

/// @brief Any problem with a checkpoint file; the message names the file and, where known, the tensor.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief Ordered name → tensor map, the in-memory form of a safetensors file.
using TensorMap = std::map<std::string, torch::Tensor>;
/// @brief The `__metadata__` table of a safetensors file.
using Metadata = std::map<std::string, std::string>;

namespace detail {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  std::size_t size;
};

inline constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2}, {"I8", torch::kInt8, 1}, {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1}};

inline const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return &d;
  return nullptr;
}

inline const DtypeInfo& dtype_by_type(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d;
  throw CheckpointError(std::string("safetensors: unsupported tensor dtype ") + c10::toString(t));
}

inline std::string allowed_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

/// Read-only mapping of a whole file; tensors that alias it keep it alive through a shared_ptr.
class Mapping {
 public:
  explicit Mapping(const std::filesystem::path& p) : path_(p) {
    fd_ = ::open(p.c_str(), O_RDONLY);
    if (fd_ < 0) throw CheckpointError(p.string() + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      throw CheckpointError(p.string() + ": cannot stat");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (m == MAP_FAILED) {
        ::close(fd_);
        throw CheckpointError(p.string() + ": mmap failed");
      }
      data_ = static_cast<const std::uint8_t*>(m);
    }
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

inline bool looks_like_pickle(const std::filesystem::path& p) {
  const auto ext = p.extension().string();
  if (ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth") return true;
  std::ifstream f(p, std::ios::binary);
  char head[4] = {};
  f.read(head, 4);
  // Zip archive (torch.save since 1.6) or a raw pickle protocol-2+ stream.
  return (head[0] == 'P' && head[1] == 'K') || static_cast<unsigned char>(head[0]) == 0x80;
}

}  // namespace detail

/// @brief Upper bound on the JSON header, as the reference implementation enforces (100 MB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

/// @brief Where one tensor lives inside a safetensors file.
struct TensorInfo {
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  std::uint64_t begin = 0;  ///< byte offset into the data buffer
  std::uint64_t end = 0;
};

/// @brief A validated, memory-mapped safetensors file.
///
/// Tensors returned by get() alias the mapping (no copy) when no dtype/device conversion is asked
/// for; the mapping stays alive as long as any such tensor does. They are read-only in spirit:
/// clone() before writing into them.
class SafeTensorsFile {
 public:
  /// @param path file to open; every header violation throws CheckpointError naming the file.
  explicit SafeTensorsFile(const std::filesystem::path& path) {
    if (!std::filesystem::exists(path)) throw CheckpointError(path.string() + ": file not found");
    map_ = std::make_shared<detail::Mapping>(path);
    parse();
  }

  /// @brief Tensor names in file order (sorted by offset).
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    for (const auto& [n, _] : order_) k.push_back(n);
    return k;
  }
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const {
    auto it = infos_.find(name);
    if (it == infos_.end()) throw CheckpointError(where() + ": no tensor named '" + name + "'");
    return it->second;
  }
  const Metadata& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return map_->path(); }

  /// @brief One tensor; zero-copy unless @p dtype differs from the stored one.
  /// @param name tensor key
  /// @param dtype optional target dtype
  torch::Tensor get(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt) const {
    const auto& ti = info(name);
    const std::uint8_t* p = map_->data() + data_start_ + ti.begin;
    auto keep = map_;
    torch::Tensor t;
    if (ti.end == ti.begin) {
      t = torch::empty(ti.shape, torch::TensorOptions().dtype(ti.dtype));
    } else if (reinterpret_cast<std::uintptr_t>(p) % detail::dtype_by_type(ti.dtype).size == 0) {
      t = torch::from_blob(const_cast<std::uint8_t*>(p), ti.shape, [keep](void*) {},
                           torch::TensorOptions().dtype(ti.dtype));
    } else {  // misaligned data (legal but rare): copy out
      t = torch::empty(ti.shape, torch::TensorOptions().dtype(ti.dtype));
      std::memcpy(t.data_ptr(), p, ti.end - ti.begin);
    }
    if (dtype && *dtype != ti.dtype) t = t.to(*dtype);
    return t;
  }

  /// @brief All tensors (zero-copy where possible).
  TensorMap all() const {
    TensorMap m;
    for (const auto& [n, _] : infos_) m.emplace(n, get(n));
    return m;
  }

 private:
  std::string where() const { return map_->path().string(); }

  void parse() {
    const auto size = map_->size();
    if (size < 8)
      throw CheckpointError(where() + ": truncated file (" + std::to_string(size) +
                            " bytes; a safetensors file starts with an 8-byte header length)");
    std::uint64_t n = 0;
    std::memcpy(&n, map_->data(), 8);  // little-endian hosts only (x86-64, aarch64)
    if (n > kMaxHeaderBytes)
      throw CheckpointError(where() + ": header length " + std::to_string(n) + " exceeds the 100 MB limit" +
                            (detail::looks_like_pickle(map_->path()) ? pickle_hint() : std::string()));
    if (n > size - 8)
      throw CheckpointError(where() + ": header length " + std::to_string(n) + " is larger than the file (" +
                            std::to_string(size) + " bytes); the file is truncated or not safetensors");
    data_start_ = 8 + n;
    const auto data_len = size - data_start_;
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(map_->data() + 8, map_->data() + 8 + n);
    } catch (const std::exception& e) {
      throw CheckpointError(where() + ": header is not valid JSON (" + e.what() + ")" +
                            (detail::looks_like_pickle(map_->path()) ? pickle_hint() : std::string()));
    }
    if (!h.is_object()) throw CheckpointError(where() + ": header must be a JSON object");
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) throw CheckpointError(where() + ": __metadata__ must be an object of strings");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            throw CheckpointError(where() + ": __metadata__['" + m.key() + "'] must be a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string ctx = where() + ": tensor '" + name + "'";
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
        throw CheckpointError(ctx + ": entry needs dtype, shape and data_offsets");
      if (!v["dtype"].is_string()) throw CheckpointError(ctx + ": dtype must be a string");
      const auto* dt = detail::dtype_by_name(v["dtype"].get<std::string>());
      if (!dt)
        throw CheckpointError(ctx + ": unknown dtype '" + v["dtype"].get<std::string>() + "' (allowed: " +
                              detail::allowed_dtypes() + ")");
      TensorInfo ti{dt->type, {}, 0, 0};
      if (!v["shape"].is_array()) throw CheckpointError(ctx + ": shape must be an array");
      std::uint64_t numel = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) throw CheckpointError(ctx + ": shape entries must be non-negative integers");
        const auto dim = d.get<std::uint64_t>();
        if (dim > (1ull << 40) || (dim && numel > (1ull << 62) / dim))
          throw CheckpointError(ctx + ": shape is too large");
        numel *= dim;
        ti.shape.push_back(static_cast<int64_t>(dim));
      }
      const auto& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw CheckpointError(ctx + ": data_offsets must be [begin, end] of non-negative integers");
      ti.begin = off[0].get<std::uint64_t>();
      ti.end = off[1].get<std::uint64_t>();
      if (ti.end < ti.begin) throw CheckpointError(ctx + ": data_offsets end < begin");
      if (ti.end > data_len)
        throw CheckpointError(ctx + ": data_offsets [" + std::to_string(ti.begin) + ", " + std::to_string(ti.end) +
                              "] run past the end of the data (" + std::to_string(data_len) +
                              " bytes); the file is truncated");
      if (numel * dt->size != ti.end - ti.begin)
        throw CheckpointError(ctx + ": shape x element size = " + std::to_string(numel * dt->size) +
                              " bytes but data_offsets span " + std::to_string(ti.end - ti.begin));
      infos_.emplace(name, std::move(ti));
    }
    for (const auto& [n, ti] : infos_) order_.emplace_back(n, ti.begin);
    std::sort(order_.begin(), order_.end(), [&](const auto& a, const auto& b) {
      const auto& ia = infos_.at(a.first);
      const auto& ib = infos_.at(b.first);
      return ia.begin != ib.begin ? ia.begin < ib.begin : ia.end < ib.end;
    });
    for (std::size_t i = 1; i < order_.size(); ++i) {
      const auto& prev = infos_.at(order_[i - 1].first);
      const auto& cur = infos_.at(order_[i].first);
      if (cur.begin < prev.end)
        throw CheckpointError(where() + ": tensors '" + order_[i - 1].first + "' and '" + order_[i].first +
                              "' have overlapping data_offsets");
    }
  }

  static std::string pickle_hint() {
    return ". This looks like a PyTorch pickle (.bin/.ckpt/.pt). cxrl reads safetensors only; convert it with "
           "Python: `from safetensors.torch import save_file; import torch; "
           "sd = torch.load(path, map_location='cpu'); sd = sd.get('state_dict', sd); "
           "save_file({k: v.contiguous() for k, v in sd.items()}, 'model.safetensors')`";
  }

  std::shared_ptr<detail::Mapping> map_;
  std::uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> infos_;
  std::vector<std::pair<std::string, std::uint64_t>> order_;
  Metadata metadata_;
};

/// @brief Loads every tensor of a safetensors file, or of a sharded checkpoint when @p path is a
/// `*.safetensors.index.json` (transformers/diffusers `weight_map` layout).
/// @param path file to read
inline TensorMap load_safetensors(const std::filesystem::path& path) {
  const auto name = path.filename().string();
  if (name.size() > 11 && name.ends_with(".index.json")) {
    std::ifstream f(path);
    if (!f) throw CheckpointError(path.string() + ": cannot open shard index");
    nlohmann::json idx;
    try {
      idx = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
      throw CheckpointError(path.string() + ": shard index is not valid JSON (" + e.what() + ")");
    }
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw CheckpointError(path.string() + ": shard index needs an object 'weight_map' {tensor: shard file}");
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw CheckpointError(path.string() + ": weight_map['" + it.key() + "'] must be a file name");
      by_shard[it.value().get<std::string>()].push_back(it.key());
    }
    TensorMap out;
    for (const auto& [shard, names] : by_shard) {
      SafeTensorsFile f(path.parent_path() / shard);
      for (const auto& n : names) {
        if (!f.contains(n))
          throw CheckpointError(path.string() + ": weight_map puts '" + n + "' in " + shard + ", which lacks it");
        out.emplace(n, f.get(n));
      }
    }
    return out;
  }
  if (path.extension() != ".safetensors" && detail::looks_like_pickle(path) && std::filesystem::exists(path)) {
    // Give the conversion hint before trying to parse pickle bytes as a header.
    try {
      return SafeTensorsFile(path).all();
    } catch (const CheckpointError&) {
      throw CheckpointError(path.string() +
                            ": this is a PyTorch pickle checkpoint, not safetensors. Convert it with Python: "
                            "`from safetensors.torch import save_file; import torch; sd = torch.load('" +
                            path.filename().string() +
                            "', map_location='cpu'); sd = sd.get('state_dict', sd); save_file({k: v.contiguous() "
                            "for k, v in sd.items()}, 'model.safetensors')`");
    }
  }
  return SafeTensorsFile(path).all();
}

/// @brief Writes tensors as safetensors, atomically (temp file in the same folder, then rename).
/// @param path destination
/// @param tensors name → tensor (any device; written as contiguous CPU little-endian data)
/// @param metadata optional `__metadata__` strings
inline void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                             const Metadata& metadata = {}) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  std::uint64_t off = 0;
  for (const auto& [name, t0] : tensors) {
    if (name == "__metadata__") throw CheckpointError(path.string() + ": '__metadata__' is not a valid tensor name");
    auto t = t0.detach().to(torch::kCPU).contiguous();
    const auto& dt = detail::dtype_by_type(t.scalar_type());
    const std::uint64_t bytes = static_cast<std::uint64_t>(t.numel()) * dt.size;
    h[name] = {{"dtype", dt.name}, {"shape", t.sizes().vec()}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
    data.push_back(std::move(t));
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::uint64_t n = header.size();
  auto tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw CheckpointError(tmp.string() + ": cannot open for writing");
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : data)
      f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    f.flush();
    if (!f) {
      std::filesystem::remove(tmp);
      throw CheckpointError(tmp.string() + ": write failed (disk full?)");
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace cxrl::io
