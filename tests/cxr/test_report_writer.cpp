// Report writer: consistency with the label table, negations/uncertainty/devices/normal wording,
// phrasing pools, the 74-token impression budget with the real CLIP tokenizer, and the round trip
// through the CheXpert-style labeler.
#include <cxrl/cxr/labeler.hpp>
#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/report_writer.hpp>
#include <cxrl/text/clip_tokenizer.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <sstream>
#include <string>

namespace cx = cxrl::cxr;

namespace {
std::vector<std::string> sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 0; i < text.size(); ++i) {
    cur += text[i];
    if (text[i] == '.' && (i + 1 == text.size() || text[i + 1] == ' ')) {
      out.push_back(cur);
      cur.clear();
      if (i + 1 < text.size()) ++i;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
const cx::TokenCounter& clip_counter() {
  static const auto tok = cxrl::text::ClipTokenizer::from_pretrained(std::string(CXRL_TEST_DATA) + "/clip_tokenizer");
  static const cx::TokenCounter c = [](std::string_view s) { return tok.count_tokens(s); };
  return c;
}
}  // namespace

TEST_CASE("report writer: labels agree with the study and the impression mentions every finding", "[report]") {
  const cx::ReportWriter w(cx::PhrasingPool::train);
  cx::PhantomConfig cfg;
  for (std::uint64_t seed = 0; seed < 3000; ++seed) {  // with the conservative bound (the default counter)
    const auto s = cx::sample_phantom_spec(cfg, seed);
    const auto r = w.write(s);
    REQUIRE(r.impression == w.write(s).impression);  // deterministic
    for (int o = 0; o < cx::kNumObservations; ++o) {
      const auto want = s.findings[static_cast<std::size_t>(o)].label;
      const auto got = r.labels[static_cast<std::size_t>(o)];
      if (o == cx::obs::no_finding) continue;
      if (want == cx::Label::negative ? (got == cx::Label::negative || got == cx::Label::blank) : got == want) continue;
      INFO("seed " << seed << " " << cx::kObservations[static_cast<std::size_t>(o)] << "\n" << r.impression);
      if (want == cx::Label::negative) CHECK((got == cx::Label::negative || got == cx::Label::blank));
      else CHECK(got == want);
    }
    if (r.labels[cx::obs::no_finding] != s.findings[cx::obs::no_finding].label)
      CHECK(r.labels[cx::obs::no_finding] == s.findings[cx::obs::no_finding].label);
    if (r.findings.empty() || r.impression.empty()) CHECK(false);
  }
}

TEST_CASE("report writer: a tight budget leaves out negations first, then the least important mentions", "[report]") {
  auto s = cx::normal_phantom_spec(8);
  cx::set_finding(s, cx::obs::pneumothorax, 0.9f, cx::Laterality::right);
  cx::set_finding(s, cx::obs::pleural_effusion, 0.9f, cx::Laterality::bilateral);
  cx::set_finding(s, cx::obs::fracture, 0.9f, cx::Laterality::left);
  const auto full = cx::ReportWriter(cx::PhrasingPool::all, cx::conservative_token_bound, 74).write(s);
  const auto tight = cx::ReportWriter(cx::PhrasingPool::all, cx::conservative_token_bound, 14).write(s);
  CHECK(full.labels[cx::obs::fracture] == cx::Label::positive);
  CHECK(tight.labels[cx::obs::pneumothorax] == cx::Label::positive);   // highest priority kept
  CHECK(tight.labels[cx::obs::fracture] == cx::Label::blank);          // lowest priority left out
  CHECK(tight.labels[cx::obs::consolidation] == cx::Label::blank);     // negation left out
  CHECK(cx::conservative_token_bound(tight.impression) <= 14);
  CHECK(cx::label_report(tight.impression) == tight.labels);
}

TEST_CASE("report writer: wording of severity, laterality, negation, uncertainty, devices and normal studies", "[report]") {
  const cx::ReportWriter w(cx::PhrasingPool::all);
  auto s = cx::normal_phantom_spec(1);
  auto r = w.write(s);
  CHECK((r.impression.find("No acute") != std::string::npos));
  CHECK(r.impression.find("pneumothorax") != std::string::npos);  // "No pleural effusion or pneumothorax."-style
  CHECK(r.labels[cx::obs::pneumothorax] == cx::Label::negative);

  s = cx::normal_phantom_spec(2);
  cx::set_finding(s, cx::obs::pleural_effusion, 0.95f, cx::Laterality::left);
  r = w.write(s);
  CHECK(lower(r.impression).find("left") != std::string::npos);
  CHECK(lower(r.impression).find("large") != std::string::npos);
  CHECK(lower(r.impression).find("effusion") != std::string::npos);

  s = cx::normal_phantom_spec(3);
  cx::set_finding(s, cx::obs::pneumothorax, 0.3f, cx::Laterality::right);
  r = w.write(s);
  CHECK(lower(r.impression).find("small") != std::string::npos);
  CHECK(lower(r.impression).find("right") != std::string::npos);
  CHECK(lower(r.impression).find("left") == std::string::npos);

  s = cx::normal_phantom_spec(4);
  auto& f = s.findings[cx::obs::pneumonia];
  f.label = cx::Label::uncertain;
  f.severity = 0.18f;
  f.side = cx::Laterality::right;
  s.findings[cx::obs::no_finding].label = cx::Label::blank;
  bool saw_cannot_exclude = false;
  for (std::uint64_t k = 0; k < 30; ++k) {
    r = w.write(s, k);
    CHECK(r.labels[cx::obs::pneumonia] == cx::Label::uncertain);
    saw_cannot_exclude = saw_cannot_exclude || r.impression.find("Cannot exclude early pneumonia") != std::string::npos;
  }
  CHECK(saw_cannot_exclude);

  s = cx::normal_phantom_spec(5);
  cx::set_finding(s, cx::obs::support_devices, 1.f);
  s.devices.add(cx::Device::pacemaker);
  s.devices.add(cx::Device::et_tube);
  r = w.write(s);
  CHECK(r.findings.find("acemaker") != std::string::npos);
  CHECK(r.findings.find("carina") != std::string::npos);
  CHECK(r.labels[cx::obs::support_devices] == cx::Label::positive);
  CHECK(r.labels[cx::obs::no_finding] == cx::Label::positive);  // devices alone are "no finding"
}

TEST_CASE("report writer: held-out phrasings never occur in the train pool", "[report][pool]") {
  const cx::ReportWriter train(cx::PhrasingPool::train), held(cx::PhrasingPool::heldout);
  std::set<std::string> tr, he;
  cx::PhantomConfig cfg;
  cfg.p_uncertain = 0.5;
  cfg.p_devices = 0.5;
  for (std::uint64_t seed = 0; seed < 1500; ++seed) {
    const auto s = cx::sample_phantom_spec(cfg, seed);
    for (const auto& x : sentences(train.write(s).impression)) tr.insert(x);
    for (const auto& x : sentences(train.write(s).findings)) tr.insert(x);
    for (const auto& x : sentences(held.write(s).impression)) he.insert(x);
  }
  std::vector<std::string> both;
  std::set_intersection(tr.begin(), tr.end(), he.begin(), he.end(), std::back_inserter(both));
  INFO((both.empty() ? std::string() : both.front()));
  CHECK(both.empty());
  CHECK(tr.size() > 200);
  CHECK(he.size() > 50);
}

TEST_CASE("report writer: impressions fit 74 CLIP tokens and the fallback bound is conservative", "[report][tokens]") {
  const cx::ReportWriter w(cx::PhrasingPool::all, clip_counter(), 74);
  cx::PhantomConfig cfg;
  cfg.max_findings = 4;
  cfg.p_negative_rare = 0.8;
  cfg.p_devices = 0.6;
  int64_t longest = 0;
  for (std::uint64_t seed = 0; seed < 1000; ++seed) {
    const auto r = w.write(cx::sample_phantom_spec(cfg, seed));
    const auto n = clip_counter()(r.impression);
    longest = std::max(longest, n);
    REQUIRE(n <= 74);
    for (const auto& text : {r.impression, r.findings}) CHECK(cx::conservative_token_bound(text) >= clip_counter()(text));
  }
  WARN("longest impression: " << longest << " CLIP tokens");
}

TEST_CASE("report writer: labeler round trip on 2000 reports", "[report][labeler]") {
  const cx::ReportWriter w(cx::PhrasingPool::all, clip_counter(), 74);
  cx::PhantomConfig cfg;
  cfg.p_uncertain = 0.3;
  cfg.p_devices = 0.3;
  const int n = 2000;
  int exact = 0;
  std::array<int, cx::kNumObservations> label_ok{};
  std::string first_bad;
  for (int i = 0; i < n; ++i) {
    const auto r = w.write(cx::sample_phantom_spec(cfg, 100000 + static_cast<std::uint64_t>(i)));
    const auto got = cx::label_report(r.impression);
    bool all = true;
    for (int o = 0; o < cx::kNumObservations; ++o) {
      const bool ok = got[static_cast<std::size_t>(o)] == r.labels[static_cast<std::size_t>(o)];
      label_ok[static_cast<std::size_t>(o)] += ok;
      if (!ok && first_bad.empty())
        first_bad = std::string(cx::kObservations[static_cast<std::size_t>(o)]) + " want " +
                    std::to_string(static_cast<int>(r.labels[static_cast<std::size_t>(o)])) + " got " +
                    std::to_string(static_cast<int>(got[static_cast<std::size_t>(o)])) + ": " + r.impression;
      all = all && ok;
    }
    exact += all;
  }
  std::ostringstream per;
  for (int o = 0; o < cx::kNumObservations; ++o)
    per << cx::kObservations[static_cast<std::size_t>(o)] << " " << label_ok[static_cast<std::size_t>(o)] * 100.0 / n << "%; ";
  WARN("round trip exact " << exact * 100.0 / n << "%; " << per.str() << "\nfirst mismatch: " << first_bad);
  CHECK(exact >= 0.95 * n);
}
