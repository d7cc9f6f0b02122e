// `check-learning`: the RL loop's positive control (app/check_learning.hpp). It fine-tunes the anchor against
// mean image brightness alone, with the main job's settings (phantom_run) unless flags say otherwise, and prints
// the held-out gain with a paired interval and in per-sample standard deviations. Run it before reading a null
// CXRL result: if brightness moves and the CXR rewards do not, their signal is the limit, not the loop.
#pragma once

#include "cmd_main.hpp"

#include <cxrl/app/check_learning.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace cxrl_mimic {

struct CheckLearningOptions {
  FinetuneOptions run = phantom_run();  // anchor, policy and DDPO settings (rewards and anchor samples unused)
  int64_t n_eval = 64;                  // held-out validation reports the gain is measured on
  uint64_t eval_seed = 1234;
  std::string out;                      // JSON file for the result ("" = none)
};

/// Trains the control and returns its result as JSON (also written to o.out when given).
inline nlohmann::json run_check_learning(const CheckLearningOptions& o) {
  const auto& r = o.run;
  check_finetune_options(r);
  check_world(r.world);
  if (o.n_eval < 2) throw std::invalid_argument("check-learning: --n_eval must be >= 2");
  if (r.threads > 0) torch::set_num_threads(static_cast<int>(r.threads));
  auto sd = cxrl::diffusion::StableDiffusion::from_pretrained(r.assets.roentgen);
  // The held-out gain compares the anchor's samples with the policy's, so both are drawn in fp32.
  if (r.policy.precision == "bf16")
    throw std::invalid_argument("check-learning: --precision bf16: the anchor and the policy it is compared with are both sampled in fp32");
  auto policy = make_policy(sd, r.policy);  // "auto" starts, and here stays, in fp32
  const auto heldout = impressions(r.world, cxrl::data::Split::validate, static_cast<std::size_t>(o.n_eval));
  const auto c = cxrl::app::check_learning(policy, make_sampler(sd, r.policy),
                                           cxrl::app::uniform_prompts(impressions(r.world, cxrl::data::Split::train, static_cast<std::size_t>(r.n_prompts))),
                                           heldout, trainer_config(r), r.epochs, o.eval_seed, r.quiet);
  nlohmann::json js{{"reward", "brightness"}, {"roentgen", r.assets.roentgen}, {"epochs", c.epochs},
                    {"samples", c.epochs * r.batch_size * r.num_batches}, {"learning_rate", r.learning_rate},
                    {"n_heldout", c.n_heldout}, {"split", "validate"}, {"anchor", c.delta.reference}, {"policy", c.delta.value},
                    {"delta", c.delta.delta}, {"ci", {c.delta.lo, c.delta.hi}}, {"anchor_sd", c.anchor_sd}, {"gain_sd", c.gain_sd()}};
  if (!o.out.empty()) write_json(o.out, js);
  return js;
}

inline void add_check_learning_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("check-learning", "positive control: fine-tune against mean brightness alone and report the held-out gain");
  auto o = std::make_shared<CheckLearningOptions>();
  auto s = std::make_shared<Settings>(cmd);
  auto& r = o->run;
  s->add("out", o->out, "JSON file for the result (default: none)");
  add_asset_settings(*s, r.assets, /*rewards=*/false);
  add_world_settings(*s, r.world);
  add_policy_settings(*s, r.policy);
  s->add("epochs", r.epochs, "epochs");
  s->add("batch_size", r.batch_size, "prompts per sampling call");
  s->add("num_batches", r.num_batches, "sampling calls per epoch");
  s->add("train_batch_size", r.train_batch_size, "samples per training minibatch (0 = batch_size)");
  s->add("timestep_fraction", r.timestep_fraction, "fraction of the denoising steps trained per sample");
  s->add("learning_rate", r.learning_rate, "AdamW learning rate");
  s->add("clip_range", r.clip_range, "PPO clip range");
  s->add("n_prompts", r.n_prompts, "training-split reports to draw prompts from");
  s->add("n_eval", o->n_eval, "held-out validation reports the gain is measured on");
  s->add("eval_seed", o->eval_seed, "seed of the held-out noise and of the bootstrap");
  s->add("threads", r.threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", r.quiet, "no progress output");
  cmd->callback([o, s] {
    s->resolve();
    const auto js = run_check_learning(*o);
    std::printf("check-learning: mean brightness %.4f (anchor) -> %.4f after %lld epochs on %lld held-out validation reports: "
                "delta %+.4f [%+.4f, %+.4f], %.1f per-sample SDs of the anchor\n",
                js.at("anchor").get<double>(), js.at("policy").get<double>(), static_cast<long long>(js.at("epochs").get<int64_t>()),
                static_cast<long long>(js.at("n_heldout").get<int64_t>()), js.at("delta").get<double>(), js.at("ci")[0].get<double>(),
                js.at("ci")[1].get<double>(), js.at("gain_sd").get<double>());
  });
}

}  // namespace cxrl_mimic
