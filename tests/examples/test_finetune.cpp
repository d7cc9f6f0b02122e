// The CXRL pipeline of `cxrl_mimic` at a tiny size on the shipped phantom checkpoints: finetune writes a
// complete run folder, evaluate writes complete tables with finite, in-range values, a resumed run ends
// bit-identical to an uninterrupted one, a corrupt checkpoint falls back to the previous good one, and the
// brightness control (check-learning) learns.
#include <catch2/catch.hpp>

#include "../../examples/cxrl_mimic/cmd_check_learning.hpp"
#include "../../examples/cxrl_mimic/cmd_evaluate.hpp"
#include "../../examples/cxrl_mimic/cmd_finetune.hpp"
#include "../../examples/cxrl_mimic/cmd_generate.hpp"

#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/io/event_log.hpp>
#include <cxrl/io/safetensors.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace {
namespace fs = std::filesystem;

const fs::path kAssets = fs::path(CXRL_TEST_DATA) / ".." / ".." / "assets" / "phantom";

cxrl_mimic::AssetPaths shipped_assets() {
  cxrl_mimic::AssetPaths a;
  a.roentgen = (kAssets / "roentgen").string();
  a.rewards_dir = (kAssets / "rewards").string();
  a.judges = (kAssets / "judges").string();
  a.vocab = std::string(CXRL_TEST_DATA) + "/wordpiece/vocab.txt";
  return a;
}

// Side of the images the shipped anchor decodes to.
int64_t image_side() {
  static const int64_t side = cxrl::diffusion::StableDiffusion::from_pretrained(shipped_assets().roentgen).image_shape().at(1);
  return side;
}

/// The table with id @p id of a tables.json.
nlohmann::json table(const nlohmann::json& t, const std::string& id) {
  for (const auto& x : t.at("tables"))
    if (x.at("id") == id) return x;
  throw std::runtime_error("no table " + id);
}

cxrl_mimic::FinetuneOptions tiny_run(const fs::path& out) {
  cxrl_mimic::FinetuneOptions o;
  o.out = out.string();
  o.assets = shipped_assets();
  o.world.tokenizer_dir = std::string(CXRL_TEST_DATA) + "/clip_tokenizer";
  o.policy.steps = 2;
  o.epochs = 2;
  o.batch_size = 2;
  o.num_batches = 1;
  o.train_batch_size = 2;
  o.n_prompts = 16;
  o.grid_prompts = 2;
  o.learning_rate = 1e-2;  // large, so that two epochs visibly move the adapters
  o.quiet = true;
  return o;
}

nlohmann::json finetune(const cxrl_mimic::FinetuneOptions& o) { return cxrl_mimic::run_finetune(o); }

cxrl::io::TensorMap adapters(const fs::path& run) { return cxrl::io::load_safetensors(run / "adapters.safetensors"); }

bool bit_identical(const cxrl::io::TensorMap& a, const cxrl::io::TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a)
    if (!b.count(k) || !torch::equal(v, b.at(k))) return false;
  return true;
}

std::vector<nlohmann::json> jsonl(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  return v;
}
}  // namespace

