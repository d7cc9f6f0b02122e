/// @file
/// @brief DenseNet-BC (torchvision layout), the backbone of the torchxrayvision classifiers.
///
/// Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017); module and key names follow
/// torchvision 0.14 `torchvision.models.densenet`: `features.conv0`, `features.norm0`,
/// `features.denseblock{i}.denselayer{j}.{norm1,conv1,norm2,conv2}`, `features.transition{i}.{norm,conv}`,
/// `features.norm5`, `classifier`. ReLU and pooling layers hold no parameters and are applied functionally.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief DenseNet hyper-parameters (torchvision `DenseNet.__init__` names and defaults, plus `in_channels`).
struct DenseNetConfig {
  int64_t growth_rate = 32;                        ///< channels added by each dense layer
  std::vector<int64_t> block_config{6, 12, 24, 16};  ///< dense layers per block
  int64_t num_init_features = 64;                  ///< channels of the stem convolution
  int64_t bn_size = 4;                             ///< bottleneck width multiplier (bn_size * growth_rate)
  double drop_rate = 0.0;                          ///< dropout after each dense layer (training only)
  int64_t num_classes = 1000;                      ///< classifier outputs
  int64_t in_channels = 3;                         ///< 1 for torchxrayvision models

  /// @brief DenseNet-121 (torchvision `densenet121`; xrv uses @p in_channels = 1, @p num_classes = 18).
  /// @param in_channels image channels
  /// @param num_classes classifier outputs
  static DenseNetConfig densenet121(int64_t in_channels = 3, int64_t num_classes = 1000) {
    DenseNetConfig c;
    c.in_channels = in_channels;
    c.num_classes = num_classes;
    return c;
  }

  /// @brief Reads the constructor fields from JSON; missing fields keep their defaults.
  /// @param json object with torchvision field names (or a fixture config with a "constructor" object)
  /// @param source file name used in error messages
  static DenseNetConfig from_json(const nlohmann::json& json, const std::string& source = "config") {
    const nlohmann::json& j = json.contains("constructor") ? json.at("constructor") : json;
    DenseNetConfig c;
    try {
      c.growth_rate = j.value("growth_rate", c.growth_rate);
      if (j.contains("block_config")) c.block_config = j.at("block_config").get<std::vector<int64_t>>();
      c.num_init_features = j.value("num_init_features", c.num_init_features);
      c.bn_size = j.value("bn_size", c.bn_size);
      c.drop_rate = j.value("drop_rate", c.drop_rate);
      c.num_classes = j.value("num_classes", c.num_classes);
      c.in_channels = j.value("in_channels", c.in_channels);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(source + ": invalid DenseNet config: " + e.what());
    }
    c.validate(source);
    return c;
  }

  /// @brief Throws std::invalid_argument naming the first field out of range.
  /// @param source name used in the message
  void validate(const std::string& source = "DenseNetConfig") const {
    auto need = [&](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument(source + ": " + what);
    };
    need(growth_rate > 0, "growth_rate must be > 0, got " + std::to_string(growth_rate));
    need(!block_config.empty(), "block_config must name at least one block");
    for (auto n : block_config) need(n > 0, "every block_config entry must be > 0, got " + std::to_string(n));
    need(num_init_features > 0, "num_init_features must be > 0");
    need(bn_size > 0, "bn_size must be > 0");
    need(drop_rate >= 0.0 && drop_rate < 1.0, "drop_rate must be in [0, 1)");
    need(num_classes > 0, "num_classes must be > 0");
    need(in_channels > 0, "in_channels must be > 0, got " + std::to_string(in_channels));
  }

  /// @brief Channels entering `features.norm5` (= classifier input width).
  int64_t num_features() const {
    int64_t f = num_init_features;
    for (size_t i = 0; i < block_config.size(); ++i) {
      f += block_config[i] * growth_rate;
      if (i + 1 != block_config.size()) f /= 2;
    }
    return f;
  }
};

