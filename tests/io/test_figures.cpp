// Figures: text rendering, line plots with SE bands, captioned sample sheets.
#include <catch2/catch.hpp>

#include <cxrl/io/figure.hpp>
#include <cxrl/io/font.hpp>
#include <cxrl/io/plot.hpp>

#include <cmath>

using namespace cxrl::io;

TEST_CASE("font: widths add up, drawing darkens only its box, wrapping respects the width", "[io][figures]") {
  const auto& f = Font::shared();
  CHECK(f.width("", 12) == 0);
  CHECK(std::abs(f.width("ab", 12) - f.width("a", 12) - f.width("b", 12)) <= 1);
  CHECK(f.width("mm", 24) > f.width("mm", 12));
  auto img = torch::ones({3, 40, 120});
  f.draw(img, 10, 10, "Edema", 16);
  CHECK(img.min().item<float>() < 0.2f);                                    // ink
  CHECK(img.narrow(2, 0, 9).min().item<float>() == 1.0f);                   // nothing left of x = 10
  CHECK(img.narrow(2, 11 + f.width("Edema", 16), 120 - 11 - f.width("Edema", 16)).min().item<float>() == 1.0f);
  for (const auto& line : f.wrap("small left pleural effusion without pneumothorax", 12, 80)) CHECK(f.width(line, 12) <= 80);
  CHECK(f.wrap("a verylongwordthatcannotbesplit b", 12, 20).size() == 3);
  CHECK_THROWS_WITH(Font("/nonexistent/font.ttf"), Catch::Contains("/nonexistent/font.ttf") && Catch::Contains("fonts-dejavu-core"));
}

TEST_CASE("plots: 1-2-5 ticks, curve colours and SE bands", "[io][figures]") {
  CHECK(plot_detail::ticks(0, 1) == std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0});
  CHECK(plot_detail::ticks(-0.3, 0.25, 5) == std::vector<double>{-0.3, -0.2, -0.1, 0, 0.1, 0.2});
  Panel p{"r_align", "epoch", "score", {{"policy", {1, 2, 3}, {0.1, 0.2, 0.3}, {}, {1.f, 0.f, 0.f}}}};
  const auto plain = render_panel(p, 300, 200);
  CHECK(plain.sizes() == torch::IntArrayRef({3, 200, 300}));
  // Pure red pixels exist (the curve); the band adds light-red (tinted, not saturated) pixels.
  auto red = [](const torch::Tensor& im) { return ((im[0] > 0.95) & (im[1] < 0.05) & (im[2] < 0.05)).sum().item<int64_t>(); };
  auto tint = [](const torch::Tensor& im) { return ((im[0] > 0.95) & (im[1] > 0.6) & (im[1] < 0.95) & (im[2] > 0.6) & (im[2] < 0.95)).sum().item<int64_t>(); };
  CHECK(red(plain) > 50);
  p.series[0].se = {0.05, 0.05, 0.05};
  const auto banded = render_panel(p, 300, 200);
  CHECK(tint(banded) > tint(plain) + 1000);
  CHECK(render_panels({p, p, p}, 2, 300, 200).sizes() == torch::IntArrayRef({3, 400, 600}));
}

TEST_CASE("captioned sheets: rows upscaled, labelled, reports under the columns", "[io][figures]") {
  const auto a = torch::zeros({2, 1, 16, 16}), b = torch::ones({2, 3, 16, 16}) * 0.5;
  const auto s = captioned_sheet({{"real", a}, {"CXRL", b}}, {"Small left pleural effusion.", "No acute process."}, 4);
  CHECK(s.size(0) == 3);
  CHECK(s.size(2) == 120 + 2 * (64 + 6) + 6);
  CHECK(s.size(1) > 2 * (64 + 6) + 6);
  // The first tile of the first row is black, of the second grey.
  CHECK(s.index({0, 6 + 32, 120 + 6 + 32}).item<float>() == Approx(0.0));
  CHECK(s.index({0, 6 + 70 + 32, 120 + 6 + 32}).item<float>() == Approx(0.5));
  CHECK_THROWS_AS(captioned_sheet({{"x", a}, {"y", torch::zeros({3, 1, 16, 16})}}, {}, 2), std::invalid_argument);
}
