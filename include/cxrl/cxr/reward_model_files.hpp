/// @file
/// @brief Reward-model files: a weights file plus an optional JSON sidecar of the same stem that describes the
///        architecture (native safetensors) or the input and outputs (TorchScript `.pt`).
///
/// - `name.safetensors` (+ `name.json`): a native model in the key layout of its real checkpoint. Without a
///   sidecar the released architecture is assumed: DenseNet-121 at 224 px (torchxrayvision
///   `densenet121-res224-all`), CXR-CLIP ResNet-50 + Bio_ClinicalBERT, a ResNet-18 PostureNet at 224 px.
/// - `name.pt` (+ `name.json`): any `torch.jit.trace`d model, used through the nn/model_concepts.hpp interfaces.
///   Without a sidecar: a posture net takes 1 channel at 224 px in [0, 1]; a classifier takes torchxrayvision's
///   input (1 channel, 224 px, [−1024, 1024]) and returns logits for the 18 xrv pathologies; a dual encoder
///   takes cxr-clip's input (224 px, 3 channels, mean = std = 0.5) and a WordPiece text of at most 256 tokens.
///
/// Every error names the file, the key and what was expected. The writers (save_*_sidecar) are what the
/// phantom world's training (cxr/reward_training.hpp) uses, so its files load here unchanged.
#pragma once

#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/cxr/reward_models.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/torchscript.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::cxr {

namespace files_detail {

/// The JSON object next to @p weights (same stem, `.json`), if present; `__path` holds its path.
inline std::optional<nlohmann::json> read_sidecar(const std::filesystem::path& weights) {
  auto p = weights;
  p.replace_extension(".json");
  if (!std::filesystem::exists(p)) return std::nullopt;
  std::ifstream in(p);
  try {
    auto j = nlohmann::json::parse(in);
    if (!j.is_object()) throw std::invalid_argument("expected a JSON object");
    j["__path"] = p.string();
    return j;
  } catch (const std::exception& e) {
    throw std::invalid_argument(p.string() + ": not a valid model description: " + e.what());
  }
}

/// j[key] as T, with an error naming the file and the key.
template <class T>
T field(const nlohmann::json& j, const std::string& key) {
  const std::string src = j.value("__path", std::string("sidecar"));
  if (!j.contains(key)) throw std::invalid_argument(src + ": missing key '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception& e) {
    throw std::invalid_argument(src + ": key '" + key + "' has the wrong type: " + e.what());
  }
}

/// j[key] as T, or @p fallback when absent.
template <class T>
T field_or(const nlohmann::json& j, const std::string& key, T fallback) {
  return j.contains(key) ? field<T>(j, key) : fallback;
}

/// A sub-object that keeps the file name for messages.
inline nlohmann::json sub(const nlohmann::json& j, const std::string& key) {
  auto s = field<nlohmann::json>(j, key);
  if (!s.is_object()) throw std::invalid_argument(j.value("__path", std::string("sidecar")) + ": key '" + key + "' must be an object");
  s["__path"] = j.value("__path", std::string("sidecar"));
  return s;
}

inline ImageInput image_input(const nlohmann::json& j, ImageInput d) {
  d.channels = field_or<int64_t>(j, "in_channels", d.channels);
  d.size = field_or<int64_t>(j, "image_size", d.size);
  if (j.contains("input_range")) {
    const auto r = field<std::vector<double>>(j, "input_range");
    if (r.size() != 2) throw std::invalid_argument(j.value("__path", std::string("sidecar")) + ": key 'input_range' must be [lo, hi]");
    d.lo = r[0];
    d.hi = r[1];
  }
  if (d.channels != 1 && d.channels != 3)
    throw std::invalid_argument(j.value("__path", std::string("sidecar")) + ": key 'in_channels' must be 1 or 3");
  if (d.size < 8) throw std::invalid_argument(j.value("__path", std::string("sidecar")) + ": key 'image_size' must be >= 8");
  return d;
}

inline bool is_torchscript(const std::filesystem::path& p) { return p.extension() == ".pt" || p.extension() == ".pth"; }

inline void need_file(const std::filesystem::path& p, const std::string& what) {
  if (!std::filesystem::is_regular_file(p)) throw io::CheckpointError(what + " not found: " + p.string());
}

using io::write_json;

}  // namespace files_detail

/// @brief The PostureNet architecture in @p weights' sidecar (or the released ResNet-18 at 224 px).
/// @param weights a `.safetensors` file
inline PostureNetConfig posture_net_config_of(const std::filesystem::path& weights) {
  using namespace files_detail;
  PostureNetConfig c;
  if (auto j = read_sidecar(weights)) {
    c.width = field<int64_t>(*j, "width");
    c.layers = field<std::vector<int64_t>>(*j, "layers");
    c.in_channels = field<int64_t>(*j, "in_channels");
    c.image_size = field<int64_t>(*j, "image_size");
  }
  return c;
}

