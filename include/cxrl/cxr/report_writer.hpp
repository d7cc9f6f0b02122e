/// @file
/// @brief Radiology report writer of the phantom world: FINDINGS and IMPRESSION text consistent with a
/// study's CheXpert labels — positives with severity and laterality words, explicit negations,
/// uncertainty, device mentions and normal studies — with several templates per finding.
///
/// **Phrasing pools.** Every template list is split into a *train* part and a *held-out* part (the
/// last template of every list with three or more entries). Training data uses the train pool,
/// evaluation can use the held-out pool, so evaluation reports are phrased in ways the model never saw.
///
/// **Labels.** write() returns the labels *of the impression text* (the section MIMIC-CXR's CheXpert
/// labels come from): a negation that does not fit the 74-token budget is left out of the impression
/// and its label becomes blank. Positive and uncertain findings come first and are always in the
/// impression unless even they exceed the budget; then uncertain and the least important positive
/// mentions are left out (label blank = not mentioned) — with CLIP's count and ≤ 3 findings this
/// does not happen (tests/cxr/test_report_writer.cpp).
/// The phrasings avoid words that the CheXpert labeler maps to other observations (e.g. "plate-like"
/// → a support-device "plate", "opacities" in a pneumonia sentence → Lung Opacity).
#pragma once

#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/phantom.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cxrl::cxr {

/// @brief Which templates a writer may use.
enum class PhrasingPool { train, heldout, all };

/// @brief A generated report.
struct Report {
  std::string findings;    ///< FINDINGS section text
  std::string impression;  ///< IMPRESSION section text (≤ the token budget)
  Labels labels{};         ///< CheXpert labels of the impression
  /// @brief Both sections with MIMIC-style headers.
  std::string text() const { return "FINDINGS: " + findings + "\n\nIMPRESSION: " + impression; }
};

/// @brief Counts the tokens of a text (e.g. `ClipTokenizer::count_tokens`).
using TokenCounter = std::function<int64_t(std::string_view)>;

/// @brief Upper bound on the CLIP BPE token count without a vocabulary: every maximal letter run of
/// length L counts ⌈L/3⌉ (BPE pieces of clinical words are rarely shorter), every digit and every other
/// non-space character counts 1. Used when no tokenizer is available; CLIP's count is never larger in
/// practice for report text.
/// @param text UTF-8 text
inline int64_t conservative_token_bound(std::string_view text) {
  int64_t n = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isalpha(c)) {
      std::size_t j = i;
      while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
      n += static_cast<int64_t>((j - i + 2) / 3);
      i = j;
    } else {
      if (!std::isspace(c) && (c < 0x80 || (c & 0xC0) == 0xC0)) ++n;  // one per code point
      ++i;
    }
  }
  return n;
}

namespace report_detail {

using Templates = std::span<const std::string_view>;

/// Templates usable by a pool: the last one of a list of ≥3 is held out.
inline std::vector<std::string_view> pool_of(Templates t, PhrasingPool pool) {
  std::vector<std::string_view> out;
  const std::size_t n = t.size();
  for (std::size_t i = 0; i < n; ++i) {
    const bool held = n >= 3 && i + 1 == n;
    if (pool == PhrasingPool::all || (pool == PhrasingPool::heldout) == held || (pool == PhrasingPool::heldout && n < 3))
      out.push_back(t[i]);
  }
  return out;
}

struct Vars {
  std::string sev, sevly, side, base, lobe, zone, rib, size, s, disp;
};

inline std::string fill(std::string_view t, const Vars& v) {
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '{') {
      out += t[i];
      continue;
    }
    const auto e = t.find('}', i);
    const auto key = t.substr(i + 1, e - i - 1);
    if (key == "sev") out += v.sev;
    else if (key == "sevly") out += v.sevly;
    else if (key == "side") out += v.side;
    else if (key == "base") out += v.base;
    else if (key == "lobe") out += v.lobe;
    else if (key == "zone") out += v.zone;
    else if (key == "rib") out += v.rib;
    else if (key == "size") out += v.size;
    else if (key == "s") out += v.s;
    else if (key == "disp") out += v.disp;
    else throw std::logic_error("report template: unknown placeholder {" + std::string(key) + "}");
    i = e;
  }
  // collapse double spaces left by empty variables, capitalise the sentence
  std::string clean;
  for (char c : out)
    if (!(c == ' ' && (clean.empty() || clean.back() == ' '))) clean += c;
  if (!clean.empty()) clean[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(clean[0])));
  return clean;
}

