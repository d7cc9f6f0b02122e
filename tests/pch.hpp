// Private precompiled header for test targets: the expensive, stable includes.
#pragma once
#include <torch/torch.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <filesystem>
#include <string>
#include <vector>
#include <map>
