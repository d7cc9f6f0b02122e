// Data pipeline: CSV (+gzip) reading, MIMIC section parsing, the MIMIC-CXR-JPG loader on a phantom
// fixture tree (exact pairs) and on a tree with injected faults (good pairs kept, bad ones reported
// with file:line), lazy datasets, sampling, batching and the canonical CXR.
#include <cxrl/cxr/canonical.hpp>
#include <cxrl/data/csv.hpp>
#include <cxrl/data/dataset.hpp>
#include <cxrl/data/gzip.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/cxr/mimic_fixture.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/data/sections.hpp>

#include <catch2/catch.hpp>

#include <range/v3/algorithm/count_if.hpp>
#include <range/v3/range/operations.hpp>
#include <range/v3/view/take.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

namespace cd = cxrl::data;
namespace cx = cxrl::cxr;
namespace fs = std::filesystem;

namespace {
fs::path tmp_dir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("cxrl_test_data_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}
cxrl::cxr::MimicOptions all_pairs(const fs::path& root) {
  cxrl::cxr::MimicOptions o;
  o.root = root;
  o.n_train = o.n_validate = o.n_test = cxrl::cxr::kAllPairs;
  o.resolution = 64;
  return o;
}
}  // namespace

TEST_CASE("csv: quotes, embedded newlines, CRLF, BOM, header lookup and line numbers", "[data][csv]") {
  const std::string text = "\xEF\xBB\xBF Dicom_ID ,note,\"View Position\"\r\n"
                           "a1,\"hello, \"\"world\"\"\",PA\r\n"
                           "\r\n"
                           "a2,\"two\r\nlines\",AP\r\n"
                           "a3,short\r\n";
  cd::IssueLog log;
  const auto t = cd::parse_csv(text, "x.csv", &log);
  REQUIRE(t.header.size() == 3);
  REQUIRE(t.find("dicom_id") == std::optional<std::size_t>(0));
  REQUIRE(t.find("viewposition") == std::optional<std::size_t>(2));  // spaces and case are ignored
  REQUIRE(t.find("split") == std::nullopt);
  REQUIRE(t.find("View Position") == std::optional<std::size_t>(2));
  REQUIRE_THROWS_WITH(t.require("split"), Catch::Contains("x.csv:1") && Catch::Contains("split"));
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[0].fields[1] == "hello, \"world\"");
  CHECK(t.rows[0].line == 2);
  CHECK(t.rows[1].fields[1] == "two\nlines");
  CHECK(t.rows[1].line == 4);
  CHECK(t.rows[2].line == 6);
  CHECK(t.rows[2].fields.size() == 2);
  CHECK(log.size() == 0);
  cd::parse_csv("a,b\n1,\"open", "y.csv", &log);
  CHECK(log.count("unterminated_quote") == 1);
}

TEST_CASE("gzip: reads Python's gzip output, round-trips, and rejects corruption", "[data][gzip]") {
  // gzip.compress(b'subject_id,study_id\r\n10000032,"50414267"\r\n', mtime=0) from CPython 3.11
  const unsigned char py[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x2b, 0x2e, 0x4d, 0xca, 0x4a,
                              0x4d, 0x2e, 0x89, 0xcf, 0x4c, 0xd1, 0x29, 0x2e, 0x29, 0x4d, 0xa9, 0x04, 0x32, 0x78, 0xb9,
                              0x0c, 0x0d, 0x40, 0xc0, 0xd8, 0x48, 0x47, 0xc9, 0xd4, 0xc0, 0xc4, 0xd0, 0xc4, 0xc8, 0xcc,
                              0x5c, 0x89, 0x97, 0x0b, 0x00, 0x32, 0x4c, 0xe6, 0x0a, 0x2a, 0x00, 0x00, 0x00};
  const std::string bytes(reinterpret_cast<const char*>(py), sizeof py);
  CHECK(cd::gunzip(bytes, "py.gz") == "subject_id,study_id\r\n10000032,\"50414267\"\r\n");
  std::string big;
  for (int i = 0; i < 5000; ++i) big += "row," + std::to_string(i * 7919 % 1000) + ",text with words\n";
  CHECK(cd::gunzip(cd::gzip(big), "big") == big);
  CHECK(cd::gunzip(cd::gzip(""), "empty") == "");
  auto bad = cd::gzip(big);
  bad[bad.size() - 6] ^= 0x55;  // damage the CRC
  CHECK_THROWS_WITH(cd::gunzip(bad, "bad.gz"), Catch::Contains("bad.gz") && Catch::Contains("CRC"));
  CHECK(cd::crc32("123456789", 9) == 0xCBF43926u);  // the standard check value
}

