// `train-rewards`: trains the phantom world's three reward models on its training split and writes them
// in the key layouts of the real checkpoints, so the library's loaders read them unchanged:
//  1. PostureNet (CXRL §2.3.1; Liu et al. 2019) against the canonical CXR (mean of 500 training images);
//  2. the phantom world's torchxrayvision: a small DenseNet (Cohen et al. 2022) trained with masked BCE on
//     the phantom labels mapped onto the xrv outputs exactly as cxr::DiagReward maps them, with op_threshs
//     calibrated on the validate split so that op_norm puts the decision point at 0.5;
//  3. a small CXR-CLIP (You et al. 2023): ResNet image encoder + BERT text encoder trained with the
//     symmetric CLIP loss (Radford et al. 2021) on (image, impression) pairs.
// Held-out quality numbers go to train_rewards_metrics.json.
//
// Files written into --out:
//   canonical.png, canonical.safetensors ("canonical" [1, H, W] in [0, 1])
//   posture_net.safetensors (+ posture_net.json: PostureNetConfig)         → cxr::load_posture_net
//   xrv_densenet.safetensors (+ xrv_densenet.json: DenseNetConfig, resolution) → cxr::XrvDenseNet::load
//   cxr_clip.safetensors (+ cxr_clip.json: CxrClipConfig fields)           → cxr::CxrClip::load
//   train_rewards_config.json (resolved settings), train_rewards_metrics.json
#pragma once

#include "config.hpp"
#include "paths.hpp"
#include "running_loss.hpp"

#include <cxrl/cxr/canonical.hpp>
#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/data/phantom_dataset.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/metrics/auroc.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl_mimic {

/// Settings of `train-rewards` (every field is a `--name` option and a --config key). The defaults are
/// sized for a CPU and produce the shipped models: with one thread the whole command took 3.2 minutes.
struct TrainRewardsOptions {
  std::string out = (default_assets_dir() / "rewards").string();
  std::string only;  // "" = all three; else posture | diag | clip
  std::string vocab = default_wordpiece_vocab().string();
  int resolution = 32;  // the shipped anchor's resolution
  int64_t n_train = 5000;
  int64_t n_validate = 500;
  int64_t n_test = 1000;
  int64_t canonical_n = 500;  // CXRL: the mean of 500 random training images
  uint64_t seed = 0;
  int64_t threads = 0;
  bool quiet = false;
  // PostureNet (ResNet-18 layout at a reduced width)
  int64_t posture_steps = 2000;
  int64_t posture_batch_size = 32;
  double posture_lr = 1e-3;
  int64_t posture_width = 8;
  double posture_psi_weight = 1.0;  // phantom ψ is known: add ‖ψ̂ − ψ‖² to the paper's L2-to-canonical loss
  // diagnostic DenseNet
  int64_t diag_steps = 2500;
  int64_t diag_batch_size = 32;
  double diag_lr = 1e-3;
  int64_t diag_growth_rate = 8;
  std::vector<int64_t> diag_block_config{2, 2, 2, 2};
  int64_t diag_init_features = 16;
  std::string diag_threshold = "youden";  // youden | prevalence
  // CXR-CLIP
  int64_t clip_steps = 3000;
  int64_t clip_batch_size = 32;
  double clip_lr = 5e-4;
  int64_t clip_width = 8;
  int64_t clip_text_hidden = 32;
  int64_t clip_text_layers = 2;
  int64_t clip_projection_dim = 32;
  int64_t clip_max_length = 128;
  int64_t clip_eval_batch = 32;
};

/// Thrown from inside a training loop when SIGINT arrives (caught by run_train_rewards).
struct TrainRewardsInterrupted : std::runtime_error {
  TrainRewardsInterrupted() : std::runtime_error("interrupted") {}
};

