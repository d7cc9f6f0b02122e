/// @file
/// @brief CLIP text encoder (transformers 4.30 `CLIPTextModel`), the frozen τθ of Stable Diffusion.
///
/// Keys mirror the transformers checkpoint: `text_model.embeddings.{token,position}_embedding.weight`,
/// `text_model.embeddings.position_ids` (buffer), `text_model.encoder.layers.<i>.{self_attn.{q,k,v,out}_proj,
/// layer_norm1, mlp.fc1, mlp.fc2, layer_norm2}.*`, `text_model.final_layer_norm.*`.
///
/// Semantics (transformers v4.30.2 `models/clip/modeling_clip.py`): pre-LN transformer; queries scaled by
/// head_dim^-1/2; an additive causal mask (finfo.min above the diagonal) to which an optional padding
/// mask ((1 − mask) · finfo.min on the key axis) is added; `final_layer_norm` on the last layer's output.
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/layers.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief Which position `pooler_output` is taken from.
enum class ClipPooling {
  /// transformers ≤ 4.30 (and ≥ 4.31 whenever `eos_token_id == 2`, as in every public SD/CLIP config):
  /// the position of the **largest input id** (first occurrence). For real CLIP this is `<|endoftext|>`
  /// (49407, the largest id); for other vocabularies it may be any token.
  argmax_id,
  /// transformers ≥ 4.31 with `eos_token_id != 2`: the first position of `eos_token_id` (−1/absent → error).
  eos_token,
};

/// @brief `CLIPTextConfig` (transformers field names and defaults).
struct CLIPTextConfig {
  int64_t vocab_size = 49408;              ///< token embedding rows
  int64_t hidden_size = 512;               ///< width d_τ
  int64_t intermediate_size = 2048;        ///< MLP width
  int64_t projection_dim = 512;            ///< unused by CLIPTextModel (kept for round-tripping)
  int64_t num_hidden_layers = 12;          ///< encoder layers
  int64_t num_attention_heads = 8;         ///< heads per layer
  int64_t max_position_embeddings = 77;    ///< position table size (context length)
  Activation hidden_act = Activation::quick_gelu;  ///< config: quick_gelu | gelu | gelu_new | gelu_pytorch_tanh | relu
  double layer_norm_eps = 1e-5;            ///< LayerNorm epsilon
  double attention_dropout = 0.0;          ///< ignored (inference; the frozen encoder never trains)
  int64_t pad_token_id = 1;                ///< config value (the SD tokenizer pads with 49407 regardless)
  int64_t bos_token_id = 49406;            ///< config value
  int64_t eos_token_id = 49407;            ///< used by ClipPooling::eos_token
  ClipPooling pooling = ClipPooling::argmax_id;  ///< not a transformers field; see ClipPooling

  /// @brief Parses a transformers `config.json` (a `CLIPTextConfig`, or a `CLIPConfig` with `text_config`).
  /// @param j0 parsed JSON
  /// @param source file name for error messages
  static CLIPTextConfig from_json(const nlohmann::json& j0, const std::string& source = "config.json") {
    const nlohmann::json& j = j0.contains("text_config") && j0["text_config"].is_object() ? j0["text_config"] : j0;
    CLIPTextConfig c;
    auto get_int = [&](const char* k, int64_t& v) {
      if (!j.contains(k) || j[k].is_null()) return;
      if (!j[k].is_number_integer())
        throw std::invalid_argument(source + ": field '" + k + "' must be an integer, got " + j[k].dump());
      v = j[k].get<int64_t>();
    };
    auto get_num = [&](const char* k, double& v) {
      if (!j.contains(k) || j[k].is_null()) return;
      if (!j[k].is_number()) throw std::invalid_argument(source + ": field '" + k + "' must be a number, got " + j[k].dump());
      v = j[k].get<double>();
    };
    get_int("vocab_size", c.vocab_size);
    get_int("hidden_size", c.hidden_size);
    get_int("intermediate_size", c.intermediate_size);
    get_int("projection_dim", c.projection_dim);
    get_int("num_hidden_layers", c.num_hidden_layers);
    get_int("num_attention_heads", c.num_attention_heads);
    get_int("max_position_embeddings", c.max_position_embeddings);
    get_num("layer_norm_eps", c.layer_norm_eps);
    get_num("attention_dropout", c.attention_dropout);
    get_int("pad_token_id", c.pad_token_id);
    get_int("bos_token_id", c.bos_token_id);
    get_int("eos_token_id", c.eos_token_id);
    if (j.contains("hidden_act")) {
      if (!j["hidden_act"].is_string())
        throw std::invalid_argument(source + ": field 'hidden_act' must be a string, got " + j["hidden_act"].dump());
      const auto name = j["hidden_act"].get<std::string>();
      const auto act = find_activation(name, ActivationNaming::transformers);
      if (!act)
        throw std::invalid_argument(source + ": hidden_act '" + name + "' is not supported (allowed: " +
                                    allowed_activation_names(ActivationNaming::transformers) + ")");
      c.hidden_act = *act;
    }
    c.validate(source);
    return c;
  }