TEST_CASE("sections: MIMIC section-parser semantics", "[data][sections]") {
  const std::string rep = "                                 FINAL REPORT\n"
                          " EXAMINATION:  CHEST (PA AND LAT)\n \n"
                          " INDICATION:  ___ with cough\n \n"
                          " COMPARISONS:  None.\n \n"
                          " FINDINGS: \n \n The lungs are clear. No pleural effusion\n or pneumothorax.\n \n"
                          " IMPRESSION: \n \n No acute cardiopulmonary process.\n";
  const auto secs = cd::split_sections(rep);
  std::vector<std::string> names;
  for (const auto& s : secs) names.push_back(s.name);
  CHECK(names == std::vector<std::string>{"preamble", "examination", "indication", "comparison", "findings", "impression"});
  auto r = cd::parse_report(rep);
  CHECK(r.impression == "No acute cardiopulmonary process.");
  CHECK(r.findings == "The lungs are clear. No pleural effusion or pneumothorax.");
  CHECK(r.main_name == "impression");
  // variant headers are normalised
  CHECK(cd::normalize_section_name("CONCLUSION") == "impression");
  CHECK(cd::normalize_section_name("FINDINGS AND IMPRESSION") == "impression");
  CHECK(cd::normalize_section_name("IMPRESSON") == "impression");
  CHECK(cd::normalize_section_name("REASON FOR EXAM") == "indication");
  CHECK(cd::normalize_section_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings");
  CHECK(cd::normalize_section_name("FINAL IMPRESSION") == "impression");
  // findings only → findings is the main text; CRLF is fine
  r = cd::parse_report("FINAL REPORT\r\n FINDINGS: \r\n \r\n Small left effusion.\r\n");
  CHECK(r.main == "Small left effusion.");
  CHECK(r.main_name == "findings");
  // no header at all → last paragraph
  r = cd::parse_report("Chest radiograph.\n \nHeart size is normal.");
  CHECK(r.main_name == "last_paragraph");
  CHECK(r.main == "Heart size is normal.");
  // an empty impression section is dropped, so the findings become the main text
  r = cd::parse_report("x\n IMPRESSION: \n \n FINDINGS: \n Clear lungs.\n");
  CHECK(r.main_name == "findings");
  CHECK(cd::parse_report("                                 FINAL REPORT\n").main.empty());
}

TEST_CASE("sections: real report shapes of MIMIC-CXR", "[data][sections]") {
  // One plain paragraph under the title, no header, no paragraph break: the whole text is the report
  // (the reference yields "" here and the study was skipped as empty_report).
  auto r = cd::parse_report("                                 FINAL REPORT\n PORTABLE CHEST RADIOGRAPH SHOWS NO FOCAL\n"
                            " CONSOLIDATION. Small left pleural effusion is unchanged.\n");
  CHECK(r.main_name == "full report");
  CHECK(r.main == "PORTABLE CHEST RADIOGRAPH SHOWS NO FOCAL CONSOLIDATION. Small left pleural effusion is unchanged.");
  CHECK(cd::parse_report("Mild cardiomegaly without edema.").main == "Mild cardiomegaly without edema.");
  // Title, blank line, one paragraph: the reference's last paragraph.
  r = cd::parse_report("                                 FINAL REPORT\n \n Heart size is normal. Lungs are clear.\n");
  CHECK(r.main_name == "last_paragraph");
  CHECK(r.main == "Heart size is normal. Lungs are clear.");
  // Only INDICATION and COMPARISON headers, the report written into the comparison section without a paragraph
  // break: create_section_files.py falls back to the comparison section.
  r = cd::parse_report("FINAL REPORT\n INDICATION:  Cough.\n COMPARISON:  ___. Interval increase in right effusion.\n");
  CHECK(r.main_name == "comparison");
  CHECK(r.main == "___. Interval increase in right effusion.");
  // The same with a paragraph break: the text after the first break is the last paragraph, before comparison.
  r = cd::parse_report("FINAL REPORT\n INDICATION:  Cough.\n COMPARISON:  ___.\n \n Interval increase in right effusion.\n"
                       " \n Dr. ___ was paged.\n");
  CHECK(r.main_name == "last_paragraph");
  CHECK(r.main == "Interval increase in right effusion. Dr. ___ was paged.");
  // Two impressions (an addendum-style repeat): the last one wins.
  r = cd::parse_report("FINAL REPORT\n IMPRESSION:  Old text.\n FINDINGS:  Clear.\n IMPRESSION:  New text.\n");
  CHECK(r.main == "New text.");
  // A header whose colon is followed by the text on the same line, and a misspelt one.
  CHECK(cd::parse_report("x\n IMPRESSON:  No effusion.\n").main == "No effusion.");
  CHECK(cd::parse_report("x\n FINDINGS/IMPRESSION:  Low lung volumes.\n").main_name == "impression");
  // The reference's own mapping table, including its quirks ("ndication" is filed under impression there).
  CHECK(cd::normalize_section_name("NDICATION") == "impression");
  CHECK(cd::normalize_section_name("CONCUSION") == "conclusion");
  CHECK(cd::normalize_section_name("COMPARISON FILM") == "comparison");
  // A lowercase "impression:" is not a header (the pattern is ALL CAPS), so it stays inside the findings.
  r = cd::parse_report("x\n FINDINGS:  Clear lungs.\n impression: normal.\n");
  CHECK(r.main_name == "findings");
}

TEST_CASE("mimic loader: the fixture tree gives exactly the expected pairs", "[data][mimic]") {
  const auto root = tmp_dir("fixture");
  cxrl::cxr::MimicFixtureOptions fo;
  fo.studies = 18;
  fo.seed = 3;
  fo.resolution = 128;
  const auto fx = cxrl::cxr::make_mimic_fixture(root, fo);
  REQUIRE(fs::exists(root / "mimic-cxr-2.0.0-metadata.csv.gz"));
  REQUIRE(fx.expected.size() == 18);
  const auto idx = cxrl::cxr::build_mimic_index(all_pairs(root));
  CHECK(idx.issues.size() == 0);
  std::map<std::string, cxrl::cxr::MimicRecord> got;
  for (auto s : {cd::Split::train, cd::Split::validate, cd::Split::test})
    for (const auto& r : idx.of(s)) got[r.dicom_id] = r;
  REQUIRE(got.size() == fx.expected.size());
  for (const auto& e : fx.expected) {
    INFO(e.dicom_id);
    REQUIRE(got.count(e.dicom_id));
    const auto& g = got[e.dicom_id];
    CHECK(g.split == e.split);
    CHECK(g.view == e.view);
    CHECK(g.impression == e.impression);
    CHECK(g.findings == e.findings);
    CHECK(g.labels == e.labels);
    CHECK(g.subject_id == e.subject_id);
    CHECK(g.study_id == e.study_id);
  }
  // lateral views are filtered: only frontal ones are eligible
  std::size_t eligible = 0;
  for (const auto& [s, n] : idx.eligible) eligible += n;
  CHECK(eligible == 18);
  // images: JPEG decode + centre crop + resize reproduces the phantom
  cxrl::cxr::MimicDataset train(idx, cd::Split::train);
  REQUIRE(train.size() > 0);
  const auto sample = train.get(0);
  REQUIRE(sample.image.sizes() == torch::IntArrayRef({1, 64, 64}));
  std::size_t k = 0;
  while (fx.expected[k].dicom_id != sample.meta.dicom_id) ++k;
  const auto ref = torch::nn::functional::avg_pool2d(cx::render_phantom(fx.specs[k], 128).unsqueeze(0),
                                                     torch::nn::functional::AvgPool2dFuncOptions(2)).squeeze(0);
  const double mae = (sample.image - ref).abs().mean().item<double>();
  INFO("JPEG round trip MAE " << mae);
  CHECK(mae < 0.02);
  // sampling: N pairs, deterministic per seed
  auto o = all_pairs(root);
  o.n_train = 3;
  o.n_test = 2;
  o.seed = 5;
  const auto a = cxrl::cxr::build_mimic_index(o), b = cxrl::cxr::build_mimic_index(o);
  REQUIRE(a.of(cd::Split::train).size() == 3);
  REQUIRE(a.of(cd::Split::test).size() == 2);
  for (std::size_t i = 0; i < 3; ++i) CHECK(a.of(cd::Split::train)[i].dicom_id == b.of(cd::Split::train)[i].dicom_id);
  std::set<std::string> seeds_seen;
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    o.seed = seed;
    const auto c = cxrl::cxr::build_mimic_index(o);
    seeds_seen.insert(c.of(cd::Split::train)[0].dicom_id + c.of(cd::Split::train)[1].dicom_id);
  }
  CHECK(seeds_seen.size() > 3);
  // test views can be restricted (the paper: PA only)
  o = all_pairs(root);
  o.test_views = {"PA"};
  const auto pa = cxrl::cxr::build_mimic_index(o);
  for (const auto& r : pa.of(cd::Split::test)) CHECK(r.view == "PA");
  // reports under a separate root (MIMIC-CXR's reports zip), given either above or at files/
  const auto reports = tmp_dir("reports");
  for (const auto& e : fs::recursive_directory_iterator(root / "files"))
    if (e.path().extension() == ".txt") {
      const auto rel = fs::relative(e.path(), root);
      fs::create_directories((reports / rel).parent_path());
      fs::rename(e.path(), reports / rel);
    }
  o = all_pairs(root);
  CHECK(cxrl::cxr::build_mimic_index(o).issues.count("missing_report") == fx.expected.size());
  for (const auto& rr : {reports, reports / "files"}) {
    o.reports_root = rr;
    const auto sep = cxrl::cxr::build_mimic_index(o);
    CHECK(sep.issues.size() == 0);
    std::size_t np = 0;
    for (auto s : {cd::Split::train, cd::Split::validate, cd::Split::test}) np += sep.of(s).size();
    CHECK(np == fx.expected.size());
  }
  fs::remove_all(reports);
  // missing tables / columns are clear errors
  CHECK_THROWS_WITH(cxrl::cxr::build_mimic_index(all_pairs(root / "nope")), Catch::Contains("not a directory"));
  fs::remove_all(root);
}

