/// @file
/// @brief ResNet with BasicBlock and Bottleneck v1.5 (torchvision layout and keys).
///
/// He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016). Structure and key names follow
/// torchvision 0.14 `torchvision.models.resnet`: `conv1`, `bn1`, `layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3]}`,
/// `layer{k}.0.downsample.{0,1}`, `fc`. The Bottleneck is "v1.5": the stride sits on the 3x3 `conv2`.
/// Beyond torchvision, the stem/stage width (`width`, 64 in torchvision), the input channels (1 for the
/// torchxrayvision and phantom-world models) and the presence of `fc` (CXR-CLIP deletes it) are parameters.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::nn {

/// @brief Residual block family.
enum class ResNetBlock { basic, bottleneck };

/// @brief ResNet hyper-parameters (torchvision names where they exist).
struct ResNetConfig {
  ResNetBlock block = ResNetBlock::basic;      ///< BasicBlock (expansion 1) or Bottleneck (expansion 4)
  std::vector<int64_t> layers{2, 2, 2, 2};     ///< blocks per stage
  int64_t num_classes = 1000;                  ///< fc outputs (ignored when include_fc is false)
  int64_t in_channels = 3;                     ///< 3 (torchvision) or 1 (torchxrayvision stem)
  int64_t width = 64;                          ///< stem channels; stage k has width * 2^k planes
  int64_t groups = 1;                          ///< grouped 3x3 convs (Bottleneck only)
  int64_t width_per_group = 64;                ///< torchvision `width_per_group` (Bottleneck only)
  bool zero_init_residual = false;             ///< zero the last BN of each block at init
  bool include_fc = true;                      ///< false: forward() returns the pooled features (CXR-CLIP)

  /// @brief Expansion of the block family: 1 (basic) or 4 (bottleneck).
  int64_t expansion() const { return block == ResNetBlock::basic ? 1 : 4; }
  /// @brief Width of the pooled feature vector (= fc input).
  int64_t num_features() const { return width * 8 * expansion(); }

  /// @brief torchvision `resnet18`.
  /// @param num_classes fc outputs
  static ResNetConfig resnet18(int64_t num_classes = 1000) {
    ResNetConfig c;
    c.num_classes = num_classes;
    return c;
  }
  /// @brief torchvision `resnet50` (Bottleneck [3,4,6,3]).
  /// @param num_classes fc outputs
  static ResNetConfig resnet50(int64_t num_classes = 1000) {
    ResNetConfig c;
    c.block = ResNetBlock::bottleneck;
    c.layers = {3, 4, 6, 3};
    c.num_classes = num_classes;
    return c;
  }
  /// @brief torchxrayvision `resnet50-res512-all`: resnet50, 1-channel stem, 18 outputs.
  static ResNetConfig xrv_resnet50() {
    auto c = resnet50(18);
    c.in_channels = 1;
    return c;
  }
  /// @brief CXR-CLIP image encoder: resnet50 with `fc` deleted (2048-d pooled output).
  static ResNetConfig cxr_clip_resnet50() {
    auto c = resnet50();
    c.include_fc = false;
    return c;
  }

  /// @brief Reads a config from JSON (a fixture config with a "constructor" object, or a flat object).
  ///
  /// Fields: `block` ("BasicBlock"/"basic" or "Bottleneck"/"bottleneck"), `layers`, `num_classes`,
  /// `in_channels`, `width`, `groups`, `width_per_group`, `zero_init_residual`, `include_fc`.
  /// @param json the object
  /// @param source file name used in error messages
  static ResNetConfig from_json(const nlohmann::json& json, const std::string& source = "config") {
    const nlohmann::json& j = json.contains("constructor") ? json.at("constructor") : json;
    ResNetConfig c;
    try {
      if (j.contains("block")) {
        const auto b = j.at("block").get<std::string>();
        if (b == "BasicBlock" || b == "basic") c.block = ResNetBlock::basic;
        else if (b == "Bottleneck" || b == "bottleneck") c.block = ResNetBlock::bottleneck;
        else throw std::invalid_argument(source + ": block '" + b + "' is not one of BasicBlock, Bottleneck");
      }
      if (j.contains("layers")) c.layers = j.at("layers").get<std::vector<int64_t>>();
      c.num_classes = j.value("num_classes", c.num_classes);
      c.in_channels = j.value("in_channels", c.in_channels);
      c.width = j.value("width", c.width);
      c.groups = j.value("groups", c.groups);
      c.width_per_group = j.value("width_per_group", c.width_per_group);
      c.zero_init_residual = j.value("zero_init_residual", c.zero_init_residual);
      c.include_fc = j.value("include_fc", c.include_fc);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(source + ": invalid ResNet config: " + e.what());
    }
    c.validate(source);
    return c;
  }

