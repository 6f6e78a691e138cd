// Hadamard rotations (rotate.h, CausalLM::rotate_hadamard): the matrices are Hadamard exactly
// (H H^T = n I in integers), the Kronecker-factored transform equals the dense product, and a
// rotated model computes the same logits as the original up to FP32 rounding.
#include <ATen/ATen.h>
#include <dmx/quant/config.h>
#include <dmx/quant/model.h>
#include <dmx/quant/rotate.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace {

using namespace dmx::quant;

ModelConfig config(const std::string& arch, int64_t hidden, int64_t inter, bool tied) {
  nlohmann::json j = {
      {"architectures", {arch}},    {"model_type", arch == "Qwen3ForCausalLM" ? "qwen3" : "llama"},
      {"hidden_size", hidden},      {"intermediate_size", inter},
      {"num_hidden_layers", 2},     {"num_attention_heads", 4},
      {"num_key_value_heads", 2},   {"vocab_size", 101},
      {"rms_norm_eps", 1e-6},       {"rope_theta", 10000.0},
      {"tie_word_embeddings", tied}};
  if (arch == "Qwen3ForCausalLM") j["head_dim"] = hidden / 4;
  return parse_config(j.dump(), "test config");
}

at::Tensor ids_of(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randint(0, vocab, {B, T}, g, at::TensorOptions().dtype(at::kLong));
}

TEST(Hadamard, SylvesterAndPaleyOrdersAreHadamardExactly) {
  // Paley I (q = 3 mod 4): 12, 20, 24, 44, 48, 60, 68, 72, 84; Paley II (q = 1 mod 4): 28, 36, 76.
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 12, 20, 24, 28, 36, 44, 48, 60, 68, 72, 76, 84}) {
    const at::Tensor h = hadamard_pm1(n);
    ASSERT_TRUE(h.defined()) << "order " << n;
    ASSERT_EQ(h.size(0), n);
    EXPECT_TRUE(at::equal(h.abs(), at::ones_like(h))) << "entries of order " << n;
    // Integer entries, sums below 2^53: the FP64 product is exact.
    EXPECT_TRUE(at::equal(at::matmul(h, h.t()), n * at::eye(n, at::kDouble))) << "order " << n;
  }
  for (int64_t n : {3, 6, 10, 14, 40, 52, 56}) EXPECT_FALSE(hadamard_pm1(n).defined()) << n;
}

TEST(Hadamard, TransformEqualsTheDenseProductAndIsOrthonormal) {
  // 192 = 12 x 16, 576 = 36 x 16 (SmolLM2-135M), 40 = 20 x 2, 1024 = 64 x 16.
  for (int64_t n : {1, 2, 40, 128, 192, 576, 1024}) {
    const HadamardTransform h(n);
    const at::Tensor d = h.dense();
    EXPECT_LT((at::matmul(d, d.t()) - at::eye(n, at::kDouble)).abs().max().item<double>(), 1e-12)
        << "order " << n;
    at::Generator g = at::detail::createCPUGenerator(uint64_t(n));
    const at::Tensor x = at::randn({3, 5, n}, g, at::TensorOptions().dtype(at::kFloat));
    const at::Tensor want = at::matmul(x.to(at::kDouble), d);
    const at::Tensor got = h.apply(x);
    EXPECT_EQ(got.sizes(), x.sizes());
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-5) << "order " << n;
  }
  for (int64_t n : {0, 3, 6, 14, 52, 100}) {
    EXPECT_FALSE(HadamardTransform::supported(n)) << n;
    EXPECT_THROW(HadamardTransform{n}, std::invalid_argument) << n;
  }
  const at::Tensor q = randomized_hadamard(192, 5);
  EXPECT_LT((at::matmul(q, q.t()) - at::eye(192, at::kDouble)).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(at::equal(q, randomized_hadamard(192, 5)));
  EXPECT_FALSE(at::equal(q, randomized_hadamard(192, 6)));
}

// The rotated model's logits against the original's: the change is FP32 rounding of the folded
// weights and of the reordered sums, a few ulps of the logits' scale.
void expect_same_function(const ModelConfig& cfg, uint64_t seed) {
  const CausalLM ref = CausalLM::random(cfg, seed, 0.1);
  CausalLM rot = CausalLM::random(cfg, seed, 0.1);
  rot.rotate_hadamard(seed + 100);
  ASSERT_EQ(rot.rotation_seed(), std::optional<uint64_t>(seed + 100));
  const at::Tensor ids = ids_of(2, 24, cfg.vocab_size, seed);
  const at::Tensor a = ref.forward(ids), b = rot.forward(ids);
  const double scale = a.abs().max().item<double>();
  EXPECT_LT((a - b).abs().max().item<double>(), 2e-5 * scale) << "seed " << seed;
  // Not a no-op: the weights the quantizer sees did change.
  EXPECT_FALSE(at::allclose(ref.linear(ref.linear_names()[0])->weight,
                            rot.linear(rot.linear_names()[0])->weight));
  // The KV-cached path runs the same online transform.
  CausalLM::KVCache cache;
  const at::Tensor c = rot.forward_cached(ids, cache, /*last_only=*/false);
  EXPECT_LT((c - b).abs().max().item<double>(), 2e-5 * scale) << "seed " << seed;
}

TEST(RotateHadamard, LlamaUntiedKeepsTheFunction) {
  expect_same_function(config("LlamaForCausalLM", 64, 96, false), 1);  // 96 = 12 x 8 (Paley)
}
TEST(RotateHadamard, LlamaTiedEmbeddingsAreUntiedAndKeepTheFunction) {
  expect_same_function(config("LlamaForCausalLM", 48, 128, true), 2);  // 48: Paley I, q = 47
}
TEST(RotateHadamard, Qwen3WithHeadNormsKeepsTheFunction) {
  expect_same_function(config("Qwen3ForCausalLM", 64, 192, false), 3);
}

TEST(RotateHadamard, RefusesWhatItCannotRotate) {
  CausalLM m = CausalLM::random(config("LlamaForCausalLM", 64, 96, false), 4);
  m.rotate_hadamard(1);
  EXPECT_THROW(m.rotate_hadamard(1), ModelError);  // twice
  const auto dir = std::filesystem::temp_directory_path() / "dmx_test_rotate_save";
  std::filesystem::remove_all(dir);
  EXPECT_THROW(m.save(dir.string()), ModelError);
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors"));
  std::filesystem::remove_all(dir);
  // 100 = 4 x 25 has no construction here (no Paley order m with 100 / m a power of 2).
  CausalLM odd = CausalLM::random(config("LlamaForCausalLM", 64, 100, false), 4);
  try {
    odd.rotate_hadamard(1);
    FAIL() << "no error";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("intermediate_size 100"), std::string::npos) << e.what();
  }
}

}  // namespace
