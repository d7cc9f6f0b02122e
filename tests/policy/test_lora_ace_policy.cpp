// LoraAcePolicy: LoRA injection, exactness of the zero-initialised / disabled adapters, training moves the
// output, merge, save/load, ACE gradients, frozen base, the anchor, and the Policy concept.
#include "tiny_models.hpp"

#include <cxrl/core/concepts.hpp>
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>
#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/nn/precision.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <chrono>
#include <regex>
#include <thread>

using cxrl::policy::LoraAcePolicy;
using cxrl::policy::LoraAcePolicyConfig;
using namespace cxrl_test;

static_assert(cxrl::core::Policy<LoraAcePolicy>);
static_assert(cxrl::core::check_policy<LoraAcePolicy>());

namespace {

struct Inputs {
  torch::Tensor x, t, c;
  std::vector<std::string> prompts{"No acute cardiopulmonary process.", "Small right pleural effusion."};
};

Inputs make_inputs() {
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  Inputs in;
  in.x = torch::randn({2, 1, 16, 16}, g);
  in.t = torch::tensor({10, 700}, torch::kLong);
  in.c = torch::randn({2, 77, 32}, g);
  return in;
}

// A UNet with exactly the base weights of @p src (a separate copy, for a second policy).
cxrl::nn::UNet2DConditionModel clone_unet(cxrl::nn::UNet2DConditionModel& src) {
  auto u = cxrl::nn::UNet2DConditionModel(tiny_unet_config());
  auto sd = cxrl::io::state_dict(*src);
  cxrl::io::TensorMap base;
  for (auto& [k, v] : sd)
    if (k.find(".lora_") == std::string::npos) base.emplace(k, v);
  cxrl::io::load_state_dict(*u, base);
  return u;
}

std::filesystem::path temp_file(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / "cxrl_policy_tests";
  std::filesystem::create_directories(d);
  return d / name;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Stable Diffusion v1's scheduler (scaled-linear betas 0.00085..0.012, steps_offset 1).
cxrl::diffusion::DDIMSchedulerConfig sd_scheduler_config() {
  cxrl::diffusion::DDIMSchedulerConfig sc;
  sc.beta_schedule = cxrl::diffusion::BetaSchedule::scaled_linear;
  sc.beta_start = 0.00085;
  sc.beta_end = 0.012;
  sc.clip_sample = false;
  sc.set_alpha_to_one = false;
  sc.steps_offset = 1;
  return sc;
}

}  // namespace

TEST_CASE("LoRA is injected into every to_q/to_k/to_v/to_out.0 of attn1 and attn2", "[policy][lora]") {
  auto unet = tiny_unet(1);
  int64_t attentions = 0;
  for (const auto& m : unet->named_modules("", false)) {
    static const std::regex attn(R"((^|\.)attn[12]$)");
    if (std::regex_search(m.key(), attn)) ++attentions;
  }
  REQUIRE(attentions == 8);  // 4 transformer blocks (down 1, mid 1, up 2) × (attn1, attn2)
  LoraAcePolicyConfig cfg;
  cfg.lora.rank = 2;
  LoraAcePolicy p(unet, tiny_clip(2), clip_tokenizer(), nullptr, cfg);
  CHECK(p.lora().size() == static_cast<std::size_t>(attentions * 4));
  const auto sd = p.lora().state_dict();
  CHECK(sd.size() == p.lora().size() * 2);
  const std::string k = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight";
  REQUIRE(sd.count(k));
  CHECK(sd.at(k).sizes() == torch::IntArrayRef({2, 32}));  // [r, cross_attention_dim]
  CHECK(sd.at("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight").sizes() ==
        torch::IntArrayRef({64, 2}));
  for (const auto& [key, v] : sd) {
    CHECK(std::regex_match(key, std::regex(R"(unet\..*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.lora_[AB]\.weight)")));
    if (key.find("lora_B") != std::string::npos) CHECK(v.abs().max().item<float>() == 0.0f);
  }
  // A ~ N(0, 1/r²): with r = 2 the std is 0.5.
  std::vector<torch::Tensor> a;
  for (auto& [key, v] : sd)
    if (key.find("lora_A") != std::string::npos) a.push_back(v.flatten());
  CHECK(torch::cat(a).std().item<double>() == Approx(0.5).epsilon(0.1));
  // Injecting twice is refused; a module without attention is refused.
  CHECK_THROWS_WITH(cxrl::policy::LoraAdapters::inject(*unet, cfg.lora), Catch::Contains("already has a LoRA adapter"));
  auto lin = torch::nn::Linear(3, 3);
  CHECK_THROWS_WITH(cxrl::policy::LoraAdapters::inject(*lin, cfg.lora), Catch::Contains("no module path"));
}

TEST_CASE("LoRA through the policy: zero B is exact, training moves, disabling is bit-exact, merge ~ unmerged",
          "[policy][lora]") {
  auto in = make_inputs();
  auto unet = tiny_unet(1);
  torch::Tensor base;
  {
    torch::NoGradGuard ng;
    base = unet->forward(in.x, in.t, in.c);
  }
  LoraAcePolicy p(unet, tiny_clip(2), clip_tokenizer());
  {
    torch::NoGradGuard ng;
    CHECK(torch::equal(p.predict(in.x, in.t, in.c), base));  // lora_B = 0
  }
  torch::optim::Adam opt(p.trainable_parameters(), torch::optim::AdamOptions(1e-2));
  auto loss = p.predict(in.x, in.t, p.encode(in.prompts)).pow(2).mean();
  opt.zero_grad();
  loss.backward();
  opt.step();
  torch::NoGradGuard ng;
  const auto trained = p.predict(in.x, in.t, in.c);
  CHECK(max_abs_diff(trained, base) > 1e-4);

  p.set_adapters_enabled(false);  // the anchor
  CHECK(torch::equal(p.predict(in.x, in.t, in.c), base));
  CHECK(p.encode(in.prompts).size(1) == 77);  // no ACE tokens on the anchor
  p.set_adapters_enabled(true);
  CHECK(p.encode(in.prompts).size(1) == 80);
  CHECK(torch::equal(p.predict(in.x, in.t, in.c), trained));

  p.lora().set_scale(0.0);  // diffusers' scale=0: the base model again
  CHECK(torch::equal(p.predict(in.x, in.t, in.c), base));
  p.lora().set_scale(1.0);
  CHECK(torch::equal(p.predict(in.x, in.t, in.c), trained));

  // Merging is for inference: W + ΔW − ΔW restores W only up to round-off (documented in lora.hpp).
  p.lora().merge();
  CHECK(p.lora().merged());
  const auto merged = p.predict(in.x, in.t, in.c);
  CHECK(max_abs_diff(merged, trained) < 1e-5);
  CHECK_THROWS(p.set_adapters_enabled(false));  // cannot skip a merged branch
  p.lora().unmerge();
  CHECK(max_abs_diff(p.predict(in.x, in.t, in.c), trained) < 1e-5);
}

TEST_CASE("ACE receives gradients through cross-attention, frozen parameters receive none", "[policy][ace]") {
  auto in = make_inputs();
  auto unet = tiny_unet(1);
  auto clip = tiny_clip(2);
  const auto base_tensors = unet->parameters().size() + clip->parameters().size();
  LoraAcePolicy p(unet, clip, clip_tokenizer());
  for (const auto& t : p.trainable_parameters()) CHECK(t.requires_grad());
  const auto c = p.encode(in.prompts);
  REQUIRE(c.size(1) == 3 + 77);
  // c = [c_s, c_p]: the first N rows are the tokens, the rest the frozen encoder output.
  CHECK(torch::equal(c.narrow(1, 0, 3)[1].detach(), p.ace()->tokens.detach()));
  CHECK(torch::equal(c.narrow(1, 3, 77).detach(), p.encode_frozen(in.prompts)));
  auto loss = p.predict(in.x, in.t, c).pow(2).mean();
  loss.backward();
  const auto& g = p.ace()->tokens.grad();
  REQUIRE(g.defined());
  CHECK(g.abs().sum().item<double>() > 0.0);
  // Cross-attention is the only path: attn2 of the LoRA'd layers sees a context 3 rows longer.
  int64_t lora_b_with_grad = 0;
  for (auto& t : p.lora().targets())
    if (t.layer->lora_B->weight.grad().defined() && t.layer->lora_B->weight.grad().abs().sum().item<double>() > 0)
      ++lora_b_with_grad;
  CHECK(lora_b_with_grad == static_cast<int64_t>(p.lora().size()));
  int64_t frozen = 0;
  for (const auto& m : {static_cast<torch::nn::Module*>(unet.get()), static_cast<torch::nn::Module*>(clip.get())})
    for (const auto& np : m->named_parameters()) {
      if (np.key().find(".lora_") != std::string::npos) continue;
      ++frozen;
      CHECK_FALSE(np.value().requires_grad());
      const auto& gr = np.value().grad();
      CHECK((!gr.defined() || gr.abs().sum().item<double>() == 0.0));
    }
  CHECK(frozen == static_cast<int64_t>(base_tensors));

  // Only ACE trainable ("w/o LoRA"): the gradient still reaches the tokens through the UNet.
  LoraAcePolicyConfig only_ace;
  only_ace.use_lora = false;
  LoraAcePolicy q(tiny_unet(3), tiny_clip(4), clip_tokenizer(), nullptr, only_ace);
  REQUIRE(q.trainable_parameters().size() == 1);
  q.predict(in.x, in.t, q.encode(in.prompts)).pow(2).mean().backward();
  CHECK(q.ace()->tokens.grad().abs().sum().item<double>() > 0.0);
}

TEST_CASE("w/o ACE is one flag, the unconditional prompt also gets ACE", "[policy][ace]") {
  auto in = make_inputs();
  LoraAcePolicyConfig cfg;
  cfg.use_ace = false;
  LoraAcePolicy p(tiny_unet(1), tiny_clip(2), clip_tokenizer(), nullptr, cfg);
  CHECK(p.trainable_parameters().size() == p.lora().size() * 2);
  CHECK(p.encode(in.prompts).size(1) == 77);
  CHECK_FALSE(p.ace_active());

  LoraAcePolicyConfig five;
  five.ace.num_tokens = 5;
  LoraAcePolicy q(tiny_unet(1), tiny_clip(2), clip_tokenizer(), nullptr, five);
  torch::NoGradGuard ng;
  const auto u = q.encode({""});
  CHECK(u.size(1) == 5 + 77);
  CHECK(torch::equal(u[0].narrow(0, 0, 5), q.ace()->tokens));
  CHECK(q.ace()->tokens.std().item<double>() == Approx(0.02).epsilon(0.3));
  q.init_ace_from_text("chest x-ray");
  CHECK(torch::equal(q.ace()->tokens, q.encode_frozen({"chest x-ray"})[0].narrow(0, 1, 5)));
}

TEST_CASE("anchor shares the base weights: no second copy", "[policy][anchor]") {
  auto unet = tiny_unet(1);
  auto clip = tiny_clip(2);
  int64_t base_elems = 0;
  std::map<std::string, const void*> ptrs;
  for (const auto& np : unet->named_parameters()) base_elems += np.value().numel(), ptrs[np.key()] = np.value().data_ptr();
  LoraAcePolicy p(unet, clip, clip_tokenizer());
  p.set_adapters_enabled(false);
  int64_t after = 0, adapter = 0;
  for (const auto& np : p.unet()->named_parameters()) {
    after += np.value().numel();
    if (ptrs.count(np.key())) CHECK(np.value().data_ptr() == ptrs.at(np.key()));
  }
  for (const auto& t : p.trainable_parameters()) adapter += t.numel();
  CHECK(after + p.ace()->tokens.numel() == base_elems + adapter);
  CHECK(adapter < base_elems / 10);
  torch::NoGradGuard ng;
  const std::vector<std::string> prompts{"Mild cardiomegaly."};
  auto ids = torch::tensor(clip_tokenizer()->encode_padded(prompts[0]).input_ids, torch::kLong).unsqueeze(0);
  CHECK(torch::equal(p.encode(prompts), clip->forward(ids).last_hidden_state));  // anchor = plain SD conditioning
}

TEST_CASE("adapters save/load round trip is bit-exact and strict", "[policy][io]") {
  auto in = make_inputs();
  auto unet = tiny_unet(1);
  auto clip = tiny_clip(2);
  LoraAcePolicy p(unet, clip, clip_tokenizer());
  torch::optim::Adam opt(p.trainable_parameters(), torch::optim::AdamOptions(1e-2));
  p.predict(in.x, in.t, p.encode(in.prompts)).pow(2).mean().backward();
  opt.step();
  const auto file = temp_file("adapters.safetensors");
  p.save_adapters(file, {{"step", "1"}});

  cxrl::io::SafeTensorsFile f(file);
  CHECK(f.metadata().at("lora_rank") == "4");
  CHECK(f.metadata().at("ace_num_tokens") == "3");
  CHECK(f.metadata().at("step") == "1");
  CHECK(f.keys().size() == p.lora().size() * 2 + 1);

  LoraAcePolicyConfig other;
  other.lora.seed = 99;
  other.ace.seed = 99;
  LoraAcePolicy q(clone_unet(unet), clip, clip_tokenizer(), nullptr, other);
  q.load_adapters(file);
  for (auto& [k, v] : p.lora().state_dict()) CHECK(torch::equal(v, q.lora().state_dict().at(k)));
  CHECK(torch::equal(p.ace()->tokens, q.ace()->tokens));
  torch::NoGradGuard ng;
  CHECK(torch::equal(p.predict(in.x, in.t, p.encode(in.prompts)), q.predict(in.x, in.t, q.encode(in.prompts))));

  LoraAcePolicyConfig no_ace;
  no_ace.use_ace = false;
  LoraAcePolicy r(clone_unet(unet), clip, clip_tokenizer(), nullptr, no_ace);
  CHECK_THROWS_WITH(r.load_adapters(file), Catch::Contains("ace.tokens") && Catch::Contains("use_ace = false"));
  LoraAcePolicyConfig rank8;
  rank8.lora.rank = 8;
  rank8.lora.alpha = 8;
  LoraAcePolicy s(clone_unet(unet), clip, clip_tokenizer(), nullptr, rank8);
  CHECK_THROWS_WITH(s.load_adapters(file), Catch::Contains("lora_rank"));
  // A file missing one adapter tensor is reported by key.
  auto sd = cxrl::io::load_safetensors(file);
  const auto victim = sd.begin()->first;
  sd.erase(sd.begin());
  const auto broken = temp_file("broken.safetensors");
  cxrl::io::save_safetensors(broken, sd);
  LoraAcePolicy t(clone_unet(unet), clip, clip_tokenizer(), nullptr, other);
  CHECK_THROWS_WITH(t.load_adapters(broken), Catch::Contains(victim) && Catch::Contains("missing"));
  std::filesystem::remove(file);
  std::filesystem::remove(broken);
}

TEST_CASE("decode maps pixel samples and VAE latents to [0,1]", "[policy][decode]") {
  torch::NoGradGuard ng;
  LoraAcePolicy p(tiny_unet(1), tiny_clip(2), clip_tokenizer());
  CHECK(p.sample_shape() == std::vector<int64_t>{1, 16, 16});
  auto x = torch::tensor({-2.0f, -1.0f, 0.0f, 0.5f, 1.0f, 3.0f}).view({1, 1, 2, 3});
  CHECK(torch::equal(p.decode(x), torch::tensor({0.0f, 0.0f, 0.5f, 0.75f, 1.0f, 1.0f}).view({1, 1, 2, 3})));

  // Latent model: a UNet with 4 input channels and a small VAE; decode = vae.decode(x / scaling_factor).
  auto uc = tiny_unet_config();
  uc.in_channels = uc.out_channels = 4;
  uc.sample_size = 8;
  torch::manual_seed(5);
  cxrl::nn::UNet2DConditionModel unet(uc);
  cxrl::nn::AutoencoderKLConfig vc;
  vc.block_out_channels = {32, 32};
  vc.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  vc.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  vc.norm_num_groups = 8;
  cxrl::nn::AutoencoderKL vae(vc);
  LoraAcePolicy q(unet, tiny_clip(2), clip_tokenizer(), vae);
  CHECK(q.sample_shape() == std::vector<int64_t>{4, 8, 8});
  auto z = torch::randn({2, 4, 8, 8});
  auto img = q.decode(z);
  CHECK(img.sizes() == torch::IntArrayRef({2, 3, 16, 16}));
  CHECK(torch::equal(img, (vae->decode(z / 0.18215) / 2 + 0.5).clamp(0, 1)));
  CHECK(img.min().item<float>() >= 0.0f);
  CHECK(img.max().item<float>() <= 1.0f);
  for (const auto& prm : vae->parameters()) CHECK_FALSE(prm.requires_grad());

  auto bad = tiny_unet_config();
  bad.cross_attention_dim = {48};
  CHECK_THROWS_WITH(LoraAcePolicy(cxrl::nn::UNet2DConditionModel(bad), tiny_clip(2), clip_tokenizer()),
                    Catch::Contains("cross_attention_dim"));
}

TEST_CASE("the policy under the DDPO sampler: recorded log-probs are reproduced and gradients reach LoRA and ACE",
          "[policy][sampler]") {
  const auto sc = sd_scheduler_config();
  cxrl::core::DdimSamplerConfig cfg;
  cfg.num_steps = 3;
  cfg.eta = 1.0;
  cfg.guidance_scale = 2.0;
  cxrl::core::DdimSampler sampler(cxrl::diffusion::DDIMScheduler(sc), cfg);
  LoraAcePolicy p(tiny_unet(1), tiny_clip(2), clip_tokenizer());
  const std::vector<std::string> prompts{"No acute cardiopulmonary process.", "Small left apical pneumothorax."};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(42);
  auto traj = sampler.sample(p, prompts, gen);
  CHECK(traj.conditions.size(1) == 80);
  CHECK(traj.unconditional.size(1) == 80);  // "" carries the ACE tokens too
  CHECK(traj.images.sizes() == torch::IntArrayRef({2, 1, 16, 16}));
  auto agen = at::make_generator<at::CPUGeneratorImpl>(43);
  sampler.sample_anchor(p, traj, agen);
  CHECK(p.adapters_enabled());  // restored by the guard
  p.train(true);
  CHECK(p.unet()->is_training());
  CHECK_FALSE(p.text_encoder()->is_training());
  REQUIRE(traj.has_anchor());

  auto steps = torch::tensor({1, 2}, torch::kLong);
  auto lp = sampler.log_prob(p, traj, steps);
  REQUIRE(lp.requires_grad());
  auto recorded = traj.log_probs.index({torch::arange(2), steps});
  CHECK((lp.detach() - recorded).abs().max().item<double>() < 1e-4);  // same policy → ratio 1
  lp.sum().backward();
  CHECK(p.ace()->tokens.grad().abs().sum().item<double>() > 0.0);
  double lora_grad = 0.0;
  for (const auto& t : p.lora().parameters())
    if (t.grad().defined()) lora_grad += t.grad().abs().sum().item<double>();
  CHECK(lora_grad > 0.0);
}

namespace {
struct MeanBrightness {
  static constexpr std::string_view name = "brightness";
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) { return images.mean({1, 2, 3}); }
};
}  // namespace