inline void check_train_rewards_options(const TrainRewardsOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("train-rewards: " + what);
  };
  need(o.only.empty() || o.only == "posture" || o.only == "diag" || o.only == "clip",
       "--only must be posture, diag or clip (or absent for all three), got '" + o.only + "'");
  need(o.resolution >= 32, "--resolution must be >= 32 (five stride-2 stages), got " + std::to_string(o.resolution));
  need(o.n_train >= 2 && o.n_validate >= 2 && o.n_test >= 2, "--n_train, --n_validate, --n_test must be >= 2");
  need(o.canonical_n >= 1, "--canonical_n must be >= 1");
  need(o.posture_steps >= 0 && o.diag_steps >= 0 && o.clip_steps >= 0, "step counts must be >= 0");
  need(o.posture_batch_size >= 1 && o.diag_batch_size >= 1 && o.clip_batch_size >= 2,
       "batch sizes must be >= 1 (--clip_batch_size >= 2: the CLIP loss needs negatives)");
  need(o.posture_lr > 0 && o.diag_lr > 0 && o.clip_lr > 0, "learning rates must be > 0");
  need(o.posture_width >= 1 && o.clip_width >= 1 && o.diag_growth_rate >= 1 && o.diag_init_features >= 1, "widths must be >= 1");
  need(o.posture_psi_weight >= 0, "--posture_psi_weight must be >= 0");
  need(o.diag_threshold == "youden" || o.diag_threshold == "prevalence",
       "--diag_threshold must be youden or prevalence, got '" + o.diag_threshold + "'");
  need(o.clip_text_hidden >= 4 && o.clip_text_hidden % 4 == 0, "--clip_text_hidden must be a positive multiple of 4 (4 heads)");
  need(o.clip_text_layers >= 1 && o.clip_projection_dim >= 1, "--clip_text_layers and --clip_projection_dim must be >= 1");
  need(o.clip_max_length >= 8, "--clip_max_length must be >= 8");
  need(o.clip_eval_batch >= 2 && o.clip_eval_batch <= o.n_test, "--clip_eval_batch must be in [2, n_test]");
}

/// PostureNet architecture of the phantom world's align reward.
inline cxrl::cxr::PostureNetConfig phantom_posture_config(const TrainRewardsOptions& o) {
  cxrl::cxr::PostureNetConfig c;
  c.width = o.posture_width;
  c.image_size = o.resolution;
  return c;
}

/// DenseNet architecture of the phantom world's xrv classifier (18 xrv outputs, 1 channel).
inline cxrl::nn::DenseNetConfig phantom_densenet_config(const TrainRewardsOptions& o) {
  auto c = cxrl::nn::DenseNetConfig::densenet121(1, static_cast<int64_t>(cxrl::cxr::kXrvPathologies.size()));
  c.growth_rate = o.diag_growth_rate;
  c.block_config = o.diag_block_config;
  c.num_init_features = o.diag_init_features;
  c.bn_size = 4;
  return c;
}

/// CXR-CLIP architecture of the phantom world's consist reward.
/// @param vocab_size rows of the WordPiece vocabulary
inline cxrl::cxr::CxrClipConfig phantom_clip_config(const TrainRewardsOptions& o, int64_t vocab_size) {
  cxrl::cxr::CxrClipConfig c;
  c.image = cxrl::nn::ResNetConfig::resnet18();
  c.image.width = o.clip_width;
  c.image.include_fc = false;
  c.text.vocab_size = vocab_size;
  c.text.hidden_size = o.clip_text_hidden;
  c.text.num_hidden_layers = o.clip_text_layers;
  c.text.num_attention_heads = 4;
  c.text.intermediate_size = 4 * o.clip_text_hidden;
  c.text.max_position_embeddings = o.clip_max_length;
  c.projection_dim = o.clip_projection_dim;
  c.image_size = o.resolution;
  c.max_length = o.clip_max_length;
  return c;
}

/// Bio_ClinicalBERT's tokenizer as CXR-CLIP loads it: bert-base-cased vocab, lower-casing on
/// (transformers' BertTokenizer default, which CXR-CLIP does not override).
inline cxrl::text::WordPieceTokenizer phantom_clip_tokenizer(const TrainRewardsOptions& o) {
  cxrl::text::WordPieceConfig wc;
  wc.do_lower_case = true;
  return cxrl::text::WordPieceTokenizer::from_file(o.vocab, wc);
}

