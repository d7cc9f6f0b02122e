// A downstream project: uses the installed cxrl through find_package(cxrl).
#include <cxrl/cxrl.hpp>
#include <iostream>

int main() {
  auto t = torch::arange(6, torch::kFloat32).reshape({2, 3});
  const auto path = std::filesystem::temp_directory_path() / "cxrl_consumer.safetensors";
  cxrl::io::save_safetensors(path, {{"t", t}});
  auto back = cxrl::io::load_safetensors(path);
  std::filesystem::remove(path);
  const bool ok = torch::equal(back.at("t"), t);
  std::cout << "cxrl " << cxrl::version << (ok ? " consumer ok" : " consumer MISMATCH") << '\n';
  return ok ? 0 : 1;
}
