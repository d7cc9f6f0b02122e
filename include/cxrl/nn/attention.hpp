/// @file
/// @brief diffusers `attention_processor.py` / `attention.py`: multi-head (cross-)attention with LoRA-capable
///        projections, the GEGLU feed-forward and BasicTransformerBlock.
///
/// The attention core is memory-efficient: queries are processed in chunks so the B·heads·N·M score
/// matrix is never materialised at once for large N (attention at full resolution dominates small UNets on
/// CPU); with LibTorch ≥ 2 it uses `scaled_dot_product_attention` (flash / efficient kernels on CUDA).
#pragma once

#include <cxrl/nn/layers.hpp>
#include <cxrl/nn/lora_linear.hpp>

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::nn {

namespace detail {

// Writes softmax(q kᵀ·scale) v into out [BH,N,dv], over blocks of (bh, query rows); q [BH,N,d], k [BH,M,d],
// v [BH,M,dv] (any strides with a unit last stride: one head's columns of the projections, say).
inline void blocked_attention_into(const torch::Tensor& out, const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, double scale, int64_t g, int64_t rows) {
  const int64_t BH = q.size(0), N = q.size(1);
  for (int64_t b = 0; b < BH; b += g) {
    const int64_t gb = std::min(g, BH - b);
    auto kt = k.narrow(0, b, gb).transpose(1, 2);
    auto vb = v.narrow(0, b, gb);
    for (int64_t i = 0; i < N; i += rows) {
      const int64_t n = std::min(rows, N - i);
      auto p = torch::softmax(torch::bmm(q.narrow(0, b, gb).narrow(1, i, n), kt).mul_(scale), -1);
      auto dst = out.narrow(0, b, gb).narrow(1, i, n);
      // Under bf16 autocast softmax returns fp32 while v is bf16, and an out= product is not autocast.
      torch::bmm_out(dst, p.scalar_type() == vb.scalar_type() ? p : p.to(vb.scalar_type()), vb);
    }
  }
}

inline torch::Tensor blocked_attention_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               double scale, int64_t g, int64_t rows) {
  auto out = torch::empty({q.size(0), q.size(1), v.size(2)}, q.options());
  blocked_attention_into(out, q, k, v, scale, g, rows);
  return out;
}

// Autograd for the blocked attention: the backward recomputes each probability block instead of storing
// the B·h·N·M probabilities (the memory-efficient attention of Rabe & Staats, 2021), so both passes stay
// cache-resident. With P = softmax(S), S = q kᵀ·scale, O = P v and D = rowsum(dO ∘ O):
// dv = Pᵀ dO, dS = P ∘ (dO vᵀ − D), dq = dS k · scale, dk = dSᵀ q · scale.
struct BlockedAttention : public torch::autograd::Function<BlockedAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, double scale, int64_t g, int64_t rows) {
    auto out = blocked_attention_forward(q, k, v, scale, g, rows);
    ctx->save_for_backward({q, k, v, out});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["g"] = g;
    ctx->saved_data["rows"] = rows;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &o = saved[3];
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t g = ctx->saved_data["g"].toInt(), rows = ctx->saved_data["rows"].toInt();
    const auto d_o = grads[0].contiguous();
    const auto D = (d_o * o).sum(-1, true);  // [BH, N, 1]
    auto dq = torch::empty_like(q), dk = torch::zeros_like(k), dv = torch::zeros_like(v);
    const int64_t BH = q.size(0), N = q.size(1);
    for (int64_t b = 0; b < BH; b += g) {
      const int64_t gb = std::min(g, BH - b);
      auto kb = k.narrow(0, b, gb), vb = v.narrow(0, b, gb);
      auto dkb = dk.narrow(0, b, gb), dvb = dv.narrow(0, b, gb);
      for (int64_t i = 0; i < N; i += rows) {
        const int64_t n = std::min(rows, N - i);
        auto qb = q.narrow(0, b, gb).narrow(1, i, n);
        auto dob = d_o.narrow(0, b, gb).narrow(1, i, n);
        auto p = torch::softmax(torch::bmm(qb, kb.transpose(1, 2)).mul_(scale), -1);
        dvb.baddbmm_(p.transpose(1, 2), dob);
        auto ds = torch::bmm(dob, vb.transpose(1, 2)).sub_(D.narrow(0, b, gb).narrow(1, i, n)).mul_(p).mul_(scale);
        auto dqb = dq.narrow(0, b, gb).narrow(1, i, n);
        torch::bmm_out(dqb, ds, kb);
        dkb.baddbmm_(ds.transpose(1, 2), qb);
      }
    }
    return {dq, dk, dv, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace detail

/// @brief Scaled dot-product attention softmax(q kᵀ · scale) v over heads (Vaswani et al., 2017, eq. 1).
///
/// Heads are contiguous slices of the last dimension, as in diffusers `head_to_batch_dim`.
/// @param q queries [B, N, heads·d]
/// @param k keys [B, M, heads·d]
/// @param v values [B, M, heads·d_v]
/// @param heads number of heads
/// @param scale score multiplier (d^-1/2 in the reference)
/// @param max_score_elements process (head, query-row) blocks whose score matrix holds at most this many elements
inline torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                                  int64_t heads, double scale,
                                                  int64_t max_score_elements = int64_t{1} << 16) {
  const int64_t B = q.size(0), N = q.size(1), M = k.size(1);
  const int64_t d = q.size(2) / heads, dv = v.size(2) / heads;
  if (FlopCounter::active())
    FlopCounter::add(2.0 * static_cast<double>(B * heads) * static_cast<double>(N) * static_cast<double>(M) *
                     static_cast<double>(d + dv));
  auto head_major = [&](const torch::Tensor& t, int64_t len, int64_t dim) {  // [B, len, h·dim] → [B, h, len, dim]
    return t.view({B, len, heads, dim}).transpose(1, 2);
  };
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  if (std::abs(scale - 1.0 / std::sqrt(static_cast<double>(d))) < 1e-12 * scale) {
    auto o = at::scaled_dot_product_attention(head_major(q, N, d), head_major(k, M, d), head_major(v, M, dv));
    return o.transpose(1, 2).reshape({B, N, heads * dv});
  }
#endif
  // Blocks of (batch or head, query rows) whose score matrix stays cache-resident: measured 2.5-5x faster on CPU
  // than one B·h·N·M score tensor for 32 heads × 1024² scores (d = 4..40), and far less memory.
  auto block_shape = [&](int64_t batch) {
    const int64_t g = std::clamp<int64_t>(max_score_elements / std::max<int64_t>(1, N * M), 1, batch);
    return std::pair{g, std::clamp<int64_t>(max_score_elements / std::max<int64_t>(1, g * M), 1, N)};
  };
  if (!(torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad()))) {
    // Without autograd each head runs on its strided columns of q, k and v and writes its columns of the output:
    // no head-major copies (bench_unet compares this with the autograd path's forward).
    auto unit = [](const torch::Tensor& t) { return t.stride(2) == 1 ? t : t.contiguous(); };
    const auto qc = unit(q), kc = unit(k), vc = unit(v);
    auto out = torch::empty({B, N, heads * dv}, q.options());
    const auto [g, rows] = block_shape(B);
    for (int64_t j = 0; j < heads; ++j)
      detail::blocked_attention_into(out.narrow(2, j * dv, dv), qc.narrow(2, j * d, d), kc.narrow(2, j * d, d),
                                     vc.narrow(2, j * dv, dv), scale, g, rows);
    return out;
  }
  auto qf = head_major(q, N, d).reshape({B * heads, N, d});
  auto kf = head_major(k, M, d).reshape({B * heads, M, d});
  auto vf = head_major(v, M, dv).reshape({B * heads, M, dv});
  const int64_t BH = B * heads;
  const auto [g, rows] = block_shape(BH);
  torch::Tensor out;
  if (g == BH && rows == N)  // small problem: one block, plain ops
    out = torch::bmm(torch::softmax(torch::bmm(qf, kf.transpose(1, 2)).mul_(scale), -1), vf);
  else
    out = detail::BlockedAttention::apply(qf.contiguous(), kf.contiguous(), vf.contiguous(), scale, g, rows);
  return out.view({B, heads, N, dv}).transpose(1, 2).reshape({B, N, heads * dv});
}