TEST_CASE("one RLCF epoch of core::Trainer moves only LoRA and ACE, the anchor stays the base model",
          "[policy][trainer]") {
  const auto sc = sd_scheduler_config();
  cxrl::core::DdimSamplerConfig scfg;
  scfg.num_steps = 3;
  scfg.guidance_scale = 2.0;
  auto in = make_inputs();
  auto unet = tiny_unet(1);
  torch::Tensor base;
  {
    torch::NoGradGuard ng;
    base = unet->forward(in.x, in.t, in.c);
  }
  std::map<std::string, torch::Tensor> frozen;
  for (const auto& np : unet->named_parameters()) frozen[np.key()] = np.value().detach().clone();
  LoraAcePolicy p(unet, tiny_clip(2), clip_tokenizer());
  const auto ace0 = p.ace()->tokens.detach().clone();

  cxrl::core::TrainerConfig tc;
  tc.num_batches = 1;
  tc.batch_size = 4;
  tc.learning_rate = 1e-2;
  auto prompts = [](int64_t n, at::Generator&) {
    return std::vector<std::string>(static_cast<std::size_t>(n), "Large right pleural effusion.");
  };
  using Rewards = cxrl::core::RewardSum<cxrl::core::Comparative<MeanBrightness>>;
  cxrl::core::Trainer trainer(p, cxrl::core::DdimSampler(cxrl::diffusion::DDIMScheduler(sc), scfg),
                              Rewards{cxrl::core::Comparative<MeanBrightness>{{}, 1.0}}, cxrl::core::BatchWhitening{},
                              prompts, tc);
  auto st = trainer.train_epoch();
  CHECK(st.optimizer_steps >= 1);
  CHECK_FALSE(torch::equal(p.ace()->tokens.detach(), ace0));
  double b_norm = 0;
  for (const auto& t : p.lora().targets()) b_norm += t.layer->lora_B->weight.detach().abs().sum().item<double>();
  CHECK(b_norm > 0.0);
  for (const auto& np : p.unet()->named_parameters())
    if (frozen.count(np.key())) CHECK(torch::equal(np.value(), frozen.at(np.key())));
  torch::NoGradGuard ng;
  p.set_adapters_enabled(false);
  CHECK(torch::equal(p.predict(in.x, in.t, in.c), base));
  p.set_adapters_enabled(true);
  CHECK_FALSE(torch::equal(p.predict(in.x, in.t, in.c), base));
}

