// LoraLinear: the adapter starts as an exact no-op, trains, switches off bit-exactly and merges/unmerges.
#include <cxrl/nn/lora_linear.hpp>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <set>

using cxrl::nn::LoraLinear;

namespace {
torch::Tensor base_out(LoraLinear& l, const torch::Tensor& x) { return torch::linear(x, l->weight, l->bias); }
}  // namespace

TEST_CASE("LoraLinear keys mirror nn.Linear plus lora_A/lora_B", "[lora]") {
  LoraLinear l(16, 12, true);
  std::set<std::string> keys;
  for (const auto& p : l->named_parameters()) keys.insert(p.key());
  CHECK(keys == std::set<std::string>{"weight", "bias"});
  l->add_lora(4, 8.0);
  keys.clear();
  for (const auto& p : l->named_parameters()) keys.insert(p.key());
  CHECK(keys == std::set<std::string>{"weight", "bias", "lora_A.weight", "lora_B.weight"});
  CHECK(l->lora_A->weight.sizes() == torch::IntArrayRef({4, 16}));
  CHECK(l->lora_B->weight.sizes() == torch::IntArrayRef({12, 4}));
  CHECK(l->lora_scale() == Approx(2.0));
  CHECK_THROWS_AS(l->add_lora(2, 1.0), std::logic_error);
  CHECK_THROWS_AS(LoraLinear(4, 4, false)->add_lora(0, 1.0), std::invalid_argument);
  LoraLinear nb(16, 12, false);
  CHECK_FALSE(nb->bias.defined());
}

TEST_CASE("LoraLinear A is N(0, 1/r^2) and reproducible from a generator", "[lora]") {
  LoraLinear a(1024, 8, false), b(1024, 8, false);
  a->add_lora(8, 8.0, at::make_generator<at::CPUGeneratorImpl>(7));
  b->add_lora(8, 8.0, at::make_generator<at::CPUGeneratorImpl>(7));
  CHECK(torch::equal(a->lora_A->weight, b->lora_A->weight));
  const double sd = a->lora_A->weight.std().item<double>();
  CHECK(sd == Approx(1.0 / 8).epsilon(0.05));
  CHECK(a->lora_B->weight.abs().max().item<float>() == 0.0f);
}

TEST_CASE("LoraLinear: zero B is exact, one step changes it, disabled is bit-exact, merge/unmerge", "[lora]") {
  torch::manual_seed(3);
  LoraLinear l(32, 24, true);
  const auto x = torch::randn({5, 7, 32});
  const auto base = base_out(l, x);
  l->add_lora(4, 4.0, at::make_generator<at::CPUGeneratorImpl>(11));

  // lora_B = 0: the adapted layer equals the base layer exactly.
  CHECK(torch::equal(l(x), base));

  // One optimiser step on the adapter only.
  const auto w0 = l->weight.detach().clone();
  torch::optim::SGD opt({l->lora_A->weight, l->lora_B->weight}, torch::optim::SGDOptions(0.1));
  auto loss = (l(x) - 1.0).pow(2).mean();
  opt.zero_grad();
  loss.backward();
  // With B = 0, dL/dA = Bᵀ(...) = 0 and only B moves on the first step.
  CHECK(l->lora_A->weight.grad().abs().max().item<float>() == 0.0f);
  CHECK(l->lora_B->weight.grad().abs().max().item<float>() > 0.0f);
  opt.step();
  const auto adapted = l(x).detach();
  CHECK((adapted - base).abs().max().item<float>() > 1e-4f);
  CHECK(torch::equal(l->weight, w0));  // base untouched
  // The adapted output is exactly W x + b + scale * B A x.
  const auto expect = base + torch::linear(torch::linear(x, l->lora_A->weight), l->lora_B->weight) * l->lora_scale();
  CHECK(torch::allclose(adapted, expect, 1e-6, 1e-6));

  // Disabled: bit-exact base output.
  l->set_lora_enabled(false);
  CHECK(torch::equal(l(x), base));
  CHECK_THROWS_AS(l->merge(), std::logic_error);
  l->set_lora_enabled(true);

  // Merged equals unmerged within 1e-5; unmerge restores the weight.
  torch::NoGradGuard ng;
  l->merge();
  CHECK(l->merged());
  const auto merged = l(x);
  CHECK((merged - adapted).abs().max().item<float>() < 1e-5f);
  CHECK_FALSE(torch::equal(l->weight, w0));
  CHECK_THROWS_AS(l->set_lora_enabled(false), std::logic_error);
  l->unmerge();
  CHECK_FALSE(l->merged());
  CHECK((l->weight - w0).abs().max().item<float>() < 1e-6f);
  CHECK((l(x) - adapted).abs().max().item<float>() < 1e-5f);

  // Scale changes the branch linearly.
  l->set_lora_scale(0.0);
  CHECK(torch::allclose(l(x), base, 0, 1e-6));
}
