// The program layer (cxrl/app): held-out before/after, the run folder's guards, the prompt pool.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cxrl/app/finetune.hpp>
#include <cxrl/app/heldout.hpp>
#include <cxrl/app/precision_choice.hpp>
#include <cxrl/app/run_folder.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>

#include "../../docs/examples/region_brightness_reward.cpp"
#include "../../docs/examples/toy_policy.cpp"
#include "../core/sd_sampler.hpp"
#include "../policy/tiny_models.hpp"

#include <filesystem>
#include <set>
#include <string>
#include <vector>

using cxrl_examples::RegionBrightness;
using cxrl_examples::ToyPolicy;
namespace fs = std::filesystem;

namespace {

struct Darkness {  // a second term, so the weighted sum has two parts
  static constexpr std::string_view name = "darkness";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return 1.0 - images.mean({1, 2, 3}); }
};

std::vector<std::string> prompts(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("prompt " + std::to_string(i));
  return v;
}

fs::path scratch(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("cxrl_test_app_" + name);
  fs::remove_all(d);
  return d;
}

}  // namespace

TEST_CASE("held-out before/after: the anchor column ignores the adapters, seeds average, the weighted sum is Σ λ·score",
          "[app]") {
  using namespace cxrl::core;
  ToyPolicy policy(3);
  auto sampler = sd_sampler(4, 1.0);
  RewardSum rewards(Absolute{RegionBrightness{}, 2.0}, Comparative{Darkness{}, 0.5});
  const auto p = prompts(6);
  cxrl::eval::BootstrapOptions boot;
  boot.replicates = 200;

  const auto before = cxrl::app::compare_with_anchor(policy, sampler, rewards, p, 4, {1, 2}, boot, true);
  REQUIRE(before.terms.size() == 3);
  CHECK(before.terms[0].name == "brightness");
  CHECK(before.terms[1].name == "darkness");
  CHECK(before.terms[2].name == "weighted sum");
  for (std::size_t i = 0; i < p.size(); ++i) {
    CHECK(before.terms[2].policy[i] == Approx(2.0 * before.terms[0].policy[i] + 0.5 * before.terms[1].policy[i]).epsilon(1e-12));
    CHECK(before.terms[2].anchor[i] == Approx(2.0 * before.terms[0].anchor[i] + 0.5 * before.terms[1].anchor[i]).epsilon(1e-12));
  }
  for (const auto& t : before.terms) {
    CHECK(t.delta.delta == Approx(t.delta.value - t.delta.reference));
    CHECK(t.delta.lo <= t.delta.delta);
    CHECK(t.delta.hi >= t.delta.delta);
  }

  // Two seeds are the per-prompt mean of each seed alone.
  const auto s1 = cxrl::app::compare_with_anchor(policy, sampler, rewards, p, 4, {1}, boot, true);
  const auto s2 = cxrl::app::compare_with_anchor(policy, sampler, rewards, p, 4, {2}, boot, true);
  for (std::size_t i = 0; i < p.size(); ++i)
    CHECK(before.terms[0].policy[i] == Approx((s1.terms[0].policy[i] + s2.terms[0].policy[i]) / 2).epsilon(1e-12));

  // Switching the adapter on changes the policy's column and leaves the anchor's bit-identical.
  {
    torch::NoGradGuard ng;
    for (auto& t : policy.trainable_parameters()) t.fill_(0.3);
  }
  const auto after = cxrl::app::compare_with_anchor(policy, sampler, rewards, p, 4, {1, 2}, boot, true);
  CHECK(after.terms[0].anchor == before.terms[0].anchor);
  CHECK(after.terms[0].policy != before.terms[0].policy);
  CHECK(std::abs(after.terms[0].delta.delta - before.terms[0].delta.delta) > 1e-3);

  const auto table = after.table();
  CHECK(table.find("| brightness |") != std::string::npos);
  CHECK(table.find("6 held-out prompts × 2 noise seeds") != std::string::npos);
  CHECK(after.to_json()["terms"][2]["name"] == "weighted sum");
  CHECK_THROWS_WITH(cxrl::app::compare_with_anchor(policy, sampler, rewards, {}, 4, {1}, boot, true), Catch::Contains("no held-out prompts"));
}

TEST_CASE("run folder: one writer, a resume must not change what the run computes, a run that never started restarts",
          "[app]") {
  const auto dir = scratch("run");
  const nlohmann::json cfg{{"learning_rate", 1e-3}, {"epochs", 4}, {"seed", 0}};
  {
    cxrl::app::RunFolder f(dir, cfg, false, true);
    CHECK_THROWS_WITH(cxrl::app::RunFolder(dir, cfg, false, true), Catch::Contains("another process is running in"));
    cxrl::io::write_json(dir / "config.json", cfg);
  }
  // config.json but no checkpoint and no metrics: the start failed, so the folder is taken over.
  CHECK_NOTHROW(cxrl::app::RunFolder(dir, cfg, false, true));
  cxrl::io::write_json(dir / "config.json", cfg);
  std::ofstream(dir / "metrics.jsonl") << "{\"epoch\": 1}\n{\"epoch\": 2}\n{\"epo";  // a killed run's half line
  CHECK_THROWS_WITH(cxrl::app::RunFolder(dir, cfg, false, true), Catch::Contains("already holds a run") && Catch::Contains("--resume"));
  auto more = cfg;
  more["epochs"] = 8;       // how long it runs may change,
  more["grid_every"] = 10;  // and how often it draws grids (absent from the saved config: runs from before the key)
  more["kl_weight"] = 0.0;  // a setting added later, at the value runs from before it used
  CHECK_NOTHROW(cxrl::app::RunFolder(dir, more, true, true));
  more["kl_weight"] = 0.1;
  CHECK_THROWS_WITH(cxrl::app::RunFolder(dir, more, true, true), Catch::Contains("kl_weight: run 0.0, now 0.1"));
  more.erase("kl_weight");
  auto other = cfg;
  other["learning_rate"] = 1e-2;
  other["seed"] = 1;
  CHECK_THROWS_WITH(cxrl::app::RunFolder(dir, other, true, true),
                    Catch::Contains("learning_rate: run 0.001, now 0.01") && Catch::Contains("seed: run 0, now 1"));

  CHECK(cxrl::app::read_jsonl(dir / "metrics.jsonl").size() == 2);
  cxrl::app::truncate_jsonl(dir / "metrics.jsonl", 1);
  const auto kept = cxrl::app::read_jsonl(dir / "metrics.jsonl");
  REQUIRE(kept.size() == 1);
  CHECK(kept[0]["epoch"] == 1);
}