/// @brief One BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 dense layer (torchvision `_DenseLayer`).
class DenseLayerImpl : public torch::nn::Module {
 public:
  /// @param num_input_features channels of the concatenated input
  /// @param growth_rate channels produced
  /// @param bn_size bottleneck multiplier
  /// @param drop_rate dropout probability in training
  DenseLayerImpl(int64_t num_input_features, int64_t growth_rate, int64_t bn_size, double drop_rate)
      : drop_rate_(drop_rate) {
    norm1 = register_module("norm1", torch::nn::BatchNorm2d(num_input_features));
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(num_input_features, bn_size * growth_rate, 1).bias(false)));
    norm2 = register_module("norm2", torch::nn::BatchNorm2d(bn_size * growth_rate));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(bn_size * growth_rate, growth_rate, 3).padding(1).bias(false)));
  }
  /// @brief New features (growth_rate channels) from the concatenation of all previous ones.
  /// @param x concatenated input [N, C_in, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = conv1(torch::relu(norm1(x)));
    h = conv2(torch::relu(norm2(h)));
    if (drop_rate_ > 0.0) h = torch::dropout(h, drop_rate_, is_training());
    return h;
  }
  torch::nn::BatchNorm2d norm1{nullptr};  ///< pre-activation BN of the input
  torch::nn::Conv2d conv1{nullptr};       ///< 1x1 bottleneck
  torch::nn::BatchNorm2d norm2{nullptr};  ///< BN of the bottleneck
  torch::nn::Conv2d conv2{nullptr};       ///< 3x3 producing growth_rate channels

 private:
  double drop_rate_;
};
TORCH_MODULE(DenseLayer);

/// @brief A dense block: each layer sees the concatenation of the block input and all earlier outputs.
class DenseBlockImpl : public torch::nn::Module {
 public:
  /// @param num_layers dense layers in the block
  /// @param num_input_features channels entering the block
  /// @param bn_size bottleneck multiplier
  /// @param growth_rate channels added per layer
  /// @param drop_rate dropout probability in training
  DenseBlockImpl(int64_t num_layers, int64_t num_input_features, int64_t bn_size, int64_t growth_rate, double drop_rate) {
    for (int64_t i = 0; i < num_layers; ++i)
      layers.push_back(register_module("denselayer" + std::to_string(i + 1),
                                       DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)));
  }
  /// @brief Input and every layer's output, concatenated along channels.
  /// @param x block input [N, C, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> feats{x};
    for (auto& l : layers) feats.push_back(l(torch::cat(feats, 1)));
    return torch::cat(feats, 1);
  }
  std::vector<DenseLayer> layers;  ///< denselayer1 … denselayerN
};
TORCH_MODULE(DenseBlock);

/// @brief BN-ReLU-Conv1x1-AvgPool2 between blocks (torchvision `_Transition`).
class TransitionImpl : public torch::nn::Module {
 public:
  /// @param in channels in
  /// @param out channels out
  TransitionImpl(int64_t in, int64_t out) {
    norm = register_module("norm", torch::nn::BatchNorm2d(in));
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(false)));
  }
  /// @param x [N, in, H, W] → [N, out, H/2, W/2]
  torch::Tensor forward(const torch::Tensor& x) { return torch::avg_pool2d(conv(torch::relu(norm(x))), 2, 2); }
  torch::nn::BatchNorm2d norm{nullptr};  ///< BN
  torch::nn::Conv2d conv{nullptr};       ///< 1x1 compression
};
TORCH_MODULE(Transition);

