// Shared by the fuzz harnesses: the input as text, and where the test data lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#ifndef CXRL_TEST_DATA
#define CXRL_TEST_DATA "tests/data"
#endif

inline std::string fuzz_text(const std::uint8_t* data, std::size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }
