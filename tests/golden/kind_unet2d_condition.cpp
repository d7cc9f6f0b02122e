// Golden kind "unet2d_condition": diffusers 0.24 UNet2DConditionModel built from the fixture's config.json,
// weights strictly loaded from the file named in fixture.json. Cases are discovered from io tensor names:
//   sample, timestep, encoder_hidden_states -> out (base case; debug.* are its intermediates for batch 0)
//   encoder_hidden_states_<S>               -> out_<S>  (other context, base sample/timestep)
//   sample_<S> [+ timestep_<S>]             -> out_<S>  (other input, base context)
//   timestep_<S> without sample_<S>         -> out_<S> or out_<S>_t (other timestep)
//   time_proj, time_embedding               -> the timestep sinusoid and MLP of `timestep`
#include "golden.hpp"

#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>

#include <map>
#include <string>

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

}  // namespace

CXRL_GOLDEN_KIND("unet2d_condition") {
  using namespace cxrl;
  torch::NoGradGuard ng;
  const auto cfg = nn::UNet2DConditionConfig::load(ctx.file("config"));
  nn::UNet2DConditionModel unet(cfg);
  io::load_state_dict(*unet, ctx.file("weights"));  // strict: throws listing any key problem
  unet->eval();

  const auto sample = ctx.tensor("sample");
  const auto timestep = ctx.tensor("timestep");
  const auto context = ctx.tensor("encoder_hidden_states");

  // Base run, recording intermediates of batch element 0.
  std::map<std::string, torch::Tensor> taps;
  auto out = unet(sample, timestep, context, [&](const std::string& n, const torch::Tensor& t) {
    taps[n] = t.narrow(0, 0, 1).clone();
  });
  ctx.check_io("out", out);

  const auto keys = ctx.io_keys();
  auto has = [&](const std::string& k) { return ctx.has(k); };
  for (const auto& key : keys) {
    if (starts_with(key, "debug.")) {
      const auto name = key.substr(6);
      if (!taps.count(name)) {
        ctx.expect(key, false, "the model emits no intermediate named '" + name + "'");
        ctx.covered(key, "no such intermediate");
        continue;
      }
      ctx.check_io(key, taps.at(name));
    } else if (key == "time_proj") {
      ctx.check_io(key, unet->time_proj(timestep.reshape({-1}).expand({sample.size(0)})));
    } else if (key == "time_embedding") {
      ctx.check_io(key, unet->time_embed(timestep, sample.size(0), torch::kFloat32));
    } else if (starts_with(key, "encoder_hidden_states_")) {
      const auto s = key.substr(std::string("encoder_hidden_states_").size());
      if (has("sample_" + s)) continue;  // handled with its sample
      ctx.check_io("out_" + s, unet(sample, timestep, ctx.tensor(key)));
    } else if (starts_with(key, "sample_")) {
      const auto s = key.substr(7);
      const auto t = has("timestep_" + s) ? ctx.tensor("timestep_" + s) : timestep;
      const auto c = has("encoder_hidden_states_" + s) ? ctx.tensor("encoder_hidden_states_" + s) : context;
      ctx.check_io("out_" + s, unet(ctx.tensor(key), t, c));
    } else if (starts_with(key, "timestep_")) {
      const auto s = key.substr(9);
      if (has("sample_" + s)) continue;  // handled with its sample
      const auto out_key = has("out_" + s) ? "out_" + s : "out_" + s + "_t";
      if (!has(out_key)) {
        ctx.expect(key, false, "no output out_" + s + " or out_" + s + "_t for this timestep case");
        ctx.covered(key, "no matching output");
        continue;
      }
      ctx.check_io(out_key, unet(sample, ctx.tensor(key), context));
    }
  }
}
