/// @file
/// @brief make_mimic_fixture(): a small MIMIC-CXR-JPG-shaped tree made from phantoms — JPEGs under
/// `files/pXX/pXXXXXXXX/sYYYYYYYY/`, reports with MIMIC's layout (a "FINAL REPORT" preamble,
/// EXAMINATION / INDICATION / TECHNIQUE / COMPARISON headers, wrapped lines that start with a space,
/// FINDINGS and IMPRESSION or a variant header such as CONCLUSION), and gzipped metadata, split and
/// chexpert tables. Optionally injects faults (bad rows, missing files, odd headers, CRLF, plain CSV)
/// and returns the exact pairs and issues a correct loader must report.
#pragma once

#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/report_writer.hpp>
#include <cxrl/data/csv.hpp>
#include <cxrl/data/gzip.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/io/image.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace cxrl::cxr {

/// @brief Fixture options.
struct MimicFixtureOptions {
  std::size_t studies = 24;        ///< number of studies (each has one frontal image; some also a lateral)
  std::uint64_t seed = 0;          ///< phantom world seed
  int resolution = 128;            ///< phantom side; JPEGs are portrait (side × side·9/8) so loaders must centre-crop
  bool inject_faults = false;      ///< add the faults listed in MimicFixture::expected_issues
  PhantomConfig phantom{};    ///< study distribution
  std::filesystem::path tokenizer_dir;  ///< CLIP tokenizer folder for the impression budget; empty = bound
};

/// @brief What a correct loader must return for a fixture tree.
struct MimicFixture {
  std::filesystem::path root;                        ///< tree root
  std::vector<MimicRecord> expected;                 ///< valid frontal pairs (image, prompt text, labels, split)
  std::map<std::string, std::size_t> expected_issues;  ///< reason → count (with inject_faults)
  std::vector<PhantomSpec> specs;               ///< ground truth of every study (index = study number)
};

