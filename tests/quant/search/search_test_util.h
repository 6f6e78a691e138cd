// Helpers shared by the quant/mx and quant/search tests: golden's fake quantization as a
// reference, bit-level diffs, seeded tensors, a tiny model config and random windows.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dmx/golden.h>
#include <dmx/quant/config.h>
#include <dmx/quant/mx.h>
#include <dmx/quant/search.h>
#include <dmx/sim.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

namespace search_test {

using namespace dmx;
using namespace dmx::quant;
namespace fs = std::filesystem;

inline uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// Golden quantize_row + dequantize_row of each row of a [rows, n] tensor (n zero-padded to 32).
inline at::Tensor golden_fake_quant(const at::Tensor& x, MxFormat f) {
  const int64_t rows = x.size(0), n = x.size(1);
  const size_t np = padded_length(n);
  at::Tensor out = at::empty({rows, n}, at::kFloat);
  std::vector<float> row(np), deq(np);
  std::vector<uint8_t> scales(np / 32), codes(np);
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (int64_t i = 0; i < n; ++i) row[i] = x[r][i].item<float>();
    quantize_row(f, row.data(), np, scales.data(), codes.data());
    dequantize_row(f, scales.data(), codes.data(), np, deq.data());
    std::memcpy(out[r].data_ptr<float>(), deq.data(), n * sizeof(float));
  }
  return out;
}

// Bitwise equality (NaN == NaN of any payload); returns the first mismatch description.
inline std::string bitwise_diff(const at::Tensor& a, const at::Tensor& b, const at::Tensor& in) {
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();  // keep them alive
  const float* pa = ac.data_ptr<float>();
  const float* pb = bc.data_ptr<float>();
  at::Tensor inc = in.contiguous();
  const float* pi = inc.data_ptr<float>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::isnan(pa[i]) && std::isnan(pb[i])) continue;
    if (bits_of(pa[i]) != bits_of(pb[i])) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "element %lld: input %a, got %a, golden %a", (long long)i,
                    pi[i], pa[i], pb[i]);
      return buf;
    }
  }
  return "";
}

// Random rows with a per-block magnitude spread from 2^-140 to 2^120, plus hand-made edge rows.
inline at::Tensor test_tensor(uint64_t seed, int64_t rows, int64_t n) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-140, 120);
  at::Tensor x = at::empty({rows, n}, at::kFloat);
  float* p = x.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < n; b += 32) {
      const float sc = std::ldexp(1.0f, ex(rng));
      for (int64_t i = b; i < std::min(n, b + 32); ++i) p[r * n + i] = nd(rng) * sc;
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  const float edges[] = {0.0f,
                         -0.0f,
                         1.0f,
                         -1.0f,
                         6.0f,
                         448.0f,
                         449.0f,
                         464.0f,
                         480.0f,
                         57344.0f,
                         61440.0f,
                         std::numeric_limits<float>::max(),
                         -std::numeric_limits<float>::max(),
                         std::numeric_limits<float>::denorm_min(),
                         std::numeric_limits<float>::min(),
                         0.25f,
                         0.75f,
                         1.25f,
                         1.75f,
                         2.5f,
                         3.5f,
                         5.0f,
                         7.0f,
                         0.1f,
                         -0.3f,
                         1e-39f,
                         -1e-40f,
                         0.9999999f,
                         2.0000002f};
  // Row 0: edges mixed with small values; row 1: all zero / -0; row 2 a NaN and row 3 an Inf.
  if (rows >= 4) {
    for (int64_t i = 0; i < n; ++i)
      p[i] = edges[i % (sizeof(edges) / sizeof(float))] * (i % 3 == 0 ? 1 : 1e-3f);
    for (int64_t i = 0; i < n; ++i) p[n + i] = (i % 2) ? -0.0f : 0.0f;
    p[2 * n + 5] = std::numeric_limits<float>::quiet_NaN();
    p[3 * n + 7] = -inf;
  }
  return x;
}

inline ModelConfig tiny_config(int layers = 2) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"hidden_size", 64},
                      {"intermediate_size", 128},
                      {"num_hidden_layers", layers},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"vocab_size", 97},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", true}};
  return parse_config(j.dump(), "tiny");
}

inline at::Tensor random_windows(uint64_t seed, int64_t n, int64_t seqlen, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(0, int(vocab) - 1);
  std::vector<int32_t> toks(n * seqlen);
  // A little structure (repeats) so the model's loss depends on its layers.
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = (i % 7 == 3) ? toks[i - 3] : d(rng);
  return make_windows(toks, seqlen, n);
}

}  // namespace search_test
