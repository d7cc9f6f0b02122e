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
#include "cxrl/core/distributed.hpp"
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
  /// Each process samples its batch in this many shards, each from its own generator streams (global stream
  /// rank · sample_shards + shard). A run on N ranks with batch_size B/N therefore draws exactly what one process
  /// with batch_size B and sample_shards N draws, which makes the two comparable (core/distributed.hpp).
  int64_t sample_shards = 1;
  /// Anchor samples per prompt when the anchor is sampled; comparative terms subtract the mean of their K
  /// scores (1 = CXRL's RLCF). Needs a sampler with `sample_anchor(policy, traj, gen, K)`.
  int64_t anchor_samples = 1;
  /// β of a penalty β·KL(p_θ ‖ p_anchor) on each trained transition, added to the policy-gradient loss (DPOK,
  /// Fan et al. 2023, Eq. 8; KL per latent element, see DdimSampler::log_prob_and_anchor_kl). 0 = DDPO and CXRL,
  /// which keep the policy near the anchor only through the small PPO clip range. Needs a sampler with
  /// `log_prob_and_anchor_kl(policy, traj, steps)`; costs one anchor forward pass per trained transition.
  double kl_weight = 0.0;
  /// Updates skipped for a non-finite reward, advantage, loss or gradient before the run stops with an error
  /// (they never reach the weights).
  int64_t max_skipped_updates = 3;
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
  double score_se = 0;        ///< its standard error (sample std / √n)
  double anchor_score_mean = std::nan("");  ///< mean score of the anchor's samples (NaN without anchor)
  double anchor_score_se = std::nan("");    ///< its standard error
  /// corr(score(x), score(x̂)) over the batch (NaN without anchor): the variance reduction a comparative term
  /// buys, var(s − ŝ) = var(s) + var(ŝ) − 2ρ·sd(s)·sd(ŝ).
  double anchor_corr = std::nan("");
  double nonfinite = 0;       ///< samples whose raw score was NaN or infinite
};

/// @brief The part of an epoch a Trainer is entering, as passed to a callback's `on_phase(trainer, phase)`.
enum class Phase {
  sampling,  ///< policy (and anchor) trajectories are being drawn
  rewards,   ///< the reward models score the images
  training   ///< PPO / REINFORCE updates over the trajectories
};

/// @brief "sampling", "rewards" or "training", for progress lines and logs.
/// @param p the phase
constexpr std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::sampling: return "sampling";
    case Phase::rewards: return "rewards";
    default: return "training";
  }
}

/// @brief What one epoch did; passed to the callbacks.
struct EpochStats {
  int64_t epoch = 0;                 ///< zero-based epoch index
  int64_t num_samples = 0;           ///< trajectories sampled
  int64_t num_samples_scored = 0;    ///< trajectories scored (= num_samples)
  double reward_mean = 0;            ///< mean training reward (RewardBreakdown::total)
  double reward_std = 0;             ///< its std (ddof 0)
  double anchor_reward_mean = std::nan("");  ///< mean anchor total (NaN without anchor)
  std::vector<ComponentStats> components;    ///< one per reward term
  double advantage_mean = 0;         ///< mean advantage
  double advantage_std = 0;          ///< std of advantages (ddof 0)
  double loss = 0;                   ///< mean per-timestep loss
  double approx_kl = 0;              ///< mean ½(logp − old)²
  double anchor_kl = std::nan("");   ///< mean KL(p_θ ‖ p_anchor) per latent element and trained step (NaN when kl_weight = 0)
  double clipfrac = 0;               ///< mean fraction of clipped ratios
  /// max |log p_θ − log p_old| over the rows trained before the epoch's first optimizer step, where the policy is
  /// the one that sampled them and the ratio is 1 in exact arithmetic. Anything above 0 is the training pass
  /// computing the sampler's log-probabilities differently (another kernel, batch or precision), and with
  /// DDPO's clip range of 1e-4 a difference of that size already clips (Flow-GRPO and DanceGRPO's ratio bugs).
  double first_log_ratio_max = 0;
  double grad_norm = 0;              ///< mean pre-clipping gradient norm over optimizer steps
  int64_t optimizer_steps = 0;       ///< optimizer steps taken this epoch
  double sampling_seconds = 0;       ///< sampling (policy + anchor) time
  double reward_seconds = 0;         ///< reward time
  double advantage_seconds = 0;      ///< baseline time
  double training_seconds = 0;       ///< update time
  double images_per_second = 0;      ///< num_samples / (sum of all phases)
  int64_t skipped_updates = 0;       ///< updates skipped this epoch for non-finite values
  std::string skip_reason;           ///< why the last one was skipped ("" when none was)
};

