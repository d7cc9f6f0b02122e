// densenet fixtures: torchvision DenseNet (xrv layout) eval/train outputs, op_norm, xrv preprocessing.
#include "golden.hpp"
#include "nets_train_bn.hpp"

#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/densenet.hpp>

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

cxrl::nn::DenseNet load_model(cxrl::golden::Context& ctx, const cxrl::nn::DenseNetConfig& cfg) {
  cxrl::nn::DenseNet m(cfg);
  cxrl::golden::load_fixture_weights(ctx, *m);
  return m;
}

// Checks every "<prefix>.<output>" io tensor from one forward of the model in its current mode.
void check_outputs(cxrl::golden::Context& ctx, cxrl::nn::DenseNet& m, const torch::Tensor& x, const std::string& prefix) {
  auto fmap = m->features_map(x);
  auto feats = cxrl::nn::DenseNetImpl::pool(fmap);
  auto logits = m->classifier(feats);
  for (const auto& key : ctx.io_keys()) {
    if (!starts_with(key, prefix + ".") || starts_with(key, prefix + ".bn.")) continue;
    const auto out = key.substr(prefix.size() + 1);
    if (out == "features_map") ctx.check_io(key, fmap);
    else if (out == "features") ctx.check_io(key, feats);
    else if (out == "logits") ctx.check_io(key, logits);
    else if (out == "sigmoid") ctx.check_io(key, torch::sigmoid(logits));
    else if (starts_with(out, "op_norm_")) {
      const auto th = "op_threshs_" + out.substr(8);  // op_norm_<name> uses op_threshs_<name>
      ctx.check_io(key, cxrl::cxr::op_norm(torch::sigmoid(logits), ctx.tensor(th)));
    } else {
      ctx.expect(key, false, "unknown output name '" + out + "'");
      ctx.covered(key, "failed above");
    }
  }
}

void check_preprocess(cxrl::golden::Context& ctx, const std::string& role) {
  auto raw = ctx.tensor("raw_uint8", role);
  auto norm = cxrl::cxr::xrv_normalize(raw, 255.0);
  auto crop = cxrl::cxr::xrv_center_crop(norm.unsqueeze(0));
  for (const auto& key : ctx.io_keys(role)) {
    if (key == "raw_uint8") continue;
    if (key == "normalized") ctx.check(key, norm, ctx.tensor(key, role));
    else if (key == "center_cropped") ctx.check(key, crop, ctx.tensor(key, role));
    else if (starts_with(key, "fix_resolution_")) {
      const auto s = std::stoll(key.substr(15));
      ctx.check(key, cxrl::cxr::xrv_fix_resolution(crop.unsqueeze(0), s), ctx.tensor(key, role));
    } else if (starts_with(key, "xrayresizer_skimage_")) {
      const auto s = std::stoll(key.substr(20));
      // skimage 0.19 resize (Gaussian prefilter + linear zoom), reproduced in float64: fixture tolerance.
      ctx.check(key, cxrl::cxr::xrv_xray_resize(crop, s), ctx.tensor(key, role));
    } else {
      ctx.expect(key, false, "unknown preprocessing tensor");
      ctx.covered(key, "failed above", role);
    }
  }
}

}  // namespace

CXRL_GOLDEN_KIND("densenet") {
  const auto cfgj = ctx.json("config");
  const auto cfg = cxrl::nn::DenseNetConfig::from_json(cfgj, ctx.file("config").string());
  cxrl::golden::check_cnn_fixture(
      ctx, cfgj, [&] { return load_model(ctx, cfg); },
      [&](auto& m, const torch::Tensor& x, const char* prefix) { check_outputs(ctx, m, x, prefix); });
  if (ctx.has_file("preprocess.safetensors")) check_preprocess(ctx, "preprocess.safetensors");
}
