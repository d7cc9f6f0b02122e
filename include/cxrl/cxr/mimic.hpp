/// @file
/// @brief MIMIC-CXR-JPG v2.0.0 loader: tables, reports, deterministic sampling of image–report pairs
/// (CXRL §4: PA/AP views, impressions ≤ 74 tokens, 5,000 random train pairs, 1,000 test pairs) and
/// lazy JPEG decoding with centre crop and resize.
///
/// Layout (PhysioNet): `<root>/files/pXX/pXXXXXXXX/sYYYYYYYY/<dicom_id>.jpg`, reports
/// `<reports_root>/files/pXX/pXXXXXXXX/sYYYYYYYY.txt` (reports_root defaults to root), tables
/// `<root>/mimic-cxr-2.0.0-{metadata,split,chexpert}.csv[.gz]`.
///
/// Robustness: a malformed CSV row, a row that points at a missing image/report, an unreadable
/// image header or an empty report is recorded in the IssueLog with the CSV file:line and skipped;
/// a missing table or a missing required column is a std::invalid_argument (nothing can be loaded).
#pragma once

#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/report_writer.hpp>
#include <cxrl/data/csv.hpp>
#include <cxrl/data/dataset.hpp>
#include <cxrl/data/issues.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/cxr/sample.hpp>
#include <cxrl/data/sections.hpp>
#include <cxrl/io/image.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace cxrl::cxr {

/// @brief Sample count meaning "every eligible pair".
inline constexpr std::size_t kAllPairs = std::numeric_limits<std::size_t>::max();

/// @brief Loader options.
struct MimicOptions {
  std::filesystem::path root;                     ///< MIMIC-CXR-JPG root (tables + files/)
  std::filesystem::path reports_root;             ///< MIMIC-CXR reports root; empty = root
  std::vector<std::string> views{"PA", "AP"};     ///< ViewPosition values kept
  std::vector<std::string> test_views{};          ///< views of the test split; empty = views (CXRL: {"PA"})
  std::size_t n_train = 5000;                     ///< train pairs sampled (kAllPairs = all)
  std::size_t n_validate = 0;                     ///< validate pairs sampled
  std::size_t n_test = 1000;                      ///< test pairs sampled
  std::uint64_t seed = 0;                         ///< sampling seed
  int resolution = 64;                            ///< output image side
  int64_t max_impression_tokens = 74;             ///< impression budget (CLIP tokens)
  std::filesystem::path tokenizer_dir;            ///< CLIP tokenizer folder; empty = conservative bound
  bool check_images = true;                       ///< read each sampled image's header while indexing
};

/// @brief One indexed image–report pair.
struct MimicRecord {
  std::string dicom_id, subject_id, study_id;  ///< ids as in the tables (numeric, without p/s prefix)
  std::string view;                            ///< ViewPosition
  data::Split split = data::Split::train;                  ///< official split
  Labels labels{};                        ///< CheXpert labels (all blank when the study has no row)
  std::string findings;                        ///< FINDINGS text
  std::string impression;                      ///< prompt text: impression, else findings, else last paragraph, else comparison, else the whole report
  std::string section;                         ///< which section the prompt came from
  std::filesystem::path image;                 ///< JPEG path
  std::filesystem::path report;                ///< report path
  std::size_t split_line = 0;                  ///< line of the pair in split.csv
};

/// @brief Result of indexing: sampled pairs per split, skipped items and counts.
struct MimicIndex {
  MimicOptions options;                                ///< options used
  std::map<data::Split, std::vector<MimicRecord>> pairs;     ///< sampled pairs per split (sampling order)
  std::map<data::Split, std::size_t> eligible;               ///< pairs of an allowed view per split before sampling
  std::size_t no_label_row = 0;                        ///< sampled pairs whose study has no chexpert row
  data::IssueLog issues;                                     ///< skipped items
  std::filesystem::path split_csv, metadata_csv, chexpert_csv;  ///< tables used

