/// @file
/// @brief MIMIC-CXR report section parsing with the semantics of MIT-LCP/mimic-cxr `txt/section_parser.py`.
///
/// - A section header is a newline, one space, an ALL-CAPS name of `[A-Z ()/,-]` and a colon followed by
///   white space (`\n ([A-Z ()/,-]+):\s`). Text before the first header is the "preamble"; a report
///   without headers is one "full report" section. A section's text starts after the header's colon;
///   the next header is searched for only after the end of the header's own line.
/// - Names are lower-cased and normalised: a table of frequent variants and misspellings
///   ("conclusion" and "findings and impression" → impression, "comparisons" → comparison,
///   "reason for exam" → indication, "impresson" → impression, …); otherwise a name that contains a
///   main section name (impression, findings, history, comparison, addendum) becomes it, and one that
///   contains a view description ("chest", "pa and lateral", "portable", …) becomes findings.
/// - Empty impression/findings sections are dropped. When a report has neither, its last paragraph
///   (after the last "\n \n") becomes "last_paragraph".
/// - The text used for a study is the impression, else the findings, else the last paragraph, else the
///   comparison (create_section_files.py's priority); a report that is one plain paragraph is used whole
///   (see parse_report()).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cxrl::data {

/// @brief One report section.
struct Section {
  std::string name;    ///< normalised section name
  std::string text;    ///< raw text (after the header's colon)
  std::size_t offset = 0;  ///< character offset of @ref text in the report
};

namespace sections_detail {

inline constexpr std::pair<std::string_view, std::string_view> kFrequent[] = {
    {"preamble", "preamble"}, {"impression", "impression"}, {"comparison", "comparison"}, {"indication", "indication"},
    {"findings", "findings"}, {"examination", "examination"}, {"technique", "technique"}, {"history", "history"},
    {"comparisons", "comparison"}, {"clinical history", "history"}, {"reason for examination", "indication"},
    {"notification", "notification"}, {"reason for exam", "indication"}, {"clinical information", "history"},
    {"exam", "examination"}, {"clinical indication", "indication"}, {"conclusion", "impression"},
    {"chest, two views", "findings"}, {"recommendation(s)", "recommendations"}, {"type of examination", "examination"},
    {"reference exam", "comparison"}, {"patient history", "history"}, {"addendum", "addendum"},
    {"comparison exam", "comparison"}, {"date", "date"}, {"comment", "comment"}, {"findings and impression", "impression"},
    {"wet read", "wet read"}, {"comparison film", "comparison"}, {"recommendations", "recommendations"},
    {"findings/impression", "impression"}, {"pfi", "history"}, {"recommendation", "recommendations"},
    {"wetread", "wet read"}, {"ndication", "impression"}, {"impresson", "impression"}, {"imprression", "impression"},
    {"imoression", "impression"}, {"impressoin", "impression"}, {"imprssion", "impression"}, {"impresion", "impression"},
    {"imperssion", "impression"}, {"mpression", "impression"}, {"impession", "impression"},
    {"findings/ impression", "impression"}, {"finding", "findings"}, {"findins", "findings"}, {"findindgs", "findings"},
    {"findgings", "findings"}, {"findngs", "findings"}, {"findnings", "findings"}, {"finidngs", "findings"},
    {"idication", "indication"}, {"reference findings", "findings"}, {"comparision", "comparison"},
    {"comparsion", "comparison"}, {"comparrison", "comparison"}, {"comparisions", "comparison"},
    {"concusion", "conclusion"}, {"coinclusion", "conclusion"}};

inline constexpr std::string_view kViewWords[] = {
    "chest", "portable", "pa and lateral", "lateral and pa", "ap and lateral", "lateral and ap", "frontal and",
    "two views", "frontal view", "pa view", "ap view", "one view", "lateral view", "bone window", "frontal upright",
    "frontal semi-upright", "ribs", "pa and lat"};

inline constexpr std::string_view kMain[] = {"impression", "findings", "history", "comparison", "addendum"};

inline bool header_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == ' ' || c == '(' || c == ')' || c == '/' || c == ',' || c == '-';
}

/// Find the next header `\n ([A-Z ()/,-]+):\s` at or after @p from. Returns {match start, name begin,
/// name end, match end}.
inline std::optional<std::array<std::size_t, 4>> find_header(std::string_view t, std::size_t from) {
  for (std::size_t i = t.find('\n', from); i != std::string_view::npos; i = t.find('\n', i + 1)) {
    if (i + 1 >= t.size() || t[i + 1] != ' ') continue;
    std::size_t j = i + 2;
    while (j < t.size() && header_char(t[j])) ++j;
    if (j == i + 2) continue;
    // The regex is greedy but backtracks: the name ends at the last ':' reachable through header chars.
    if (j < t.size() && t[j] == ':' && j + 1 < t.size() && std::isspace(static_cast<unsigned char>(t[j + 1])))
      return std::array<std::size_t, 4>{i, i + 2, j, j + 2};
  }
  return std::nullopt;
}

inline std::string lower_trim(std::string_view s) {
  std::string o;
  for (char c : s) o += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto b = o.find_first_not_of(" \t\r\n"), e = o.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : o.substr(b, e - b + 1);
}

