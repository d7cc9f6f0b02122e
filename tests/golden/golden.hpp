// The golden-check framework: a fixture directory (../shared/fixtures layout) is checked by the
// kind named in its fixture.json. Kinds self-register from tests/golden/kind_*.cpp with
// CXRL_GOLDEN_KIND. A kind discovers its cases from the data (io tensor names, fixture_params.json,
// config.json), never from a list in code. Every io tensor must be read by the kind (as input or as
// an expected output); any that is not is reported as unchecked and fails the run.
#pragma once
#include <cxrl/io/safetensors.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace cxrl::golden {

struct Tolerance {
  double atol = 1e-4;
  double rtol = 1e-4;
  bool exact = false;
};

class Context {
 public:
  explicit Context(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& fixture() const { return fixture_; }
  const std::string& kind() const { return kind_; }
  /// Tolerance from fixture.json ("tolerance": {atol, rtol} or {exact: true}).
  const Tolerance& tolerance() const { return tol_; }
  /// Extra numeric field of the tolerance block (e.g. "log_prob_rtol"), or @p fallback.
  double tolerance_field(const std::string& key, double fallback) const;

  /// Path of the file registered under @p role in fixture.json's "files" (or dir/role if absent).
  std::filesystem::path file(const std::string& role) const;
  bool has_file(const std::string& role) const;
  nlohmann::json json(const std::string& role) const;

  /// The io tensors (role "io" by default). Reading a key through tensor() marks it used.
  const io::SafeTensorsFile& io(const std::string& role = "io");
  std::vector<std::string> io_keys(const std::string& role = "io");
  bool has(const std::string& key, const std::string& role = "io");
  torch::Tensor tensor(const std::string& key, const std::string& role = "io");
  /// Marks a key as deliberately covered by another check (say why in @p reason).
  void covered(const std::string& key, const std::string& reason, const std::string& role = "io");

  /// Compares and prints `name  max|d|  tol  ok/FAIL`. Shapes must match.
  bool check(const std::string& name, const torch::Tensor& actual, const torch::Tensor& expected,
             std::optional<Tolerance> tol = std::nullopt);
  /// Compares against the io tensor @p key (marking it used).
  bool check_io(const std::string& key, const torch::Tensor& actual, std::optional<Tolerance> tol = std::nullopt);
  /// Records a non-tensor check (e.g. exact token ids of one text).
  bool expect(const std::string& name, bool ok, const std::string& detail = {});

  int checks() const { return checks_; }
  int failures() const { return failures_; }
  /// Fails for each io tensor that no check or input read touched.
  void finish();

 private:
  std::filesystem::path dir_;
  nlohmann::json fixture_;
  std::string kind_;
  Tolerance tol_;
  std::map<std::string, std::unique_ptr<io::SafeTensorsFile>> io_;
  std::map<std::string, std::set<std::string>> used_;
  int checks_ = 0;
  int failures_ = 0;
};

using KindFn = std::function<void(Context&)>;
std::map<std::string, KindFn>& registry();

struct Register {
  Register(const std::string& kind, KindFn fn) { registry()[kind] = std::move(fn); }
};

}  // namespace cxrl::golden

#define CXRL_GOLDEN_CAT2(a, b) a##b
#define CXRL_GOLDEN_CAT(a, b) CXRL_GOLDEN_CAT2(a, b)
/// Defines and registers the checker for fixture kind @p KIND (a string literal).
#define CXRL_GOLDEN_KIND(KIND)                                                                      \
  static void CXRL_GOLDEN_CAT(cxrl_golden_fn_, __LINE__)(::cxrl::golden::Context&);                 \
  static ::cxrl::golden::Register CXRL_GOLDEN_CAT(cxrl_golden_reg_, __LINE__)(                      \
      KIND, CXRL_GOLDEN_CAT(cxrl_golden_fn_, __LINE__));                                            \
  static void CXRL_GOLDEN_CAT(cxrl_golden_fn_, __LINE__)(::cxrl::golden::Context & ctx)