TEST_CASE("uniform_prompts draws from its pool reproducibly and refuses an empty pool", "[app]") {
  const auto pool = prompts(5);
  auto f = cxrl::app::uniform_prompts(pool);
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto a = f(200, g1), b = f(200, g2);
  CHECK(a == b);
  const std::set<std::string> seen(a.begin(), a.end());
  CHECK(seen == std::set<std::string>(pool.begin(), pool.end()));  // 200 draws of 5 hit each one
  CHECK_THROWS_WITH(cxrl::app::uniform_prompts({}), Catch::Contains("empty"));
}

TEST_CASE("a run's precision: as requested, auto timed and recorded, a resumed auto run keeps what it computed in, a KL penalty keeps fp32",
          "[app][precision]") {
  using cxrl::nn::Precision;
  cxrl::policy::LoraAcePolicy p(cxrl_test::tiny_unet(1), cxrl_test::tiny_clip(2), cxrl_test::clip_tokenizer());
  cxrl::core::Distributed one;
  const auto dir = scratch("precision");
  fs::create_directories(dir);
  nlohmann::json cfg;
  CHECK(cxrl::app::choose_run_precision(p, "bf16", 4, dir, false, one, cfg, true, 0.0) == Precision::bf16);
  CHECK(p.config().precision == Precision::bf16);
  CHECK(cfg.at("precision_used") == "bf16");
  CHECK_FALSE(cfg.contains("precision_timing"));
  CHECK_THAT(cfg.at("cpu_kernels").get<std::string>(), Catch::Contains("ATen kernels: "));

  nlohmann::json fresh;
  const auto chosen = cxrl::app::choose_run_precision(p, "auto", 4, dir, false, one, fresh, true, 0.0);
  const auto& t = fresh.at("precision_timing");
  CHECK(t.at("rows") == 4);
  CHECK(t.at("fp32_s").get<double>() > 0);
  CHECK(t.at("bf16_s").get<double>() > 0);
  CHECK(fresh.at("precision_used") == std::string(cxrl::nn::to_string(chosen)));
  CHECK((chosen == Precision::bf16) == (t.at("bf16_s").get<double>() < 0.9 * t.at("fp32_s").get<double>()));
  CHECK(p.adapters_enabled());  // timing the anchor's pass leaves the policy's adapters on

  // A resumed auto run takes its config.json's choice instead of timing again (the timing could come out the
  // other way, and the run would no longer continue what it computed).
  cxrl::io::write_json(dir / "config.json", {{"precision", "auto"}, {"precision_used", "bf16"},
                                             {"precision_timing", {{"fp32_s", 2.0}, {"bf16_s", 1.0}, {"rows", 4}}}});
  nlohmann::json resumed;
  CHECK(cxrl::app::choose_run_precision(p, "auto", 4, dir, true, one, resumed, true, 0.0) == Precision::bf16);
  CHECK(resumed.at("precision_timing").at("fp32_s") == 2.0);
  cxrl::io::write_json(dir / "config.json", {{"precision", "auto"}, {"precision_used", "fp16"}});
  nlohmann::json bad;
  CHECK_THROWS_WITH(cxrl::app::choose_run_precision(p, "auto", 4, dir, true, one, bad, true, 0.0),
                    Catch::Contains("config.json: key 'precision_used': expected auto, fp32 or bf16, got \"fp16\""));
  CHECK_THROWS_WITH(cxrl::app::choose_run_precision(p, "half", 4, dir, false, one, bad, true, 0.0),
                    Catch::Contains("precision: expected auto, fp32 or bf16"));

  // A KL penalty toward the anchor keeps it in fp32: auto settles there without timing, bf16 is refused.
  nlohmann::json kl;
  CHECK(cxrl::app::choose_run_precision(p, "auto", 4, dir, false, one, kl, true, 0.1) == Precision::fp32);
  CHECK(p.config().precision == Precision::fp32);
  CHECK(kl.at("precision_used") == "fp32");
  CHECK_FALSE(kl.contains("precision_timing"));
  CHECK_THROWS_WITH(cxrl::app::choose_run_precision(p, "bf16", 4, dir, false, one, kl, true, 0.1),
                    Catch::Contains("precision bf16 with kl_weight > 0"));
}
