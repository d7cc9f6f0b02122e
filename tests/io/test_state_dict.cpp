#include <cxrl/io/state_dict.hpp>

#include <catch2/catch.hpp>

namespace {
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(Net);

std::string error_of(Net& n, const cxrl::io::TensorMap& sd) {
  try {
    cxrl::io::load_state_dict(*n, sd, {.source = "ckpt.safetensors"});
  } catch (const cxrl::io::CheckpointError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("state_dict lists parameters and buffers under reference key names") {
  Net n;
  auto sd = cxrl::io::state_dict(*n);
  std::vector<std::string> keys;
  for (const auto& [k, _] : sd) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var",
                                         "bn.weight", "fc.bias", "fc.weight"});
}

TEST_CASE("strict loading copies every tensor, buffers included") {
  Net a, b;
  torch::NoGradGuard ng;
  a->bn->running_mean.fill_(0.25);
  a->bn->num_batches_tracked.fill_(7);
  auto rep = cxrl::io::load_state_dict(*b, cxrl::io::state_dict(*a));
  CHECK(rep.ok());
  CHECK(torch::equal(b->fc->weight, a->fc->weight));
  CHECK(b->bn->running_mean[0].item<float>() == 0.25f);
  CHECK(b->bn->num_batches_tracked.item<int64_t>() == 7);
}

TEST_CASE("strict loading lists every missing, unexpected and mis-shaped key in one error") {
  Net n;
  auto sd = cxrl::io::state_dict(*Net());
  const auto before = n->fc->weight.clone();
  sd.erase("fc.bias");
  sd.erase("bn.running_var");
  sd["extra.weight"] = torch::zeros({1});
  sd["fc.weight"] = torch::zeros({4, 3});
  const auto e = error_of(n, sd);
  CHECK_THAT(e, Catch::Contains("ckpt.safetensors"));
  CHECK_THAT(e, Catch::Contains("2 missing") && Catch::Contains("fc.bias") && Catch::Contains("bn.running_var"));
  CHECK_THAT(e, Catch::Contains("1 unexpected") && Catch::Contains("extra.weight"));
  CHECK_THAT(e, Catch::Contains("fc.weight: checkpoint [4, 3] vs model [2, 3]"));
  CHECK(torch::equal(n->fc->weight, before));  // nothing half-loaded
}

TEST_CASE("non-strict loading returns the report and loads what matches") {
  Net n, src;
  auto sd = cxrl::io::state_dict(*src);
  sd.erase("fc.bias");
  sd["text_model.embeddings.position_ids"] = torch::arange(3);
  auto rep = cxrl::io::load_state_dict(*n, sd, {.strict = false, .ignore_unexpected = {"position_ids$"}});
  CHECK(rep.missing == std::vector<std::string>{"fc.bias"});
  CHECK(rep.unexpected.empty());
  CHECK(torch::equal(n->fc->weight, src->fc->weight));
}

TEST_CASE("loading converts dtype on request") {
  Net n, src;
  auto sd = cxrl::io::state_dict(*src);
  for (auto& [k, v] : sd)
    if (v.is_floating_point()) v = v.to(torch::kFloat16);
  cxrl::io::load_state_dict(*n, sd, {.dtype = torch::kFloat64});
  CHECK(n->fc->weight.scalar_type() == torch::kFloat64);
  CHECK(torch::allclose(n->fc->weight, src->fc->weight.to(torch::kFloat16).to(torch::kFloat64)));
}

TEST_CASE("a one-element [1] checkpoint tensor loads into a 0-d slot, as in PyTorch") {
  Net n;
  auto sd = cxrl::io::state_dict(*Net());
  sd["bn.num_batches_tracked"] = torch::tensor({5}, torch::kLong);
  CHECK(cxrl::io::load_state_dict(*n, sd).ok());
  CHECK(n->bn->num_batches_tracked.dim() == 0);
  CHECK(n->bn->num_batches_tracked.item<int64_t>() == 5);
  sd["bn.num_batches_tracked"] = torch::tensor({5, 6}, torch::kLong);
  CHECK_THAT(error_of(n, sd), Catch::Contains("bn.num_batches_tracked: checkpoint [2] vs model []"));
}
