/**
 * @file reward_sum.hpp
 * @brief RewardSum: heterogeneous rewards composed at compile time, each with a runtime weight λ and a
 *        compile-time mode (Absolute or Comparative against the anchor's sample).
 *
 * CXRL's final reward (paper Sec. 2.4): r = λ_align r_align + λ_diag r_diag(x, x̂) + λ_consist r_consist(x, x̂, y),
 * where the comparative terms are score(x) − score(x̂) for the anchor's sample x̂ from the same initial noise:
 * @code
 * using Cxrl     = RewardSum<Absolute<Align>, Comparative<Diag>, Comparative<Consist>>;  // needs_anchor
 * using NoRlcf   = RewardSum<Absolute<Align>, Absolute<Diag>, Absolute<Consist>>;        // direct feedback
 * @endcode
 */
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cxrl/core/concepts.hpp"

namespace cxrl::core {

/**
 * @brief A reward term scored directly: contribution λ · score(x).
 * @tparam R a Reward.
 */
template <class R>
struct Absolute {
  static_assert(check_reward<R>());
  using reward_type = R;                     ///< the wrapped reward
  static constexpr bool comparative = false;  ///< compile-time mode
  R reward;                                   ///< the reward model
  double weight = 1.0;                        ///< λ
};

/**
 * @brief A reward term compared against the anchor (RLCF): contribution λ · (score(x) − score(x̂)).
 * @tparam R a Reward.
 */
template <class R>
struct Comparative {
  static_assert(check_reward<R>());
  using reward_type = R;                    ///< the wrapped reward
  static constexpr bool comparative = true;  ///< compile-time mode
  R reward;                                  ///< the reward model
  double weight = 1.0;                       ///< λ
};

/// @cond
template <class R> Absolute(R, double) -> Absolute<R>;
template <class R> Absolute(R) -> Absolute<R>;
template <class R> Comparative(R, double) -> Comparative<R>;
template <class R> Comparative(R) -> Comparative<R>;
/// @endcond

/// @brief Whether T is `Absolute<R>` or `Comparative<R>`.
template <class T> inline constexpr bool is_reward_term_v = false;
/// @cond
template <class R> inline constexpr bool is_reward_term_v<Absolute<R>> = true;
template <class R> inline constexpr bool is_reward_term_v<Comparative<R>> = true;
/// @endcond

/// @brief One term's contribution to a batch, kept for logging.
struct RewardComponent {
  std::string_view name;      ///< the reward's `name`
  bool comparative = false;   ///< mode of the term
  double weight = 1.0;        ///< λ at scoring time
  torch::Tensor raw;          ///< [B] score(x) (Absolute) or score(x) − score(x̂) (Comparative)
  torch::Tensor weighted;     ///< [B] λ · raw
  torch::Tensor score;        ///< [B] score(x) of the policy's samples
  torch::Tensor anchor_score; ///< [B] score(x̂) of the anchor's samples (mean of K), undefined without them
};

/// @brief Scores of a batch: the training reward and every component.
struct RewardBreakdown {
  torch::Tensor total;  ///< [B] Σ λ_i raw_i — the reward the policy maximises.
  /**
   * @brief [B] the anchor's own total under the same modes (comparative terms give 0 for x̂ vs x̂),
   *        i.e. Σ_{absolute i} λ_i score_i(x̂); undefined without anchor samples. Used by ComparativeAnchor.
   */
  torch::Tensor anchor_total;
  std::vector<RewardComponent> components;  ///< in the order of the RewardSum's terms

  /// @brief The component called `name`. @param name a reward name. @throws std::out_of_range if absent.
  const RewardComponent& operator[](std::string_view name) const {
    for (const auto& c : components)
      if (c.name == name) return c;
    throw std::out_of_range("cxrl::core::RewardBreakdown: no reward component named '" + std::string(name) + "'");
  }
};

/**
 * @brief Heterogeneous rewards composed at compile time.
 *
 * Names must be unique (checked at compile time); `needs_anchor` is true when any term is Comparative.
 * @tparam Terms each `Absolute<R>` or `Comparative<R>` for a Reward R.
 */
template <class... Terms>
class RewardSum {
  static_assert(sizeof...(Terms) > 0, "cxrl::core::RewardSum needs at least one term");
  static_assert((is_reward_term_v<Terms> && ...),
                "cxrl::core::RewardSum<Terms...>: every term must be Absolute<R> or Comparative<R>; see docs/concepts/reward.md");

 public:
  /// @brief Number of terms.
  static constexpr size_t size = sizeof...(Terms);
  /// @brief The reward names, in term order.
  static constexpr std::array<std::string_view, size> names{std::string_view(Terms::reward_type::name)...};
  /// @brief Whether scoring can need the anchor's samples (some term is Comparative).
  static constexpr bool needs_anchor = (Terms::comparative || ...);

 private:
  static constexpr bool unique_names() {
    for (size_t i = 0; i < size; ++i)
      for (size_t j = i + 1; j < size; ++j)
        if (names[i] == names[j]) return false;
    return true;
  }
  static_assert(unique_names(), "cxrl::core::RewardSum: two terms have the same reward `name`; names must be unique");

 public:
  /// @brief Composes the terms. @param terms the weighted rewards.
  explicit RewardSum(Terms... terms) : terms_(std::move(terms)...) {}

  /// @brief Whether scoring needs the anchor's samples now: some Comparative term has a non-zero weight. A run
  ///        whose comparative terms are all switched off (λ = 0) samples no anchor.
  bool needs_anchor_now() const {
    return std::apply([](const auto&... t) { return ((std::decay_t<decltype(t)>::comparative && t.weight != 0.0) || ...); }, terms_);
  }

