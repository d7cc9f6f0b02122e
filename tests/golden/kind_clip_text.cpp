// Golden kind "clip_text": transformers CLIPTextModel outputs (last_hidden_state, pooler, every hidden state,
// and the same with the padding attention_mask). Outputs to compare are discovered from the io tensor names:
// `<name>` comes from the plain run, `<name>_masked` from the run with `attention_mask`.
#include "golden.hpp"

#include <cxrl/nn/clip_text_model.hpp>

CXRL_GOLDEN_KIND("clip_text") {
  using namespace cxrl::nn;
  const auto cfg = CLIPTextConfig::load(ctx.file("config"));
  CLIPTextModel model(cfg);
  load_clip_text_weights(model, cxrl::io::load_safetensors(ctx.file("weights")), ctx.file("weights").string());
  model->eval();
  torch::NoGradGuard ng;

  const auto ids = ctx.tensor("input_ids");
  auto run = [&](const torch::Tensor& mask) {
    std::map<std::string, torch::Tensor> o;
    auto r = model->forward(ids, mask, /*output_hidden_states=*/true);
    o["last_hidden_state"] = r.last_hidden_state;
    o["pooler_output"] = r.pooler_output;
    o["pooler_index"] = r.pooler_index;
    for (std::size_t i = 0; i < r.hidden_states.size(); ++i) o["hidden_states." + std::to_string(i)] = r.hidden_states[i];
    return o;
  };
  const auto plain = run({});
  std::map<std::string, torch::Tensor> masked;
  if (ctx.has("attention_mask")) masked = run(ctx.tensor("attention_mask"));

  const std::string suffix = "_masked";
  for (const auto& key : ctx.io_keys()) {
    if (key == "input_ids" || key == "attention_mask") continue;
    if (key == "eos_token_position") {
      // The 4.30 pooler does not use it (argmax-of-ids rule); it is the index the eos-token rule of
      // transformers >= 4.31 would pick, which ClipPooling::eos_token / first_position implement.
      ctx.check_io(key, CLIPTextModelImpl::first_position(ids, cfg.eos_token_id));
      continue;
    }
    const bool is_masked = key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    const auto& outs = is_masked ? masked : plain;
    const auto name = is_masked ? key.substr(0, key.size() - suffix.size()) : key;
    auto it = outs.find(name);
    if (it == outs.end()) {
      ctx.expect(key, false, "no model output named '" + name + "'" + (is_masked ? " (masked run)" : ""));
      ctx.covered(key, "unknown output; failed above");
      continue;
    }
    ctx.check_io(key, it->second);
  }
}
