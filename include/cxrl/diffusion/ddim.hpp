/// @file
/// @brief DDIMScheduler: deterministic and stochastic DDIM steps (Song et al. 2021, eq. 12 and 16) as in
///        diffusers v0.17.1 `DDIMScheduler`, plus the per-step Gaussian log-likelihood of DDPO
///        (Black et al. 2023; ddpo-pytorch `ddim_step_with_logprob`).
#pragma once

#include <cxrl/diffusion/ddim_config.hpp>
#include <cxrl/diffusion/schedule.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cxrl::diffusion {

/// @brief Result of one reverse step x_t -> x_{t-1}.
///
/// Per-sample quantities (`std_dev_t`, `log_prob`) have the shape of the timestep argument: 0-d for a
/// scalar timestep, [B] for a batched one; `log_prob` is always [B] and is undefined for step().
struct StepOutput {
  torch::Tensor prev_sample;           ///< x_{t-1}
  torch::Tensor pred_original_sample;  ///< predicted x0 (after clipping, if enabled)
  torch::Tensor mean;                  ///< mean of x_{t-1} given x_t (the eta = 0 DDIM update with sigma_t)
  torch::Tensor std_dev_t;             ///< sigma_t = eta * sqrt(variance), 0-d or [B]
  torch::Tensor log_prob;              ///< [B] mean over non-batch dims of log N(prev_sample; mean, sigma_t^2)
};

/// @brief DDIM sampler over a discrete noise schedule (diffusers v0.17.1 `DDIMScheduler`).
///
/// Two step functions share the same mean and variance:
/// - step(): diffusers `DDIMScheduler.step`. The previous timestep is t - T // N; when it is negative
///   (the last step), alpha-bar_prev is `final_alpha_cumprod` (1 if `set_alpha_to_one`, else
///   alphas_cumprod[0]).
/// - step_with_logprob(): ddpo-pytorch `ddim_step_with_logprob`. It clamps the previous timestep to
///   [0, T-1] before the lookup, so at the last step alpha-bar_prev is alphas_cumprod[0] regardless of
///   `set_alpha_to_one`. With Stable Diffusion's config (`set_alpha_to_one = false`) both give the same
///   number (the golden fixture `ddim/` checks this: its last step t = 1 maps to prev = -19); with
///   `set_alpha_to_one = true` they differ at the final step, and step_with_logprob follows the reference
///   DDPO code, because the log-probs must match the ones the policy-gradient was derived with.
class DDIMScheduler {
 public:
  /// @brief Builds the schedule tables (betas, alphas_cumprod) from @p cfg, on CPU.
  /// @param cfg scheduler configuration (validated)
  explicit DDIMScheduler(DDIMSchedulerConfig cfg = {}) : cfg_(std::move(cfg)) {
    cfg_.validate();
    if (cfg_.trained_betas)
      betas_ = torch::tensor(*cfg_.trained_betas, torch::kFloat64).to(torch::kFloat32);
    else
      betas_ = make_betas(cfg_.beta_schedule, cfg_.num_train_timesteps, cfg_.beta_start, cfg_.beta_end);
    alphas_cumprod_ = alphas_cumprod_from_betas(betas_);
    final_alpha_cumprod_ = cfg_.set_alpha_to_one ? torch::tensor(1.0f) : alphas_cumprod_[0].clone();
    // Before set_timesteps, diffusers lists every training timestep (descending).
    timesteps_ = torch::arange(cfg_.num_train_timesteps - 1, -1, -1, torch::kInt64);
  }