TEST_CASE("finetune writes a complete run folder and evaluate a complete set of tables", "[finetune][evaluate]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_finetune";
  fs::remove_all(root);
  auto o = tiny_run(root / "cxrl");
  const auto summary = finetune(o);
  const fs::path run = o.out;

  CHECK(summary.at("epochs_completed") == 2);
  CHECK(summary.at("name") == "CXRL");
  for (const char* f : {"config.json", "adapters.safetensors", "metrics.json", "metrics.jsonl", "curves.png", "grids/epoch_0.png",
                        "grids/epoch_2.png", "checkpoints/ckpt-00000002.safetensors"}) {
    INFO(f);
    CHECK(fs::exists(run / f));
  }
  // Grids before training and after the last epoch; epoch 1 is neither, nor a multiple of --grid_every (5).
  CHECK_FALSE(fs::exists(run / "grids" / "epoch_1.png"));
  // Grid: anchor row over policy row, 2 reports with 2 px padding.
  const int64_t px = image_side() + 2;
  CHECK(cxrl::io::read_image(run / "grids" / "epoch_2.png").sizes() == torch::IntArrayRef({1, 2 * px + 2, 2 * px + 2}));

  const auto lines = jsonl(run / "metrics.jsonl");
  REQUIRE(lines.size() == 2);
  for (const char* k : {"reward/total", "reward/align/raw", "reward/diag/weighted", "reward/consist/anchor_score",
                        "reward/align/policy_score_se", "reward/diag/anchor_corr", "train/skipped_updates",
                        "advantage/std", "train/approx_kl", "train/clipfrac", "train/loss", "train/lr",
                        "train/grad_norm", "time/sampling_s"}) {
    INFO(k);
    CHECK(lines[1].contains(k));
  }
  // Comparative terms: raw = policy score − anchor score.
  CHECK(lines[0]["reward/diag/raw"].get<double>() ==
        Approx(lines[0]["reward/diag/policy_score"].get<double>() - lines[0]["reward/diag/anchor_score"].get<double>()).margin(1e-6));

  // The TensorBoard file reads back with valid CRCs and carries the same scalars and the grids.
  std::vector<fs::path> ev;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) ev.push_back(e.path());
  REQUIRE(ev.size() == 1);
  std::map<std::pair<std::string, int64_t>, double> scalars;
  int images = 0;
  for (const auto& e : cxrl::io::read_events(ev[0]))
    for (const auto& v : e.values) {
      if (v.simple_value) scalars[{v.tag, e.step}] = *v.simple_value;
      if (v.image_png) ++images;
    }
  CHECK(images == 2);  // the grids of epochs 0 and 2
  CHECK(scalars.at({"reward/total", 2}) == Approx(lines[1]["reward/total"].get<double>()).epsilon(1e-6));

  // Adapters moved away from the anchor (LoRA B starts at 0).
  double b_norm = 0;
  for (const auto& [k, v] : adapters(run))
    if (k.find("lora_B") != std::string::npos) b_norm += v.abs().sum().item<double>();
  CHECK(b_norm > 0);

  // generate --run: per report, n anchor tiles then n fine-tuned tiles from the same noise.
  cxrl_mimic::GenerateCmdOptions go;
  go.run = run.string();
  go.prompt = {"Small left pleural effusion.", "Cardiomegaly."};
  go.n = 2;
  go.out = (root / "side_by_side.png").string();
  cxrl_mimic::run_generate(go);
  CHECK(cxrl::io::read_image(go.out).sizes() == torch::IntArrayRef({1, 2 * px + 2, 4 * px + 2}));

  // evaluate: Anchor + CXRL, every table, finite values in range.
  cxrl_mimic::EvaluateOptions e;
  e.runs = {run.string()};
  e.out = (root / "report").string();
  e.assets = shipped_assets();
  e.world = o.world;
  e.sampling.steps = 2;
  e.n_eval = 12;
  e.n_diversity = 2;
  e.batch_size = 12;
  e.sheet_reports = 3;
  e.quiet = true;
  e.n_diversity = 3;
  e.generations = 2;
  e.replicates = 50;
  const auto t = cxrl_mimic::run_evaluate(e);
  const auto t1 = table(t, "1");
  REQUIRE(t1.at("rows").size() == 3);
  CHECK(t1["rows"][0]["name"] == "Anchor");
  CHECK(t1["rows"][1]["name"] == "CXRL");
  CHECK(t1["rows"][2]["name"] == "Real PA test images (reference)");
  CHECK_FALSE(t1["rows"][2]["metrics"]["judge_clip"].contains("delta"));
  for (const auto& r : t1["rows"]) {
    INFO(r.dump());
    const auto& m = r["metrics"];
    CHECK(m["judge_r_align"]["mean"].get<double>() <= 0.0);
    CHECK(m["reward_r_align"]["mean"].get<double>() <= 0.0);
    CHECK(m["judge_auroc"]["mean"].get<double>() >= 0.0);
    CHECK(m["judge_auroc"]["mean"].get<double>() <= 1.0);
    CHECK(std::abs(m["judge_clip"]["mean"].get<double>()) <= 1.0);
    CHECK(m["reward_r_diag"]["mean"].get<double>() >= 0.0);
    CHECK(m["midline_tilt_deg"]["mean"].get<double>() >= 0.0);
  }
  // The run's cells carry the difference to the anchor and its interval, which contains it.
  for (const char* k : {"judge_r_align", "judge_clip", "reward_r_consist"}) {
    INFO(k);
    const auto& c = t1["rows"][1]["metrics"][k];
    CHECK(c["ci"][0].get<double>() <= c["delta"].get<double>() + 1e-12);
    CHECK(c["delta"].get<double>() <= c["ci"][1].get<double>() + 1e-12);
    CHECK(c["delta"].get<double>() == Approx(c["mean"].get<double>() - t1["rows"][0]["metrics"][k]["mean"].get<double>()));
  }
  const auto t2 = table(t, "2a");
  for (const auto& r : t2["rows"]) {
    CHECK(r["metrics"]["fid"]["mean"].get<double>() >= 0.0);
    CHECK(std::abs(r["metrics"]["msssim"]["mean"].get<double>()) <= 1.0);
  }
  CHECK(table(t, "3")["metrics"].size() >= 1);
  // Table 4: correlations; on the real images the two posture nets, both accurate, rank the images alike.
  const auto t4 = table(t, "4");
  REQUIRE(t4.at("rows").size() == 3);
  for (const auto& r : t4["rows"])
    for (const char* k : {"agree_align", "agree_diag", "agree_consist"}) {
      INFO(r.dump() << " " << k);
      const auto& c = r["metrics"][k]["mean"];
      CHECK((c.is_null() || std::abs(c.get<double>()) <= 1.0 + 1e-12));
    }
  CHECK(t4["rows"][2]["metrics"]["agree_align"]["mean"].get<double>() > 0.8);
  CHECK(fs::exists(fs::path(e.out) / "scores" / "real.safetensors"));
  CHECK(t["n_reports"] == 12);
  std::ifstream md(fs::path(e.out) / "tables.md");
  std::stringstream ss;
  ss << md.rdbuf();
  for (const char* h : {"Table 1", "Table 2a", "Table 2b", "Table 3", "Table 4", "| CXRL | 1 |", "| Anchor | 1 |", "Δ", "judge"}) {
    INFO(h);
    CHECK(ss.str().find(h) != std::string::npos);
  }
  // samples.png: real, Anchor, CXRL rows of 3 tiles upscaled ×3, reports under the columns.
  const auto sheet = cxrl::io::read_image(fs::path(e.out) / "samples.png", 3);
  CHECK(sheet.size(1) > 3 * 3 * image_side());
  CHECK(sheet.size(2) > 3 * 3 * image_side());
  // A second evaluation reuses the cached scores and gives the same numbers, also after the run's adapters were
  // rewritten unchanged (what resuming a finished run does): the cache file is not written again.
  std::vector<fs::path> run_caches;
  for (const auto& entry : fs::directory_iterator(fs::path(e.out) / "scores"))
    if (entry.path().filename().string().rfind("cxrl", 0) == 0) run_caches.push_back(entry.path());
  REQUIRE(run_caches.size() == 1);
  const auto cached_at = fs::last_write_time(run_caches[0]);
  const auto adapters = fs::path(e.runs.at(0)) / "adapters.safetensors";
  fs::last_write_time(adapters, fs::last_write_time(adapters) + std::chrono::seconds(5));
  CHECK(cxrl_mimic::run_evaluate(e)["tables"] == t["tables"]);
  CHECK(fs::last_write_time(run_caches[0]) == cached_at);

  // Sliced scoring (the main job's child processes): slices cut at whole batches draw the same noise, so the merged
  // scores equal one pass over all reports. 12 reports in batches of 4 make slices of 4 and 8 reports; the 3 × 2
  // diversity images, of 4 and 2.
  e.batch_size = 4;
  auto whole = e;
  whole.out = (root / "whole").string();
  cxrl_mimic::run_evaluate(whole);
  auto sliced = e;
  sliced.out = (root / "sliced").string();
  sliced.shards = 2;
  sliced.score_only = true;
  sliced.runs = {};  // children score the anchor and the real images
  for (int64_t k : {1, 0}) {
    sliced.shard = k;
    cxrl_mimic::run_evaluate(sliced);
  }
  sliced.runs = e.runs;
  const auto cache = fs::path(sliced.out) / "scores";
  CHECK(fs::exists(cache / "anchor.slice0of2.safetensors"));
  CHECK(fs::exists(cache / "real.slice1of2.safetensors"));
  CHECK_FALSE(fs::exists(cache / "anchor.safetensors"));
  sliced.shard = -1;
  sliced.score_only = false;
  const auto ts = cxrl_mimic::run_evaluate(sliced);  // scores the run's slices here, merges every model
  CHECK_FALSE(fs::exists(cache / "anchor.slice0of2.safetensors"));
  for (const auto& entry : fs::directory_iterator(fs::path(whole.out) / "scores")) {
    if (entry.path().extension() != ".safetensors") continue;
    INFO(entry.path().filename());
    const auto a = cxrl::io::load_safetensors(entry.path());
    const auto b = cxrl::io::load_safetensors(cache / entry.path().filename());
    REQUIRE(a.size() == b.size());
    for (const auto& [k, v] : a) {
      INFO(k);
      REQUIRE(b.at(k).sizes() == v.sizes());
      CHECK(torch::allclose(b.at(k).to(torch::kFloat64), v.to(torch::kFloat64), 1e-5, 1e-6, /*equal_nan=*/true));
    }
  }
  CHECK(table(ts, "1")["rows"][1]["metrics"]["judge_r_align"]["mean"].get<double>() ==
        Approx(table(cxrl_mimic::run_evaluate(whole), "1")["rows"][1]["metrics"]["judge_r_align"]["mean"].get<double>()).margin(1e-6));
  sliced.shard = 2;
  sliced.score_only = true;
  CHECK_THROWS_WITH(cxrl_mimic::run_evaluate(sliced), Catch::Contains("--shard must be in [0, --shards)"));
  fs::remove_all(root);
}

