/// @file
/// @brief Training the CXRL scoring models on a labelled image set: the three reward models, and the judges that
///        evaluate fine-tuned generators (the same architectures trained apart: other seed, width and data).
///
/// 1. PostureNet (CXRL §2.3.1; Liu et al. 2019) against the canonical CXR, plus a supervised ψ term where ψ is known;
/// 2. a torchxrayvision-layout DenseNet (Cohen et al. 2022) with masked BCE on the labels mapped onto the xrv
///    outputs exactly as cxr::DiagReward maps them, op_threshs calibrated on validation data so that op_norm puts
///    each decision point at 0.5;
/// 3. a CXR-CLIP (You et al. 2023): ResNet image encoder + BERT text encoder with the symmetric CLIP loss
///    (Radford et al. 2021) on (image, report) pairs.
///
/// Each trainer takes an optional augmentation of its training batches. The reference program uses it to show
/// the models images as the generator's decoder renders them (robustness to generator artefacts): a model that
/// has only seen clean renderings can be fooled by samples unlike them, which the RL then exploits.
#pragma once

#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/image_set.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
#include <cxrl/metrics/auroc.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cxrl::cxr {

/// @brief Replaces a training batch [B, 1, H, W] in [0, 1], drawn at rows @p indices of the training set, by an
///        augmented one of the same shape (an empty function leaves batches as they are).
using ImageAugment = std::function<torch::Tensor(const torch::Tensor& batch, const torch::Tensor& indices, at::Generator& gen)>;
/// @brief Called after each optimizer step with (step, loss); may throw to abort (e.g. on SIGINT).
using StepCallback = std::function<void(int64_t step, double loss)>;

namespace training_detail {
inline torch::Tensor augmented(const ImageAugment& aug, const torch::Tensor& x, const torch::Tensor& idx, at::Generator& gen) {
  return aug ? aug(x, idx, gen) : x;
}
inline void check_set(const CxrImageSet& s, const char* who) {
  if (s.size() < 2 || s.images.dim() != 4 || s.images.size(1) != 1)
    throw std::invalid_argument(std::string(who) + ": expected at least 2 images [N, 1, H, W]");
  if (s.labels.defined() && (s.labels.dim() != 2 || s.labels.size(0) != s.size() || s.labels.size(1) != kNumObservations))
    throw std::invalid_argument(std::string(who) + ": labels must be [N, 14]");
  if (static_cast<int64_t>(s.reports.size()) != s.size()) throw std::invalid_argument(std::string(who) + ": one report per image is required");
}
/// Runs @p f over @p x in chunks of 64 rows without gradient and concatenates the results.
template <class F>
torch::Tensor chunked(const torch::Tensor& x, F&& f) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += 64) out.push_back(f(x.narrow(0, i, std::min<int64_t>(64, x.size(0) - i))));
  return torch::cat(out);
}
}  // namespace training_detail

// ---------------------------------------------------------------------------------------------- posture

/// @brief Settings of train_posture_model().
struct PostureTrainingSettings {
  int64_t steps = 2000;        ///< optimizer steps
  int64_t batch_size = 32;     ///< images per step
  double lr = 1e-3;            ///< Adam learning rate, cosine-decayed to a tenth
  int64_t width = 8;           ///< ResNet-18 base width (torchvision: 64)
  double psi_weight = 1.0;     ///< weight of the supervised ‖ψ̂ − ψ‖² term (0 = the paper's unsupervised loss)
  uint64_t seed = 0;           ///< batch sampling and initialisation
};

/**
 * @brief Trains a PostureNet on @p train towards @p canonical (see train_posture_net()).
 * @param s settings
 * @param train training images (with ψ when psi_weight > 0)
 * @param canonical [1, H, W] the canonical CXR (cxr/canonical.hpp)
 * @param augment optional batch augmentation
 * @param on_step optional progress callback
 */