TEST_CASE("mimic loader: injected faults are reported with file:line and skipped", "[data][mimic][faults]") {
  const auto root = tmp_dir("faults");
  cxrl::cxr::MimicFixtureOptions fo;
  fo.studies = 20;
  fo.seed = 8;
  fo.resolution = 64;
  fo.inject_faults = true;
  const auto fx = cxrl::cxr::make_mimic_fixture(root, fo);
  REQUIRE(fs::exists(root / "mimic-cxr-2.0.0-split.csv"));  // plain CSV with CRLF
  const auto idx = cxrl::cxr::build_mimic_index(all_pairs(root));
  // exactly the good pairs
  std::set<std::string> got, want;
  for (auto s : {cd::Split::train, cd::Split::validate, cd::Split::test})
    for (const auto& r : idx.of(s)) got.insert(r.dicom_id + "|" + r.impression);
  for (const auto& e : fx.expected) want.insert(e.dicom_id + "|" + e.impression);
  CHECK(got == want);
  // every fault, counted by reason
  CHECK(idx.issues.counts() == fx.expected_issues);
  INFO(idx.issues.summary());
  // file:line points at the offending row
  bool saw_split_row = false, saw_missing = false;
  for (const auto& i : idx.issues.issues()) {
    CHECK(i.line > 0);
    if (i.reason == "malformed_row" && i.file.find("split.csv") != std::string::npos) {
      std::ifstream f(i.file);
      std::string line;
      for (std::size_t n = 0; n < i.line; ++n) std::getline(f, line);
      CHECK((line.rfind("deadbeef", 0) == 0));
      saw_split_row = true;
    }
    if (i.reason == "missing_image") {
      CHECK(i.detail.find(fx.specs.empty() ? "" : ".jpg") != std::string::npos);
      saw_missing = true;
    }
  }
  CHECK(saw_split_row);
  CHECK(saw_missing);
  const auto j = idx.summary(3);
  CHECK(j["skipped"]["total"] == idx.issues.size());
  CHECK(j["skipped"]["first"].size() == 3);
  fs::remove_all(root);
}