/// One split rendered once and kept in memory (all three models draw from it).
struct RenderedSplit {
  torch::Tensor images;  // [N, 1, H, W] in [0, 1]
  torch::Tensor labels;  // [N, 14] 1 / 0 / −1 / NaN (kObservations order)
  torch::Tensor psi;     // [N, 5]
  std::vector<std::string> impressions;
};

inline RenderedSplit render_split(const cxrl::data::PhantomDataset& d, bool quiet) {
  const auto n = static_cast<int64_t>(d.size());
  RenderedSplit r;
  std::vector<torch::Tensor> imgs;
  r.labels = torch::empty({n, cxrl::cxr::kNumObservations}, torch::kFloat32);
  r.psi = torch::empty({n, 5}, torch::kFloat32);
  cxrl::io::Progress bar("train-rewards: render " + std::string(cxrl::data::split_name(d.split())), n, quiet);
  for (int64_t i = 0; i < n; ++i) {
    if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
    auto s = d.get(static_cast<std::size_t>(i));
    imgs.push_back(s.image);
    for (int k = 0; k < cxrl::cxr::kNumObservations; ++k) r.labels[i][k] = cxrl::cxr::to_float(s.labels[static_cast<std::size_t>(k)]);
    if (!s.posture) throw std::runtime_error("train-rewards: phantom sample without posture");
    for (int k = 0; k < 5; ++k) r.psi[i][k] = (*s.posture)[static_cast<std::size_t>(k)];
    r.impressions.push_back(s.impression);
    bar.update(i + 1);
  }
  r.images = torch::stack(imgs);
  return r;
}

/// Writes @p j to @p p atomically (temporary file + rename).
/// Runs @p f over @p x in chunks of 64 rows without gradient and concatenates the results.
template <class F>
torch::Tensor chunked(const torch::Tensor& x, F&& f) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += 64) out.push_back(f(x.narrow(0, i, std::min<int64_t>(64, x.size(0) - i))));
  return torch::cat(out);
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Trains the PostureNet, saves it with the canonical CXR, returns its metrics.
inline nlohmann::json train_posture(const TrainRewardsOptions& o, const cxrl::data::PhantomDataset& train_ds, const RenderedSplit& train,
                                    const RenderedSplit& test, const std::filesystem::path& out) {
  const auto t0 = std::chrono::steady_clock::now();
  // The canonical CXR: the pixel mean of canonical_n random training images (CXRL §2.3.1).
  const auto canonical = cxrl::cxr::canonical_cxr(train_ds, static_cast<std::size_t>(o.canonical_n), o.seed);
  cxrl::io::write_png(out / "canonical.png", canonical);
  cxrl::io::save_safetensors(out / "canonical.safetensors", {{"canonical", canonical.contiguous()}},
                             {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"},
                              {"n_images", std::to_string(std::min<int64_t>(o.canonical_n, o.n_train))}});

  cxrl::cxr::PostureNet net(phantom_posture_config(o));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 101);
  cxrl::io::Progress bar("train-rewards: posture", o.posture_steps, o.quiet);
  cxrl::cxr::PostureTrainOptions topt;
  topt.steps = o.posture_steps;
  topt.lr = o.posture_lr;
  topt.final_lr_fraction = 0.1;
  topt.psi_weight = o.posture_psi_weight;
  topt.log_every = 1;
  RunningLoss running;
  running.precision = 5;
  topt.on_log = [&](int64_t step, double loss) { bar.update(step, running.add(step, loss)); };
  const auto n = train.images.size(0);
  auto res = cxrl::cxr::train_posture_net(net, canonical, [&](int64_t) {
    if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
    auto idx = torch::randint(n, {o.posture_batch_size}, gen, torch::kLong);
    return cxrl::cxr::PostureBatch{train.images.index_select(0, idx), train.psi.index_select(0, idx)};
  }, topt);
  cxrl::cxr::save_posture_net(out / "posture_net.safetensors", net);
  const auto cfg = net->config();
  write_json(out / "posture_net.json", {{"width", cfg.width}, {"layers", cfg.layers}, {"in_channels", cfg.in_channels},
                                        {"image_size", cfg.image_size}});

  net->eval();
  const auto pred = chunked(test.images, [&](const torch::Tensor& x) { return net->forward(x); });
  const auto err = (pred - test.psi).abs().mean(0);
  const auto base = (test.psi - cxrl::cxr::identity_posture()).abs().mean(0);
  const char* names[5] = {"s_x", "s_y", "t_x", "t_y", "theta"};
  nlohmann::json mae, idm;
  for (int k = 0; k < 5; ++k) {
    mae[names[k]] = err[k].item<double>();
    idm[names[k]] = base[k].item<double>();
  }
  return {{"test_mean_abs_error", mae},
          {"test_identity_mean_abs_error", idm},  // the error of always predicting ψ = identity (baseline)
          {"final_train_loss", res.losses.empty() ? 0.0 : running.value},
          {"steps", o.posture_steps},
          {"seconds", seconds_since(t0)}};
}

