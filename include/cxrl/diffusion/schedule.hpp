/// @file
/// @brief Noise (beta) schedules of discrete-time diffusion models and their cumulative alpha products.
///
/// Follows diffusers' `DDIMScheduler.__init__` (v0.17.1): `linear` and `scaled_linear` are float32
/// `torch.linspace` ramps, `squaredcos_cap_v2` is the cosine schedule of Nichol & Dhariwal (2021,
/// "Improved DDPM", eq. 17) computed in double precision with betas capped at 0.999, then cast to float32.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::diffusion {

/// @brief How betas are spaced over the training timesteps (diffusers `beta_schedule`).
enum class BetaSchedule {
  linear,             ///< beta_t = linspace(beta_start, beta_end)
  scaled_linear,      ///< beta_t = linspace(sqrt(beta_start), sqrt(beta_end))^2 (Stable Diffusion)
  squaredcos_cap_v2,  ///< cosine alpha-bar (Nichol & Dhariwal 2021), betas capped at 0.999
};

/// @brief The diffusers spelling of @p s.
/// @param s a beta schedule
inline std::string_view to_string(BetaSchedule s) {
  switch (s) {
    case BetaSchedule::linear: return "linear";
    case BetaSchedule::scaled_linear: return "scaled_linear";
    case BetaSchedule::squaredcos_cap_v2: return "squaredcos_cap_v2";
  }
  return "?";
}

/// @brief Every beta schedule, in declaration order (for error messages and sweeps).
inline constexpr std::array<BetaSchedule, 3> kBetaSchedules{BetaSchedule::linear, BetaSchedule::scaled_linear,
                                                             BetaSchedule::squaredcos_cap_v2};

/// @brief Parses a diffusers `beta_schedule` name; std::nullopt when unknown.
/// @param name e.g. "scaled_linear"
inline std::optional<BetaSchedule> parse_beta_schedule(std::string_view name) {
  for (auto s : kBetaSchedules)
    if (to_string(s) == name) return s;
  return std::nullopt;
}

/// @brief Cosine-schedule betas: beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta) with
///        abar(t) = cos((t + 0.008) / 1.008 * pi/2)^2 (Nichol & Dhariwal 2021, eq. 17; diffusers
///        `betas_for_alpha_bar`). Evaluated in double (as Python floats), returned as float32 [T] on CPU.
/// @param num_train_timesteps T
/// @param max_beta cap that keeps beta < 1 near t = T (0.999 in diffusers)
inline torch::Tensor betas_for_alpha_bar(int64_t num_train_timesteps, double max_beta = 0.999) {
  if (num_train_timesteps < 1)
    throw std::invalid_argument("betas_for_alpha_bar: num_train_timesteps must be >= 1, got " +
                                std::to_string(num_train_timesteps));
  auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2.0);
    return c * c;
  };
  auto betas = torch::empty({num_train_timesteps}, torch::kFloat32);
  auto acc = betas.accessor<float, 1>();
  const double n = static_cast<double>(num_train_timesteps);
  for (int64_t i = 0; i < num_train_timesteps; ++i) {
    // Float division of the step index (an integer division here would collapse t1, t2 to 0).
    const double t1 = static_cast<double>(i) / n;
    const double t2 = static_cast<double>(i + 1) / n;
    acc[i] = static_cast<float>(std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta));
  }
  return betas;
}

/// @brief Betas of @p schedule as float32 [T] on CPU, exactly as diffusers builds them.
/// @param schedule which ramp
/// @param num_train_timesteps T
/// @param beta_start first beta (ignored by squaredcos_cap_v2)
/// @param beta_end last beta (ignored by squaredcos_cap_v2)
inline torch::Tensor make_betas(BetaSchedule schedule, int64_t num_train_timesteps, double beta_start,
                                double beta_end) {
  if (num_train_timesteps < 1)
    throw std::invalid_argument("make_betas: num_train_timesteps must be >= 1, got " +
                                std::to_string(num_train_timesteps));
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  switch (schedule) {
    case BetaSchedule::linear:
      return torch::linspace(beta_start, beta_end, num_train_timesteps, f32);
    case BetaSchedule::scaled_linear:
      // Stable Diffusion's schedule: linear in sqrt(beta), ramp built in float32 like torch.linspace.
      return torch::linspace(std::sqrt(beta_start), std::sqrt(beta_end), num_train_timesteps, f32).pow(2);
    case BetaSchedule::squaredcos_cap_v2:
      return betas_for_alpha_bar(num_train_timesteps);
  }
  throw std::invalid_argument("make_betas: unknown beta schedule");
}

/// @brief alpha-bar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4), in the dtype of @p betas.
/// @param betas [T]
inline torch::Tensor alphas_cumprod_from_betas(const torch::Tensor& betas) {
  return torch::cumprod(1.0 - betas, 0);
}

}  // namespace cxrl::diffusion
