/// @file
/// @brief Skipped-item bookkeeping for data loading: every malformed row, missing file or empty report
/// is recorded with file:line and a reason, counted per reason, and never silently dropped.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace cxrl::data {

/// @brief One skipped item.
struct Issue {
  std::string file;    ///< file that holds the bad item (CSV, report or image)
  std::size_t line = 0;  ///< 1-based line in @ref file (0 when not line-based)
  std::string reason;  ///< short machine-readable reason, e.g. "malformed_row", "missing_image"
  std::string detail;  ///< human-readable detail
  /// @brief "file:line: reason: detail".
  std::string str() const {
    return file + (line ? ":" + std::to_string(line) : std::string()) + ": " + reason + (detail.empty() ? "" : ": " + detail);
  }
};

/// @brief All issues of a load, with per-reason counts.
class IssueLog {
 public:
  /// @brief Record an issue.
  /// @param i the issue
  void add(Issue i) {
    ++counts_[i.reason];
    issues_.push_back(std::move(i));
  }
  /// @brief Every issue in the order found.
  const std::vector<Issue>& issues() const { return issues_; }
  /// @brief Issue count per reason.
  const std::map<std::string, std::size_t>& counts() const { return counts_; }
  /// @brief Number of issues.
  std::size_t size() const { return issues_.size(); }
  /// @brief Number of issues with @p reason.
  /// @param reason reason string
  std::size_t count(const std::string& reason) const {
    auto it = counts_.find(reason);
    return it == counts_.end() ? 0 : it->second;
  }
  /// @brief One-line summary "N skipped (reason: n, …)".
  std::string summary() const {
    std::string s = std::to_string(issues_.size()) + " skipped";
    if (!counts_.empty()) {
      s += " (";
      bool first = true;
      for (const auto& [k, v] : counts_) {
        s += (first ? "" : ", ") + k + ": " + std::to_string(v);
        first = false;
      }
      s += ")";
    }
    return s;
  }
  /// @brief JSON {"total": n, "by_reason": {...}, "first": ["file:line: …", …]}.
  /// @param first_n how many issues to list
  nlohmann::json to_json(std::size_t first_n = 10) const {
    nlohmann::json j;
    j["total"] = issues_.size();
    j["by_reason"] = nlohmann::json::object();
    for (const auto& [k, v] : counts_) j["by_reason"][k] = v;
    j["first"] = nlohmann::json::array();
    for (std::size_t i = 0; i < issues_.size() && i < first_n; ++i) j["first"].push_back(issues_[i].str());
    return j;
  }

 private:
  std::vector<Issue> issues_;
  std::map<std::string, std::size_t> counts_;
};

}  // namespace cxrl::data
