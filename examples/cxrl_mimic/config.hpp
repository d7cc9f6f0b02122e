// Command settings from a JSON config file plus command-line overrides, with the resolved config
// written to the run folder. Every setting is one `--name` option (`--a_b` also as `--a-b`); `--config FILE` supplies any of
// them as JSON keys of the same name. The command line wins over the file; unknown keys and wrong
// types in the file are errors that name the file, the key and what was expected.
#pragma once

#include <cxrl/io/json_file.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl_mimic {

using cxrl::io::write_json;  // atomic JSON files

class Settings {
 public:
  explicit Settings(CLI::App* app) : app_(app) {
    app_->add_option("--config", config_file_, "JSON file with any of this command's settings (command line wins)")
        ->check(CLI::ExistingFile);
  }

  /// Binds `--name` to @p field; its current value is the default.
  template <class T>
  CLI::Option* add(const std::string& name, T& field, const std::string& help) {
    auto* opt = app_->add_option(flag_names(name), field, help)->capture_default_str();
    entries_.push_back(Entry{name, opt,
                             [&field, name](const nlohmann::json& j, const std::string& src) {
                               try {
                                 field = j.get<T>();
                               } catch (const std::exception& e) {
                                 throw std::invalid_argument(src + ": key '" + name + "' has the wrong type (" +
                                                             e.what() + "); expected the type of its default " +
                                                             nlohmann::json(field).dump());
                               }
                             },
                             [&field] { return nlohmann::json(field); }});
    return opt;
  }

  /// Binds a boolean `--name` flag.
  CLI::Option* flag(const std::string& name, bool& field, const std::string& help) {
    auto* opt = app_->add_flag(flag_names(name), field, help);
    entries_.push_back(Entry{name, opt,
                             [&field, name](const nlohmann::json& j, const std::string& src) {
                               if (!j.is_boolean())
                                 throw std::invalid_argument(src + ": key '" + name + "' must be true or false");
                               field = j.get<bool>();
                             },
                             [&field] { return nlohmann::json(field); }});
    return opt;
  }

  /// Applies the config file (if any) to every setting not given on the command line. Call first
  /// thing in the command's callback.
  void resolve() {
    if (config_file_.empty()) return;
    std::ifstream in(config_file_);
    if (!in) throw std::invalid_argument(config_file_ + ": cannot open config file");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw std::invalid_argument(config_file_ + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw std::invalid_argument(config_file_ + ": expected a JSON object of settings");
    for (auto it = j.begin(); it != j.end(); ++it) {
      const Entry* e = find(it.key());
      if (!e) {
        std::string allowed;
        for (const auto& x : entries_) allowed += (allowed.empty() ? "" : ", ") + x.name;
        throw std::invalid_argument(config_file_ + ": unknown key '" + it.key() + "' for '" + app_->get_name() +
                                    "' (allowed: " + allowed + ")");
      }
      if (e->opt->count() == 0) e->set(it.value(), config_file_);
    }
  }

  /// Every setting's final value.
  nlohmann::json resolved() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& e : entries_) j[e.name] = e.get();
    return j;
  }

 private:
  // `--a_b` also answers to `--a-b` (the JSON key stays a_b).
  static std::string flag_names(const std::string& name) {
    std::string dashed = name;
    for (auto& c : dashed)
      if (c == '_') c = '-';
    return dashed == name ? "--" + name : "--" + name + ",--" + dashed;
  }
  struct Entry {
    std::string name;
    CLI::Option* opt;
    std::function<void(const nlohmann::json&, const std::string&)> set;
    std::function<nlohmann::json()> get;
  };
  const Entry* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  CLI::App* app_;
  std::string config_file_;
  std::vector<Entry> entries_;
};

}  // namespace cxrl_mimic
