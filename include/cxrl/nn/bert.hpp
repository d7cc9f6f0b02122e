/// @file
/// @brief BERT encoder with the Hugging Face transformers `BertModel` module tree and keys.
///
/// Devlin et al., "BERT" (NAACL 2019); numerics follow transformers v4.31 `modeling_bert.py` (eager attention):
/// embeddings = LayerNorm(word + token_type + position); scores = QK^T/sqrt(d_head) + (1 - mask)·finfo(float).min;
/// exact erf GELU; LayerNorm eps from the config (1e-12); pooler = tanh(dense(h[:, 0])).
/// Keys: `embeddings.{word,position,token_type}_embeddings`, `embeddings.LayerNorm`,
/// `encoder.layer.{i}.attention.self.{query,key,value}`, `encoder.layer.{i}.attention.output.{dense,LayerNorm}`,
/// `encoder.layer.{i}.intermediate.dense`, `encoder.layer.{i}.output.{dense,LayerNorm}`, `pooler.dense`.
/// `embeddings.position_ids` is not a parameter here; checkpoints that carry it are loaded with
/// bert_load_options() which ignores it.
#pragma once

#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/layers.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief transformers `BertConfig` fields used by the encoder (names and defaults of bert-base).
struct BertConfig {
  int64_t vocab_size = 30522;              ///< word embedding rows
  int64_t hidden_size = 768;               ///< model width
  int64_t num_hidden_layers = 12;          ///< encoder layers
  int64_t num_attention_heads = 12;        ///< heads (must divide hidden_size)
  int64_t intermediate_size = 3072;        ///< FFN width
  Activation hidden_act = Activation::gelu;  ///< config: a transformers name ("gelu" = exact erf form)
  double hidden_dropout_prob = 0.1;        ///< dropout on sub-layer outputs (training only)
  double attention_probs_dropout_prob = 0.1;  ///< dropout on attention weights (training only)
  int64_t max_position_embeddings = 512;   ///< position embedding rows
  int64_t type_vocab_size = 2;             ///< token type rows
  double layer_norm_eps = 1e-12;           ///< LayerNorm epsilon
  int64_t pad_token_id = 0;                ///< padding id (informational; the padding row is a normal row)
  bool add_pooling_layer = true;           ///< register `pooler.dense`

