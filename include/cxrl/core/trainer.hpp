/**
 * @file trainer.hpp
 * @brief The DDPO trainer: sample → score → advantages → PPO-clip (or REINFORCE) updates over shuffled
 *        batches and per-sample permuted timesteps, with ensmallen-style callbacks.
 *
 * Black et al. 2023 (DDPO) as implemented in ddpo-pytorch `scripts/train.py`; CXRL (arXiv 2403.06516) adds
 * comparative rewards against the anchor (the same policy with adapters off, from the same x_T).
 */
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cxrl/core/concepts.hpp"
#include "cxrl/core/losses.hpp"
#include "cxrl/core/reward_sum.hpp"
#include "cxrl/core/trajectory.hpp"

namespace cxrl::core {

/// @brief Trainer settings; names and defaults follow ddpo-pytorch `config/base.py`.
struct TrainerConfig {
  int64_t num_batches = 2;                  ///< sample.num_batches_per_epoch
  int64_t batch_size = 1;                   ///< sample.batch_size (prompts per sampling call)
  int64_t train_batch_size = 0;             ///< train.batch_size; 0 = batch_size
  int64_t num_inner_epochs = 1;             ///< train.num_inner_epochs
  double timestep_fraction = 1.0;           ///< train.timestep_fraction: train ⌊T·f⌋ random steps per sample
  int64_t gradient_accumulation_steps = 1;  ///< train.gradient_accumulation_steps (minibatches per update)
  double max_grad_norm = 1.0;               ///< train.max_grad_norm
  double learning_rate = 3e-4;              ///< train.learning_rate
  double adam_beta1 = 0.9;                  ///< train.adam_beta1
  double adam_beta2 = 0.999;                ///< train.adam_beta2
  double adam_weight_decay = 1e-4;          ///< train.adam_weight_decay
  double adam_epsilon = 1e-8;               ///< train.adam_epsilon
  double clip_range = 1e-4;                 ///< train.clip_range (PPO ε)
  double adv_clip_max = 5.0;                ///< train.adv_clip_max
  PolicyGradient estimator = PolicyGradient::importance_sampling;  ///< DDPO-IS (default) or DDPO-SF
  uint64_t seed = 42;                       ///< seeds every generator the trainer owns
  // Sampling settings (num_steps, eta, guidance_scale) belong to the Sampler (DdimSamplerConfig).
};

/// @brief Per-component reward summary of one epoch.
struct ComponentStats {
  std::string name;           ///< reward name
  bool comparative = false;   ///< mode
  double weight = 0;          ///< λ
  double raw_mean = 0;        ///< mean raw score (comparative: the difference)
  double weighted_mean = 0;   ///< mean λ·raw
  double score_mean = 0;      ///< mean score of the policy's samples
  double anchor_score_mean = std::nan("");  ///< mean score of the anchor's samples (NaN without anchor)
};

/// @brief What one epoch did; passed to the callbacks.
struct EpochStats {
  int64_t epoch = 0;                 ///< zero-based epoch index
  int64_t num_samples = 0;           ///< trajectories sampled
  double reward_mean = 0;            ///< mean training reward (RewardBreakdown::total)
  double reward_std = 0;             ///< its std (ddof 0)
  double anchor_reward_mean = std::nan("");  ///< mean anchor total (NaN without anchor)
  std::vector<ComponentStats> components;    ///< one per reward term
  double advantage_mean = 0;         ///< mean advantage
  double advantage_std = 0;          ///< std of advantages (ddof 0)
  double loss = 0;                   ///< mean per-timestep loss
  double approx_kl = 0;              ///< mean ½(logp − old)²
  double clipfrac = 0;               ///< mean fraction of clipped ratios
  double grad_norm = 0;              ///< mean pre-clipping gradient norm over optimizer steps
  int64_t optimizer_steps = 0;       ///< optimizer steps taken this epoch
  double sampling_seconds = 0;       ///< sampling (policy + anchor) time
  double reward_seconds = 0;         ///< reward time
  double advantage_seconds = 0;      ///< baseline time
  double training_seconds = 0;       ///< update time
  double images_per_second = 0;      ///< num_samples / (sum of all phases)
};

/// @brief States of the generators the trainer owns (for bit-exact resume).
struct TrainerRngState {
  torch::Tensor prompts;  ///< prompt generator state
  torch::Tensor sample;   ///< x_T and policy step-noise generator state
  torch::Tensor anchor;   ///< anchor step-noise generator state
  torch::Tensor shuffle;  ///< batch / timestep permutation generator state
};

/// @brief Whether T is a RewardSum<...>.
template <class T> inline constexpr bool is_reward_sum_v = false;
/// @cond
template <class... Terms> inline constexpr bool is_reward_sum_v<RewardSum<Terms...>> = true;
/// @endcond

/// @brief Prints one line per epoch (reward, advantage, loss, KL, clipfrac, grad norm, timings).
struct PrintProgress {
  std::ostream* out;  ///< destination stream
  /// @brief Prints. @tparam T trainer type. @param stats the finished epoch.
  template <class T>
  bool on_epoch_end(T&, const EpochStats& stats) {
    std::ostringstream s;
    s << std::setprecision(4) << "epoch " << stats.epoch << " reward " << stats.reward_mean << " ± " << stats.reward_std;
    for (const auto& c : stats.components) s << " " << c.name << "=" << c.raw_mean;
    s << " adv " << stats.advantage_mean << "±" << stats.advantage_std << " loss " << stats.loss << " kl "
      << stats.approx_kl << " clipfrac " << stats.clipfrac << " |g| " << stats.grad_norm << " | sample "
      << stats.sampling_seconds << "s reward " << stats.reward_seconds << "s train " << stats.training_seconds << "s "
      << stats.images_per_second << " img/s\n";
    *out << s.str() << std::flush;
    return false;
  }
};

/**
 * @brief DDPO trainer over swappable parts.
 *
 * One epoch: sample num_batches × batch_size trajectories under no-grad (plus the anchor's samples from
 * the same x_T when a reward term is Comparative or the baseline uses the anchor), score them, turn the
 * rewards into advantages, then num_inner_epochs passes that shuffle the batch, permute the time axis of
 * each sample independently and train the first ⌊T·timestep_fraction⌋ permuted steps, accumulating the
 * per-timestep losses over timesteps × gradient_accumulation_steps minibatches before each clipped AdamW
 * step. All randomness comes from generators owned by the trainer, so a CPU run is deterministic.
 *
 * @tparam P a Policy (held by reference; it must outlive the trainer).
 * @tparam S a Sampler for P.
 * @tparam RS a RewardSum<...>.
 * @tparam B a Baseline.
 */
template <class P, class S, class RS, class B>
class Trainer {
  static_assert(check_policy<P>());
  static_assert(check_sampler<S, P>());
  static_assert(is_reward_sum_v<RS>, "cxrl::core::Trainer: the third parameter must be a RewardSum<Absolute<R>|Comparative<R>...>");
  static_assert(check_baseline<B>());