/// @brief Writes the sidecar that posture_net_config_of() reads. @param weights the `.safetensors` path @param c architecture
inline void save_posture_net_sidecar(const std::filesystem::path& weights, const PostureNetConfig& c) {
  auto p = weights;
  p.replace_extension(".json");
  files_detail::write_json(p, {{"width", c.width}, {"layers", c.layers}, {"in_channels", c.in_channels}, {"image_size", c.image_size}});
}

/// @brief A posture model from a file: a native PostureNet (`.safetensors`) or a traced one (`.pt`, returning ψ [B, 5]).
/// @param path the weights
/// @param device model device
inline AnyPostureModel load_posture_model(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
  using namespace files_detail;
  need_file(path, "posture model");
  if (is_torchscript(path)) {
    const auto in = image_input(read_sidecar(path).value_or(nlohmann::json::object()), ImageInput{1, 224, 0.0, 1.0});
    return PostureFromClassifier<nn::TorchScriptClassifier>(nn::TorchScriptClassifier::load(path, device), in);
  }
  return PostureNetModel(load_posture_net(path, posture_net_config_of(path), device));
}

/// @brief A native torchxrayvision DenseNet with the architecture of its sidecar (or DenseNet-121 at 224 px).
/// @param path `.safetensors` weights (`op_threshs` optional)
/// @param device model device
inline XrvDenseNet load_xrv_densenet_file(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
  using namespace files_detail;
  need_file(path, "torchxrayvision DenseNet weights");
  if (is_torchscript(path))
    throw std::invalid_argument(path.string() + ": a TorchScript classifier has no DenseNet features; this use needs the native "
                                "DenseNet weights as .safetensors (see cxr/xrv_densenet.hpp)");
  auto c = nn::DenseNetConfig::densenet121(1, static_cast<int64_t>(kXrvPathologies.size()));
  int64_t resolution = 224;
  if (auto j = read_sidecar(path)) {
    c.growth_rate = field<int64_t>(*j, "growth_rate");
    c.block_config = field<std::vector<int64_t>>(*j, "block_config");
    c.num_init_features = field<int64_t>(*j, "num_init_features");
    c.bn_size = field<int64_t>(*j, "bn_size");
    c.num_classes = field<int64_t>(*j, "num_classes");
    c.in_channels = field<int64_t>(*j, "in_channels");
    resolution = field<int64_t>(*j, "resolution");
  }
  return XrvDenseNet::load(path, c, device, resolution);
}

/// @brief Writes the sidecar that load_xrv_densenet_file() reads. @param weights `.safetensors` path @param m the classifier
inline void save_xrv_densenet_sidecar(const std::filesystem::path& weights, XrvDenseNet& m) {
  const auto& c = m.model()->config();
  auto p = weights;
  p.replace_extension(".json");
  files_detail::write_json(p, {{"growth_rate", c.growth_rate}, {"block_config", c.block_config}, {"num_init_features", c.num_init_features},
                               {"bn_size", c.bn_size}, {"drop_rate", c.drop_rate}, {"num_classes", c.num_classes},
                               {"in_channels", c.in_channels}, {"resolution", m.resolution()}, {"pathologies", m.pathologies()}});
}

/// @brief A finding classifier from a file: a native xrv DenseNet (`.safetensors`) or a traced classifier (`.pt`;
///        sidecar keys `outputs`, `in_channels`, `image_size`, `input_range`, `apply_sigmoid`).
/// @param path the weights
/// @param device model device
inline AnyFindingClassifier load_finding_classifier(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
  using namespace files_detail;
  need_file(path, "diagnostic classifier");
  if (!is_torchscript(path)) return load_xrv_densenet_file(path, device);
  const auto j = read_sidecar(path).value_or(nlohmann::json::object());
  std::vector<std::string> outputs(kXrvPathologies.begin(), kXrvPathologies.end());
  outputs = field_or(j, "outputs", outputs);
  return FindingsFromClassifier<nn::TorchScriptClassifier>(nn::TorchScriptClassifier::load(path, device),
                                                          image_input(j, ImageInput{1, 224, -1024.0, 1024.0}), outputs,
                                                          field_or(j, "apply_sigmoid", true));
}

