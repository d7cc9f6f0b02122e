// The evaluation protocol's statistics: paired bootstrap intervals (closed forms and coverage) and result tables.
#include <catch2/catch.hpp>

#include <cxrl/eval/bootstrap.hpp>
#include <cxrl/eval/table.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace ev = cxrl::eval;

namespace {
std::vector<double> normal(int64_t n, double mean, double sd, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto t = torch::randn({n}, g, torch::kDouble) * sd + mean;
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + n);
}
}  // namespace

TEST_CASE("quantile interpolates between order statistics like numpy", "[eval][bootstrap]") {
  std::vector<double> v{4, 1, 3, 2};
  CHECK(ev::quantile(v, 0.0) == 1.0);
  CHECK(ev::quantile(v, 1.0) == 4.0);
  CHECK(ev::quantile(v, 0.5) == Approx(2.5));
  CHECK(ev::quantile(v, 0.25) == Approx(1.75));  // numpy.quantile([1,2,3,4], 0.25) = 1.75
}

TEST_CASE("paired bootstrap: a constant per-item difference has a zero-width interval", "[eval][bootstrap]") {
  const auto a = normal(200, 0.0, 1.0, 1);
  std::vector<double> b(a);
  for (auto& x : b) x += 0.3;
  const auto d = ev::paired_bootstrap(ev::mean_of(a), {ev::mean_of(b)}, 200, {500, 0.95, 7});
  CHECK(d.delta == Approx(0.3));
  CHECK(d.lo == Approx(0.3));
  CHECK(d.hi == Approx(0.3));
  CHECK(d.excludes_zero());
  CHECK(d.replicates == 500);
}

TEST_CASE("paired bootstrap: the interval of a mean difference matches the normal-theory width", "[eval][bootstrap]") {
  // Items share a large common component (the report), which pairing removes: the difference has sd 0.5.
  const int64_t n = 400;
  const auto common = normal(n, 0.0, 3.0, 2);
  const auto noise = normal(n, 0.1, 0.5, 3);
  std::vector<double> b(common);
  for (int64_t i = 0; i < n; ++i) b[static_cast<size_t>(i)] += noise[static_cast<size_t>(i)];
  const auto d = ev::paired_bootstrap(ev::mean_of(common), {ev::mean_of(b)}, n, {2000, 0.95, 11});
  double m = 0, q = 0;
  for (double x : noise) m += x / n;
  for (double x : noise) q += (x - m) * (x - m) / (n - 1);
  const double half = 1.96 * std::sqrt(q / n);  // ≈ 0.049; an unpaired interval would be ≈ 0.42 wide
  CHECK(d.delta == Approx(m));
  CHECK((d.hi - d.lo) / 2 == Approx(half).epsilon(0.12));
  CHECK(d.lo < m);
  CHECK(d.hi > m);
}

TEST_CASE("paired bootstrap covers the true difference about 95 % of the time", "[eval][bootstrap]") {
  int covered = 0;
  const int trials = 100;
  for (int t = 0; t < trials; ++t) {
    const auto a = normal(100, 0.0, 1.0, 100 + t);
    const auto e = normal(100, 0.2, 1.0, 500 + t);
    std::vector<double> b(a);
    for (size_t i = 0; i < b.size(); ++i) b[i] += e[i];
    const auto d = ev::paired_bootstrap(ev::mean_of(a), {ev::mean_of(b)}, 100, {400, 0.95, static_cast<uint64_t>(t)});
    covered += d.lo <= 0.2 && 0.2 <= d.hi;
  }
  CHECK(covered >= 88);  // binomial(100, 0.95): 88 is below the 0.1 % quantile
  CHECK(covered <= 100);
}

