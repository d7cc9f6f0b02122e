/// @file
/// @brief DDIMSchedulerConfig: diffusers `DDIMScheduler` configuration (field names and defaults of
///        diffusers v0.17.1) and its strict parser for `scheduler_config.json`.
#pragma once

#include <cxrl/diffusion/schedule.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::diffusion {

/// @brief How inference timesteps are picked from the training range (diffusers `timestep_spacing`;
///        see "Common Diffusion Noise Schedules and Sample Steps are Flawed", Lin et al. 2023, table 2).
enum class TimestepSpacing {
  leading,   ///< arange(N) * (T // N) + steps_offset, descending
  trailing,  ///< round(arange(T, 0, -T/N)) - 1
  linspace,  ///< round(linspace(0, T-1, N)), descending
};

/// @brief What the denoiser predicts (diffusers `prediction_type`).
enum class PredictionType {
  epsilon,       ///< the added noise (Ho et al. 2020)
  v_prediction,  ///< v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022, "Progressive Distillation")
  sample,        ///< x0 itself
};

/// @brief The diffusers spelling of @p s.
/// @param s a spacing
inline std::string_view to_string(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::leading: return "leading";
    case TimestepSpacing::trailing: return "trailing";
    case TimestepSpacing::linspace: return "linspace";
  }
  return "?";
}

/// @brief The diffusers spelling of @p p.
/// @param p a prediction type
inline std::string_view to_string(PredictionType p) {
  switch (p) {
    case PredictionType::epsilon: return "epsilon";
    case PredictionType::v_prediction: return "v_prediction";
    case PredictionType::sample: return "sample";
  }
  return "?";
}

/// @brief Every timestep spacing.
inline constexpr std::array<TimestepSpacing, 3> kTimestepSpacings{TimestepSpacing::leading, TimestepSpacing::trailing,
                                                                   TimestepSpacing::linspace};
/// @brief Every prediction type.
inline constexpr std::array<PredictionType, 3> kPredictionTypes{PredictionType::epsilon, PredictionType::v_prediction,
                                                                 PredictionType::sample};

namespace detail {
/// @brief "a", "b", "c" — quoted names for error messages.
template <class Range>
std::string quoted_names(const Range& r) {
  std::string s;
  for (auto v : r) {
    if (!s.empty()) s += ", ";
    s += '"';
    s += to_string(v);
    s += '"';
  }
  return s;
}
/// @brief Finds the enum value whose diffusers name is @p name.
template <class Range>
auto parse_enum(const Range& r, std::string_view name) -> std::optional<std::decay_t<decltype(*std::begin(r))>> {
  for (auto v : r)
    if (to_string(v) == name) return v;
  return std::nullopt;
}
}  // namespace detail

/// @brief Parses a diffusers `timestep_spacing` name; std::nullopt when unknown.
/// @param name e.g. "trailing"
inline std::optional<TimestepSpacing> parse_timestep_spacing(std::string_view name) {
  return detail::parse_enum(kTimestepSpacings, name);
}
/// @brief Parses a diffusers `prediction_type` name; std::nullopt when unknown.
/// @param name e.g. "v_prediction"
inline std::optional<PredictionType> parse_prediction_type(std::string_view name) {
  return detail::parse_enum(kPredictionTypes, name);
}