namespace {
// Whether this process's fp32 GEMM gives each row the same bits whatever the row count: true for OpenBLAS's
// SkylakeX and Cooperlake kernels, false for its Haswell kernel (measured on a Zen 5 EPYC: 4e-6 apart).
bool gemm_rows_invariant() {
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto x = torch::randn({2048, 32}, g), w = torch::randn({64, 32}, g);
  return torch::equal(torch::linear(x, w).narrow(0, 0, 1024), torch::linear(x.narrow(0, 0, 1024), w));
}
}  // namespace

TEST_CASE("the importance ratio is exactly 1 before the first update, with the anchor in fp32 or in bf16",
          "[policy][trainer][precision]") {
  using cxrl::nn::Precision;
  const auto sc = sd_scheduler_config();
  cxrl::core::DdimSamplerConfig scfg;
  scfg.num_steps = 4;
  scfg.guidance_scale = 3.0;
  auto in = make_inputs();
  const bool exact = gemm_rows_invariant();
  INFO(cxrl::io::cpu_kernels_description() << (exact ? "" : " (GEMM rows depend on the row count)"));
  for (const Precision prec : {Precision::fp32, Precision::bf16}) {
    DYNAMIC_SECTION(cxrl::nn::to_string(prec)) {
      LoraAcePolicyConfig pc;
      pc.precision = prec;
      LoraAcePolicy p(tiny_unet(1), tiny_clip(2), clip_tokenizer(), nullptr, pc);
      {
        // The policy's own pass is fp32 in every setting; the anchor's runs in the setting and returns fp32.
        torch::NoGradGuard ng;
        auto pol = p.predict(in.x, in.t, in.c);
        p.set_adapters_enabled(false);
        auto anchor = p.predict(in.x, in.t, in.c);
        p.set_precision(Precision::fp32);
        auto anchor32 = p.predict(in.x, in.t, in.c);
        p.set_adapters_enabled(true);
        auto pol32 = p.predict(in.x, in.t, in.c);
        p.set_precision(prec);
        CHECK(anchor.scalar_type() == torch::kFloat32);
        CHECK(torch::equal(pol, pol32));
        if (prec == Precision::bf16) {
          CHECK_FALSE(torch::equal(anchor, anchor32));
          CHECK(max_abs_diff(anchor, anchor32) < 0.05 * anchor32.abs().max().item<double>());
        }
      }
      // Sampling runs the UNet on 2 × 4 rows without autograd, training on 2 × 2 rows with it; two minibatches
      // accumulate into the epoch's one optimizer step, so every trained row still has the sampling policy. The
      // comparative term makes each epoch sample the anchor too, in the precision under test.
      cxrl::core::TrainerConfig tc;
      tc.num_batches = 1;
      tc.batch_size = 4;
      tc.train_batch_size = 2;
      tc.gradient_accumulation_steps = 2;
      tc.learning_rate = 1e-2;
      auto prompts = [](int64_t n, at::Generator& g) {
        const std::vector<std::string> pool{"Large right pleural effusion.", "No acute cardiopulmonary process.",
                                            "Small left apical pneumothorax."};
        std::vector<std::string> out;
        for (int64_t i = 0; i < n; ++i)
          out.push_back(pool[static_cast<std::size_t>(torch::randint(3, {1}, g).item<int64_t>())]);
        return out;
      };
      using Rewards = cxrl::core::RewardSum<cxrl::core::Comparative<MeanBrightness>>;
      cxrl::core::Trainer trainer(p, cxrl::core::DdimSampler(cxrl::diffusion::DDIMScheduler(sc), scfg),
                                  Rewards{cxrl::core::Comparative<MeanBrightness>{{}, 1.0}}, cxrl::core::BatchWhitening{},
                                  prompts, tc);
      for (int epoch = 0; epoch < 2; ++epoch) {  // the second epoch starts from trained adapters (LoRA B ≠ 0)
        auto st = trainer.train_epoch();
        REQUIRE(st.optimizer_steps == 1);
        if (exact) {
          CHECK(st.first_log_ratio_max == 0.0);
          CHECK(st.clipfrac == 0.0);
        } else {
          CHECK(st.first_log_ratio_max < 1e-5);  // a tenth of DDPO's clip range
        }
      }
    }
  }
}

