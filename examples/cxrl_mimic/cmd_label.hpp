// `cxrl_mimic label`: CheXpert-style labels for radiology reports with cxrl's rule-based labeler
// (include/cxrl/cxr/labeler.hpp).
//
// Input (a file or stdin): one report per line, either plain text or a JSON object with a string field
// `text` (the format is detected per line: a line starting with '{' is JSON; force one with --format).
// Empty lines are skipped. Output (a file or stdout): one JSON object per report, in input order, with
// the 14 observations of kObservations as keys and 1 / 0 / -1 / null (blank) as values. With
// --with-text the report text is echoed under "text"; JSON inputs' other fields can be copied with --keep.
#pragma once

#include <cxrl/cxr/labeler.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl_mimic {

/// Options of `cxrl_mimic label`.
struct LabelOptions {
  std::string input = "-";    // file, or "-" for stdin
  std::string output = "-";   // file, or "-" for stdout
  std::string format = "auto";  // auto | text | jsonl
  bool with_text = false;
  std::vector<std::string> keep;  // JSON input fields copied to the output
};

/// Labels every report of @p in and writes JSON lines to @p out; returns the number of reports.
/// @p source names the input in error messages.
inline std::size_t label_reports(std::istream& in, std::ostream& out, const LabelOptions& o,
                                 const std::string& source = "<stdin>") {
  if (o.format != "auto" && o.format != "text" && o.format != "jsonl")
    throw std::invalid_argument("label: --format must be auto, text or jsonl, got '" + o.format + "'");
  const auto& labeler = cxrl::cxr::default_labeler();
  std::string line;
  std::size_t line_no = 0, n = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const bool json = o.format == "jsonl" || (o.format == "auto" && line[line.find_first_not_of(" \t")] == '{');
    std::string text;
    nlohmann::json record;
    if (json) {
      try {
        record = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        throw std::invalid_argument(source + ":" + std::to_string(line_no) + ": not valid JSON (" + e.what() + ")");
      }
      if (!record.is_object() || !record.contains("text") || !record["text"].is_string())
        throw std::invalid_argument(source + ":" + std::to_string(line_no) +
                                    ": a JSON line needs a string field \"text\" with the report");
      text = record["text"].get<std::string>();
    } else {
      text = line;
    }
    const auto labels = labeler.label(text);
    nlohmann::ordered_json j;
    for (const auto& key : o.keep) {
      if (!json) throw std::invalid_argument("label: --keep needs JSON lines input (" + source + ")");
      if (!record.contains(key))
        throw std::invalid_argument(source + ":" + std::to_string(line_no) + ": --keep field \"" + key +
                                    "\" is missing");
      j[key] = record[key];
    }
    if (o.with_text) j["text"] = text;
    for (int i = 0; i < cxrl::cxr::kNumObservations; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const std::string name(cxrl::cxr::kObservations[k]);
      switch (labels[k]) {
        case cxrl::cxr::Label::positive: j[name] = 1; break;
        case cxrl::cxr::Label::negative: j[name] = 0; break;
        case cxrl::cxr::Label::uncertain: j[name] = -1; break;
        default: j[name] = nullptr; break;
      }
    }
    out << j.dump() << '\n';
    ++n;
  }
  if (in.bad()) throw std::runtime_error("label: read error on " + source);
  return n;
}

/// Runs the subcommand with files or the standard streams.
inline void run_label(const LabelOptions& o) {
  std::ifstream fin;
  std::ofstream fout;
  if (o.input != "-") {
    fin.open(o.input);
    if (!fin) throw std::invalid_argument("label: cannot open input file '" + o.input + "'");
  }
  if (o.output != "-") {
    fout.open(o.output);
    if (!fout) throw std::invalid_argument("label: cannot open output file '" + o.output + "'");
  }
  std::istream& in = o.input == "-" ? std::cin : fin;
  std::ostream& out = o.output == "-" ? std::cout : fout;
  const std::size_t n = label_reports(in, out, o, o.input == "-" ? "<stdin>" : o.input);
  out.flush();
  if (!out) throw std::runtime_error("label: write error on " + (o.output == "-" ? std::string("<stdout>") : o.output));
  std::cerr << "labelled " << n << " report(s)\n";
}

/// Registers `label` on @p app.
inline void add_label_command(CLI::App& app) {
  auto o = std::make_shared<LabelOptions>();
  auto* c = app.add_subcommand("label", "CheXpert-style labels (1/0/-1/null per observation) for reports, "
                                        "one per line (plain text or JSON lines with a \"text\" field)");
  c->add_option("input", o->input, "report file, or - for stdin")->capture_default_str();
  c->add_option("-o,--output", o->output, "JSON lines output, or - for stdout")->capture_default_str();
  c->add_option("--format", o->format, "input format")->capture_default_str()->check(
      CLI::IsMember({"auto", "text", "jsonl"}));
  c->add_flag("--with-text", o->with_text, "echo the report text under \"text\"");
  c->add_option("--keep", o->keep, "JSON input fields to copy to the output (e.g. --keep study_id)");
  c->callback([o] { run_label(*o); });
}

}  // namespace cxrl_mimic
