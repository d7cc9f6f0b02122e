// Golden kind "metrics": pytorch-msssim (ms_ssim, ssim), sklearn roc_auc_score + torchxrayvision macro
// AUROC, pytorch-fid calculate_frechet_distance. Cases come from the data: `<pair>.X` tensors of the
// ms_ssim file, `<case>.features1` tensors of the fid file, and the case lists of auroc.json.
#include "golden.hpp"

#include <cxrl/metrics/auroc.hpp>
#include <cxrl/metrics/fid.hpp>
#include <cxrl/metrics/msssim.hpp>

#include <limits>
#include <regex>

namespace {

using cxrl::golden::Context;
using cxrl::golden::Tolerance;

torch::Tensor f64(double v) { return torch::tensor({v}, torch::kFloat64); }

// JSON numbers (null = NaN) as a float64 tensor; nested arrays become [N, T].
torch::Tensor json_tensor(const nlohmann::json& j) {
  std::vector<double> flat;
  std::vector<int64_t> shape{static_cast<int64_t>(j.size())};
  for (const auto& row : j) {
    if (row.is_array()) {
      if (shape.size() == 1) shape.push_back(static_cast<int64_t>(row.size()));
      for (const auto& v : row) flat.push_back(v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>());
    } else {
      flat.push_back(row.is_null() ? std::numeric_limits<double>::quiet_NaN() : row.get<double>());
    }
  }
  return torch::tensor(flat, torch::kFloat64).reshape(shape);
}

void check_msssim(Context& ctx) {
  const std::string role = "ms_ssim";
  nlohmann::json cases = ctx.has_file("ms_ssim_cases") ? ctx.json("ms_ssim_cases") : nlohmann::json::object();
  std::map<std::string, nlohmann::json> by_key;
  if (cases.contains("pairs"))
    for (const auto& p : cases["pairs"]) by_key[p.at("key").get<std::string>()] = p;
  cxrl::metrics::SsimOptions opt;
  opt.data_range = cases.value("data_range", 1.0);  // the README's setting; a fixture may override it
  const std::regex win_re(R"(gaussian_window_([0-9]+)_sigma([0-9.]+))");
  const std::regex x_re(R"((.+)\.X)");
  for (const auto& key : ctx.io_keys(role)) {
    std::smatch m;
    if (std::regex_match(key, m, win_re)) {
      opt.win_size = std::stoll(m[1].str());
      opt.win_sigma = std::stod(m[2].str());
      ctx.check(key, cxrl::metrics::gaussian_window(opt.win_size, opt.win_sigma), ctx.tensor(key, role));
    }
  }
  for (const auto& key : ctx.io_keys(role)) {
    std::smatch m;
    if (!std::regex_match(key, m, x_re)) continue;
    const std::string p = m[1].str();
    const auto x = ctx.tensor(p + ".X", role), y = ctx.tensor(p + ".Y", role);
    auto avg = opt, per = opt;
    per.size_average = false;
    auto d = cxrl::metrics::ms_ssim_details(x, y, avg);
    ctx.check(p + ".ms_ssim", d.value.reshape({1}), ctx.tensor(p + ".ms_ssim", role));
    ctx.check(p + ".ms_ssim_per_image", cxrl::metrics::ms_ssim(x, y, per), ctx.tensor(p + ".ms_ssim_per_image", role));
    ctx.check(p + ".ssim", cxrl::metrics::ssim(x, y, avg).reshape({1}), ctx.tensor(p + ".ssim", role));
    ctx.check(p + ".ssim_per_image", cxrl::metrics::ssim(x, y, per), ctx.tensor(p + ".ssim_per_image", role));
    // Debug tensors: per-level cs (before relu) and the coarsest level's ssim.
    const std::regex cs_re(std::regex_replace(p, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                           R"(\.debug\.cs_levels0to([0-9]+))");
    const std::regex sl_re(std::regex_replace(p, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                           R"(\.debug\.ssim_level([0-9]+))");
    for (const auto& k2 : ctx.io_keys(role)) {
      std::smatch m2;
      if (std::regex_match(k2, m2, cs_re)) {
        const int64_t last = std::stoll(m2[1].str());
        ctx.check(k2, d.cs_levels.slice(0, 0, last + 1), ctx.tensor(k2, role));
      } else if (std::regex_match(k2, m2, sl_re)) {
        ctx.expect(k2 + " level index", std::stoll(m2[1].str()) == d.cs_levels.size(0),
                   "coarsest level of " + std::to_string(d.weights.size(0)) + " scales");
        ctx.check(k2, d.ssim_last, ctx.tensor(k2, role));
      }
    }
    if (by_key.count(p)) {
      const auto& jp = by_key[p];
      if (jp.contains("ms_ssim")) ctx.check(p + " (json ms_ssim)", d.value.to(torch::kFloat64).reshape({1}), f64(jp["ms_ssim"]));
      if (jp.contains("ssim"))
        ctx.check(p + " (json ssim)", cxrl::metrics::ssim(x, y, avg).to(torch::kFloat64).reshape({1}), f64(jp["ssim"]));
    }
  }
}

void check_fid(Context& ctx) {
  const std::string role = "fid";
  const std::regex f_re(R"((.+)\.features1)");
  std::map<std::string, double> json_fid;
  if (ctx.has_file("fid_cases")) {
    const auto j = ctx.json("fid_cases");
    if (j.contains("cases"))
      for (const auto& c : j["cases"]) json_fid[c.at("name").get<std::string>()] = c.at("fid").get<double>();
  }
  for (const auto& key : ctx.io_keys(role)) {
    std::smatch m;
    if (!std::regex_match(key, m, f_re)) continue;
    const std::string c = m[1].str();
    const auto s1 = cxrl::metrics::activation_statistics(ctx.tensor(c + ".features1", role));
    const auto s2 = cxrl::metrics::activation_statistics(ctx.tensor(c + ".features2", role));
    ctx.check(c + ".mu1", s1.mu, ctx.tensor(c + ".mu1", role));
    ctx.check(c + ".mu2", s2.mu, ctx.tensor(c + ".mu2", role));
    ctx.check(c + ".sigma1", s1.sigma, ctx.tensor(c + ".sigma1", role));
    ctx.check(c + ".sigma2", s2.sigma, ctx.tensor(c + ".sigma2", role));
    const auto expected = ctx.tensor(c + ".fid", role);
    const double from_features = cxrl::metrics::frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma);
    ctx.check(c + ".fid", f64(from_features), expected);
    const double from_stats = cxrl::metrics::frechet_distance(ctx.tensor(c + ".mu1", role), ctx.tensor(c + ".sigma1", role),
                                                              ctx.tensor(c + ".mu2", role), ctx.tensor(c + ".sigma2", role));
    ctx.check(c + ".fid (from stored stats)", f64(from_stats), expected);
    if (json_fid.count(c)) ctx.check(c + ".fid (json)", f64(from_features), f64(json_fid[c]));
  }
}

void check_auroc(Context& ctx) {
  if (!ctx.has_file("auroc_cases")) return;
  const auto j = ctx.json("auroc_cases");
  for (const auto& c : j.value("binary_cases", nlohmann::json::array())) {
    const auto name = "auroc." + c.at("name").get<std::string>();
    const auto y = json_tensor(c.at("labels")), s = json_tensor(c.at("scores"));
    const bool expect_error = c.contains("sklearn_error") && !c["sklearn_error"].is_null();
    if (expect_error) {
      std::string what;
      try {
        (void)cxrl::metrics::roc_auc_score(y, s);
      } catch (const std::invalid_argument& e) {
        what = e.what();
      }
      ctx.expect(name + " throws", what.find("Only one class present") != std::string::npos, what);
    } else {
      ctx.check(name, f64(cxrl::metrics::roc_auc_score(y, s)), f64(c.at("auroc").get<double>()));
    }
  }
  for (const auto& c : j.value("macro_cases", nlohmann::json::array())) {
    const auto name = "auroc." + c.at("name").get<std::string>();
    const auto y = json_tensor(c.at("labels")), s = json_tensor(c.at("scores"));
    // sklearn average="macro": raises when any task has one class, else the mean of per-task AUROCs.
    if (c.contains("sklearn_error") && !c["sklearn_error"].is_null()) {
      std::string what;
      try {
        (void)cxrl::metrics::roc_auc_score_macro(y, s);
      } catch (const std::invalid_argument& e) {
        what = e.what();
      }
      ctx.expect(name + " sklearn macro throws", what.find("Only one class present") != std::string::npos, what);
    }
    if (c.contains("sklearn_macro") && !c["sklearn_macro"].is_null())
      ctx.check(name + " sklearn_macro", f64(cxrl::metrics::roc_auc_score_macro(y, s)),
                f64(c["sklearn_macro"].get<double>()));
    // torchxrayvision rule.
    const auto r = cxrl::metrics::macro_auroc(y, s);
    auto per = torch::tensor(r.per_task, torch::kFloat64);
    for (const char* k : {"per_class_auroc", "per_class_auroc_xrv_style"}) {
      if (!c.contains(k)) continue;
      const auto expected = json_tensor(c[k]);
      const auto nan_expected = expected.isnan();
      ctx.expect(name + "." + k + " skipped tasks", torch::equal(per.isnan(), nan_expected));
      ctx.check(name + "." + k, per.masked_select(~nan_expected), expected.masked_select(~nan_expected));
    }
    if (c.contains("xrv_style_macro_mean"))
      ctx.check(name + ".xrv_style_macro_mean", f64(r.mean), f64(c["xrv_style_macro_mean"].get<double>()));
  }
}

}  // namespace

CXRL_GOLDEN_KIND("metrics") {
  if (ctx.has_file("ms_ssim")) check_msssim(ctx);
  if (ctx.has_file("fid")) check_fid(ctx);
  check_auroc(ctx);
}
