// resnet fixtures: torchvision ResNet (BasicBlock / Bottleneck v1.5, scaled widths, 1 or 3 channels).
#include "golden.hpp"
#include "nets_train_bn.hpp"

#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/resnet.hpp>

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

cxrl::nn::ResNet load_model(cxrl::golden::Context& ctx, const cxrl::nn::ResNetConfig& cfg) {
  cxrl::nn::ResNet m(cfg);
  cxrl::golden::load_fixture_weights(ctx, *m);
  return m;
}

void check_outputs(cxrl::golden::Context& ctx, cxrl::nn::ResNet& m, const torch::Tensor& x, const std::string& prefix) {
  auto l4 = m->layer4_output(x);
  auto feats = cxrl::nn::ResNetImpl::pool(l4);
  for (const auto& key : ctx.io_keys()) {
    if (!starts_with(key, prefix + ".") || starts_with(key, prefix + ".bn.")) continue;
    const auto out = key.substr(prefix.size() + 1);
    if (out == "layer4") ctx.check_io(key, l4);
    else if (out == "features") ctx.check_io(key, feats);
    else if (out == "logits" && m->fc) ctx.check_io(key, m->fc(feats));
    else {
      ctx.expect(key, false, "unknown output name '" + out + "' (or logits without fc)");
      ctx.covered(key, "failed above");
    }
  }
}

}  // namespace

CXRL_GOLDEN_KIND("resnet") {
  const auto cfgj = ctx.json("config");
  const auto cfg = cxrl::nn::ResNetConfig::from_json(cfgj, ctx.file("config").string());
  cxrl::golden::check_cnn_fixture(
      ctx, cfgj, [&] { return load_model(ctx, cfg); },
      [&](auto& m, const torch::Tensor& x, const char* prefix) { check_outputs(ctx, m, x, prefix); });
}
