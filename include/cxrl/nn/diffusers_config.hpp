/// @file
/// @brief Reading diffusers `config.json` files with errors that name the file, the key and what is allowed.
#pragma once

#include <cxrl/nn/activation.hpp>

#include <nlohmann/json.hpp>

#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief A config value that the model cannot honour: the message names the file, the key and the allowed values.
class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// @brief Typed access to one diffusers config JSON object; every error names @p source and the key.
class DiffusersConfigReader {
 public:
  /// @brief Wraps @p j (a JSON object read from @p source).
  /// @param j the config object
  /// @param source file name used in messages
  DiffusersConfigReader(const nlohmann::json& j, std::string source) : j_(j), src_(std::move(source)) {
    if (!j_.is_object()) fail("<root>", "expected a JSON object, got " + std::string(j_.type_name()));
  }

  /// @brief Reads and parses @p file.
  /// @param file path of a config.json
  static nlohmann::json read_file(const std::filesystem::path& file) {
    std::ifstream in(file);
    if (!in) throw ConfigError(file.string() + ": cannot open config file");
    try {
      return nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError(file.string() + ": invalid JSON: " + e.what());
    }
  }

  /// @brief Whether @p key is present and not null.
  /// @param key config key
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  /// @brief Throws ConfigError "<source>: key '<key>': <what>".
  /// @param key config key
  /// @param what the problem and what is allowed
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(src_ + ": key '" + key + "': " + what);
  }

  /// @brief Integer value, @p def when absent.
  /// @param key config key
  /// @param def default
  int64_t integer(const std::string& key, int64_t def) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail(key, "expected an integer within ±2^63, got " + v.dump());
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      // 2.0 is accepted as 2; a float outside the int64 range is not cast (that would be undefined behaviour).
      const double d = v.get<double>();
      if (std::isfinite(d) && std::abs(d) < 9.2e18 && d == std::trunc(d)) return static_cast<int64_t>(d);
    }
    fail(key, "expected an integer, got " + v.dump());
  }
  /// @brief Integer or null (None).
  /// @param key config key
  /// @param def default when absent
  std::optional<int64_t> opt_integer(const std::string& key, std::optional<int64_t> def = std::nullopt) const {
    if (!j_.contains(key)) return def;
    if (j_.at(key).is_null()) return std::nullopt;
    return integer(key, 0);
  }
  /// @brief Number value.
  /// @param key config key
  /// @param def default when absent
  double number(const std::string& key, double def) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (!v.is_number()) fail(key, "expected a number, got " + v.dump());
    return v.get<double>();
  }
  /// @brief Boolean value.
  /// @param key config key
  /// @param def default when absent
  bool boolean(const std::string& key, bool def) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (!v.is_boolean()) fail(key, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  /// @brief String value, optionally restricted to @p allowed.
  /// @param key config key
  /// @param def default when absent
  /// @param allowed accepted values (empty = any)
  std::string string(const std::string& key, const std::string& def, const std::vector<std::string>& allowed = {}) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (!v.is_string()) fail(key, "expected a string, got " + v.dump() + allowed_text(allowed));
    auto s = v.get<std::string>();
    check_allowed(key, s, allowed);
    return s;
  }
  /// @brief String or null.
  /// @param key config key
  /// @param allowed accepted values (empty = any)
  std::optional<std::string> opt_string(const std::string& key, const std::vector<std::string>& allowed = {}) const {
    if (!has(key)) return std::nullopt;
    return string(key, "", allowed);
  }
  /// @brief A diffusers activation name (`get_activation`'s names), mapped to its enum here so the models never
  ///        compare strings.
  /// @param key config key
  /// @param def default when absent
  Activation activation(const std::string& key, Activation def) const {
    if (!j_.contains(key)) return def;
    std::vector<std::string> allowed;
    for (const auto& n : activation_names(ActivationNaming::diffusers)) allowed.emplace_back(n.name);
    return *find_activation(string(key, "", allowed), ActivationNaming::diffusers);  // string() checked the name
  }
  /// @brief A diffusers activation name or null (None: no activation).
  /// @param key config key
  std::optional<Activation> opt_activation(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return activation(key, Activation::silu);
  }
  /// @brief A diffusers `resnet_time_scale_shift` / `time_embedding_norm` value ("default" or "scale_shift").
  /// @param key config key
  /// @param def default when absent
  TimeEmbeddingNorm time_embedding_norm(const std::string& key, TimeEmbeddingNorm def) const {
    if (!j_.contains(key)) return def;
    return parse_time_embedding_norm(string(key, "", {"default", "scale_shift"}));
  }
  /// @brief List of strings, each restricted to @p allowed.
  /// @param key config key
  /// @param def default when absent
  /// @param allowed accepted values (empty = any)
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& def,
                                   const std::vector<std::string>& allowed = {}) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (!v.is_array()) fail(key, "expected a list of strings, got " + v.dump());
    std::vector<std::string> out;
    for (const auto& e : v) {
      if (!e.is_string()) fail(key, "expected a list of strings, got element " + e.dump() + allowed_text(allowed));
      out.push_back(e.get<std::string>());
      check_allowed(key, out.back(), allowed);
    }
    return out;
  }
  /// @brief An integer or a list of integers (the diffusers "int or tuple" fields); an int becomes a 1-element list.
  /// @param key config key
  /// @param def default when absent
  std::vector<int64_t> int_or_list(const std::string& key, const std::vector<int64_t>& def) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (v.is_number()) return {integer(key, 0)};
    if (!v.is_array()) fail(key, "expected an integer or a list of integers, got " + v.dump());
    std::vector<int64_t> out;
    for (const auto& e : v) {
      if (!e.is_number_integer()) fail(key, "expected an integer or a flat list of integers, got element " + e.dump());
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  /// @brief A boolean or a list of booleans; a bool becomes a 1-element list.
  /// @param key config key
  /// @param def default when absent
  std::vector<bool> bool_or_list(const std::string& key, const std::vector<bool>& def) const {
    if (!j_.contains(key)) return def;
    const auto& v = j_.at(key);
    if (v.is_boolean()) return {v.get<bool>()};
    if (!v.is_array()) fail(key, "expected a boolean or a list of booleans, got " + v.dump());
    std::vector<bool> out;
    for (const auto& e : v) {
      if (!e.is_boolean()) fail(key, "expected a boolean or a list of booleans, got element " + e.dump());
      out.push_back(e.get<bool>());
    }
    return out;
  }
  /// @brief Fails unless @p key is absent or null (a feature this implementation does not have).
  /// @param key config key
  /// @param feature what a non-null value would switch on
  void require_null(const std::string& key, const std::string& feature) const {
    if (has(key)) fail(key, "got " + j_.at(key).dump() + ", but " + feature + " is not supported; allowed: null");
  }
  /// @brief Fails if the config names a different `_class_name`.
  /// @param expected the model class
  void require_class(const std::string& expected) const {
    if (has("_class_name") && j_.at("_class_name") != expected)
      fail("_class_name", "got " + j_.at("_class_name").dump() + "; allowed: \"" + expected + "\"");
  }
  /// @brief The file name used in messages.
  const std::string& source() const { return src_; }

 private:
  static std::string allowed_text(const std::vector<std::string>& allowed) {
    if (allowed.empty()) return "";
    std::string s = "; allowed: ";
    for (size_t i = 0; i < allowed.size(); ++i) s += (i ? ", " : "") + allowed[i];
    return s;
  }
  void check_allowed(const std::string& key, const std::string& v, const std::vector<std::string>& allowed) const {
    if (allowed.empty()) return;
    for (const auto& a : allowed)
      if (a == v) return;
    fail(key, "unsupported value \"" + v + "\"" + allowed_text(allowed));
  }

  const nlohmann::json& j_;
  std::string src_;
};

