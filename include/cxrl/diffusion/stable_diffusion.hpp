/// @file
/// @brief A Stable Diffusion model folder (diffusers layout) loaded as one object: UNet, optional VAE,
///        CLIP text encoder, CLIP tokenizer and the scheduler config.
///
/// Layout (diffusers `StableDiffusionPipeline.save_pretrained`):
/// ```
/// model_index.json                      {"unet": ["diffusers", "UNet2DConditionModel"], "vae": [...], ...}
/// unet/config.json + diffusion_pytorch_model.safetensors
/// vae/config.json + diffusion_pytorch_model.safetensors     (absent / [null, null] for pixel-space models)
/// text_encoder/config.json + model.safetensors
/// tokenizer/vocab.json + merges.txt (+ tokenizer_config.json)
/// scheduler/scheduler_config.json        (read into a DDIM config whatever the class, as ddpo-pytorch does)
/// ```
/// Without model_index.json the folder may be partial: the subfolders present are loaded (unet, text_encoder,
/// tokenizer and scheduler are required; vae is optional, giving a pixel-space model). Components the
/// library does not use (`safety_checker`, `feature_extractor`, `image_encoder`) are ignored; any other
/// component with a non-null entry is an error rather than silently dropped.
///
/// StableDiffusion itself offers encode / predict / decode / sample_shape, so it can be sampled with
/// `generate()` as the plain base model; `cxrl::policy::LoraAcePolicy::from_components` builds the trainable
/// policy on the same (shared) modules.
#pragma once

#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/ddim_config.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::diffusion {

/// @brief The components of a Stable Diffusion model (modules are shared holders).
class StableDiffusion {
 public:
  nn::UNet2DConditionModel unet{nullptr};                  ///< denoiser
  nn::AutoencoderKL vae{nullptr};                          ///< null for pixel-space models
  nn::CLIPTextModel text_encoder{nullptr};                 ///< frozen τθ
  std::shared_ptr<const text::ClipTokenizer> tokenizer;    ///< CLIP BPE
  DDIMSchedulerConfig scheduler_config;                    ///< from scheduler/scheduler_config.json
  nlohmann::json model_index = nlohmann::json::object();   ///< model_index.json (empty when absent)

  /// @brief Loads a diffusers folder (see the file comment for the layout and partial folders).
  /// @param dir the folder
  /// @param device device of every module
  /// @param dtype floating dtype of every module
  /// @throws io::CheckpointError naming a missing subfolder or file; std::invalid_argument for bad or
  ///         inconsistent configs
  static StableDiffusion from_pretrained(const std::filesystem::path& dir, torch::Device device = torch::kCPU,
                                         torch::ScalarType dtype = torch::kFloat32) {
    namespace fs = std::filesystem;
    if (!fs::is_directory(dir)) throw io::CheckpointError(dir.string() + ": not a directory (expected a diffusers model folder)");
    StableDiffusion sd;
    std::set<std::string> wanted;  // subfolders to load
    const auto index_path = dir / "model_index.json";
    if (fs::exists(index_path)) {
      std::ifstream in(index_path);
      try {
        sd.model_index = nlohmann::json::parse(in);
      } catch (const std::exception& e) {
        throw std::invalid_argument(index_path.string() + ": invalid JSON: " + e.what());
      }
      if (!sd.model_index.is_object()) throw std::invalid_argument(index_path.string() + ": expected a JSON object");
      static const std::set<std::string> ignored{"safety_checker", "feature_extractor", "image_encoder"};
      static const std::map<std::string, std::set<std::string>> classes{
          {"unet", {"UNet2DConditionModel"}},
          {"vae", {"AutoencoderKL"}},
          {"text_encoder", {"CLIPTextModel"}},
          {"tokenizer", {"CLIPTokenizer", "CLIPTokenizerFast"}},
          {"scheduler", {}}};  // any scheduler class: its config is read as DDIM's
      for (auto it = sd.model_index.begin(); it != sd.model_index.end(); ++it) {
        const auto& name = it.key();
        if (name.empty() || name[0] == '_' || !it.value().is_array()) continue;  // _class_name, flags
        const auto& v = it.value();
        const bool present = v.size() == 2 && !v[0].is_null() && !v[1].is_null();
        if (!present || ignored.count(name)) continue;
        auto c = classes.find(name);
        if (c == classes.end())
          throw std::invalid_argument(index_path.string() + ": component '" + name + "' (" + v.dump() +
                                      ") is not supported; supported: unet, vae, text_encoder, tokenizer, scheduler");
        const auto cls = v[1].is_string() ? v[1].get<std::string>() : v[1].dump();
        if (!c->second.empty() && !c->second.count(cls))
          throw std::invalid_argument(index_path.string() + ": component '" + name + "' has class '" + cls +
                                      "'; supported: " + join(c->second));
        wanted.insert(name);
      }
      for (const char* req : {"unet", "text_encoder", "tokenizer", "scheduler"})
        if (!wanted.count(req))
          throw io::CheckpointError(index_path.string() + ": component '" + std::string(req) +
                                    "' is missing or null; a text-to-image model needs unet, text_encoder, tokenizer and scheduler");
    } else {
      wanted = {"unet", "text_encoder", "tokenizer", "scheduler"};
      if (fs::is_directory(dir / "vae")) wanted.insert("vae");
    }
    for (const auto& name : wanted)
      if (!fs::is_directory(dir / name))
        throw io::CheckpointError(dir.string() + ": missing subfolder '" + name + "/'" +
                                  (sd.model_index.empty() ? std::string(" (needed for a text-to-image model)")
                                                          : " (listed in model_index.json)"));

    sd.unet = nn::UNet2DConditionModelImpl::from_pretrained(dir / "unet", device, dtype);
    sd.text_encoder = nn::clip_text_model_from_pretrained(dir / "text_encoder", device, dtype);
    sd.tokenizer = std::make_shared<const text::ClipTokenizer>(text::ClipTokenizer::from_pretrained(dir / "tokenizer"));
    const auto sched = dir / "scheduler" / "scheduler_config.json";
    if (!fs::exists(sched)) throw io::CheckpointError(sched.string() + ": not found (the scheduler folder needs scheduler_config.json)");
    sd.scheduler_config = DDIMSchedulerConfig::load(sched);
    if (wanted.count("vae")) sd.vae = nn::AutoencoderKLImpl::from_pretrained(dir / "vae", device, dtype);
    sd.check_consistency(dir.string());
    return sd;
  }

