/// @file
/// @brief Library version.
#pragma once
namespace cxrl {
/// @brief Semantic version of the headers.
inline constexpr const char* version = "0.1.0";
}  // namespace cxrl