  /// @brief Pairs of one split.
  /// @param s split
  const std::vector<MimicRecord>& of(data::Split s) const {
    static const std::vector<MimicRecord> empty;
    auto it = pairs.find(s);
    return it == pairs.end() ? empty : it->second;
  }
  /// @brief JSON summary: pairs per split, views, label counts per observation, skipped items.
  /// @param first_n issues listed in full
  nlohmann::json summary(std::size_t first_n = 10) const {
    nlohmann::json j;
    for (data::Split s : {data::Split::train, data::Split::validate, data::Split::test}) {
      const auto& v = of(s);
      nlohmann::json js;
      js["pairs"] = v.size();
      js["eligible"] = eligible.count(s) ? eligible.at(s) : 0;
      std::map<std::string, std::size_t> views;
      for (const auto& r : v) ++views[r.view];
      js["views"] = views;
      nlohmann::json obs;
      for (int o = 0; o < kNumObservations; ++o) {
        std::size_t pos = 0, neg = 0, unc = 0, blank = 0;
        for (const auto& r : v) {
          const auto l = r.labels[static_cast<std::size_t>(o)];
          (l == Label::positive ? pos : l == Label::negative ? neg : l == Label::uncertain ? unc : blank)++;
        }
        obs[std::string(kObservations[static_cast<std::size_t>(o)])] = {
            {"positive", pos}, {"negative", neg}, {"uncertain", unc}, {"blank", blank}};
      }
      js["labels"] = obs;
      j["splits"][std::string(data::split_name(s))] = js;
    }
    j["studies_without_chexpert_row"] = no_label_row;
    j["skipped"] = issues.to_json(first_n);
    return j;
  }
};

namespace mimic_detail {

inline std::filesystem::path find_table(const std::filesystem::path& root, const std::string& stem) {
  for (const char* ext : {".csv.gz", ".csv"}) {
    auto p = root / (stem + ext);
    if (std::filesystem::exists(p)) return p;
  }
  throw std::invalid_argument("MIMIC-CXR-JPG: table " + (root / (stem + ".csv.gz")).string() + " (or .csv) not found");
}

inline std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n\"");
  const auto e = s.find_last_not_of(" \t\r\n\"");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

/// Strip a leading letter prefix ("p10000032" → "10000032") and check the id is all digits.
inline std::optional<std::string> numeric_id(std::string s) {
  s = trim(std::move(s));
  if (!s.empty() && (s[0] == 'p' || s[0] == 's' || s[0] == 'P' || s[0] == 'S')) s.erase(0, 1);
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  return s;
}

/// CheXpert cell → label; nullopt for an unparsable value.
inline std::optional<Label> parse_label(const std::string& raw) {
  const std::string s = trim(raw);
  if (s.empty() || s == "nan" || s == "NaN") return Label::blank;
  if (s == "1" || s == "1.0") return Label::positive;
  if (s == "0" || s == "0.0" || s == "-0.0") return Label::negative;
  if (s == "-1" || s == "-1.0") return Label::uncertain;
  return std::nullopt;
}

inline std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace mimic_detail

/// @brief Folder of a study: `files/pXX/pSUBJECT/sSTUDY`.
/// @param subject_id numeric subject id
/// @param study_id numeric study id
inline std::filesystem::path mimic_study_dir(const std::string& subject_id, const std::string& study_id) {
  return std::filesystem::path("files") / ("p" + subject_id.substr(0, 2)) / ("p" + subject_id) / ("s" + study_id);
}

