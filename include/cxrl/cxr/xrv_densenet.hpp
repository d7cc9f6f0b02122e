/// @file
/// @brief torchxrayvision DenseNet-121 classifier: 18 pathologies, xrv preprocessing, op_threshs calibration.
///
/// Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and models" (MIDL 2022); semantics of
/// torchxrayvision 1.5.2 (`models.DenseNet`, `models.op_norm`, `utils.normalize`, `utils.fix_resolution`,
/// `datasets.XRayCenterCrop`, `datasets.XRayResizer`).
///
/// Input contract: 1 channel, 224×224, values in [−1024, 1024] = `(2·x/maxval − 1)·1024`.
/// to_xrv_input() converts a generator's [0, 1] images (resizing to 224 when needed).
///
/// **Converting released weights.** The xrv `.pt` files are pickled whole models, not state dicts. Convert once
/// in Python (torchxrayvision installed), keeping the `op_threshs` buffer:
/// ```python
/// import torchxrayvision as xrv
/// from safetensors.torch import save_file
/// m = xrv.models.DenseNet(weights="densenet121-res224-all")   # or: torch.load(path, weights_only=False)
/// sd = {k: v.contiguous() for k, v in m.state_dict().items()}    # 727 entries + "op_threshs"
/// save_file(sd, "densenet121-res224-all.safetensors")
/// ```
/// XrvDenseNet::load() reads that file strictly; `op_threshs` is optional (absent: plain sigmoid outputs).
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/densenet.hpp>

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::cxr {

/// @brief The 18 default pathologies of xrv models, in output order (`xrv.datasets.default_pathologies`).
inline constexpr std::array<std::string_view, 18> kXrvPathologies = {
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema",      "Emphysema",
    "Fibrosis",    "Effusion",      "Pneumonia",    "Pleural_Thickening", "Cardiomegaly", "Nodule",
    "Mass",        "Hernia",        "Lung Lesion",  "Fracture",   "Lung Opacity", "Enlarged Cardiomediastinum"};

/// @brief Index of @p name in kXrvPathologies; throws std::invalid_argument listing the names when absent.
/// @param name pathology name (exact xrv spelling)
inline int xrv_pathology_index(std::string_view name) {
  for (size_t i = 0; i < kXrvPathologies.size(); ++i)
    if (kXrvPathologies[i] == name) return static_cast<int>(i);
  std::string all;
  for (auto p : kXrvPathologies) all += std::string(all.empty() ? "" : ", ") + std::string(p);
  throw std::invalid_argument("xrv: unknown pathology '" + std::string(name) + "' (known: " + all + ")");
}

/// @brief xrv `op_norm`: maps each probability so that its operating point lands at 0.5.
///
/// p < t → p / (2t); otherwise 1 − (1 − p) / (2(1 − t)); a NaN threshold (output not trained) gives 0.5.
/// @param probs sigmoid outputs [N, K]
/// @param op_threshs thresholds [K] (NaN allowed)
inline torch::Tensor op_norm(const torch::Tensor& probs, const torch::Tensor& op_threshs) {
  if (probs.dim() != 2 || op_threshs.dim() != 1 || probs.size(1) != op_threshs.size(0))
    throw std::invalid_argument("op_norm: expected probs [N, K] and op_threshs [K], got " + c10::str(probs.sizes()) + " and " +
                                c10::str(op_threshs.sizes()));
  auto t = op_threshs.to(probs.options()).unsqueeze(0).expand_as(probs);
  auto low = probs / (t * 2);
  auto high = 1.0 - (1.0 - probs) / ((1.0 - t) * 2);
  auto out = torch::where(probs < t, low, high);
  return torch::where(t.isnan(), torch::full_like(out, 0.5), out);
}

/// @brief xrv `utils.normalize`: `(2·(img/maxval) − 1)·1024`, in float32.
/// @param img image of any shape with values in [0, maxval] (e.g. uint8 with maxval 255)
/// @param maxval value mapped to 1024; throws std::invalid_argument when img.max() exceeds it
inline torch::Tensor xrv_normalize(const torch::Tensor& img, double maxval) {
  if (!(maxval > 0)) throw std::invalid_argument("xrv_normalize: maxval must be > 0");
  const double mx = img.max().item<double>();
  if (mx > maxval)
    throw std::invalid_argument("xrv_normalize: image max " + std::to_string(mx) + " exceeds maxval " + std::to_string(maxval));
  auto x = img.to(torch::kFloat32) / static_cast<float>(maxval);
  return (2 * x - 1.0) * 1024;
}

/// @brief xrv `XRayCenterCrop`: square crop of side min(H, W) at (H/2 − S/2, W/2 − S/2) (integer division).
/// @param img [..., H, W]
inline torch::Tensor xrv_center_crop(const torch::Tensor& img) {
  if (img.dim() < 2) throw std::invalid_argument("xrv_center_crop: expected [..., H, W], got " + c10::str(img.sizes()));
  const auto H = img.size(-2), W = img.size(-1), S = std::min(H, W);
  const auto sy = H / 2 - S / 2, sx = W / 2 - S / 2;
  return img.narrow(-2, sy, S).narrow(-1, sx, S);
}

/// @brief xrv `fix_resolution`: bilinear resize with antialias (align_corners false) to size×size.
/// @param x [N, C, H, W] floating
/// @param size target side
inline torch::Tensor xrv_fix_resolution(const torch::Tensor& x, int64_t size) {
  if (x.dim() != 4) throw std::invalid_argument("xrv_fix_resolution: expected [N, C, H, W], got " + c10::str(x.sizes()));
  if (x.size(2) == size && x.size(3) == size) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{size, size})
                               .mode(torch::kBilinear)
                               .align_corners(false)
                               .antialias(true));
}