// ---- positive templates: {findings-section} and {impression} lists per observation ----
inline constexpr std::string_view kAteF[] = {"{sev} {base} atelectasis.", "Linear atelectasis in the {base} region.",
                                             "There is {sev} discoid atelectasis at the {base} region.",
                                             "{sev} {base} atelectasis with mild volume loss."};
inline constexpr std::string_view kAteI[] = {"{sev} {base} atelectasis.", "{base} atelectasis, {sev}.",
                                             "{sev} atelectasis, {base}."};
inline constexpr std::string_view kCmF[] = {"The heart is {sevly} enlarged.", "{sev} cardiomegaly.",
                                            "Heart size is {sevly} enlarged.", "{sev} enlargement of the cardiac silhouette."};
inline constexpr std::string_view kCmI[] = {"{sev} cardiomegaly.", "{sevly} enlarged heart size.",
                                            "{sev} enlargement of the cardiac silhouette."};
inline constexpr std::string_view kConF[] = {"Dense consolidation in the {lobe}.", "There is {sev} {lobe} consolidation.",
                                             "Focal consolidation is present in the {lobe}."};
inline constexpr std::string_view kConI[] = {"{lobe} consolidation.", "Consolidation in the {lobe}.",
                                             "Dense {lobe} consolidation."};
inline constexpr std::string_view kEdF[] = {"{sev} pulmonary edema.", "There is {sev} interstitial pulmonary edema.",
                                            "Findings are consistent with {sev} pulmonary edema.",
                                            "{sev} perihilar edema."};
inline constexpr std::string_view kEdI[] = {"{sev} pulmonary edema.", "{sev} interstitial edema.",
                                            "Pulmonary edema, {sev}."};
inline constexpr std::string_view kEcmF[] = {"The mediastinal silhouette is widened.",
                                             "{sev} widening of the mediastinal contours.",
                                             "The cardiomediastinal silhouette is enlarged."};
inline constexpr std::string_view kEcmI[] = {"Widened mediastinal silhouette.", "{sev} mediastinal widening.",
                                             "Enlarged cardiomediastinal silhouette."};
inline constexpr std::string_view kFxF[] = {"{disp} fracture of the {side} {rib} posterior rib.",
                                            "There is a {disp} {side} {rib} rib fracture.",
                                            "{disp} fracture of the posterior {side} {rib} rib."};
inline constexpr std::string_view kFxI[] = {"{side} {rib} rib fracture.", "{disp} {side} {rib} rib fracture.",
                                            "Fracture of the {side} {rib} rib."};
inline constexpr std::string_view kNodF[] = {"A {size} cm nodule in the {zone}.", "{size} cm pulmonary nodule in the {zone}.",
                                             "There is a {size} cm nodule projecting over the {zone}."};
inline constexpr std::string_view kNodI[] = {"{size} cm {side} lung nodule.", "{side} lung nodule measuring {size} cm.",
                                             "Pulmonary nodule in the {zone}, {size} cm."};
inline constexpr std::string_view kMassF[] = {"A {size} cm mass in the {zone}.", "{size} cm lobulated mass in the {zone}.",
                                              "There is a {size} cm mass projecting over the {zone}."};
inline constexpr std::string_view kMassI[] = {"{size} cm {side} lung mass.", "{side} lung mass measuring {size} cm.",
                                              "Mass in the {zone}, {size} cm."};
inline constexpr std::string_view kOpF[] = {"Ill-defined opacity in the {zone}.", "Hazy opacity in the {zone}.",
                                            "There is a {sev} opacity in the {zone}."};