  /// @brief Throws std::invalid_argument naming the first bad field.
  /// @param source name used in the message
  void validate(const std::string& source = "ResNetConfig") const {
    auto need = [&](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument(source + ": " + what);
    };
    need(layers.size() == 4, "layers must have 4 entries (one per stage), got " + std::to_string(layers.size()));
    for (auto n : layers) need(n > 0, "every layers entry must be > 0");
    need(in_channels == 1 || in_channels == 3, "in_channels must be 1 or 3, got " + std::to_string(in_channels));
    need(width > 0, "width must be > 0, got " + std::to_string(width));
    need(!include_fc || num_classes > 0, "num_classes must be > 0 when include_fc is true");
    if (block == ResNetBlock::basic)
      need(groups == 1 && width_per_group == 64, "BasicBlock only supports groups=1 and width_per_group=64 (as torchvision)");
    need(groups > 0 && width_per_group > 0, "groups and width_per_group must be > 0");
  }
};

namespace detail {
inline torch::nn::Conv2d conv_nobias(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).groups(groups).bias(false));
}
/// conv1x1(stride) + BN, registered as a Sequential so the keys are `downsample.0` / `downsample.1`.
inline torch::nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Sequential(conv_nobias(in, out, 1, stride, 0), torch::nn::BatchNorm2d(out));
}
}  // namespace detail

/// @brief Two 3x3 convolutions with identity shortcut (torchvision `BasicBlock`, expansion 1).
class BasicBlockImpl : public torch::nn::Module {
 public:
  /// @param inplanes input channels
  /// @param planes output channels
  /// @param stride stride of conv1 (and the downsample)
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride) {
    conv1 = register_module("conv1", detail::conv_nobias(inplanes, planes, 3, stride, 1));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", detail::conv_nobias(planes, planes, 3, 1, 1));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
    if (stride != 1 || inplanes != planes) downsample = register_module("downsample", detail::make_downsample(inplanes, planes, stride));
  }
  /// @param x [N, inplanes, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  /// @brief The BN whose weight zero_init_residual zeroes.
  torch::nn::BatchNorm2d& last_bn() { return bn2; }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};     ///< 3x3 convolutions
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};    ///< their BNs
  torch::nn::Sequential downsample{nullptr};            ///< projection shortcut (or null)
};
TORCH_MODULE(BasicBlock);

/// @brief 1x1-3x3-1x1 bottleneck, stride on the 3x3 (torchvision `Bottleneck` "v1.5", expansion 4).
class BottleneckImpl : public torch::nn::Module {
 public:
  /// @param inplanes input channels
  /// @param planes bottleneck planes (output = 4 * planes)
  /// @param stride stride of conv2 (and the downsample)
  /// @param groups groups of conv2
  /// @param base_width torchvision `width_per_group`
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, int64_t groups, int64_t base_width) {
    const int64_t w = static_cast<int64_t>(static_cast<double>(planes) * (static_cast<double>(base_width) / 64.0)) * groups;
    const int64_t out = planes * 4;
    conv1 = register_module("conv1", detail::conv_nobias(inplanes, w, 1, 1, 0));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(w));
    conv2 = register_module("conv2", detail::conv_nobias(w, w, 3, stride, 1, groups));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(w));
    conv3 = register_module("conv3", detail::conv_nobias(w, out, 1, 1, 0));
    bn3 = register_module("bn3", torch::nn::BatchNorm2d(out));
    if (stride != 1 || inplanes != out) downsample = register_module("downsample", detail::make_downsample(inplanes, out, stride));
  }
  /// @param x [N, inplanes, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = torch::relu(bn2(conv2(out)));
    out = bn3(conv3(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  /// @brief The BN whose weight zero_init_residual zeroes.
  torch::nn::BatchNorm2d& last_bn() { return bn3; }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};  ///< 1x1, 3x3, 1x1
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};   ///< their BNs
  torch::nn::Sequential downsample{nullptr};                         ///< projection shortcut (or null)
};
TORCH_MODULE(Bottleneck);

