/// @file
/// @brief LoraAcePolicy: a frozen text-conditioned UNet (+ frozen CLIP text encoder, optional VAE) with
///        trainable LoRA adapters and ACE tokens — the CXRL policy (Sec. 3), modelling `cxrl::core::Policy`.
///
/// - **Frozen base**: every UNet, text-encoder and VAE parameter has `requires_grad = false`.
/// - **Trainable**: the LoRA weights (lora.hpp) and the ACE tokens (ace.hpp); each group has a flag, so the
///   paper's "w/o ACE" ablation is `use_ace = false`.
/// - **Anchor**: `set_adapters_enabled(false)` turns the same object into the frozen reference model (LoRA
///   branches skipped, no ACE tokens). No second copy of any weight exists, so policy + anchor cost the
///   memory of one model plus the adapters.
/// - **encode**: tokenise (bos + ≤75 tokens + eos, padded to 77 with 49407), run the frozen text encoder under
///   no-grad, then prepend the ACE tokens (with gradient) when adapters are enabled.
///   **The unconditional prompt "" gets the ACE tokens too**: ACE is part of the model's conditioning path
///   (a learned prefix, as in prompt tuning), not of a particular report, and the conditional and
///   unconditional contexts must have the same length for the batched classifier-free-guidance pass.
/// - **decode**: latent models: `vae.decode(x / scaling_factor)`; pixel-space models: identity. Both
///   outputs are in [−1, 1] and are mapped to images in [0, 1] by `clamp(x / 2 + 0.5, 0, 1)` as diffusers'
///   pipelines do.
/// - **precision**: the passes whose outputs feed no importance ratio, the anchor's UNet (adapters off) and the
///   VAE decode, run in the configured nn::Precision (bf16 through autocast) and return float32. The policy's own
///   UNet passes always run in fp32: its log-probabilities are recorded while sampling and recomputed with
///   gradient after each update, and bf16 rounding of μ_θ is not continuous in θ. Measured on the phantom run
///   (`cxrl_mimic finetune --steps 10 --timestep_fraction 0.5 --learning_rate 1e-6`, Zen 5 EPYC): approx_kl
///   7e-12 and no clipped ratio in fp32, but approx_kl 0.021 and 71 % of ratios clipped (DDPO's clip 1e-4) when
///   the policy ran in bf16, from rounding alone.
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/precision.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/policy/ace.hpp>
#include <cxrl/policy/lora.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <torch/torch.h>

#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace cxrl::policy {

/// @brief Settings of LoraAcePolicy.
struct LoraAcePolicyConfig {
  LoraConfig lora;          ///< rank, alpha, targets, seed of the LoRA adapters
  AceConfig ace;            ///< number of tokens, init std, seed of ACE
  bool use_lora = true;     ///< inject and train LoRA adapters
  bool use_ace = true;      ///< prepend and train ACE tokens (false = the paper's "w/o ACE")
  /// {C, H, W} of x_T; default: {unet in_channels, sample_size, sample_size} from the UNet config.
  std::optional<std::vector<int64_t>> sample_shape;
  /// Frozen-encoder outputs kept per prompt text (the encoder never changes, and DDPO re-encodes the same
  /// prompts at every update); 0 disables the cache.
  std::size_t prompt_cache_size = 256;
  /// Arithmetic of the anchor's UNet passes and the VAE decode, fp32 or bf16 (Precision::automatic is resolved by
  /// the program, with nn::fastest_precision(), and set with set_precision()); the policy's passes are fp32.
  nn::Precision precision = nn::Precision::fp32;
};

