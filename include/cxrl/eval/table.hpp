/// @file
/// @brief Result tables: per row and metric the mean (± std over seeds) and the paired difference to a reference
///        row with its bootstrap interval, rendered as Markdown and as JSON (schema: docs/results_schema.md).
#pragma once

#include <cxrl/eval/bootstrap.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace cxrl::eval {

/// @brief Who computed a metric: the judges (models trained apart from the rewards) or the reward models.
enum class MetricSource { judge, reward, reference };

/// @brief The name of a MetricSource in tables.json. @param s the source
inline const char* metric_source_name(MetricSource s) {
  switch (s) {
    case MetricSource::judge: return "judge";
    case MetricSource::reward: return "reward";
    case MetricSource::reference: return "reference";
  }
  return "?";
}

/// @brief One column.
struct MetricSpec {
  std::string key;                 ///< JSON key ("r_align")
  std::string label;               ///< Markdown header ("r_align ↑")
  bool higher_is_better = true;    ///< direction of improvement
  int precision = 3;               ///< decimals in Markdown
  MetricSource source = MetricSource::judge;  ///< who computed it
};

/// @brief One row × metric.
struct Cell {
  double mean = std::nan("");            ///< mean over seeds of the statistic on all items
  double seed_std = std::nan("");        ///< sample std over seeds (NaN for one seed)
  std::optional<PairedDelta> delta;      ///< difference to the reference row (absent for the reference itself)
  /// Each seed's own difference to the reference on all items. The bootstrap's seed level resamples S seeds, which
  /// for S = 2 or 3 cannot show a seed-to-seed spread larger than the items'; these values show it directly.
  std::vector<double> seed_deltas;
};

/// @brief One row: a model (the reference, or a run name with its seeds).
struct Row {
  std::string name;                      ///< row label ("Anchor", "CXRL", …)
  int seeds = 1;                         ///< runs averaged in the row
  std::map<std::string, Cell> cells;     ///< by MetricSpec::key (a missing key prints "–")
};

/// @brief A table.
struct Table {
  std::string id;                        ///< "1", "2a", …
  std::string title;                     ///< heading
  std::vector<MetricSpec> metrics;       ///< columns
  std::vector<Row> rows;                 ///< rows; the reference row first
  std::string note;                      ///< Markdown paragraph under the table
};