 public:
  /// @brief Whether an epoch samples the anchor too.
  static constexpr bool needs_anchor = RS::needs_anchor || baseline_uses_anchor_v<B>;
  static_assert(!needs_anchor || sampler_has_anchor_v<S, P>,
                "cxrl::core::Trainer: a Comparative reward term or an anchor baseline needs the sampler's optional "
                "`void sample_anchor(Policy&, Trajectory&, at::Generator&)`; see docs/concepts/sampler.md");

  /// @brief Draws `n` prompts for one sampling call from the trainer's prompt generator.
  using PromptFn = std::function<std::vector<std::string>(int64_t n, at::Generator& gen)>;

  /**
   * @brief A trainer.
   * @param policy the policy to fine-tune (by reference).
   * @param sampler the sampler.
   * @param rewards the reward sum.
   * @param baseline the baseline.
   * @param prompts prompt source.
   * @param cfg settings.
   * @throws std::invalid_argument for inconsistent sizes or a policy without trainable parameters.
   */
  Trainer(P& policy, S sampler, RS rewards, B baseline, PromptFn prompts, TrainerConfig cfg = {})
      : policy_(policy),
        sampler_(std::move(sampler)),
        rewards_(std::move(rewards)),
        baseline_(std::move(baseline)),
        prompt_fn_(std::move(prompts)),
        cfg_(cfg),
        params_(policy.trainable_parameters()),
        prompt_gen_(make_gen(cfg.seed, 0)),
        sample_gen_(make_gen(cfg.seed, 1)),
        anchor_gen_(make_gen(cfg.seed, 2)),
        shuffle_gen_(make_gen(cfg.seed, 3)),
        optimizer_(params_, torch::optim::AdamWOptions(cfg.learning_rate)
                                .betas({cfg.adam_beta1, cfg.adam_beta2})
                                .eps(cfg.adam_epsilon)
                                .weight_decay(cfg.adam_weight_decay)) {
    validate();
  }

