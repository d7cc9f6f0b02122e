// Must NOT compile: two RewardSum terms share the name "score", which RewardSum rejects at compile time
// ("cxrl::core::RewardSum: two terms have the same reward `name`"). With a distinct name it compiles (verified).
#include <cxrl/core/reward_sum.hpp>

#include <string>
#include <string_view>
#include <vector>

struct A {
  static constexpr std::string_view name = "score";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.mean({1, 2, 3}); }
};
struct B {
  static constexpr std::string_view name = "score";  // duplicate
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.amax({1, 2, 3}); }
};

int main() {
  cxrl::core::RewardSum<cxrl::core::Absolute<A>, cxrl::core::Comparative<B>> sum{{A{}, 1.0}, {B{}, 1.0}};
  (void)sum;
  return 0;
}