TEST_CASE("phantom dataset: lazy, deterministic, split-disjoint, with batches and the canonical CXR", "[data][phantom]") {
  cxrl::cxr::PhantomDatasetOptions o;
  o.resolution = 32;
  o.n_train = 40;
  o.n_validate = 5;
  o.n_test = 10;
  o.seed = 11;
  const cxrl::cxr::PhantomDataset train(o, cd::Split::train), test(o, cd::Split::test);
  static_assert(cd::SampleSource<cxrl::cxr::PhantomDataset>);
  CHECK(train.size() == 40);
  const auto a = train.get(7), b = train.get(7);
  CHECK(torch::equal(a.image, b.image));
  CHECK(a.prompt == b.prompt);
  CHECK(a.meta.posture.has_value());
  CHECK(a.image.sizes() == torch::IntArrayRef({1, 32, 32}));
  CHECK(!torch::equal(train.get(0).image, test.get(0).image));
  CHECK_THROWS_AS(train.get(40), std::out_of_range);
  // range-v3 views are lazy: taking 3 renders 3
  int n = 0;
  for (const auto& s : cd::samples(train) | ranges::views::take(3)) {
    CHECK(s.image.defined());
    ++n;
  }
  CHECK(n == 3);
  // batches
  std::size_t total = 0, nb = 0;
  for (const auto& batch : cd::batches(train, 16, cx::collate, std::uint64_t{1})) {
    CHECK(batch.images.size(1) == 1);
    CHECK(batch.labels.size(1) == cx::kNumObservations);
    CHECK(batch.posture.size(1) == 5);
    CHECK(batch.prompts.size() == static_cast<std::size_t>(batch.images.size(0)));
    total += static_cast<std::size_t>(batch.images.size(0));
    ++nb;
  }
  CHECK(total == 40);
  CHECK(nb == 3);
  CHECK(ranges::distance(cd::batches(train, 16, cx::collate, std::nullopt, true)) == 2);  // drop_last drops the 8
  // blank labels become NaN, others ±1/0
  const auto bt = cxrl::cxr::collate({train.get(0), train.get(1)});
  for (int k = 0; k < cx::kNumObservations; ++k) {
    const float v = bt.labels[0][k].item<float>();
    CHECK((std::isnan(v) == (train.get(0).labels[static_cast<std::size_t>(k)] == cx::Label::blank)));
  }
  // shuffling is a deterministic permutation
  const auto p = cd::shuffled_indices(100, 3);
  CHECK(p == cd::shuffled_indices(100, 3));
  CHECK(p != cd::shuffled_indices(100, 4));
  std::set<std::size_t> uniq(p.begin(), p.end());
  CHECK(uniq.size() == 100);
  CHECK(*uniq.rbegin() == 99);
  // canonical CXR = mean of the sampled images
  const auto canon = cx::canonical_cxr(train, 10, 2);
  torch::Tensor sum = torch::zeros({1, 32, 32}, torch::kFloat64);
  for (auto i : cd::sample_indices(train.size(), 10, 2)) sum += train.get(i).image.to(torch::kFloat64);
  CHECK(torch::allclose(canon, (sum / 10).to(torch::kFloat32), 1e-6, 1e-6));
  // eval splits use the held-out phrasing pool by default
  CHECK(o.eval_phrasing == cx::PhrasingPool::heldout);
}

