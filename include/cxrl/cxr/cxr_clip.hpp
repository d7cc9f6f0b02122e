/// @file
/// @brief CXR-CLIP dual encoder (ResNet-50 image encoder + BERT text encoder, linear projections).
///
/// You et al., "CXR-CLIP: Toward Large Scale Chest X-ray Language-Image Pre-training" (MICCAI 2023);
/// structure of kakaobrain/cxr-clip `cxrclip/model/clip.py` (`CXRClip`, config `clip_resnet_clinical.yaml`):
/// - `image_encoder.resnet.*`: torchvision resnet50 with `fc` deleted → 2048-d pooled features;
/// - `text_encoder.text_encoder.*`: transformers `BertModel` (Bio_ClinicalBERT), pooled at the `[SEP]`
///   position `attention_mask.sum(-1) − 1` (`text_pooling = "eos"`);
/// - `image_projection.projection.*`, `text_projection.projection.*`: `nn.Linear(·, 512)` (LinearProjectionHead);
/// - `logit_scale`: learnable scalar, log(1/temperature) at init (temperature 0.07); the similarity is
///   `exp(logit_scale) · ⟨img, txt⟩` of L2-normalised embeddings.
///
/// Checkpoints: CXR-CLIP saves `torch.save({"model": model.state_dict(), ...})`. Convert the `model` dict once:
/// ```python
/// import torch; from safetensors.torch import save_file
/// sd = torch.load("r50_mcc.tar", map_location="cpu")["model"]
/// save_file({k: v.contiguous() for k, v in sd.items()}, "cxr_clip_r50.safetensors")
/// ```
/// CxrClip::load() reads it strictly (ignoring `…embeddings.position_ids`, which transformers 4.26 saved).
/// Widths are configurable so a small phantom-world model can be trained with the same code.
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/bert.hpp>
#include <cxrl/nn/resnet.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief Pixel normalisation of CXR-CLIP's image input (kakaobrain/cxr-clip `data_utils.transform_image`).
enum class ClipNormalize {
  huggingface,  ///< mean = std = 0.5 per channel: the default of cxr-clip's datasets, used by the released models
  imagenet,     ///< ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)
};

/// @brief The normalisation named @p s ("huggingface" or "imagenet", cxr-clip's spelling).
/// @param s the name
/// @param where source (file and key) for the message
/// @throws std::invalid_argument listing the allowed values
inline ClipNormalize parse_clip_normalize(const std::string& s, const std::string& where) {
  if (s == "huggingface") return ClipNormalize::huggingface;
  if (s == "imagenet") return ClipNormalize::imagenet;
  throw std::invalid_argument(where + ": normalize must be \"huggingface\" or \"imagenet\", got \"" + s + "\"");
}

/// @brief The name of @p n as parse_clip_normalize() reads it.
inline const char* clip_normalize_name(ClipNormalize n) { return n == ClipNormalize::imagenet ? "imagenet" : "huggingface"; }

/// @brief CXR-CLIP configuration (defaults = the released ResNet-50 + Bio_ClinicalBERT model).
struct CxrClipConfig {
  nn::ResNetConfig image = nn::ResNetConfig::cxr_clip_resnet50();  ///< image encoder (include_fc must be false)
  nn::BertConfig text = [] {                                        ///< text encoder (Bio_ClinicalBERT: bert-base-cased vocab)
    nn::BertConfig c;
    c.vocab_size = 28996;
    return c;
  }();
  int64_t projection_dim = 512;   ///< `projection_head.proj_dim`
  double temperature = 0.07;      ///< initial logit_scale = log(1/temperature)
  int64_t image_size = 224;       ///< preprocessing side
  int64_t max_length = 256;       ///< tokenizer max_length used by encode_texts()
  /// Pixel normalisation the weights were trained with; the released checkpoints used cxr-clip's default.
  ClipNormalize normalize = ClipNormalize::huggingface;

  /// @brief Throws std::invalid_argument when fields are inconsistent.
  void validate() const {
    image.validate("CxrClipConfig.image");
    text.validate("CxrClipConfig.text");
    if (image.include_fc) throw std::invalid_argument("CxrClipConfig: image.include_fc must be false (CXR-CLIP deletes resnet.fc)");
    if (projection_dim <= 0) throw std::invalid_argument("CxrClipConfig: projection_dim must be > 0");
    if (!(temperature > 0)) throw std::invalid_argument("CxrClipConfig: temperature must be > 0");
    if (image_size < 32) throw std::invalid_argument("CxrClipConfig: image_size must be >= 32");
    if (max_length < 2 || max_length > text.max_position_embeddings)
      throw std::invalid_argument("CxrClipConfig: max_length must be in [2, text.max_position_embeddings]");
  }
};

