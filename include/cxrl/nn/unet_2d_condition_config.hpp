/// @file
/// @brief diffusers `UNet2DConditionModel` config.json, parsed and validated without LibTorch (it is outside input:
///        every value is checked before a module is built from it).
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/diffusers_config.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief diffusers `UNet2DConditionModel` config: field names and defaults of diffusers 0.24.
///
/// "int or per-block list" fields are stored as vectors; a single entry applies to every block.
/// Fields of features this implementation does not have (class/addition embeddings, encoder_hid_proj,
/// dual cross-attention, gated attention, other block types, …) are validated by `from_json` to hold
/// their "off" value; informational fields (`sample_size`, `_diffusers_version`, …) are ignored.
struct UNet2DConditionConfig {
  std::optional<int64_t> sample_size;  ///< informational (latent size the model was trained at)
  int64_t in_channels = 4;             ///< input channels
  int64_t out_channels = 4;            ///< output channels
  bool center_input_sample = false;    ///< map the input x → 2x − 1 first
  bool flip_sin_to_cos = true;         ///< cos first in the time sinusoid
  double freq_shift = 0;               ///< downscale_freq_shift of the sinusoid
  /// Down blocks, from the input side; allowed: "CrossAttnDownBlock2D", "DownBlock2D".
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "DownBlock2D"};
  /// Mid block; allowed: "UNetMidBlock2DCrossAttn" or none (null).
  std::optional<std::string> mid_block_type = "UNetMidBlock2DCrossAttn";
  /// Up blocks, from the bottom; allowed: "CrossAttnUpBlock2D", "UpBlock2D".
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D"};
  std::vector<bool> only_cross_attention{false};          ///< per block (1 entry = all)
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};  ///< channels per resolution level
  std::vector<int64_t> layers_per_block{2};               ///< resnets per down block (up: +1); per block or one
  int64_t downsample_padding = 1;                         ///< Downsample2D padding
  double mid_block_scale_factor = 1;                      ///< output divisor of the mid-block resnets
  double dropout = 0.0;                                   ///< resnet dropout
  Activation act_fn = Activation::silu;                   ///< activation (config: a diffusers name)
  int64_t norm_num_groups = 32;                           ///< GroupNorm groups
  double norm_eps = 1e-5;                                 ///< resnet / conv_norm_out GroupNorm eps
  std::vector<int64_t> cross_attention_dim{1280};         ///< context width, per block or one
  std::vector<int64_t> transformer_layers_per_block{1};   ///< BasicTransformerBlocks per Transformer2DModel
  /// Per block or one. **SD1.x legacy meaning: this is the NUMBER OF HEADS** (diffusers issue #2011), not the
  /// per-head width: with 8, a 320-channel transformer has 8 heads of 40 channels.
  std::vector<int64_t> attention_head_dim{8};
  /// Number of heads, overriding `attention_head_dim` when given (empty = null, the diffusers default).
  std::vector<int64_t> num_attention_heads{};
  bool use_linear_projection = false;                     ///< Linear proj_in/proj_out (SD2) instead of 1×1 convs
  bool upcast_attention = false;                          ///< float32 attention scores for half inputs
  TimeEmbeddingNorm resnet_time_scale_shift = TimeEmbeddingNorm::add;  ///< config: "default" (add) or "scale_shift"
  bool resnet_skip_time_act = false;                      ///< informational for the supported block types
  double resnet_out_scale_factor = 1.0;                   ///< informational for the supported block types
  std::string time_embedding_type = "positional";         ///< only "positional"
  std::optional<int64_t> time_embedding_dim;              ///< default 4·block_out_channels[0]
  std::optional<Activation> time_embedding_act_fn;        ///< activation after the time MLP
  std::optional<Activation> timestep_post_act;            ///< activation inside the MLP after linear_2
  int64_t conv_in_kernel = 3;                             ///< conv_in kernel (odd)
  int64_t conv_out_kernel = 3;                            ///< conv_out kernel (odd)

  /// @brief Parses a diffusers config object; errors name @p source, the key and the allowed values.
  /// @param j the config.json object
  /// @param source file name for messages
  static UNet2DConditionConfig from_json(const nlohmann::json& j, const std::string& source) {
    DiffusersConfigReader r(j, source);
    r.require_class("UNet2DConditionModel");
    UNet2DConditionConfig c;
    c.sample_size = r.opt_integer("sample_size", std::nullopt);
    c.in_channels = r.integer("in_channels", c.in_channels);
    c.out_channels = r.integer("out_channels", c.out_channels);
    c.center_input_sample = r.boolean("center_input_sample", c.center_input_sample);
    c.flip_sin_to_cos = r.boolean("flip_sin_to_cos", c.flip_sin_to_cos);
    c.freq_shift = r.number("freq_shift", c.freq_shift);
    c.down_block_types = r.strings("down_block_types", c.down_block_types, {"CrossAttnDownBlock2D", "DownBlock2D"});
    if (j.contains("mid_block_type"))
      c.mid_block_type = r.opt_string("mid_block_type", {"UNetMidBlock2DCrossAttn"});
    c.up_block_types = r.strings("up_block_types", c.up_block_types, {"CrossAttnUpBlock2D", "UpBlock2D"});
    c.only_cross_attention = r.bool_or_list("only_cross_attention", c.only_cross_attention);
    c.block_out_channels = r.int_or_list("block_out_channels", c.block_out_channels);
    c.layers_per_block = r.int_or_list("layers_per_block", c.layers_per_block);
    c.downsample_padding = r.integer("downsample_padding", c.downsample_padding);
    c.mid_block_scale_factor = r.number("mid_block_scale_factor", c.mid_block_scale_factor);
    c.dropout = r.number("dropout", c.dropout);
    c.act_fn = r.activation("act_fn", c.act_fn);
    if (j.contains("norm_num_groups") && j.at("norm_num_groups").is_null())
      r.fail("norm_num_groups", "null (no output GroupNorm) is not supported; allowed: a positive integer");
    c.norm_num_groups = r.integer("norm_num_groups", c.norm_num_groups);
    c.norm_eps = r.number("norm_eps", c.norm_eps);
    c.cross_attention_dim = r.int_or_list("cross_attention_dim", c.cross_attention_dim);
    if (j.contains("transformer_layers_per_block") && j.at("transformer_layers_per_block").is_array())
      for (const auto& e : j.at("transformer_layers_per_block"))
        if (e.is_array())
          r.fail("transformer_layers_per_block", "nested per-layer lists are not supported; allowed: an integer or one integer per block");
    c.transformer_layers_per_block = r.int_or_list("transformer_layers_per_block", c.transformer_layers_per_block);
    c.attention_head_dim = r.int_or_list("attention_head_dim", c.attention_head_dim);
    if (r.has("num_attention_heads")) c.num_attention_heads = r.int_or_list("num_attention_heads", {});
    c.use_linear_projection = r.boolean("use_linear_projection", c.use_linear_projection);
    c.upcast_attention = r.boolean("upcast_attention", c.upcast_attention);
    c.resnet_time_scale_shift = r.time_embedding_norm("resnet_time_scale_shift", c.resnet_time_scale_shift);
    c.resnet_skip_time_act = r.boolean("resnet_skip_time_act", c.resnet_skip_time_act);
    c.resnet_out_scale_factor = r.number("resnet_out_scale_factor", c.resnet_out_scale_factor);
    c.time_embedding_type = r.string("time_embedding_type", c.time_embedding_type, {"positional"});
    c.time_embedding_dim = r.opt_integer("time_embedding_dim");
    c.time_embedding_act_fn = r.opt_activation("time_embedding_act_fn");
    c.timestep_post_act = r.opt_activation("timestep_post_act");
    c.conv_in_kernel = r.integer("conv_in_kernel", c.conv_in_kernel);
    c.conv_out_kernel = r.integer("conv_out_kernel", c.conv_out_kernel);
    // Architecture switches this implementation does not have must be off.
    r.require_null("class_embed_type", "a class embedding");
    r.require_null("num_class_embeds", "a class embedding");
    r.require_null("addition_embed_type", "an addition embedding (SDXL text_time etc.)");
    r.require_null("encoder_hid_dim", "encoder_hid_proj");
    r.require_null("encoder_hid_dim_type", "encoder_hid_proj");
    r.require_null("time_cond_proj_dim", "a timestep condition projection (LCM)");
    r.require_null("projection_class_embeddings_input_dim", "a projected class embedding");
    r.require_null("cross_attention_norm", "a cross-attention norm");
    r.require_null("reverse_transformer_layers_per_block", "per-layer up-block transformer depths");
    if (r.boolean("dual_cross_attention", false)) r.fail("dual_cross_attention", "true is not supported; allowed: false");
    if (r.boolean("class_embeddings_concat", false)) r.fail("class_embeddings_concat", "true is not supported; allowed: false");
    r.string("attention_type", "default", {"default"});
    c.validate(source);
    return c;
  }

  /// @brief Reads `config.json` (a file, or a directory holding one).
  /// @param file_or_dir config file or model directory
  static UNet2DConditionConfig load(const std::filesystem::path& file_or_dir) {
    auto file = std::filesystem::is_directory(file_or_dir) ? file_or_dir / "config.json" : file_or_dir;
    return from_json(DiffusersConfigReader::read_file(file), file.string());
  }

  /// @brief Checks cross-field consistency (list lengths, kernels, group and head divisibility).
  /// @param source file name for messages
  void validate(const std::string& source = "UNet2DConditionConfig") const {
    const size_t n = down_block_types.size();
    auto fail = [&](const std::string& key, const std::string& what) {
      throw ConfigError(source + ": key '" + key + "': " + what);
    };
    if (n == 0) fail("down_block_types", "must name at least one block");
    // Ranges first: the divisions below need positive group and head counts, and widths must fit in memory.
    check_range(source, "norm_num_groups", norm_num_groups, 1, kMaxConfigCount, "GroupNorm groups; 0 would divide by zero");
    check_range(source, "in_channels", in_channels, 1, kMaxConfigWidth, "input channels");
    check_range(source, "out_channels", out_channels, 1, kMaxConfigWidth, "output channels");
    check_range(source, "down_block_types", static_cast<int64_t>(n), 1, kMaxConfigCount, "number of blocks");
    if (sample_size) check_range(source, "sample_size", *sample_size, 1, kMaxConfigWidth, "latent side");
    for (auto ch : block_out_channels) check_range(source, "block_out_channels", ch, 1, kMaxConfigWidth, "channels per block");
    for (auto x : num_attention_heads) check_range(source, "num_attention_heads", x, 1, kMaxConfigWidth, "heads; 0 would divide by zero");
    for (auto x : attention_head_dim) check_range(source, "attention_head_dim", x, 1, kMaxConfigWidth, "heads (legacy name); 0 would divide by zero");
    for (auto x : layers_per_block) check_range(source, "layers_per_block", x, 1, kMaxConfigCount, "resnets per block");
    for (auto x : transformer_layers_per_block) check_range(source, "transformer_layers_per_block", x, 1, kMaxConfigCount, "transformers per block");
    for (auto x : cross_attention_dim) check_range(source, "cross_attention_dim", x, 1, kMaxConfigWidth, "text width");
    if (up_block_types.size() != n)
      fail("up_block_types", "has " + std::to_string(up_block_types.size()) + " entries; must equal down_block_types (" +
                                 std::to_string(n) + ")");
    if (block_out_channels.size() != n)
      fail("block_out_channels", "has " + std::to_string(block_out_channels.size()) +
                                     " entries; must equal down_block_types (" + std::to_string(n) + ")");
    for (const auto& key : {std::string("layers_per_block"), std::string("cross_attention_dim"),
                            std::string("transformer_layers_per_block"), std::string("attention_head_dim")}) {
      const auto& v = key == "layers_per_block" ? layers_per_block
                      : key == "cross_attention_dim" ? cross_attention_dim
                      : key == "transformer_layers_per_block" ? transformer_layers_per_block : attention_head_dim;
      (void)per_block(v, n, key, source);
      for (auto x : v)
        if (x <= 0) fail(key, "values must be positive, got " + std::to_string(x));
    }
    if (!num_attention_heads.empty()) (void)per_block(num_attention_heads, n, "num_attention_heads", source);
    (void)per_block(only_cross_attention, n, "only_cross_attention", source);
    for (auto k : {conv_in_kernel, conv_out_kernel})
      if (k <= 0 || k % 2 == 0) fail(k == conv_in_kernel ? "conv_in_kernel" : "conv_out_kernel", "must be a positive odd integer");
    for (auto ch : block_out_channels)
      if (ch <= 0 || ch % norm_num_groups != 0)
        fail("norm_num_groups", std::to_string(norm_num_groups) + " does not divide block_out_channels entry " +
                                    std::to_string(ch));
    const auto heads = heads_per_block(source);
    for (size_t i = 0; i < n; ++i)
      if (block_out_channels[i] % heads[i] != 0)
        fail(num_attention_heads.empty() ? "attention_head_dim" : "num_attention_heads",
             std::to_string(heads[i]) + " heads do not divide block_out_channels[" + std::to_string(i) + "] = " +
                 std::to_string(block_out_channels[i]));
  }

  /// @brief Heads per down block: num_attention_heads if given, else attention_head_dim (legacy meaning).
  /// @param source file name for messages
  std::vector<int64_t> heads_per_block(const std::string& source = "UNet2DConditionConfig") const {
    const auto& v = num_attention_heads.empty() ? attention_head_dim : num_attention_heads;
    return per_block(v, down_block_types.size(), num_attention_heads.empty() ? "attention_head_dim" : "num_attention_heads",
                     source);
  }
};

}  // namespace cxrl::nn