inline constexpr std::string_view kOpI[] = {"{zone} opacity.", "Opacity in the {zone}.", "Hazy {zone} opacity."};
inline constexpr std::string_view kEffF[] = {"{sev} {side} pleural effusion{s}.", "There is a {sev} {side} pleural effusion{s}.",
                                             "{sev} {side} pleural effusion{s} blunting the costophrenic angle{s}.",
                                             "{sev} {side} pleural fluid."};
inline constexpr std::string_view kEffI[] = {"{sev} {side} pleural effusion{s}.", "{side} pleural effusion{s}, {sev}.",
                                             "{sev} {side} effusion{s}."};
inline constexpr std::string_view kPoF[] = {"{side} pleural thickening.", "{sev} {side} apical pleural thickening.",
                                            "Smooth {side} pleural thickening."};
inline constexpr std::string_view kPoI[] = {"{side} pleural thickening.", "{sev} {side} pleural thickening.",
                                            "Pleural thickening on the {side}."};
inline constexpr std::string_view kPnaF[] = {"Findings in the {zone} are consistent with pneumonia.",
                                             "{zone} pneumonia.", "Multifocal pneumonia in the {zone}.",
                                             "Airspace disease in the {zone} compatible with pneumonia."};
inline constexpr std::string_view kPnaI[] = {"Pneumonia in the {zone}.", "{zone} pneumonia.",
                                             "Findings compatible with pneumonia in the {zone}."};
inline constexpr std::string_view kPtxF[] = {"{sev} {side} pneumothorax.", "There is a {sev} {side} apical pneumothorax.",
                                             "A {sev} {side} pneumothorax is present."};
inline constexpr std::string_view kPtxI[] = {"{sev} {side} pneumothorax.", "{side} pneumothorax, {sev}.",
                                             "{sev} {side} apical pneumothorax."};

// ---- uncertain: one list per observation ----
inline constexpr std::string_view kUnc[kNumObservations][3] = {
    {"Possible {base} atelectasis.", "Questionable {base} atelectasis.", "{base} atelectasis is not excluded."},
    {"Possible mild cardiomegaly.", "Cannot exclude mild cardiomegaly.", "Questionable mild cardiomegaly."},
    {"Possible consolidation in the {lobe}.", "Cannot exclude {lobe} consolidation.", "Questionable {lobe} consolidation."},
    {"Possible mild pulmonary edema.", "Cannot exclude mild pulmonary edema.", "Questionable mild interstitial edema."},
    {"Possible widening of the mediastinal silhouette.", "Cannot exclude mediastinal widening.",
     "Questionable widening of the mediastinal contours."},
    {"Possible {side} rib fracture.", "Cannot exclude a nondisplaced {side} rib fracture.", "Questionable {side} rib fracture."},
    {"Possible {side} lung nodule.", "Cannot exclude a small nodule in the {zone}.", "Questionable nodule in the {zone}."},
    {"Possible subtle opacity in the {zone}.", "Cannot exclude an opacity in the {zone}.", "Questionable opacity in the {zone}."},
    {"", "", ""},
    {"Possible small {side} pleural effusion{s}.", "Cannot exclude a small {side} pleural effusion.",
     "Questionable trace {side} pleural effusion{s}."},
    {"Possible {side} pleural thickening.", "Cannot exclude {side} pleural thickening.", "Questionable {side} pleural thickening."},
    {"Cannot exclude early pneumonia.", "Possible early pneumonia in the {zone}.", "Early pneumonia is not excluded."},
    {"Possible small {side} pneumothorax.", "Cannot exclude a small {side} pneumothorax.", "Questionable tiny {side} pneumothorax."},
    {"", "", ""}};

// ---- negations ----
inline constexpr std::string_view kNegEffPtx[] = {"No pleural effusion or pneumothorax.",
                                                  "There is no pleural effusion or pneumothorax.",
                                                  "No effusion or pneumothorax is seen."};
inline constexpr std::string_view kNegCmEcm[] = {"Heart size and mediastinal contours are normal.",
                                                 "The heart size and mediastinal contours are within normal limits.",
                                                 "Normal heart size and mediastinal contours."};