/// @brief CXR-CLIP's test-time transform of [0, 1] images: resize the shorter side to @p size (bilinear,
/// antialias; torchvision `Resize` on PIL images), center-crop size×size, repeat a gray channel to 3 (cxr-clip
/// opens every image `.convert("RGB")`), then normalise with @p normalize (kakaobrain/cxr-clip
/// `configs/transform/*.yaml` test split and `data_utils.transform_image`).
///
/// Throws std::invalid_argument for a non-4D tensor, channels other than 1 or 3, or values outside [0, 1].
/// @param images [N, 1|3, H, W] in [0, 1]
/// @param size output side (224)
/// @param normalize pixel normalisation of the weights (the released models: huggingface, mean = std = 0.5)
inline torch::Tensor cxr_clip_preprocess(const torch::Tensor& images, int64_t size = 224,
                                         ClipNormalize normalize = ClipNormalize::huggingface) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw std::invalid_argument("cxr_clip_preprocess: expected images [N, 1 or 3, H, W] in [0, 1], got " + c10::str(images.sizes()));
  if (!images.is_floating_point()) throw std::invalid_argument("cxr_clip_preprocess: expected floating images in [0, 1]");
  const double mn = images.min().item<double>(), mx = images.max().item<double>();
  if (mn < -1e-3 || mx > 1.0 + 1e-3 || std::isnan(mn) || std::isnan(mx))
    throw std::invalid_argument("cxr_clip_preprocess: expected values in [0, 1], got [" + std::to_string(mn) + ", " + std::to_string(mx) + "]");
  auto x = images.clamp(0.0, 1.0);
  const auto H = x.size(2), W = x.size(3);
  if (H != size || W != size) {
    const double s = static_cast<double>(size) / static_cast<double>(std::min(H, W));
    const auto nh = std::max<int64_t>(size, static_cast<int64_t>(std::lround(H * s)));
    const auto nw = std::max<int64_t>(size, static_cast<int64_t>(std::lround(W * s)));
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{nh, nw}).mode(torch::kBilinear).align_corners(false).antialias(true));
    x = x.narrow(2, (nh - size) / 2, size).narrow(3, (nw - size) / 2, size);
  }
  if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  if (normalize == ClipNormalize::huggingface) return (x - 0.5) / 0.5;
  auto mean = torch::tensor({0.485, 0.456, 0.406}, x.options()).view({1, 3, 1, 1});
  auto std = torch::tensor({0.229, 0.224, 0.225}, x.options()).view({1, 3, 1, 1});
  return (x - mean) / std;
}

/// @brief Symmetric InfoNCE (CLIP) loss of matched pairs: mean of CE(logits, arange) and CE(logitsᵀ, arange)
/// with `logits = exp(logit_scale) · img · txtᵀ` (Radford et al. 2021; CXR-CLIP's base image-text term).
/// @param image_emb L2-normalised image embeddings [N, D]
/// @param text_emb L2-normalised text embeddings [N, D] (row i matches image i)
/// @param logit_scale log of the inverse temperature (0-d)
inline torch::Tensor clip_contrastive_loss(const torch::Tensor& image_emb, const torch::Tensor& text_emb, const torch::Tensor& logit_scale) {
  if (image_emb.dim() != 2 || image_emb.sizes() != text_emb.sizes())
    throw std::invalid_argument("clip_contrastive_loss: expected matching [N, D] embeddings, got " + c10::str(image_emb.sizes()) + " and " +
                                c10::str(text_emb.sizes()));
  auto logits = logit_scale.exp() * torch::matmul(image_emb, text_emb.t());
  auto labels = torch::arange(image_emb.size(0), torch::TensorOptions().dtype(torch::kLong).device(image_emb.device()));
  return 0.5 * (torch::cross_entropy_loss(logits, labels) + torch::cross_entropy_loss(logits.t(), labels));
}

/// @brief `image_encoder`: holds `resnet` (torchvision resnet50 without fc).
class CxrClipImageEncoderImpl : public torch::nn::Module {
 public:
  /// @param c ResNet configuration (include_fc false)
  explicit CxrClipImageEncoderImpl(const nn::ResNetConfig& c) { resnet = register_module("resnet", nn::ResNet(c)); }
  /// @param x preprocessed images [N, C, H, W] → [N, num_features]
  torch::Tensor forward(const torch::Tensor& x) { return resnet->features(x); }
  nn::ResNet resnet{nullptr};  ///< `image_encoder.resnet.*`
};
TORCH_MODULE(CxrClipImageEncoder);

/// @brief `text_encoder`: holds `text_encoder` (BertModel), returns last_hidden_state.
class CxrClipTextEncoderImpl : public torch::nn::Module {
 public:
  /// @param c BERT configuration
  explicit CxrClipTextEncoderImpl(const nn::BertConfig& c) { text_encoder = register_module("text_encoder", nn::BertModel(c)); }
  /// @param ids [B, L]
  /// @param mask [B, L]
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask) { return text_encoder(ids, mask).last_hidden_state; }
  nn::BertModel text_encoder{nullptr};  ///< `text_encoder.text_encoder.*`
};
TORCH_MODULE(CxrClipTextEncoder);