TEST_CASE("paired bootstrap over seeds widens the interval by the seed-to-seed spread", "[eval][bootstrap]") {
  const auto a = normal(300, 0.0, 1.0, 4);
  auto shifted = [&](double by) {
    std::vector<double> b(a);
    for (auto& x : b) x += by;
    return ev::mean_of(b);
  };
  const auto one = ev::paired_bootstrap(ev::mean_of(a), {shifted(0.2)}, 300, {1000, 0.95, 5});
  const auto three = ev::paired_bootstrap(ev::mean_of(a), {shifted(0.0), shifted(0.2), shifted(0.4)}, 300, {1000, 0.95, 5});
  CHECK(three.delta == Approx(0.2));
  CHECK(one.hi - one.lo < 1e-9);          // no report noise in the difference
  CHECK(three.hi - three.lo > 0.15);      // only the seeds vary
  CHECK(three.lo >= 0.0 - 1e-12);
  CHECK(three.hi <= 0.4 + 1e-12);
}

TEST_CASE("paired bootstrap rejects degenerate input", "[eval][bootstrap]") {
  CHECK_THROWS_WITH(ev::paired_bootstrap(ev::mean_of({1, 2}), {}, 2), Catch::Contains("at least one seed"));
  CHECK_THROWS_WITH(ev::paired_bootstrap(ev::mean_of({1}), {ev::mean_of({1})}, 1), Catch::Contains("at least 2"));
  CHECK_THROWS_WITH(ev::paired_bootstrap(ev::mean_of({1, 2}), {ev::mean_of({1, 2})}, 2, {10, 1.5, 0}), Catch::Contains("confidence"));
}

TEST_CASE("correlation_of: Pearson's r over the drawn items, NaNs skipped", "[eval][bootstrap]") {
  const std::vector<int64_t> all{0, 1, 2, 3};
  CHECK(ev::correlation_of({1, 2, 3, 4}, {1, 3, 2, 4})(all) == Approx(0.8));  // Σdxdy 4 / √(5·5)
  CHECK(ev::correlation_of({1, 2, 3, 4}, {3, 5, 7, 9})(all) == Approx(1.0));
  CHECK(ev::correlation_of({1, 2, 3, 4}, {4, 3, 2, 1})(all) == Approx(-1.0));
  CHECK(ev::correlation_of({1, 2, std::nan(""), 3, 4}, {1, 3, 100, 2, 4})({0, 1, 2, 3, 4}) == Approx(0.8));
  CHECK(ev::correlation_of({1, 2, 3, 4}, {1, 3, 2, 4})({0, 0, 1, 1}) == Approx(1.0));  // a resample with repeats
  CHECK(std::isnan(ev::correlation_of({1, 1, 1}, {1, 2, 3})({0, 1, 2})));
  CHECK_THROWS_WITH(ev::correlation_of({1, 2}, {1}), Catch::Contains("2 and 1"));

  // Two scorers that share less of a signal correlate less, and the paired interval over items says so.
  const int64_t n = 2000;
  const auto s = normal(n, 0, 1, 1), e1 = normal(n, 0, 0.5, 2), e2 = normal(n, 0, 2, 3);
  std::vector<double> close(n), far(n);
  for (int64_t i = 0; i < n; ++i) close[i] = s[i] + e1[i], far[i] = s[i] + e2[i];
  CHECK(ev::correlation_of(s, close)(ev::all_items(n)) == Approx(1 / std::sqrt(1.25)).margin(0.02));
  CHECK(ev::correlation_of(s, far)(ev::all_items(n)) == Approx(1 / std::sqrt(5.0)).margin(0.04));
  const auto d = ev::paired_bootstrap(ev::correlation_of(s, close), {ev::correlation_of(s, far)}, n, {500, 0.95, 7});
  CHECK(d.hi < 0);
  CHECK(d.delta == Approx(1 / std::sqrt(5.0) - 1 / std::sqrt(1.25)).margin(0.05));
}