/// @brief xrv `XRayResizer(size)` (skimage 0.19 `resize(mode="constant", preserve_range=True)`): when
/// shrinking, a Gaussian prefilter with σ = (scale − 1)/2 (zero padding, truncate 4σ), then linear
/// interpolation at (i + 0.5)·scale − 0.5 (scipy `zoom`, grid_mode), clipped to the input range. Computed in float64.
/// @param img [C, H, W] (C is not resized)
/// @param size output side
inline torch::Tensor xrv_xray_resize(const torch::Tensor& img, int64_t size) {
  if (img.dim() != 3) throw std::invalid_argument("xrv_xray_resize: expected [C, H, W], got " + c10::str(img.sizes()));
  auto x = img.to(torch::kFloat64).unsqueeze(0);  // [1, C, H, W]
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  for (int axis = 2; axis <= 3; ++axis) {
    const double scale = static_cast<double>(x.size(axis)) / static_cast<double>(size);
    const double sigma = std::max(0.0, (scale - 1.0) / 2.0);
    if (sigma <= 1e-15) continue;
    const auto radius = static_cast<int64_t>(4.0 * sigma + 0.5);
    auto k = torch::arange(-radius, radius + 1, x.options());
    k = torch::exp(-0.5 * k * k / (sigma * sigma));
    k = k / k.sum();
    const auto C = x.size(1);
    auto w = axis == 2 ? k.view({1, 1, -1, 1}) : k.view({1, 1, 1, -1});
    w = w.expand({C, 1, w.size(2), w.size(3)}).contiguous();
    std::vector<int64_t> pad = axis == 2 ? std::vector<int64_t>{radius, 0} : std::vector<int64_t>{0, radius};
    x = torch::conv2d(x, w, {}, 1, pad, 1, C);
  }
  namespace F = torch::nn::functional;
  x = F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kBilinear).align_corners(false));
  return x.clamp(lo, hi).squeeze(0).to(c10::isFloatingType(img.scalar_type()) ? img.scalar_type() : torch::kFloat32);
}

