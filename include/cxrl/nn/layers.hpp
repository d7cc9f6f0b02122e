/// @file
/// @brief Thin parameter-holding layers (Linear, Conv2d, GroupNorm, LayerNorm) with PyTorch's key names
///        and default initialisation, built on the device chosen by `param_options()` (see meta.hpp).
///
/// They exist so that whole diffusers models can be built on the meta device; numerically they are
/// `torch::linear`, `torch::conv2d`, `torch::group_norm` and `torch::layer_norm`.
#pragma once

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/meta.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace cxrl::nn {

namespace detail {
// torch.nn default for Linear/Conv: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
inline torch::Tensor uniform_param(c10::IntArrayRef shape, int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty(shape, param_options()).uniform_(-bound, bound);
}
// A bf16 activation (from a convolution or matrix product under autocast) is normalised in the fp32 of the
// norm's parameters: its mean and variance over thousands of elements would lose digits in bf16, and CUDA
// autocast keeps group_norm and layer_norm in fp32 for the same reason (precision.hpp).
inline torch::Tensor as_param_dtype(const torch::Tensor& x, const torch::Tensor& param) {
  return x.scalar_type() == param.scalar_type() ? x : x.to(param.scalar_type());
}
}  // namespace detail

/// @brief `torch.nn.Linear` (keys "weight" [out,in], "bias" [out]).
class LinearImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param in_features input width
  /// @param out_features output width
  /// @param with_bias whether to add a bias
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias = true) {
    weight = register_parameter("weight", detail::uniform_param({out_features, in_features}, in_features));
    if (with_bias) bias = register_parameter("bias", detail::uniform_param({out_features}, in_features));
  }
  /// @brief x Wᵀ + b.
  /// @param x input [..., in_features]
  torch::Tensor forward(const torch::Tensor& x) {
    if (FlopCounter::active()) FlopCounter::add(2.0 * static_cast<double>(x.numel()) * static_cast<double>(weight.size(0)));
    if (x.dim() == 2) return rowwise(x);
    return torch::linear(x, weight, bias);
  }
  torch::Tensor weight;  ///< [out, in]
  torch::Tensor bias;    ///< [out] or undefined

 private:
  // A [B, in] input has one row per sample (a timestep embedding, a pooled feature). For so few rows OpenBLAS
  // picks kernels by the row count, and a row's result moves by a few ulps between 16 and 32 rows (Cooperlake,
  // Zen 5 EPYC): then the UNet's log-probabilities in a training minibatch differ from the sampler's. One product
  // per row keeps each sample's result independent of its batch; these layers are a negligible share of the cost.
  torch::Tensor rowwise(const torch::Tensor& x) {
    const int64_t B = x.size(0), in = weight.size(1), out = weight.size(0);
    auto y = torch::bmm(x.unsqueeze(1), weight.t().unsqueeze(0).expand({B, in, out})).squeeze(1);
    return bias.defined() ? y + bias : y;
  }
};
/// @brief Holder for LinearImpl.
TORCH_MODULE(Linear);

/// @brief `torch.nn.Conv2d` with square kernel, symmetric zero padding and stride (keys "weight", "bias").
class Conv2dImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param in_channels input channels
  /// @param out_channels output channels
  /// @param kernel kernel size (square)
  /// @param stride stride
  /// @param padding zero padding on every side
  /// @param with_bias whether to add a bias
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
             bool with_bias = true)
      : stride_(stride), padding_(padding) {
    const int64_t fan_in = in_channels * kernel * kernel;
    weight = register_parameter("weight", detail::uniform_param({out_channels, in_channels, kernel, kernel}, fan_in));
    if (with_bias) bias = register_parameter("bias", detail::uniform_param({out_channels}, fan_in));
  }
  /// @brief 2-D cross-correlation.
  /// @param x input [B, C_in, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
    if (FlopCounter::active())
      FlopCounter::add(2.0 * static_cast<double>(y.numel()) * static_cast<double>(weight[0].numel()));
    return y;
  }
  torch::Tensor weight;  ///< [out, in, k, k]
  torch::Tensor bias;    ///< [out] or undefined

 private:
  int64_t stride_, padding_;
};
/// @brief Holder for Conv2dImpl.
TORCH_MODULE(Conv2d);

/// @brief `torch.nn.GroupNorm` with affine parameters (keys "weight", "bias").
class GroupNormImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param num_groups number of channel groups; must divide @p num_channels
  /// @param num_channels channels C
  /// @param eps variance epsilon
  GroupNormImpl(int64_t num_groups, int64_t num_channels, double eps) : groups_(num_groups), eps_(eps) {
    if (num_groups <= 0 || num_channels % num_groups != 0)
      throw std::invalid_argument("GroupNorm: num_groups=" + std::to_string(num_groups) +
                                  " must be positive and divide num_channels=" + std::to_string(num_channels));
    weight = register_parameter("weight", torch::ones({num_channels}, param_options()));
    bias = register_parameter("bias", torch::zeros({num_channels}, param_options()));
  }
  /// @brief Normalises over (C/groups, H, W) per group (Wu & He, 2018).
  /// @param x input [B, C, ...]
  torch::Tensor forward(const torch::Tensor& x) { return torch::group_norm(detail::as_param_dtype(x, weight), groups_, weight, bias, eps_); }
  torch::Tensor weight;  ///< [C]
  torch::Tensor bias;    ///< [C]

 private:
  int64_t groups_;
  double eps_;
};
/// @brief Holder for GroupNormImpl.
TORCH_MODULE(GroupNorm);

/// @brief `torch.nn.LayerNorm` over the last dimension with affine parameters (keys "weight", "bias").
class LayerNormImpl : public torch::nn::Module {
 public:
  /// @brief Creates the layer.
  /// @param dim normalised (last) dimension
  /// @param eps variance epsilon
  /// @param affine whether to learn weight and bias
  explicit LayerNormImpl(int64_t dim, double eps = 1e-5, bool affine = true) : dim_(dim), eps_(eps) {
    if (affine) {
      weight = register_parameter("weight", torch::ones({dim}, param_options()));
      bias = register_parameter("bias", torch::zeros({dim}, param_options()));
    }
  }
  /// @brief Normalises the last dimension (Ba et al., 2016).
  /// @param x input [..., dim]
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::layer_norm(weight.defined() ? detail::as_param_dtype(x, weight) : x, {dim_}, weight, bias, eps_);
  }
  torch::Tensor weight;  ///< [dim] or undefined
  torch::Tensor bias;    ///< [dim] or undefined

 private:
  int64_t dim_;
  double eps_;
};
/// @brief Holder for LayerNormImpl.
TORCH_MODULE(LayerNorm);

/// @brief Applies @p a element-wise (names were mapped to the enum when the config was read; see activation.hpp).
/// @param a the activation
/// @param x input
inline torch::Tensor activation(Activation a, const torch::Tensor& x) {
  switch (a) {
    case Activation::silu: return torch::silu(x);
    case Activation::mish: return torch::mish(x);
    case Activation::gelu: return torch::gelu(x);  // exact erf form
    case Activation::gelu_tanh: return torch::gelu(x, "tanh");
    case Activation::quick_gelu: return x * torch::sigmoid(1.702 * x);  // CLIP's approximation, Radford et al. 2021
    case Activation::relu: return torch::relu(x);
  }
  // Only a value cast from outside the enumerators gets here.
  throw std::invalid_argument("activation: invalid Activation value " + std::to_string(static_cast<int>(a)));
}

}  // namespace cxrl::nn
