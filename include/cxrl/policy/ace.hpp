/// @file
/// @brief Learnable adaptive condition embeddings (ACE), CXRL Sec. 3 (II).
///
/// N learnable vectors c_s ∈ R^{N×d_τ} are prepended to the frozen text encoder output c_p = τθ(y) ∈
/// R^{M×d_τ}: c = [c_s, c_p] ∈ R^{(N+M)×d_τ} (CXRL eq. in Sec. 3 (II); soft prompts after Lester et al., 2021,
/// "The Power of Scale for Parameter-Efficient Prompt Tuning"). They reach the UNet only through
/// cross-attention. The paper uses N = 3 with M ≤ 74 report tokens; here c_p is the full 77-token encoder
/// output, so c has 80 rows (the UNet's cross-attention accepts any length).
///
/// Saved as the tensor `ace.tokens` [N, d_τ] next to the LoRA weights (see LoraAcePolicy::save_adapters).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace cxrl::policy {

/// @brief ACE settings.
struct AceConfig {
  int64_t num_tokens = 3;  ///< N (CXRL uses 3)
  /// Std of the N(0, σ²) initialisation. Small (transformers' `initializer_range` 0.02), so the initial
  /// condition is close to "no extra tokens"; use init_from() to start from copies of real embeddings.
  double init_std = 0.02;
  uint64_t seed = 0;       ///< seed of the CPU generator for the initial values
};

/// @brief The ACE tokens as a module with one parameter, "tokens" [N, d_τ].
class AdaptiveConditionEmbeddingsImpl : public torch::nn::Module {
 public:
  /// @brief Creates N tokens of width @p dim drawn from N(0, init_std²).
  /// @param cfg number of tokens, init std, seed
  /// @param dim width d_τ (the text encoder's hidden size)
  /// @param options device / dtype of the tokens
  AdaptiveConditionEmbeddingsImpl(const AceConfig& cfg, int64_t dim,
                                  const torch::TensorOptions& options = torch::TensorOptions().dtype(torch::kFloat32)) {
    if (cfg.num_tokens <= 0)
      throw std::invalid_argument("AdaptiveConditionEmbeddings: num_tokens must be > 0, got " + std::to_string(cfg.num_tokens));
    if (dim <= 0) throw std::invalid_argument("AdaptiveConditionEmbeddings: dim must be > 0, got " + std::to_string(dim));
    if (!(cfg.init_std >= 0.0))
      throw std::invalid_argument("AdaptiveConditionEmbeddings: init_std must be >= 0, got " + std::to_string(cfg.init_std));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed);
    auto init = torch::randn({cfg.num_tokens, dim}, gen, torch::TensorOptions().dtype(torch::kFloat32)) * cfg.init_std;
    tokens = register_parameter("tokens", init.to(options.device(), options.dtype().toScalarType()));
  }

  /// @brief c = [c_s, c_p]: prepends the tokens to every row of the batch.
  /// @param c_p text encoder output [B, M, d_τ]
  /// @return [B, N + M, d_τ]
  torch::Tensor forward(const torch::Tensor& c_p) {
    if (c_p.dim() != 3 || c_p.size(2) != tokens.size(1))
      throw std::invalid_argument("AdaptiveConditionEmbeddings: expected a condition [B, M, " +
                                  std::to_string(tokens.size(1)) + "], got " + std::to_string(c_p.dim()) + "-d input");
    auto s = tokens.to(c_p.scalar_type()).unsqueeze(0).expand({c_p.size(0), tokens.size(0), tokens.size(1)});
    return torch::cat({s, c_p}, 1);
  }

  /// @brief Sets the tokens to copies of given embeddings (e.g. encoder outputs of chosen words).
  /// @param embeddings [N, d_τ] (or [1, N, d_τ])
  void init_from(const torch::Tensor& embeddings) {
    auto e = embeddings.dim() == 3 && embeddings.size(0) == 1 ? embeddings.squeeze(0) : embeddings;
    if (e.sizes() != tokens.sizes())
      throw std::invalid_argument("AdaptiveConditionEmbeddings::init_from: expected [" + std::to_string(tokens.size(0)) +
                                  ", " + std::to_string(tokens.size(1)) + "] embeddings");
    torch::NoGradGuard ng;
    tokens.copy_(e.detach());
  }

  /// @brief N.
  int64_t num_tokens() const { return tokens.size(0); }
  /// @brief d_τ.
  int64_t dim() const { return tokens.size(1); }

  torch::Tensor tokens;  ///< the learnable c_s [N, d_τ]
};

/// @brief Holder for AdaptiveConditionEmbeddingsImpl.
TORCH_MODULE(AdaptiveConditionEmbeddings);

}  // namespace cxrl::policy