inline constexpr std::string_view kNeg[kNumObservations][3] = {
    {"No atelectasis.", "There is no atelectasis.", "No atelectasis is seen."},
    {"Heart size is normal.", "No cardiomegaly.", "The heart is normal in size."},
    {"No focal consolidation.", "There is no focal consolidation.", "No consolidation is seen."},
    {"No pulmonary edema.", "There is no pulmonary edema.", "No edema."},
    {"The mediastinal contours are normal.", "Normal mediastinal contours.", "The cardiomediastinal silhouette is normal."},
    {"No acute rib fracture.", "No displaced fracture.", "No fracture is seen."},
    {"No suspicious pulmonary nodule.", "No pulmonary nodules or masses.", "No lung nodule or mass."},
    {"No focal opacity.", "There is no focal opacity.", "No opacity is seen."},
    {"", "", ""},
    {"No pleural effusion.", "There is no pleural effusion.", "No effusion is seen."},
    {"No pleural thickening.", "There is no pleural thickening.", "No pleural thickening is seen."},
    {"No evidence of pneumonia.", "No pneumonia.", "There is no evidence of pneumonia."},
    {"No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."},
    {"", "", ""}};
inline constexpr std::string_view kNormalImpression[] = {"No acute cardiopulmonary process.",
                                                         "No acute cardiopulmonary abnormality.",
                                                         "No acute intrathoracic process."};
inline constexpr std::string_view kNormalFindings[] = {"The lungs are clear.", "Lungs are well expanded and clear.",
                                                       "The lungs are clear bilaterally."};

// ---- devices: findings / impression ----
inline constexpr std::string_view kPacerF[] = {"Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                                               "A dual-lead pacemaker projects over the left chest.",
                                               "Left-sided pacemaker device with two leads in standard position."};
inline constexpr std::string_view kPacerI[] = {"Left chest wall pacemaker.", "Dual-lead pacemaker in place.",
                                               "Pacemaker leads in standard position."};
inline constexpr std::string_view kWiresF[] = {"Median sternotomy wires are intact.", "Intact median sternotomy wires.",
                                               "Sternotomy wires are aligned and intact."};
inline constexpr std::string_view kWiresI[] = {"Median sternotomy wires.", "Intact sternotomy wires.",
                                               "Sternotomy wires in place."};
inline constexpr std::string_view kIjF[] = {"Right internal jugular central venous catheter terminates in the SVC.",
                                            "A right IJ central line ends in the mid SVC.",
                                            "Right internal jugular line tip projects over the SVC."};
inline constexpr std::string_view kIjI[] = {"Right IJ line tip in the SVC.", "Right internal jugular catheter in the SVC.",
                                            "Right IJ central line in place."};
inline constexpr std::string_view kPiccF[] = {"Right PICC line terminates in the lower SVC.",
                                              "A right upper extremity PICC ends at the cavoatrial junction.",
                                              "Right-sided PICC line tip projects over the distal SVC."};
inline constexpr std::string_view kPiccI[] = {"Right PICC line tip in the SVC.", "Right PICC in place.",
                                              "Right PICC line terminating in the SVC."};
inline constexpr std::string_view kEtF[] = {"Endotracheal tube terminates {size} cm above the carina.",
                                            "The ET tube tip is {size} cm above the carina.",
                                            "Endotracheal tube in standard position, {size} cm above the carina."};
inline constexpr std::string_view kEtI[] = {"ET tube {size} cm above the carina.", "Endotracheal tube in standard position.",
                                            "Endotracheal tube tip {size} cm above the carina."};
inline constexpr std::string_view kNgF[] = {"Nasogastric tube courses below the diaphragm into the stomach.",
                                            "An enteric tube passes into the stomach.",
                                            "The NG tube tip is in the stomach."};
inline constexpr std::string_view kNgI[] = {"NG tube in the stomach.", "Enteric tube in the stomach.",
                                            "Nasogastric tube tip in the stomach."};

inline std::string ordinal(int n) {
  static const char* words[] = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"};
  return (n >= 1 && n <= 10) ? words[n - 1] : std::to_string(n) + "th";
}

