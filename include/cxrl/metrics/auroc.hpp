/// @file
/// @brief Area under the ROC curve: scikit-learn `roc_auc_score` (binary, ties count 1/2) and the
///        multi-task macro average of torchxrayvision (`train_utils.valid_test_epoch`).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::metrics {

/// @brief Binary AUROC = P(score_pos > score_neg) + 1/2 P(score_pos = score_neg), i.e. the normalised
///        Mann-Whitney U statistic with mid-ranks for ties (equal to sklearn's trapezoidal ROC area).
/// @param labels 0/1 labels (any shape, flattened); NaN is not allowed here
/// @param scores scores of the same number of elements (any monotone map gives the same AUROC)
/// @throws std::invalid_argument when only one class is present (as sklearn: "Only one class present in
///         y_true. ROC AUC score is not defined in that case."), for labels other than 0/1, NaN or
///         mismatched sizes
inline double roc_auc_score(const torch::Tensor& labels, const torch::Tensor& scores) {
  auto y = labels.detach().to(torch::kCPU, torch::kFloat64).reshape({-1}).contiguous();
  auto s = scores.detach().to(torch::kCPU, torch::kFloat64).reshape({-1}).contiguous();
  if (y.numel() != s.numel())
    throw std::invalid_argument("roc_auc_score: " + std::to_string(y.numel()) + " labels but " +
                                std::to_string(s.numel()) + " scores");
  const int64_t n = y.numel();
  const double* yp = y.data_ptr<double>();
  const double* sp = s.data_ptr<double>();
  int64_t n_pos = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(yp[i]))
      throw std::invalid_argument("roc_auc_score: labels contain NaN (mask missing labels first, or use macro_auroc)");
    if (yp[i] != 0.0 && yp[i] != 1.0)
      throw std::invalid_argument("roc_auc_score: labels must be 0 or 1, got " + std::to_string(yp[i]));
    if (std::isnan(sp[i])) throw std::invalid_argument("roc_auc_score: scores contain NaN");
    n_pos += yp[i] == 1.0;
  }
  const int64_t n_neg = n - n_pos;
  if (n_pos == 0 || n_neg == 0)
    throw std::invalid_argument(
        "roc_auc_score: Only one class present in y_true. ROC AUC score is not defined in that case (" +
        std::to_string(n_pos) + " positives, " + std::to_string(n_neg) + " negatives)");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sp[a] < sp[b]; });
  // Sum of the (1-based, tie-averaged) ranks of the positives.
  double rank_sum_pos = 0.0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && sp[order[j + 1]] == sp[order[i]]) ++j;
    const double mid_rank = 0.5 * static_cast<double>(i + j) + 1.0;
    for (int64_t k = i; k <= j; ++k)
      if (yp[order[k]] == 1.0) rank_sum_pos += mid_rank;
    i = j + 1;
  }
  const double np = static_cast<double>(n_pos), nn = static_cast<double>(n_neg);
  return (rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn);
}

/// @brief Per-task AUROCs and their mean over the tasks where it is defined.
struct MacroAuroc {
  std::vector<double> per_task;  ///< AUROC of each task; NaN for a skipped task
  std::vector<int64_t> skipped;  ///< tasks with fewer than 2 classes after dropping NaN labels
  double mean = std::numeric_limits<double>::quiet_NaN();  ///< mean over the non-skipped tasks
};

/// @brief Multi-task AUROC with torchxrayvision's rule: for each task drop rows whose label is NaN
///        (missing), skip the task if fewer than 2 distinct labels remain, and average the rest.
///
/// Unlike sklearn's `roc_auc_score(average="macro")`, which raises if any task has one class, this
/// reports the mean over valid tasks (equal to sklearn's macro value when every task is valid).
/// @param labels [N, T] labels in {0, 1} or NaN (missing)
/// @param scores [N, T] scores
/// @throws std::invalid_argument on shape mismatch, or when no task has both classes
inline MacroAuroc macro_auroc(const torch::Tensor& labels, const torch::Tensor& scores) {
  if (labels.dim() != 2 || scores.sizes() != labels.sizes()) {
    std::ostringstream o;
    o << "macro_auroc: labels and scores must both be [N, T], got " << labels.sizes() << " and " << scores.sizes();
    throw std::invalid_argument(o.str());
  }
  auto y = labels.detach().to(torch::kCPU, torch::kFloat64);
  auto s = scores.detach().to(torch::kCPU, torch::kFloat64);
  MacroAuroc r;
  double sum = 0.0;
  int64_t used = 0;
  for (int64_t t = 0; t < y.size(1); ++t) {
    auto yt = y.select(1, t), st = s.select(1, t);
    auto keep = yt.isnan().logical_not();
    auto yk = yt.masked_select(keep), sk = st.masked_select(keep);
    const bool two_classes = yk.numel() > 0 && yk.min().item<double>() != yk.max().item<double>();
    if (!two_classes) {
      r.per_task.push_back(std::numeric_limits<double>::quiet_NaN());
      r.skipped.push_back(t);
      continue;
    }
    const double a = roc_auc_score(yk, sk);
    r.per_task.push_back(a);
    sum += a;
    ++used;
  }
  if (used == 0)
    throw std::invalid_argument("macro_auroc: no task has both classes after dropping missing labels (" +
                                std::to_string(y.size(1)) + " tasks); AUROC is undefined");
  r.mean = sum / static_cast<double>(used);
  return r;
}

/// @brief sklearn `roc_auc_score(y, s, average="macro")` for multilabel input: the unweighted mean of the
///        per-task AUROCs; like sklearn it refuses input where any task has a single class (or NaN labels).
/// @param labels [N, T] labels in {0, 1}
/// @param scores [N, T] scores
/// @throws std::invalid_argument naming the first task with one class ("Only one class present in y_true")
inline double roc_auc_score_macro(const torch::Tensor& labels, const torch::Tensor& scores) {
  if (labels.dim() != 2 || scores.sizes() != labels.sizes()) {
    std::ostringstream o;
    o << "roc_auc_score_macro: labels and scores must both be [N, T], got " << labels.sizes() << " and "
      << scores.sizes();
    throw std::invalid_argument(o.str());
  }
  double sum = 0.0;
  for (int64_t t = 0; t < labels.size(1); ++t) {
    try {
      sum += roc_auc_score(labels.select(1, t), scores.select(1, t));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("roc_auc_score_macro: task " + std::to_string(t) + ": " + e.what() +
                                  " (macro_auroc() skips such tasks instead, as torchxrayvision does)");
    }
  }
  return sum / static_cast<double>(labels.size(1));
}

}  // namespace cxrl::metrics