namespace fixture_detail {

/// Wrap text at ~76 columns, every line starting with one space (MIMIC's report layout).
inline std::string wrap(const std::string& text) {
  std::string out, line;
  std::size_t i = 0;
  while (i < text.size()) {
    auto j = text.find(' ', i);
    if (j == std::string::npos) j = text.size();
    const std::string w = text.substr(i, j - i);
    if (!line.empty() && line.size() + 1 + w.size() > 76) {
      out += " " + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + w;
    i = j + 1;
  }
  if (!line.empty()) out += " " + line + "\n";
  return out;
}

inline std::string nl(bool crlf) { return crlf ? "\r\n" : "\n"; }

}  // namespace fixture_detail

/// @brief Write a MIMIC-CXR-JPG-shaped tree of phantom studies under @p out.
/// @param out root folder (created; existing files with the same names are overwritten)
/// @param o options
inline MimicFixture make_mimic_fixture(const std::filesystem::path& out, const MimicFixtureOptions& o) {
  using namespace fixture_detail;
  namespace fs = std::filesystem;
  if (o.studies < 1) throw std::invalid_argument("make_mimic_fixture: studies must be >= 1");
  fs::create_directories(out);
  MimicFixture fx;
  fx.root = out;
  const ReportWriter writer(PhrasingPool::all, make_token_counter(o.tokenizer_dir));
  const int w = o.resolution, h = o.resolution + o.resolution / 8;
  std::string meta = "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
                     "StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
                     "PatientOrientationCodeSequence_CodeMeaning\n";
  std::string split = "dicom_id,study_id,subject_id,split\n";
  std::string chex = "subject_id,study_id";
  for (auto n : kObservations) chex += "," + std::string(n);
  chex += "\n";
  std::size_t split_line = 1;
  static const char* indications[] = {"___ year old woman with cough and fever", "___M with shortness of breath",
                                      "Evaluate for pneumonia", "___F s/p line placement, assess position",
                                      "Chest pain, rule out acute process"};
  for (std::size_t k = 0; k < o.studies; ++k) {
    const auto spec = sample_phantom_spec(o.phantom, data::child_seed(o.seed, 0xF1C + k));
    fx.specs.push_back(spec);
    const auto rep = writer.write(spec);
    data::Rng rng(data::child_seed(spec.seed, 0xF17));
    const std::string subject = std::to_string(10000000 + 1000 * (k / 2) + 17 * (k % 7));  // a few studies share a subject
    const std::string study = std::to_string(50000000 + 7919 * k);
    const double u = static_cast<double>((data::mix64(data::child_seed(o.seed, subject.size() + std::stoull(subject))) >> 11)) * 0x1.0p-53;
    const data::Split sp = u < 0.6 ? data::Split::train : u < 0.75 ? data::Split::validate : data::Split::test;
    const fs::path sdir = out / mimic_study_dir(subject, study);
    fs::create_directories(sdir);
    // Frontal image: the phantom centred in a portrait frame (air above and below).
    auto frontal = torch::zeros({1, h, w});
    frontal.narrow(1, (h - w) / 2, w).copy_(render_phantom(spec, w));
    char dic[64];
    std::snprintf(dic, sizeof dic, "%08llx-%08llx-%08llx-%08llx-%08llx", static_cast<unsigned long long>(rng.next() & 0xffffffffu),
                  static_cast<unsigned long long>(rng.next() & 0xffffffffu), static_cast<unsigned long long>(rng.next() & 0xffffffffu),
                  static_cast<unsigned long long>(rng.next() & 0xffffffffu), static_cast<unsigned long long>(k));
    const std::string dicom = dic;
    io::write_jpeg(sdir / (dicom + ".jpg"), frontal, 95);
    const std::string view = view_name(spec.view);
    meta += dicom + "," + subject + "," + study + ",CHEST (PA AND LAT)," + view + "," + std::to_string(h) + "," +
            std::to_string(w) + ",21800101,120000.000,Chest 2 Views," + (view == "PA" ? "postero-anterior" : "antero-posterior") +
            ",Erect\n";
    split += dicom + "," + study + "," + subject + "," + std::string(data::split_name(sp)) + "\n";
    ++split_line;
    MimicRecord rec;
    rec.dicom_id = dicom;
    rec.subject_id = subject;
    rec.study_id = study;
    rec.view = view;
    rec.split = sp;
    rec.labels = rep.labels;
    rec.findings = rep.findings;
    rec.impression = rep.impression;
    rec.section = "impression";
    rec.image = sdir / (dicom + ".jpg");
    rec.split_line = split_line;
    // Every third study also has a lateral image (not a frontal view: loaders must filter it out).
    if (k % 3 == 1) {
      const std::string lat = dicom.substr(0, dicom.size() - 1) + "l";
      auto li = render_phantom(spec, w, false, false).flip({2});  // stand-in pixels; only the view matters
      io::write_jpeg(sdir / (lat + ".jpg"), li, 90);
      meta += lat + "," + subject + "," + study + ",CHEST (PA AND LAT),LATERAL," + std::to_string(w) + "," +
              std::to_string(w) + ",21800101,120000.000,Chest 2 Views,lateral,Erect\n";
      split += lat + "," + study + "," + subject + "," + std::string(data::split_name(sp)) + "\n";
      ++split_line;
    }
    // Report text with MIMIC's layout; header variants exercise the section normaliser.
    std::string txt = "                                 FINAL REPORT\n";
    txt += " EXAMINATION:  CHEST (" + std::string(view == "PA" ? "PA AND LAT" : "PORTABLE AP") + ")\n \n";
    txt += " INDICATION:  " + std::string(indications[rng.below(5)]) + "\n \n";
    txt += " TECHNIQUE:  Chest " + std::string(view == "PA" ? "PA and lateral" : "AP portable") + "\n \n";
    txt += " COMPARISON:  " + std::string(rng.bernoulli(0.5) ? "None." : "___") + "\n \n";
    const auto variant = rng.below(6);
    if (variant == 5) {
      txt += " FINDINGS AND IMPRESSION: \n \n" + wrap(rep.impression);
      rec.findings.clear();
    } else {
      txt += " FINDINGS: \n \n" + wrap(rep.findings) + " \n";
      txt += std::string(variant == 4 ? " CONCLUSION: " : " IMPRESSION: ") + "\n \n" + wrap(rep.impression);
    }
    fs::path rp = out / mimic_study_dir(subject, study);
    rp += ".txt";
    rec.report = rp;
    std::ofstream(rp, std::ios::binary) << txt;
    chex += subject + "," + study;
    for (auto l : rep.labels) {
      const float v = to_float(l);
      chex += ",";
      if (!std::isnan(v)) chex += v > 0 ? "1.0" : v < 0 ? "-1.0" : "0.0";
    }
    chex += "\n";
    fx.expected.push_back(rec);
  }
  bool split_crlf = false;
  if (o.inject_faults) {
    // 1. split.csv: a row with a missing field, and a row with an unknown split name.
    split += "deadbeef-0000,50000001\n";
    split += "deadbeef-0001,50000002,10000001,holdout\n";
    fx.expected_issues["malformed_row"] += 2;
    // 2. a missing image: remove the first pair's JPEG.
    fs::remove(fx.expected.front().image);
    fx.expected_issues["missing_image"] += 1;
    // 3. an empty report: the second pair's report keeps only its preamble.
    if (fx.expected.size() > 1) std::ofstream(fx.expected[1].report, std::ios::binary) << "                                 FINAL REPORT\n";
    // 4. a missing report: the third pair's report is deleted.
    if (fx.expected.size() > 2) fs::remove(fx.expected[2].report);
    // 5. a chexpert row with an unparsable value and a metadata row with too many fields.
    chex += "10000001,59999999,maybe" + std::string(kNumObservations - 1, ',') + "\n";
    fx.expected_issues["bad_label"] += 1;
    meta += "x,1,2,3,PA,5,6,7,8,9,10,11,12,13\n";
    fx.expected_issues["malformed_row"] += 1;
    // 6. a corrupt JPEG (header bytes only).
    if (fx.expected.size() > 3) std::ofstream(fx.expected[3].image, std::ios::binary) << "\xFF\xD8\xFF garbage";
    // 7. odd headers: a BOM, padded and lower-cased column names; CRLF line ends in split.csv.
    meta.replace(0, meta.find('\n'), "\xEF\xBB\xBF dicom_id , subject_id,study_id,PerformedProcedureStepDescription, viewposition ,Rows,"
                                     "Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
                                     "PatientOrientationCodeSequence_CodeMeaning");
    split_crlf = true;
    std::size_t n_removed = 0;
    for (std::size_t i = 0; i < std::min<std::size_t>(4, fx.expected.size()); ++i) ++n_removed;
    if (fx.expected.size() > 1) fx.expected_issues["empty_report"] += 1;
    if (fx.expected.size() > 2) fx.expected_issues["missing_report"] += 1;
    if (fx.expected.size() > 3) fx.expected_issues["bad_image"] += 1;
    fx.expected.erase(fx.expected.begin(), fx.expected.begin() + static_cast<std::ptrdiff_t>(n_removed));
  }
  if (split_crlf) {
    std::string crlf;
    for (char c : split) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    split = crlf;
  }
  // Tables: gzipped as on PhysioNet; with faults, split.csv is plain (exercises both readers).
  for (const char* stale : {"mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-metadata.csv",
                            "mimic-cxr-2.0.0-chexpert.csv"})
    fs::remove(out / stale);
  data::write_text_maybe_gz(out / "mimic-cxr-2.0.0-metadata.csv.gz", meta);
  data::write_text_maybe_gz(out / (o.inject_faults ? "mimic-cxr-2.0.0-split.csv" : "mimic-cxr-2.0.0-split.csv.gz"), split);
  data::write_text_maybe_gz(out / "mimic-cxr-2.0.0-chexpert.csv.gz", chex);
  return fx;
}

}  // namespace cxrl::cxr