/// @brief States of one sampling shard's generators.
struct ShardRngState {
  torch::Tensor prompts;  ///< prompt generator state
  torch::Tensor sample;   ///< x_T and policy step-noise generator state
  torch::Tensor anchor;   ///< anchor step-noise generator state
};

/// @brief States of the generators the trainer owns on this rank (for bit-exact resume).
struct TrainerRngState {
  torch::Tensor prompts;  ///< prompt generator state of this rank's first shard
  torch::Tensor sample;   ///< x_T and policy step-noise generator state of this rank's first shard
  torch::Tensor anchor;   ///< anchor step-noise generator state of this rank's first shard
  torch::Tensor shuffle;  ///< batch / timestep permutation generator state (the same on every rank)
  std::vector<ShardRngState> more_shards;  ///< this rank's other shards, in order
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
  /// @brief Whether an epoch can sample the anchor too (at run time only when a comparative term is on).
  static constexpr bool needs_anchor = RS::needs_anchor || baseline_uses_anchor_v<B>;
  static_assert(!needs_anchor || sampler_has_anchor_v<S, P>,
                "cxrl::core::Trainer: a Comparative reward term or an anchor baseline needs the sampler's optional "
                "`void sample_anchor(Policy&, Trajectory&, at::Generator&)`; see docs/concepts/sampler.md");
  /// @brief Whether the sampler can give the KL to the anchor that TrainerConfig::kl_weight penalises.
  static constexpr bool sampler_has_anchor_kl =
      requires(S& s, P& p, const Trajectory& t, const torch::Tensor& steps) { s.log_prob_and_anchor_kl(p, t, steps); };

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
   * @param dist the process group of a data-parallel run (core/distributed.hpp), or null for one process; it must
   *        outlive the trainer.
   * @throws std::invalid_argument for inconsistent sizes or a policy without trainable parameters.
   */
  Trainer(P& policy, S sampler, RS rewards, B baseline, PromptFn prompts, TrainerConfig cfg = {}, Distributed* dist = nullptr)
      : policy_(policy),
        sampler_(std::move(sampler)),
        rewards_(std::move(rewards)),
        baseline_(std::move(baseline)),
        prompt_fn_(std::move(prompts)),
        cfg_(cfg),
        dist_(dist),
        params_(policy.trainable_parameters()),
        shuffle_gen_(make_gen(cfg.seed, 3)),
        optimizer_(params_, torch::optim::AdamWOptions(cfg.learning_rate)
                                .betas({cfg.adam_beta1, cfg.adam_beta2})
                                .eps(cfg.adam_epsilon)
                                .weight_decay(cfg.adam_weight_decay)) {
    validate();
    for (int64_t k = 0; k < cfg_.sample_shards; ++k) {
      const auto g = static_cast<uint64_t>(rank() * cfg_.sample_shards + k);  // global stream; 0 keeps the streams of old runs
      shards_.push_back({make_gen(cfg.seed, g == 0 ? 0 : 4 * g), make_gen(cfg.seed, g == 0 ? 1 : 4 * g + 1),
                         make_gen(cfg.seed, g == 0 ? 2 : 4 * g + 2)});
    }
  }

