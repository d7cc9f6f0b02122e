// `check-rewards`: do the rewards prefer the truth? Each held-out study's own image is scored under its true caption
// and under a caption that changes one fact (the side for r_side; the KL grade, ±2 or more, for r_grade and the judge).
// A reward that cannot tell them apart on real images cannot teach a generator; the command fails (exit 1) when a
// paired 95% interval of true − altered does not lie above 0.
#pragma once

#include "assets.hpp"
#include "rewards.hpp"
#include "world.hpp"

#include <cxrl/app/settings.hpp>
#include <cxrl/eval/bootstrap.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace knee_rl {

struct CheckRewardsOptions {
  std::string classifier = (assets_dir() / "kl_classifier.pt").string();
  std::string judge = (assets_dir() / "kl_judge.pt").string();
  uint64_t world_seed = 0;
  int64_t n = 200;
  int resolution = 32;
};

/// Scores of the true and the altered captions per study, and whether every interval lies above 0.
inline bool run_check_rewards(const CheckRewardsOptions& o) {
  need_asset(o.classifier, "KL classifier (TorchScript)", "--classifier FILE.pt", "scripts/train_knee_classifier.py");
  need_asset(o.judge, "judge KL classifier (TorchScript)", "--judge FILE.pt", "scripts/train_knee_classifier.py --seed 1");
  KneeDataset d(o.world_seed, cxrl::data::Split::test, static_cast<std::size_t>(o.n), o.resolution);
  std::vector<torch::Tensor> images;
  std::vector<std::string> truth, other_side, other_grade;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const auto s = d.get(i);
    images.push_back(s.image);
    truth.push_back(s.prompt);
    auto f = s.labels;
    f.side = f.side == Side::right ? Side::left : Side::right;
    other_side.push_back(caption(f, Phrasing::test, i));
    f = s.labels;
    f.kl_grade = f.kl_grade >= 2 ? f.kl_grade - 2 : f.kl_grade + 2;
    other_grade.push_back(caption(f, Phrasing::test, i));
  }
  const auto x = torch::stack(images);
  SideReward side;
  GradeReward grade(cxrl::nn::TorchScriptClassifier::load(o.classifier));
  GradeJudge judge(cxrl::nn::TorchScriptClassifier::load(o.judge));
  auto as_vec = [](const torch::Tensor& t) {
    const auto c = t.to(torch::kDouble).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  bool ok = true;
  auto report = [&](const char* name, const torch::Tensor& yes, const torch::Tensor& no) {
    const auto a = as_vec(no), b = as_vec(yes);
    const auto dlt = cxrl::eval::paired_bootstrap(cxrl::eval::mean_of(a), {cxrl::eval::mean_of(b)}, static_cast<int64_t>(a.size()));
    std::printf("%-12s true caption %.4f  altered %.4f  difference %+.4f [%+.4f, %+.4f]%s\n", name, dlt.value, dlt.reference, dlt.delta,
                dlt.lo, dlt.hi, dlt.lo > 0 ? "" : "  <- does not prefer the truth");
    ok = ok && dlt.lo > 0;
  };
  torch::NoGradGuard ng;
  report("side", side.score(x, truth), side.score(x, other_side));
  report("grade", grade.score(x, truth), grade.score(x, other_grade));
  report("judge_grade", judge.score(x, truth), judge.score(x, other_grade));
  return ok;
}

inline void add_check_rewards_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("check-rewards", "do the rewards score held-out images higher under their true captions? (exit 1 if not)");
  auto o = std::make_shared<CheckRewardsOptions>();
  auto s = std::make_shared<cxrl::app::Settings>(cmd);
  s->add("classifier", o->classifier, "KL classifier of r_grade (TorchScript .pt)");
  s->add("judge", o->judge, "judge KL classifier (TorchScript .pt)");
  s->add("world_seed", o->world_seed, "world seed of the held-out studies");
  s->add("n", o->n, "held-out studies");
  s->add("resolution", o->resolution, "image side in pixels (the classifiers' input size)");
  cmd->callback([o, s] {
    s->resolve();
    if (!run_check_rewards(*o)) throw CLI::RuntimeError(1);
  });
}

}  // namespace knee_rl