  /// @brief Whether the UNet works on VAE latents (a VAE is present).
  bool is_latent() const { return static_cast<bool>(vae); }

  /// @brief A DDIM scheduler with this model's config.
  DDIMScheduler make_scheduler() const { return DDIMScheduler(scheduler_config); }

  /// @brief {C, H, W} of x_T: {unet in_channels, sample_size, sample_size}.
  std::vector<int64_t> sample_shape() const {
    const auto& c = unet->config();
    if (!c.sample_size) throw std::invalid_argument("StableDiffusion: the UNet config has no sample_size");
    return {c.in_channels, *c.sample_size, *c.sample_size};
  }

  /// @brief {C, H, W} of the decoded images: the VAE's out_channels and the latent size × its scale factor
  ///        for latent models (RoentGen: {3, 512, 512} from {4, 64, 64} latents), sample_shape() otherwise.
  std::vector<int64_t> image_shape() const {
    auto s = sample_shape();
    if (!vae) return s;
    const auto f = vae->config().scale_factor();
    return {vae->config().out_channels, s[1] * f, s[2] * f};
  }

  /// @brief Frozen text encoder output [B, 77, d_τ] for @p prompts (SD tokenisation, no attention mask).
  /// @param prompts texts; "" is the unconditional prompt
  torch::Tensor encode(const std::vector<std::string>& prompts) {
    if (prompts.empty()) throw std::invalid_argument("StableDiffusion::encode: no prompts given");
    torch::NoGradGuard ng;
    const auto L = tokenizer->model_max_length();
    auto ids = torch::empty({static_cast<int64_t>(prompts.size()), L}, torch::kLong);
    for (std::size_t i = 0; i < prompts.size(); ++i)
      ids[static_cast<int64_t>(i)].copy_(torch::tensor(tokenizer->encode_padded(prompts[i]).input_ids, torch::kLong));
    const auto dev = text_encoder->text_model->final_layer_norm->weight.device();
    return text_encoder->forward(ids.to(dev)).last_hidden_state;
  }

  /// @brief UNet output for x_t at t under condition c.
  /// @param x noisy sample [B, C, H, W]
  /// @param t timesteps (0-d or [B])
  /// @param c condition [B, L, d_τ]
  torch::Tensor predict(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    return unet->forward(x, t, c);
  }

  /// @brief x_0 → images in [0, 1]: `vae.decode(x / scaling_factor)` for latent models, identity for pixel
  /// models, then clamp(x/2 + 0.5, 0, 1) (diffusers `VaeImageProcessor.denormalize`).
  /// @param x0 final sample
  torch::Tensor decode(const torch::Tensor& x0) {
    auto img = vae ? vae->decode(x0 / vae->config().scaling_factor) : x0;
    return (img / 2.0 + 0.5).clamp(0.0, 1.0);
  }

  /// @brief The base model has no adapters (lets StableDiffusion model `cxrl::core::Policy` as a fixed policy).
  std::vector<torch::Tensor> trainable_parameters() const { return {}; }
  /// @brief No adapters to switch: enabled or not, this is the base model.
  /// @param on ignored by design (there is nothing to enable)
  void set_adapters_enabled(bool on) { (void)on; }

 private:
  static std::string join(const std::set<std::string>& s) {
    std::string r;
    for (const auto& x : s) r += (r.empty() ? "" : ", ") + x;
    return r;
  }

  void check_consistency(const std::string& where) const {
    const auto& uc = unet->config();
    const auto d = text_encoder->config.hidden_size;
    for (auto x : uc.cross_attention_dim)
      if (x != d)
        throw std::invalid_argument(where + ": unet cross_attention_dim " + std::to_string(x) +
                                    " != text_encoder hidden_size " + std::to_string(d));
    if (tokenizer->vocab_size() > text_encoder->config.vocab_size)
      throw std::invalid_argument(where + ": tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                  " tokens but text_encoder vocab_size is " + std::to_string(text_encoder->config.vocab_size));
    if (vae && vae->config().latent_channels != uc.in_channels)
      throw std::invalid_argument(where + ": vae latent_channels " + std::to_string(vae->config().latent_channels) +
                                  " != unet in_channels " + std::to_string(uc.in_channels));
  }
};

}  // namespace cxrl::diffusion