/// @brief The CXRL policy: frozen SD components + LoRA + ACE (models `cxrl::core::Policy`).
class LoraAcePolicy {
 public:
  /// @brief Freezes the components, injects LoRA into the UNet and creates the ACE tokens.
  /// @param unet conditional UNet whose attention projections are `nn::LoraLinear`
  /// @param text_encoder CLIP text encoder (hidden size = the UNet's cross_attention_dim)
  /// @param tokenizer CLIP tokenizer
  /// @param vae autoencoder for latent models, or nullptr for pixel-space models
  /// @param cfg adapter settings
  LoraAcePolicy(nn::UNet2DConditionModel unet, nn::CLIPTextModel text_encoder,
                std::shared_ptr<const text::ClipTokenizer> tokenizer, nn::AutoencoderKL vae = nullptr,
                LoraAcePolicyConfig cfg = {})
      : unet_(std::move(unet)), text_encoder_(std::move(text_encoder)), tokenizer_(std::move(tokenizer)),
        vae_(std::move(vae)), cfg_(std::move(cfg)) {
    if (!unet_ || !text_encoder_ || !tokenizer_)
      throw std::invalid_argument("LoraAcePolicy: unet, text_encoder and tokenizer are required");
    const auto& uc = unet_->config();
    const int64_t d_tau = text_encoder_->config.hidden_size;
    for (auto x : uc.cross_attention_dim)
      if (x != d_tau)
        throw std::invalid_argument("LoraAcePolicy: UNet cross_attention_dim " + std::to_string(x) +
                                    " != text encoder hidden_size " + std::to_string(d_tau));
    if (tokenizer_->vocab_size() > text_encoder_->config.vocab_size)
      throw std::invalid_argument("LoraAcePolicy: tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                                  " tokens but the text encoder embeds only " +
                                  std::to_string(text_encoder_->config.vocab_size));
    if (vae_ && vae_->config().latent_channels != uc.in_channels)
      throw std::invalid_argument("LoraAcePolicy: VAE latent_channels " + std::to_string(vae_->config().latent_channels) +
                                  " != UNet in_channels " + std::to_string(uc.in_channels));
    if (cfg_.sample_shape) {
      shape_ = *cfg_.sample_shape;
    } else {
      if (!uc.sample_size)
        throw std::invalid_argument("LoraAcePolicy: the UNet config has no sample_size; set LoraAcePolicyConfig::sample_shape");
      shape_ = {uc.in_channels, *uc.sample_size, *uc.sample_size};
    }
    set_precision(cfg_.precision);
    if (shape_.size() != 3 || shape_[0] != uc.in_channels)
      throw std::invalid_argument("LoraAcePolicy: sample_shape must be {C, H, W} with C = UNet in_channels (" +
                                  std::to_string(uc.in_channels) + ")");

    freeze(*unet_);
    freeze(*text_encoder_);
    if (vae_) freeze(*vae_);
    text_encoder_->eval();
    if (vae_) vae_->eval();
    if (cfg_.use_lora) lora_ = LoraAdapters::inject(*unet_, cfg_.lora, "unet");
    if (cfg_.use_ace) {
      const auto w = text_encoder_->text_model->final_layer_norm->weight;
      ace_ = AdaptiveConditionEmbeddings(cfg_.ace, d_tau, w.options());
    }
  }

  /// @brief Not copyable: a copy would share the LoRA layers but not the adapter/ACE state.
  LoraAcePolicy(const LoraAcePolicy&) = delete;
  /// @brief Not copyable (see the copy constructor).
  LoraAcePolicy& operator=(const LoraAcePolicy&) = delete;
  /// @brief Movable.
  LoraAcePolicy(LoraAcePolicy&&) = default;
  /// @brief Movable.
  LoraAcePolicy& operator=(LoraAcePolicy&&) = default;

  /// @brief Builds the policy from a pipeline bundle with members `unet`, `text_encoder`, `tokenizer`
  /// (shared_ptr) and `vae` (e.g. `cxrl::diffusion::StableDiffusion`); the modules are shared, not copied.
  /// @tparam Components any type with those members
  /// @param sd the components
  /// @param cfg adapter settings
  template <class Components>
  static LoraAcePolicy from_components(const Components& sd, LoraAcePolicyConfig cfg = {}) {
    return LoraAcePolicy(sd.unet, sd.text_encoder, sd.tokenizer, sd.vae, std::move(cfg));
  }

  // ---- cxrl::core::Policy ------------------------------------------------------------------------------

  /// @brief Condition c for each prompt: [B, 77, d_τ], or [B, N + 77, d_τ] with ACE active.
  /// @param prompts report texts; "" is the unconditional prompt
  torch::Tensor encode(const std::vector<std::string>& prompts) {
    auto c_p = encode_frozen(prompts);
    return ace_active() ? ace_->forward(c_p) : c_p;
  }

  /// @brief UNet prediction (ε, v or x0, per the scheduler's prediction_type) for x_t at t under c.
  /// @param x noisy sample [B, C, H, W]
  /// @param t timesteps (0-d or [B])
  /// @param c condition from encode()
  torch::Tensor predict(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    nn::Autocast scope(enabled_ ? nn::Precision::fp32 : cfg_.precision, x.device());
    return unet_->forward(x, t, c).to(x.scalar_type());
  }

  /// @brief {C, H, W} of x_T.
  std::vector<int64_t> sample_shape() const { return shape_; }

