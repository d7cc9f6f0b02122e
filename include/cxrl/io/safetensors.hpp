/// @file
/// @brief safetensors reading (mmap, validated, sharded) and atomic writing.
///
/// Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of
/// JSON `{name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}`, then the
/// little-endian row-major byte buffer that the offsets index into. The header is validated by the
/// torch-free io/safetensors_header.hpp.
#pragma once

#include <cxrl/io/safetensors_header.hpp>

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

/// @brief Ordered name → tensor map, the in-memory form of a safetensors file.
using TensorMap = std::map<std::string, torch::Tensor>;

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
    const auto hint = detail::looks_like_pickle(map_->path()) ? pickle_hint() : std::string();
    const auto h = parse_safetensors_header(map_->data(), map_->size(), where(), hint);
    data_start_ = h.data_start;
    metadata_ = h.metadata;
    for (const auto& [name, e] : h.entries) {
      TensorInfo ti{detail::dtype_by_name(e.dtype)->type, {}, e.begin, e.end};
      for (auto d : e.shape) ti.shape.push_back(static_cast<int64_t>(d));
      infos_.emplace(name, std::move(ti));
    }
    for (const auto& name : h.order) order_.emplace_back(name, infos_.at(name).begin);
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
  // Written to a temporary file, flushed to disk, then renamed over the target: a reader sees the old file or the
  // new one, never a torn one, and a failed write (disk full, read-only folder) leaves the old file intact.
  auto tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw CheckpointError(tmp.string() + ": cannot open for writing (" + std::strerror(errno) + "); " + path.filename().string() +
                          " is unchanged");
  auto fail = [&](const char* what) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    throw CheckpointError(path.string() + ": " + what + " failed (" + why + "); the previous file, if any, is unchanged");
  };
  auto put = [&](const void* p, std::uint64_t len) {
    const char* c = static_cast<const char*>(p);
    while (len > 0) {
      const auto w = ::write(fd, c, static_cast<std::size_t>(std::min<std::uint64_t>(len, 1u << 30)));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write");
      c += w;
      len -= static_cast<std::uint64_t>(w);
    }
  };
  put(&n, 8);
  put(header.data(), header.size());
  for (const auto& t : data) put(t.data_ptr(), static_cast<std::uint64_t>(t.numel() * t.element_size()));
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw CheckpointError(path.string() + ": close failed (" + std::string(std::strerror(errno)) + "); the previous file, if any, is unchanged");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    ::unlink(tmp.c_str());
    throw CheckpointError(path.string() + ": rename of the written file failed (" + ec.message() + "); the previous file, if any, is unchanged");
  }
}

}  // namespace cxrl::io