/// @brief Options of Attention, named as in diffusers `Attention`.
struct AttentionOptions {
  int64_t query_dim = 0;                         ///< query channels
  std::optional<int64_t> cross_attention_dim;    ///< context channels (nullopt = self-attention)
  int64_t heads = 8;                             ///< number of heads
  int64_t dim_head = 64;                         ///< channels per head
  double dropout = 0.0;                          ///< dropout after to_out.0
  bool bias = false;                             ///< bias of to_q/to_k/to_v
  bool out_bias = true;                          ///< bias of to_out.0
  bool upcast_attention = false;                 ///< compute q kᵀ in float32 for half inputs
  bool upcast_softmax = false;                   ///< softmax in float32 for half inputs
  std::optional<int64_t> norm_num_groups;        ///< GroupNorm ("group_norm") on 4-D inputs, VAE style
  double eps = 1e-5;                             ///< that GroupNorm's eps
  bool residual_connection = false;              ///< add the input back
  double rescale_output_factor = 1.0;            ///< divide the output by this
};

/// @brief diffusers `Attention` with the default processor. Projections are LoraLinear
///        (`to_q`, `to_k`, `to_v`, `to_out.0`), so adapters can be attached to any of them.
class AttentionImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param o options (diffusers names)
  explicit AttentionImpl(const AttentionOptions& o) : o_(o) {
    const int64_t inner = o.heads * o.dim_head;
    const int64_t kv_dim = o.cross_attention_dim.value_or(o.query_dim);
    if (o.norm_num_groups) group_norm = register_module("group_norm", GroupNorm(*o.norm_num_groups, o.query_dim, o.eps));
    to_q = register_module("to_q", LoraLinear(o.query_dim, inner, o.bias));
    to_k = register_module("to_k", LoraLinear(kv_dim, inner, o.bias));
    to_v = register_module("to_v", LoraLinear(kv_dim, inner, o.bias));
    to_out = register_module("to_out", torch::nn::ModuleList());
    to_out_0 = LoraLinear(inner, o.query_dim, o.out_bias);
    to_out->push_back(to_out_0);
    to_out->push_back(torch::nn::Dropout(o.dropout));
  }

  /// @brief Attends from @p x to @p context (or to itself).
  /// @param x queries [B, N, C], or [B, C, H, W] (flattened to HW tokens and restored)
  /// @param context keys/values source [B, M, C_ctx]; undefined = self-attention
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {}) {
    const bool spatial = x.dim() == 4;
    int64_t B = x.size(0), C = 0, H = 0, W = 0;
    torch::Tensor h = x;
    if (group_norm) h = group_norm(h);  // GroupNorm on [B,C,H,W] equals the reference's on [B,C,HW]
    if (spatial) {
      C = x.size(1), H = x.size(2), W = x.size(3);
      h = h.view({B, C, H * W}).transpose(1, 2);
    }
    const auto& src = context.defined() ? context : h;
    auto q = to_q(h), k = to_k(src), v = to_v(src);
    const auto dtype = q.scalar_type();
    const bool up = (o_.upcast_attention || o_.upcast_softmax) && dtype != torch::kFloat32 && dtype != torch::kFloat64;
    if (up) q = q.to(torch::kFloat32), k = k.to(torch::kFloat32), v = v.to(torch::kFloat32);
    auto a = scaled_dot_product_attention(q, k, v, o_.heads, 1.0 / std::sqrt(static_cast<double>(o_.dim_head)));
    if (up) a = a.to(dtype);
    auto out = to_out_0(a);
    if (o_.dropout > 0) out = torch::dropout(out, o_.dropout, is_training());
    if (spatial) out = out.transpose(1, 2).reshape({B, C, H, W});
    if (o_.residual_connection) out = out + x;
    if (o_.rescale_output_factor != 1.0) out = out / o_.rescale_output_factor;
    return out;
  }

  /// @brief The options this layer was built with.
  const AttentionOptions& options() const { return o_; }

  GroupNorm group_norm{nullptr};                 ///< optional input GroupNorm (VAE mid-block)
  LoraLinear to_q{nullptr};                      ///< query projection
  LoraLinear to_k{nullptr};                      ///< key projection
  LoraLinear to_v{nullptr};                      ///< value projection
  torch::nn::ModuleList to_out{nullptr};         ///< [to_out.0 (LoraLinear), Dropout]
  LoraLinear to_out_0{nullptr};                  ///< the output projection, "to_out.0"

 private:
  AttentionOptions o_;
};
/// @brief Holder for AttentionImpl.
TORCH_MODULE(Attention);

