// Golden kind "ddim": diffusers 0.17.1 DDIMScheduler + ddpo-pytorch ddim_step_with_logprob.
// Cases are discovered from the data: schedule tensors `alphas_cumprod_<schedule>`, `timesteps_<N>`, the
// step section (`step_timesteps`), the batched section (`batched.timesteps`) and the loop sections
// (`loop.*`, `loop_eta0.*`); step counts and eta come from fixture_params.json.
#include "golden.hpp"

#include <cxrl/diffusion/ddim.hpp>

#include <regex>

namespace {

using cxrl::diffusion::DDIMScheduler;
using cxrl::diffusion::DDIMSchedulerConfig;
using cxrl::golden::Context;
using cxrl::golden::Tolerance;

// The fixture's dummy denoiser: eps = 0.1 * x + 0.05 * t / 1000 (t the integer timestep). The constant
// term is formed in double and added once (this reproduces the reference model outputs to ~1e-8).
torch::Tensor dummy_model(const torch::Tensor& x, const torch::Tensor& t) {
  const double td = static_cast<double>(t.item<int64_t>());
  return 0.1 * x + 0.05 * td / 1000.0;
}

int64_t param_int(const nlohmann::json& p, const char* key, const std::string& file) {
  if (!p.contains(key) || !p.at(key).is_number_integer())
    throw std::runtime_error(file + ": key '" + std::string(key) + "' (integer) is required");
  return p.at(key).get<int64_t>();
}

}  // namespace

CXRL_GOLDEN_KIND("ddim") {
  const auto cfg = DDIMSchedulerConfig::load(ctx.file("scheduler_config"));
  const auto params = ctx.json("params");
  const auto params_file = ctx.file("params").string();
  const Tolerance tol = ctx.tolerance();
  const Tolerance lp_tol{tol.atol, ctx.tolerance_field("log_prob_rtol", tol.rtol), false};
  const Tolerance exact{0, 0, true};

  DDIMScheduler sched(cfg);

  // --- schedule tables ---
  if (ctx.has("betas")) ctx.check_io("betas", sched.betas());
  if (ctx.has("alphas_cumprod")) ctx.check_io("alphas_cumprod", sched.alphas_cumprod());
  if (ctx.has("final_alpha_cumprod")) ctx.check_io("final_alpha_cumprod", sched.final_alpha_cumprod());
  const std::regex ac_re("alphas_cumprod_(.+)");
  const std::regex ts_re("timesteps_([0-9]+)");
  for (const auto& key : ctx.io_keys()) {
    std::smatch m;
    if (std::regex_match(key, m, ac_re)) {
      // Other schedules are built with diffusers' default config (linear 0.0001..0.02, T = 1000) and the
      // fixture's num_train_timesteps.
      auto s = cxrl::diffusion::parse_beta_schedule(m[1].str());
      if (!s) throw std::runtime_error(key + ": unknown beta schedule '" + m[1].str() + "'");
      DDIMSchedulerConfig c;
      c.num_train_timesteps = cfg.num_train_timesteps;
      c.beta_schedule = *s;
      ctx.check_io(key, DDIMScheduler(c).alphas_cumprod());
    } else if (std::regex_match(key, m, ts_re)) {
      DDIMScheduler s(cfg);
      s.set_timesteps(std::stoll(m[1].str()));
      ctx.check_io(key, s.timesteps(), exact);
    }
  }

  const double eta = params.value("eta", 1.0);

  // --- single steps at the timesteps of the main schedule ---
  if (ctx.has("step_timesteps")) {
    sched.set_timesteps(param_int(params, "main_num_inference_steps", params_file));
    const auto x = ctx.tensor("sample");
    const auto eps = ctx.tensor("model_output");
    const auto z = ctx.tensor("variance_noise");
    const auto other = ctx.tensor("other_prev_sample");
    const auto ts = ctx.tensor("step_timesteps");
    const auto eta_prev_expected = ctx.tensor("step.eta_prev_sample");
    const auto lp_noise = ctx.tensor("step.lp_sampled_noise");
    std::vector<torch::Tensor> prev_t, var, std_t, p0, x00, p1, x01, lps_prev, lps, lpg, lpo;
    for (int64_t k = 0; k < ts.size(0); ++k) {
      const auto t = ts[k];
      prev_t.push_back(sched.prev_timestep(t));
      var.push_back(sched.variance(t));
      auto o0 = sched.step(eps, t, x, 0.0);
      p0.push_back(o0.prev_sample);
      x00.push_back(o0.pred_original_sample);
      auto o1 = sched.step(eps, t, x, eta, z);
      p1.push_back(o1.prev_sample);
      x01.push_back(o1.pred_original_sample);
      std_t.push_back(o1.std_dev_t);
      // Self-sampled log-prob: replay the generator's noise through step_with_logprob's own draw path.
      auto ls = sched.step_with_logprob_noise(eps, t, x, eta, lp_noise[k]);
      lps_prev.push_back(ls.prev_sample);
      lps.push_back(ls.log_prob);
      // Teacher forcing with the eta step's own output and with an unrelated sample.
      lpg.push_back(sched.step_with_logprob(eps, t, x, eta, eta_prev_expected[k]).log_prob);
      lpo.push_back(sched.step_with_logprob(eps, t, x, eta, other).log_prob);
      // At the final step (t - T//N < 0) diffusers' step() uses final_alpha_cumprod while ddpo clamps the
      // previous timestep to 0 (alphas_cumprod[0]); the two agree exactly when set_alpha_to_one is false.
      if (prev_t.back().item<int64_t>() < 0 && !cfg.set_alpha_to_one)
        ctx.expect("step[" + std::to_string(k) + "] final step: step() mean == step_with_logprob mean",
                   torch::equal(o1.mean, ls.mean), "final_alpha_cumprod == alphas_cumprod[0]");
    }
    ctx.check_io("step.prev_timesteps", torch::stack(prev_t), exact);
    ctx.check_io("step.variance", torch::stack(var));
    ctx.check_io("step.std_dev_t", torch::stack(std_t));
    ctx.check_io("step.eta0_prev_sample", torch::stack(p0));
    ctx.check_io("step.eta0_pred_original_sample", torch::stack(x00));
    ctx.check("step.eta_prev_sample", torch::stack(p1), eta_prev_expected);
    ctx.check_io("step.eta_pred_original_sample", torch::stack(x01));
    ctx.check_io("step.lp_sampled_prev_sample", torch::stack(lps_prev));
    ctx.check_io("step.lp_sampled_log_prob", torch::stack(lps), lp_tol);
    ctx.check_io("step.lp_given_log_prob", torch::stack(lpg), lp_tol);
    ctx.check_io("step.lp_given_other_log_prob", torch::stack(lpo), lp_tol);
  }

  // --- one timestep per batch element ---
  if (ctx.has("batched.timesteps")) {
    sched.set_timesteps(param_int(params, "main_num_inference_steps", params_file));
    const auto x = ctx.tensor("sample");
    const auto eps = ctx.tensor("model_output");
    const auto t = ctx.tensor("batched.timesteps");
    auto s = sched.step_with_logprob_noise(eps, t, x, eta, ctx.tensor("batched.sampled_noise"));
    ctx.check_io("batched.sampled_prev_sample", s.prev_sample);
    ctx.check_io("batched.sampled_log_prob", s.log_prob, lp_tol);
    auto g = sched.step_with_logprob(eps, t, x, eta, ctx.tensor("other_prev_sample"));
    ctx.check_io("batched.given_other_log_prob", g.log_prob, lp_tol);
    // Each row of the batched call equals a scalar-timestep call on that row.
    bool rows_ok = true;
    for (int64_t b = 0; b < t.size(0); ++b) {
      auto r = sched.step_with_logprob(eps.slice(0, b, b + 1), t[b], x.slice(0, b, b + 1), eta,
                                       ctx.tensor("other_prev_sample").slice(0, b, b + 1));
      rows_ok = rows_ok && torch::allclose(r.log_prob, g.log_prob.slice(0, b, b + 1), 1e-6, 1e-6);
    }
    ctx.expect("batched rows == scalar-timestep calls", rows_ok);
  }

  // --- the DDPO sampling loop (eta > 0, with log-probs) and the deterministic loop ---
  if (ctx.has("loop.latents")) {
    const int64_t n = param_int(params, "loop_num_inference_steps", params_file);
    sched.set_timesteps(n);
    ctx.check_io("loop.timesteps", sched.timesteps(), exact);
    const auto noise = ctx.tensor("loop.noise");
    const auto expected_latents = ctx.tensor("loop.latents");
    std::vector<torch::Tensor> latents{noise[0] * DDIMScheduler::init_noise_sigma()}, outs, lps, tf;
    for (int64_t i = 0; i < n; ++i) {
      const auto t = sched.timesteps()[i];
      const auto x = latents.back();
      const auto eps = dummy_model(DDIMScheduler::scale_model_input(x), t);
      outs.push_back(eps);
      auto o = sched.step_with_logprob_noise(eps, t, x, eta, noise[i + 1]);
      latents.push_back(o.prev_sample);
      lps.push_back(o.log_prob);
      // Teacher forcing on the reference trajectory (what DDPO's training epoch recomputes).
      const auto xr = expected_latents[i];
      tf.push_back(sched.step_with_logprob(dummy_model(xr, t), t, xr, eta, expected_latents[i + 1]).log_prob);
    }
    ctx.check("loop.latents", torch::stack(latents), expected_latents);
    ctx.check_io("loop.model_output", torch::stack(outs));
    ctx.check_io("loop.log_probs", torch::stack(lps), lp_tol);
    ctx.check_io("loop.teacher_forced_log_probs", torch::stack(tf), lp_tol);
    if (ctx.has("loop_eta0.latents")) {
      std::vector<torch::Tensor> det{expected_latents[0]};
      for (int64_t i = 0; i < n; ++i) {
        const auto t = sched.timesteps()[i];
        det.push_back(sched.step(dummy_model(det.back(), t), t, det.back(), 0.0).prev_sample);
      }
      ctx.check_io("loop_eta0.latents", torch::stack(det));
    }
  }
}
