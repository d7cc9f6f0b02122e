/// @file
/// @brief What the three CXRL rewards need from their models, and adapters that let any model provide it.
///
/// Each reward is written against a small concept over generator images ([B, 1|3, H, W] in [0, 1]):
/// - **PostureModel** (r_align): `posture(images) → ψ [B, 5]`;
/// - **FindingClassifier** (r_diag): `probabilities(images) → [B, K]` in [0, 1], 0.5 being the decision point,
///   and `output_names()` naming the K outputs (torchxrayvision names: "Effusion", "Cardiomegaly", …);
/// - **ReportImageEmbedder** (r_consist): `embed_images(images) → [B, D]` and `embed_reports(reports) → [B, D]`,
///   both L2-normalised.
///
/// The native models satisfy them directly or through a thin wrapper (PostureNetModel, cxr::XrvDenseNet,
/// CxrClipEmbedder). Any nn::ImageClassifier or nn::ImageTextEmbedder (a TorchScript export, a user's module)
/// becomes one with PostureFromClassifier, FindingsFromClassifier or ReportsFromEmbedder and a description of
/// its input (ImageInput). AnyPostureModel, AnyFindingClassifier and AnyReportEmbedder erase the type, for
/// programs that choose a model from a file at run time.
#pragma once

#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/nn/model_concepts.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace cxrl::cxr {

/// @brief A model of r_align: ψ [B, 5] for images [B, 1|3, H, W] in [0, 1].
template <class M>
concept PostureModel = requires(M& m, const torch::Tensor& images) {
  { m.posture(images) } -> std::convertible_to<torch::Tensor>;
};

/// @brief A model of r_diag: per-output probabilities [B, K] (decision point 0.5) and the K output names.
template <class M>
concept FindingClassifier = requires(M& m, const M& cm, const torch::Tensor& images) {
  { m.probabilities(images) } -> std::convertible_to<torch::Tensor>;
  { cm.output_names() } -> std::convertible_to<std::vector<std::string>>;
};

/// @brief A model of r_consist: L2-normalised image and report embeddings in one space.
template <class M>
concept ReportImageEmbedder = requires(M& m, const torch::Tensor& images, const std::vector<std::string>& reports) {
  { m.embed_images(images) } -> std::convertible_to<torch::Tensor>;
  { m.embed_reports(reports) } -> std::convertible_to<torch::Tensor>;
};

/// @brief The input a network expects, to convert generator images to it.
struct ImageInput {
  int64_t channels = 1;  ///< 1: the channel mean of RGB images; 3: gray images repeated
  int64_t size = 224;    ///< square side; other sizes are resized (bilinear, antialiased when shrinking)
  double lo = 0.0;       ///< value of black ([0, 1] is mapped linearly onto [lo, hi])
  double hi = 1.0;       ///< value of white (torchxrayvision: lo = −1024, hi = 1024)
};

/// @brief Generator images [B, 1|3, H, W] in [0, 1] → the network input described by @p in.
/// @param images square images in [0, 1]
/// @param in the network's input
inline torch::Tensor prepare_images(const torch::Tensor& images, const ImageInput& in) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3) || images.size(2) != images.size(3))
    throw std::invalid_argument("prepare_images: expected square images [B, 1 or 3, H, W], got " + c10::str(images.sizes()));
  if (in.channels != 1 && in.channels != 3) throw std::invalid_argument("ImageInput: channels must be 1 or 3");
  auto x = images.to(torch::kFloat32);
  if (in.channels == 1 && x.size(1) == 3) x = x.mean(1, /*keepdim=*/true);
  if (in.channels == 3 && x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  if (x.size(2) != in.size) {
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{in.size, in.size}).mode(torch::kBilinear).align_corners(false).antialias(true));
  }
  return in.lo + (in.hi - in.lo) * x;
}