/// @brief Index MIMIC-CXR-JPG: read the tables, join them, and sample the pairs of every split.
///
/// Per split, the eligible pairs (split.csv rows whose image has an allowed ViewPosition) are put in
/// the deterministic order shuffled_indices(n, seed ⊕ split) and walked until the requested number of
/// *valid* pairs is found; a pair is valid when its image exists (and its header decodes), its report
/// exists and yields a non-empty main text (data/sections.hpp: parse_report()), and that text has ≤ max tokens.
/// @param o options
/// @throws std::invalid_argument for a missing root, table or required column
inline MimicIndex build_mimic_index(const MimicOptions& o) {
  using namespace mimic_detail;
  namespace fs = std::filesystem;
  if (o.root.empty() || !fs::is_directory(o.root))
    throw std::invalid_argument("MIMIC-CXR-JPG root '" + o.root.string() + "' is not a directory");
  const fs::path rep_root = o.reports_root.empty() ? o.root : o.reports_root;
  if (!fs::is_directory(rep_root)) throw std::invalid_argument("MIMIC-CXR reports root '" + rep_root.string() + "' is not a directory");
  if (o.resolution < 8) throw std::invalid_argument("MimicOptions.resolution must be >= 8");
  MimicIndex idx;
  idx.options = o;
  idx.split_csv = find_table(o.root, "mimic-cxr-2.0.0-split");
  idx.metadata_csv = find_table(o.root, "mimic-cxr-2.0.0-metadata");
  idx.chexpert_csv = find_table(o.root, "mimic-cxr-2.0.0-chexpert");
  auto& log = idx.issues;
  auto bad_row = [&](const data::CsvTable& t, const data::CsvRow& r, const std::string& reason, const std::string& detail) {
    log.add({t.source, r.line, reason, detail});
  };

  // metadata: dicom_id → ViewPosition
  std::unordered_map<std::string, std::string> view_of;
  {
    const auto t = data::read_csv(idx.metadata_csv, &log);
    const auto c_d = t.require("dicom_id"), c_v = t.require("ViewPosition");
    for (const auto& r : t.rows) {
      if (r.fields.size() != t.header.size()) {
        bad_row(t, r, "malformed_row", std::to_string(r.fields.size()) + " fields, header has " + std::to_string(t.header.size()));
        continue;
      }
      const std::string d = trim(r.fields[c_d]);
      if (d.empty()) {
        bad_row(t, r, "malformed_row", "empty dicom_id");
        continue;
      }
      view_of[d] = upper(trim(r.fields[c_v]));
    }
  }
  // chexpert: (subject, study) → labels
  std::unordered_map<std::string, Labels> labels_of;
  {
    const auto t = data::read_csv(idx.chexpert_csv, &log);
    const auto c_sub = t.require("subject_id"), c_st = t.require("study_id");
    std::array<std::size_t, kNumObservations> cols{};
    for (int k = 0; k < kNumObservations; ++k) cols[static_cast<std::size_t>(k)] = t.require(kObservations[static_cast<std::size_t>(k)]);
    for (const auto& r : t.rows) {
      if (r.fields.size() != t.header.size()) {
        bad_row(t, r, "malformed_row", std::to_string(r.fields.size()) + " fields, header has " + std::to_string(t.header.size()));
        continue;
      }
      const auto st = numeric_id(r.fields[c_st]);
      if (!st || !numeric_id(r.fields[c_sub])) {
        bad_row(t, r, "malformed_row", "subject_id/study_id not numeric");
        continue;
      }
      Labels l{};
      bool ok = true;
      for (int k = 0; k < kNumObservations && ok; ++k) {
        const auto v = parse_label(r.fields[cols[static_cast<std::size_t>(k)]]);
        if (!v) {
          bad_row(t, r, "bad_label", std::string(kObservations[static_cast<std::size_t>(k)]) + " = '" +
                                         r.fields[cols[static_cast<std::size_t>(k)]] + "' (expected 1.0, 0.0, -1.0 or blank)");
          ok = false;
        } else {
          l[static_cast<std::size_t>(k)] = *v;
        }
      }
      if (ok) labels_of[*st] = l;
    }
  }
  // split: the pairs
  std::map<data::Split, std::vector<MimicRecord>> eligible;
  {
    const auto t = data::read_csv(idx.split_csv, &log);
    const auto c_d = t.require("dicom_id"), c_st = t.require("study_id"), c_sub = t.require("subject_id"),
               c_sp = t.require("split");
    std::set<std::string> seen;
    for (const auto& r : t.rows) {
      if (r.fields.size() != t.header.size()) {
        bad_row(t, r, "malformed_row", std::to_string(r.fields.size()) + " fields, header has " + std::to_string(t.header.size()));
        continue;
      }
      MimicRecord rec;
      rec.dicom_id = trim(r.fields[c_d]);
      const auto st = numeric_id(r.fields[c_st]), sub = numeric_id(r.fields[c_sub]);
      if (rec.dicom_id.empty() || !st || !sub || sub->size() < 2) {
        bad_row(t, r, "malformed_row", "empty dicom_id or non-numeric subject_id/study_id");
        continue;
      }
      rec.study_id = *st;
      rec.subject_id = *sub;
      try {
        rec.split = data::parse_split(trim(r.fields[c_sp]));
      } catch (const std::invalid_argument& e) {
        bad_row(t, r, "malformed_row", e.what());
        continue;
      }
      if (!seen.insert(rec.dicom_id).second) {
        bad_row(t, r, "duplicate_row", "dicom_id " + rec.dicom_id + " listed twice");
        continue;
      }
      auto v = view_of.find(rec.dicom_id);
      if (v == view_of.end()) {
        bad_row(t, r, "missing_metadata", "dicom_id " + rec.dicom_id + " has no metadata row");
        continue;
      }
      rec.view = v->second;
      const auto& allowed = (rec.split == data::Split::test && !o.test_views.empty()) ? o.test_views : o.views;
      if (std::none_of(allowed.begin(), allowed.end(), [&](const std::string& a) { return upper(a) == rec.view; }))
        continue;  // a view that was not asked for: not an error
      rec.split_line = r.line;
      rec.image = o.root / mimic_study_dir(rec.subject_id, rec.study_id) / (rec.dicom_id + ".jpg");
      {
        fs::path rp = rep_root / mimic_study_dir(rec.subject_id, rec.study_id);
        rp += ".txt";
        if (!fs::exists(rp)) {  // a reports root given as the folder that holds pXX directly
          fs::path alt = rep_root / mimic_study_dir(rec.subject_id, rec.study_id).lexically_relative("files");
          alt += ".txt";
          if (fs::exists(alt)) rp = alt;
        }
        rec.report = rp;
      }
      eligible[rec.split].push_back(std::move(rec));
    }
  }
  // sample + validate
  const auto counter = make_token_counter(o.tokenizer_dir);
  std::unordered_map<std::string, std::optional<data::ReportSections>> report_cache;
  for (auto& [split, recs] : eligible) {
    idx.eligible[split] = recs.size();
    const std::size_t want = split == data::Split::train ? o.n_train : split == data::Split::validate ? o.n_validate : o.n_test;
    auto& out = idx.pairs[split];
    if (want == 0) continue;
    const auto order = data::shuffled_indices(recs.size(), data::child_seed(o.seed, static_cast<std::uint64_t>(split)));
    for (std::size_t k = 0; k < order.size() && out.size() < want; ++k) {
      auto& rec = recs[order[k]];
      const std::string where = idx.split_csv.string();
      int w = 0, h = 0, c = 0;
      if (!fs::exists(rec.image)) {
        log.add({where, rec.split_line, "missing_image", rec.image.string()});
        continue;
      }
      if (o.check_images && !io::image_info(rec.image, w, h, c)) {
        log.add({where, rec.split_line, "bad_image", rec.image.string() + " is not a readable JPEG/PNG"});
        continue;
      }
      auto it = report_cache.find(rec.study_id);
      if (it == report_cache.end()) {
        std::optional<data::ReportSections> sec;
        if (fs::exists(rec.report)) sec = data::parse_report(data::read_text_maybe_gz(rec.report));
        it = report_cache.emplace(rec.study_id, std::move(sec)).first;
      }
      if (!it->second) {
        log.add({where, rec.split_line, "missing_report", rec.report.string()});
        continue;
      }
      if (it->second->main.empty()) {
        log.add({where, rec.split_line, "empty_report", rec.report.string() + " has no impression, findings, last paragraph, comparison or text"});
        continue;
      }
      const auto ntok = counter(it->second->main);
      if (ntok > o.max_impression_tokens) {
        log.add({where, rec.split_line, "impression_too_long",
                 rec.report.string() + ": " + std::to_string(ntok) + " tokens > " + std::to_string(o.max_impression_tokens)});
        continue;
      }
      rec.findings = it->second->findings;
      rec.impression = it->second->main;
      rec.section = it->second->main_name;
      auto l = labels_of.find(rec.study_id);
      if (l != labels_of.end()) {
        rec.labels = l->second;
      } else {
        for (auto& x : rec.labels) x = Label::blank;
        ++idx.no_label_row;
      }
      out.push_back(rec);
    }
  }
  return idx;
}