  /**
   * @brief Scores a batch.
   *
   * Terms with λ = 0 are scored for logging but contribute nothing; a Comparative term with λ = 0 and no
   * anchor images has raw = 0.
   * @param images policy samples [B, C, H, W] in [0, 1].
   * @param prompts B prompts.
   * @param anchor_images anchor samples from the same initial noise, [B, C, H, W] or K of them per prompt
   *        [B, K, C, H, W] (their scores are averaged); required when needs_anchor_now().
   * @throws std::invalid_argument when a comparative term has no anchor images, or a reward returns a
   *         tensor that is not [B].
   */
  RewardBreakdown score(const torch::Tensor& images, const std::vector<std::string>& prompts,
                        const torch::Tensor& anchor_images = {}) {
    torch::NoGradGuard no_grad;
    const int64_t b = images.size(0);
    if (static_cast<size_t>(b) != prompts.size())
      throw std::invalid_argument("cxrl::core::RewardSum::score: " + std::to_string(b) + " images but " +
                                  std::to_string(prompts.size()) + " prompts");
    if (needs_anchor_now() && !anchor_images.defined())
      throw std::invalid_argument("cxrl::core::RewardSum::score: a Comparative term needs the anchor's images");
    if (anchor_images.defined() && (anchor_images.size(0) != b || (anchor_images.dim() != images.dim() && anchor_images.dim() != images.dim() + 1)))
      throw std::invalid_argument("cxrl::core::RewardSum::score: anchor_images must be [B, ...] or [B, K, ...] with B = " +
                                  std::to_string(b) + ", got " + c10::str(anchor_images.sizes()));

    RewardBreakdown out;
    out.components.reserve(size);
    auto zeros = torch::zeros({b}, images.options().dtype(torch::kFloat));
    out.total = zeros.clone();
    if (anchor_images.defined()) out.anchor_total = zeros.clone();
    std::apply([&](auto&... term) { (score_term(term, images, prompts, anchor_images, out), ...); }, terms_);
    return out;
  }

  /// @brief λ of the term called `name`. @param name a reward name. @throws std::out_of_range if absent.
  double weight(std::string_view name) const {
    double w = 0;
    if (!visit_named(name, [&](const auto& t) { w = t.weight; }))
      throw std::out_of_range(unknown(name));
    return w;
  }
  /// @brief Sets λ of the term called `name`. @param name a reward name. @param w new weight.
  void set_weight(std::string_view name, double w) {
    if (!visit_named(name, [&](auto& t) { t.weight = w; })) throw std::out_of_range(unknown(name));
  }
  /// @brief The I-th term. @tparam I term index.
  template <size_t I>
  auto& term() { return std::get<I>(terms_); }

 private:
  static std::string unknown(std::string_view name) {
    std::string s = "cxrl::core::RewardSum: no term named '" + std::string(name) + "'; terms are:";
    for (auto n : names) s += " " + std::string(n);
    return s;
  }

  template <class F>
  bool visit_named(std::string_view name, F&& f) const {
    return std::apply([&](const auto&... t) {
      return ((std::decay_t<decltype(t)>::reward_type::name == name ? (f(t), true) : false) || ...);
    }, terms_);
  }
  template <class F>
  bool visit_named(std::string_view name, F&& f) {
    return std::apply([&](auto&... t) {
      return ((std::decay_t<decltype(t)>::reward_type::name == name ? (f(t), true) : false) || ...);
    }, terms_);
  }

  template <class Term>
  static torch::Tensor checked_score(Term& term, const torch::Tensor& images, const std::vector<std::string>& prompts) {
    torch::Tensor s = term.reward.score(images, prompts);
    if (!s.defined() || s.dim() != 1 || s.size(0) != images.size(0))
      throw std::invalid_argument("cxrl::core::RewardSum: reward '" + std::string(Term::reward_type::name) +
                                  "' must return a 1-d tensor [B] with B = " + std::to_string(images.size(0)));
    return s.detach().to(images.device(), torch::kFloat);
  }

  /// Mean score over the K anchor samples of each prompt ([B, K, ...]), or the score of [B, ...].
  template <class Term>
  static torch::Tensor anchor_mean_score(Term& term, const torch::Tensor& anchor_images, const torch::Tensor& images,
                                         const std::vector<std::string>& prompts) {
    if (anchor_images.dim() == images.dim()) return checked_score(term, anchor_images, prompts);
    torch::Tensor sum;
    for (int64_t k = 0; k < anchor_images.size(1); ++k) {
      auto s = checked_score(term, anchor_images.select(1, k), prompts);
      sum = sum.defined() ? sum + s : s;
    }
    return sum / static_cast<double>(anchor_images.size(1));
  }

  template <class Term>
  static void score_term(Term& term, const torch::Tensor& images, const std::vector<std::string>& prompts,
                         const torch::Tensor& anchor_images, RewardBreakdown& out) {
    RewardComponent c;
    c.name = Term::reward_type::name;
    c.comparative = Term::comparative;
    c.weight = term.weight;
    c.score = checked_score(term, images, prompts);
    if (anchor_images.defined()) c.anchor_score = anchor_mean_score(term, anchor_images, images, prompts);
    if (!Term::comparative) c.raw = c.score;
    else c.raw = c.anchor_score.defined() ? c.score - c.anchor_score : torch::zeros_like(c.score);
    c.weighted = c.raw * term.weight;
    out.total += c.weighted;
    // Against itself a comparative term scores 0, so only absolute terms enter the anchor's own total.
    if (anchor_images.defined() && !Term::comparative) out.anchor_total += c.anchor_score * term.weight;
    out.components.push_back(std::move(c));
  }

  std::tuple<Terms...> terms_;
};

}  // namespace cxrl::core
