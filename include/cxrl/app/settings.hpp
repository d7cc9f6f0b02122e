/// @file
/// @brief Command settings from a JSON config file plus command-line overrides (CLI11), as a reference program
///        binds them; the resolved settings are what a run folder's config.json records.
///
/// Every setting is one `--name` option (`--a_b` also as `--a-b`); `--config FILE` supplies any of them as JSON
/// keys of the same name. The command line wins over the file; unknown keys and wrong types in the file are
/// errors that name the file, the key and what was expected. This is the one header of the library that needs
/// CLI11 (link `CLI11::CLI11`); the umbrella header leaves it out.
#pragma once

#include <cxrl/app/finetune.hpp>
#include <cxrl/app/policy_settings.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/diffusion/anchor_pretraining.hpp>
#include <cxrl/io/json_file.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::app {

/// @brief The settings of one command: CLI11 options backed by an optional JSON config file.
class Settings {
 public:
  /// @param app the command whose options these are
  explicit Settings(CLI::App* app) : app_(app) {
    app_->add_option("--config", config_file_, "JSON file with any of this command's settings (command line wins)")
        ->check(CLI::ExistingFile);
  }

  /// @brief Binds `--name` to @p field; its current value is the default.
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

  /// @brief Binds a boolean `--name` flag.
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

  /// @brief Applies the config file (if any) to every setting not given on the command line. Call first
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

  /// @brief Every setting's final value.
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

/// @brief Binds the policy / sampler flags under their config.json keys.
/// @param s the command's settings
/// @param p the fields to bind
inline void add_policy_settings(Settings& s, PolicySettings& p) {
  s.add("lora_rank", p.lora_rank, "LoRA rank");
  s.add("ace_tokens", p.ace_tokens, "ACE tokens N");
  s.flag("no_ace", p.no_ace, "ablation: LoRA only, no ACE tokens");
  s.add("ace_init", p.ace_init, "ACE initialisation: padding (copies of the encoder's padding outputs) or random");
  s.add("seed", p.seed, "seed of the adapters' initialisation and of every trainer generator");
  s.add("steps", p.steps, "DDIM steps");
  s.add("eta", p.eta, "DDIM eta (> 0)");
  s.add("guidance", p.guidance, "classifier-free guidance scale");
  s.add("precision", p.precision, "arithmetic of the anchor's UNet and the VAE decode: auto (the faster of fp32 and bf16 here, timed at start), fp32 or bf16; the policy's passes are always fp32");
}

/// @brief Binds the DDPO trainer's flags under ddpo-pytorch's config names (`sample.*` / `train.*` without the
///        prefix). The trainer's seed is the policy's `seed`, so it is not bound here.
/// @param s the command's settings
/// @param t the fields to bind
inline void add_trainer_settings(Settings& s, core::TrainerConfig& t) {
  s.add("batch_size", t.batch_size, "prompts per sampling call (per rank)");
  s.add("num_batches", t.num_batches, "sampling calls per epoch");
  s.add("train_batch_size", t.train_batch_size, "samples per training minibatch (0 = batch_size)");
  s.add("num_inner_epochs", t.num_inner_epochs, "passes over each epoch's samples");
  s.add("gradient_accumulation_steps", t.gradient_accumulation_steps, "minibatches per optimizer step");
  s.add("timestep_fraction", t.timestep_fraction, "fraction of the denoising steps trained per sample");
  s.add("learning_rate", t.learning_rate, "AdamW learning rate");
  s.add("clip_range", t.clip_range, "PPO clip range");
  s.add("adv_clip_max", t.adv_clip_max, "advantage clip");
  s.add("max_grad_norm", t.max_grad_norm, "gradient norm clip");
}

/// @brief Binds the denoiser-pretraining flags (`pretrain` commands).
/// @param s the command's settings
/// @param d the fields to bind
inline void add_denoiser_settings(Settings& s, diffusion::DenoiserSettings& d) {
  s.add("block_out_channels", d.block_out_channels, "UNet channels per level");
  s.add("text_hidden", d.text_hidden, "text encoder width (= UNet cross_attention_dim)");
  s.add("text_layers", d.text_layers, "text encoder layers");
  s.add("steps", d.steps, "denoiser optimizer steps");
  s.add("batch_size", d.batch_size, "samples per denoiser step");
  s.add("learning_rate", d.learning_rate, "peak denoiser AdamW learning rate (cosine decay to 0)");
  s.add("warmup_steps", d.warmup_steps, "linear learning-rate warm-up steps");
  s.add("cond_dropout", d.cond_dropout, "probability of training on the empty prompt (CFG)");
  s.add("ema_decay", d.ema_decay, "EMA decay of the denoiser weights (0 = off)");
  s.add("checkpoint_every", d.checkpoint_every, "steps between resumable checkpoints (rerun the same command to resume)");
  s.add("save_fp16", d.save_fp16, "store the final weights as float16 (true/false)");
}

/// @brief Binds how a run is written: `out`, `epochs`, `keep_checkpoints`, `resume`, `quiet`.
/// @param s the command's settings
/// @param r the fields to bind (`out` is a path: bound through @p out_text)
/// @param out_text the run folder as text (copied into `r.out` by the caller after resolve())
inline void add_run_settings(Settings& s, FinetuneRunOptions& r, std::string& out_text) {
  s.add("out", out_text, "run folder");
  s.add("epochs", r.epochs, "epochs (total, also when resuming)");
  s.add("keep_checkpoints", r.keep_checkpoints, "checkpoints kept in the run folder");
  s.flag("resume", r.resume, "continue the run in --out from its newest intact checkpoint");
  s.flag("quiet", r.quiet, "no progress output");
}

}  // namespace cxrl::app