  /// @brief The transformers `config.json` fields of this config (`model_type` "clip_text_model").
  nlohmann::json to_json() const {
    return {{"model_type", "clip_text_model"}, {"architectures", {"CLIPTextModel"}},
            {"vocab_size", vocab_size}, {"hidden_size", hidden_size}, {"intermediate_size", intermediate_size},
            {"projection_dim", projection_dim}, {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads}, {"max_position_embeddings", max_position_embeddings},
            {"hidden_act", std::string(name(hidden_act))}, {"layer_norm_eps", layer_norm_eps}, {"attention_dropout", attention_dropout},
            {"pad_token_id", pad_token_id}, {"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_id}};
  }

  /// @brief Reads `config.json` from a file or a folder.
  /// @param file_or_dir path of config.json or of the folder holding it
  static CLIPTextConfig load(const std::filesystem::path& file_or_dir) {
    const auto p = std::filesystem::is_directory(file_or_dir) ? file_or_dir / "config.json" : file_or_dir;
    std::ifstream in(p);
    if (!in) throw std::invalid_argument(p.string() + ": cannot open CLIP text config");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw std::invalid_argument(p.string() + ": invalid JSON: " + e.what());
    }
    return from_json(j, p.string());
  }

  /// @brief Throws std::invalid_argument naming the bad field.
  /// @param source file name for messages
  void validate(const std::string& source = "CLIPTextConfig") const {
    auto pos = [&](const char* k, int64_t v) {
      if (v <= 0) throw std::invalid_argument(source + ": '" + k + "' must be > 0, got " + std::to_string(v));
    };
    pos("vocab_size", vocab_size);
    pos("hidden_size", hidden_size);
    pos("intermediate_size", intermediate_size);
    pos("num_hidden_layers", num_hidden_layers);
    pos("num_attention_heads", num_attention_heads);
    pos("max_position_embeddings", max_position_embeddings);
    auto at_most = [&](const char* k, int64_t v, int64_t hi) {
      if (v > hi) throw std::invalid_argument(source + ": '" + k + "' is " + std::to_string(v) + ", above " + std::to_string(hi) +
                                              " (a width that size would not fit in memory)");
    };
    at_most("vocab_size", vocab_size, int64_t{1} << 22);
    at_most("hidden_size", hidden_size, int64_t{1} << 16);
    at_most("intermediate_size", intermediate_size, int64_t{1} << 18);
    at_most("num_hidden_layers", num_hidden_layers, 1024);
    at_most("max_position_embeddings", max_position_embeddings, int64_t{1} << 16);
    if (hidden_size % num_attention_heads != 0)
      throw std::invalid_argument(source + ": hidden_size (" + std::to_string(hidden_size) +
                                  ") must be divisible by num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  }
};


/// @brief Token + position embeddings (`text_model.embeddings`).
class CLIPTextEmbeddingsImpl : public torch::nn::Module {
 public:
  /// @brief Creates the tables and the `position_ids` buffer (0..max_pos−1).
  /// @param c configuration
  explicit CLIPTextEmbeddingsImpl(const CLIPTextConfig& c) {
    token_embedding = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    position_embedding =
        register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    position_ids = register_buffer("position_ids", torch::arange(c.max_position_embeddings, torch::kLong).unsqueeze(0));
  }
  /// @brief token_embedding(ids) + position_embedding(position_ids[:, :L]).
  /// @param input_ids [B, L] int64
  torch::Tensor forward(const torch::Tensor& input_ids) {
    const auto L = input_ids.size(-1);
    auto pos = position_ids.index({torch::indexing::Slice(), torch::indexing::Slice(0, L)}).to(torch::kLong);
    return token_embedding(input_ids) + position_embedding(pos);
  }
  torch::nn::Embedding token_embedding{nullptr};     ///< [vocab, hidden]
  torch::nn::Embedding position_embedding{nullptr};  ///< [max_pos, hidden]
  torch::Tensor position_ids;                        ///< I64 [1, max_pos]
};
TORCH_MODULE(CLIPTextEmbeddings);

/// @brief Multi-head self-attention (`self_attn`: q_proj, k_proj, v_proj, out_proj, all with bias).
class CLIPAttentionImpl : public torch::nn::Module {
 public:
  /// @brief Creates the four projections.
  /// @param c configuration
  explicit CLIPAttentionImpl(const CLIPTextConfig& c) : heads_(c.num_attention_heads), dim_(c.hidden_size) {
    k_proj = register_module("k_proj", torch::nn::Linear(dim_, dim_));
    v_proj = register_module("v_proj", torch::nn::Linear(dim_, dim_));
    q_proj = register_module("q_proj", torch::nn::Linear(dim_, dim_));
    out_proj = register_module("out_proj", torch::nn::Linear(dim_, dim_));
  }
  /// @brief softmax(q kᵀ / sqrt(d) + causal_mask + attention_mask) v, then out_proj.
  /// @param x [B, L, D]
  /// @param causal_mask additive [B or 1, 1, L, L]
  /// @param attention_mask additive [B, 1, L, L] or undefined
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask, const torch::Tensor& attention_mask) {
    const auto B = x.size(0), L = x.size(1), hd = dim_ / heads_;
    auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads_, hd}).transpose(1, 2); };
    auto q = split(q_proj(x) * std::pow(static_cast<double>(hd), -0.5));
    auto k = split(k_proj(x));
    auto v = split(v_proj(x));
    auto w = torch::matmul(q, k.transpose(-1, -2));
    if (causal_mask.defined()) w = w + causal_mask;
    if (attention_mask.defined()) w = w + attention_mask;
    w = torch::softmax(w, -1);
    auto o = torch::matmul(w, v).transpose(1, 2).reshape({B, L, dim_});
    return out_proj(o);
  }
  torch::nn::Linear k_proj{nullptr};    ///< key projection
  torch::nn::Linear v_proj{nullptr};    ///< value projection
  torch::nn::Linear q_proj{nullptr};    ///< query projection
  torch::nn::Linear out_proj{nullptr};  ///< output projection

 private:
  int64_t heads_, dim_;
};
TORCH_MODULE(CLIPAttention);

