// bert fixtures: transformers BertModel outputs for batches run with/without mask and token types.
#include "golden.hpp"

#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/bert.hpp>

#include <set>

namespace {
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) { return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0; }
}  // namespace

CXRL_GOLDEN_KIND("bert") {
  const auto cfgj = ctx.json("config");
  const auto cfg = cxrl::nn::BertConfig::from_json(cfgj, ctx.file("config").string());
  cxrl::nn::BertModel model(cfg);
  cxrl::io::load_state_dict(*model, ctx.file("weights"), cxrl::nn::bert_load_options(ctx.file("weights").string()));
  model->eval();
  if (cfgj.contains("num_parameters")) {
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    ctx.expect("num_parameters", n == cfgj["num_parameters"].get<int64_t>(), std::to_string(n));
  }
  torch::NoGradGuard ng;
  // Runs are discovered as "<batch>.<run>.last_hidden_state"; the run name says which inputs it used:
  // "nomask" = ids only; otherwise ids + attention_mask, plus token_type_ids when it ends in "_tt".
  std::set<std::pair<std::string, std::string>> runs;
  for (const auto& key : ctx.io_keys()) {
    if (!ends_with(key, ".last_hidden_state")) continue;
    const auto stem = key.substr(0, key.size() - std::string(".last_hidden_state").size());
    const auto dot = stem.find('.');
    if (dot == std::string::npos) continue;
    runs.emplace(stem.substr(0, dot), stem.substr(dot + 1));
  }
  ctx.expect("runs discovered", !runs.empty(), std::to_string(runs.size()) + " runs");
  for (const auto& [b, run] : runs) {
    const auto ids = ctx.tensor(b + ".input_ids");
    const auto mask = ctx.tensor(b + ".attention_mask");
    torch::Tensor tt;
    if (ctx.has(b + ".token_type_ids")) tt = ctx.tensor(b + ".token_type_ids");
    const bool use_mask = run != "nomask";
    const bool use_tt = ends_with(run, "_tt");
    if (use_tt && !tt.defined()) throw std::runtime_error("run " + b + "." + run + " needs " + b + ".token_type_ids");
    auto out = model(ids, use_mask ? mask : torch::Tensor(), use_tt ? tt : torch::Tensor());
    // Pooling at the [SEP] position uses the batch's mask, also for a run without it.
    const auto& eos_mask = mask;
    const std::string p = b + "." + run + ".";
    for (const auto& key : ctx.io_keys()) {
      if (!starts_with(key, p)) continue;
      const auto what = key.substr(p.size());
      if (what == "last_hidden_state") ctx.check_io(key, out.last_hidden_state);
      else if (what == "pooler_output") ctx.check_io(key, out.pooler_output);
      else if (what == "eos_pooled") ctx.check_io(key, cxrl::nn::eos_pool(out.last_hidden_state, eos_mask));
      else if (starts_with(what, "hidden_states.")) {
        const auto i = std::stoul(what.substr(14));
        if (i >= out.hidden_states.size()) {
          ctx.expect(key, false, "model has only " + std::to_string(out.hidden_states.size()) + " hidden states");
          ctx.covered(key, "failed above");
        } else {
          ctx.check_io(key, out.hidden_states[i]);
        }
      } else {
        ctx.expect(key, false, "unknown output '" + what + "'");
        ctx.covered(key, "failed above");
      }
    }
  }
}
