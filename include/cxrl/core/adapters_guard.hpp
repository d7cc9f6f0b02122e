/**
 * @file adapters_guard.hpp
 * @brief RAII switch that turns a policy into its frozen anchor (adapters off) for a scope.
 */
#pragma once

#include "cxrl/core/concepts.hpp"

namespace cxrl::core {

/**
 * @brief Disables a policy's adapters for the lifetime of the guard, then re-enables them.
 *
 * If the policy offers the optional `bool adapters_enabled() const`, the previous state is restored
 * instead of assuming "enabled".
 * @tparam P a Policy.
 */
template <class P>
class AdaptersDisabled {
 public:
  /// @brief Disables the adapters. @param policy the policy to switch to its anchor.
  explicit AdaptersDisabled(P& policy) : policy_(policy) {
    if constexpr (requires(const P& p) { { p.adapters_enabled() } -> std::convertible_to<bool>; })
      previous_ = policy_.adapters_enabled();
    policy_.set_adapters_enabled(false);
  }
  /// @brief Restores the previous state (enabled unless the policy said otherwise).
  ~AdaptersDisabled() { policy_.set_adapters_enabled(previous_); }
  AdaptersDisabled(const AdaptersDisabled&) = delete;             ///< not copyable
  AdaptersDisabled& operator=(const AdaptersDisabled&) = delete;  ///< not copyable

 private:
  P& policy_;
  bool previous_ = true;
};

}  // namespace cxrl::core
