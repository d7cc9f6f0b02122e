// Unit tests of the metrics layer against closed forms: matrix square roots and Gaussian Fréchet
// distances with known values, SSIM invariances and the small-image MS-SSIM variant, AUROC by hand.
#include <cxrl/metrics/auroc.hpp>
#include <cxrl/metrics/fid.hpp>
#include <cxrl/metrics/msssim.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace cxrl::metrics;
using Catch::Matchers::Contains;

namespace {
double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}
torch::Tensor random_psd(int64_t d, int64_t rank, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto a = torch::randn({d, rank}, g, torch::kFloat64);
  return a.mm(a.t()) / static_cast<double>(rank);
}
torch::Tensor smooth_image(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto coarse = torch::rand({n, c, h / 8 + 1, w / 8 + 1}, g);
  return torch::nn::functional::interpolate(
             coarse, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false))
      .clamp(0, 1);
}
}  // namespace

TEST_CASE("fid: sqrtm_psd squares back, also for singular matrices", "[metrics][fid]") {
  for (int64_t rank : {12, 5}) {
    auto a = random_psd(12, rank, 10 + rank);
    auto r = sqrtm_psd(a);
    CHECK(max_abs(r.mm(r), a) < 1e-10);
    CHECK(max_abs(r, r.t()) < 1e-12);
    CHECK(torch::linalg::eigvalsh(r, "L").min().item<double>() > -1e-7);
  }
  CHECK_THROWS_AS(sqrtm_psd(torch::zeros({2, 3}, torch::kFloat64)), std::invalid_argument);
}

TEST_CASE("fid: closed forms for commuting and equal covariances", "[metrics][fid]") {
  // Diagonal covariances commute: FID = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  auto a = torch::tensor({1.0, 4.0, 9.0, 0.25}, torch::kFloat64), b = torch::tensor({4.0, 1.0, 9.0, 1.0}, torch::kFloat64);
  auto mu1 = torch::tensor({0.0, 1.0, 2.0, 3.0}, torch::kFloat64), mu2 = torch::tensor({1.0, 1.0, 0.0, 3.0}, torch::kFloat64);
  const double expected = 1.0 + 4.0 + (1 - 2) * (1 - 2) + (2 - 1) * (2 - 1) + 0.0 + (0.5 - 1) * (0.5 - 1);
  CHECK(frechet_distance(mu1, torch::diag(a), mu2, torch::diag(b)) == Approx(expected).epsilon(1e-12));
  // A rotation of both covariances leaves FID unchanged (non-diagonal, still commuting).
  auto q = std::get<0>(torch::linalg::qr(random_psd(4, 4, 3)));
  auto s1 = q.mm(torch::diag(a)).mm(q.t()), s2 = q.mm(torch::diag(b)).mm(q.t());
  CHECK(frechet_distance(mu1, s1, mu2, s2) == Approx(expected).epsilon(1e-10));
  // Equal rank-deficient covariances: only the mean term remains.
  auto p = random_psd(16, 3, 4);
  auto m1 = torch::zeros({16}, torch::kFloat64), m2 = torch::full({16}, 0.5, torch::kFloat64);
  // (sqrt of the round-off eigenvalues of the 13-dim null space adds ~1e-8 each, as in scipy's sqrtm)
  CHECK(frechet_distance(m1, p, m2, p) == Approx(16 * 0.25).margin(1e-5));
  // Tr sqrtm(S1 S2) for non-commuting S1, S2 equals the sum of sqrt of the eigenvalues of S1 S2.
  auto n1 = random_psd(6, 6, 5), n2 = random_psd(6, 6, 6);
  auto ev = torch::linalg::eigvals(n1.mm(n2));
  CHECK(trace_sqrt_product(n1, n2) == Approx(torch::real(torch::sqrt(ev)).sum().item<double>()).epsilon(1e-9));
}

