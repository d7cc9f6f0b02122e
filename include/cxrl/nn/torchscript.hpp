/// @file
/// @brief Adapters that let a TorchScript module (exported with `torch.jit.trace`) stand in for a native model.
///
/// A reward model that has no native C++ port can be exported from Python and used through the same
/// interface as the native ones: an image classifier (`forward(images) → logits`, like nn::DenseNet) or an
/// image/text embedder (`encode_image(pixels)`, `encode_text(ids, mask)`, like cxr::CxrClip). The concepts
/// ImageClassifier and ImageTextEmbedder name that interface; generic code is written against them.
///
/// Export in Python:
/// ```python
/// ts = torch.jit.trace(classifier.eval(), torch.zeros(1, 1, 224, 224)); ts.save("clf.pt")
/// ts = torch.jit.trace_module(clip.eval(), {"encode_image": pixels, "encode_text": (ids, mask)}); ts.save("emb.pt")
/// ```
#pragma once

#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/model_concepts.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <concepts>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::nn {

/// @brief A loaded `torch::jit::Module` with tensor-in/tensor-out calls and clear errors.
class TorchScriptModel {
 public:
  /// @brief Wraps an already loaded module (switched to eval mode).
  /// @param m TorchScript module
  /// @param name name used in error messages
  explicit TorchScriptModel(torch::jit::Module m, std::string name = "torchscript module") : m_(std::move(m)), name_(std::move(name)) {
    m_.eval();
  }

  /// @brief Loads a `.pt` saved by `torch.jit.save` / `ScriptModule.save`; throws io::CheckpointError naming the file.
  /// @param path file
  /// @param device where to map the tensors
  static TorchScriptModel load(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
    if (!std::filesystem::exists(path)) throw io::CheckpointError(path.string() + ": TorchScript file not found");
    try {
      return TorchScriptModel(torch::jit::load(path.string(), device), path.string());
    } catch (const c10::Error& e) {
      throw io::CheckpointError(path.string() + ": not a TorchScript archive (save it with torch.jit.trace(...).save); " +
                                e.what_without_backtrace());
    }
  }

  /// @brief Whether the module has a method @p method (e.g. "encode_text").
  /// @param method method name
  bool has_method(const std::string& method) const { return m_.find_method(method).has_value(); }

  /// @brief Calls @p method with tensor arguments; the result must be a tensor (or a tuple/list whose
  /// first element is one, as traced HF-style models return).
  /// @param method method name ("forward" for traced modules)
  /// @param args positional tensor arguments
  torch::Tensor call(const std::string& method, const std::vector<torch::Tensor>& args) {
    auto meth = m_.find_method(method);
    if (!meth) throw std::invalid_argument(name_ + ": has no method '" + method + "'");
    std::vector<c10::IValue> in(args.begin(), args.end());
    c10::IValue out;
    try {
      out = (*meth)(std::move(in));
    } catch (const c10::Error& e) {
      throw std::invalid_argument(name_ + ": calling '" + method + "' with " + std::to_string(args.size()) +
                                  " tensor(s) failed: " + e.what_without_backtrace());
    } catch (const std::exception& e) {  // the interpreter raises torch::jit::JITException
      throw std::invalid_argument(name_ + ": calling '" + method + "' with " + std::to_string(args.size()) +
                                  " tensor(s) failed: " + e.what());
    }
    if (out.isTensor()) return out.toTensor();
    if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
      return out.toTupleRef().elements()[0].toTensor();
    if (out.isList() && out.toListRef().size() > 0 && out.toListRef()[0].isTensor()) return out.toListRef()[0].toTensor();
    throw std::invalid_argument(name_ + ": '" + method + "' returned " + out.tagKind() + ", expected a tensor");
  }

  /// @brief `forward(x)`.
  /// @param x input tensor
  torch::Tensor forward(const torch::Tensor& x) { return call("forward", {x}); }
  /// @brief Moves parameters to @p device.
  /// @param device target
  void to(torch::Device device) { m_.to(device); }
  /// @brief The wrapped module.
  torch::jit::Module& module() { return m_; }

 private:
  torch::jit::Module m_;
  std::string name_;
};

/// @brief A TorchScript image classifier: satisfies ImageClassifier.
class TorchScriptClassifier {
 public:
  /// @param model loaded module whose `forward(images)` returns logits [N, K]
  explicit TorchScriptClassifier(TorchScriptModel model) : model_(std::move(model)) {}
  /// @brief Loads a traced classifier.
  /// @param path `.pt` file
  /// @param device target device
  static TorchScriptClassifier load(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
    return TorchScriptClassifier(TorchScriptModel::load(path, device));
  }
  /// @brief Logits [N, K]; throws std::invalid_argument when the module does not return a 2-D tensor.
  /// @param images input batch in the module's expected format
  torch::Tensor forward(const torch::Tensor& images) {
    auto y = model_.forward(images);
    if (y.dim() != 2 || y.size(0) != images.size(0))
      throw std::invalid_argument("TorchScriptClassifier: expected logits [N, K] with N = " + std::to_string(images.size(0)) + ", got " +
                                  c10::str(y.sizes()));
    return y;
  }
  /// @brief The wrapped model.
  TorchScriptModel& model() { return model_; }

 private:
  TorchScriptModel model_;
};

/// @brief A TorchScript image/text embedder: satisfies ImageTextEmbedder.
class TorchScriptEmbedder {
 public:
  /// @param model loaded module
  /// @param image_method method taking pixels (default "encode_image")
  /// @param text_method method taking (ids, mask) (default "encode_text")
  explicit TorchScriptEmbedder(TorchScriptModel model, std::string image_method = "encode_image", std::string text_method = "encode_text")
      : model_(std::move(model)), image_method_(std::move(image_method)), text_method_(std::move(text_method)) {
    for (const auto* m : {&image_method_, &text_method_})
      if (!model_.has_method(*m))
        throw std::invalid_argument("TorchScriptEmbedder: module has no method '" + *m +
                                    "' (export with torch.jit.trace_module(m, {\"encode_image\": ..., \"encode_text\": ...}))");
  }
  /// @brief Loads a module traced with both methods.
  /// @param path `.pt` file
  /// @param device target device
  static TorchScriptEmbedder load(const std::filesystem::path& path, torch::Device device = torch::kCPU) {
    return TorchScriptEmbedder(TorchScriptModel::load(path, device));
  }
  /// @brief Image embeddings [N, D].
  /// @param pixels preprocessed images
  torch::Tensor encode_image(const torch::Tensor& pixels) { return model_.call(image_method_, {pixels}); }
  /// @brief Text embeddings [B, D].
  /// @param ids [B, L] int64
  /// @param mask [B, L]
  torch::Tensor encode_text(const torch::Tensor& ids, const torch::Tensor& mask) { return model_.call(text_method_, {ids, mask}); }

 private:
  TorchScriptModel model_;
  std::string image_method_, text_method_;
};

}  // namespace cxrl::nn