inline PostureNet train_posture_model(const PostureTrainingSettings& s, const CxrImageSet& train, const torch::Tensor& canonical,
                                      const ImageAugment& augment = {}, const StepCallback& on_step = {}) {
  training_detail::check_set(train, "train_posture_model");
  torch::manual_seed(s.seed);
  PostureNetConfig c;
  c.width = s.width;
  c.image_size = train.images.size(2);
  PostureNet net(c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed + 101);
  PostureTrainOptions topt;
  topt.steps = s.steps;
  topt.lr = s.lr;
  topt.final_lr_fraction = 0.1;
  topt.psi_weight = s.psi_weight;
  topt.log_every = on_step ? 1 : 0;
  topt.on_log = on_step;
  train_posture_net(net, canonical, [&](int64_t) {
    auto idx = torch::randint(train.size(), {s.batch_size}, gen, torch::kLong);
    return PostureBatch{training_detail::augmented(augment, train.images.index_select(0, idx), idx, gen),
                        train.psi.defined() ? train.psi.index_select(0, idx) : torch::Tensor()};
  }, topt);
  return net;
}

/// @brief Held-out mean absolute ψ error per component, and that of always answering the identity (baseline).
/// @param net the model @param test images with true ψ
inline nlohmann::json posture_metrics(PostureNet& net, const CxrImageSet& test) {
  if (!test.psi.defined()) throw std::invalid_argument("posture_metrics: the test set has no true postures");
  net->eval();
  const auto pred = training_detail::chunked(test.images, [&](const torch::Tensor& x) { return net->forward(x); });
  const auto err = (pred - test.psi).abs().mean(0);
  const auto base = (test.psi - identity_posture()).abs().mean(0);
  const char* names[5] = {"s_x", "s_y", "t_x", "t_y", "theta"};
  nlohmann::json mae, idm;
  for (int k = 0; k < 5; ++k) {
    mae[names[k]] = err[k].item<double>();
    idm[names[k]] = base[k].item<double>();
  }
  return {{"test_mean_abs_error", mae}, {"test_identity_mean_abs_error", idm}};
}

// ---------------------------------------------------------------------------------------------- diagnostic

/// @brief How a classifier output's operating point is chosen on validation data.
enum class ThresholdRule {
  youden,      ///< maximise J = TPR − FPR over the observed scores
  prevalence,  ///< call the same fraction present as the validation prevalence
};

/// @brief Parses "youden" or "prevalence". @param s the name @param where source for the message
inline ThresholdRule parse_threshold_rule(const std::string& s, const std::string& where) {
  if (s == "youden") return ThresholdRule::youden;
  if (s == "prevalence") return ThresholdRule::prevalence;
  throw std::invalid_argument(where + ": must be youden or prevalence, got '" + s + "'");
}

/// @brief The name parse_threshold_rule() reads. @param r the rule
inline const char* threshold_rule_name(ThresholdRule r) { return r == ThresholdRule::youden ? "youden" : "prevalence"; }

/// @brief (observation index in kObservations, xrv output index) pairs of DiagReward's default mapping.
inline std::vector<std::pair<int, int>> xrv_observation_pairs() {
  std::vector<std::pair<int, int>> p;
  for (const auto& [obs, out] : default_diag_mapping()) p.emplace_back(observation_index(obs), xrv_pathology_index(out));
  return p;
}

/// @brief xrv-output targets [N, 18] from CheXpert labels [N, 14]: 1 / 0 where stated, NaN elsewhere (uncertain,
///        blank, and outputs DiagReward does not compare). @param labels [N, 14]
inline torch::Tensor xrv_targets(const torch::Tensor& labels) {
  auto t = torch::full({labels.size(0), static_cast<int64_t>(kXrvPathologies.size())}, std::numeric_limits<float>::quiet_NaN());
  for (auto [o, k] : xrv_observation_pairs()) {
    auto l = labels.select(1, o);
    t.select(1, k).copy_(torch::where((l == 0) | (l == 1), l, torch::full_like(l, std::numeric_limits<float>::quiet_NaN())));
  }
  return t;
}

/**
 * @brief Operating point of one output on validation data (predict present when p ≥ t, as DiagReward does).
 * @param y targets [N] (1, 0 or NaN = not stated)
 * @param p scores [N]
 * @param rule youden or prevalence
 * @return the threshold, NaN when fewer than two classes are stated
 */