/// @brief diffusers `GEGLU` (Shazeer, 2020): proj → (hidden, gate) → hidden · GELU(gate).
class GEGLUImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param dim_in input width
  /// @param dim_out output width (proj maps to 2·dim_out)
  GEGLUImpl(int64_t dim_in, int64_t dim_out) { proj = register_module("proj", Linear(dim_in, 2 * dim_out)); }
  /// @brief Gated GELU.
  /// @param x input [..., dim_in]
  torch::Tensor forward(const torch::Tensor& x) {
    auto hg = proj(x).chunk(2, -1);
    return hg[0] * torch::gelu(hg[1]);
  }
  Linear proj{nullptr};  ///< dim_in → 2·dim_out
};
/// @brief Holder for GEGLUImpl.
TORCH_MODULE(GEGLU);

/// @brief diffusers `FeedForward` with GEGLU: net.0 = GEGLU(dim, mult·dim), net.1 = Dropout, net.2 = Linear.
class FeedForwardImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param dim input and output width
  /// @param mult hidden multiplier
  /// @param dropout dropout after the gate
  FeedForwardImpl(int64_t dim, int64_t mult = 4, double dropout = 0.0) : dropout_(dropout) {
    net = register_module("net", torch::nn::ModuleList());
    act = GEGLU(dim, dim * mult);
    out = Linear(dim * mult, dim);
    net->push_back(act);
    net->push_back(torch::nn::Dropout(dropout));
    net->push_back(out);
  }
  /// @brief GEGLU → dropout → Linear.
  /// @param x input [..., dim]
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = act(x);
    if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
    return out(h);
  }
  torch::nn::ModuleList net{nullptr};  ///< keys net.0.proj, net.2
  GEGLU act{nullptr};                  ///< net.0
  Linear out{nullptr};                 ///< net.2

 private:
  double dropout_;
};
/// @brief Holder for FeedForwardImpl.
TORCH_MODULE(FeedForward);