/// @brief The `features` trunk: stem, dense blocks with transitions, final BN (`norm5`, no ReLU).
class DenseNetFeaturesImpl : public torch::nn::Module {
 public:
  /// @param c validated configuration
  explicit DenseNetFeaturesImpl(const DenseNetConfig& c) {
    conv0 = register_module("conv0", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, c.num_init_features, 7)
                                                           .stride(2).padding(3).bias(false)));
    norm0 = register_module("norm0", torch::nn::BatchNorm2d(c.num_init_features));
    int64_t f = c.num_init_features;
    for (size_t i = 0; i < c.block_config.size(); ++i) {
      const auto n = c.block_config[i];
      blocks.push_back(register_module("denseblock" + std::to_string(i + 1), DenseBlock(n, f, c.bn_size, c.growth_rate, c.drop_rate)));
      f += n * c.growth_rate;
      if (i + 1 != c.block_config.size()) {
        transitions.push_back(register_module("transition" + std::to_string(i + 1), Transition(f, f / 2)));
        f /= 2;
      }
    }
    norm5 = register_module("norm5", torch::nn::BatchNorm2d(f));
  }
  /// @brief Feature map after `norm5` (before the final ReLU), like torchvision's `model.features(x)`.
  /// @param x images [N, in_channels, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(norm0(conv0(x))), 3, 2, 1);
    for (size_t i = 0; i < blocks.size(); ++i) {
      h = blocks[i](h);
      if (i < transitions.size()) h = transitions[i](h);
    }
    return norm5(h);
  }
  torch::nn::Conv2d conv0{nullptr};      ///< 7x7 stride-2 stem
  torch::nn::BatchNorm2d norm0{nullptr}; ///< stem BN
  std::vector<DenseBlock> blocks;        ///< denseblock1 …
  std::vector<Transition> transitions;   ///< transition1 … (one fewer than blocks)
  torch::nn::BatchNorm2d norm5{nullptr}; ///< final BN
};
TORCH_MODULE(DenseNetFeatures);

/// @brief DenseNet classifier: `features` trunk + `classifier` linear head.
class DenseNetImpl : public torch::nn::Module {
 public:
  /// @param cfg hyper-parameters (validated; throws std::invalid_argument when out of range)
  explicit DenseNetImpl(DenseNetConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    features = register_module("features", DenseNetFeatures(cfg_));
    classifier = register_module("classifier", torch::nn::Linear(cfg_.num_features(), cfg_.num_classes));
    reset_parameters();
  }
  /// @brief torchvision initialisation: Kaiming-normal convs, BN weight 1 / bias 0, linear bias 0.
  void reset_parameters() {
    torch::NoGradGuard ng;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      } else if (auto* lin = m->as<torch::nn::Linear>()) {
        lin->bias.zero_();
      }
    }
  }
  /// @brief Feature map after `norm5`, before the final ReLU. [N, num_features, H/32, W/32]
  /// @param x images [N, in_channels, H, W]
  torch::Tensor features_map(const torch::Tensor& x) {
    check_input(x);
    return features(x);
  }
  /// @brief relu → global average pool → flatten (torchxrayvision `DenseNet.features2`, the FID feature). [N, num_features]
  /// @param x images [N, in_channels, H, W]
  torch::Tensor features2(const torch::Tensor& x) { return pool(features_map(x)); }
  /// @brief Raw logits [N, num_classes].
  /// @param x images [N, in_channels, H, W]
  torch::Tensor forward(const torch::Tensor& x) { return classifier(features2(x)); }
  /// @brief The global pooling step of features2() applied to a given feature map.
  /// @param fmap output of features_map()
  static torch::Tensor pool(const torch::Tensor& fmap) {
    return torch::adaptive_avg_pool2d(torch::relu(fmap), {1, 1}).flatten(1);
  }
  /// @brief The configuration.
  const DenseNetConfig& config() const { return cfg_; }

  DenseNetFeatures features{nullptr};     ///< trunk (`features.*` keys)
  torch::nn::Linear classifier{nullptr};  ///< head (`classifier.*` keys)

 private:
  void check_input(const torch::Tensor& x) const {
    if (x.dim() != 4 || x.size(1) != cfg_.in_channels)
      throw std::invalid_argument("DenseNet: expected images [N, " + std::to_string(cfg_.in_channels) +
                                  ", H, W], got " + c10::str(x.sizes()));
    if (x.size(2) < 32 || x.size(3) < 32)
      throw std::invalid_argument("DenseNet: images must be at least 32x32 (5 stride-2 stages), got " +
                                  c10::str(x.sizes()));
  }
  DenseNetConfig cfg_;
};
TORCH_MODULE(DenseNet);

}  // namespace cxrl::nn