inline double calibrate_threshold(const torch::Tensor& y, const torch::Tensor& p, ThresholdRule rule) {
  auto valid = ~y.isnan();
  auto yv = y.masked_select(valid).to(torch::kFloat64), pv = p.masked_select(valid).to(torch::kFloat64);
  const auto n = yv.numel();
  const double pos = yv.sum().item<double>(), neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  auto order = torch::argsort(pv, 0, /*descending=*/true);
  auto ys = yv.index_select(0, order), ps = pv.index_select(0, order);
  auto ya = ys.accessor<double, 1>();
  auto pa = ps.accessor<double, 1>();
  if (rule == ThresholdRule::prevalence) return pa[std::max<int64_t>(1, static_cast<int64_t>(std::lround(pos))) - 1];
  double tp = 0, fp = 0, best = -2, t = pa[0];
  for (int64_t i = 0; i < n; ++i) {
    (ya[i] == 1 ? tp : fp) += 1;
    if (i + 1 < n && pa[i + 1] == pa[i]) continue;  // all tied scores fall on the same side
    const double j = tp / pos - fp / neg;
    if (j > best) best = j, t = pa[i];
  }
  return t;
}

/// @brief Settings of train_xrv_densenet().
struct DiagTrainingSettings {
  int64_t steps = 2500;                        ///< optimizer steps
  int64_t batch_size = 32;                     ///< images per step
  double lr = 1e-3;                            ///< AdamW learning rate
  int64_t growth_rate = 8;                     ///< DenseNet growth rate (DenseNet-121: 32)
  std::vector<int64_t> block_config{2, 2, 2, 2};  ///< layers per dense block (DenseNet-121: 6 12 24 16)
  int64_t init_features = 16;                  ///< stem channels (DenseNet-121: 64)
  ThresholdRule threshold = ThresholdRule::youden;  ///< op_threshs rule on the validation set
  uint64_t seed = 0;                           ///< batch sampling and initialisation
};

/**
 * @brief Trains a torchxrayvision-layout DenseNet (18 outputs, 1 channel, at the images' resolution) with masked
 *        BCE, then sets op_threshs from @p validate. Outputs with one class in @p validate keep 0.5.
 * @param s settings
 * @param train training images with labels
 * @param validate calibration images with labels
 * @param augment optional batch augmentation
 * @param on_step optional progress callback
 */
inline XrvDenseNet train_xrv_densenet(const DiagTrainingSettings& s, const CxrImageSet& train, const CxrImageSet& validate,
                                      const ImageAugment& augment = {}, const StepCallback& on_step = {}) {
  training_detail::check_set(train, "train_xrv_densenet");
  training_detail::check_set(validate, "train_xrv_densenet (validate)");
  torch::manual_seed(s.seed);
  auto cfg = nn::DenseNetConfig::densenet121(1, static_cast<int64_t>(kXrvPathologies.size()));
  cfg.growth_rate = s.growth_rate;
  cfg.block_config = s.block_config;
  cfg.num_init_features = s.init_features;
  cfg.bn_size = 4;
  const int64_t res = train.images.size(2);
  XrvDenseNet clf(cfg, res);
  auto& model = clf.model();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(s.lr).weight_decay(1e-4));
  const auto targets = xrv_targets(train.labels);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed + 202);
  model->train();
  for (int64_t step = 1; step <= s.steps; ++step) {
    auto idx = torch::randint(train.size(), {s.batch_size}, gen, torch::kLong);
    auto y = targets.index_select(0, idx);
    auto mask = (~y.isnan()).to(torch::kFloat32);
    auto x = training_detail::augmented(augment, train.images.index_select(0, idx), idx, gen);
    auto logits = model->forward(to_xrv_input(x, res));
    // Masked BCE: uncertain, blank and uncompared outputs contribute nothing (xrv's NaN-label rule).
    auto bce = torch::binary_cross_entropy_with_logits(logits, torch::nan_to_num(y, 0.0), {}, {}, at::Reduction::None);
    auto loss = (bce * mask).sum() / mask.sum().clamp_min(1.0);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (on_step) on_step(step, loss.item<double>());
  }
  model->eval();
  const auto vprobs = training_detail::chunked(validate.images, [&](const torch::Tensor& x) { return torch::sigmoid(clf.logits(to_xrv_input(x, res))); });
  const auto vt = xrv_targets(validate.labels);
  auto th = torch::full({cfg.num_classes}, std::numeric_limits<float>::quiet_NaN());
  for (auto [o, k] : xrv_observation_pairs()) {
    const double t = calibrate_threshold(vt.select(1, k), vprobs.select(1, k), s.threshold);
    th[k] = std::isnan(t) ? 0.5 : t;  // one class in validate: the plain 0.5 operating point
  }
  clf.set_op_threshs(th);
  return clf;
}