/// @brief Largest channel count, width or sample size an architecture config may ask for: far above every released
///        diffusers model (SD 1.x: 1280 channels), and small enough that a mistyped value fails here with the key's
///        name instead of in an allocation of terabytes.
inline constexpr int64_t kMaxConfigWidth = 1 << 16;
/// @brief Largest count of layers, blocks or groups an architecture config may ask for.
inline constexpr int64_t kMaxConfigCount = 1 << 10;

/// @brief Throws ConfigError "<source>: key '<key>': <value> is outside [lo, hi] (why)" unless lo ≤ value ≤ hi.
/// @param source config file @param key config key @param value the value @param lo, hi allowed range @param why what the range guards
inline void check_range(const std::string& source, const std::string& key, int64_t value, int64_t lo, int64_t hi, const std::string& why) {
  if (value < lo || value > hi)
    throw ConfigError(source + ": key '" + key + "': " + std::to_string(value) + " is outside [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "] (" + why + ")");
}

/// @brief Expands a diffusers "int or per-block list" value to @p n entries (1 entry = broadcast).
/// @param v the value (1 or @p n entries)
/// @param n number of blocks
/// @param key config key (for the message)
/// @param source config file (for the message)
template <class T>
std::vector<T> per_block(const std::vector<T>& v, size_t n, const std::string& key, const std::string& source) {
  if (v.size() == 1) return std::vector<T>(n, v[0]);
  if (v.size() != n)
    throw ConfigError(source + ": key '" + key + "': has " + std::to_string(v.size()) + " entries but there are " +
                      std::to_string(n) + " down blocks; allowed: one value or one per block");
  return v;
}

}  // namespace cxrl::nn