inline std::string cm(float x) {
  char b[16];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(x));
  return b;
}

}  // namespace report_detail

/// @brief Phantom-world report writer.
class ReportWriter {
 public:
  /// @brief A writer.
  /// @param pool phrasing pool (train / heldout / all)
  /// @param counter token counter for the impression budget (default: conservative_token_bound)
  /// @param max_impression_tokens impression budget (CXRL: ≤ 74 tokens)
  explicit ReportWriter(PhrasingPool pool = PhrasingPool::train, TokenCounter counter = conservative_token_bound,
                        int64_t max_impression_tokens = 74)
      : pool_(pool), count_(std::move(counter)), max_tokens_(max_impression_tokens) {
    if (!count_) throw std::invalid_argument("ReportWriter: token counter must be callable");
    if (max_tokens_ < 8) throw std::invalid_argument("ReportWriter: max_impression_tokens must be >= 8");
  }

  /// @brief Phrasing pool in use.
  PhrasingPool pool() const { return pool_; }

  /// @brief Write the report of a study; the phrasing is drawn from the spec's seed.
  /// @param s study ground truth
  Report write(const PhantomSpec& s) const { return write(s, data::child_seed(s.seed, 0x7E47)); }

  /// @brief Write the report of a study with an explicit phrasing seed.
  /// @param s study ground truth
  /// @param phrasing_seed seed of the template choices
  Report write(const PhantomSpec& s, std::uint64_t phrasing_seed) const {
    using namespace report_detail;
    data::Rng rng(phrasing_seed);
    auto pick = [&](Templates t) -> std::string_view {
      const auto p = pool_of(t, pool_);
      return p[rng.below(p.size())];
    };
    const PhantomScene scene = build_scene(s);
    std::vector<std::string> f_pos, i_pos, f_unc, i_unc, f_dev, i_dev, f_neg;
    std::vector<int> i_pos_obs, i_unc_obs;  // observation of each impression sentence
    struct Neg {
      std::string text;
      std::vector<int> obs;
    };
    std::vector<Neg> negs;
    Report r;
    for (auto& l : r.labels) l = Label::blank;

    // Priority of positives in the impression: the most important first.
    constexpr int order[] = {obs::pneumothorax, obs::pleural_effusion, obs::consolidation, obs::pneumonia, obs::edema,
                             obs::cardiomegaly, obs::enlarged_cardiomediastinum, obs::lung_lesion, obs::lung_opacity,
                             obs::atelectasis, obs::fracture, obs::pleural_other};
    for (int o : order) {
      const auto& f = s.findings[static_cast<std::size_t>(o)];
      if (f.label != Label::positive && f.label != Label::uncertain) continue;
      const Vars v = vars(o, f, s, scene);
      if (f.label == Label::positive) {
        f_pos.push_back(fill(pick(pos_findings(o, f)), v));
        i_pos.push_back(fill(pick(pos_impression(o, f)), v));
        i_pos_obs.push_back(o);
      } else {
        const auto& u = kUnc[o];
        const std::string a = fill(pick(Templates(u, 3)), v);
        f_unc.push_back(a);
        i_unc.push_back(a);
        i_unc_obs.push_back(o);
      }
      r.labels[static_cast<std::size_t>(o)] = f.label;
    }
    // Devices.
    if (s.findings[obs::support_devices].label == Label::positive && !s.devices.empty()) {
      Vars v;
      v.size = cm(s.devices.et_tip_above_carina * 17.5f + 1.5f);
      auto dev = [&](Templates ft, Templates it) {
        f_dev.push_back(fill(pick(ft), v));
        i_dev.push_back(fill(pick(it), v));
      };
      if (s.devices.has(Device::et_tube)) dev(kEtF, kEtI);
      if (s.devices.has(Device::ng_tube)) dev(kNgF, kNgI);
      if (s.devices.has(Device::central_line)) s.devices.line_variant == 0 ? dev(kIjF, kIjI) : dev(kPiccF, kPiccI);
      if (s.devices.has(Device::pacemaker)) dev(kPacerF, kPacerI);
      if (s.devices.has(Device::sternal_wires)) dev(kWiresF, kWiresI);
      r.labels[obs::support_devices] = Label::positive;
    }
    // Negations (grouped where radiologists group them).
    auto neg = [&](int o) { return s.findings[static_cast<std::size_t>(o)].label == Label::negative; };
    std::vector<bool> done(kNumObservations, false);
    if (neg(obs::pleural_effusion) && neg(obs::pneumothorax)) {
      negs.push_back({std::string(pick(kNegEffPtx)), {obs::pleural_effusion, obs::pneumothorax}});
      done[obs::pleural_effusion] = done[obs::pneumothorax] = true;
    }
    if (neg(obs::cardiomegaly) && neg(obs::enlarged_cardiomediastinum) && rng.bernoulli(0.5)) {
      negs.push_back({std::string(pick(kNegCmEcm)), {obs::cardiomegaly, obs::enlarged_cardiomediastinum}});
      done[obs::cardiomegaly] = done[obs::enlarged_cardiomediastinum] = true;
    }
    for (int o = 0; o < kNumObservations; ++o)
      if (neg(o) && !done[static_cast<std::size_t>(o)]) negs.push_back({std::string(pick(Templates(kNeg[o], 3))), {o}});

    const bool abnormal = !f_pos.empty() || !f_unc.empty();
    // FINDINGS: devices, lungs/pleura/heart positives, uncertain, negations (all of them).
    std::vector<std::string> fs;
    for (auto* g : {&f_dev, &f_pos, &f_unc}) fs.insert(fs.end(), g->begin(), g->end());
    if (!abnormal) fs.emplace_back(pick(kNormalFindings));
    for (const auto& n : negs) fs.push_back(n.text);
    r.findings = join(fs);
    // IMPRESSION: positives, uncertain, devices, then negations while the budget allows.
    std::vector<std::string> is;
    const std::string normal_impression = abnormal ? std::string() : std::string(pick(kNormalImpression));
    auto assemble = [&] {
      is.clear();
      if (!normal_impression.empty()) is.push_back(normal_impression);
      for (auto* g : {&i_pos, &i_unc, &i_dev}) is.insert(is.end(), g->begin(), g->end());
    };
    assemble();
    if (count_(join(is)) > max_tokens_ && i_dev.size() > 1) {  // very long: one device sentence
      i_dev.assign(1, pool_ == PhrasingPool::heldout ? "Support devices are present." : "Support devices in place.");
      assemble();
    }
    // Still too long (tight budgets, many findings): leave out uncertain, then the least important
    // positive mentions; their labels become blank ("not mentioned"), never wrong.
    while (count_(join(is)) > max_tokens_ && (!i_unc.empty() || i_pos.size() > 1)) {
      if (!i_unc.empty()) {
        r.labels[static_cast<std::size_t>(i_unc_obs.back())] = Label::blank;
        i_unc.pop_back();
        i_unc_obs.pop_back();
      } else {
        r.labels[static_cast<std::size_t>(i_pos_obs.back())] = Label::blank;
        i_pos.pop_back();
        i_pos_obs.pop_back();
      }
      assemble();
    }
    for (const auto& n : negs) {
      is.push_back(n.text);
      if (count_(join(is)) > max_tokens_) {
        is.pop_back();
        continue;
      }
      for (int o : n.obs) r.labels[static_cast<std::size_t>(o)] = Label::negative;
    }
    r.impression = join(is);
    if (count_(r.impression) > max_tokens_)
      throw std::invalid_argument("ReportWriter: max_impression_tokens " + std::to_string(max_tokens_) +
                                  " is too small for a single finding sentence: " + r.impression);
    // No Finding, as the CheXpert labeler aggregates it.
    bool any = false;
    for (int o = 0; o < kNumObservations; ++o)
      if (o != obs::no_finding && o != obs::support_devices)
        any = any || r.labels[static_cast<std::size_t>(o)] == Label::positive ||
              r.labels[static_cast<std::size_t>(o)] == Label::uncertain;
    r.labels[obs::no_finding] = any ? Label::blank : Label::positive;
    return r;
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) {
      if (s.empty()) continue;
      if (!out.empty()) out += ' ';
      out += s;
    }
    return out;
  }

  static report_detail::Templates pos_findings(int o, const FindingState& f) {
    using namespace report_detail;
    switch (o) {
      case obs::atelectasis: return kAteF;
      case obs::cardiomegaly: return kCmF;
      case obs::consolidation: return kConF;
      case obs::edema: return kEdF;
      case obs::enlarged_cardiomediastinum: return kEcmF;
      case obs::fracture: return kFxF;
      case obs::lung_lesion: return f.severity > 0.6f ? Templates(kMassF) : Templates(kNodF);
      case obs::lung_opacity: return kOpF;
      case obs::pleural_effusion: return kEffF;
      case obs::pleural_other: return kPoF;
      case obs::pneumonia: return kPnaF;
      default: return kPtxF;
    }
  }
  static report_detail::Templates pos_impression(int o, const FindingState& f) {
    using namespace report_detail;
    switch (o) {
      case obs::atelectasis: return kAteI;
      case obs::cardiomegaly: return kCmI;
      case obs::consolidation: return kConI;
      case obs::edema: return kEdI;
      case obs::enlarged_cardiomediastinum: return kEcmI;
      case obs::fracture: return kFxI;
      case obs::lung_lesion: return f.severity > 0.6f ? Templates(kMassI) : Templates(kNodI);
      case obs::lung_opacity: return kOpI;
      case obs::pleural_effusion: return kEffI;
      case obs::pleural_other: return kPoI;
      case obs::pneumonia: return kPnaI;
      default: return kPtxI;
    }
  }

  static report_detail::Vars vars(int o, const FindingState& f, const PhantomSpec& s, const PhantomScene& sc) {
    report_detail::Vars v;
    const float sev = f.severity;
    const bool size_words = o == obs::pleural_effusion || o == obs::pneumothorax;
    v.sev = sev < 0.5f ? (size_words ? "small" : "mild") : sev < 0.78f ? "moderate" : (size_words ? "large" : "severe");
    v.sevly = sev < 0.5f ? "mildly" : sev < 0.78f ? "moderately" : "severely";
    const bool bi = f.side == Laterality::bilateral;
    v.side = std::string(laterality_name(f.side));
    v.s = bi ? "s" : "";
    v.base = bi ? "bibasilar" : v.side + " basilar";
    const int zone = o == obs::consolidation || o == obs::pneumonia ? f.variant
                     : f.v < 0.34f                                  ? 0
                     : f.v < 0.67f                                  ? 1
                                                                    : 2;
    static const char* zone_words[] = {"upper", "mid", "lower"};
    v.zone = bi ? std::string("bilateral ") + zone_words[zone] + " lungs" : v.side + " " + zone_words[zone] + " lung";
    if (o == obs::consolidation) {
      static const char* lobes[] = {"upper", "middle", "lower"};
      const int z = (f.variant == 1 && f.side == Laterality::left) ? 2 : f.variant;
      v.lobe = bi ? (f.variant == 1 ? std::string("right middle and left lower lobes")
                                    : std::string("bilateral ") + lobes[z] + " lobes")
                  : v.side + " " + lobes[z] + " lobe";
    }
    if (o == obs::fracture) {
      v.rib = report_detail::ordinal(sc.frac_rib + 1);
      v.disp = sev > 0.5f ? "displaced" : "minimally displaced";
    }
    if (o == obs::lung_lesion) {
      const bool mass = sev > 0.6f;
      const float r = mass ? 0.08f + 0.08f * sev : 0.022f + 0.05f * sev;  // phantom_findings.hpp radii
      v.size = report_detail::cm(2.f * r * 17.5f);                       // ≈ 35 cm field of view
    }
    (void)s;
    return v;
  }

  PhrasingPool pool_;
  TokenCounter count_;
  int64_t max_tokens_;
};

}  // namespace cxrl::cxr