  /// @brief Picks the N inference timesteps per `timestep_spacing` (diffusers `set_timesteps`).
  ///
  /// leading: arange(N) * (T // N) + steps_offset; trailing: round(arange(T, 0, -T/N)) - 1;
  /// linspace: round(linspace(0, T-1, N)); all descending. Rounding is NumPy's (half to even).
  /// @param num_inference_steps N, 1 <= N <= num_train_timesteps
  /// @throws std::invalid_argument when N is out of range
  void set_timesteps(int64_t num_inference_steps) {
    const int64_t T = cfg_.num_train_timesteps;
    if (num_inference_steps < 1)
      throw std::invalid_argument("DDIMScheduler::set_timesteps: num_inference_steps must be >= 1, got " +
                                  std::to_string(num_inference_steps));
    if (num_inference_steps > T)
      throw std::invalid_argument("DDIMScheduler::set_timesteps: num_inference_steps (" +
                                  std::to_string(num_inference_steps) + ") cannot exceed num_train_timesteps (" +
                                  std::to_string(T) + "): the model only knows timesteps 0.." + std::to_string(T - 1));
    const int64_t N = num_inference_steps;
    std::vector<int64_t> ts;
    switch (cfg_.timestep_spacing) {
      case TimestepSpacing::leading: {
        const int64_t ratio = T / N;  // integer division, as in diffusers
        for (int64_t i = N - 1; i >= 0; --i) ts.push_back(i * ratio + cfg_.steps_offset);
        break;
      }
      case TimestepSpacing::trailing: {
        // np.arange(T, 0, -T/N): length ceil(T / (T/N)); values a0 + i * ((a0 + step) - a0).
        const double step = -static_cast<double>(T) / static_cast<double>(N);
        const double a0 = static_cast<double>(T);
        const double delta = (a0 + step) - a0;
        const auto len = static_cast<int64_t>(std::ceil((0.0 - a0) / step));
        for (int64_t i = 0; i < len; ++i) {
          const double v = i == 0 ? a0 : (i == 1 ? a0 + step : a0 + static_cast<double>(i) * delta);
          ts.push_back(static_cast<int64_t>(std::nearbyint(v)) - 1);
        }
        break;
      }
      case TimestepSpacing::linspace: {
        // np.linspace(0, T-1, N): i * ((T-1)/(N-1)), last element exactly T-1.
        std::vector<int64_t> asc;
        const double stop = static_cast<double>(T - 1);
        const double step = N > 1 ? stop / static_cast<double>(N - 1) : 0.0;
        for (int64_t i = 0; i < N; ++i) {
          const double v = (N > 1 && i == N - 1) ? stop : static_cast<double>(i) * step;
          asc.push_back(static_cast<int64_t>(std::nearbyint(v)));
        }
        ts.assign(asc.rbegin(), asc.rend());
        break;
      }
    }
    num_inference_steps_ = N;
    timesteps_ = torch::tensor(ts, torch::kInt64).to(alphas_cumprod_.device());
  }

  /// @brief Moves the schedule tables and timesteps to @p device (they start on CPU).
  /// @param device target device
  DDIMScheduler& to(const torch::Device& device) {
    betas_ = betas_.to(device);
    alphas_cumprod_ = alphas_cumprod_.to(device);
    final_alpha_cumprod_ = final_alpha_cumprod_.to(device);
    timesteps_ = timesteps_.to(device);
    return *this;
  }

  /// @brief Inference timesteps, int64 [N], descending (all training timesteps before set_timesteps()).
  const torch::Tensor& timesteps() const { return timesteps_; }
  /// @brief alpha-bar_t, float32 [T].
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  /// @brief beta_t, float32 [T].
  const torch::Tensor& betas() const { return betas_; }
  /// @brief alpha-bar used after the last step by step(): 1 or alphas_cumprod[0] (0-d float32).
  const torch::Tensor& final_alpha_cumprod() const { return final_alpha_cumprod_; }
  /// @brief The configuration.
  const DDIMSchedulerConfig& config() const { return cfg_; }
  /// @brief N of the last set_timesteps() call, 0 before.
  int64_t num_inference_steps() const { return num_inference_steps_; }
  /// @brief Standard deviation of the initial noise x_T (1 for DDIM).
  static constexpr double init_noise_sigma() { return 1.0; }
  /// @brief DDIM needs no input scaling; returns @p sample (diffusers `scale_model_input`).
  /// @param sample x_t
  static torch::Tensor scale_model_input(const torch::Tensor& sample) { return sample; }