/// @brief Converts generator images in [0, 1] to the xrv input contract: [N, 1, 224, 224] in [−1024, 1024].
///
/// Throws std::invalid_argument for a non-4D tensor, channels other than 1, a non-square image (crop first
/// with xrv_center_crop), or values outside [0, 1] (beyond 1e-3 slack; within it, values are clamped).
/// @param images [N, 1, H, W] in [0, 1]
/// @param resolution target side (xrv DenseNet-121: 224)
inline torch::Tensor to_xrv_input(const torch::Tensor& images, int64_t resolution = 224) {
  if (images.dim() != 4)
    throw std::invalid_argument("to_xrv_input: expected images [N, 1, H, W], got " + c10::str(images.sizes()));
  if (images.size(1) != 1)
    throw std::invalid_argument("to_xrv_input: xrv models take 1 channel (grayscale), got " + std::to_string(images.size(1)) +
                                " channels in " + c10::str(images.sizes()) + "; convert to grayscale first");
  if (images.size(2) != images.size(3))
    throw std::invalid_argument("to_xrv_input: expected square images, got " + c10::str(images.sizes()) +
                                "; crop first with xrv_center_crop");
  if (!images.is_floating_point())
    throw std::invalid_argument("to_xrv_input: expected floating images in [0, 1]; for uint8 use xrv_normalize(img, 255)");
  const double mn = images.min().item<double>(), mx = images.max().item<double>();
  if (mn < -1e-3 || mx > 1.0 + 1e-3 || std::isnan(mn) || std::isnan(mx))
    throw std::invalid_argument("to_xrv_input: expected values in [0, 1], got [" + std::to_string(mn) + ", " + std::to_string(mx) + "]");
  auto x = (2 * images.clamp(0.0, 1.0).to(torch::kFloat32) - 1.0) * 1024;
  return xrv_fix_resolution(x, resolution);
}

/// @brief torchxrayvision DenseNet classifier (a nn::DenseNet plus pathologies and op_threshs).
class XrvDenseNet {
 public:
  /// @param cfg architecture (default: DenseNet-121, 1 channel, 18 outputs)
  /// @param resolution input side the weights were trained at (images of other square sizes are resized)
  explicit XrvDenseNet(nn::DenseNetConfig cfg = nn::DenseNetConfig::densenet121(1, 18), int64_t resolution = 224)
      : model_(std::move(cfg)), resolution_(resolution) {
    model_->eval();
  }

  /// @brief Loads a safetensors state dict (xrv keys `features.*`, `classifier.*`, optional `op_threshs`) strictly.
  /// @param path converted weights (see the file comment)
  /// @param cfg architecture
  /// @param device where to place the model
  /// @param resolution input side the weights were trained at (224 for the released xrv weights)
  static XrvDenseNet load(const std::filesystem::path& path, nn::DenseNetConfig cfg = nn::DenseNetConfig::densenet121(1, 18),
                          torch::Device device = torch::kCPU, int64_t resolution = 224) {
    XrvDenseNet m(std::move(cfg), resolution);
    auto sd = io::load_safetensors(path);
    auto it = sd.find("op_threshs");
    if (it != sd.end()) {
      if (it->second.dim() != 1 || it->second.size(0) != m.model_->config().num_classes)
        throw io::CheckpointError(path.string() + ": 'op_threshs' has shape " + c10::str(it->second.sizes()) + ", expected [" +
                                  std::to_string(m.model_->config().num_classes) + "]");
      m.op_threshs_ = it->second.to(torch::kFloat32).clone();
      sd.erase(it);
    }
    io::LoadOptions o;
    o.source = path.string();
    io::load_state_dict(*m.model_, sd, o);
    m.to(device);
    return m;
  }

  /// @brief Moves the model (and thresholds) to @p device.
  /// @param device target
  void to(torch::Device device) {
    model_->to(device);
    if (op_threshs_.defined()) op_threshs_ = op_threshs_.to(device);
  }