/// @brief Configuration of DDIMScheduler: diffusers `DDIMScheduler` field names and defaults.
///
/// Keys of `scheduler_config.json` that only inform (`_class_name`, `_diffusers_version`,
/// `dynamic_thresholding_ratio`, `sample_max_value`, and keys of other schedulers) are ignored.
/// Features that would change the numbers but are not implemented (`thresholding: true`,
/// `rescale_betas_zero_snr: true`) are rejected rather than silently dropped.
struct DDIMSchedulerConfig {
  int64_t num_train_timesteps = 1000;                     ///< T, number of training timesteps
  double beta_start = 0.0001;                             ///< first beta of the (scaled) linear ramp
  double beta_end = 0.02;                                 ///< last beta of the (scaled) linear ramp
  BetaSchedule beta_schedule = BetaSchedule::linear;      ///< ramp shape
  std::optional<std::vector<double>> trained_betas;       ///< explicit betas [T]; overrides beta_schedule
  bool clip_sample = true;                                ///< clamp predicted x0 to ±clip_sample_range
  double clip_sample_range = 1.0;                         ///< clamp bound for predicted x0
  bool set_alpha_to_one = true;                           ///< final alpha-bar = 1 (else alphas_cumprod[0])
  int64_t steps_offset = 0;                               ///< added to "leading" timesteps (SD uses 1)
  PredictionType prediction_type = PredictionType::epsilon;  ///< what the model predicts
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;  ///< inference timestep placement

  /// @brief Parses a diffusers scheduler config object.
  /// @param j the JSON object of `scheduler_config.json`
  /// @param source file name (or other origin) quoted in error messages
  /// @throws std::invalid_argument naming @p source, the key and what is allowed
  static DDIMSchedulerConfig from_json(const nlohmann::json& j, const std::string& source);

  /// @brief Reads `scheduler_config.json` (a file, or a directory holding one).
  /// @param file_or_dir path to the JSON file or its folder
  /// @throws std::invalid_argument when the file is missing, not JSON, or holds bad values
  static DDIMSchedulerConfig load(const std::filesystem::path& file_or_dir);

  /// @brief Checks value ranges (T >= 1, 0 < beta_start <= beta_end < 1, ...).
  /// @param source origin quoted in error messages
  void validate(const std::string& source = "DDIMSchedulerConfig") const;
};

namespace detail {
inline std::string json_type_name(const nlohmann::json& v) { return v.is_null() ? "null" : v.type_name(); }

template <class T>
T get_key(const nlohmann::json& j, const char* key, const char* expected, const std::string& source,
          bool (nlohmann::json::*is_ok)() const noexcept) {
  const auto& v = j.at(key);
  if (!(v.*is_ok)())
    throw std::invalid_argument(source + ": key '" + key + "' must be " + expected + ", got " + json_type_name(v) +
                                " " + v.dump());
  return v.get<T>();
}

template <class E, class Range>
E get_enum(const nlohmann::json& j, const char* key, const Range& allowed, const std::string& source) {
  const auto& v = j.at(key);
  if (!v.is_string())
    throw std::invalid_argument(source + ": key '" + key + "' must be a string, one of " + quoted_names(allowed) +
                                "; got " + v.dump());
  const auto name = v.get<std::string>();
  if (auto e = parse_enum(allowed, name)) return *e;
  throw std::invalid_argument(source + ": key '" + key + "' has unknown value \"" + name + "\"; allowed: " +
                              quoted_names(allowed));
}
}  // namespace detail

inline void DDIMSchedulerConfig::validate(const std::string& source) const {
  auto bad = [&](const std::string& what) { throw std::invalid_argument(source + ": " + what); };
  if (num_train_timesteps < 1)
    bad("'num_train_timesteps' must be >= 1, got " + std::to_string(num_train_timesteps));
  if (trained_betas) {
    if (static_cast<int64_t>(trained_betas->size()) != num_train_timesteps)
      bad("'trained_betas' has " + std::to_string(trained_betas->size()) + " values, expected num_train_timesteps = " +
          std::to_string(num_train_timesteps));
    for (double b : *trained_betas)
      if (!(b > 0.0 && b < 1.0)) bad("'trained_betas' values must lie in (0, 1), got " + std::to_string(b));
  } else if (beta_schedule != BetaSchedule::squaredcos_cap_v2) {
    if (!(beta_start > 0.0 && beta_start < 1.0)) bad("'beta_start' must lie in (0, 1), got " + std::to_string(beta_start));
    if (!(beta_end > 0.0 && beta_end < 1.0)) bad("'beta_end' must lie in (0, 1), got " + std::to_string(beta_end));
  }
  if (!(clip_sample_range > 0.0)) bad("'clip_sample_range' must be > 0, got " + std::to_string(clip_sample_range));
  if (steps_offset < 0) bad("'steps_offset' must be >= 0, got " + std::to_string(steps_offset));
}