TEST_CASE("fid: statistics and argument errors", "[metrics][fid]") {
  auto f = torch::tensor({{1.0, 2.0}, {3.0, 0.0}, {5.0, 4.0}}, torch::kFloat32);
  auto st = activation_statistics(f);
  CHECK(max_abs(st.mu, torch::tensor({3.0, 2.0}, torch::kFloat64)) == 0.0);
  // unbiased: sum of squared deviations / (N - 1)
  CHECK(max_abs(st.sigma, torch::tensor({{4.0, 2.0}, {2.0, 4.0}}, torch::kFloat64)) < 1e-12);
  CHECK(fid_from_features(f, f) == Approx(0.0).margin(1e-9));
  CHECK_THROWS_AS(activation_statistics(torch::ones({1, 3})), std::invalid_argument);
  CHECK_THROWS_AS(activation_statistics(torch::ones({4})), std::invalid_argument);
  auto nan = torch::eye(2, torch::kFloat64);
  nan[0][0] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(frechet_distance(torch::zeros({2}), nan, torch::zeros({2}), torch::eye(2)), Contains("NaN"));
  CHECK_THROWS_AS(frechet_distance(torch::zeros({2}), torch::eye(2), torch::zeros({3}), torch::eye(3)),
                  std::invalid_argument);
}

TEST_CASE("ssim: identity, range scaling and argument checks", "[metrics][msssim]") {
  auto x = smooth_image(2, 1, 64, 64, 1), y = (x + 0.1 * torch::randn_like(x)).clamp(0, 1);
  SsimOptions o;
  o.data_range = 1.0;
  CHECK(ssim(x, x, o).item<double>() == Approx(1.0).epsilon(1e-6));
  const double v = ssim(x, y, o).item<double>();
  CHECK(v < 0.99);
  auto o255 = o;
  o255.data_range = 255.0;
  CHECK(ssim(x * 255, y * 255, o255).item<double>() == Approx(v).epsilon(1e-4));
  auto per = o;
  per.size_average = false;
  auto pi = ssim(x, y, per);
  REQUIRE(pi.sizes() == torch::IntArrayRef{2});
  CHECK(pi.mean().item<double>() == Approx(v).epsilon(1e-6));
  CHECK_THROWS_AS(ssim(x, y.slice(3, 0, 32), o), std::invalid_argument);
  CHECK_THROWS_AS(ssim(x[0], y[0], o), std::invalid_argument);
  CHECK_THROWS_WITH(ssim(torch::rand({1, 1, 8, 8}), torch::rand({1, 1, 8, 8}), o), Contains("window"));
  auto w = gaussian_window(11, 1.5);
  CHECK(w.sum().item<double>() == Approx(1.0).epsilon(1e-6));
  CHECK(w[5].item<float>() > w[4].item<float>());
  CHECK(w[4].item<float>() == w[6].item<float>());
}

TEST_CASE("ms_ssim: small images need the fit variant with renormalised weights", "[metrics][msssim]") {
  auto x = smooth_image(1, 1, 64, 72, 2), y = (x + 0.05 * torch::randn_like(x)).clamp(0, 1);
  SsimOptions o;
  o.data_range = 1.0;
  CHECK_THROWS_WITH(ms_ssim(x, y, o), Contains("160"));
  auto d = ms_ssim_details(x, y, o, MsSsimScales::fit);
  // 64 > 10*2^2 = 40 but 64 <= 10*2^3 = 80: three scales, weights 0.0448, 0.2856, 0.3001 renormalised.
  REQUIRE(d.weights.size(0) == 3);
  CHECK(d.weights.sum().item<double>() == Approx(1.0).epsilon(1e-6));
  CHECK(d.weights[0].item<double>() == Approx(0.0448 / (0.0448 + 0.2856 + 0.3001)).epsilon(1e-6));
  // Manual product over the scales with ssim_components and the padded average pooling.
  auto win = gaussian_window(11, 1.5);
  auto c0 = ssim_components(x, y, win, 1.0);
  auto pool = [](const torch::Tensor& t) {
    return torch::avg_pool2d(t, {2, 2}, {2, 2}, {t.size(2) % 2, t.size(3) % 2}, false, true);
  };
  auto x1 = pool(x), y1 = pool(y);
  auto c1 = ssim_components(x1, y1, win, 1.0);
  auto c2 = ssim_components(pool(x1), pool(y1), win, 1.0);
  const auto w = d.weights.to(torch::kFloat64);
  const double manual = std::pow(c0.cs.item<double>(), w[0].item<double>()) *
                        std::pow(c1.cs.item<double>(), w[1].item<double>()) *
                        std::pow(c2.ssim.item<double>(), w[2].item<double>());
  CHECK(d.value.item<double>() == Approx(manual).epsilon(1e-5));
  CHECK(ms_ssim_fit(x, x, o).item<double>() == Approx(1.0).epsilon(1e-6));
  CHECK_THROWS_AS(ms_ssim_fit(torch::rand({1, 1, 10, 10}), torch::rand({1, 1, 10, 10}), o), std::invalid_argument);
}