/// @brief The CXR-CLIP architecture in @p weights' sidecar (or the released ResNet-50 + Bio_ClinicalBERT).
/// @param weights a `.safetensors` file
inline CxrClipConfig cxr_clip_config_of(const std::filesystem::path& weights) {
  using namespace files_detail;
  CxrClipConfig c;
  auto j = read_sidecar(weights);
  if (!j) return c;
  const auto ji = sub(*j, "image"), jt = sub(*j, "text");
  const auto block = field<std::string>(ji, "block");
  if (block != "Bottleneck" && block != "BasicBlock")
    throw std::invalid_argument(j->value("__path", std::string()) + ": key 'image.block' must be \"BasicBlock\" or \"Bottleneck\", got \"" +
                                block + "\"");
  c.image = block == "Bottleneck" ? nn::ResNetConfig::resnet50() : nn::ResNetConfig::resnet18();
  c.image.layers = field<std::vector<int64_t>>(ji, "layers");
  c.image.in_channels = field<int64_t>(ji, "in_channels");
  c.image.width = field<int64_t>(ji, "width");
  c.image.include_fc = false;
  c.text.vocab_size = field<int64_t>(jt, "vocab_size");
  c.text.hidden_size = field<int64_t>(jt, "hidden_size");
  c.text.num_hidden_layers = field<int64_t>(jt, "num_hidden_layers");
  c.text.num_attention_heads = field<int64_t>(jt, "num_attention_heads");
  c.text.intermediate_size = field<int64_t>(jt, "intermediate_size");
  c.text.max_position_embeddings = field<int64_t>(jt, "max_position_embeddings");
  c.projection_dim = field<int64_t>(*j, "projection_dim");
  c.image_size = field<int64_t>(*j, "image_size");
  c.max_length = field<int64_t>(*j, "max_length");
  c.normalize = parse_clip_normalize(field_or<std::string>(*j, "normalize", "huggingface"),
                                     j->value("__path", std::string()) + ": key 'normalize'");
  return c;
}

/// @brief Writes the sidecar that cxr_clip_config_of() reads. @param weights `.safetensors` path @param c architecture
inline void save_cxr_clip_sidecar(const std::filesystem::path& weights, const CxrClipConfig& c) {
  auto p = weights;
  p.replace_extension(".json");
  const bool bottleneck = c.image.block == nn::ResNetBlock::bottleneck;
  files_detail::write_json(
      p, {{"image", {{"block", bottleneck ? "Bottleneck" : "BasicBlock"}, {"layers", c.image.layers}, {"in_channels", c.image.in_channels},
                     {"width", c.image.width}, {"include_fc", false}}},
          {"text", {{"vocab_size", c.text.vocab_size}, {"hidden_size", c.text.hidden_size}, {"num_hidden_layers", c.text.num_hidden_layers},
                    {"num_attention_heads", c.text.num_attention_heads}, {"intermediate_size", c.text.intermediate_size},
                    {"max_position_embeddings", c.text.max_position_embeddings}}},
          {"projection_dim", c.projection_dim}, {"image_size", c.image_size}, {"max_length", c.max_length},
          {"normalize", clip_normalize_name(c.normalize)},
          {"tokenizer", {{"vocab", "bert-base-cased vocab.txt"}, {"do_lower_case", true}}}});
}

/// @brief Bio_ClinicalBERT's tokenizer as CXR-CLIP loads it: lower-casing on (transformers' BertTokenizer
///        default, which CXR-CLIP does not override). @param vocab `vocab.txt`
inline text::WordPieceTokenizer cxr_clip_tokenizer(const std::filesystem::path& vocab) {
  text::WordPieceConfig wc;
  wc.do_lower_case = true;
  return text::WordPieceTokenizer::from_file(vocab, wc);
}

/// @brief A native CXR-CLIP with the architecture of its sidecar. @param path `.safetensors` @param device model device
inline CxrClip load_cxr_clip_file(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
  files_detail::need_file(path, "CXR-CLIP weights");
  CxrClip model(cxr_clip_config_of(path));
  model->load(path, device);
  return model;
}

/// @brief A report/image embedder from a file: a native CXR-CLIP (`.safetensors`) or a dual encoder traced with
///        `encode_image` and `encode_text` (`.pt`; sidecar keys `image_size`, `normalize`, `max_length`, `in_channels`).
/// @param path the weights
/// @param vocab WordPiece `vocab.txt` of the text encoder
/// @param device model device
inline AnyReportEmbedder load_report_embedder(const std::filesystem::path& path, const std::filesystem::path& vocab,
                                              torch::Device device = torch::kCPU) {
  using namespace files_detail;
  need_file(path, "CXR-CLIP model");
  need_file(vocab, "CXR-CLIP WordPiece vocab");
  if (!is_torchscript(path)) return CxrClipEmbedder(load_cxr_clip_file(path, device), cxr_clip_tokenizer(vocab));
  const auto j = read_sidecar(path).value_or(nlohmann::json::object());
  ClipInput in;
  in.image_size = field_or<int64_t>(j, "image_size", in.image_size);
  in.max_length = field_or<int64_t>(j, "max_length", in.max_length);
  in.normalize = parse_clip_normalize(field_or<std::string>(j, "normalize", "huggingface"), path.string() + " sidecar: key 'normalize'");
  in.channels = field_or<int64_t>(j, "in_channels", in.channels);
  if (in.channels != 1 && in.channels != 3) throw std::invalid_argument(path.string() + " sidecar: key 'in_channels' must be 1 or 3");
  return ReportsFromEmbedder<nn::TorchScriptEmbedder>(nn::TorchScriptEmbedder::load(path, device), cxr_clip_tokenizer(vocab), in);
}

}  // namespace cxrl::cxr