TEST_CASE("a resumed finetune run ends bit-identical to an uninterrupted one", "[finetune][resume]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_resume";
  fs::remove_all(root);
  auto straight = tiny_run(root / "straight");
  straight.epochs = 3;
  finetune(straight);

  auto split = tiny_run(root / "split");
  split.epochs = 1;
  finetune(split);
  split.epochs = 3;
  split.resume = true;
  const auto s = finetune(split);
  CHECK(s.at("epochs_completed") == 3);
  CHECK(bit_identical(adapters(root / "straight"), adapters(root / "split")));
  CHECK(jsonl(root / "split" / "metrics.jsonl").size() == 3);

  // Not identical to a run with another seed (the comparison can fail).
  auto other = tiny_run(root / "other");
  other.epochs = 3;
  other.policy.seed = 1;
  finetune(other);
  CHECK_FALSE(bit_identical(adapters(root / "straight"), adapters(root / "other")));
  fs::remove_all(root);
}

TEST_CASE("a corrupt newest checkpoint is skipped with a warning and the previous one is used", "[finetune][resume]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_corrupt";
  fs::remove_all(root);
  auto o = tiny_run(root / "run");
  finetune(o);  // checkpoints after epochs 1 and 2
  const auto newest = fs::path(o.out) / "checkpoints" / "ckpt-00000002.safetensors";
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-16, std::ios::end);
    f.write("garbage-garbage!", 16);  // the tensor bytes no longer match the stored CRC-32C
  }
  std::stringstream warn;
  auto* old = std::cerr.rdbuf(warn.rdbuf());
  o.resume = true;
  o.epochs = 3;
  o.quiet = false;
  nlohmann::json s;
  try {
    s = finetune(o);
  } catch (...) {
    std::cerr.rdbuf(old);
    throw;
  }
  std::cerr.rdbuf(old);
  CHECK(warn.str().find("ckpt-00000002.safetensors") != std::string::npos);
  CHECK(warn.str().find("resumed from") != std::string::npos);
  CHECK(warn.str().find("ckpt-00000001.safetensors") != std::string::npos);
  CHECK(s.at("epochs_completed") == 3);
  const auto lines = jsonl(fs::path(o.out) / "metrics.jsonl");
  REQUIRE(lines.size() == 3);
  CHECK(lines[1]["epoch"] == 2);
  CHECK(lines[2]["epoch"] == 3);
  fs::remove_all(root);
}