TEST_CASE("tables: markdown marks significant differences by direction, JSON holds mean, delta and ci", "[eval][table]") {
  ev::Table t{"1", "demo", {{"up", "up ↑", true, 2, ev::MetricSource::judge}, {"down", "down ↓", false, 2, ev::MetricSource::reward}}, {}, "note"};
  ev::Row anchor{"Anchor", 1, {{"up", {1.0, std::nan(""), std::nullopt, {}}}, {"down", {5.0, std::nan(""), std::nullopt, {}}}}};
  ev::PairedDelta up{1.0, 1.5, 0.5, 0.2, 0.8, 1000};
  ev::PairedDelta down{5.0, 5.5, 0.5, 0.1, 0.9, 1000};  // "down" rose: significantly worse
  ev::Row run{"CXRL", 3, {{"up", {1.5, 0.1, up, {}}}, {"down", {5.5, 0.2, down, {}}}}};
  t.rows = {anchor, run};
  const auto md = ev::to_markdown(t);
  CHECK(md.find("| CXRL | 3 | 1.50 ± 0.10 · Δ +0.50 [+0.20, +0.80] ✔ | 5.50 ± 0.20 · Δ +0.50 [+0.10, +0.90] ✘ |") != std::string::npos);
  CHECK(md.find("| Anchor | 1 | 1.00 | 5.00 |") != std::string::npos);
  const auto j = ev::to_json(t);
  const auto& c = j["rows"][1]["metrics"]["up"];
  CHECK(c["mean"] == 1.5);
  CHECK(c["ci"][0] == 0.2);
  CHECK(c["ci"][1] == 0.8);
  CHECK(c["significant"] == "better");
  CHECK(j["rows"][1]["metrics"]["down"]["significant"] == "worse");
  CHECK(j["metrics"][1]["source"] == "reward");
  CHECK(j["rows"][0]["metrics"]["up"]["seed_std"].is_null());
}

TEST_CASE("tables: each seed's own difference, and how many seeds are better, by direction", "[eval][table]") {
  // Three seeds of a model against a reference on 4 items: means 2.5 (reference), 3.5, 2.0, 4.0.
  const auto ref = ev::mean_of({1, 2, 3, 4});
  const std::vector<ev::Statistic> seeds{ev::mean_of({2, 3, 4, 5}), ev::mean_of({0.5, 1.5, 2.5, 3.5}), ev::mean_of({3, 4, 5, 4})};
  const auto c = ev::make_cell(seeds, 4, ref, {200, 0.95, 3});
  REQUIRE(c.seed_deltas.size() == 3);
  CHECK(c.seed_deltas[0] == Approx(1.0));
  CHECK(c.seed_deltas[1] == Approx(-0.5));
  CHECK(c.seed_deltas[2] == Approx(1.5));
  CHECK(c.delta->delta == Approx((1.0 - 0.5 + 1.5) / 3));
  const ev::MetricSpec up{"up", "up ↑", true, 2, ev::MetricSource::judge}, down{"down", "down ↓", false, 2, ev::MetricSource::judge};
  CHECK(ev::seeds_better(up, c) == 2);
  CHECK(ev::seeds_better(down, c) == 1);
  CHECK(ev::make_cell(seeds, 4, {}, {}).seed_deltas.empty());  // the reference row has no differences

  ev::Table t{"1", "demo", {up, down}, {}, ""};
  t.rows = {{"Anchor", 1, {{"up", ev::make_cell({ref}, 4, {}, {})}, {"down", ev::make_cell({ref}, 4, {}, {})}}},
            {"CXRL", 3, {{"up", c}, {"down", c}}},
            {"one seed", 1, {{"up", ev::make_cell({seeds[0]}, 4, ref, {200, 0.95, 3})}}}};
  const auto md = ev::to_markdown(t);
  CHECK(md.find("· better in 2/3 seeds |") != std::string::npos);
  CHECK(md.find("· better in 1/3 seeds |") != std::string::npos);
  CHECK(md.find("better in 1/1") == std::string::npos);  // a single seed's count says nothing the interval does not
  const auto j = ev::to_json(t);
  CHECK(j["rows"][1]["metrics"]["up"]["seed_deltas"][1] == Approx(-0.5));
  CHECK(j["rows"][1]["metrics"]["down"]["seeds_better"] == 1);
  CHECK(j["rows"][0]["metrics"]["up"].count("seed_deltas") == 0);
}