  /// @brief Reads a transformers `config.json` (flat) or a fixture config holding "bert_config_full".
  /// @param json the object
  /// @param source file name used in error messages
  static BertConfig from_json(const nlohmann::json& json, const std::string& source = "config.json") {
    const nlohmann::json& j = json.contains("bert_config_full") ? json.at("bert_config_full") : json;
    BertConfig c;
    try {
      c.vocab_size = j.value("vocab_size", c.vocab_size);
      c.hidden_size = j.value("hidden_size", c.hidden_size);
      c.num_hidden_layers = j.value("num_hidden_layers", c.num_hidden_layers);
      c.num_attention_heads = j.value("num_attention_heads", c.num_attention_heads);
      c.intermediate_size = j.value("intermediate_size", c.intermediate_size);
      if (j.contains("hidden_act")) {
        const auto name = j.at("hidden_act").get<std::string>();
        const auto act = find_activation(name, ActivationNaming::transformers);
        if (!act)
          throw std::invalid_argument(source + ": hidden_act '" + name + "' is not one of " +
                                      allowed_activation_names(ActivationNaming::transformers));
        c.hidden_act = *act;
      }
      c.hidden_dropout_prob = j.value("hidden_dropout_prob", c.hidden_dropout_prob);
      c.attention_probs_dropout_prob = j.value("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
      c.max_position_embeddings = j.value("max_position_embeddings", c.max_position_embeddings);
      c.type_vocab_size = j.value("type_vocab_size", c.type_vocab_size);
      c.layer_norm_eps = j.value("layer_norm_eps", c.layer_norm_eps);
      if (j.contains("pad_token_id") && !j.at("pad_token_id").is_null()) c.pad_token_id = j.at("pad_token_id").get<int64_t>();
      if (j.contains("position_embedding_type") && j.at("position_embedding_type") != "absolute")
        throw std::invalid_argument(source + ": position_embedding_type '" + j.at("position_embedding_type").get<std::string>() +
                                    "' is not supported (only \"absolute\")");
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(source + ": invalid BERT config: " + e.what());
    }
    c.validate(source);
    return c;
  }

  /// @brief Throws std::invalid_argument naming the first bad field.
  /// @param source name used in the message
  void validate(const std::string& source = "BertConfig") const {
    auto need = [&](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument(source + ": " + what);
    };
    need(vocab_size > 0 && hidden_size > 0 && num_hidden_layers >= 0 && intermediate_size > 0,
         "vocab_size, hidden_size, intermediate_size must be > 0 and num_hidden_layers >= 0");
    need(num_attention_heads > 0 && hidden_size % num_attention_heads == 0,
         "hidden_size (" + std::to_string(hidden_size) + ") must be a multiple of num_attention_heads (" +
             std::to_string(num_attention_heads) + ")");
    need(max_position_embeddings > 0 && type_vocab_size > 0, "max_position_embeddings and type_vocab_size must be > 0");
  }
};

/// @brief Word + position + token-type embeddings, LayerNorm, dropout.
class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  /// @param c configuration
  explicit BertEmbeddingsImpl(const BertConfig& c) : dropout_(c.hidden_dropout_prob) {
    word_embeddings = register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    position_embeddings = register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    token_type_embeddings = register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
    LayerNorm = register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  }
  /// @param input_ids [B, L] int64
  /// @param token_type_ids [B, L] int64
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
    const auto L = input_ids.size(1);
    auto pos = torch::arange(L, input_ids.options().dtype(torch::kLong)).unsqueeze(0);
    auto e = word_embeddings(input_ids) + token_type_embeddings(token_type_ids) + position_embeddings(pos);
    return torch::dropout(LayerNorm(e), dropout_, is_training());
  }
  torch::nn::Embedding word_embeddings{nullptr};        ///< token rows
  torch::nn::Embedding position_embeddings{nullptr};    ///< absolute positions
  torch::nn::Embedding token_type_embeddings{nullptr};  ///< segment rows
  torch::nn::LayerNorm LayerNorm{nullptr};              ///< transformers spells it `LayerNorm`

 private:
  double dropout_;
};
TORCH_MODULE(BertEmbeddings);

/// @brief Multi-head self-attention projections (`attention.self`).
class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  /// @param c configuration
  explicit BertSelfAttentionImpl(const BertConfig& c)
      : heads_(c.num_attention_heads), head_dim_(c.hidden_size / c.num_attention_heads), dropout_(c.attention_probs_dropout_prob) {
    query = register_module("query", torch::nn::Linear(c.hidden_size, c.hidden_size));
    key = register_module("key", torch::nn::Linear(c.hidden_size, c.hidden_size));
    value = register_module("value", torch::nn::Linear(c.hidden_size, c.hidden_size));
  }
  /// @param h hidden states [B, L, H]
  /// @param additive_mask [B, 1, 1, L] added to the scores (0 or finfo.min)
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& additive_mask) {
    const auto B = h.size(0), L = h.size(1);
    auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads_, head_dim_}).transpose(1, 2); };
    auto q = split(query(h)), k = split(key(h)), v = split(value(h));
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_dim_));
    if (additive_mask.defined()) scores = scores + additive_mask;
    auto probs = torch::dropout(torch::softmax(scores, -1), dropout_, is_training());
    return torch::matmul(probs, v).transpose(1, 2).reshape({B, L, heads_ * head_dim_});
  }
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};  ///< projections

 private:
  int64_t heads_, head_dim_;
  double dropout_;
};
TORCH_MODULE(BertSelfAttention);