  /// @brief Sets the calibration thresholds [num_classes] (NaN = untrained output); undefined disables op_norm.
  /// @param t thresholds
  void set_op_threshs(torch::Tensor t) {
    if (t.defined() && (t.dim() != 1 || t.size(0) != model_->config().num_classes))
      throw std::invalid_argument("XrvDenseNet: op_threshs must be [" + std::to_string(model_->config().num_classes) + "], got " +
                                  c10::str(t.sizes()));
    op_threshs_ = std::move(t);
  }
  /// @brief Calibration thresholds (undefined when none).
  const torch::Tensor& op_threshs() const { return op_threshs_; }
  /// @brief Apply a sigmoid when there are no thresholds (xrv `apply_sigmoid`); default true.
  /// @param on flag
  void set_apply_sigmoid(bool on) { apply_sigmoid_ = on; }

  /// @brief Raw logits [N, K] for xrv-range input (resized to the model resolution when square and different).
  /// @param x [N, 1, H, W] in [−1024, 1024]
  torch::Tensor logits(const torch::Tensor& x) { return model_->classifier(features2(x)); }
  /// @brief xrv `features2`: relu → global average pool → flatten of the trunk, [N, 1024] for DenseNet-121.
  /// @param x [N, 1, H, W] in [−1024, 1024]
  torch::Tensor features2(const torch::Tensor& x) { return model_->features2(prepare(x)); }
  /// @brief xrv `forward`: sigmoid + op_norm with thresholds; else sigmoid (or logits when apply_sigmoid is off).
  /// @param x [N, 1, H, W] in [−1024, 1024]
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = logits(x);
    if (op_threshs_.defined()) return op_norm(torch::sigmoid(out), op_threshs_);
    return apply_sigmoid_ ? torch::sigmoid(out) : out;
  }
  /// @brief forward() on generator images in [0, 1] (see to_xrv_input()).
  /// @param images [N, 1, H, W] in [0, 1]
  torch::Tensor predict_images(const torch::Tensor& images) { return forward(to_xrv_input(images, resolution_)); }

  /// @brief predict_images() without gradient, on generator images of 1 or 3 channels (RGB is averaged to
  ///        gray): what cxr::FindingClassifier asks of r_diag's model.
  /// @param images [N, 1|3, H, W] in [0, 1]
  torch::Tensor probabilities(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    model_->eval();
    const auto x = images.size(1) == 3 ? images.mean(1, /*keepdim=*/true) : images;
    return predict_images(x.to(model_->parameters().front().device()));
  }
  /// @brief The output names: pathologies() (cxr::FindingClassifier).
  std::vector<std::string> output_names() const { return pathologies(); }
  /// @brief Pathology names in output order (the 18 defaults unless num_classes differs).
  std::vector<std::string> pathologies() const {
    std::vector<std::string> p;
    if (model_->config().num_classes == static_cast<int64_t>(kXrvPathologies.size()))
      for (auto s : kXrvPathologies) p.emplace_back(s);
    return p;
  }
  /// @brief The underlying network.
  nn::DenseNet& model() { return model_; }
  /// @brief Input resolution.
  int64_t resolution() const { return resolution_; }

 private:
  torch::Tensor prepare(const torch::Tensor& x) const {
    if (x.dim() != 4 || x.size(1) != model_->config().in_channels)
      throw std::invalid_argument("XrvDenseNet: expected [N, " + std::to_string(model_->config().in_channels) + ", H, W] in [-1024, 1024], got " +
                                  c10::str(x.sizes()));
    if (x.size(2) != x.size(3))
      throw std::invalid_argument("XrvDenseNet: expected square images, got " + c10::str(x.sizes()) + "; crop with xrv_center_crop");
    const double mn = x.min().item<double>(), mx = x.max().item<double>();
    if (mn < -1024.5 || mx > 1024.5 || std::isnan(mn) || std::isnan(mx))
      throw std::invalid_argument("XrvDenseNet: input values must lie in [-1024, 1024] (xrv normalisation), got [" + std::to_string(mn) +
                                  ", " + std::to_string(mx) + "]; use to_xrv_input() for [0, 1] images");
    return xrv_fix_resolution(x, resolution_);
  }
  nn::DenseNet model_;
  int64_t resolution_;
  torch::Tensor op_threshs_;
  bool apply_sigmoid_ = true;
};

}  // namespace cxrl::cxr