inline bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
}

}  // namespace sections_detail

/// @brief Normalise a section name (lower case; frequent variants and misspellings mapped).
/// @param raw header name as written (any case)
inline std::string normalize_section_name(std::string_view raw) {
  using namespace sections_detail;
  const std::string n = lower_trim(raw);
  for (const auto& [k, v] : kFrequent)
    if (n == k) return std::string(v);
  for (auto m : kMain)
    if (n.find(m) != std::string::npos) return std::string(m);
  for (auto w : kViewWords)
    if (n.find(w) != std::string::npos) return "findings";
  return n;
}

/// @brief Split a MIMIC-CXR report into named sections (see the file comment for the rules).
/// @param text report text (CRLF line ends are treated as LF)
inline std::vector<Section> split_sections(std::string_view text) {
  using namespace sections_detail;
  std::string t(text);
  t.erase(std::remove(t.begin(), t.end(), '\r'), t.end());
  std::vector<Section> out;
  auto m = find_header(t, 0);
  if (!m) {
    out.push_back({"full report", t, 0});
  } else {
    out.push_back({"preamble", t.substr(0, (*m)[1]), 0});
    while (m) {
      const std::string name = normalize_section_name(std::string_view(t).substr((*m)[1], (*m)[2] - (*m)[1]));
      const std::size_t start = (*m)[3];
      std::size_t skip = t.find('\n', start);
      if (skip == std::string::npos) skip = start;
      m = find_header(t, skip);
      const std::size_t end = m ? (*m)[0] : t.size();
      out.push_back({name, t.substr(start, end - start), start});
    }
  }
  for (std::size_t i = out.size(); i-- > 0;)
    if ((out[i].name == "impression" || out[i].name == "findings") && blank(out[i].text)) out.erase(out.begin() + static_cast<std::ptrdiff_t>(i));
  const bool has = std::any_of(out.begin(), out.end(), [](const Section& s) { return s.name == "impression" || s.name == "findings"; });
  if (!has && !out.empty()) {
    auto& last = out.back();
    const auto p = last.text.find("\n \n");
    if (p != std::string::npos) {
      Section lp{"last_paragraph", last.text.substr(p + 3), last.offset + p + 3};
      last.text = last.text.substr(0, p);
      out.push_back(std::move(lp));
    }
  }
  return out;
}

/// @brief Collapse white space runs (including newlines) to single spaces and trim.
/// @param s text
inline std::string collapse_whitespace(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!o.empty() && o.back() != ' ') o += ' ';
    } else {
      o += c;
    }
  }
  if (!o.empty() && o.back() == ' ') o.pop_back();
  return o;
}

/// @brief The parts of a report used downstream.
struct ReportSections {
  std::string findings;    ///< findings text (whitespace-collapsed), may be empty
  std::string impression;  ///< impression text (whitespace-collapsed), may be empty
  std::string main;        ///< impression, else findings, else last paragraph, else comparison, else the whole report
  std::string main_name;   ///< which section @ref main came from ("" when none)
};

namespace sections_detail {
/// The report without a leading "FINAL REPORT" title line (MIMIC-CXR's report files start with one).
inline std::string_view without_title(std::string_view t) {
  const auto b = t.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  t.remove_prefix(b);
  constexpr std::string_view title = "FINAL REPORT";
  if (t.substr(0, title.size()) == title) t.remove_prefix(title.size());
  return t;
}
}  // namespace sections_detail

/**
 * @brief Extract findings, impression and the main text of a report.
 *
 * The main text follows create_section_files.py: the last impression, else the last findings, else the last
 * paragraph, else the last comparison section (radiologists without other headers often write the report
 * there). One extension: a report with no section header and no paragraph break, i.e. one plain paragraph,
 * has no usable section for the reference (it prints "no impression/findings" and yields ""); here its whole
 * text, less a "FINAL REPORT" title, is the main text ("full report"), because that paragraph is the report.
 * @param text report text
 */
inline ReportSections parse_report(std::string_view text) {
  ReportSections r;
  std::string last_paragraph, comparison, full;
  for (const auto& s : split_sections(text)) {
    // The last occurrence wins, like the reference's list_rindex.
    if (s.name == "impression") r.impression = collapse_whitespace(s.text);
    else if (s.name == "findings") r.findings = collapse_whitespace(s.text);
    else if (s.name == "last_paragraph") last_paragraph = collapse_whitespace(s.text);
    else if (s.name == "comparison") comparison = collapse_whitespace(s.text);
    else if (s.name == "full report") full = collapse_whitespace(sections_detail::without_title(s.text));
  }
  for (const auto& [text_of, name] : {std::pair{&r.impression, "impression"}, std::pair{&r.findings, "findings"},
                                      std::pair{&last_paragraph, "last_paragraph"}, std::pair{&comparison, "comparison"},
                                      std::pair{&full, "full report"}})
    if (!text_of->empty()) {
      r.main = *text_of;
      r.main_name = name;
      break;
    }
  return r;
}

}  // namespace cxrl::data
