/// @file
/// @brief The closed set of CXRL rewards (align, diag, consist): their names, in one place, and a subset parsed
///        once from a comma-separated list.
///
/// The reward types take their `name` from here (cxr/align_reward.hpp, diag_reward.hpp, consist_reward.hpp), so a
/// run's reward set, a command-line list and an evaluation's grouping all compare the same values. A set prints
/// in the paper's order (align, diag, consist) whatever order it was written in.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cxrl::cxr {

/// @brief The three CXRL rewards (paper §2.3), in the paper's order.
enum class CxrReward { align, diag, consist };

/// @brief Every CxrReward in the paper's order.
inline constexpr std::array<CxrReward, 3> kCxrRewards{CxrReward::align, CxrReward::diag, CxrReward::consist};

/// @brief The reward's name: its RewardSum term key, its metrics prefix and its spelling in `--rewards`.
/// @param r the reward
constexpr std::string_view reward_name(CxrReward r) {
  switch (r) {
    case CxrReward::align: return "align";
    case CxrReward::diag: return "diag";
    case CxrReward::consist: return "consist";
  }
  return "?";
}

/// @brief A non-empty subset of the CXRL rewards.
class CxrRewardSet {
 public:
  /// @brief All three rewards (CXRL).
  static constexpr CxrRewardSet all() { return CxrRewardSet(0b111); }

  /**
   * @brief Parses "align,diag,consist" or any non-empty subset, in any order.
   * @param list comma-separated names
   * @param what where the list came from, for messages (a flag or a file and key)
   * @throws std::invalid_argument naming @p what, the offending name and the allowed ones
   */
  static CxrRewardSet parse(std::string_view list, std::string_view what = "--rewards") {
    unsigned bits = 0;
    std::size_t b = 0;
    while (b <= list.size()) {
      const std::size_t e = std::min(list.find(',', b), list.size());
      const std::string_view item = list.substr(b, e - b);
      unsigned bit = 0;
      for (std::size_t k = 0; k < kCxrRewards.size(); ++k)
        if (item == reward_name(kCxrRewards[k])) bit = 1u << k;
      if (bit == 0)
        throw std::invalid_argument(std::string(what) + ": unknown reward '" + std::string(item) +
                                    "' (allowed: align, diag, consist, comma-separated)");
      bits |= bit;
      b = e + 1;
    }
    return CxrRewardSet(bits);
  }

  /// @brief Whether @p r is in the set.
  constexpr bool contains(CxrReward r) const { return (bits_ >> static_cast<unsigned>(r)) & 1u; }
  /// @brief Whether all three rewards are in the set.
  constexpr bool is_all() const { return bits_ == 0b111; }
  /// @brief How many rewards the set holds.
  constexpr int size() const { return static_cast<int>((bits_ & 1u) + ((bits_ >> 1) & 1u) + ((bits_ >> 2) & 1u)); }
  /// @brief The canonical list, in the paper's order joined by @p sep ("align,diag,consist").
  std::string str(std::string_view sep = ",") const {
    std::string s;
    for (auto r : kCxrRewards)
      if (contains(r)) s += (s.empty() ? "" : std::string(sep)) + std::string(reward_name(r));
    return s;
  }
  /// @brief Set equality.
  constexpr bool operator==(const CxrRewardSet&) const = default;

 private:
  constexpr explicit CxrRewardSet(unsigned bits) : bits_(bits) {}
  unsigned bits_;
};

}  // namespace cxrl::cxr
