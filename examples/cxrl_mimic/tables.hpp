// The paper's evaluation tables (CXRL §3, Tables 1, 2a, 2b, 3) from per-run metric records:
// rows are grouped by name, and a cell is mean ± std over the seeds of that row.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace cxrl_mimic {

/// One evaluated run (one row × one seed).
struct RunMetrics {
  std::string row;    // "Anchor", "CXRL", "w/o ACE", "w/o RLCF", "align", "diag", ...
  std::string table;  // "ablation" (Tables 1, 2a, 3) or "rewards" (Table 2b)
  int seed = 0;
  std::map<std::string, double> values;  // metric name → value (NaN when undefined)
};

struct Cell {
  double mean = NAN, std = NAN;
  int n = 0;
};

inline Cell aggregate(const std::vector<double>& v) {
  Cell c;
  std::vector<double> ok;
  for (double x : v)
    if (std::isfinite(x)) ok.push_back(x);
  c.n = static_cast<int>(ok.size());
  if (ok.empty()) return c;
  double s = 0;
  for (double x : ok) s += x;
  c.mean = s / c.n;
  double q = 0;
  for (double x : ok) q += (x - c.mean) * (x - c.mean);
  c.std = c.n > 1 ? std::sqrt(q / (c.n - 1)) : 0.0;
  return c;
}

inline std::string fmt(const Cell& c, int digits) {
  if (c.n == 0) return "n/a";
  char b[64];
  if (c.n > 1) std::snprintf(b, sizeof b, "%.*f ± %.*f", digits, c.mean, digits, c.std);
  else std::snprintf(b, sizeof b, "%.*f", digits, c.mean);
  return b;
}

struct Column {
  std::string key, header;
  int digits;
};

/// Builds one Markdown table + its JSON from the runs of @p table with the given columns.
inline std::string markdown_table(const std::vector<RunMetrics>& runs, const std::string& table,
                                  const std::vector<std::string>& row_order, const std::vector<Column>& cols,
                                  nlohmann::json& json_out) {
  std::ostringstream md;
  md << "| Model | seeds |";
  for (const auto& c : cols) md << ' ' << c.header << " |";
  md << "\n| --- | --- |";
  for (std::size_t i = 0; i < cols.size(); ++i) md << " --- |";
  md << '\n';
  for (const auto& row : row_order) {
    std::vector<const RunMetrics*> rs;
    for (const auto& r : runs)
      if (r.table == table && r.row == row) rs.push_back(&r);
    if (rs.empty()) continue;
    md << "| " << row << " | " << rs.size() << " |";
    nlohmann::json jr = {{"row", row}, {"seeds", rs.size()}};
    for (const auto& c : cols) {
      std::vector<double> v;
      for (const auto* r : rs) {
        auto it = r->values.find(c.key);
        v.push_back(it == r->values.end() ? NAN : it->second);
      }
      const auto cell = aggregate(v);
      md << ' ' << fmt(cell, c.digits) << " |";
      jr[c.key] = {{"mean", cell.n ? nlohmann::json(cell.mean) : nlohmann::json(nullptr)},
                   {"std", cell.n ? nlohmann::json(cell.std) : nlohmann::json(nullptr)},
                   {"n", cell.n},
                   {"values", v}};
      for (auto& x : jr[c.key]["values"])
        if (x.is_number_float() && !std::isfinite(x.get<double>())) x = nullptr;
    }
    md << '\n';
    json_out.push_back(jr);
  }
  return md.str();
}

}  // namespace cxrl_mimic
