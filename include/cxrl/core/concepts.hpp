/**
 * @file concepts.hpp
 * @brief The public contract of cxrl's RL core: the Policy, Sampler, Reward and Baseline concepts.
 *
 * Each concept has a checker (`check_policy<P>()`, …) with one `static_assert` per member, so a type
 * that misses a member gets an error naming that member and the page that documents it
 * (docs/concepts/policy.md, sampler.md, reward.md, baseline.md), in the style of ensmallen's function-type checks.
 * The library's own templates (Trainer, RewardSum terms) call the checkers instead of constraining
 * their parameters, so the readable message is what the user sees first.
 */
#pragma once

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cxrl/core/trajectory.hpp"

namespace cxrl::core {

/**
 * @brief A policy: a conditional denoiser with trainable adapters. See docs/concepts/policy.md.
 *
 * The condition is the encoder hidden states [B, L, D]; `encode({""})` is the unconditional prompt used
 * for classifier-free guidance. `set_adapters_enabled(false)` turns the policy into the frozen anchor
 * (same base weights, adapters off), so the anchor needs no second copy of the model.
 * @tparam P the policy type.
 */
template <class P>
concept Policy = requires(P& p, const std::vector<std::string>& prompts, const torch::Tensor& x,
                          const torch::Tensor& t, const torch::Tensor& c, bool on) {
  { p.encode(prompts) } -> std::same_as<torch::Tensor>;
  { p.predict(x, t, c) } -> std::same_as<torch::Tensor>;
  { p.sample_shape() } -> std::convertible_to<std::vector<int64_t>>;
  { p.decode(x) } -> std::same_as<torch::Tensor>;
  { p.trainable_parameters() } -> std::same_as<std::vector<torch::Tensor>>;
  { p.set_adapters_enabled(on) };
};

/**
 * @brief A reward: the absolute score of a batch of images. See docs/concepts/reward.md.
 *
 * `RewardSum` turns it comparative (score(x) − score(x̂_anchor)) when the term asks for it.
 * @tparam R the reward type; it needs `static constexpr std::string_view name`.
 */
template <class R>
concept Reward = requires(R& r, const torch::Tensor& images, const std::vector<std::string>& prompts) {
  { R::name } -> std::convertible_to<std::string_view>;
  { r.score(images, prompts) } -> std::same_as<torch::Tensor>;
};

/**
 * @brief A sampler: draws trajectories from a policy and re-evaluates their log-probabilities.
 *
 * See docs/concepts/sampler.md. `steps` is an int64 tensor [B] of step indices into the trajectory
 * (one per sample, so the trainer can permute the time axis per sample as DDPO does); `log_prob`
 * returns log p_θ(x_{t-1} | x_t, c) [B] with gradient, teacher-forced on the recorded x_{t-1}.
 * Optional hook: `s.sample_anchor(policy, traj, gen)` fills `traj.anchor_*` from the same x_T with the
 * adapters disabled; it is required only when a reward term or the baseline is comparative.
 * @tparam S the sampler type.
 * @tparam P the policy type it samples from.
 */
template <class S, class P>
concept Sampler = Policy<P> && requires(S& s, P& p, const std::vector<std::string>& prompts, at::Generator& gen,
                                        const Trajectory& traj, const torch::Tensor& steps) {
  { s.sample(p, prompts, gen) } -> std::same_as<Trajectory>;
  { s.log_prob(p, traj, steps) } -> std::same_as<torch::Tensor>;
};

/// @brief Whether sampler S offers the optional `sample_anchor(policy, traj, gen)` hook.
template <class S, class P>
inline constexpr bool sampler_has_anchor_v = requires(S& s, P& p, Trajectory& traj, at::Generator& gen) {
  s.sample_anchor(p, traj, gen);
};

/// @brief Whether baseline B takes the anchor's rewards: `b.advantages(rewards, prompts, anchor_rewards)`.
template <class B>
inline constexpr bool baseline_uses_anchor_v =
    requires(B& b, const torch::Tensor& r, const std::vector<std::string>& prompts) {
      { b.advantages(r, prompts, r) } -> std::same_as<torch::Tensor>;
    };

/**
 * @brief A baseline: turns rewards [B] into advantages [B]. See docs/concepts/baseline.md.
 *
 * Either `b.advantages(rewards, prompts)` or, for baselines built on the anchor's samples,
 * `b.advantages(rewards, prompts, anchor_rewards)`; the trainer detects the second form and then
 * samples the anchor. Baselines may keep state across calls (per-prompt statistics).
 * @tparam B the baseline type.
 */
template <class B>
concept Baseline = baseline_uses_anchor_v<B> ||
                   requires(B& b, const torch::Tensor& r, const std::vector<std::string>& prompts) {
                     { b.advantages(r, prompts) } -> std::same_as<torch::Tensor>;
                   };

/**
 * @brief Checks P against Policy member by member; each missing member gets its own message.
 * @tparam P the candidate policy type.
 * @return true (usable as `static_assert(check_policy<P>())`).
 */
template <class P>
consteval bool check_policy() {
  static_assert(requires(P& p, const std::vector<std::string>& s) {
    { p.encode(s) } -> std::same_as<torch::Tensor>;
  }, "cxrl Policy: missing `torch::Tensor encode(const std::vector<std::string>& prompts)` returning [B, L, D]; see docs/concepts/policy.md");
  static_assert(requires(P& p, const torch::Tensor& x) {
    { p.predict(x, x, x) } -> std::same_as<torch::Tensor>;
  }, "cxrl Policy: missing `torch::Tensor predict(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& cond)`; see docs/concepts/policy.md");
  static_assert(requires(P& p) {
    { p.sample_shape() } -> std::convertible_to<std::vector<int64_t>>;
  }, "cxrl Policy: missing `std::vector<int64_t> sample_shape()` ({C, H, W} of x_T); see docs/concepts/policy.md");
  static_assert(requires(P& p, const torch::Tensor& x) {
    { p.decode(x) } -> std::same_as<torch::Tensor>;
  }, "cxrl Policy: missing `torch::Tensor decode(const torch::Tensor& x0)` (images in [0,1]); see docs/concepts/policy.md");
  static_assert(requires(P& p) {
    { p.trainable_parameters() } -> std::same_as<std::vector<torch::Tensor>>;
  }, "cxrl Policy: missing `std::vector<torch::Tensor> trainable_parameters()`; see docs/concepts/policy.md");
  static_assert(requires(P& p, bool on) { p.set_adapters_enabled(on); },
                "cxrl Policy: missing `void set_adapters_enabled(bool on)` (false = frozen anchor); see docs/concepts/policy.md");
  return true;
}

/**
 * @brief Checks R against Reward member by member.
 * @tparam R the candidate reward type.
 * @return true (usable as `static_assert(check_reward<R>())`).
 */
template <class R>
consteval bool check_reward() {
  static_assert(requires { { R::name } -> std::convertible_to<std::string_view>; },
                "cxrl Reward: missing `static constexpr std::string_view name = \"...\";`; see docs/concepts/reward.md");
  static_assert(requires(R& r, const torch::Tensor& images, const std::vector<std::string>& prompts) {
    { r.score(images, prompts) } -> std::same_as<torch::Tensor>;
  }, "cxrl Reward: missing `torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts)` returning float [B]; see docs/concepts/reward.md");
  return true;
}

/**
 * @brief Checks S against Sampler (for policy P) member by member.
 * @tparam S the candidate sampler type.
 * @tparam P the policy type.
 * @return true (usable as `static_assert(check_sampler<S, P>())`).
 */
template <class S, class P>
consteval bool check_sampler() {
  static_assert(requires(S& s, P& p, const std::vector<std::string>& prompts, at::Generator& gen) {
    { s.sample(p, prompts, gen) } -> std::same_as<Trajectory>;
  }, "cxrl Sampler: missing `Trajectory sample(Policy& policy, const std::vector<std::string>& prompts, at::Generator& gen)`; see docs/concepts/sampler.md");
  static_assert(requires(S& s, P& p, const Trajectory& traj, const torch::Tensor& steps) {
    { s.log_prob(p, traj, steps) } -> std::same_as<torch::Tensor>;
  }, "cxrl Sampler: missing `torch::Tensor log_prob(Policy& policy, const Trajectory& traj, const torch::Tensor& steps)` returning [B] with grad; see docs/concepts/sampler.md");
  return true;
}

/**
 * @brief Checks B against Baseline.
 * @tparam B the candidate baseline type.
 * @return true (usable as `static_assert(check_baseline<B>())`).
 */
template <class B>
consteval bool check_baseline() {
  static_assert(Baseline<B>,
                "cxrl Baseline: missing `torch::Tensor advantages(const torch::Tensor& rewards, const std::vector<std::string>& prompts)` "
                "(or the anchor form with a third `const torch::Tensor& anchor_rewards`); see docs/concepts/baseline.md");
  return true;
}

}  // namespace cxrl::core
