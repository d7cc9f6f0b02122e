// Small random SD components for policy/pipeline tests: a 1-channel pixel-space UNet shaped like the
// unet_gray fixture (smaller), a CLIP text encoder with CLIP's real 49,408-token vocabulary (so the real
// tokenizer's ids are valid) and hidden size = the UNet's cross_attention_dim, and the fixture tokenizer.
#pragma once

#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <memory>

namespace cxrl_test {

inline cxrl::nn::UNet2DConditionConfig tiny_unet_config() {
  cxrl::nn::UNet2DConditionConfig c;
  c.in_channels = 1;
  c.out_channels = 1;
  c.sample_size = 16;
  c.block_out_channels = {32, 64};
  c.layers_per_block = {1};
  c.down_block_types = {"CrossAttnDownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D"};
  c.cross_attention_dim = {32};
  c.attention_head_dim = {4};
  c.norm_num_groups = 8;
  return c;
}

inline cxrl::nn::CLIPTextConfig tiny_clip_config() {
  cxrl::nn::CLIPTextConfig c;
  c.vocab_size = 49408;
  c.hidden_size = 32;
  c.intermediate_size = 37;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.max_position_embeddings = 77;
  c.bos_token_id = 0;
  c.eos_token_id = 2;
  return c;
}

inline cxrl::nn::UNet2DConditionModel tiny_unet(uint64_t seed) {
  torch::manual_seed(seed);
  return cxrl::nn::UNet2DConditionModel(tiny_unet_config());
}

inline cxrl::nn::CLIPTextModel tiny_clip(uint64_t seed) {
  torch::manual_seed(seed);
  return cxrl::nn::CLIPTextModel(tiny_clip_config());
}

inline std::shared_ptr<const cxrl::text::ClipTokenizer> clip_tokenizer() {
  static auto t = std::make_shared<const cxrl::text::ClipTokenizer>(
      cxrl::text::ClipTokenizer::from_pretrained(std::filesystem::path(CXRL_TEST_DATA) / "clip_tokenizer"));
  return t;
}

}  // namespace cxrl_test