/// @brief One split of an indexed MIMIC-CXR-JPG; JPEGs are decoded, centre-cropped and resized on access.
class MimicDataset {
 public:
  /// @brief Dataset over @p index's pairs of @p split (the index must outlive the dataset).
  /// @param index result of build_mimic_index()
  /// @param split which split
  MimicDataset(const MimicIndex& index, data::Split split) : index_(&index), split_(split) {}
  /// @brief Number of pairs.
  std::size_t size() const { return index_->of(split_).size(); }
  /// @brief The record of pair @p i.
  /// @param i index < size()
  const MimicRecord& record(std::size_t i) const { return index_->of(split_).at(i); }
  /// @brief Pair @p i with its image decoded now.
  /// @param i index < size()
  /// @throws std::runtime_error naming the JPEG when it cannot be decoded
  Sample get(std::size_t i) const {
    const auto& r = record(i);
    const int res = index_->options.resolution;
    const auto img = io::read_image_u8(r.image, 1);
    const auto px = io::center_crop_resize(img, res);
    Sample s;
    s.image = torch::from_blob(const_cast<float*>(px.data()), {1, res, res}, torch::kFloat32).clone();
    s.meta.findings = r.findings;
    s.prompt = r.impression;
    s.labels = r.labels;
    s.meta.view = r.view;
    s.meta.subject_id = "p" + r.subject_id;
    s.meta.study_id = "s" + r.study_id;
    s.meta.dicom_id = r.dicom_id;
    s.split = r.split;
    return s;
  }

 private:
  const MimicIndex* index_;
  data::Split split_;
};

}  // namespace cxrl::cxr