namespace detail {
/// The module behind a torch::nn::ModuleHolder, or the object itself.
template <class M>
decltype(auto) impl(M& m) {
  if constexpr (requires { m.ptr(); }) return *m;
  else return (m);
}
/// Device of a module's first parameter (CPU when it has none or is not a module).
template <class M>
torch::Device device_of(M& m) {
  if constexpr (requires { impl(m).parameters(); }) {
    const auto p = impl(m).parameters();
    if (!p.empty()) return p.front().device();
  }
  return torch::kCPU;
}
}  // namespace detail

/// @brief cxr::PostureNet as a PostureModel: gray or RGB images are matched to its in_channels.
class PostureNetModel {
 public:
  /// @param net a trained PostureNet (put in eval mode)
  PostureNetModel(PostureNet net) : net_(std::move(net)) {  // NOLINT: implicit, so AlignReward(net) reads naturally
    if (!net_) throw std::invalid_argument("PostureNetModel: PostureNet is empty");
    net_->eval();
  }
  /// @brief ψ [B, 5] on the network's device, without gradient. @param images [B, 1|3, H, W] in [0, 1], square
  torch::Tensor posture(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    net_->eval();
    auto x = images;
    const auto c = net_->config().in_channels;
    if (c == 1 && x.size(1) == 3) x = x.mean(1, true);
    else if (c == 3 && x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
    else if (x.size(1) != c)
      throw std::invalid_argument("PostureNetModel: the PostureNet takes " + std::to_string(c) + " channels, got " + std::to_string(x.size(1)));
    return net_->forward(x.to(detail::device_of(net_)));
  }
  /// @brief The network.
  PostureNet& net() { return net_; }

 private:
  PostureNet net_;
};

/// @brief Any nn::ImageClassifier whose `forward` returns ψ [B, 5] (e.g. a traced PostureNet) as a PostureModel.
/// @tparam M the classifier type (a ModuleHolder is dereferenced)
template <class M>
class PostureFromClassifier {
  static_assert(nn::ImageClassifier<std::remove_reference_t<decltype(detail::impl(std::declval<M&>()))>>,
                "cxrl PostureFromClassifier: the model needs `torch::Tensor forward(const torch::Tensor& images)`");

 public:
  /// @param model the network @param input what it expects
  PostureFromClassifier(M model, ImageInput input) : m_(std::move(model)), in_(input) {}
  /// @brief ψ [B, 5]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor posture(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    torch::Tensor y = detail::impl(m_).forward(prepare_images(images, in_).to(detail::device_of(m_)));
    if (y.dim() != 2 || y.size(0) != images.size(0) || y.size(1) != 5)
      throw std::invalid_argument("posture model: expected ψ [B, 5] with B = " + std::to_string(images.size(0)) + ", got " + c10::str(y.sizes()));
    return y;
  }

 private:
  M m_;
  ImageInput in_;
};

/// @brief Any nn::ImageClassifier returning logits (or probabilities) as a FindingClassifier.
/// @tparam M the classifier type (a ModuleHolder is dereferenced)
template <class M>
class FindingsFromClassifier {
  static_assert(nn::ImageClassifier<std::remove_reference_t<decltype(detail::impl(std::declval<M&>()))>>,
                "cxrl FindingsFromClassifier: the model needs `torch::Tensor forward(const torch::Tensor& images)`");

 public:
  /**
   * @param model the network
   * @param input what it expects (a torchxrayvision model: 1 channel, 224 px, [−1024, 1024])
   * @param output_names one name per output, in torchxrayvision's spelling where the output is one of its pathologies
   * @param apply_sigmoid true when `forward` returns logits
   */
  FindingsFromClassifier(M model, ImageInput input, std::vector<std::string> output_names, bool apply_sigmoid = true)
      : m_(std::move(model)), in_(input), names_(std::move(output_names)), sigmoid_(apply_sigmoid) {
    if (names_.empty()) throw std::invalid_argument("FindingsFromClassifier: output_names is empty");
  }
  /// @brief Probabilities [B, K]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor probabilities(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    torch::Tensor y = detail::impl(m_).forward(prepare_images(images, in_).to(detail::device_of(m_)));
    if (y.dim() != 2 || y.size(0) != images.size(0) || y.size(1) != static_cast<int64_t>(names_.size()))
      throw std::invalid_argument("finding classifier: expected [B, " + std::to_string(names_.size()) + "] outputs (one per output name), got " +
                                  c10::str(y.sizes()));
    return sigmoid_ ? torch::sigmoid(y) : y;
  }
  /// @brief The output names.
  std::vector<std::string> output_names() const { return names_; }

 private:
  M m_;
  ImageInput in_;
  std::vector<std::string> names_;
  bool sigmoid_;
};

