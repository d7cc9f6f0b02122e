// Catch2 main, kept out of the precompiled header.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