/// (observation index in kObservations, xrv output index) pairs of DiagReward's default mapping.
inline std::vector<std::pair<int, int>> phantom_diag_pairs() {
  std::vector<std::pair<int, int>> p;
  for (const auto& [obs, out] : cxrl::cxr::default_diag_mapping())
    p.emplace_back(cxrl::cxr::observation_index(obs), cxrl::cxr::xrv_pathology_index(out));
  return p;
}

/// xrv-output targets [N, 18] from CheXpert labels [N, 14]: 1 / 0 where stated, NaN elsewhere (uncertain,
/// blank, and outputs DiagReward does not compare).
inline torch::Tensor xrv_targets(const torch::Tensor& labels) {
  auto t = torch::full({labels.size(0), static_cast<int64_t>(cxrl::cxr::kXrvPathologies.size())},
                       std::numeric_limits<float>::quiet_NaN());
  for (auto [o, k] : phantom_diag_pairs()) {
    auto l = labels.select(1, o);
    t.select(1, k).copy_(torch::where((l == 0) | (l == 1), l, torch::full_like(l, std::numeric_limits<float>::quiet_NaN())));
  }
  return t;
}

/// Operating point of one output on validation data: "youden" maximises J = TPR − FPR over the observed
/// scores (predict present when p ≥ t, as DiagReward does); "prevalence" predicts present for the same
/// fraction as the validation prevalence. NaN when fewer than two classes are stated.
inline double calibrate_threshold(const torch::Tensor& y, const torch::Tensor& p, const std::string& rule) {
  auto valid = ~y.isnan();
  auto yv = y.masked_select(valid).to(torch::kFloat64), pv = p.masked_select(valid).to(torch::kFloat64);
  const auto n = yv.numel();
  const double pos = yv.sum().item<double>(), neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  auto order = torch::argsort(pv, 0, /*descending=*/true);
  auto ys = yv.index_select(0, order), ps = pv.index_select(0, order);
  auto ya = ys.accessor<double, 1>();
  auto pa = ps.accessor<double, 1>();
  if (rule == "prevalence") {
    const auto k = std::max<int64_t>(1, static_cast<int64_t>(std::lround(pos)));
    return pa[k - 1];
  }
  double tp = 0, fp = 0, best = -2, t = pa[0];
  for (int64_t i = 0; i < n; ++i) {
    (ya[i] == 1 ? tp : fp) += 1;
    if (i + 1 < n && pa[i + 1] == pa[i]) continue;  // all tied scores fall on the same side
    const double j = tp / pos - fp / neg;
    if (j > best) best = j, t = pa[i];
  }
  return t;
}

/// Trains the xrv DenseNet, calibrates op_threshs, saves it, returns its metrics.
inline nlohmann::json train_diag(const TrainRewardsOptions& o, const RenderedSplit& train, const RenderedSplit& validate,
                                 const RenderedSplit& test, const std::filesystem::path& out) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto cfg = phantom_densenet_config(o);
  cxrl::cxr::XrvDenseNet clf(cfg, o.resolution);
  auto& model = clf.model();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.diag_lr).weight_decay(1e-4));
  const auto targets = xrv_targets(train.labels);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 202);
  cxrl::io::Progress bar("train-rewards: diag", o.diag_steps, o.quiet);
  model->train();
  RunningLoss running;
  const auto n = train.images.size(0);
  for (int64_t step = 1; step <= o.diag_steps; ++step) {
    if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
    auto idx = torch::randint(n, {o.diag_batch_size}, gen, torch::kLong);
    auto y = targets.index_select(0, idx);
    auto mask = (~y.isnan()).to(torch::kFloat32);
    auto logits = model->forward(cxrl::cxr::to_xrv_input(train.images.index_select(0, idx), o.resolution));
    // Masked BCE: uncertain, blank and uncompared outputs contribute nothing (xrv's NaN-label rule).
    auto bce = torch::binary_cross_entropy_with_logits(logits, torch::nan_to_num(y, 0.0), {}, {}, at::Reduction::None);
    auto loss = (bce * mask).sum() / mask.sum().clamp_min(1.0);
    opt.zero_grad();
    loss.backward();
    opt.step();
    const double l = loss.item<double>();
    bar.update(step, running.add(step, l));
  }
  model->eval();
  auto probs_of = [&](const RenderedSplit& sp) {
    return chunked(sp.images, [&](const torch::Tensor& x) { return torch::sigmoid(clf.logits(cxrl::cxr::to_xrv_input(x, o.resolution))); });
  };
  // Calibration on validate: op_norm maps each threshold to 0.5, DiagReward's decision point.
  const auto vprobs = probs_of(validate);
  const auto vt = xrv_targets(validate.labels);
  auto th = torch::full({cfg.num_classes}, std::numeric_limits<float>::quiet_NaN());
  nlohmann::json thj = nlohmann::json::object();
  for (auto [o_idx, k] : phantom_diag_pairs()) {
    double t = calibrate_threshold(vt.select(1, k), vprobs.select(1, k), o.diag_threshold);
    const std::string name(cxrl::cxr::kObservations[static_cast<std::size_t>(o_idx)]);
    if (std::isnan(t)) {
      // Trained but not calibratable here (one class in validate): keep the plain 0.5 operating point.
      std::fprintf(stderr, "train-rewards: diag: '%s' has one class in the validate split; op_thresh 0.5\n", name.c_str());
      t = 0.5;
    }
    th[k] = t;
    thj[name] = t;
  }
  clf.set_op_threshs(th);

  auto sd = cxrl::io::state_dict(*model);
  sd["op_threshs"] = th;
  cxrl::io::save_safetensors(out / "xrv_densenet.safetensors", sd,
                             {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"},
                              {"resolution", std::to_string(o.resolution)}, {"threshold_rule", o.diag_threshold}});
  write_json(out / "xrv_densenet.json", {{"growth_rate", cfg.growth_rate}, {"block_config", cfg.block_config},
                                         {"num_init_features", cfg.num_init_features}, {"bn_size", cfg.bn_size},
                                         {"drop_rate", cfg.drop_rate}, {"num_classes", cfg.num_classes},
                                         {"in_channels", cfg.in_channels}, {"resolution", o.resolution},
                                         {"pathologies", clf.pathologies()}});

  // Test AUROC per compared observation (xrv macro rule: skip an observation with one class).
  const auto pairs = phantom_diag_pairs();
  const auto tprobs = probs_of(test);
  const auto tt = xrv_targets(test.labels);
  std::vector<int64_t> ks;
  for (const auto& pr : pairs) ks.push_back(pr.second);
  auto kidx = torch::tensor(ks, torch::kLong);
  auto ys = tt.index_select(1, kidx), ps = tprobs.index_select(1, kidx);
  nlohmann::json auroc = nlohmann::json::object();
  double mean = std::numeric_limits<double>::quiet_NaN();
  try {
    const auto m = cxrl::metrics::macro_auroc(ys, ps);
    for (std::size_t i = 0; i < pairs.size(); ++i) auroc[std::string(cxrl::cxr::kObservations[static_cast<std::size_t>(pairs[i].first)])] = m.per_task[i];
    mean = m.mean;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "train-rewards: diag: no test AUROC (%s)\n", e.what());
    for (const auto& pr : pairs) auroc[std::string(cxrl::cxr::kObservations[static_cast<std::size_t>(pr.first)])] = nullptr;
  }
  // Accuracy at the calibrated operating point over stated (observation, study) pairs: DiagReward's notion.
  const auto normed = cxrl::cxr::op_norm(tprobs, th).index_select(1, kidx);
  auto stated = ~ys.isnan();
  auto correct = ((normed >= 0.5).to(torch::kFloat32) == ys).logical_and(stated);
  const double nstated = stated.sum().item<double>();
  return {{"test_auroc", auroc},  // NaN (null) = one class in the test split
          {"test_auroc_mean", mean},
          {"test_accuracy_at_op", nstated > 0 ? correct.sum().item<double>() / nstated : std::numeric_limits<double>::quiet_NaN()},
          {"test_stated_pairs", nstated},
          {"op_threshs", thj},
          {"threshold_rule", o.diag_threshold},
          {"final_train_loss", running.value},
          {"steps", o.diag_steps},
          {"seconds", seconds_since(t0)}};
}

/// Trains the CXR-CLIP, saves it, returns its metrics.
inline nlohmann::json train_clip(const TrainRewardsOptions& o, const RenderedSplit& train, const RenderedSplit& test,
                                 const std::filesystem::path& out) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = phantom_clip_tokenizer(o);
  const auto cfg = phantom_clip_config(o, tok.vocab_size());
  cxrl::cxr::CxrClip model(cfg);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.clip_lr).weight_decay(1e-4));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 303);
  cxrl::io::Progress bar("train-rewards: clip", o.clip_steps, o.quiet);
  model->train();
  RunningLoss running;
  const auto n = train.images.size(0);
  const auto B = std::min<int64_t>(o.clip_batch_size, n);
  for (int64_t step = 1; step <= o.clip_steps; ++step) {
    if (cxrl::io::interrupted()) throw TrainRewardsInterrupted();
    auto idx = torch::randperm(n, gen, torch::kLong).narrow(0, 0, B);
    std::vector<std::string> texts;
    for (int64_t b = 0; b < B; ++b) texts.push_back(train.impressions[static_cast<std::size_t>(idx[b].item<int64_t>())]);
    auto img = model->encode_image(cxrl::cxr::cxr_clip_preprocess(train.images.index_select(0, idx), cfg.image_size));
    auto txt = model->encode_texts(tok, texts);
    auto loss = cxrl::cxr::clip_contrastive_loss(img, txt, model->logit_scale);
    opt.zero_grad();
    loss.backward();
    opt.step();
    {
      torch::NoGradGuard ng;  // CLIP clamps the learned temperature at 100 (logit_scale ≤ ln 100)
      model->logit_scale.clamp_(0.0, std::log(100.0));
    }
    const double l = loss.item<double>();
    bar.update(step, running.add(step, l));
  }
  model->eval();
  cxrl::io::save_safetensors(out / "cxr_clip.safetensors", cxrl::io::state_dict(*model),
                             {{"format", "pt"}, {"producer", "cxrl_mimic train-rewards"}});
  write_json(out / "cxr_clip.json",
             {{"image", {{"block", "BasicBlock"}, {"layers", cfg.image.layers}, {"in_channels", cfg.image.in_channels},
                         {"width", cfg.image.width}, {"include_fc", false}}},
              {"text", {{"vocab_size", cfg.text.vocab_size}, {"hidden_size", cfg.text.hidden_size},
                        {"num_hidden_layers", cfg.text.num_hidden_layers}, {"num_attention_heads", cfg.text.num_attention_heads},
                        {"intermediate_size", cfg.text.intermediate_size}, {"max_position_embeddings", cfg.text.max_position_embeddings}}},
              {"projection_dim", cfg.projection_dim}, {"image_size", cfg.image_size}, {"max_length", cfg.max_length},
              {"tokenizer", {{"vocab", "bert-base-cased vocab.txt"}, {"do_lower_case", true}}}});

  // Image → report retrieval on the first clip_eval_batch test studies. Identical impressions are
  // indistinguishable, so a hit is a retrieved report with the same text as the image's own.
  const auto E = o.clip_eval_batch;
  torch::Tensor sims;
  {
    torch::NoGradGuard ng;
    auto img = model->encode_image(cxrl::cxr::cxr_clip_preprocess(test.images.narrow(0, 0, E), cfg.image_size));
    std::vector<std::string> texts(test.impressions.begin(), test.impressions.begin() + E);
    sims = torch::matmul(img, model->encode_texts(tok, texts).t());
  }
  auto best = sims.argmax(1);
  int64_t hit_text = 0, hit_index = 0;
  for (int64_t i = 0; i < E; ++i) {
    const auto j = best[i].item<int64_t>();
    hit_index += j == i;
    hit_text += test.impressions[static_cast<std::size_t>(j)] == test.impressions[static_cast<std::size_t>(i)];
  }
  // Chance level of the text-equal rule: mean over images of (#reports with its text) / E.
  double chance = 0;
  for (int64_t i = 0; i < E; ++i)
    chance += static_cast<double>(std::count(test.impressions.begin(), test.impressions.begin() + E, test.impressions[static_cast<std::size_t>(i)]));
  chance /= static_cast<double>(E * E);
  const auto diag = sims.diagonal();
  return {{"test_top1_image_to_report", static_cast<double>(hit_text) / static_cast<double>(E)},
          {"test_top1_exact_index", static_cast<double>(hit_index) / static_cast<double>(E)},
          {"test_top1_chance", chance},
          {"test_mean_matched_cosine", diag.mean().item<double>()},
          {"test_mean_cosine", sims.mean().item<double>()},
          {"eval_batch", E},
          {"logit_scale", model->logit_scale.item<double>()},
          {"final_train_loss", running.value},
          {"steps", o.clip_steps},
          {"seconds", seconds_since(t0)}};
}

