/// @file
/// @brief Umbrella header: the whole library.
#pragma once
#include <cxrl/version.hpp>
#include <cxrl/io/safetensors.hpp>