/// @brief How a CXR-CLIP-style dual encoder reads its inputs.
struct ClipInput {
  int64_t image_size = 224;                              ///< cxr_clip_preprocess() side
  ClipNormalize normalize = ClipNormalize::huggingface;  ///< pixel normalisation of the weights
  int64_t max_length = 256;                              ///< WordPiece truncation length
  int64_t channels = 3;                                  ///< image channels the encoder takes (1: the channel mean)
};

/// @brief Any nn::ImageTextEmbedder with a WordPiece tokenizer as a ReportImageEmbedder (outputs L2-normalised).
/// @tparam M the embedder type (a ModuleHolder is dereferenced)
template <class M>
class ReportsFromEmbedder {
  static_assert(nn::ImageTextEmbedder<std::remove_reference_t<decltype(detail::impl(std::declval<M&>()))>>,
                "cxrl ReportsFromEmbedder: the model needs `encode_image(pixels)` and `encode_text(ids, mask)`");

 public:
  /// @param model the dual encoder @param tokenizer its text tokenizer @param input preprocessing
  ReportsFromEmbedder(M model, text::WordPieceTokenizer tokenizer, ClipInput input = {})
      : m_(std::move(model)), tok_(std::move(tokenizer)), in_(input) {}
  /// @brief Image embeddings [B, D]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor embed_images(const torch::Tensor& images) {
    torch::NoGradGuard ng;
    auto x = cxr_clip_preprocess(images, in_.image_size, in_.normalize);
    if (in_.channels == 1) x = x.mean(1, /*keepdim=*/true);
    torch::Tensor e = detail::impl(m_).encode_image(x.to(detail::device_of(m_)));
    return torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(1));
  }
  /// @brief Report embeddings [B, D]. @param reports B texts
  torch::Tensor embed_reports(const std::vector<std::string>& reports) {
    torch::NoGradGuard ng;
    const auto b = tok_.encode_batch(reports, in_.max_length, text::Padding::longest);
    const auto dev = detail::device_of(m_);
    auto ids = torch::tensor(b.input_ids, torch::kLong).view({b.batch, b.length}).to(dev);
    auto mask = torch::tensor(b.attention_mask, torch::kLong).view({b.batch, b.length}).to(dev);
    torch::Tensor e = detail::impl(m_).encode_text(ids, mask);
    return torch::nn::functional::normalize(e, torch::nn::functional::NormalizeFuncOptions().dim(1));
  }
  /// @brief The tokenizer.
  const text::WordPieceTokenizer& tokenizer() const { return tok_; }
  /// @brief The model.
  M& model() { return m_; }

 private:
  M m_;
  text::WordPieceTokenizer tok_;
  ClipInput in_;
};

/// @brief cxr::CxrClip with its tokenizer: preprocessing from the model's own config.
class CxrClipEmbedder : public ReportsFromEmbedder<CxrClip> {
 public:
  /// @param model a CXR-CLIP model (put in eval mode) @param tokenizer its WordPiece tokenizer
  CxrClipEmbedder(CxrClip model, text::WordPieceTokenizer tokenizer)
      : ReportsFromEmbedder<CxrClip>(model, std::move(tokenizer), input_of(model)) {
    model->eval();
  }