/// @brief Feed-forward `mlp`: fc1 → activation → fc2.
class CLIPMLPImpl : public torch::nn::Module {
 public:
  /// @brief Creates fc1 (hidden→intermediate) and fc2 (intermediate→hidden).
  /// @param c configuration
  explicit CLIPMLPImpl(const CLIPTextConfig& c) : act_(c.hidden_act) {
    fc1 = register_module("fc1", torch::nn::Linear(c.hidden_size, c.intermediate_size));
    fc2 = register_module("fc2", torch::nn::Linear(c.intermediate_size, c.hidden_size));
  }
  /// @brief fc2(act(fc1(x))).
  /// @param x [..., hidden]
  torch::Tensor forward(const torch::Tensor& x) { return fc2(activation(act_, fc1(x))); }
  torch::nn::Linear fc1{nullptr};  ///< up-projection
  torch::nn::Linear fc2{nullptr};  ///< down-projection

 private:
  Activation act_;
};
TORCH_MODULE(CLIPMLP);

/// @brief One pre-LN encoder layer (`encoder.layers.<i>`).
class CLIPEncoderLayerImpl : public torch::nn::Module {
 public:
  /// @brief Creates self_attn, layer_norm1, mlp, layer_norm2.
  /// @param c configuration
  explicit CLIPEncoderLayerImpl(const CLIPTextConfig& c) {
    auto ln = torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps);
    self_attn = register_module("self_attn", CLIPAttention(c));
    layer_norm1 = register_module("layer_norm1", torch::nn::LayerNorm(ln));
    mlp = register_module("mlp", CLIPMLP(c));
    layer_norm2 = register_module("layer_norm2", torch::nn::LayerNorm(ln));
  }
  /// @brief x + attn(ln1(x)), then + mlp(ln2(·)).
  /// @param x [B, L, D]
  /// @param causal_mask additive causal mask
  /// @param attention_mask additive padding mask or undefined
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask, const torch::Tensor& attention_mask) {
    auto h = x + self_attn(layer_norm1(x), causal_mask, attention_mask);
    return h + mlp(layer_norm2(h));
  }
  CLIPAttention self_attn{nullptr};         ///< attention
  torch::nn::LayerNorm layer_norm1{nullptr};  ///< pre-attention norm
  CLIPMLP mlp{nullptr};                     ///< feed-forward
  torch::nn::LayerNorm layer_norm2{nullptr};  ///< pre-MLP norm
};
TORCH_MODULE(CLIPEncoderLayer);

