/// @file
/// @brief A small, portable, seedable random number generator for procedural worlds and data sampling.
///
/// `std::uniform_real_distribution` and friends are implementation-defined, so worlds drawn with
/// them would differ between standard libraries; this splitmix64-based generator gives the same
/// bytes everywhere for the same seed.
#pragma once

#include <cmath>
#include <cstdint>

namespace cxrl::data {

/// @brief splitmix64 mixing function (Steele, Lea & Flood 2014); also used to derive child seeds.
/// @param x input word
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// @brief Combine a seed with a stream index into an independent child seed.
/// @param seed parent seed
/// @param stream stream index (e.g. sample index or a purpose tag)
inline std::uint64_t child_seed(std::uint64_t seed, std::uint64_t stream) {
  return mix64(seed ^ mix64(stream + 0x632BE59BD9B4E019ull));
}

/// @brief Deterministic generator: splitmix64 stream with uniform, normal and integer helpers.
class Rng {
 public:
  /// @brief Seeded generator.
  /// @param seed any 64-bit value
  explicit Rng(std::uint64_t seed = 0) : state_(seed) {}
  /// @brief Next raw 64-bit word.
  std::uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// @brief Uniform double in [0,1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// @brief Uniform double in [lo,hi).
  /// @param lo lower bound
  /// @param hi upper bound
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// @brief Uniform integer in [0,n) (n > 0).
  /// @param n number of values
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }
  /// @brief True with probability @p p.
  /// @param p probability in [0,1]
  bool bernoulli(double p) { return uniform() < p; }
  /// @brief Standard normal draw (Box–Muller).
  double normal() {
    double u1 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t state_;
};

}  // namespace cxrl::data