  /// @brief The previous timestep t - T // N (may be negative at the final step; not clamped).
  /// @param timestep int64, any shape
  torch::Tensor prev_timestep(const torch::Tensor& timestep) const {
    require_timesteps_set("prev_timestep");
    return checked_timestep(timestep, "prev_timestep") - cfg_.num_train_timesteps / num_inference_steps_;
  }

  /// @brief diffusers `_get_variance(t, t - T//N)`: (1 - abar_prev)/(1 - abar_t) * (1 - abar_t/abar_prev)
  ///        (DDIM eq. 16 with eta = 1), with abar_prev = final_alpha_cumprod when t - T//N < 0.
  /// @param timestep int64, 0-d or [B]
  torch::Tensor variance(const torch::Tensor& timestep) const {
    auto c = coefficients(timestep, /*clamp_prev=*/false, "variance");
    return c.variance;
  }

  /// @brief Forward diffusion q(x_t | x0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (Ho et al. 2020, eq. 4).
  /// @param x0 clean samples [B, ...]
  /// @param noise standard normal noise, shape of @p x0
  /// @param t int64 timesteps, 0-d or [B]
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) const {
    check_same_shape(x0, noise, "add_noise", "noise");
    auto abar = gather(alphas_cumprod_, checked_timestep(t, "add_noise"), x0, "add_noise");
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise;
  }

  /// @brief The v-prediction target v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, sec. 4).
  /// @param x0 clean samples [B, ...]
  /// @param noise the noise added to @p x0
  /// @param t int64 timesteps, 0-d or [B]
  torch::Tensor get_velocity(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) const {
    check_same_shape(x0, noise, "get_velocity", "noise");
    auto abar = gather(alphas_cumprod_, checked_timestep(t, "get_velocity"), x0, "get_velocity");
    return abar.sqrt() * noise - (1.0 - abar).sqrt() * x0;
  }

  /// @brief One DDIM reverse step, diffusers `DDIMScheduler.step` (DDIM eq. 12):
  ///        x_{t-1} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma_t^2) eps_hat + sigma_t z,
  ///        sigma_t = eta sqrt(variance(t)).
  /// @param model_output the model's prediction (per `prediction_type`), shape of @p sample
  /// @param timestep int64 0-d, or [B] with one timestep per sample
  /// @param sample x_t [B, ...]
  /// @param eta noise weight (0 = deterministic DDIM, 1 = DDPM-like ancestral sampling); >= 0
  /// @param variance_noise z (shape of @p sample); drawn when eta > 0 and none is given
  /// @param gen generator for z when @p variance_noise is not given (default generator otherwise)
  StepOutput step(const torch::Tensor& model_output, const torch::Tensor& timestep, const torch::Tensor& sample,
                  double eta = 0.0, const torch::Tensor& variance_noise = {},
                  std::optional<at::Generator> gen = std::nullopt) const {
    if (!(eta >= 0.0)) throw std::invalid_argument("DDIMScheduler::step: eta must be >= 0, got " + std::to_string(eta));
    if (variance_noise.defined() && gen.has_value())
      throw std::invalid_argument(
          "DDIMScheduler::step: pass either variance_noise or a generator, not both (as in diffusers)");
    check_same_shape(sample, model_output, "step", "model_output");
    auto core = mean_and_std(model_output, timestep, sample, eta, /*clamp_prev=*/false, "step");
    StepOutput out;
    out.pred_original_sample = core.pred_original_sample;
    out.mean = core.mean;
    out.std_dev_t = core.std_dev_t;
    out.prev_sample = core.mean;
    if (eta > 0.0) {
      torch::Tensor z = variance_noise.defined() ? variance_noise : draw_noise(sample, gen);
      check_same_shape(sample, z, "step", "variance_noise");
      out.prev_sample = core.mean + core.std_b * z;
    }
    return out;
  }

  /// @brief DDPO's stochastic DDIM step with log-likelihood (ddpo-pytorch `ddim_step_with_logprob`).
  ///
  /// The step's transition is N(mean, sigma_t^2 I) with mean and sigma_t of step(), except that the
  /// previous timestep is clamped to >= 0 (see the class notes). log_prob = mean over all non-batch dims
  /// of -(x_{t-1} - mean)^2 / (2 sigma_t^2) - log sigma_t - log sqrt(2 pi). The returned `prev_sample`
  /// is detached; the log-prob's gradient flows only through `mean` (i.e. into @p model_output), which
  /// is what the DDPO policy gradient needs.
  /// @param model_output the model's prediction (per `prediction_type`), shape of @p sample
  /// @param timestep int64 0-d, or [B] with one timestep per sample
  /// @param sample x_t [B, ...]
  /// @param eta noise weight; must be > 0 (with eta = 0, sigma_t = 0 and the density is undefined)
  /// @param prev_sample x_{t-1} to score (teacher forcing); when undefined it is drawn
  /// @param gen generator for drawing x_{t-1} (only when @p prev_sample is undefined)
  /// @throws std::invalid_argument for eta <= 0, or when both @p prev_sample and @p gen are given
  StepOutput step_with_logprob(const torch::Tensor& model_output, const torch::Tensor& timestep,
                               const torch::Tensor& sample, double eta, const torch::Tensor& prev_sample = {},
                               std::optional<at::Generator> gen = std::nullopt) const {
    if (prev_sample.defined() && gen.has_value())
      throw std::invalid_argument(
          "DDIMScheduler::step_with_logprob: pass either prev_sample or a generator, not both (as in ddpo-pytorch)");
    return logprob_step(model_output, timestep, sample, eta, prev_sample, {}, gen);
  }

  /// @brief step_with_logprob() that draws x_{t-1} = mean + sigma_t * @p variance_noise from given noise
  ///        (replays a recorded trajectory bit for bit).
  /// @param model_output the model's prediction, shape of @p sample
  /// @param timestep int64 0-d or [B]
  /// @param sample x_t
  /// @param eta noise weight, > 0
  /// @param variance_noise standard normal z, shape of @p sample
  StepOutput step_with_logprob_noise(const torch::Tensor& model_output, const torch::Tensor& timestep,
                                     const torch::Tensor& sample, double eta,
                                     const torch::Tensor& variance_noise) const {
    if (!variance_noise.defined())
      throw std::invalid_argument("DDIMScheduler::step_with_logprob_noise: variance_noise is undefined");
    return logprob_step(model_output, timestep, sample, eta, {}, variance_noise, std::nullopt);
  }

 private:
  struct Coefficients {
    torch::Tensor alpha_t, alpha_prev, variance;  // shape of the timestep (0-d or [B]), float32
  };
  struct Core {
    torch::Tensor pred_original_sample, mean, std_dev_t, std_b;  // std_b: broadcastable to the sample
  };

  void require_timesteps_set(const char* fn) const {
    if (num_inference_steps_ == 0)
      throw std::logic_error(std::string("DDIMScheduler::") + fn +
                             ": call set_timesteps(num_inference_steps) first (the step size T // N depends on it)");
  }

  static void check_same_shape(const torch::Tensor& ref, const torch::Tensor& x, const char* fn, const char* name) {
    if (!ref.defined() || !x.defined())
      throw std::invalid_argument(std::string("DDIMScheduler::") + fn + ": undefined tensor argument");
    if (ref.sizes() != x.sizes()) {
      std::ostringstream s;
      s << "DDIMScheduler::" << fn << ": " << name << " has shape " << x.sizes() << ", expected " << ref.sizes();
      throw std::invalid_argument(s.str());
    }
  }

  /// Validates dtype (integral) and range [0, T-1]; returns int64 on the tables' device.
  torch::Tensor checked_timestep(const torch::Tensor& t, const char* fn) const {
    if (!t.defined()) throw std::invalid_argument(std::string("DDIMScheduler::") + fn + ": timestep is undefined");
    if (t.is_floating_point() || t.is_complex() || t.scalar_type() == torch::kBool)
      throw std::invalid_argument(std::string("DDIMScheduler::") + fn +
                                  ": timestep must be an integer tensor (int64), got " +
                                  std::string(c10::toString(t.scalar_type())));
    auto ti = t.to(alphas_cumprod_.device(), torch::kInt64);
    if (ti.dim() > 1)
      throw std::invalid_argument(std::string("DDIMScheduler::") + fn + ": timestep must be 0-d or [B], got " +
                                  std::to_string(ti.dim()) + " dims");
    if (ti.numel() > 0) {
      const auto lo = ti.min().item<int64_t>(), hi = ti.max().item<int64_t>();
      if (lo < 0 || hi >= cfg_.num_train_timesteps)
        throw std::invalid_argument(std::string("DDIMScheduler::") + fn + ": timestep out of range [0, " +
                                    std::to_string(cfg_.num_train_timesteps - 1) + "]: got values in [" +
                                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return ti;
  }

  /// Reshapes a per-sample coefficient (0-d or [B]) so it broadcasts against @p x from the left.
  static torch::Tensor left_broadcast(const torch::Tensor& c, const torch::Tensor& x, const char* fn) {
    auto out = c.to(x.device(), x.is_floating_point() ? x.scalar_type() : c.scalar_type());
    if (c.dim() == 0) return out;
    if (x.dim() < 1 || (c.size(0) != x.size(0) && c.size(0) != 1)) {
      std::ostringstream s;
      s << "DDIMScheduler::" << fn << ": " << c.size(0) << " timesteps for a sample of shape " << x.sizes()
        << " (need a 0-d timestep or one per batch element)";
      throw std::invalid_argument(s.str());
    }
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[0] = c.size(0);
    return out.reshape(shape);
  }

  static torch::Tensor gather(const torch::Tensor& table, const torch::Tensor& t, const torch::Tensor& x,
                              const char* fn) {
    return left_broadcast(table.index_select(0, t.reshape({-1})).reshape(t.sizes()), x, fn);
  }

  /// alpha-bar at t and at the previous timestep, and the DDIM variance (DDIM eq. 16 with eta = 1).
  Coefficients coefficients(const torch::Tensor& timestep, bool clamp_prev, const char* fn) const {
    require_timesteps_set(fn);
    auto t = checked_timestep(timestep, fn);
    auto prev = t - cfg_.num_train_timesteps / num_inference_steps_;
    Coefficients c;
    c.alpha_t = alphas_cumprod_.index_select(0, t.reshape({-1})).reshape(t.sizes());
    if (clamp_prev) {
      // ddpo-pytorch: clamp(prev, 0, T-1) — the final step uses alphas_cumprod[0].
      auto pc = prev.clamp(0, cfg_.num_train_timesteps - 1);
      c.alpha_prev = alphas_cumprod_.index_select(0, pc.reshape({-1})).reshape(t.sizes());
    } else {
      // diffusers: a negative previous timestep means "after the last step" -> final_alpha_cumprod.
      auto looked = alphas_cumprod_.index_select(0, prev.clamp_min(0).reshape({-1})).reshape(t.sizes());
      c.alpha_prev = torch::where(prev >= 0, looked, final_alpha_cumprod_.to(looked.device()));
    }
    const auto beta_t = 1.0 - c.alpha_t;
    const auto beta_prev = 1.0 - c.alpha_prev;
    c.variance = (beta_prev / beta_t) * (1.0 - c.alpha_t / c.alpha_prev);
    return c;
  }

  Core mean_and_std(const torch::Tensor& model_output, const torch::Tensor& timestep, const torch::Tensor& sample,
                    double eta, bool clamp_prev, const char* fn) const {
    auto c = coefficients(timestep, clamp_prev, fn);
    const auto sqrt_a_t = left_broadcast(c.alpha_t.sqrt(), sample, fn);
    const auto sqrt_b_t = left_broadcast((1.0 - c.alpha_t).sqrt(), sample, fn);
    torch::Tensor x0, eps;
    switch (cfg_.prediction_type) {
      case PredictionType::epsilon:
        x0 = (sample - sqrt_b_t * model_output) / sqrt_a_t;
        eps = model_output;
        break;
      case PredictionType::sample:
        x0 = model_output;
        eps = (sample - sqrt_a_t * x0) / sqrt_b_t;
        break;
      case PredictionType::v_prediction:
        x0 = sqrt_a_t * sample - sqrt_b_t * model_output;
        eps = sqrt_a_t * model_output + sqrt_b_t * sample;
        break;
    }
    if (cfg_.clip_sample) x0 = x0.clamp(-cfg_.clip_sample_range, cfg_.clip_sample_range);
    Core out;
    out.std_dev_t = eta * c.variance.sqrt();
    out.std_b = left_broadcast(out.std_dev_t, sample, fn);
    const auto dir_coef = left_broadcast((1.0 - c.alpha_prev - out.std_dev_t.pow(2)).sqrt(), sample, fn);
    const auto sqrt_a_prev = left_broadcast(c.alpha_prev.sqrt(), sample, fn);
    out.mean = sqrt_a_prev * x0 + dir_coef * eps;
    out.pred_original_sample = x0;
    return out;
  }

  static torch::Tensor draw_noise(const torch::Tensor& like, const std::optional<at::Generator>& gen) {
    if (!gen) return torch::randn(like.sizes(), like.options());
    // Draw on the generator's device (diffusers randn_tensor does the same), then move.
    auto z = torch::randn(like.sizes(), *gen, like.options().device(gen->device()));
    return z.to(like.device());
  }

  StepOutput logprob_step(const torch::Tensor& model_output, const torch::Tensor& timestep,
                          const torch::Tensor& sample, double eta, const torch::Tensor& prev_sample,
                          const torch::Tensor& variance_noise, const std::optional<at::Generator>& gen) const {
    if (!(eta > 0.0))
      throw std::invalid_argument(
          "DDIMScheduler::step_with_logprob: eta must be > 0, got " + std::to_string(eta) +
          ": the step's standard deviation is eta * sqrt(variance), so eta <= 0 gives std 0 (or a negative "
          "scale) and the Gaussian log-density of prev_sample is undefined; use step() for deterministic DDIM");
    check_same_shape(sample, model_output, "step_with_logprob", "model_output");
    if (sample.dim() < 1) throw std::invalid_argument("DDIMScheduler::step_with_logprob: sample needs a batch dim");
    auto core = mean_and_std(model_output, timestep, sample, eta, /*clamp_prev=*/true, "step_with_logprob");
    torch::Tensor prev;
    if (prev_sample.defined()) {
      check_same_shape(sample, prev_sample, "step_with_logprob", "prev_sample");
      prev = prev_sample.detach();
    } else {
      auto z = variance_noise.defined() ? variance_noise : draw_noise(sample, gen);
      check_same_shape(sample, z, "step_with_logprob", "variance_noise");
      prev = (core.mean + core.std_b * z).detach();
    }
    // log N(prev; mean, std^2), evaluated per element; log sqrt(2 pi) in float32 as the reference does.
    const double log_sqrt_2pi = std::log(std::sqrt(2.0F * static_cast<float>(std::numbers::pi)));
    auto lp = -(prev - core.mean).pow(2) / (2.0 * core.std_b.pow(2)) - core.std_b.log() - log_sqrt_2pi;
    std::vector<int64_t> dims;
    for (int64_t d = 1; d < lp.dim(); ++d) dims.push_back(d);
    StepOutput out;
    out.log_prob = dims.empty() ? lp : lp.mean(dims);
    out.prev_sample = prev.to(sample.scalar_type());
    out.pred_original_sample = core.pred_original_sample;
    out.mean = core.mean;
    out.std_dev_t = core.std_dev_t;
    return out;
  }

  DDIMSchedulerConfig cfg_;
  torch::Tensor betas_, alphas_cumprod_, final_alpha_cumprod_, timesteps_;
  int64_t num_inference_steps_ = 0;
};

}  // namespace cxrl::diffusion
