// config.json parsing, checked on the published SmolLM2-135M, Qwen3-0.6B and Llama-3.2-1B configs
// (copied verbatim from their Hugging Face repositories) by shape and parameter count.
#include <gtest/gtest.h>

#include <cmath>

#include "dmx/quant/config.h"

using dmx::quant::Architecture;
using dmx::quant::ConfigError;
using dmx::quant::ModelConfig;
using dmx::quant::parse_config;

namespace {

// HuggingFaceTB/SmolLM2-135M config.json
const char* kSmolLM2_135M = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null,
  "rope_theta": 100000, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 49152})";

// Qwen/Qwen3-0.6B config.json
const char* kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

// meta-llama/Llama-3.2-1B config.json
const char* kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "cfg.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(Config, SmolLM2_135M) {
  ModelConfig c = parse_config(kSmolLM2_135M, "smollm2");
  EXPECT_EQ(c.arch, Architecture::Llama);
  EXPECT_EQ(c.head_dim, 64);  // derived: 576 / 9
  EXPECT_EQ(c.num_key_value_heads, 3);
  EXPECT_EQ(c.rope_theta, 100000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_ids, std::vector<int64_t>{0});
  auto s = dmx::quant::expected_tensor_shapes(c);
  EXPECT_EQ(s.size(), 2u + 30u * 9u);
  EXPECT_EQ(s.at("model.layers.29.self_attn.k_proj.weight"), (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(s.count("lm_head.weight"), 0u);
  EXPECT_EQ(dmx::quant::parameter_count(c), 134515008);  // the published 135M
}

TEST(Config, Qwen3_06B) {
  ModelConfig c = parse_config(kQwen3_06B, "qwen3");
  EXPECT_EQ(c.arch, Architecture::Qwen3);
  EXPECT_EQ(c.head_dim, 128);  // explicit, != 1024 / 16
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
  auto s = dmx::quant::expected_tensor_shapes(c);
  EXPECT_EQ(s.at("model.layers.0.self_attn.q_proj.weight"), (std::vector<int64_t>{2048, 1024}));
  EXPECT_EQ(s.at("model.layers.0.self_attn.o_proj.weight"), (std::vector<int64_t>{1024, 2048}));
  EXPECT_EQ(s.at("model.layers.27.self_attn.q_norm.weight"), (std::vector<int64_t>{128}));
  EXPECT_EQ(dmx::quant::parameter_count(c), 596049920);  // the published 0.6B (0.44B non-embedding)
  EXPECT_EQ(dmx::quant::parameter_count(c) - 151936 * 1024, 440467456);
}

TEST(Config, Llama32_1B) {
  ModelConfig c = parse_config(kLlama32_1B, "llama");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(dmx::quant::parameter_count(c), 1235814400);  // the published 1.24B
  EXPECT_EQ(dmx::quant::decoder_linear_names(c).size(), 16u * 7u);
  EXPECT_EQ(dmx::quant::decoder_linear_names(c)[7 * 3], "model.layers.3.self_attn.q_proj");

  // llama3 rope scaling, recomputed here in double: high frequencies kept, low ones / 32,
  // the band between interpolated.
  std::vector<float> inv = dmx::quant::rope_inv_freq(c);
  ASSERT_EQ(inv.size(), 32u);
  const double pi = std::acos(-1.0);
  int kept = 0, divided = 0, smoothed = 0;
  for (int i = 0; i < 32; ++i) {
    double f = 1.0 / std::pow(500000.0, 2.0 * i / 64.0);
    double wavelen = 2 * pi / f, expect;
    if (wavelen < 8192.0 / 4.0)
      expect = f, ++kept;
    else if (wavelen > 8192.0 / 1.0)
      expect = f / 32, ++divided;
    else {
      double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expect = (1 - smooth) * f / 32 + smooth * f;
      ++smoothed;
    }
    EXPECT_NEAR(inv[i], expect, 1e-6 * expect) << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);
}

TEST(Config, VariantsAndDefaults) {
  // Llama-3.2-1B-Instruct: eos is a list; transformers 5 rope_parameters carries rope_theta.
  std::string s = kLlama32_1B;
  s.replace(s.find("\"eos_token_id\": 128001"), 22, "\"eos_token_id\": [128001, 128008, 128009]");
  ModelConfig c = parse_config(s, "x");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  std::string v5 =
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"rms_norm_eps":1e-5,
    "rope_parameters":{"rope_type":"llama3","rope_theta":50000.0,"factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":64}})";
  c = parse_config(v5, "v5");
  EXPECT_EQ(c.rope_theta, 50000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.num_key_value_heads, 4);  // defaults to num_attention_heads
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.bos_token_ids.empty());
  // Round trip through config_to_json.
  ModelConfig back = parse_config(dmx::quant::config_to_json(c), "back");
  EXPECT_EQ(back.rope_scaling.factor, 8.0);
  EXPECT_EQ(back.head_dim, 16);
  EXPECT_EQ(dmx::quant::parameter_count(back), dmx::quant::parameter_count(c));
}

TEST(Config, ClearErrors) {
  std::string qwen2 = kQwen3_06B;
  qwen2.replace(qwen2.find("Qwen3ForCausalLM"), 16, "Qwen2ForCausalLM");
  EXPECT_NE(error_of(qwen2).find("cfg.json: unsupported architecture \"Qwen2ForCausalLM\""),
            std::string::npos)
      << error_of(qwen2);
  std::string no_hidden = kSmolLM2_135M;
  no_hidden.replace(no_hidden.find("\"hidden_size\": 576,"), 19, "");
  EXPECT_NE(error_of(no_hidden).find("missing key \"hidden_size\""), std::string::npos)
      << error_of(no_hidden);
  std::string no_theta = kSmolLM2_135M;
  no_theta.replace(no_theta.find("\"rope_theta\": 100000,"), 21, "");
  EXPECT_NE(error_of(no_theta).find("rope_theta"), std::string::npos);
  std::string bad_gqa = kSmolLM2_135M;
  bad_gqa.replace(bad_gqa.find("\"num_key_value_heads\": 3"), 24, "\"num_key_value_heads\": 4");
  EXPECT_NE(error_of(bad_gqa).find("not a multiple"), std::string::npos);
  std::string yarn = kLlama32_1B;
  yarn.replace(yarn.find("\"rope_type\": \"llama3\""), 21, "\"rope_type\": \"yarn\"");
  EXPECT_NE(error_of(yarn).find("\"yarn\" is not supported"), std::string::npos);
  EXPECT_NE(error_of("{\"architectures\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("{}").find("missing key \"architectures\""), std::string::npos);
  std::string str_hidden = kSmolLM2_135M;
  str_hidden.replace(str_hidden.find("\"hidden_size\": 576"), 18, "\"hidden_size\": \"576\"");
  EXPECT_NE(error_of(str_hidden).find("not an integer"), std::string::npos);
}