TEST_CASE("finetune refuses bad settings before any long work", "[finetune]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_finetune_bad";
  fs::remove_all(root);
  auto o = tiny_run(root / "run");
  o.epochs = 1;
  o.grid_prompts = 0;

  auto bad = o;
  bad.rewards = "align,sharpness";
  CHECK_THROWS_WITH(finetune(bad), Catch::Contains("unknown reward 'sharpness'"));
  bad = o;
  bad.assets.xrv_densenet = "/nonexistent/densenet.safetensors";
  CHECK_THROWS_WITH(finetune(bad), Catch::Contains("/nonexistent/densenet.safetensors") && Catch::Contains("--xrv-densenet"));
  bad = o;
  bad.assets.roentgen = "/nonexistent/roentgen";
  CHECK_THROWS_WITH(finetune(bad), Catch::Contains("/nonexistent/roentgen") && Catch::Contains("model_index.json"));
  // A model file that exists but is cut short fails while loading, after the folder was created: the folder must
  // not count as a run, so the same command with good assets starts in it.
  bad = o;
  const auto cut = root / "cut_densenet.safetensors";
  fs::create_directories(root);
  {
    const auto bytes = cxrl::io::read_file_bytes(fs::path(o.assets.densenet_file()));
    std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() / 2));
  }
  bad.assets.xrv_densenet = cut.string();
  CHECK_THROWS_WITH(finetune(bad), Catch::Contains("cut_densenet.safetensors"));

  finetune(o);
  CHECK_THROWS_WITH(finetune(o), Catch::Contains("already holds a run") && Catch::Contains("--resume"));
  auto changed = o;
  changed.resume = true;
  changed.learning_rate = 1e-3;
  CHECK_THROWS_WITH(finetune(changed), Catch::Contains("learning_rate"));
  fs::remove_all(root);
}

