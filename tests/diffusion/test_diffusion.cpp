// Unit tests of the diffusion layer: config parsing and errors, timestep spacings against values
// hand-derived from diffusers' DDIMScheduler.set_timesteps, closed forms of the three parameterisations,
// DDPO log-prob density and gradient, classifier-free guidance and the DDPM loss.
#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/guidance.hpp>
#include <cxrl/diffusion/loss.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <filesystem>
#include <string>
#include <vector>

using namespace cxrl::diffusion;
using Catch::Matchers::Contains;

namespace {

std::string config_error(const nlohmann::json& j) {
  try {
    (void)DDIMSchedulerConfig::from_json(j, "my/scheduler_config.json");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::vector<int64_t> timesteps_of(DDIMSchedulerConfig c, int64_t n) {
  DDIMScheduler s(c);
  s.set_timesteps(n);
  auto t = s.timesteps().to(torch::kCPU).contiguous();
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()};
}

DDIMSchedulerConfig sd_config() {
  DDIMSchedulerConfig c;
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  c.beta_schedule = BetaSchedule::scaled_linear;
  c.clip_sample = false;
  c.set_alpha_to_one = false;
  c.steps_offset = 1;
  return c;
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("config: unknown enum values are rejected with the allowed values listed", "[diffusion][config]") {
  auto e = config_error({{"beta_schedule", "cosine"}});
  CHECK_THAT(e, Contains("my/scheduler_config.json") && Contains("beta_schedule") && Contains("\"cosine\"") &&
                    Contains("\"linear\"") && Contains("\"scaled_linear\"") && Contains("\"squaredcos_cap_v2\""));
  e = config_error({{"prediction_type", "x0"}});
  CHECK_THAT(e, Contains("prediction_type") && Contains("\"epsilon\"") && Contains("\"v_prediction\"") &&
                    Contains("\"sample\""));
  e = config_error({{"timestep_spacing", "uniform"}});
  CHECK_THAT(e, Contains("timestep_spacing") && Contains("\"leading\"") && Contains("\"trailing\"") &&
                    Contains("\"linspace\""));
  e = config_error({{"num_train_timesteps", "1000"}});
  CHECK_THAT(e, Contains("num_train_timesteps") && Contains("integer"));
  e = config_error({{"clip_sample", 1}});
  CHECK_THAT(e, Contains("clip_sample") && Contains("boolean"));
  CHECK_THAT(config_error({{"thresholding", true}}), Contains("thresholding"));
  CHECK_THAT(config_error({{"rescale_betas_zero_snr", true}}), Contains("rescale_betas_zero_snr"));
  CHECK_THAT(config_error({{"num_train_timesteps", 0}}), Contains("num_train_timesteps"));
  CHECK_THAT(config_error({{"trained_betas", {0.1, 0.2}}}), Contains("trained_betas"));
  CHECK_THAT(config_error(nlohmann::json::array()), Contains("object"));
}

TEST_CASE("config: informational keys are ignored and values parsed", "[diffusion][config]") {
  nlohmann::json j = {{"_class_name", "PNDMScheduler"}, {"_diffusers_version", "0.6.0"}, {"skip_prk_steps", true},
                      {"beta_schedule", "squaredcos_cap_v2"}, {"prediction_type", "v_prediction"},
                      {"timestep_spacing", "trailing"}, {"steps_offset", 1}, {"clip_sample", false},
                      {"clip_sample_range", 2.5}, {"set_alpha_to_one", false}, {"num_train_timesteps", 500},
                      {"trained_betas", nullptr}, {"thresholding", false}};
  auto c = DDIMSchedulerConfig::from_json(j, "x.json");
  CHECK(c.beta_schedule == BetaSchedule::squaredcos_cap_v2);
  CHECK(c.prediction_type == PredictionType::v_prediction);
  CHECK(c.timestep_spacing == TimestepSpacing::trailing);
  CHECK(c.steps_offset == 1);
  CHECK_FALSE(c.clip_sample);
  CHECK(c.clip_sample_range == 2.5);
  CHECK_FALSE(c.set_alpha_to_one);
  CHECK(c.num_train_timesteps == 500);
  CHECK_FALSE(c.trained_betas.has_value());
}

TEST_CASE("config: load reads scheduler_config.json from a folder and reports missing files", "[diffusion][config]") {
  auto c = DDIMSchedulerConfig::load(std::filesystem::path(CXRL_TEST_DATA) / "ddim");
  CHECK(c.beta_schedule == BetaSchedule::scaled_linear);
  CHECK(c.beta_start == Approx(0.00085));
  CHECK(c.steps_offset == 1);
  CHECK_FALSE(c.set_alpha_to_one);
  try {
    (void)DDIMSchedulerConfig::load("/nonexistent/dir/scheduler_config.json");
    FAIL("expected an exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(std::string(e.what()), Contains("/nonexistent/dir/scheduler_config.json"));
  }
}

TEST_CASE("schedule: cosine betas use float time and are capped at 0.999", "[diffusion][schedule]") {
  auto b = betas_for_alpha_bar(1000);
  auto abar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  CHECK(b[0].item<float>() == static_cast<float>(1 - abar(0.001) / abar(0.0)));
  CHECK(b[500].item<float>() == static_cast<float>(1 - abar(0.501) / abar(0.5)));
  CHECK(b[999].item<float>() == 0.999f);
  CHECK(b[0].item<float>() < b[500].item<float>());  // an integer-division bug makes them all equal
  auto lin = make_betas(BetaSchedule::linear, 1000, 0.0001, 0.02);
  CHECK(lin[0].item<float>() == 0.0001f);
  CHECK(lin[999].item<float>() == 0.02f);
  auto sl = make_betas(BetaSchedule::scaled_linear, 1000, 0.00085, 0.012);
  CHECK(sl[999].item<float>() == Approx(0.012).epsilon(1e-6));
  auto ac = alphas_cumprod_from_betas(lin);
  CHECK(ac[1].item<float>() == Approx((1 - 0.0001) * (1 - lin[1].item<double>())).epsilon(1e-6));
}

TEST_CASE("timesteps: leading, trailing and linspace equal diffusers' set_timesteps", "[diffusion][timesteps]") {
  DDIMSchedulerConfig c;  // T = 1000
  // leading: arange(N)[::-1] * (T // N) + steps_offset
  CHECK(timesteps_of(c, 3) == std::vector<int64_t>{666, 333, 0});
  c.steps_offset = 1;
  CHECK(timesteps_of(c, 4) == std::vector<int64_t>{751, 501, 251, 1});
  // trailing: round(arange(T, 0, -T/N)) - 1, no steps_offset
  c.timestep_spacing = TimestepSpacing::trailing;
  CHECK(timesteps_of(c, 10) == std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
  CHECK(timesteps_of(c, 3) == std::vector<int64_t>{999, 666, 332});
  // T/N = 62.5: the .5 cases round half to even (937.5 -> 938, 812.5 -> 812), as NumPy does.
  CHECK(timesteps_of(c, 16) == std::vector<int64_t>{999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249,
                                                    187, 124, 61});
  // linspace: round(linspace(0, T-1, N))[::-1], no steps_offset
  c.timestep_spacing = TimestepSpacing::linspace;
  CHECK(timesteps_of(c, 10) == std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0});
  CHECK(timesteps_of(c, 6) == std::vector<int64_t>{999, 799, 599, 400, 200, 0});
  CHECK(timesteps_of(c, 3) == std::vector<int64_t>{999, 500, 0});  // 499.5 -> 500 (even)
  CHECK(timesteps_of(c, 8) == std::vector<int64_t>{999, 856, 714, 571, 428, 285, 143, 0});
  CHECK(timesteps_of(c, 1) == std::vector<int64_t>{0});
}

TEST_CASE("timesteps: invalid step counts and timesteps throw", "[diffusion][timesteps]") {
  DDIMScheduler s;
  CHECK_THROWS_AS(s.set_timesteps(1001), std::invalid_argument);
  CHECK_THROWS_WITH(s.set_timesteps(1001), Contains("num_train_timesteps"));
  CHECK_THROWS_AS(s.set_timesteps(0), std::invalid_argument);
  auto x = torch::randn({1, 2, 3, 3});
  CHECK_THROWS_AS(s.step(x, torch::tensor(10), x), std::logic_error);  // set_timesteps not called
  s.set_timesteps(10);
  CHECK_THROWS_WITH(s.step(x, torch::tensor(1000), x), Contains("out of range"));
  CHECK_THROWS_WITH(s.step(x, torch::tensor(10.0), x), Contains("integer"));
  CHECK_THROWS_AS(s.step(x, torch::tensor({10, 20, 30}), x), std::invalid_argument);  // 3 timesteps, batch 1
  CHECK_THROWS_AS(s.step(x, torch::tensor(10), torch::randn({1, 2, 3, 4})), std::invalid_argument);
}

TEST_CASE("step: each prediction type recovers x0 and the DDIM mean from a consistent model output",
          "[diffusion][step]") {
  torch::manual_seed(7);
  const auto x0 = torch::randn({3, 2, 4, 4}) * 0.5;
  const auto noise = torch::randn({3, 2, 4, 4});
  for (auto pt : kPredictionTypes) {
    auto c = sd_config();
    c.prediction_type = pt;
    DDIMScheduler s(c);
    s.set_timesteps(50);
    for (int64_t tv : {981, 501, 41}) {
      const auto t = torch::tensor(tv);
      const auto xt = s.add_noise(x0, noise, t);
      torch::Tensor out = pt == PredictionType::epsilon ? noise
                          : pt == PredictionType::sample ? x0
                                                         : s.get_velocity(x0, noise, t);
      auto o = s.step(out, t, xt, 0.0);
      INFO("prediction_type " << to_string(pt) << " t " << tv);
      CHECK(max_abs(o.pred_original_sample, x0) < 2e-4);
      // DDIM (eta = 0): x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps.
      const double ap = s.alphas_cumprod()[tv - 20].item<double>();
      const auto expected = std::sqrt(ap) * x0 + std::sqrt(1 - ap) * noise;
      CHECK(max_abs(o.prev_sample, expected) < 2e-4);
      CHECK(max_abs(o.mean, o.prev_sample) == 0.0);
    }
  }
}

TEST_CASE("step: clip_sample clamps predicted x0 to the configured range", "[diffusion][step]") {
  DDIMSchedulerConfig c;
  c.clip_sample = true;
  c.clip_sample_range = 0.5;
  c.prediction_type = PredictionType::sample;
  DDIMScheduler s(c);
  s.set_timesteps(10);
  auto x = torch::randn({2, 1, 4, 4});
  auto o = s.step(3.0 * torch::randn({2, 1, 4, 4}), torch::tensor(500), x);
  CHECK(o.pred_original_sample.abs().max().item<float>() == 0.5f);
}

TEST_CASE("step: eta > 0 adds std_dev_t * noise, noise is drawn from the generator when not given",
          "[diffusion][step]") {
  DDIMScheduler s(sd_config());
  s.set_timesteps(20);
  auto x = torch::randn({2, 4, 3, 3}), eps = torch::randn({2, 4, 3, 3}), z = torch::randn({2, 4, 3, 3});
  const auto t = torch::tensor(501);
  auto o = s.step(eps, t, x, 1.0, z);
  CHECK(max_abs(o.prev_sample, o.mean + o.std_dev_t * z) < 1e-6);
  CHECK(o.std_dev_t.item<double>() == Approx(std::sqrt(s.variance(t).item<double>())));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(11), g2 = at::make_generator<at::CPUGeneratorImpl>(11);
  auto a = s.step(eps, t, x, 1.0, {}, g1), b = s.step(eps, t, x, 1.0, {}, g2);
  CHECK(max_abs(a.prev_sample, b.prev_sample) == 0.0);
  CHECK(max_abs(a.prev_sample, a.mean) > 1e-3);
  CHECK_THROWS_AS(s.step(eps, t, x, 1.0, z, g1), std::invalid_argument);
  CHECK_THROWS_AS(s.step(eps, t, x, -0.5), std::invalid_argument);
}

TEST_CASE("step_with_logprob: eta <= 0 throws and explains why", "[diffusion][logprob]") {
  DDIMScheduler s(sd_config());
  s.set_timesteps(20);
  auto x = torch::randn({1, 4, 2, 2});
  for (double eta : {0.0, -1.0}) {
    try {
      (void)s.step_with_logprob(x, torch::tensor(501), x, eta, x);
      FAIL("expected std::invalid_argument");
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(std::string(e.what()), Contains("eta must be > 0") && Contains("undefined"));
    }
  }
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  CHECK_THROWS_AS(s.step_with_logprob(x, torch::tensor(501), x, 1.0, x, g), std::invalid_argument);
}

TEST_CASE("step_with_logprob: Gaussian density and gradient through the mean only", "[diffusion][logprob]") {
  torch::manual_seed(3);
  DDIMScheduler s(sd_config());
  s.set_timesteps(20);
  const auto x = torch::randn({2, 4, 3, 3});
  const auto eps = torch::randn({2, 4, 3, 3}).requires_grad_(true);
  const auto prev = torch::randn({2, 4, 3, 3});
  const int64_t tv = 701;
  const auto t = torch::tensor(tv);
  const double eta = 0.8;
  auto o = s.step_with_logprob(eps, t, x, eta, prev);
  CHECK_FALSE(o.prev_sample.requires_grad());
  REQUIRE(o.log_prob.sizes() == torch::IntArrayRef{2});
  // Closed form in double.
  const double at = s.alphas_cumprod()[tv].item<double>(), ap = s.alphas_cumprod()[tv - 50].item<double>();
  const double var = (1 - ap) / (1 - at) * (1 - at / ap), sd = eta * std::sqrt(var);
  auto e = eps.detach().to(torch::kFloat64), xd = x.to(torch::kFloat64), pd = prev.to(torch::kFloat64);
  auto x0 = (xd - std::sqrt(1 - at) * e) / std::sqrt(at);
  auto mean = std::sqrt(ap) * x0 + std::sqrt(1 - ap - sd * sd) * e;
  auto lp = (-(pd - mean).pow(2) / (2 * sd * sd) - std::log(sd) - 0.5 * std::log(2 * std::numbers::pi)).mean({1, 2, 3});
  CHECK(max_abs(o.log_prob, lp) < 1e-4);
  CHECK(o.std_dev_t.item<double>() == Approx(sd).epsilon(1e-5));
  // d log_prob / d eps = (prev - mean) / sd^2 * dmean/deps / D, dmean/deps = sqrt(1-ap-sd^2) - sqrt(ap (1-at)/at).
  o.log_prob.sum().backward();
  REQUIRE(eps.grad().defined());
  const double dmean = std::sqrt(1 - ap - sd * sd) - std::sqrt(ap * (1 - at) / at);
  auto expected_grad = (pd - mean) / (sd * sd) * dmean / 36.0;
  CHECK(eps.grad().abs().max().item<double>() > 1e-3);
  CHECK(max_abs(eps.grad(), expected_grad) < 1e-4);
}

TEST_CASE("step_with_logprob: self-sampled prev_sample is detached and scored consistently", "[diffusion][logprob]") {
  DDIMScheduler s(sd_config());
  s.set_timesteps(20);
  const auto x = torch::randn({2, 4, 3, 3});
  const auto eps = torch::randn({2, 4, 3, 3}).requires_grad_(true);
  auto g = at::make_generator<at::CPUGeneratorImpl>(5);
  auto a = s.step_with_logprob(eps, torch::tensor(301), x, 1.0, {}, g);
  CHECK_FALSE(a.prev_sample.requires_grad());
  CHECK(a.log_prob.requires_grad());
  // Scoring the drawn sample again (teacher forcing) gives the same log-prob.
  auto b = s.step_with_logprob(eps, torch::tensor(301), x, 1.0, a.prev_sample);
  CHECK(max_abs(a.log_prob, b.log_prob) < 1e-6);
  // Replaying given noise equals mean + std * z.
  auto z = torch::randn({2, 4, 3, 3});
  auto c = s.step_with_logprob_noise(eps, torch::tensor(301), x, 1.0, z);
  CHECK(max_abs(c.prev_sample, c.mean.detach() + c.std_dev_t * z) < 1e-6);
}

TEST_CASE("final step: step() uses final_alpha_cumprod, step_with_logprob clamps to alphas_cumprod[0]",
          "[diffusion][logprob]") {
  auto c = sd_config();
  c.set_alpha_to_one = true;
  DDIMScheduler s(c);
  s.set_timesteps(50);
  const auto x = torch::randn({1, 4, 2, 2}), eps = torch::randn({1, 4, 2, 2});
  const auto t = torch::tensor(1);  // prev = -19
  auto d = s.step(eps, t, x, 0.0);
  // abar_prev = 1: the last deterministic step returns the predicted x0 itself.
  CHECK(max_abs(d.prev_sample, d.pred_original_sample) < 1e-6);
  auto l = s.step_with_logprob(eps, t, x, 1.0, x);
  const double a0 = s.alphas_cumprod()[0].item<double>(), a1 = s.alphas_cumprod()[1].item<double>();
  CHECK(l.std_dev_t.item<double>() == Approx(std::sqrt((1 - a0) / (1 - a1) * (1 - a1 / a0))).epsilon(1e-5));
  auto d1 = s.step(eps, t, x, 1.0, x);
  CHECK(d1.std_dev_t.item<double>() == 0.0);  // step(): variance 0 when abar_prev = 1
  CHECK(max_abs(l.mean, d1.mean) > 1e-4);     // differs from step() here; identical when set_alpha_to_one = false
  auto c2 = sd_config();
  DDIMScheduler s2(c2);
  s2.set_timesteps(50);
  CHECK(max_abs(s2.step_with_logprob(eps, t, x, 1.0, x).mean, s2.step(eps, t, x, 1.0, x).mean) == 0.0);
}

TEST_CASE("add_noise and batched timesteps broadcast per sample", "[diffusion][step]") {
  DDIMScheduler s(sd_config());
  s.set_timesteps(50);
  auto x0 = torch::randn({2, 3, 2, 2}), n = torch::randn({2, 3, 2, 2});
  auto t = torch::tensor({900, 100});
  auto xt = s.add_noise(x0, n, t);
  for (int64_t b = 0; b < 2; ++b) {
    const double a = s.alphas_cumprod()[t[b].item<int64_t>()].item<double>();
    CHECK(max_abs(xt[b], std::sqrt(a) * x0[b] + std::sqrt(1 - a) * n[b]) < 1e-6);
    auto row = s.step(n.slice(0, b, b + 1), t[b], xt.slice(0, b, b + 1), 0.0);
    CHECK(max_abs(s.step(n, t, xt, 0.0).prev_sample.slice(0, b, b + 1), row.prev_sample) < 1e-6);
  }
}

TEST_CASE("classifier-free guidance: uncond + w (cond - uncond)", "[diffusion][guidance]") {
  auto u = torch::randn({2, 4, 3, 3}), c = torch::randn({2, 4, 3, 3});
  CHECK(max_abs(classifier_free_guidance(u, c, 1.0), c) < 1e-6);
  CHECK(max_abs(classifier_free_guidance(u, c, 0.0), u) == 0.0);
  CHECK(max_abs(classifier_free_guidance(u, c, 7.5), u + 7.5 * (c - u)) == 0.0);
  CHECK(max_abs(classifier_free_guidance(u, c, 7.5), 7.5 * c - 6.5 * u) < 1e-5);
  CHECK(max_abs(classifier_free_guidance(torch::cat({u, c}), 3.0), u + 3.0 * (c - u)) == 0.0);
  CHECK_THROWS_AS(classifier_free_guidance(u, c.slice(0, 0, 1), 2.0), std::invalid_argument);
  CHECK_THROWS_AS(classifier_free_guidance(torch::randn({3, 2}), 2.0), std::invalid_argument);
}

TEST_CASE("diffusion_loss: MSE against the epsilon / v / x0 target", "[diffusion][loss]") {
  auto x0 = torch::randn({4, 2, 3, 3}), noise = torch::randn({4, 2, 3, 3});
  auto t = torch::tensor({10, 200, 500, 999});
  for (auto pt : kPredictionTypes) {
    auto c = sd_config();
    c.prediction_type = pt;
    DDIMScheduler s(c);
    auto target = pt == PredictionType::epsilon ? noise : pt == PredictionType::sample ? x0 : s.get_velocity(x0, noise, t);
    INFO(to_string(pt));
    CHECK(diffusion_loss(s, target, x0, noise, t).item<double>() < 1e-12);
    auto out = torch::zeros_like(x0).requires_grad_(true);
    auto loss = diffusion_loss(s, out, x0, noise, t);
    CHECK(loss.item<double>() == Approx(target.pow(2).mean().item<double>()).epsilon(1e-6));
    loss.backward();
    CHECK(max_abs(out.grad(), -2.0 * target / target.numel()) < 1e-7);
  }
  // v = sqrt(abar) eps - sqrt(1 - abar) x0
  DDIMScheduler s(sd_config());
  const double a = s.alphas_cumprod()[500].item<double>();
  CHECK(max_abs(s.get_velocity(x0, noise, torch::tensor(500)), std::sqrt(a) * noise - std::sqrt(1 - a) * x0) < 1e-6);
  CHECK_THROWS_AS(diffusion_loss(s, x0.slice(0, 0, 2), x0, noise, t), std::invalid_argument);
}

TEST_CASE("trained_betas override the schedule, float64 samples stay float64", "[diffusion][schedule]") {
  DDIMSchedulerConfig c;
  c.num_train_timesteps = 4;
  c.trained_betas = std::vector<double>{0.1, 0.2, 0.3, 0.4};
  c.clip_sample = false;
  DDIMScheduler s(c);
  CHECK(max_abs(s.alphas_cumprod(), torch::tensor({0.9, 0.72, 0.504, 0.3024})) < 1e-6);
  s.set_timesteps(2);  // leading: ratio 2 -> [2, 0]
  CHECK(s.timesteps()[0].item<int64_t>() == 2);
  auto x = torch::randn({2, 3}, torch::kFloat64), e = torch::randn({2, 3}, torch::kFloat64);
  auto o64 = s.step(e, torch::tensor(2), x, 0.0);
  CHECK(o64.prev_sample.scalar_type() == torch::kFloat64);
  auto o32 = s.step(e.to(torch::kFloat32), torch::tensor(2), x.to(torch::kFloat32), 0.0);
  CHECK(max_abs(o64.prev_sample, o32.prev_sample) < 1e-5);
  auto lp = s.step_with_logprob(e, torch::tensor(2), x, 1.0, x);
  CHECK(lp.log_prob.scalar_type() == torch::kFloat64);
  CHECK(lp.log_prob.sizes() == torch::IntArrayRef{2});
}
