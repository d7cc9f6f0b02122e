/// @file
/// @brief The two interfaces a frozen scoring model is used through, whatever its origin: a native module, a
///        TorchScript export (nn/torchscript.hpp), or a user's own type.
///
/// Reward models are written against these concepts (cxr/reward_models.hpp adapts them to the CXR rewards), so
/// any classifier with `forward(images) → scores` or any dual encoder with `encode_image` / `encode_text` plugs in.
#pragma once

#include <torch/torch.h>

#include <concepts>

namespace cxrl::nn {

/// @brief Anything that maps a batch of images to per-output scores with `forward` (nn::DenseNet, nn::ResNet,
///        nn::TorchScriptClassifier, …).
template <class M>
concept ImageClassifier = requires(M& m, const torch::Tensor& x) {
  { m.forward(x) } -> std::convertible_to<torch::Tensor>;
};

/// @brief Anything that embeds images and tokenized texts into one space (cxr::CxrClip,
///        nn::TorchScriptEmbedder, …): `encode_image(pixels) → [N, D]`, `encode_text(ids, mask) → [B, D]`.
template <class M>
concept ImageTextEmbedder = requires(M& m, const torch::Tensor& x, const torch::Tensor& ids, const torch::Tensor& mask) {
  { m.encode_image(x) } -> std::convertible_to<torch::Tensor>;
  { m.encode_text(ids, mask) } -> std::convertible_to<torch::Tensor>;
};

}  // namespace cxrl::nn