/// @brief Held-out AUROC per compared observation (macro rule: an observation with one class is skipped), and
///        accuracy at the calibrated operating point over stated (observation, study) pairs.
/// @param clf the classifier @param test images with labels
inline nlohmann::json diag_metrics(XrvDenseNet& clf, const CxrImageSet& test) {
  clf.model()->eval();
  const auto pairs = xrv_observation_pairs();
  const auto probs = training_detail::chunked(test.images, [&](const torch::Tensor& x) { return clf.probabilities(x); });
  const auto tt = xrv_targets(test.labels);
  std::vector<int64_t> ks;
  for (const auto& pr : pairs) ks.push_back(pr.second);
  const auto kidx = torch::tensor(ks, torch::kLong);
  const auto ys = tt.index_select(1, kidx), ps = probs.index_select(1, kidx);
  nlohmann::json auroc = nlohmann::json::object(), thj = nlohmann::json::object();
  double mean = std::numeric_limits<double>::quiet_NaN();
  try {
    const auto m = metrics::macro_auroc(ys, ps);
    for (std::size_t i = 0; i < pairs.size(); ++i) auroc[std::string(kObservations[static_cast<std::size_t>(pairs[i].first)])] = m.per_task[i];
    mean = m.mean;
  } catch (const std::invalid_argument&) {
    for (const auto& pr : pairs) auroc[std::string(kObservations[static_cast<std::size_t>(pr.first)])] = nullptr;
  }
  for (const auto& pr : pairs)
    thj[std::string(kObservations[static_cast<std::size_t>(pr.first)])] = clf.op_threshs()[pr.second].item<double>();
  const auto stated = ~ys.isnan();
  const auto correct = ((ps >= 0.5).to(torch::kFloat32) == ys).logical_and(stated);
  const double n = stated.sum().item<double>();
  return {{"test_auroc", auroc},
          {"test_auroc_mean", mean},
          {"test_accuracy_at_op", n > 0 ? correct.sum().item<double>() / n : std::numeric_limits<double>::quiet_NaN()},
          {"test_stated_pairs", n},
          {"op_threshs", thj}};
}

// ---------------------------------------------------------------------------------------------- CXR-CLIP

/// @brief Settings of train_cxr_clip().
struct ClipTrainingSettings {
  int64_t steps = 3000;          ///< optimizer steps
  int64_t batch_size = 32;       ///< pairs per step (≥ 2: the loss needs negatives)
  double lr = 5e-4;              ///< AdamW learning rate
  int64_t width = 8;             ///< ResNet-18 base width
  int64_t text_hidden = 32;      ///< BERT hidden size (multiple of 4: 4 heads)
  int64_t text_layers = 2;       ///< BERT layers
  int64_t projection_dim = 32;   ///< joint embedding width
  int64_t max_length = 128;      ///< WordPiece max length (= BERT max positions)
  ClipNormalize normalize = ClipNormalize::huggingface;  ///< pixel normalisation (cxr-clip's default)
  uint64_t seed = 0;             ///< batch sampling and initialisation
};

/**
 * @brief Trains a small CXR-CLIP (ResNet-18 layout + BERT) on (image, report) pairs with the CLIP loss; the learned
 *        temperature is clamped at 100 as CLIP does.
 * @param s settings
 * @param train training pairs
 * @param tok WordPiece tokenizer (its vocabulary size sets the BERT embedding)
 * @param augment optional batch augmentation
 * @param on_step optional progress callback
 */