  /// @brief x_0 → images in [0, 1] (VAE decode with 1/scaling_factor for latent models; identity for pixel
  /// models; then clamp(x/2 + 0.5, 0, 1)).
  /// @param x0 final sample [B, C, H, W]
  torch::Tensor decode(const torch::Tensor& x0) {
    torch::Tensor img = x0;
    if (vae_) {
      nn::Autocast scope(cfg_.precision, x0.device());
      img = vae_->decode(x0 / vae_->config().scaling_factor).to(x0.scalar_type());
    }
    return (img / 2.0 + 0.5).clamp(0.0, 1.0);
  }

  /// @brief The trainable tensors: LoRA A/B weights (if use_lora) and the ACE tokens (if use_ace).
  std::vector<torch::Tensor> trainable_parameters() const {
    std::vector<torch::Tensor> p;
    if (cfg_.use_lora) p = lora_.parameters();
    if (cfg_.use_ace) p.push_back(ace_->tokens);
    return p;
  }

  /// @brief true: the trained policy; false: the frozen anchor (LoRA branches skipped, no ACE tokens).
  /// @param on new state
  void set_adapters_enabled(bool on) {
    if (cfg_.use_lora) lora_.set_enabled(on);
    enabled_ = on;
  }
  /// @brief Whether the adapters are on (optional Policy hook used by `core::AdaptersDisabled`).
  bool adapters_enabled() const { return enabled_; }

  /// @brief Training / inference mode of the UNet (dropout, if configured); the frozen text encoder and VAE
  /// always stay in eval mode. Optional Policy hook called by `core::Trainer`.
  /// @param on true for training mode
  void train(bool on = true) { unet_->train(on); }

  // ---- adapters ----------------------------------------------------------------------------------------

  /// @brief Whether encode() currently prepends ACE tokens.
  bool ace_active() const { return cfg_.use_ace && enabled_; }
  /// @brief The LoRA adapters (empty when use_lora is false).
  LoraAdapters& lora() { return lora_; }
  /// @brief The ACE module (null when use_ace is false).
  AdaptiveConditionEmbeddings& ace() { return ace_; }
  /// @brief The settings.
  const LoraAcePolicyConfig& config() const { return cfg_; }
  /// @brief Sets the arithmetic of later anchor predict() and decode() calls.
  /// @param p fp32 or bf16
  /// @throws std::invalid_argument for Precision::automatic (resolve it with nn::fastest_precision() first)
  void set_precision(nn::Precision p) {
    if (p == nn::Precision::automatic)
      throw std::invalid_argument("LoraAcePolicy: precision auto must be resolved (nn::fastest_precision) before use");
    cfg_.precision = p;
  }

  /// @brief Initialises the ACE tokens with copies of the frozen encoder outputs of @p text at positions
  /// 1..N (its first N tokens after `<|startoftext|>`; eos/padding rows when the text is shorter).
  /// @param text e.g. "chest x-ray"
  void init_ace_from_text(const std::string& text) {
    if (!cfg_.use_ace) throw std::logic_error("LoraAcePolicy::init_ace_from_text: use_ace is false");
    auto c = encode_frozen({text});
    ace_->init_from(c.narrow(1, 1, ace_->num_tokens()).squeeze(0));
  }

  /// @brief Writes LoRA (`unet.<path>.lora_{A,B}.weight`) and ACE (`ace.tokens`) into one safetensors file.
  /// @param path destination (written atomically)
  /// @param extra_metadata additional `__metadata__` entries (e.g. the training step)
  void save_adapters(const std::filesystem::path& path, const io::Metadata& extra_metadata = {}) const {
    io::TensorMap m;
    io::Metadata meta{{"format", "pt"}, {"cxrl_adapters", adapter_kind()}};
    if (cfg_.use_lora) {
      m = lora_.state_dict();
      for (const auto& [k, v] : lora_.metadata()) meta[k] = v;
    }
    if (cfg_.use_ace) {
      m.emplace(kAceKey, ace_->tokens);
      meta["ace_num_tokens"] = std::to_string(ace_->num_tokens());
    }
    for (const auto& [k, v] : extra_metadata) meta[k] = v;
    io::save_safetensors(path, m, meta);
  }

