// Helpers shared by the quant/deploy tests: temporary folders, model configs and random
// checkpoints, assignments, golden's quantization of a weight, the FP32 error bound.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "dmx/quant/config.h"
#include "dmx/quant/deploy.h"
#include "dmx/quant/eval.h"
#include "dmx/quant/mx.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/tokenizer.h"

namespace fs = std::filesystem;
using namespace dmx;
using namespace dmx::quant;
using json = nlohmann::json;

namespace deploy_test {

inline fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("dmx_quant_deploy_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Llama with biases everywhere and in_features that are not multiples of 32 (80, 112): six layers,
// so the 42 decoder Linears carry all 36 (weight, activation) format pairs.
inline json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 80},
          {"intermediate_size", 112},
          {"num_hidden_layers", 6},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 97},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"attention_bias", true},
          {"mlp_bias", true},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}
// Qwen3, tied embeddings, no biases.
inline json qwen3_config() {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "qwen3"},
          {"hidden_size", 64},
          {"intermediate_size", 96},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 32},
          {"vocab_size", 70},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1000000},
          {"tie_word_embeddings", true},
          {"attention_bias", false}};
}

// Every (weight, act) pair of the six formats, cycled over the model's Linears.
inline FormatAssignment all_pairs_assignment(const ModelConfig& c) {
  FormatAssignment a;
  size_t i = 0;
  for (const std::string& n : decoder_linear_names(c)) {
    a[n] = {kAllFormats[(i / kNumFormats) % kNumFormats], kAllFormats[i % kNumFormats]};
    ++i;
  }
  return a;
}

inline json assignment_json(const FormatAssignment& a) {
  json layers = json::array();
  for (const auto& [n, f] : a)
    layers.push_back({{"layer", n},
                      {"weight_format", format_name(f.weight)},
                      {"act_format", format_name(f.act)}});
  return {{"layers", layers}};
}

// A random checkpoint stored in BF16 (as the zoo models are), written by the test.
inline ModelConfig write_random_model(const fs::path& dir, const json& cfg_json, uint64_t seed) {
  const ModelConfig c = parse_config(cfg_json.dump(), "test config");
  CausalLM::random(c, seed, 0.08).save(dir.string(), at::kBFloat16);
  return c;
}

// Golden quantization of a weight [out, in] read from the source checkpoint (BF16 -> FP32 exact).
struct GoldenWeight {
  size_t out = 0, in = 0, kp = 0;
  std::vector<uint8_t> scales, codes;  // codes unpacked, one per byte, rows padded to kp
};
inline GoldenWeight golden_weight(const TensorView& v, MxFormat f) {
  EXPECT_EQ(v.dtype, DType::BF16);
  GoldenWeight g;
  g.out = static_cast<size_t>(v.shape[0]);
  g.in = static_cast<size_t>(v.shape[1]);
  g.kp = padded_length(g.in);
  g.scales.resize(g.out * g.kp / kBlockSize);
  g.codes.resize(g.out * g.kp);
  std::vector<float> row(g.kp);
  for (size_t r = 0; r < g.out; ++r) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (size_t k = 0; k < g.in; ++k) {
      uint16_t b;
      std::memcpy(&b, v.data + 2 * (r * g.in + k), 2);
      row[k] = bf16_to_fp32(b);
    }
    quantize_row(f, row.data(), g.kp, g.scales.data() + r * g.kp / kBlockSize,
                 g.codes.data() + r * g.kp);
  }
  return g;
}

inline double gamma_n(double n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

inline const std::string kRepo = DMX_REPO;

}  // namespace deploy_test