/// @brief `LinearProjectionHead`: holds `projection` (nn.Linear).
class CxrClipProjectionImpl : public torch::nn::Module {
 public:
  /// @param in input width
  /// @param out projection_dim
  CxrClipProjectionImpl(int64_t in, int64_t out) { projection = register_module("projection", torch::nn::Linear(in, out)); }
  /// @param x [N, in]
  torch::Tensor forward(const torch::Tensor& x) { return projection(x); }
  torch::nn::Linear projection{nullptr};  ///< `*.projection.*`
};
TORCH_MODULE(CxrClipProjection);

/// @brief The CXR-CLIP model.
class CxrClipImpl : public torch::nn::Module {
 public:
  /// @param cfg configuration (validated)
  explicit CxrClipImpl(CxrClipConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    image_encoder = register_module("image_encoder", CxrClipImageEncoder(cfg_.image));
    text_encoder = register_module("text_encoder", CxrClipTextEncoder(cfg_.text));
    image_projection = register_module("image_projection", CxrClipProjection(cfg_.image.num_features(), cfg_.projection_dim));
    text_projection = register_module("text_projection", CxrClipProjection(cfg_.text.hidden_size, cfg_.projection_dim));
    logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / cfg_.temperature)));
  }

  /// @brief Pooled image features before projection [N, 2048] (`encode_image`).
  /// @param pixels preprocessed images [N, C, H, W] (see cxr_clip_preprocess())
  torch::Tensor image_features(const torch::Tensor& pixels) { return image_encoder(pixels); }
  /// @brief Text features at the `[SEP]` position before projection [B, hidden] (`encode_text`, pooling "eos").
  /// @param input_ids [B, L] int64
  /// @param attention_mask [B, L] (each row with at least one 1)
  torch::Tensor text_features(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
    return nn::eos_pool(text_encoder(input_ids, attention_mask), attention_mask);
  }
  /// @brief L2-normalised image embeddings [N, projection_dim].
  /// @param pixels preprocessed images
  torch::Tensor encode_image(const torch::Tensor& pixels) { return normalize(image_projection(image_features(pixels))); }
  /// @brief L2-normalised text embeddings [B, projection_dim].
  /// @param input_ids [B, L] int64
  /// @param attention_mask [B, L]
  torch::Tensor encode_text(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
    return normalize(text_projection(text_features(input_ids, attention_mask)));
  }
  /// @brief Tokenizes and encodes texts (`[CLS] … [SEP]`, truncated to config().max_length, padded to the longest).
  /// @param tok WordPiece tokenizer of the text encoder (Bio_ClinicalBERT: bert-base-cased vocab, lower-casing on)
  /// @param texts reports
  torch::Tensor encode_texts(const text::WordPieceTokenizer& tok, const std::vector<std::string>& texts) {
    auto b = tok.encode_batch(texts, cfg_.max_length, text::Padding::longest);
    const auto dev = logit_scale.device();
    auto ids = torch::tensor(b.input_ids, torch::kLong).view({b.batch, b.length}).to(dev);
    auto mask = torch::tensor(b.attention_mask, torch::kLong).view({b.batch, b.length}).to(dev);
    return encode_text(ids, mask);
  }
  /// @brief Similarity logits `exp(logit_scale) · img · txtᵀ` [N_img, N_txt].
  /// @param image_emb normalised image embeddings
  /// @param text_emb normalised text embeddings
  torch::Tensor logits(const torch::Tensor& image_emb, const torch::Tensor& text_emb) {
    return logit_scale.exp() * torch::matmul(image_emb, text_emb.t());
  }
  /// @brief The configuration.
  const CxrClipConfig& config() const { return cfg_; }

  /// @brief Loads a safetensors copy of the checkpoint's `model` dict strictly (position_ids ignored).
  /// @param path weights file
  /// @param device target device
  void load(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
    auto opt = nn::bert_load_options(path.string());
    io::load_state_dict(*this, io::load_safetensors(path), opt);
    to(device);
  }

  CxrClipImageEncoder image_encoder{nullptr};   ///< `image_encoder.*`
  CxrClipTextEncoder text_encoder{nullptr};     ///< `text_encoder.*`
  CxrClipProjection image_projection{nullptr};  ///< `image_projection.*`
  CxrClipProjection text_projection{nullptr};   ///< `text_projection.*`
  torch::Tensor logit_scale;                    ///< `logit_scale`

 private:
  static torch::Tensor normalize(const torch::Tensor& x) { return x / x.norm(2, 1, true); }
  CxrClipConfig cfg_;
};
TORCH_MODULE(CxrClip);

}  // namespace cxrl::cxr