 private:
  static ClipInput input_of(const CxrClip& m) {
    if (!m) throw std::invalid_argument("CxrClipEmbedder: CxrClip model is empty");
    return {m->config().image_size, m->config().normalize, m->config().max_length, m->config().image.in_channels};
  }
};

/// @brief A PostureModel of any type, chosen at run time.
class AnyPostureModel {
 public:
  /// @tparam M a PostureModel @param m the model
  template <class M>
    requires(PostureModel<M> && !std::same_as<std::decay_t<M>, AnyPostureModel>)
  AnyPostureModel(M m) : p_(std::make_shared<Holder<M>>(std::move(m))) {}  // NOLINT: implicit by design
  /// @brief ψ [B, 5]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor posture(const torch::Tensor& images) { return p_->posture(images); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual torch::Tensor posture(const torch::Tensor&) = 0;
  };
  template <class M>
  struct Holder : Base {
    explicit Holder(M x) : m(std::move(x)) {}
    torch::Tensor posture(const torch::Tensor& x) override { return m.posture(x); }
    M m;
  };
  std::shared_ptr<Base> p_;
};

/// @brief A FindingClassifier of any type, chosen at run time.
class AnyFindingClassifier {
 public:
  /// @tparam M a FindingClassifier @param m the model
  template <class M>
    requires(FindingClassifier<M> && !std::same_as<std::decay_t<M>, AnyFindingClassifier>)
  AnyFindingClassifier(M m) : p_(std::make_shared<Holder<M>>(std::move(m))) {}  // NOLINT: implicit by design
  /// @brief Probabilities [B, K]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor probabilities(const torch::Tensor& images) { return p_->probabilities(images); }
  /// @brief The K output names.
  std::vector<std::string> output_names() const { return p_->output_names(); }
  /// @brief Per-output thresholds of the wrapped model when it has them (NaN = output not trained), else undefined.
  torch::Tensor op_threshs() const { return p_->op_threshs(); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual torch::Tensor probabilities(const torch::Tensor&) = 0;
    virtual std::vector<std::string> output_names() const = 0;
    virtual torch::Tensor op_threshs() const = 0;
  };
  template <class M>
  struct Holder : Base {
    explicit Holder(M x) : m(std::move(x)) {}
    torch::Tensor probabilities(const torch::Tensor& x) override { return m.probabilities(x); }
    std::vector<std::string> output_names() const override { return m.output_names(); }
    torch::Tensor op_threshs() const override {
      if constexpr (requires { m.op_threshs(); }) return m.op_threshs();
      else return {};
    }
    M m;
  };
  std::shared_ptr<Base> p_;
};

/// @brief A ReportImageEmbedder of any type, chosen at run time.
class AnyReportEmbedder {
 public:
  /// @tparam M a ReportImageEmbedder @param m the model
  template <class M>
    requires(ReportImageEmbedder<M> && !std::same_as<std::decay_t<M>, AnyReportEmbedder>)
  AnyReportEmbedder(M m) : p_(std::make_shared<Holder<M>>(std::move(m))) {}  // NOLINT: implicit by design
  /// @brief Image embeddings [B, D]. @param images [B, 1|3, H, W] in [0, 1]
  torch::Tensor embed_images(const torch::Tensor& images) { return p_->embed_images(images); }
  /// @brief Report embeddings [B, D]. @param reports B texts
  torch::Tensor embed_reports(const std::vector<std::string>& reports) { return p_->embed_reports(reports); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual torch::Tensor embed_images(const torch::Tensor&) = 0;
    virtual torch::Tensor embed_reports(const std::vector<std::string>&) = 0;
  };
  template <class M>
  struct Holder : Base {
    explicit Holder(M x) : m(std::move(x)) {}
    torch::Tensor embed_images(const torch::Tensor& x) override { return m.embed_images(x); }
    torch::Tensor embed_reports(const std::vector<std::string>& r) override { return m.embed_reports(r); }
    M m;
  };
  std::shared_ptr<Base> p_;
};

}  // namespace cxrl::cxr
