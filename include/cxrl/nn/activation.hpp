/// @file
/// @brief Activations and time-embedding norms as enums, with the config-file names of diffusers and transformers.
///
/// Config files name activations by string; the models switch on these enums, so a name is looked up once, where
/// the config is read, and an unknown name fails there with the allowed names listed. Torch-free: the config
/// headers that use it are built without LibTorch by the fuzz harnesses.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::nn {

/// @brief Element-wise activation of a layer; `activation(Activation, x)` in layers.hpp applies it.
enum class Activation {
  silu,        ///< x·sigmoid(x) (diffusers also calls it "swish")
  mish,        ///< x·tanh(softplus(x))
  gelu,        ///< exact GELU, x·Φ(x) with the erf form of Φ
  gelu_tanh,   ///< GELU with the tanh approximation of Φ
  quick_gelu,  ///< x·sigmoid(1.702·x), CLIP's approximation of GELU
  relu,        ///< max(x, 0)
};

/// @brief How a ResnetBlock2D injects the time embedding (diffusers `resnet_time_scale_shift` /
///        `time_embedding_norm`).
enum class TimeEmbeddingNorm {
  add,          ///< "default": h + proj(temb) before norm2
  scale_shift,  ///< "scale_shift": FiLM, norm2(h)·(1 + scale) + shift with [scale, shift] = proj(temb)
};

/// @brief Which library's names a config file uses for activations.
enum class ActivationNaming {
  diffusers,     ///< diffusers `get_activation` (`activations.py`): silu, swish, mish, gelu, relu
  transformers,  ///< transformers `ACT2FN` (`activations.py`), the subset the text encoders implement
};

/// @brief One accepted config-file spelling of an activation.
struct ActivationName {
  std::string_view name;  ///< spelling in config files
  Activation value;       ///< what it means
};

/// @brief Names diffusers' `get_activation` accepts (diffusers 0.24 `models/activations.py`), in its order.
inline constexpr std::array<ActivationName, 5> kDiffusersActivationNames{{
    {"silu", Activation::silu},
    {"swish", Activation::silu},
    {"mish", Activation::mish},
    {"gelu", Activation::gelu},
    {"relu", Activation::relu},
}};

/// @brief Names of transformers' `ACT2FN` that the CLIP and BERT text encoders implement. "gelu_new" (the tanh
///        formula written out in Python) and "gelu_pytorch_tanh" (`gelu(approximate="tanh")`) compute the same
///        function and both map to Activation::gelu_tanh.
inline constexpr std::array<ActivationName, 5> kTransformersActivationNames{{
    {"quick_gelu", Activation::quick_gelu},
    {"gelu", Activation::gelu},
    {"gelu_new", Activation::gelu_tanh},
    {"gelu_pytorch_tanh", Activation::gelu_tanh},
    {"relu", Activation::relu},
}};

/// @brief The accepted spellings of @p naming.
/// @param naming the library whose names a config file uses
constexpr std::span<const ActivationName> activation_names(ActivationNaming naming) {
  if (naming == ActivationNaming::diffusers) return kDiffusersActivationNames;
  return kTransformersActivationNames;
}

/// @brief The accepted spellings of @p naming, comma-separated, for an "allowed: …" message.
/// @param naming the library whose names a config file uses
inline std::string allowed_activation_names(ActivationNaming naming) {
  std::string out;
  for (const auto& n : activation_names(naming)) out += (out.empty() ? "" : ", ") + std::string(n.name);
  return out;
}

/// @brief Looks @p name up without throwing, for callers that word their own error (e.g. with the file and key).
/// @param name spelling from a config file
/// @param naming the library whose names the file uses
/// @return the activation, or nullopt when @p naming has no such name
constexpr std::optional<Activation> find_activation(std::string_view name, ActivationNaming naming) {
  for (const auto& n : activation_names(naming))
    if (n.name == name) return n.value;
  return std::nullopt;
}

/// @brief Parses an activation name; throws std::invalid_argument listing the allowed names.
/// @param name spelling from a config file
/// @param naming the library whose names the file uses
inline Activation parse_activation(std::string_view name, ActivationNaming naming) {
  if (auto a = find_activation(name, naming)) return *a;
  throw std::invalid_argument("unsupported " +
                              std::string(naming == ActivationNaming::diffusers ? "diffusers" : "transformers") +
                              " activation \"" + std::string(name) + "\"; allowed: " + allowed_activation_names(naming));
}

/// @brief Parses a diffusers activation name (`act_fn`, `time_embedding_act_fn`, …).
/// @param name spelling from a diffusers config
/// @throws std::invalid_argument listing the allowed names
inline Activation parse_diffusers_activation(std::string_view name) {
  return parse_activation(name, ActivationNaming::diffusers);
}

/// @brief Parses a transformers activation name (`hidden_act`).
/// @param name spelling from a transformers config
/// @throws std::invalid_argument listing the allowed names
inline Activation parse_transformers_activation(std::string_view name) {
  return parse_activation(name, ActivationNaming::transformers);
}

/// @brief The canonical spelling written back to config files. Activation::gelu_tanh is written as
///        "gelu_pytorch_tanh", the transformers name of exactly the function computed; "silu", "mish" and
///        "relu" are accepted by both libraries.
/// @param a the activation
constexpr std::string_view name(Activation a) {
  switch (a) {
    case Activation::silu: return "silu";
    case Activation::mish: return "mish";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_pytorch_tanh";
    case Activation::quick_gelu: return "quick_gelu";
    case Activation::relu: return "relu";
  }
  return "?";  // unreachable for valid enumerators; keeps -Wreturn-type quiet
}

/// @brief Parses a diffusers `resnet_time_scale_shift` / `time_embedding_norm` value ("default", "scale_shift").
/// @param name spelling from a diffusers config
/// @throws std::invalid_argument listing the allowed names
inline TimeEmbeddingNorm parse_time_embedding_norm(std::string_view name) {
  if (name == "default") return TimeEmbeddingNorm::add;
  if (name == "scale_shift") return TimeEmbeddingNorm::scale_shift;
  throw std::invalid_argument("unsupported time embedding norm \"" + std::string(name) +
                              "\"; allowed: default, scale_shift");
}

/// @brief The diffusers spelling of @p n ("default" or "scale_shift").
/// @param n the time-embedding norm
constexpr std::string_view name(TimeEmbeddingNorm n) {
  return n == TimeEmbeddingNorm::scale_shift ? "scale_shift" : "default";
}

}  // namespace cxrl::nn