  /**
   * @brief Runs one epoch; callbacks' `on_epoch_begin(trainer, stats)` / `on_epoch_end(trainer, stats)`
   *        are called when present, and `on_phase(trainer, phase)` as each core::Phase starts
   *        (for progress output).
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
    (call_phase(callbacks, Phase::sampling), ...);
    auto t0 = clock::now();
    if constexpr (requires { policy_.train(false); }) policy_.train(false);
    // Shard-major order (shard k's batches, then shard k + 1's): the order of the global batch across ranks.
    std::vector<Trajectory> parts;
    const int64_t per_shard = cfg_.batch_size / cfg_.sample_shards;
    for (auto& sh : shards_)
      for (int64_t i = 0; i < cfg_.num_batches; ++i) {
        auto prompts = prompt_fn_(per_shard, sh.prompts);
        if (static_cast<int64_t>(prompts.size()) != per_shard)
          throw std::invalid_argument("cxrl::core::Trainer: the prompt function returned " + std::to_string(prompts.size()) +
                                      " prompts, expected " + std::to_string(per_shard));
        Trajectory traj = sampler_.sample(policy_, prompts, sh.sample);
        if constexpr (needs_anchor) {
          if (baseline_uses_anchor_v<B> || rewards_.needs_anchor_now()) {
            if (cfg_.anchor_samples == 1) sampler_.sample_anchor(policy_, traj, sh.anchor);
            else if constexpr (requires { sampler_.sample_anchor(policy_, traj, sh.anchor, cfg_.anchor_samples); })
              sampler_.sample_anchor(policy_, traj, sh.anchor, cfg_.anchor_samples);
          }
        }
        parts.push_back(std::move(traj));
      }
    Trajectory all = Trajectory::cat(parts);
    parts.clear();
    auto t1 = clock::now();

    // Rewards: each rank scores its own samples; baselines and statistics see the global batch.
    (call_phase(callbacks, Phase::rewards), ...);
    RewardBreakdown rb = gather(rewards_.score(all.images, all.prompts, all.anchor_images));
    const auto global_prompts = dist_ ? dist_->all_gather_strings(all.prompts) : all.prompts;
    st.num_samples_scored = rb.total.size(0);
    auto t2 = clock::now();

    // Advantages. A non-finite reward skips the update: it would turn every advantage of the batch into NaN.
    fill_reward_stats(rb, st);
    torch::Tensor adv;
    const std::string bad_reward = nonfinite_terms(st);
    if (bad_reward.empty()) {
      if constexpr (baseline_uses_anchor_v<B>)
        adv = baseline_.advantages(rb.total, global_prompts, rb.anchor_total);
      else
        adv = baseline_.advantages(rb.total, global_prompts);
      adv = adv.detach().to(all.latents.device(), torch::kFloat);
      if (adv.dim() != 1 || adv.size(0) != rb.total.size(0))
        throw std::invalid_argument("cxrl::core::Trainer: the baseline must return advantages [B]");
    }
    auto t3 = clock::now();

    // Training.
    (call_phase(callbacks, Phase::training), ...);
    if (!bad_reward.empty()) skip(st, bad_reward);
    else if (!torch::isfinite(adv).all().template item<bool>()) skip(st, "the baseline returned non-finite advantages");
    else train_on(all, adv, st);
    auto t4 = clock::now();

    if (adv.defined()) {
      auto a = adv.to(torch::kDouble);
      st.advantage_mean = a.mean().template item<double>();
      st.advantage_std = a.std(/*unbiased=*/false).template item<double>();
    }
    st.num_samples = rb.total.size(0);
    st.sampling_seconds = secs(t0, t1);
    st.reward_seconds = secs(t1, t2);
    st.advantage_seconds = secs(t2, t3);
    st.training_seconds = secs(t3, t4);
    st.images_per_second = static_cast<double>(st.num_samples) / std::max(secs(t0, t4), 1e-12);
    ++epoch_;
    bool stop = (call_end(callbacks, st) | ... | false);
    if (dist_ && dist_->world_size() > 1) {  // every rank stops after the same epoch when any asks to
      std::vector<torch::Tensor> flag{torch::tensor({stop ? 1.0f : 0.0f})};
      dist_->all_reduce_sum(flag);
      stop = flag[0].item<float>() > 0;
    }
    if (stop) stop_ = true;
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

  /// @brief Updates skipped for non-finite values since the start (checkpointed with trainer_state()).
  int64_t skipped_updates() const { return skipped_total_; }
  /// @brief Sets the count of skipped updates (resume). @param n the count
  void set_skipped_updates(int64_t n) { skipped_total_ = n; }

  /// @brief Copies of this rank's generator states.
  TrainerRngState rng_state() const {
    TrainerRngState r{shards_[0].prompts.get_state(), shards_[0].sample.get_state(), shards_[0].anchor.get_state(),
                      shuffle_gen_.get_state(), {}};
    for (std::size_t k = 1; k < shards_.size(); ++k)
      r.more_shards.push_back({shards_[k].prompts.get_state(), shards_[k].sample.get_state(), shards_[k].anchor.get_state()});
    return r;
  }
  /// @brief Restores generator states saved by rng_state(). @param s the states.
  void set_rng_state(const TrainerRngState& s) {
    if (s.more_shards.size() + 1 != shards_.size())
      throw std::invalid_argument("cxrl::core::Trainer::set_rng_state: the state has " + std::to_string(s.more_shards.size() + 1) +
                                  " sampling shards, the trainer " + std::to_string(shards_.size()));
    shards_[0].prompts.set_state(s.prompts);
    shards_[0].sample.set_state(s.sample);
    shards_[0].anchor.set_state(s.anchor);
    for (std::size_t k = 1; k < shards_.size(); ++k) {
      shards_[k].prompts.set_state(s.more_shards[k - 1].prompts);
      shards_[k].sample.set_state(s.more_shards[k - 1].sample);
      shards_[k].anchor.set_state(s.more_shards[k - 1].anchor);
    }
    shuffle_gen_.set_state(s.shuffle);
  }
  /// @brief This process's rank (0 without a process group).
  int rank() const { return dist_ ? dist_->rank() : 0; }
  /// @brief Processes in the run (1 without a process group).
  int world_size() const { return dist_ ? dist_->world_size() : 1; }
  /// @brief The process group, or nullptr for one process.
  Distributed* distributed() const { return dist_; }

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
    if (cfg_.anchor_samples < 1) bad("anchor_samples must be >= 1");
    if (!(cfg_.kl_weight >= 0.0)) bad("kl_weight must be >= 0");
    if (cfg_.kl_weight > 0 && !sampler_has_anchor_kl)
      bad("kl_weight > 0 needs a sampler with log_prob_and_anchor_kl(policy, traj, steps)");
    if (cfg_.sample_shards < 1 || cfg_.batch_size % cfg_.sample_shards != 0)
      bad("sample_shards must be >= 1 and divide batch_size (" + std::to_string(cfg_.batch_size) + ")");
    if (cfg_.max_skipped_updates < 0) bad("max_skipped_updates must be >= 0");
    if constexpr (!requires(S& s, P& p, Trajectory& t, at::Generator& g) { s.sample_anchor(p, t, g, int64_t{2}); })
      if (cfg_.anchor_samples > 1) bad("anchor_samples > 1 needs a sampler with sample_anchor(policy, traj, gen, K)");
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

  /// Trains on this rank's trajectories @p all against the global advantages @p adv. Every rank draws the same
  /// permutation of the global batch and the same timestep permutations, and backpropagates the rows of each global
  /// minibatch it holds, weighted by their share of the minibatch; summing the gradients over ranks then gives
  /// exactly the single-process gradient of that minibatch (up to the order of floating-point sums).
  void train_on(const Trajectory& all, const torch::Tensor& adv, EpochStats& st) {
    const int64_t n_local = all.batch_size();
    const int64_t n = adv.size(0);
    const int64_t lo = static_cast<int64_t>(rank()) * n_local;
    const int64_t T = all.num_steps();
    const int64_t t_train = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(T) * cfg_.timestep_fraction)));
    const int64_t tb = train_batch_size() * world_size();  // a global minibatch
    const int64_t window = t_train * cfg_.gradient_accumulation_steps;
    if constexpr (requires { policy_.train(true); }) policy_.train(true);
    double loss_sum = 0, kl_sum = 0, clip_sum = 0, gnorm_sum = 0, rows = 0, anchor_kl_sum = 0, first_log_ratio = 0;
    bool window_finite = true;
    optimizer_.zero_grad();
    for (int64_t inner = 0; inner < cfg_.num_inner_epochs; ++inner) {
      auto perm = torch::randperm(n, shuffle_gen_, torch::kLong);
      std::vector<torch::Tensor> tperms;
      tperms.reserve(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tperms.push_back(torch::randperm(T, shuffle_gen_, torch::kLong));
      auto time_perm = torch::stack(tperms);  // [N, T], rows in the shuffled order below
      const auto* pp = perm.data_ptr<int64_t>();
      for (int64_t mb = 0; mb < n / tb; ++mb) {
        std::vector<int64_t> mine, pos;  // local rows of this minibatch, and their positions in the shuffled order
        for (int64_t i = mb * tb; i < (mb + 1) * tb; ++i)
          if (pp[i] >= lo && pp[i] < lo + n_local) {
            mine.push_back(pp[i] - lo);
            pos.push_back(i);
          }
        if (!mine.empty()) {
          const auto rows_t = torch::tensor(mine, torch::kLong), pos_t = torch::tensor(pos, torch::kLong);
          Trajectory sub = all.select(rows_t);
          auto sub_adv = adv.index_select(0, (rows_t + lo).to(adv.device()));
          auto sub_perm = time_perm.index_select(0, pos_t);
          const double share = static_cast<double>(mine.size()) / static_cast<double>(tb);
          for (int64_t j = 0; j < t_train; ++j) {
            auto steps = sub_perm.select(1, j).contiguous();
            torch::Tensor logp, anchor_kl;
            if constexpr (sampler_has_anchor_kl) {
              if (cfg_.kl_weight > 0) {
                auto r = sampler_.log_prob_and_anchor_kl(policy_, sub, steps);
                logp = r.log_prob;
                anchor_kl = r.anchor_kl.mean();
              }
            }
            if (!logp.defined()) logp = sampler_.log_prob(policy_, sub, steps);
            auto old = sub.log_probs.gather(1, steps.to(sub.log_probs.device()).unsqueeze(1)).squeeze(1);
            if (inner == 0 && st.optimizer_steps == 0 && mb < cfg_.gradient_accumulation_steps)
              first_log_ratio = std::max(first_log_ratio,
                                         (logp.detach() - old.to(logp.dtype())).abs().max().template item<double>());
            auto pl = policy_gradient_loss(cfg_.estimator, logp, old.to(logp.dtype()), sub_adv.to(logp.device()), cfg_.clip_range,
                                           cfg_.adv_clip_max);
            if (anchor_kl.defined()) pl.loss = pl.loss + cfg_.kl_weight * anchor_kl;
            const double l = pl.loss.template item<double>();
            if (!std::isfinite(l)) {
              window_finite = false;
              continue;
            }
            (pl.loss * (share / static_cast<double>(window))).backward();
            const auto c = static_cast<double>(mine.size());
            loss_sum += l * c;
            kl_sum += pl.approx_kl.template item<double>() * c;
            clip_sum += pl.clipfrac.template item<double>() * c;
            if (anchor_kl.defined()) anchor_kl_sum += anchor_kl.template item<double>() * c;
            rows += c;
          }
        }
        if ((mb + 1) % cfg_.gradient_accumulation_steps == 0) {
          if (world_size() > 1) reduce_gradients(window_finite);
          const double gn = window_finite ? torch::nn::utils::clip_grad_norm_(params_, cfg_.max_grad_norm) : std::nan("");
          if (std::isfinite(gn)) {
            gnorm_sum += gn;
            optimizer_.step();
            ++st.optimizer_steps;
          } else {
            skip(st, window_finite ? "the gradient norm is not finite" : "the policy-gradient loss is not finite");
          }
          optimizer_.zero_grad();
          window_finite = true;
        }
      }
    }
    if constexpr (requires { policy_.train(false); }) policy_.train(false);
    if (world_size() > 1) {
      std::vector<torch::Tensor> sums{torch::tensor({loss_sum, kl_sum, clip_sum, rows, anchor_kl_sum}, torch::kDouble)};
      dist_->all_reduce_sum(sums);
      loss_sum = sums[0][0].template item<double>(), kl_sum = sums[0][1].template item<double>();
      clip_sum = sums[0][2].template item<double>(), rows = sums[0][3].template item<double>();
      anchor_kl_sum = sums[0][4].template item<double>();
    }
    st.loss = loss_sum / std::max(rows, 1.0);
    st.approx_kl = kl_sum / std::max(rows, 1.0);
    st.clipfrac = clip_sum / std::max(rows, 1.0);
    if (cfg_.kl_weight > 0) st.anchor_kl = anchor_kl_sum / std::max(rows, 1.0);
    st.first_log_ratio_max = world_size() > 1
                                 ? dist_->all_gather_cat(torch::tensor({first_log_ratio}, torch::kDouble)).max().template item<double>()
                                 : first_log_ratio;
    st.grad_norm = gnorm_sum / static_cast<double>(std::max<int64_t>(st.optimizer_steps, 1));
  }

  /// Sums the gradients over ranks (and whether every rank's losses were finite).
  void reduce_gradients(bool& window_finite) {
    std::vector<torch::Tensor> g;
    for (auto& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      g.push_back(p.grad());
    }
    g.push_back(torch::tensor({window_finite ? 0.0f : 1.0f}, params_.front().options().dtype(torch::kFloat)));
    dist_->all_reduce_sum(g);
    window_finite = g.back().template item<float>() == 0.0f;
  }

  /// The breakdown of the whole batch: every rank's rows in rank order (a no-op for one process).
  RewardBreakdown gather(RewardBreakdown rb) {
    if (world_size() == 1) return rb;
    auto cat = [&](const torch::Tensor& t) { return t.defined() ? dist_->all_gather_cat(t) : torch::Tensor(); };
    rb.total = cat(rb.total);
    rb.anchor_total = cat(rb.anchor_total);
    for (auto& c : rb.components) {
      c.raw = cat(c.raw);
      c.weighted = cat(c.weighted);
      c.score = cat(c.score);
      c.anchor_score = cat(c.anchor_score);
    }
    return rb;
  }

  static void fill_reward_stats(const RewardBreakdown& rb, EpochStats& st) {
    auto d = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
    auto finite_mean = [&](const torch::Tensor& t) {
      auto x = d(t);
      auto ok = torch::isfinite(x);
      return ok.any().template item<bool>() ? x.masked_select(ok).mean().template item<double>() : std::nan("");
    };
    auto finite_se = [&](const torch::Tensor& t) {
      auto x = d(t).masked_select(torch::isfinite(d(t)));
      return x.numel() > 1 ? x.std(/*unbiased=*/true).template item<double>() / std::sqrt(static_cast<double>(x.numel())) : std::nan("");
    };
    st.reward_mean = finite_mean(rb.total);
    st.reward_std = d(rb.total).std(/*unbiased=*/false).template item<double>();
    if (rb.anchor_total.defined()) st.anchor_reward_mean = finite_mean(rb.anchor_total);
    for (const auto& c : rb.components) {
      ComponentStats cs;
      cs.name = std::string(c.name);
      cs.comparative = c.comparative;
      cs.weight = c.weight;
      cs.raw_mean = finite_mean(c.raw);
      cs.weighted_mean = finite_mean(c.weighted);
      cs.score_mean = finite_mean(c.score);
      cs.score_se = finite_se(c.score);
      cs.nonfinite = static_cast<double>((~torch::isfinite(c.raw)).sum().template item<int64_t>());
      if (c.anchor_score.defined()) {
        cs.anchor_score_mean = finite_mean(c.anchor_score);
        cs.anchor_score_se = finite_se(c.anchor_score);
        auto x = d(c.score), y = d(c.anchor_score);
        const double sx = x.std(false).template item<double>(), sy = y.std(false).template item<double>();
        if (sx > 0 && sy > 0) cs.anchor_corr = ((x - x.mean()) * (y - y.mean())).mean().template item<double>() / (sx * sy);
      }
      st.components.push_back(std::move(cs));
    }
  }

  /// "reward term 'diag' gave 3 non-finite scores of 32" for each such term, or "" when all are finite.
  static std::string nonfinite_terms(const EpochStats& st) {
    std::string s;
    for (const auto& c : st.components)
      if (c.nonfinite > 0)
        s += (s.empty() ? "" : "; ") + ("reward term '" + c.name + "' gave " + std::to_string(static_cast<int64_t>(c.nonfinite)) +
                                       " non-finite scores of " + std::to_string(st.num_samples_scored));
    return s;
  }

  /// Records a skipped update; throws once more than max_skipped_updates were skipped.
  void skip(EpochStats& st, const std::string& why) {
    ++st.skipped_updates;
    ++skipped_total_;
    st.skip_reason = why;
    if (skipped_total_ > cfg_.max_skipped_updates)
      throw std::runtime_error("cxrl::core::Trainer: " + std::to_string(skipped_total_) + " updates skipped for non-finite values (" + why +
                               " in epoch " + std::to_string(epoch_) + "); stopping (TrainerConfig::max_skipped_updates = " +
                               std::to_string(cfg_.max_skipped_updates) + "); the weights are those of the last finite update");
  }

  template <class C>
  void call_phase(C& cb, Phase phase) {
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

  struct ShardGenerators {
    at::Generator prompts, sample, anchor;
  };

  P& policy_;
  S sampler_;
  RS rewards_;
  B baseline_;
  PromptFn prompt_fn_;
  TrainerConfig cfg_;
  Distributed* dist_;
  std::vector<torch::Tensor> params_;
  std::vector<ShardGenerators> shards_;
  at::Generator shuffle_gen_;
  torch::optim::AdamW optimizer_;
  int64_t epoch_ = 0;
  int64_t skipped_total_ = 0;
  bool stop_ = false;
};

}  // namespace cxrl::core