/// @brief Options of BasicTransformerBlock (layer_norm variant), named as in diffusers.
struct BasicTransformerBlockOptions {
  int64_t dim = 0;                              ///< token channels
  int64_t num_attention_heads = 8;              ///< heads
  int64_t attention_head_dim = 64;              ///< channels per head
  std::optional<int64_t> cross_attention_dim;   ///< context channels; nullopt = no attn2
  bool only_cross_attention = false;            ///< attn1 also attends to the context
  bool upcast_attention = false;                ///< see AttentionOptions
  double dropout = 0.0;                         ///< attention / FF dropout
  double norm_eps = 1e-5;                       ///< LayerNorm eps
};

/// @brief Pre-LN transformer block: x += attn1(LN(x)); x += attn2(LN(x), ctx); x += FF(LN(x))
///        (diffusers `BasicTransformerBlock`, norm_type "layer_norm", GEGLU feed-forward).
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  /// @brief Creates the block.
  /// @param o options (diffusers names)
  explicit BasicTransformerBlockImpl(const BasicTransformerBlockOptions& o) : only_cross_(o.only_cross_attention) {
    AttentionOptions a;
    a.query_dim = o.dim;
    a.heads = o.num_attention_heads;
    a.dim_head = o.attention_head_dim;
    a.dropout = o.dropout;
    a.upcast_attention = o.upcast_attention;
    norm1 = register_module("norm1", LayerNorm(o.dim, o.norm_eps));
    auto a1 = a;
    if (o.only_cross_attention) a1.cross_attention_dim = o.cross_attention_dim;
    attn1 = register_module("attn1", Attention(a1));
    if (o.cross_attention_dim) {
      auto a2 = a;
      a2.cross_attention_dim = o.cross_attention_dim;
      norm2 = register_module("norm2", LayerNorm(o.dim, o.norm_eps));
      attn2 = register_module("attn2", Attention(a2));
    }
    norm3 = register_module("norm3", LayerNorm(o.dim, o.norm_eps));
    ff = register_module("ff", FeedForward(o.dim, 4, o.dropout));
  }
  /// @brief Applies the block.
  /// @param x tokens [B, N, dim]
  /// @param context encoder hidden states [B, M, cross_attention_dim]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {}) {
    auto h = attn1(norm1(x), only_cross_ ? context : torch::Tensor()) + x;
    if (attn2) h = attn2(norm2(h), context) + h;
    return ff(norm3(h)) + h;
  }
  LayerNorm norm1{nullptr};    ///< before self-attention
  Attention attn1{nullptr};    ///< self-attention
  LayerNorm norm2{nullptr};    ///< before cross-attention
  Attention attn2{nullptr};    ///< cross-attention
  LayerNorm norm3{nullptr};    ///< before the feed-forward
  FeedForward ff{nullptr};     ///< GEGLU MLP

 private:
  bool only_cross_;
};
/// @brief Holder for BasicTransformerBlockImpl.
TORCH_MODULE(BasicTransformerBlock);

}  // namespace cxrl::nn
