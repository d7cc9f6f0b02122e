/// @file
/// @brief diffusers `AutoencoderKL` config.json, parsed and validated without LibTorch.
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/diffusers_config.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief diffusers `AutoencoderKL` config (0.24 field names and defaults).
struct AutoencoderKLConfig {
  int64_t in_channels = 3;   ///< image channels
  int64_t out_channels = 3;  ///< decoded channels
  /// Encoder blocks; allowed: "DownEncoderBlock2D".
  std::vector<std::string> down_block_types{"DownEncoderBlock2D"};
  /// Decoder blocks; allowed: "UpDecoderBlock2D".
  std::vector<std::string> up_block_types{"UpDecoderBlock2D"};
  std::vector<int64_t> block_out_channels{64};  ///< channels per level
  int64_t layers_per_block = 1;                 ///< resnets per encoder block (decoder: +1)
  Activation act_fn = Activation::silu;         ///< activation (config: a diffusers name)
  int64_t latent_channels = 4;                  ///< latent channels
  int64_t norm_num_groups = 32;                 ///< GroupNorm groups (eps 1e-6 everywhere)
  int64_t sample_size = 32;                     ///< informational
  double scaling_factor = 0.18215;              ///< latent scale used by pipelines (not by encode/decode)
  bool force_upcast = true;                     ///< informational (float32 decoding in pipelines)

  /// @brief Parses a diffusers config object; errors name @p source, the key and the allowed values.
  /// @param j the config.json object
  /// @param source file name for messages
  static AutoencoderKLConfig from_json(const nlohmann::json& j, const std::string& source) {
    DiffusersConfigReader r(j, source);
    r.require_class("AutoencoderKL");
    AutoencoderKLConfig c;
    c.in_channels = r.integer("in_channels", c.in_channels);
    c.out_channels = r.integer("out_channels", c.out_channels);
    c.down_block_types = r.strings("down_block_types", c.down_block_types, {"DownEncoderBlock2D"});
    c.up_block_types = r.strings("up_block_types", c.up_block_types, {"UpDecoderBlock2D"});
    c.block_out_channels = r.int_or_list("block_out_channels", c.block_out_channels);
    c.layers_per_block = r.integer("layers_per_block", c.layers_per_block);
    c.act_fn = r.activation("act_fn", c.act_fn);
    c.latent_channels = r.integer("latent_channels", c.latent_channels);
    c.norm_num_groups = r.integer("norm_num_groups", c.norm_num_groups);
    c.sample_size = r.integer("sample_size", c.sample_size);
    c.scaling_factor = r.number("scaling_factor", c.scaling_factor);
    c.force_upcast = r.boolean("force_upcast", c.force_upcast);
    // Later diffusers switches that change the architecture must hold their 0.24 value.
    if (!r.boolean("mid_block_add_attention", true))
      r.fail("mid_block_add_attention", "false is not supported; allowed: true");
    r.require_null("latents_mean", "latent normalisation statistics");
    r.require_null("latents_std", "latent normalisation statistics");
    r.require_null("shift_factor", "a latent shift");
    if (r.boolean("use_quant_conv", true) == false) r.fail("use_quant_conv", "false is not supported; allowed: true");
    if (r.boolean("use_post_quant_conv", true) == false)
      r.fail("use_post_quant_conv", "false is not supported; allowed: true");
    c.validate(source);
    return c;
  }
  /// @brief Pixels per latent along each axis: 2^(levels − 1), one downsampling per level after the first
  ///        (diffusers' `vae_scale_factor`).
  int64_t scale_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
  /// @brief Reads `config.json` (a file, or a directory holding one).
  /// @param file_or_dir config file or model directory
  static AutoencoderKLConfig load(const std::filesystem::path& file_or_dir) {
    auto file = std::filesystem::is_directory(file_or_dir) ? file_or_dir / "config.json" : file_or_dir;
    return from_json(DiffusersConfigReader::read_file(file), file.string());
  }
  /// @brief Checks list lengths and group divisibility.
  /// @param source file name for messages
  void validate(const std::string& source = "AutoencoderKLConfig") const {
    auto fail = [&](const std::string& key, const std::string& what) {
      throw ConfigError(source + ": key '" + key + "': " + what);
    };
    const size_t n = block_out_channels.size();
    if (n == 0) fail("block_out_channels", "must have at least one entry");
    if (down_block_types.size() != n) fail("down_block_types", "must have one entry per block_out_channels entry");
    if (up_block_types.size() != n) fail("up_block_types", "must have one entry per block_out_channels entry");
    if (layers_per_block <= 0) fail("layers_per_block", "must be positive");
    check_range(source, "norm_num_groups", norm_num_groups, 1, kMaxConfigCount, "GroupNorm groups; 0 would divide by zero");
    check_range(source, "layers_per_block", layers_per_block, 1, kMaxConfigCount, "resnets per block");
    check_range(source, "block_out_channels", static_cast<int64_t>(n), 1, kMaxConfigCount, "number of levels");
    check_range(source, "in_channels", in_channels, 1, kMaxConfigWidth, "image channels");
    check_range(source, "out_channels", out_channels, 1, kMaxConfigWidth, "image channels");
    check_range(source, "latent_channels", latent_channels, 1, kMaxConfigWidth, "latent channels");
    for (auto ch : block_out_channels) check_range(source, "block_out_channels", ch, 1, kMaxConfigWidth, "channels per level");
    if (n > 30) fail("block_out_channels", "more than 30 levels: the scale factor 2^(levels-1) would overflow");
    for (auto ch : block_out_channels)
      if (ch <= 0 || ch % norm_num_groups != 0)
        fail("norm_num_groups", std::to_string(norm_num_groups) + " does not divide block_out_channels entry " +
                                    std::to_string(ch));
  }
};

}  // namespace cxrl::nn