/// The whole command; @p resolved is saved next to the weights.
inline void run_train_rewards(const TrainRewardsOptions& o, const nlohmann::json& resolved) {
  namespace fs = std::filesystem;
  check_train_rewards_options(o);
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  torch::manual_seed(o.seed);
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out = o.out;
  fs::create_directories(out);
  write_json(out / "train_rewards_config.json", resolved);
  const bool all = o.only.empty();
  if (all || o.only == "clip") (void)phantom_clip_tokenizer(o);  // fail early on a bad --vocab

  cxrl::data::PhantomDatasetOptions dopt;
  dopt.resolution = o.resolution;
  dopt.seed = o.seed;
  dopt.n_train = static_cast<std::size_t>(o.n_train);
  dopt.n_validate = static_cast<std::size_t>(o.n_validate);
  dopt.n_test = static_cast<std::size_t>(o.n_test);
  cxrl::data::PhantomDataset train_ds(dopt, cxrl::data::Split::train);
  cxrl::data::PhantomDataset validate_ds(dopt, cxrl::data::Split::validate);
  cxrl::data::PhantomDataset test_ds(dopt, cxrl::data::Split::test);

  // Metrics of models not retrained (--only) are kept from an earlier run.
  nlohmann::json metrics = nlohmann::json::object();
  const auto metrics_file = out / "train_rewards_metrics.json";
  if (!all && fs::exists(metrics_file)) {
    std::ifstream f(metrics_file);
    try {
      metrics = nlohmann::json::parse(f);
    } catch (const std::exception&) {
      metrics = nlohmann::json::object();
    }
  }
  cxrl::io::install_interrupt_handler();
  try {
    const auto train = render_split(train_ds, o.quiet);
    const auto test = render_split(test_ds, o.quiet);
    if (all || o.only == "posture") {
      metrics["posture"] = train_posture(o, train_ds, train, test, out);
      write_json(metrics_file, metrics);
    }
    if (all || o.only == "diag") {
      const auto validate = render_split(validate_ds, o.quiet);
      metrics["diag"] = train_diag(o, train, validate, test, out);
      write_json(metrics_file, metrics);
    }
    if (all || o.only == "clip") {
      metrics["clip"] = train_clip(o, train, test, out);
      write_json(metrics_file, metrics);
    }
  } catch (const TrainRewardsInterrupted&) {
    std::fprintf(stderr,
                 "train-rewards: interrupted; models finished before the signal are written, the one in training is "
                 "not (rerun with --only to train it)\n");
    return;
  }
  metrics["seconds_total"] = seconds_since(t0);
  write_json(metrics_file, metrics);
  if (!o.quiet) std::fprintf(stderr, "train-rewards: wrote %s\n%s\n", out.c_str(), metrics.dump(2).c_str());
}