inline CxrClip train_cxr_clip(const ClipTrainingSettings& s, const CxrImageSet& train, const text::WordPieceTokenizer& tok,
                              const ImageAugment& augment = {}, const StepCallback& on_step = {}) {
  training_detail::check_set(train, "train_cxr_clip");
  if (s.batch_size < 2) throw std::invalid_argument("train_cxr_clip: batch_size must be >= 2 (the CLIP loss needs negatives)");
  torch::manual_seed(s.seed);
  CxrClipConfig c;
  c.image = nn::ResNetConfig::resnet18();
  c.image.width = s.width;
  c.image.include_fc = false;
  c.text.vocab_size = tok.vocab_size();
  c.text.hidden_size = s.text_hidden;
  c.text.num_hidden_layers = s.text_layers;
  c.text.num_attention_heads = 4;
  c.text.intermediate_size = 4 * s.text_hidden;
  c.text.max_position_embeddings = s.max_length;
  c.projection_dim = s.projection_dim;
  c.image_size = train.images.size(2);
  c.max_length = s.max_length;
  c.normalize = s.normalize;
  CxrClip model(c);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(s.lr).weight_decay(1e-4));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed + 303);
  model->train();
  const auto B = std::min<int64_t>(s.batch_size, train.size());
  for (int64_t step = 1; step <= s.steps; ++step) {
    auto idx = torch::randperm(train.size(), gen, torch::kLong).narrow(0, 0, B);
    std::vector<std::string> texts;
    for (int64_t b = 0; b < B; ++b) texts.push_back(train.reports[static_cast<std::size_t>(idx[b].item<int64_t>())]);
    auto x = training_detail::augmented(augment, train.images.index_select(0, idx), idx, gen);
    auto img = model->encode_image(cxr_clip_preprocess(x, c.image_size, c.normalize));
    auto txt = model->encode_texts(tok, texts);
    auto loss = clip_contrastive_loss(img, txt, model->logit_scale);
    opt.zero_grad();
    loss.backward();
    opt.step();
    {
      torch::NoGradGuard ng;
      model->logit_scale.clamp_(0.0, std::log(100.0));
    }
    if (on_step) on_step(step, loss.item<double>());
  }
  model->eval();
  return model;
}

/**
 * @brief Image → report retrieval among the first @p batch test pairs, and mean matched / overall cosine.
 *        Identical reports are indistinguishable, so a hit is a retrieved report with the same text.
 * @param model the dual encoder @param tok its tokenizer @param test held-out pairs @param batch retrieval pool size
 */
inline nlohmann::json clip_metrics(CxrClip& model, const text::WordPieceTokenizer& tok, const CxrImageSet& test, int64_t batch) {
  const int64_t E = std::min<int64_t>(batch, test.size());
  torch::Tensor sims;
  {
    torch::NoGradGuard ng;
    model->eval();
    auto img = model->encode_image(cxr_clip_preprocess(test.images.narrow(0, 0, E), model->config().image_size, model->config().normalize));
    std::vector<std::string> texts(test.reports.begin(), test.reports.begin() + E);
    sims = torch::matmul(img, model->encode_texts(tok, texts).t());
  }
  auto best = sims.argmax(1);
  int64_t hit_text = 0, hit_index = 0;
  double chance = 0;
  for (int64_t i = 0; i < E; ++i) {
    const auto j = best[i].item<int64_t>();
    hit_index += j == i;
    hit_text += test.reports[static_cast<std::size_t>(j)] == test.reports[static_cast<std::size_t>(i)];
    chance += static_cast<double>(std::count(test.reports.begin(), test.reports.begin() + E, test.reports[static_cast<std::size_t>(i)]));
  }
  chance /= static_cast<double>(E * E);
  return {{"test_top1_image_to_report", static_cast<double>(hit_text) / static_cast<double>(E)},
          {"test_top1_exact_index", static_cast<double>(hit_index) / static_cast<double>(E)},
          {"test_top1_chance", chance},
          {"test_mean_matched_cosine", sims.diagonal().mean().item<double>()},
          {"test_mean_cosine", sims.mean().item<double>()},
          {"eval_batch", E},
          {"logit_scale", model->logit_scale.item<double>()}};
}

}  // namespace cxrl::cxr
