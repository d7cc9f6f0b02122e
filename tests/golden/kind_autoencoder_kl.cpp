// Golden kind "autoencoder_kl": diffusers 0.24 AutoencoderKL built from the fixture's config.json, weights
// strictly loaded from the file named in fixture.json. Cases come from the io tensor names:
//   image -> moments, latent_mean/logvar/std, latent_sample (= mean + std * latent_sample_noise),
//            reconstruction_mode (= decode(mean)), debug.encoder.* (batch element 0)
//   latents -> decoded, debug.decoder.* (batch element 0)
#include "golden.hpp"

#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>

#include <map>
#include <string>

CXRL_GOLDEN_KIND("autoencoder_kl") {
  using namespace cxrl;
  torch::NoGradGuard ng;
  const auto cfg = nn::AutoencoderKLConfig::load(ctx.file("config"));
  nn::AutoencoderKL vae(cfg);
  io::load_state_dict(*vae, ctx.file("weights"));  // strict
  vae->eval();

  std::map<std::string, torch::Tensor> taps;
  auto tap = [&](const std::string& n, const torch::Tensor& t) { taps[n] = t.narrow(0, 0, 1).clone(); };

  if (ctx.has("image")) {
    const auto image = ctx.tensor("image");
    auto post = vae->encode(image, tap);
    if (ctx.has("moments")) ctx.check_io("moments", post.parameters);
    if (ctx.has("latent_mean")) ctx.check_io("latent_mean", post.mean);
    if (ctx.has("latent_logvar")) ctx.check_io("latent_logvar", post.logvar);
    if (ctx.has("latent_std")) ctx.check_io("latent_std", post.std);
    if (ctx.has("latent_sample_noise"))
      ctx.check_io("latent_sample", post.sample(ctx.tensor("latent_sample_noise")));
    if (ctx.has("reconstruction_mode")) ctx.check_io("reconstruction_mode", vae->decode(post.mode()));
  }
  if (ctx.has("latents")) ctx.check_io("decoded", vae->decode(ctx.tensor("latents"), tap));

  for (const auto& key : ctx.io_keys()) {
    if (key.rfind("debug.", 0) != 0) continue;
    const auto name = key.substr(6);
    if (!taps.count(name)) {
      ctx.expect(key, false, "the model emits no intermediate named '" + name + "'");
      ctx.covered(key, "no such intermediate");
      continue;
    }
    ctx.check_io(key, taps.at(name));
  }
}
