/// @file
/// @brief Paired bootstrap confidence intervals for the difference between a model and a reference evaluated on
///        the same items (reports), optionally over several seeds of the model.
///
/// Efron & Tibshirani 1993 (ch. 13, percentile interval). Every model is scored on the same N reports with the
/// same noise, so the comparison is paired: a replicate draws N report indices with replacement and evaluates
/// both the model and the reference on *that* sample, which removes the between-report variance from the
/// difference. A statistic is any function of the drawn indices: a mean of per-report values, or a whole-set
/// metric such as AUROC or FID recomputed on the sample. When the model has S seeds (runs), each replicate also
/// draws S seeds with replacement and averages the model's statistic over them (a two-level bootstrap, Davison &
/// Hinkley 1997 §3.8), so the interval covers seed-to-seed variation as well as the choice of reports.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::eval {

/// @brief A statistic of a model evaluated on the items at @p indices (with repeats).
using Statistic = std::function<double(const std::vector<int64_t>& indices)>;

/// @brief Settings of paired_bootstrap().
struct BootstrapOptions {
  int64_t replicates = 1000;  ///< bootstrap replicates (B)
  double confidence = 0.95;   ///< two-sided level of the percentile interval
  uint64_t seed = 0;          ///< seed of the resampling (fixed: a table reproduces exactly)
};

/// @brief A difference with its interval.
struct PairedDelta {
  double reference = 0;  ///< the reference's statistic on all items
  double value = 0;      ///< the model's statistic on all items, averaged over seeds
  double delta = 0;      ///< value − reference
  double lo = 0;         ///< lower end of the interval of delta
  double hi = 0;         ///< upper end of the interval of delta
  int64_t replicates = 0;  ///< replicates whose statistics were finite (those with a NaN are left out)
  /// @brief Whether the interval excludes 0 (the difference is significant at the chosen level).
  bool excludes_zero() const { return lo > 0 || hi < 0; }
};

/// @brief All item indices 0 … n − 1. @param n number of items
inline std::vector<int64_t> all_items(int64_t n) {
  std::vector<int64_t> v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

/// @brief The q-quantile of @p v by linear interpolation between order statistics (numpy's default).
/// @param v values (sorted in place) @param q in [0, 1]
inline double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(std::floor(pos));
  const double f = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] + f * (v[i + 1] - v[i]) : v[i];
}

/**
 * @brief Paired (and, over seeds, two-level) percentile bootstrap of `mean_s model_s − reference`.
 * @param reference the reference model's statistic (e.g. the anchor)
 * @param model one statistic per seed of the compared model (≥ 1)
 * @param n_items number of paired items (reports)
 * @param o settings
 * @throws std::invalid_argument for no seeds, fewer than 2 items, or a confidence outside (0, 1)
 */
inline PairedDelta paired_bootstrap(const Statistic& reference, const std::vector<Statistic>& model, int64_t n_items,
                                    const BootstrapOptions& o = {}) {
  if (model.empty()) throw std::invalid_argument("paired_bootstrap: the model needs at least one seed");
  if (n_items < 2) throw std::invalid_argument("paired_bootstrap: need at least 2 paired items, got " + std::to_string(n_items));
  if (!(o.confidence > 0 && o.confidence < 1)) throw std::invalid_argument("paired_bootstrap: confidence must be in (0, 1)");
  if (o.replicates < 1) throw std::invalid_argument("paired_bootstrap: replicates must be >= 1");
  const auto all = all_items(n_items);
  PairedDelta d;
  d.reference = reference(all);
  for (const auto& m : model) d.value += m(all) / static_cast<double>(model.size());
  d.delta = d.value - d.reference;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const auto S = static_cast<int64_t>(model.size());
  std::vector<double> deltas;
  deltas.reserve(static_cast<std::size_t>(o.replicates));
  for (int64_t r = 0; r < o.replicates; ++r) {
    const auto items = torch::randint(n_items, {n_items}, gen, torch::kLong);
    std::vector<int64_t> idx(items.data_ptr<int64_t>(), items.data_ptr<int64_t>() + n_items);
    double v = 0;
    if (S == 1) {
      v = model[0](idx);
    } else {
      const auto seeds = torch::randint(S, {S}, gen, torch::kLong);
      for (int64_t s = 0; s < S; ++s) v += model[static_cast<std::size_t>(seeds[s].item<int64_t>())](idx) / static_cast<double>(S);
    }
    const double x = v - reference(idx);
    if (std::isfinite(x)) deltas.push_back(x);
  }
  d.replicates = static_cast<int64_t>(deltas.size());
  const double a = (1 - o.confidence) / 2;
  d.lo = quantile(deltas, a);
  d.hi = quantile(deltas, 1 - a);
  return d;
}

/// @brief The mean of per-item @p values over the drawn indices, as a Statistic (NaN items are skipped).
/// @param values one value per item
inline Statistic mean_of(std::vector<double> values) {
  return [v = std::move(values)](const std::vector<int64_t>& idx) {
    double s = 0;
    int64_t n = 0;
    for (auto i : idx) {
      const double x = v.at(static_cast<std::size_t>(i));
      if (!std::isnan(x)) s += x, ++n;
    }
    return n > 0 ? s / static_cast<double>(n) : std::nan("");
  };
}

/// @brief Pearson's correlation of per-item @p x and @p y over the drawn indices, as a Statistic (items where
///        either is NaN are skipped; NaN when either is constant over the draw).
///
/// Used to ask whether two models measure the same thing on the same images, e.g. a reward model and the judge
/// trained apart from it: an optimiser gains on the judge only through what the two share.
/// @param x, y one value per item each (same length)
/// @throws std::invalid_argument when the lengths differ
inline Statistic correlation_of(std::vector<double> x, std::vector<double> y) {
  if (x.size() != y.size())
    throw std::invalid_argument("correlation_of: " + std::to_string(x.size()) + " and " + std::to_string(y.size()) + " values");
  return [x = std::move(x), y = std::move(y)](const std::vector<int64_t>& idx) {
    double n = 0, mx = 0, my = 0;
    for (auto i : idx) {
      const double a = x.at(static_cast<std::size_t>(i)), b = y.at(static_cast<std::size_t>(i));
      if (!std::isnan(a) && !std::isnan(b)) n += 1, mx += a, my += b;
    }
    if (n < 2) return std::nan("");
    mx /= n, my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (auto i : idx) {
      const double a = x[static_cast<std::size_t>(i)] - mx, b = y[static_cast<std::size_t>(i)] - my;
      if (!std::isnan(a) && !std::isnan(b)) sxy += a * b, sxx += a * a, syy += b * b;
    }
    return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : std::nan("");
  };
}

}  // namespace cxrl::eval