  /**
   * @brief Runs one epoch; callbacks' `on_epoch_begin(trainer, stats)` / `on_epoch_end(trainer, stats)`
   *        are called when present, and `on_phase(trainer, phase)` as "sampling", "rewards" and
   *        "training" start (for progress output).
   * @tparam Callbacks callback types (each may define either hook; returning true stops training).
   * @param callbacks the callbacks.
   * @return the epoch's statistics; `stopped()` tells whether a callback asked to stop.
   */
  template <class... Callbacks>
  EpochStats train_epoch(Callbacks&&... callbacks) {
    EpochStats st;
    st.epoch = epoch_;
    stop_ = false;
    if ((call_begin(callbacks, st) | ... | false)) {
      stop_ = true;
      return st;
    }
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };

    // Sampling.
    (call_phase(callbacks, "sampling"), ...);
    auto t0 = clock::now();
    if constexpr (requires { policy_.train(false); }) policy_.train(false);
    std::vector<Trajectory> parts;
    for (int64_t i = 0; i < cfg_.num_batches; ++i) {
      auto prompts = prompt_fn_(cfg_.batch_size, prompt_gen_);
      if (static_cast<int64_t>(prompts.size()) != cfg_.batch_size)
        throw std::invalid_argument("cxrl::core::Trainer: the prompt function returned " + std::to_string(prompts.size()) +
                                    " prompts, expected batch_size = " + std::to_string(cfg_.batch_size));
      Trajectory traj = sampler_.sample(policy_, prompts, sample_gen_);
      if constexpr (needs_anchor) sampler_.sample_anchor(policy_, traj, anchor_gen_);
      parts.push_back(std::move(traj));
    }
    Trajectory all = Trajectory::cat(parts);
    parts.clear();
    auto t1 = clock::now();

    // Rewards.
    (call_phase(callbacks, "rewards"), ...);
    RewardBreakdown rb = rewards_.score(all.images, all.prompts, all.anchor_images);
    auto t2 = clock::now();

    // Advantages.
    torch::Tensor adv;
    if constexpr (baseline_uses_anchor_v<B>)
      adv = baseline_.advantages(rb.total, all.prompts, rb.anchor_total);
    else
      adv = baseline_.advantages(rb.total, all.prompts);
    adv = adv.detach().to(all.latents.device(), torch::kFloat);
    if (adv.dim() != 1 || adv.size(0) != all.batch_size())
      throw std::invalid_argument("cxrl::core::Trainer: the baseline must return advantages [B]");
    auto t3 = clock::now();

    // Training.
    (call_phase(callbacks, "training"), ...);
    train_on(all, adv, st);
    auto t4 = clock::now();

    fill_reward_stats(rb, adv, st);
    st.num_samples = all.batch_size();
    st.sampling_seconds = secs(t0, t1);
    st.reward_seconds = secs(t1, t2);
    st.advantage_seconds = secs(t2, t3);
    st.training_seconds = secs(t3, t4);
    st.images_per_second = static_cast<double>(st.num_samples) / std::max(secs(t0, t4), 1e-12);
    ++epoch_;
    if ((call_end(callbacks, st) | ... | false)) stop_ = true;
    return st;
  }

  /**
   * @brief Runs up to @p num_epochs epochs, stopping early when a callback returns true.
   * @tparam Callbacks callback types.
   * @param num_epochs maximum number of epochs.
   * @param callbacks the callbacks.
   * @return the statistics of the epochs that ran.
   */
  template <class... Callbacks>
  std::vector<EpochStats> train(int64_t num_epochs, Callbacks&&... callbacks) {
    std::vector<EpochStats> out;
    for (int64_t e = 0; e < num_epochs; ++e) {
      auto st = train_epoch(callbacks...);
      if (stop_ && st.num_samples == 0) break;  // stopped in on_epoch_begin
      out.push_back(std::move(st));
      if (stop_) break;
    }
    return out;
  }

  /// @brief Whether the last epoch was stopped by a callback.
  bool stopped() const { return stop_; }
  /// @brief Epochs completed so far (the next epoch's index).
  int64_t epoch() const { return epoch_; }
  /// @brief Sets the epoch counter (resume). @param e next epoch index.
  void set_epoch(int64_t e) { epoch_ = e; }
  /// @brief The settings.
  const TrainerConfig& config() const { return cfg_; }
  /// @brief The policy.
  P& policy() { return policy_; }
  /// @brief The sampler.
  S& sampler() { return sampler_; }
  /// @brief The reward sum (e.g. to change a weight).
  RS& rewards() { return rewards_; }
  /// @brief The baseline (its state, e.g. per-prompt buffers, persists across epochs).
  B& baseline() { return baseline_; }
  /// @brief The AdamW optimizer (its state can be saved and restored for resume).
  torch::optim::AdamW& optimizer() { return optimizer_; }

