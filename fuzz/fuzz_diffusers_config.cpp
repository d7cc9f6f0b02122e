// libFuzzer harness: diffusers config.json files (nn/unet_2d_condition_config.hpp, nn/autoencoder_kl_config.hpp):
// every value a model is built from is range-checked, so nothing here may divide by zero or overflow.
#include <cxrl/nn/autoencoder_kl_config.hpp>
#include <cxrl/nn/unet_2d_condition_config.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fuzz_text(data, size));
  } catch (const std::exception&) {
    return 0;
  }
  try {
    const auto c = cxrl::nn::UNet2DConditionConfig::from_json(j, "fuzz/config.json");
    (void)c.heads_per_block();
  } catch (const std::exception&) {
  }
  try {
    const auto c = cxrl::nn::AutoencoderKLConfig::from_json(j, "fuzz/config.json");
    (void)c.scale_factor();
  } catch (const std::exception&) {
  }
  return 0;
}