/// @brief dense → dropout → LayerNorm(· + residual): `attention.output` and `output` share this shape.
class BertResidualOutputImpl : public torch::nn::Module {
 public:
  /// @param in input width of `dense`
  /// @param c configuration (hidden_size, eps, dropout)
  BertResidualOutputImpl(int64_t in, const BertConfig& c) : dropout_(c.hidden_dropout_prob) {
    dense = register_module("dense", torch::nn::Linear(in, c.hidden_size));
    LayerNorm = register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  }
  /// @param x sub-layer output
  /// @param residual sub-layer input
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual) {
    return LayerNorm(torch::dropout(dense(x), dropout_, is_training()) + residual);
  }
  torch::nn::Linear dense{nullptr};          ///< projection
  torch::nn::LayerNorm LayerNorm{nullptr};   ///< post-LN

 private:
  double dropout_;
};
TORCH_MODULE(BertResidualOutput);

/// @brief `attention` = `self` + `output`.
class BertAttentionImpl : public torch::nn::Module {
 public:
  /// @param c configuration
  explicit BertAttentionImpl(const BertConfig& c) {
    self = register_module("self", BertSelfAttention(c));
    output = register_module("output", BertResidualOutput(c.hidden_size, c));
  }
  /// @param h hidden states [B, L, H]
  /// @param additive_mask [B, 1, 1, L]
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& additive_mask) { return output(self(h, additive_mask), h); }
  BertSelfAttention self{nullptr};     ///< Q/K/V
  BertResidualOutput output{nullptr};  ///< out projection + LN
};
TORCH_MODULE(BertAttention);

/// @brief One encoder layer: attention, then the GELU feed-forward (`intermediate` + `output`).
class BertLayerImpl : public torch::nn::Module {
 public:
  /// @param c configuration
  explicit BertLayerImpl(const BertConfig& c) : act_(c.hidden_act) {
    attention = register_module("attention", BertAttention(c));
    intermediate = register_module("intermediate", std::make_shared<torch::nn::Module>());
    intermediate_dense = intermediate->register_module("dense", torch::nn::Linear(c.hidden_size, c.intermediate_size));
    output = register_module("output", BertResidualOutput(c.intermediate_size, c));
  }
  /// @param h hidden states [B, L, H]
  /// @param additive_mask [B, 1, 1, L]
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& additive_mask) {
    auto a = attention(h, additive_mask);
    return output(activation(act_, intermediate_dense(a)), a);
  }
  BertAttention attention{nullptr};               ///< self-attention block
  std::shared_ptr<torch::nn::Module> intermediate;  ///< holds `dense` (key `intermediate.dense`)
  torch::nn::Linear intermediate_dense{nullptr};  ///< hidden → intermediate
  BertResidualOutput output{nullptr};             ///< intermediate → hidden + LN

 private:
  Activation act_;
};
TORCH_MODULE(BertLayer);

/// @brief Outputs of BertModel::forward (transformers `BaseModelOutputWithPoolingAndCrossAttentions`).
struct BertOutput {
  torch::Tensor last_hidden_state;            ///< [B, L, H]
  torch::Tensor pooler_output;                ///< [B, H] (undefined without a pooler)
  std::vector<torch::Tensor> hidden_states;   ///< [0] = embeddings, [k] = output of layer k-1
};

/// @brief Builds the additive attention mask: `(1 - mask)[:, None, None, :] * finfo(dtype).min`.
/// @param attention_mask [B, L] of 0/1 (any integer or float dtype)
/// @param dtype dtype of the scores
inline torch::Tensor bert_additive_mask(const torch::Tensor& attention_mask, torch::ScalarType dtype) {
  double lowest = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "bert_additive_mask",
                                  [&] { lowest = static_cast<double>(std::numeric_limits<scalar_t>::lowest()); });
  auto m = attention_mask.to(dtype).unsqueeze(1).unsqueeze(2);
  return (1.0 - m) * lowest;
}

/// @brief Hidden state at the last unmasked position `attention_mask.sum(-1) - 1` (the `[SEP]` token),
/// CXR-CLIP's `text_pooling="eos"`.
/// @param hidden [B, L, H]
/// @param attention_mask [B, L]
inline torch::Tensor eos_pool(const torch::Tensor& hidden, const torch::Tensor& attention_mask) {
  auto idx = attention_mask.sum(-1).to(torch::kLong) - 1;
  if (idx.lt(0).any().item<bool>()) throw std::invalid_argument("eos_pool: a row of attention_mask is all zeros");
  return hidden.index({torch::arange(hidden.size(0), idx.options()), idx});
}