  /// @brief Copies of the generator states.
  TrainerRngState rng_state() const {
    return {prompt_gen_.get_state(), sample_gen_.get_state(), anchor_gen_.get_state(), shuffle_gen_.get_state()};
  }
  /// @brief Restores generator states saved by rng_state(). @param s the states.
  void set_rng_state(const TrainerRngState& s) {
    prompt_gen_.set_state(s.prompts);
    sample_gen_.set_state(s.sample);
    anchor_gen_.set_state(s.anchor);
    shuffle_gen_.set_state(s.shuffle);
  }

 private:
  static at::Generator make_gen(uint64_t seed, uint64_t stream) {
    // Distinct, reproducible streams per purpose (splitmix-style offset).
    return at::make_generator<at::CPUGeneratorImpl>(seed + stream * 0x9E3779B97F4A7C15ULL);
  }

  void validate() {
    auto bad = [](const std::string& what) { throw std::invalid_argument("cxrl::core::TrainerConfig: " + what); };
    if (cfg_.num_batches < 1) bad("num_batches must be >= 1");
    if (cfg_.batch_size < 1) bad("batch_size must be >= 1");
    if (cfg_.train_batch_size < 0) bad("train_batch_size must be >= 0 (0 = batch_size)");
    if (cfg_.num_inner_epochs < 1) bad("num_inner_epochs must be >= 1");
    if (!(cfg_.timestep_fraction > 0.0 && cfg_.timestep_fraction <= 1.0)) bad("timestep_fraction must be in (0, 1]");
    if (cfg_.gradient_accumulation_steps < 1) bad("gradient_accumulation_steps must be >= 1");
    if (!(cfg_.max_grad_norm > 0.0)) bad("max_grad_norm must be > 0");
    if (!(cfg_.learning_rate >= 0.0)) bad("learning_rate must be >= 0");
    if (!(cfg_.clip_range >= 0.0)) bad("clip_range must be >= 0");
    if (!(cfg_.adv_clip_max > 0.0)) bad("adv_clip_max must be > 0");
    const int64_t n = cfg_.num_batches * cfg_.batch_size;
    const int64_t tb = train_batch_size();
    if (n % tb != 0)
      bad("num_batches * batch_size (" + std::to_string(n) + ") must be divisible by train_batch_size (" + std::to_string(tb) + ")");
    if ((n / tb) % cfg_.gradient_accumulation_steps != 0)
      bad("the number of training minibatches (" + std::to_string(n / tb) +
          ") must be divisible by gradient_accumulation_steps (" + std::to_string(cfg_.gradient_accumulation_steps) +
          ") so that every inner epoch ends with an optimizer step");
    if (params_.empty())
      throw std::invalid_argument("cxrl::core::Trainer: the policy's trainable_parameters() is empty");
    for (const auto& p : params_)
      if (!p.requires_grad())
        throw std::invalid_argument("cxrl::core::Trainer: a tensor in trainable_parameters() does not require grad");
  }

  int64_t train_batch_size() const { return cfg_.train_batch_size > 0 ? cfg_.train_batch_size : cfg_.batch_size; }