/// @brief The stack of encoder layers (`text_model.encoder`, holding `layers`).
class CLIPEncoderImpl : public torch::nn::Module {
 public:
  /// @brief Creates num_hidden_layers layers.
  /// @param c configuration
  explicit CLIPEncoderImpl(const CLIPTextConfig& c) {
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(CLIPEncoderLayer(c));
  }
  torch::nn::ModuleList layers{nullptr};  ///< CLIPEncoderLayer × num_hidden_layers
};
TORCH_MODULE(CLIPEncoder);

/// @brief Outputs of CLIPTextModel::forward.
struct CLIPTextOutput {
  torch::Tensor last_hidden_state;           ///< [B, L, D] after final_layer_norm
  torch::Tensor pooler_output;               ///< [B, D] at pooler_index
  torch::Tensor pooler_index;                ///< I64 [B], the pooled position
  std::vector<torch::Tensor> hidden_states;  ///< when requested: [0] embeddings, [i] output of layer i (pre final LN)
};

/// @brief `text_model` (CLIPTextTransformer): embeddings, encoder, final_layer_norm.
class CLIPTextTransformerImpl : public torch::nn::Module {
 public:
  /// @brief Creates the submodules.
  /// @param c configuration
  explicit CLIPTextTransformerImpl(const CLIPTextConfig& c) : config(c) {
    embeddings = register_module("embeddings", CLIPTextEmbeddings(c));
    encoder = register_module("encoder", CLIPEncoder(c));
    final_layer_norm = register_module(
        "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  }
  CLIPTextConfig config;                           ///< configuration
  CLIPTextEmbeddings embeddings{nullptr};          ///< token + position embeddings
  CLIPEncoder encoder{nullptr};                    ///< transformer layers
  torch::nn::LayerNorm final_layer_norm{nullptr};  ///< applied to the last layer output
};
TORCH_MODULE(CLIPTextTransformer);

/// @brief `torch.finfo(dtype).min`, the value transformers uses for masked attention logits.
/// @param dtype floating dtype
inline double finfo_min(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat64: return std::numeric_limits<double>::lowest();
    case torch::kFloat16: return -65504.0;
    case torch::kBFloat16: return -3.3895313892515355e38;
    default: return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

/// @brief The causal mask of transformers 4.30 `_build_causal_attention_mask`: 0 on and below the diagonal,
/// finfo(dtype).min above, shape [B, 1, L, L].
/// @param B batch size
/// @param L sequence length
/// @param opts dtype/device
inline torch::Tensor clip_causal_mask(int64_t B, int64_t L, const torch::TensorOptions& opts) {
  auto m = torch::full({L, L}, finfo_min(opts.dtype().toScalarType()), opts).triu(1);
  return m.unsqueeze(0).unsqueeze(0).expand({B, 1, L, L});
}

/// @brief Moves @p m to @p device and casts only its floating parameters and buffers to @p dtype
/// (`Module::to(dtype)` would also cast integer buffers such as `position_ids`).
/// @param m module
/// @param device target device
/// @param dtype target floating dtype
inline void to_device_dtype(torch::nn::Module& m, torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard ng;
  for (auto& p : m.parameters(true)) p.set_data(p.is_floating_point() ? p.to(device, dtype) : p.to(device));
  for (auto& b : m.buffers(true)) b.set_data(b.is_floating_point() ? b.to(device, dtype) : b.to(device));
}

/// @brief transformers `CLIPTextModel`: the whole model lives under the `text_model.` key prefix.
class CLIPTextModelImpl : public torch::nn::Module {
 public:
  /// @brief Builds the model with PyTorch default initialisation (load weights with load_state_dict).
  /// @param c configuration (validated)
  explicit CLIPTextModelImpl(const CLIPTextConfig& c) : config(c) {
    c.validate();
    text_model = register_module("text_model", CLIPTextTransformer(c));
  }

  /// @brief Runs the encoder.
  /// @param input_ids [B, L] int64 token ids, L ≤ max_position_embeddings
  /// @param attention_mask optional [B, L] (1 = attend, 0 = padding); SD v1 pipelines pass none
  /// @param output_hidden_states also return the embeddings and every layer's output
  CLIPTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         bool output_hidden_states = false) {
    if (input_ids.dim() != 2)
      throw std::invalid_argument("CLIPTextModel: input_ids must be [B, L], got " + std::to_string(input_ids.dim()) + "-d");
    const auto B = input_ids.size(0), L = input_ids.size(1);
    if (L > config.max_position_embeddings || L < 1)
      throw std::invalid_argument("CLIPTextModel: sequence length " + std::to_string(L) + " outside [1, " +
                                  std::to_string(config.max_position_embeddings) + "]");
    auto ids = input_ids.to(torch::kLong);
    auto h = text_model->embeddings(ids);
    const auto opts = h.options();
    auto causal = clip_causal_mask(B, L, opts);
    torch::Tensor pad;
    if (attention_mask.defined()) {
      if (attention_mask.sizes() != input_ids.sizes())
        throw std::invalid_argument("CLIPTextModel: attention_mask must have the shape of input_ids [B, L]");
      // transformers _expand_mask: (1 − mask) filled with finfo.min where nonzero, broadcast over queries.
      auto inv = 1.0 - attention_mask.to(opts.dtype()).index({torch::indexing::Slice(), torch::indexing::None,
                                                                torch::indexing::None, torch::indexing::Slice()});
      inv = inv.expand({B, 1, L, L});
      pad = inv.masked_fill(inv.to(torch::kBool), finfo_min(opts.dtype().toScalarType()));
    }
    CLIPTextOutput out;
    if (output_hidden_states) out.hidden_states.push_back(h);
    for (const auto& layer : *text_model->encoder->layers) {
      h = layer->as<CLIPEncoderLayer>()->forward(h, causal, pad);
      if (output_hidden_states) out.hidden_states.push_back(h);
    }
    out.last_hidden_state = text_model->final_layer_norm(h);
    out.pooler_index = pooling_index(ids);
    out.pooler_output = out.last_hidden_state.index({torch::arange(B, ids.options()), out.pooler_index});
    return out;
  }

  /// @brief The pooled position per row under `config.pooling`.
  ///
  /// argmax_id (transformers 4.30): `input_ids.to(int32).argmax(-1)`, the first position of the largest id.
  /// eos_token: the first position of `config.eos_token_id`; throws if a row has none.
  /// @param input_ids [B, L]
  torch::Tensor pooling_index(const torch::Tensor& input_ids) const {
    const auto L = input_ids.size(1);
    auto rank = torch::arange(L, 0, -1, input_ids.options().dtype(torch::kLong));  // L..1: earlier wins ties
    if (config.pooling == ClipPooling::argmax_id) {
      auto mx = std::get<0>(input_ids.max(-1, /*keepdim=*/true));
      return ((input_ids == mx).to(torch::kLong) * rank).argmax(-1);
    }
    auto hit = (input_ids == config.eos_token_id).to(torch::kLong);
    if (!hit.any(-1).all().item<bool>())
      throw std::invalid_argument("CLIPTextModel: pooling=eos_token but a row has no eos_token_id " +
                                  std::to_string(config.eos_token_id));
    return (hit * rank).argmax(-1);
  }

  /// @brief First position of @p token in each row, −1 where absent.
  /// @param input_ids [B, L]
  /// @param token id to find
  static torch::Tensor first_position(const torch::Tensor& input_ids, int64_t token) {
    const auto L = input_ids.size(1);
    auto rank = torch::arange(L, 0, -1, input_ids.options().dtype(torch::kLong));
    auto hit = (input_ids == token).to(torch::kLong);
    auto idx = (hit * rank).argmax(-1);
    return torch::where(hit.any(-1), idx, torch::full_like(idx, -1));
  }

  CLIPTextConfig config;                 ///< configuration
  CLIPTextTransformer text_model{nullptr};  ///< the transformer (key prefix `text_model.`)
};
TORCH_MODULE(CLIPTextModel);

/// @brief Loads transformer weights strictly into @p model. A checkpoint without
/// `text_model.embeddings.position_ids` (transformers ≥ 4.31) gets the default 0..L−1; one with it (4.30)
/// uses the stored values, as transformers does.
/// @param model destination
/// @param sd checkpoint tensors
/// @param source file name for messages
inline void load_clip_text_weights(CLIPTextModel& model, io::TensorMap sd, const std::string& source) {
  const std::string pid = "text_model.embeddings.position_ids";
  if (!sd.count(pid)) sd.emplace(pid, model->text_model->embeddings->position_ids.detach().clone());
  io::LoadOptions o;
  o.source = source;
  io::load_state_dict(*model, sd, o);
}

/// @brief Loads a transformers text-encoder folder: `config.json` + `model.safetensors` (or a sharded
/// `model.safetensors.index.json`).
/// @param dir folder (e.g. the `text_encoder/` of a diffusers pipeline)
/// @param device target device
/// @param dtype target floating dtype
inline CLIPTextModel clip_text_model_from_pretrained(const std::filesystem::path& dir,
                                                     torch::Device device = torch::kCPU,
                                                     torch::ScalarType dtype = torch::kFloat32) {
  if (!std::filesystem::exists(dir / "config.json"))
    throw io::CheckpointError((dir / "config.json").string() + ": not found (a CLIP text encoder folder needs config.json)");
  auto cfg = CLIPTextConfig::load(dir / "config.json");
  std::filesystem::path weights = dir / "model.safetensors";
  if (!std::filesystem::exists(weights)) weights = dir / "model.safetensors.index.json";
  if (!std::filesystem::exists(weights))
    throw io::CheckpointError(dir.string() + ": neither model.safetensors nor model.safetensors.index.json found "
                              "(only safetensors weights are supported; convert pytorch_model.bin first)");
  CLIPTextModel m(cfg);
  load_clip_text_weights(m, io::load_safetensors(weights), weights.string());
  to_device_dtype(*m, device, dtype);
  m->eval();
  return m;
}

}  // namespace cxrl::nn