/// @brief ResNet trunk + optional `fc` head.
class ResNetImpl : public torch::nn::Module {
 public:
  /// @param cfg hyper-parameters (validated; throws std::invalid_argument when out of range)
  explicit ResNetImpl(ResNetConfig cfg) : cfg_(std::move(cfg)) {
    cfg_.validate();
    conv1 = register_module("conv1", detail::conv_nobias(cfg_.in_channels, cfg_.width, 7, 2, 3));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(cfg_.width));
    int64_t inplanes = cfg_.width;
    torch::nn::Sequential* stages[4] = {&layer1, &layer2, &layer3, &layer4};
    for (int s = 0; s < 4; ++s) {
      const int64_t planes = cfg_.width << s;
      const int64_t stride = s == 0 ? 1 : 2;
      torch::nn::Sequential seq;
      for (int64_t b = 0; b < cfg_.layers[s]; ++b) {
        const int64_t st = b == 0 ? stride : 1;
        if (cfg_.block == ResNetBlock::basic) seq->push_back(BasicBlock(inplanes, planes, st));
        else seq->push_back(Bottleneck(inplanes, planes, st, cfg_.groups, cfg_.width_per_group));
        inplanes = planes * cfg_.expansion();
      }
      *stages[s] = register_module("layer" + std::to_string(s + 1), seq);
    }
    if (cfg_.include_fc) fc = register_module("fc", torch::nn::Linear(inplanes, cfg_.num_classes));
    reset_parameters();
  }

  /// @brief torchvision initialisation: Kaiming-normal (fan_out, relu) convs, BN 1/0, optional zero-init residual.
  void reset_parameters() {
    torch::NoGradGuard ng;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      }
    }
    if (cfg_.zero_init_residual) {
      for (auto& m : modules(false)) {
        if (auto* b = m->as<BasicBlock>()) b->last_bn()->weight.zero_();
        if (auto* b = m->as<Bottleneck>()) b->last_bn()->weight.zero_();
      }
    }
  }

  /// @brief Output of `layer4` [N, num_features, H/32, W/32].
  /// @param x images [N, in_channels, H, W]
  torch::Tensor layer4_output(const torch::Tensor& x) {
    if (x.dim() != 4 || x.size(1) != cfg_.in_channels)
      throw std::invalid_argument("ResNet: expected images [N, " + std::to_string(cfg_.in_channels) + ", H, W], got " +
                                  c10::str(x.sizes()));
    auto h = torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
    return layer4->forward(layer3->forward(layer2->forward(layer1->forward(h))));
  }
  /// @brief avgpool → flatten: the penultimate vector (xrv `ResNet.features`, CXR-CLIP `ResNet50.forward`).
  /// @param x images [N, in_channels, H, W]
  torch::Tensor features(const torch::Tensor& x) { return pool(layer4_output(x)); }
  /// @brief Logits [N, num_classes] with `fc`, else the pooled features.
  /// @param x images [N, in_channels, H, W]
  torch::Tensor forward(const torch::Tensor& x) {
    auto f = features(x);
    return fc ? fc(f) : f;
  }
  /// @brief Global average pool + flatten of a layer4 map.
  /// @param map output of layer4_output()
  static torch::Tensor pool(const torch::Tensor& map) { return torch::adaptive_avg_pool2d(map, {1, 1}).flatten(1); }
  /// @brief The configuration.
  const ResNetConfig& config() const { return cfg_; }

  torch::nn::Conv2d conv1{nullptr};       ///< 7x7 stride-2 stem
  torch::nn::BatchNorm2d bn1{nullptr};    ///< stem BN
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};  ///< stages
  torch::nn::Linear fc{nullptr};          ///< classifier (null when include_fc is false)

 private:
  ResNetConfig cfg_;
};
TORCH_MODULE(ResNet);

}  // namespace cxrl::nn