namespace table_detail {
inline std::string num(double x, int prec, bool sign = false) {
  if (std::isnan(x)) return "–";
  char b[64];
  std::snprintf(b, sizeof b, sign ? "%+.*f" : "%.*f", prec, x);
  return b;
}
inline nlohmann::json jnum(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
}  // namespace table_detail

/// @brief Whether the interval of @p d excludes 0 on the better side of @p m (true), the worse side (false), or
///        includes 0 (nullopt).
inline std::optional<bool> significant_better(const MetricSpec& m, const PairedDelta& d) {
  if (!d.excludes_zero()) return std::nullopt;
  return (d.lo > 0) == m.higher_is_better;
}

/// @brief How many of @p c's seeds differ from the reference on the better side of @p m. @param m the column
/// @param c the cell
inline int seeds_better(const MetricSpec& m, const Cell& c) {
  int k = 0;
  for (double d : c.seed_deltas) k += m.higher_is_better ? d > 0 : d < 0;
  return k;
}

/**
 * @brief Markdown: `mean [± std] · Δ [lo, hi] mark [· better in k/S seeds]` per cell, where the mark is ✔ when the
 *        interval excludes 0 on the better side and ✘ on the worse side, and the count closes rows of several seeds.
 * @param t the table
 */
inline std::string to_markdown(const Table& t) {
  using table_detail::num;
  std::ostringstream md;
  md << "## Table " << t.id << ": " << t.title << "\n\n| Model | seeds |";
  for (const auto& m : t.metrics) md << " " << m.label << " |";
  md << "\n|---|---|";
  for (std::size_t i = 0; i < t.metrics.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& r : t.rows) {
    md << "| " << r.name << " | " << r.seeds << " |";
    for (const auto& m : t.metrics) {
      auto it = r.cells.find(m.key);
      if (it == r.cells.end() || std::isnan(it->second.mean)) {
        md << " – |";
        continue;
      }
      const auto& c = it->second;
      md << " " << num(c.mean, m.precision);
      if (!std::isnan(c.seed_std)) md << " ± " << num(c.seed_std, m.precision);
      if (c.delta) {
        md << " · Δ " << num(c.delta->delta, m.precision, true) << " [" << num(c.delta->lo, m.precision, true) << ", "
           << num(c.delta->hi, m.precision, true) << "]";
        if (auto s = significant_better(m, *c.delta)) md << (*s ? " ✔" : " ✘");
        if (c.seed_deltas.size() > 1) md << " · better in " << seeds_better(m, c) << "/" << c.seed_deltas.size() << " seeds";
      }
      md << " |";
    }
    md << "\n";
  }
  if (!t.note.empty()) md << "\n" << t.note << "\n";
  return md.str();
}

/// @brief The table as JSON (docs/results_schema.md). @param t the table
inline nlohmann::json to_json(const Table& t) {
  using table_detail::jnum;
  nlohmann::json metrics = nlohmann::json::array(), rows = nlohmann::json::array();
  for (const auto& m : t.metrics)
    metrics.push_back({{"key", m.key}, {"label", m.label}, {"higher_is_better", m.higher_is_better}, {"source", metric_source_name(m.source)}});
  for (const auto& r : t.rows) {
    nlohmann::json cells = nlohmann::json::object();
    for (const auto& m : t.metrics) {
      auto it = r.cells.find(m.key);
      if (it == r.cells.end()) continue;
      const auto& c = it->second;
      nlohmann::json j{{"mean", jnum(c.mean)}, {"seed_std", jnum(c.seed_std)}};
      if (c.delta) {
        j["delta"] = jnum(c.delta->delta);
        j["ci"] = {jnum(c.delta->lo), jnum(c.delta->hi)};
        j["excludes_zero"] = c.delta->excludes_zero();
        const auto s = significant_better(m, *c.delta);
        j["significant"] = s ? nlohmann::json(*s ? "better" : "worse") : nlohmann::json(nullptr);
        j["replicates"] = c.delta->replicates;
        nlohmann::json per = nlohmann::json::array();
        for (double d : c.seed_deltas) per.push_back(jnum(d));
        j["seed_deltas"] = per;
        j["seeds_better"] = seeds_better(m, c);
      }
      cells[m.key] = j;
    }
    rows.push_back({{"name", r.name}, {"seeds", r.seeds}, {"metrics", cells}});
  }
  return {{"id", t.id}, {"title", t.title}, {"metrics", metrics}, {"rows", rows}, {"note", t.note}};
}

/// @brief Mean and sample std of @p v (std NaN for fewer than two values). @param v values
inline std::pair<double, double> mean_and_std(const std::vector<double>& v) {
  if (v.empty()) return {std::nan(""), std::nan("")};
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  if (v.size() < 2) return {m, std::nan("")};
  double q = 0;
  for (double x : v) q += (x - m) * (x - m);
  return {m, std::sqrt(q / static_cast<double>(v.size() - 1))};
}

/**
 * @brief A cell from per-seed statistics: mean and std over seeds on all items, and (when @p reference is set) the
 *        paired bootstrap difference and each seed's own difference.
 * @param seeds one statistic per seed
 * @param n_items paired items
 * @param reference the reference's statistic, or empty for the reference row
 * @param o bootstrap settings
 */
inline Cell make_cell(const std::vector<Statistic>& seeds, int64_t n_items, const Statistic& reference, const BootstrapOptions& o) {
  Cell c;
  const auto all = all_items(n_items);
  std::vector<double> per;
  for (const auto& s : seeds) per.push_back(s(all));
  std::tie(c.mean, c.seed_std) = mean_and_std(per);
  if (reference) {
    c.delta = paired_bootstrap(reference, seeds, n_items, o);
    for (double v : per) c.seed_deltas.push_back(v - c.delta->reference);
  }
  return c;
}

}  // namespace cxrl::eval