  /// @brief Loads a file written by save_adapters(); strict: every adapter tensor must be present with the
  /// right shape, and the file may hold nothing else.
  /// @param path safetensors file
  void load_adapters(const std::filesystem::path& path) {
    io::SafeTensorsFile f(path);
    const auto sd = f.all();
    const std::string src = path.string();
    io::LoadReport rep;
    for (const auto& [k, v] : sd) {
      const bool is_lora = k.rfind("unet.", 0) == 0, is_ace = k == kAceKey;
      if ((is_lora && !cfg_.use_lora) || (is_ace && !cfg_.use_ace) || (!is_lora && !is_ace))
        rep.unexpected.push_back(k + (is_lora ? " (policy built with use_lora = false)"
                                       : is_ace ? " (policy built with use_ace = false)"
                                                : ""));
    }
    if (cfg_.use_ace) {
      auto it = sd.find(kAceKey);
      if (it == sd.end()) rep.missing.push_back(kAceKey);
      else if (it->second.sizes() != ace_->tokens.sizes())
        rep.mismatched.push_back(std::string(kAceKey) + ": file " + io::detail::shape_str(it->second.sizes()) +
                                 " vs policy " + io::detail::shape_str(ace_->tokens.sizes()));
    }
    if (!rep.ok()) throw io::CheckpointError(src + ": adapter file does not match the policy:" + rep.describe());
    if (cfg_.use_lora) lora_.load_state_dict(sd, src, f.metadata());
    if (cfg_.use_ace) {
      torch::NoGradGuard ng;
      ace_->tokens.copy_(sd.at(kAceKey).to(ace_->tokens.device(), ace_->tokens.scalar_type()));
    }
  }

  // ---- components --------------------------------------------------------------------------------------

  /// @brief The UNet (with LoRA layers inside).
  nn::UNet2DConditionModel& unet() { return unet_; }
  /// @brief The frozen text encoder.
  nn::CLIPTextModel& text_encoder() { return text_encoder_; }
  /// @brief The frozen VAE (null for pixel-space models).
  nn::AutoencoderKL& vae() { return vae_; }
  /// @brief The tokenizer.
  const text::ClipTokenizer& tokenizer() const { return *tokenizer_; }

  /// @brief The frozen encoder output c_p = τθ(y) [B, 77, d_τ], computed under no-grad (cached per prompt).
  /// @param prompts texts
  torch::Tensor encode_frozen(const std::vector<std::string>& prompts) {
    if (prompts.empty()) throw std::invalid_argument("LoraAcePolicy::encode: no prompts given");
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> rows(prompts.size());
    std::vector<std::size_t> todo;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      auto it = cache_.find(prompts[i]);
      if (it != cache_.end()) rows[i] = it->second;
      else todo.push_back(i);
    }
    // One prompt per forward pass: a GEMM's rounding depends on how many rows it multiplies, so a prompt encoded
    // inside a larger batch would give a cached row that depends on which batch met it first, and a resumed run (whose
    // cache starts empty) would drift from an uninterrupted one by a few ulps.
    const auto L = tokenizer_->model_max_length();
    const auto dev = text_encoder_->text_model->final_layer_norm->weight.device();
    for (const auto i : todo) {
      if (auto it = cache_.find(prompts[i]); it != cache_.end()) {  // a repeat within this batch
        rows[i] = it->second;
        continue;
      }
      const auto e = tokenizer_->encode_padded(prompts[i]);
      auto ids = torch::tensor(e.input_ids, torch::kLong).view({1, L});
      // SD v1 pipelines pass no attention_mask: padding tokens are attended to (causally) as in training.
      rows[i] = text_encoder_->forward(ids.to(dev)).last_hidden_state[0];
      remember(prompts[i], rows[i]);
    }
    return torch::stack(rows);
  }

  /// @brief Drops the cached encoder outputs (needed only if the text encoder's weights are replaced).
  void clear_prompt_cache() {
    cache_.clear();
    order_.clear();
  }

  /// @brief Key of the ACE tokens in adapter files.
  static constexpr const char* kAceKey = "ace.tokens";

 private:
  static void freeze(torch::nn::Module& m) {
    for (auto& p : m.parameters(true)) p.set_requires_grad(false);
  }
  std::string adapter_kind() const {
    return cfg_.use_lora && cfg_.use_ace ? "lora+ace" : cfg_.use_lora ? "lora" : cfg_.use_ace ? "ace" : "none";
  }
  void remember(const std::string& prompt, const torch::Tensor& row) {
    if (cfg_.prompt_cache_size == 0 || cache_.count(prompt)) return;
    if (cache_.size() >= cfg_.prompt_cache_size) {
      cache_.erase(order_.front());
      order_.pop_front();
    }
    cache_.emplace(prompt, row);
    order_.push_back(prompt);
  }

  nn::UNet2DConditionModel unet_;
  nn::CLIPTextModel text_encoder_;
  std::shared_ptr<const text::ClipTokenizer> tokenizer_;
  nn::AutoencoderKL vae_;
  LoraAcePolicyConfig cfg_;
  std::vector<int64_t> shape_;
  LoraAdapters lora_;
  AdaptiveConditionEmbeddings ace_{nullptr};
  bool enabled_ = true;
  std::unordered_map<std::string, torch::Tensor> cache_;
  std::deque<std::string> order_;
};

}  // namespace cxrl::policy