TEST_CASE("evaluate's held-out reports come from the chosen split: validate and test share no report", "[evaluate]") {
  cxrl_mimic::WorldOptions w;
  w.tokenizer_dir = std::string(CXRL_TEST_DATA) + "/clip_tokenizer";
  const auto test = cxrl_mimic::eval_set(w, 24, 32, true);
  const auto validate = cxrl_mimic::eval_set(w, 24, 32, true, cxrl::data::Split::validate);
  REQUIRE(test.size() == 24);
  REQUIRE(validate.size() == 24);
  // Reports repeat within a world (a normal study reads the same), so the images tell the splits apart.
  CHECK_FALSE(torch::allclose(test.images, validate.images));
  // The first 24 PA studies of a split do not depend on how many studies were asked for.
  CHECK(torch::equal(cxrl_mimic::eval_set(w, 12, 32, true).images, test.images.slice(0, 0, 12)));
  CHECK_THROWS_WITH(cxrl_mimic::eval_set(w, 4, 32, true, cxrl::data::Split::train), Catch::Contains("--split must be validate or test"));
}

TEST_CASE("check-learning: the loop raises mean brightness on held-out reports (the positive control)", "[check_learning]") {
  const auto root = fs::temp_directory_path() / "cxrl_test_check_learning";
  fs::remove_all(root);
  fs::create_directories(root);
  cxrl_mimic::CheckLearningOptions o;  // the main job's settings (10 DDIM steps, half the timesteps), but shorter
  o.run.assets = shipped_assets();
  o.run.world.tokenizer_dir = std::string(CXRL_TEST_DATA) + "/clip_tokenizer";
  o.run.epochs = 4;
  o.run.batch_size = 16;
  o.run.num_batches = 1;
  o.run.learning_rate = 3e-3;  // 4 epochs at 3e-3 raised brightness by 0.9–1.2 per-sample SDs for seeds 0, 1 and 2
  o.run.n_prompts = 64;
  o.run.quiet = true;
  o.n_eval = 48;
  o.out = (root / "check.json").string();
  const auto js = cxrl_mimic::run_check_learning(o);
  INFO(js.dump());
  // A loop that does not learn leaves Δ near 0, with an interval around it;
  // one with the advantage's sign flipped lowers brightness.
  CHECK(js.at("ci")[0].get<double>() > 0);
  CHECK(js.at("delta").get<double>() == Approx(js.at("policy").get<double>() - js.at("anchor").get<double>()));
  CHECK(js.at("samples") == 64);
  CHECK(nlohmann::json::parse(std::ifstream(root / "check.json")) == js);
}
