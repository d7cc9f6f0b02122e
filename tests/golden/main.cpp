// cxrl_golden DIR...: checks each fixture directory against the reference outputs it holds.
#include "golden.hpp"
#include <cxrl/io/cpu_kernels.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

namespace cxrl::golden {

std::map<std::string, KindFn>& registry() {
  static std::map<std::string, KindFn> r;
  return r;
}

Context::Context(std::filesystem::path dir) : dir_(std::move(dir)) {
  const auto fj = dir_ / "fixture.json";
  std::ifstream f(fj);
  if (!f) throw std::runtime_error(fj.string() + ": cannot open (a fixture directory needs fixture.json)");
  try {
    fixture_ = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(fj.string() + ": invalid JSON: " + e.what());
  }
  if (!fixture_.contains("kind") || !fixture_["kind"].is_string())
    throw std::runtime_error(fj.string() + ": key 'kind' (string) is required");
  kind_ = fixture_["kind"].get<std::string>();
  if (fixture_.contains("tolerance")) {
    const auto& t = fixture_["tolerance"];
    tol_.exact = t.value("exact", false);
    tol_.atol = t.value("atol", tol_.atol);
    tol_.rtol = t.value("rtol", tol_.rtol);
  }
}

double Context::tolerance_field(const std::string& key, double fallback) const {
  if (fixture_.contains("tolerance") && fixture_["tolerance"].contains(key)) return fixture_["tolerance"][key].get<double>();
  return fallback;
}

bool Context::has_file(const std::string& role) const {
  return (fixture_.contains("files") && fixture_["files"].contains(role)) || std::filesystem::exists(dir_ / role);
}

std::filesystem::path Context::file(const std::string& role) const {
  if (fixture_.contains("files") && fixture_["files"].contains(role))
    return dir_ / fixture_["files"][role].get<std::string>();
  return dir_ / role;
}

nlohmann::json Context::json(const std::string& role) const {
  const auto p = file(role);
  std::ifstream f(p);
  if (!f) throw std::runtime_error(p.string() + ": cannot open");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(p.string() + ": invalid JSON: " + e.what());
  }
}

const io::SafeTensorsFile& Context::io(const std::string& role) {
  auto& slot = io_[role];
  if (!slot) slot = std::make_unique<io::SafeTensorsFile>(file(role));
  return *slot;
}

std::vector<std::string> Context::io_keys(const std::string& role) { return io(role).keys(); }
bool Context::has(const std::string& key, const std::string& role) { return io(role).contains(key); }

torch::Tensor Context::tensor(const std::string& key, const std::string& role) {
  const auto& f = io(role);
  if (!f.contains(key)) throw std::runtime_error(f.path().string() + ": missing tensor '" + key + "'");
  used_[role].insert(key);
  return f.get(key).clone();
}

void Context::covered(const std::string& key, const std::string& reason, const std::string& role) {
  used_[role].insert(key);
  std::printf("  %-48s covered: %s\n", key.c_str(), reason.c_str());
}

bool Context::check(const std::string& name, const torch::Tensor& actual0, const torch::Tensor& expected0,
                    std::optional<Tolerance> tol0) {
  const Tolerance tol = tol0.value_or(tol_);
  ++checks_;
  auto actual = actual0.detach().to(torch::kCPU);
  auto expected = expected0.detach().to(torch::kCPU);
  if (actual.sizes() != expected.sizes()) {
    ++failures_;
    std::ostringstream s;
    s << "  " << name << "  FAIL shape " << actual.sizes() << " != expected " << expected.sizes() << '\n';
    std::cout << s.str();
    return false;
  }
  bool ok;
  double maxerr = 0.0;
  const bool integral = !expected.is_floating_point();
  if (tol.exact || integral) {
    ok = torch::equal(actual.to(expected.scalar_type()), expected);
    if (expected.numel())
      maxerr = (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  } else {
    auto a = actual.to(torch::kFloat64), e = expected.to(torch::kFloat64);
    auto d = (a - e).abs();
    auto bound = tol.atol + tol.rtol * e.abs();
    ok = !a.isnan().any().item<bool>() && (d <= bound).all().item<bool>();
    if (d.numel()) maxerr = d.max().item<double>();
  }
  if (!ok) ++failures_;
  if (tol.exact || integral)
    std::printf("  %-48s max|d|=%-10.3g exact          %s\n", name.c_str(), maxerr, ok ? "ok" : "FAIL");
  else
    std::printf("  %-48s max|d|=%-10.3g atol=%.0e rtol=%.0e %s\n", name.c_str(), maxerr, tol.atol, tol.rtol,
                ok ? "ok" : "FAIL");
  return ok;
}

bool Context::check_io(const std::string& key, const torch::Tensor& actual, std::optional<Tolerance> tol) {
  return check(key, actual, tensor(key), tol);
}

bool Context::expect(const std::string& name, bool ok, const std::string& detail) {
  ++checks_;
  if (!ok) ++failures_;
  std::printf("  %-48s %s%s%s\n", name.c_str(), ok ? "ok" : "FAIL", detail.empty() ? "" : "  ", detail.c_str());
  return ok;
}

void Context::finish() {
  for (const auto& [role, f] : io_) {
    for (const auto& k : f->keys()) {
      if (!used_[role].count(k)) {
        ++failures_;
        std::printf("  %-48s FAIL unchecked (no check reads this %s tensor)\n", k.c_str(), role.c_str());
      }
    }
  }
}

}  // namespace cxrl::golden

int main(int argc, char** argv) {
  using namespace cxrl::golden;
  cxrl::io::use_best_cpu_kernels(argv);  // the goldens hold under the kernels the programs run with
  if (argc < 2) {
    std::cerr << "usage: cxrl_golden FIXTURE_DIR...\nknown kinds:";
    for (const auto& [k, _] : registry()) std::cerr << ' ' << k;
    std::cerr << '\n';
    return 2;
  }
  std::printf("%s\n", cxrl::io::cpu_kernels_description().c_str());
  torch::manual_seed(0);
  int bad = 0;
  for (int i = 1; i < argc; ++i) {
    try {
      Context ctx(argv[i]);
      auto it = registry().find(ctx.kind());
      if (it == registry().end()) {
        std::string known;
        for (const auto& [k, _] : registry()) known += ' ' + k;
        throw std::runtime_error("unknown fixture kind '" + ctx.kind() + "' (known:" + known + ")");
      }
      std::cout << "== " << argv[i] << "  [" << ctx.kind() << "]\n";
      it->second(ctx);
      ctx.finish();
      if (ctx.checks() == 0) {
        std::cout << "  FAIL: no checks ran\n";
        ++bad;
        continue;
      }
      std::cout << "  " << (ctx.checks() - ctx.failures()) << " passed, " << ctx.failures() << " failed\n";
      if (ctx.failures()) ++bad;
    } catch (const std::exception& e) {
      std::cout << "  ERROR " << argv[i] << ": " << e.what() << '\n';
      ++bad;
    }
  }
  return bad ? 1 : 0;
}