TEST_CASE("ms_ssim: fit equals reference for images large enough for every scale", "[metrics][msssim]") {
  auto x = smooth_image(1, 2, 170, 165, 3), y = (x + 0.05 * torch::randn_like(x)).clamp(0, 1);
  SsimOptions o;
  o.data_range = 1.0;
  CHECK(ms_ssim_fit(x, y, o).item<double>() == ms_ssim(x, y, o).item<double>());
  // Anti-correlated images: cs < 0 at some scale is clamped by relu, so MS-SSIM is 0.
  CHECK(ms_ssim(x, 1 - x, o).item<double>() == 0.0);
}

TEST_CASE("auroc: hand-computed values, ties and invariance", "[metrics][auroc]") {
  auto y = torch::tensor({0.0, 0.0, 1.0, 1.0});
  CHECK(roc_auc_score(y, torch::tensor({0.1, 0.4, 0.35, 0.8})) == Approx(0.75));
  // One tie between a positive and a negative counts 1/2: pairs (p,n): (0.4,0.4)=.5, (0.4,0.1)=1, (0.9,*)=1+1.
  CHECK(roc_auc_score(y, torch::tensor({0.1, 0.4, 0.4, 0.9})) == Approx(3.5 / 4));
  CHECK(roc_auc_score(y, torch::tensor({1.0, 1.0, 1.0, 1.0})) == Approx(0.5));
  auto s = torch::randn({50});
  auto lab = (torch::rand({50}) > 0.5).to(torch::kFloat32);
  lab[0] = 0;
  lab[1] = 1;
  const double a = roc_auc_score(lab, s);
  CHECK(roc_auc_score(lab, torch::sigmoid(3 * s)) == Approx(a).epsilon(1e-12));
  CHECK(roc_auc_score(lab, -s) == Approx(1 - a).epsilon(1e-12));
  CHECK(roc_auc_score(1 - lab, s) == Approx(1 - a).epsilon(1e-12));
  CHECK_THROWS_WITH(roc_auc_score(torch::zeros({5}), torch::rand({5})), Contains("Only one class"));
  CHECK_THROWS_WITH(roc_auc_score(torch::tensor({0.0, 2.0}), torch::rand({2})), Contains("0 or 1"));
  CHECK_THROWS_AS(roc_auc_score(torch::tensor({0.0, 1.0}), torch::rand({3})), std::invalid_argument);
}

TEST_CASE("auroc: macro average drops NaN labels and skips single-class tasks", "[metrics][auroc]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto y = torch::tensor({{0.0, 1.0, 0.0}, {1.0, 1.0, 0.0}, {0.0, nan, 0.0}, {1.0, 0.0, 0.0}}, torch::kFloat64);
  auto s = torch::tensor({{0.1, 0.9, 0.3}, {0.8, 0.2, 0.1}, {0.3, 0.5, 0.7}, {0.6, 0.4, 0.2}}, torch::kFloat64);
  auto r = macro_auroc(y, s);
  REQUIRE(r.per_task.size() == 3);
  CHECK(r.per_task[0] == Approx(1.0));
  // task 1 without the NaN row: labels 1,1,0 with scores .9,.2,.4 -> pairs (.9>.4)=1, (.2<.4)=0 -> 0.5
  CHECK(r.per_task[1] == Approx(0.5));
  CHECK(std::isnan(r.per_task[2]));
  CHECK(r.skipped == std::vector<int64_t>{2});
  CHECK(r.mean == Approx(0.75));
  CHECK_THROWS_WITH(roc_auc_score_macro(torch::nan_to_num(y, 0.0), s), Contains("task 2"));
  CHECK_THROWS_AS(macro_auroc(torch::zeros({4, 2}), torch::rand({4, 2})), std::invalid_argument);
  CHECK_THROWS_AS(macro_auroc(y, s.slice(1, 0, 2)), std::invalid_argument);
}