namespace {
/// A world of another modality: 7 numbered grey squares whose label is their number.
struct CountingSource {
  using Sample = cd::Sample<int, std::string>;
  std::size_t size() const { return 7; }
  Sample get(std::size_t i) const {
    return {torch::full({1, 2, 2}, static_cast<float>(i)), "square " + std::to_string(i), static_cast<int>(i), "meta", cd::Split::test};
  }
};
}  // namespace

TEST_CASE("dataset API: generic over the sample's labels and metadata", "[data]") {
  static_assert(cd::SampleSource<CountingSource>);
  static_assert(std::is_same_v<cd::sample_t<CountingSource>, CountingSource::Sample>);
  const CountingSource src;
  // A modality's collate: sum of labels and the stacked images.
  auto collate = [](const std::vector<CountingSource::Sample>& s) {
    return std::pair{std::accumulate(s.begin(), s.end(), 0, [](int a, const auto& x) { return a + x.labels; }), cd::stack_images(s)};
  };
  std::vector<int> sums;
  std::vector<int64_t> sizes;
  for (const auto& [sum, images] : cd::batches(src, 3, collate)) {
    sums.push_back(sum);
    sizes.push_back(images.size(0));
  }
  CHECK(sums == std::vector<int>{0 + 1 + 2, 3 + 4 + 5, 6});
  CHECK(sizes == std::vector<int64_t>{3, 3, 1});
  // Shuffled: every index once, in the order shuffled_indices gives.
  const auto order = cd::shuffled_indices(7, 5);
  std::vector<int> seen;
  for (const auto& [sum, images] : cd::batches(src, 2, collate, std::uint64_t{5}, true))
    for (int64_t r = 0; r < images.size(0); ++r) seen.push_back(static_cast<int>(images[r][0][0][0].item<float>()));
  REQUIRE(seen.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) CHECK(seen[i] == static_cast<int>(order[i]));
  const cd::Subset sub(src, {4, 2});
  CHECK(sub.get(0).labels == 4);
  CHECK(sub.get(1).prompt == "square 2");
  CHECK_THROWS_WITH(cd::stack_images(std::vector<CountingSource::Sample>{}), Catch::Contains("empty batch"));
}