  void train_on(const Trajectory& all, const torch::Tensor& adv, EpochStats& st) {
    const int64_t n = all.batch_size();
    const int64_t T = all.num_steps();
    const int64_t t_train = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(T) * cfg_.timestep_fraction)));
    const int64_t tb = train_batch_size();
    const int64_t window = t_train * cfg_.gradient_accumulation_steps;
    if constexpr (requires { policy_.train(true); }) policy_.train(true);
    double loss_sum = 0, kl_sum = 0, clip_sum = 0, gnorm_sum = 0;
    int64_t terms = 0;
    optimizer_.zero_grad();
    for (int64_t inner = 0; inner < cfg_.num_inner_epochs; ++inner) {
      auto perm = torch::randperm(n, shuffle_gen_, torch::kLong);
      Trajectory shuffled = all.select(perm);
      auto adv_s = adv.index_select(0, perm.to(adv.device()));
      std::vector<torch::Tensor> tperms;
      tperms.reserve(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tperms.push_back(torch::randperm(T, shuffle_gen_, torch::kLong));
      auto time_perm = torch::stack(tperms);  // [N, T]
      for (int64_t mb = 0; mb < n / tb; ++mb) {
        auto rows = torch::arange(mb * tb, (mb + 1) * tb, torch::kLong);
        Trajectory sub = shuffled.select(rows);
        auto sub_adv = adv_s.index_select(0, rows.to(adv_s.device()));
        auto sub_perm = time_perm.index_select(0, rows);
        for (int64_t j = 0; j < t_train; ++j) {
          auto steps = sub_perm.select(1, j).contiguous();
          auto logp = sampler_.log_prob(policy_, sub, steps);
          auto old = sub.log_probs.gather(1, steps.to(sub.log_probs.device()).unsqueeze(1)).squeeze(1);
          auto pl = policy_gradient_loss(cfg_.estimator, logp, old.to(logp.dtype()), sub_adv.to(logp.device()),
                                         cfg_.clip_range, cfg_.adv_clip_max);
          (pl.loss / static_cast<double>(window)).backward();
          loss_sum += pl.loss.template item<double>();
          kl_sum += pl.approx_kl.template item<double>();
          clip_sum += pl.clipfrac.template item<double>();
          ++terms;
        }
        if ((mb + 1) % cfg_.gradient_accumulation_steps == 0) {
          gnorm_sum += torch::nn::utils::clip_grad_norm_(params_, cfg_.max_grad_norm);
          optimizer_.step();
          optimizer_.zero_grad();
          ++st.optimizer_steps;
        }
      }
    }
    if constexpr (requires { policy_.train(false); }) policy_.train(false);
    st.loss = loss_sum / static_cast<double>(std::max<int64_t>(terms, 1));
    st.approx_kl = kl_sum / static_cast<double>(std::max<int64_t>(terms, 1));
    st.clipfrac = clip_sum / static_cast<double>(std::max<int64_t>(terms, 1));
    st.grad_norm = gnorm_sum / static_cast<double>(std::max<int64_t>(st.optimizer_steps, 1));
  }

  static void fill_reward_stats(const RewardBreakdown& rb, const torch::Tensor& adv, EpochStats& st) {
    auto d = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
    st.reward_mean = d(rb.total).mean().template item<double>();
    st.reward_std = d(rb.total).std(/*unbiased=*/false).template item<double>();
    if (rb.anchor_total.defined()) st.anchor_reward_mean = d(rb.anchor_total).mean().template item<double>();
    st.advantage_mean = d(adv).mean().template item<double>();
    st.advantage_std = d(adv).std(/*unbiased=*/false).template item<double>();
    for (const auto& c : rb.components) {
      ComponentStats cs;
      cs.name = std::string(c.name);
      cs.comparative = c.comparative;
      cs.weight = c.weight;
      cs.raw_mean = d(c.raw).mean().template item<double>();
      cs.weighted_mean = d(c.weighted).mean().template item<double>();
      cs.score_mean = d(c.score).mean().template item<double>();
      if (c.anchor_score.defined()) cs.anchor_score_mean = d(c.anchor_score).mean().template item<double>();
      st.components.push_back(std::move(cs));
    }
  }

  template <class C>
  void call_phase(C& cb, std::string_view phase) {
    if constexpr (requires { cb.on_phase(*this, phase); }) cb.on_phase(*this, phase);
  }
  template <class C>
  bool call_begin(C& cb, const EpochStats& st) {
    if constexpr (requires { { cb.on_epoch_begin(*this, st) } -> std::convertible_to<bool>; })
      return static_cast<bool>(cb.on_epoch_begin(*this, st));
    else if constexpr (requires { cb.on_epoch_begin(*this, st); }) {
      cb.on_epoch_begin(*this, st);
      return false;
    } else
      return false;
  }
  template <class C>
  bool call_end(C& cb, const EpochStats& st) {
    if constexpr (requires { { cb.on_epoch_end(*this, st) } -> std::convertible_to<bool>; })
      return static_cast<bool>(cb.on_epoch_end(*this, st));
    else if constexpr (requires { cb.on_epoch_end(*this, st); }) {
      cb.on_epoch_end(*this, st);
      return false;
    } else
      return false;
  }

  P& policy_;
  S sampler_;
  RS rewards_;
  B baseline_;
  PromptFn prompt_fn_;
  TrainerConfig cfg_;
  std::vector<torch::Tensor> params_;
  at::Generator prompt_gen_, sample_gen_, anchor_gen_, shuffle_gen_;
  torch::optim::AdamW optimizer_;
  int64_t epoch_ = 0;
  bool stop_ = false;
};

}  // namespace cxrl::core