inline DDIMSchedulerConfig DDIMSchedulerConfig::from_json(const nlohmann::json& j, const std::string& source) {
  using nlohmann::json;
  if (!j.is_object())
    throw std::invalid_argument(source + ": a scheduler config must be a JSON object, got " + detail::json_type_name(j));
  DDIMSchedulerConfig c;
  auto has = [&](const char* k) { return j.contains(k) && !j.at(k).is_null(); };
  if (has("num_train_timesteps"))
    c.num_train_timesteps = detail::get_key<int64_t>(j, "num_train_timesteps", "an integer", source, &json::is_number_integer);
  if (has("beta_start")) c.beta_start = detail::get_key<double>(j, "beta_start", "a number", source, &json::is_number);
  if (has("beta_end")) c.beta_end = detail::get_key<double>(j, "beta_end", "a number", source, &json::is_number);
  if (has("beta_schedule")) c.beta_schedule = detail::get_enum<BetaSchedule>(j, "beta_schedule", kBetaSchedules, source);
  if (has("trained_betas")) {
    const auto& tb = j.at("trained_betas");
    if (!tb.is_array())
      throw std::invalid_argument(source + ": key 'trained_betas' must be null or an array of numbers, got " +
                                  detail::json_type_name(tb));
    std::vector<double> v;
    for (const auto& x : tb) {
      if (!x.is_number())
        throw std::invalid_argument(source + ": key 'trained_betas' must hold numbers only, got " + x.dump());
      v.push_back(x.get<double>());
    }
    c.trained_betas = std::move(v);
  }
  if (has("clip_sample")) c.clip_sample = detail::get_key<bool>(j, "clip_sample", "a boolean", source, &json::is_boolean);
  if (has("clip_sample_range"))
    c.clip_sample_range = detail::get_key<double>(j, "clip_sample_range", "a number", source, &json::is_number);
  if (has("set_alpha_to_one"))
    c.set_alpha_to_one = detail::get_key<bool>(j, "set_alpha_to_one", "a boolean", source, &json::is_boolean);
  if (has("steps_offset"))
    c.steps_offset = detail::get_key<int64_t>(j, "steps_offset", "an integer", source, &json::is_number_integer);
  if (has("prediction_type"))
    c.prediction_type = detail::get_enum<PredictionType>(j, "prediction_type", kPredictionTypes, source);
  if (has("timestep_spacing"))
    c.timestep_spacing = detail::get_enum<TimestepSpacing>(j, "timestep_spacing", kTimestepSpacings, source);
  // Present in diffusers configs but not implemented here: refuse instead of silently sampling differently.
  if (has("thresholding") &&
      detail::get_key<bool>(j, "thresholding", "a boolean", source, &json::is_boolean))
    throw std::invalid_argument(source + ": 'thresholding': true (dynamic thresholding, Imagen) is not supported; "
                                         "allowed: false");
  if (has("rescale_betas_zero_snr") &&
      detail::get_key<bool>(j, "rescale_betas_zero_snr", "a boolean", source, &json::is_boolean))
    throw std::invalid_argument(source + ": 'rescale_betas_zero_snr': true is not supported; allowed: false");
  c.validate(source);
  return c;
}

inline DDIMSchedulerConfig DDIMSchedulerConfig::load(const std::filesystem::path& file_or_dir) {
  auto p = file_or_dir;
  if (std::filesystem::is_directory(p)) p /= "scheduler_config.json";
  std::ifstream f(p);
  if (!f) throw std::invalid_argument(p.string() + ": cannot open scheduler config (expected scheduler_config.json)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw std::invalid_argument(p.string() + ": invalid JSON: " + e.what());
  }
  return from_json(j, p.string());
}

}  // namespace cxrl::diffusion
