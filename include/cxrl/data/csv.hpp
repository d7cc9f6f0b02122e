/// @file
/// @brief RFC 4180 CSV reading with line numbers: quoted fields (commas, quotes, newlines inside),
/// CRLF or LF line ends, a UTF-8 byte-order mark, plain or gzipped files, and case-/space-insensitive
/// header lookup.
#pragma once

#include <cxrl/data/gzip.hpp>
#include <cxrl/data/issues.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::data {

/// @brief One CSV record and the 1-based line on which it starts.
struct CsvRow {
  std::size_t line = 0;             ///< line number of the record's first character
  std::vector<std::string> fields;  ///< unquoted field values
};

/// @brief A parsed CSV file: header + records.
struct CsvTable {
  std::string source;                  ///< file name (for messages)
  std::vector<std::string> header;     ///< header fields as written
  std::vector<CsvRow> rows;            ///< data records (blank lines skipped)

  /// @brief Column index of @p name, compared case-insensitively after trimming spaces and quotes.
  /// @param name column name
  /// @return the index, or std::nullopt when absent
  std::optional<std::size_t> find(std::string_view name) const {
    const auto key = normalize(name);
    for (std::size_t i = 0; i < header.size(); ++i)
      if (normalize(header[i]) == key) return i;
    return std::nullopt;
  }
  /// @brief Column index of @p name; throws when absent.
  /// @param name column name
  /// @throws std::invalid_argument naming the file, the column and the header found
  std::size_t require(std::string_view name) const {
    if (auto i = find(name)) return *i;
    std::string h;
    for (const auto& c : header) h += (h.empty() ? "" : ",") + c;
    throw std::invalid_argument(source + ":1: missing required column '" + std::string(name) + "' (header: " + h + ")");
  }
  /// @brief Lower-case, trimmed form used for header matching.
  /// @param s header cell
  static std::string normalize(std::string_view s) {
    std::string out;
    for (char c : s)
      if (!std::isspace(static_cast<unsigned char>(c)) && c != '"') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }
};

/// @brief Parse CSV text.
/// @param text file content (LF or CRLF line ends; a leading UTF-8 BOM is ignored)
/// @param source file name for messages
/// @param issues receives an "unterminated_quote" issue when the text ends inside a quoted field
inline CsvTable parse_csv(std::string_view text, const std::string& source, IssueLog* issues = nullptr) {
  CsvTable t;
  t.source = source;
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::string> fields;
  std::string field;
  bool in_quotes = false, field_started = false, any = false;
  std::size_t line = 1, record_line = 1;
  auto end_record = [&] {
    if (any) {
      fields.push_back(std::move(field));
      const bool blank = fields.size() == 1 && fields[0].empty() && !field_started;
      if (!blank) {
        CsvRow r{record_line, std::move(fields)};
        t.rows.push_back(std::move(r));
      }
    }
    fields.clear();
    field.clear();
    field_started = false;
    any = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!any) {
      record_line = line;
      any = true;
    }
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        if (!(c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) field += c;
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      in_quotes = true;
      field_started = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      field_started = true;
    } else if (c == '\r' && (i + 1 == text.size() || text[i + 1] == '\n')) {
      // CR of a CRLF line end (or a final CR)
    } else if (c == '\n') {
      end_record();
      ++line;
    } else {
      field += c;
      field_started = true;
    }
  }
  if (in_quotes && issues)
    issues->add({source, record_line, "unterminated_quote", "the file ends inside a quoted field"});
  end_record();
  if (!t.rows.empty()) {
    t.header = std::move(t.rows.front().fields);
    t.rows.erase(t.rows.begin());
  }
  return t;
}

/// @brief Read and parse a CSV file, plain or gzipped (detected by content).
/// @param path file
/// @param issues receives file-level issues (see parse_csv())
inline CsvTable read_csv(const std::filesystem::path& path, IssueLog* issues = nullptr) {
  return parse_csv(read_text_maybe_gz(path), path.string(), issues);
}

/// @brief Quote a CSV field when needed (RFC 4180).
/// @param s field value
inline std::string csv_escape(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace cxrl::data