inline void add_train_rewards_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train-rewards",
                                 "Train the phantom world's reward models (PostureNet, xrv DenseNet, CXR-CLIP) with held-out metrics");
  auto o = std::make_shared<TrainRewardsOptions>();
  auto s = std::make_shared<Settings>(cmd);
  s->add("out", o->out, "output folder for the reward weights and train_rewards_metrics.json");
  s->add("only", o->only, "train one model only: posture, diag or clip (default: all three)");
  s->add("vocab", o->vocab, "BERT WordPiece vocab.txt of the CXR-CLIP text encoder (lower-cased)");
  s->add("resolution", o->resolution, "phantom image side in pixels (>= 32)");
  s->add("n_train", o->n_train, "phantom training studies (rendered once, shared by the three models)");
  s->add("n_validate", o->n_validate, "phantom validate studies (DenseNet threshold calibration)");
  s->add("n_test", o->n_test, "phantom test studies (held-out metrics)");
  s->add("canonical_n", o->canonical_n, "training images averaged into the canonical CXR");
  s->add("seed", o->seed, "seed of the phantom world and of training");
  s->add("threads", o->threads, "intra-op threads (0 = LibTorch default)");
  s->flag("quiet", o->quiet, "no progress output");
  s->add("posture_steps", o->posture_steps, "PostureNet optimizer steps");
  s->add("posture_batch_size", o->posture_batch_size, "PostureNet images per step");
  s->add("posture_lr", o->posture_lr, "PostureNet Adam learning rate (cosine-decayed to 1/10)");
  s->add("posture_width", o->posture_width, "PostureNet ResNet-18 base width (torchvision: 64)");
  s->add("posture_psi_weight", o->posture_psi_weight, "weight of the supervised |psi_hat - psi|^2 term (0 = paper's unsupervised loss)");
  s->add("diag_steps", o->diag_steps, "DenseNet optimizer steps");
  s->add("diag_batch_size", o->diag_batch_size, "DenseNet images per step");
  s->add("diag_lr", o->diag_lr, "DenseNet AdamW learning rate");
  s->add("diag_growth_rate", o->diag_growth_rate, "DenseNet growth rate (DenseNet-121: 32)");
  s->add("diag_block_config", o->diag_block_config, "DenseNet layers per dense block (DenseNet-121: 6 12 24 16)");
  s->add("diag_init_features", o->diag_init_features, "DenseNet stem channels (DenseNet-121: 64)");
  s->add("diag_threshold", o->diag_threshold, "op_threshs rule on the validate split: youden (max TPR-FPR) or prevalence");
  s->add("clip_steps", o->clip_steps, "CXR-CLIP optimizer steps");
  s->add("clip_batch_size", o->clip_batch_size, "CXR-CLIP pairs per step (>= 2)");
  s->add("clip_lr", o->clip_lr, "CXR-CLIP AdamW learning rate");
  s->add("clip_width", o->clip_width, "CXR-CLIP ResNet-18 base width");
  s->add("clip_text_hidden", o->clip_text_hidden, "CXR-CLIP BERT hidden size (multiple of 4)");
  s->add("clip_text_layers", o->clip_text_layers, "CXR-CLIP BERT layers");
  s->add("clip_projection_dim", o->clip_projection_dim, "CXR-CLIP projection width");
  s->add("clip_max_length", o->clip_max_length, "CXR-CLIP WordPiece max length (= BERT max positions)");
  s->add("clip_eval_batch", o->clip_eval_batch, "test studies in the image->report retrieval batch");
  cmd->callback([o, s] {
    s->resolve();
    run_train_rewards(*o, s->resolved());
  });
}

}  // namespace cxrl_mimic