/// @brief transformers `BertModel`: embeddings, encoder, optional pooler.
class BertModelImpl : public torch::nn::Module {
 public:
  /// @param cfg configuration (validated)
  explicit BertModelImpl(BertConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    embeddings = register_module("embeddings", BertEmbeddings(cfg_));
    encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
    auto list = encoder->register_module("layer", torch::nn::ModuleList());
    for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
      layers.push_back(BertLayer(cfg_));
      list->push_back(layers.back());
    }
    if (cfg_.add_pooling_layer) {
      pooler = register_module("pooler", std::make_shared<torch::nn::Module>());
      pooler_dense = pooler->register_module("dense", torch::nn::Linear(cfg_.hidden_size, cfg_.hidden_size));
    }
  }

  /// @brief Encodes a batch.
  /// @param input_ids [B, L] int64 in [0, vocab_size)
  /// @param attention_mask [B, L] 1 = attend, 0 = padding (undefined: all ones)
  /// @param token_type_ids [B, L] (undefined: zeros)
  BertOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                     const torch::Tensor& token_type_ids = {}) {
    check(input_ids, attention_mask, token_type_ids);
    auto tt = token_type_ids.defined() ? token_type_ids : torch::zeros_like(input_ids);
    BertOutput out;
    auto h = embeddings(input_ids, tt);
    torch::Tensor add_mask;
    if (attention_mask.defined()) add_mask = bert_additive_mask(attention_mask, h.scalar_type());
    out.hidden_states.push_back(h);
    for (auto& l : layers) {
      h = l(h, add_mask);
      out.hidden_states.push_back(h);
    }
    out.last_hidden_state = h;
    if (pooler_dense) out.pooler_output = torch::tanh(pooler_dense(h.select(1, 0)));
    return out;
  }
  /// @brief The configuration.
  const BertConfig& config() const { return cfg_; }

  BertEmbeddings embeddings{nullptr};              ///< `embeddings.*`
  std::shared_ptr<torch::nn::Module> encoder;      ///< holds `layer` (ModuleList)
  std::vector<BertLayer> layers;                   ///< `encoder.layer.{i}`
  std::shared_ptr<torch::nn::Module> pooler;       ///< holds `dense` (null without pooler)
  torch::nn::Linear pooler_dense{nullptr};         ///< `pooler.dense`

 private:
  void check(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& tt) const {
    if (!ids.defined() || ids.dim() != 2 || ids.scalar_type() != torch::kLong)
      throw std::invalid_argument("BertModel: input_ids must be int64 [B, L]");
    if (ids.size(1) > cfg_.max_position_embeddings)
      throw std::invalid_argument("BertModel: sequence length " + std::to_string(ids.size(1)) + " exceeds max_position_embeddings " +
                                  std::to_string(cfg_.max_position_embeddings));
    if (ids.numel() && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= cfg_.vocab_size))
      throw std::invalid_argument("BertModel: input_ids must lie in [0, " + std::to_string(cfg_.vocab_size) + ")");
    if (mask.defined() && mask.sizes() != ids.sizes())
      throw std::invalid_argument("BertModel: attention_mask shape " + c10::str(mask.sizes()) + " != input_ids " + c10::str(ids.sizes()));
    if (tt.defined() && tt.sizes() != ids.sizes())
      throw std::invalid_argument("BertModel: token_type_ids shape " + c10::str(tt.sizes()) + " != input_ids " + c10::str(ids.sizes()));
  }
  BertConfig cfg_;
};
TORCH_MODULE(BertModel);

/// @brief LoadOptions for BERT checkpoints: strict, ignoring `embeddings.position_ids` (older transformers saves it).
/// @param source file name for messages
inline io::LoadOptions bert_load_options(std::string source = {}) {
  io::LoadOptions o;
  o.ignore_unexpected = {R"((^|\.)embeddings\.position_ids$)"};
  o.source = std::move(source);
  return o;
}

}  // namespace cxrl::nn