TEST_CASE("precision names parse once, autocast scopes nest and restore, auto takes bf16 only for a clear gain",
          "[policy][precision]") {
  using cxrl::nn::Precision;
  CHECK(cxrl::nn::parse_precision("bf16") == Precision::bf16);
  CHECK(cxrl::nn::parse_precision("auto") == Precision::automatic);
  CHECK_THROWS_WITH(cxrl::nn::parse_precision("fp16", "config.json: key 'precision'"),
                    "config.json: key 'precision': expected auto, fp32 or bf16, got \"fp16\"");
  const torch::Device cpu(torch::kCPU);
  CHECK_THROWS_AS(cxrl::nn::Autocast(Precision::automatic, cpu), std::invalid_argument);
  CHECK_FALSE(at::autocast::is_cpu_enabled());
  {
    cxrl::nn::Autocast outer(Precision::bf16, cpu);
    CHECK(at::autocast::is_cpu_enabled());
    auto a = torch::ones({4, 4});
    CHECK(torch::mm(a, a).scalar_type() == torch::kBFloat16);
    {
      cxrl::nn::Autocast inner(Precision::fp32, cpu);
      CHECK(torch::mm(a, a).scalar_type() == torch::kFloat32);
    }
    CHECK(at::autocast::is_cpu_enabled());
  }
  CHECK_FALSE(at::autocast::is_cpu_enabled());
  // The decision, with the model's cost replaced by fixed waits (the timing itself is the benchmarks' business).
  auto waits = [](int fp32_ms, int bf16_ms) {
    return [=](Precision p) { std::this_thread::sleep_for(std::chrono::milliseconds(p == Precision::bf16 ? bf16_ms : fp32_ms)); };
  };
  // (The 10 % margin itself is checked on recorded timings in tests/app: a tie of sleeps would hang on the
  // scheduler's jitter.)
  const auto fast_bf16 = cxrl::nn::fastest_precision(waits(40, 5), cpu, 2);
  CHECK(fast_bf16.chosen == Precision::bf16);
  CHECK(fast_bf16.fp32_s >= 0.04);
  CHECK(fast_bf16.bf16_s >= 0.005);
  CHECK(cxrl::nn::fastest_precision(waits(5, 40), cpu, 2).chosen == Precision::fp32);
}
